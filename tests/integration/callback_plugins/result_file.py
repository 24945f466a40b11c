# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback: appends every task result, as Ansible hands it to callbacks, to a JSON-lines file.

The integration tests read their assertions from it, and scan it for leaked secrets.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: result_file
type: aggregate
short_description: Write task results to the file named by TOKENOPS_RESULT_FILE (tests only)
description:
  - Appends one JSON line per task result.
options: {}
"""

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "result_file"
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, result, status):
        path = os.environ.get("TOKENOPS_RESULT_FILE")
        if not path:
            return
        record = dict(result._result)
        record["_task"] = result._task.get_name()
        record["_host"] = result._host.get_name()
        record["_status"] = status
        record["failed"] = status == "failed"   # ansible-core 2.19 keeps it out of _result
        with open(path, "a") as handle:
            handle.write(json.dumps(record, default=str) + "\n")

    def v2_runner_on_ok(self, result):
        self._write(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._write(result, "skipped")
