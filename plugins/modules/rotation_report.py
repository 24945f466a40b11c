#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rotation_report
short_description: Write the report across products of a rotation run (JSON, Markdown, HTML, Prometheus metrics)
version_added: 0.2.0
description:
  - Turns what the product roles recorded about a run into one row per token, sorted by urgency,
    with what a person must do (the steps of a V(needs_reconcile), the consent URL of an Open
    Payments grant, the DPA refresh token to replace in DPA's web interface with the date it dies).
  - Says which items fail the job (O(fail_on)) and, with O(fail=true), fails after writing.
  - Writes a JSON document, a Markdown page, a self-contained HTML page and a Prometheus text file
    for the node_exporter textfile collector. Each file is written to a temporary file in its
    directory and renamed, so a reader never sees half a file.
  - Lists what the DAS tenant audit found (tokens no inventory host manages, tokens that allow every
    path, tokens that practically never expire), once per tenant.
  - Copies only the fields it names from the results it is given, so no secret reaches a report.
  - Runs on the controller (C(delegate_to=localhost)); playbook C(tokenops.rotation.rotate) calls it
    once at the end of every run.
author:
  - tokenops developers (@tokenops)
attributes:
  check_mode:
    support: full
    description: Builds the report and returns it, writes no file.
  diff_mode:
    support: none
    description: A report is not state; it has no diff.
options:
  sources:
    description:
      - What each product role recorded for each inventory host (the facts C(das_rotation_record),
        C(dpa_rotation_record), C(secretserver_rotation_record), C(openpayments_rotation_record)).
      - Each is a dictionary with C(product), C(endpoint) (the inventory host), C(url), C(check_mode),
        C(configured) (the token ids the host keeps), C(removing) (the ids it removes), what the
        tasks returned (C(read), C(rotate), C(cleanup), C(audit)), and C(error) when the role
        itself failed.
    type: list
    elements: dict
    required: true
  dest:
    description:
      - Folder of the report files; created when missing.
    type: path
    default: ~/.ansible/tokenops/reports
  name:
    description: File name of the reports without extension (C(<name>.json), C(.md), C(.html), C(.prom)).
    type: str
    default: tokenops-rotation
  formats:
    description: Which files to write; an empty list writes none (the report is returned all the same).
    type: list
    elements: str
    choices: [json, markdown, html, prometheus]
    default: [json, markdown, html, prometheus]
  prometheus_path:
    description:
      - Where the Prometheus file goes instead of O(dest), for example the node_exporter textfile
        collector's folder (C(/var/lib/node_exporter/textfile_collector/tokenops.prom)). It must end in C(.prom).
    type: path
  fail_on:
    description:
      - The conditions that fail the job. V(needs_reconcile), V(failed) (a token failed, or ended
        without a stored secret), V(dpa_fail_before) (a DPA refresh token inside its
        C(fail_before), or expired), V(consent_overdue) (an Open Payments grant waiting for
        consent longer than O(consent_wait_limit)), V(needs_interaction) (a Secret Server user
        who must log in with a one-time code), V(backed_off_stale) (another run held a token and
        its lease had run out).
      - Also possible, for stricter jobs, V(consent_waiting), V(dpa_warn_before), V(manual_step),
        V(das_unmanaged), V(das_all_paths), V(das_never_expires) and V(backed_off) (another,
        live run held a token).
    type: list
    elements: str
    default: [needs_reconcile, failed, dpa_fail_before, consent_overdue, needs_interaction, backed_off_stale]
  consent_wait_limit:
    description:
      - How long an Open Payments grant may wait for the resource owner's consent before it fails
        the job (V(consent_overdue)); until then it is a person's task in the report.
      - A duration (C(1d), C(12h), C(30m)).
    type: str
    default: 1d
  fail:
    description:
      - Fail after writing the files when an item matches O(fail_on); the message lists each with
        what to do.
    type: bool
    default: false
notes:
  - Rows are sorted by urgency. First what fails the job, then a person's tasks, then tokens the
    run changed, then tokens another run held, then the rest. Within each group the token that
    expires first comes first.
  - Prometheus metrics are C(tokenops_rotation_token_expiry_timestamp_seconds),
    C(tokenops_rotation_token_last_rotation_timestamp_seconds), C(tokenops_rotation_token_needs_person)
    and C(tokenops_rotation_token_changed), labelled with C(product), C(endpoint) and C(token).
    The run is described by C(tokenops_rotation_run_timestamp_seconds),
    C(tokenops_rotation_run_success), C(tokenops_rotation_run_tokens) (by C(action)) and
    C(tokenops_rotation_run_needs_person).
seealso:
  - name: node_exporter textfile collector
    description: Where to put the Prometheus file so that node_exporter serves it.
    link: https://github.com/prometheus/node_exporter#textfile-collector
"""

EXAMPLES = r"""
- name: The report across products, after every role ran (what playbook tokenops.rotation.rotate does)
  tokenops.rotation.rotation_report:
    sources: >-
      {{ groups['all'] | map('extract', hostvars) | selectattr('das_rotation_record', 'defined')
         | map(attribute='das_rotation_record') | list }}
    dest: /var/lib/tokenops/reports
    prometheus_path: /var/lib/node_exporter/textfile_collector/tokenops.prom
    consent_wait_limit: 2d
  delegate_to: localhost
  run_once: true
  register: tokenops_report

- name: Fail when something needs a person, also for a DPA token inside warn_before
  tokenops.rotation.rotation_report:
    sources: "{{ [dpa_rotation_record] }}"
    formats: []
    fail_on: [failed, needs_reconcile, dpa_fail_before, dpa_warn_before]
    fail: true
"""

RETURN = r"""
outcome:
  description: V(failed) (an item fails the job), V(attention) (a person has something to do) or V(ok).
  returned: always
  type: str
  sample: attention
generated_at:
  description: When the report was made (UTC, ISO 8601).
  returned: always
  type: str
check_mode:
  description: Whether the run it reports was in check mode (its actions are predictions).
  returned: always
  type: bool
rows:
  description: One row per token, most urgent first.
  returned: always
  type: list
  elements: dict
  contains:
    product:
      description: C(das), C(dpa), C(secretserver) or C(openpayments).
      type: str
    endpoint:
      description: The inventory host (a DAS tenant, a DPA server, a Secret Server, an authorization server).
      type: str
    token:
      description: The token's id in the inventory.
      type: str
    action:
      description: What the run did (or would do in check mode), as the module returned it.
      type: str
    expires_at:
      description: When the stored secret expires (UTC, ISO 8601), or null.
      type: str
    time_left:
      description: The time left in words (C(29d 23h), C(expired 3h ago), C(never)).
      type: str
    seconds_left:
      description: Seconds until it expires; negative when expired; null when unknown or never.
      type: int
    conditions:
      description: The conditions the row is in (see O(fail_on)).
      type: list
      elements: str
    todo:
      description: What a person must do.
      type: list
      elements: str
    fails_job:
      description: Whether one of its conditions is in O(fail_on).
      type: bool
needs_person:
  description: The rows and audit findings that need a person, each with its conditions and what to do.
  returned: always
  type: list
  elements: dict
failures:
  description: The items of RV(needs_person) whose conditions are in O(fail_on).
  returned: always
  type: list
  elements: dict
failure_lines:
  description: One line per item of RV(failures) with what to do, after a heading line; empty when nothing fails.
  returned: always
  type: list
  elements: str
summary:
  description: A line about the run, one line per store or product endpoint that made it wait (RV(backpressure)), then
    one line per item that needs a person.
  returned: always
  type: list
  elements: str
audit:
  description: The DAS tenant audit's findings, each token once per tenant.
  returned: always
  type: list
  elements: dict
errors:
  description: Stages that failed without failing a token (the read before the run, the audit) and roles that failed.
  returned: always
  type: list
  elements: dict
backpressure:
  description:
    - Per store or product endpoint, what slowness cost the run, added up over the hosts' tasks.
    - C(endpoint), C(waited_s), C(retries), C(lowest_concurrency) (the fewest requests in flight any task fell to),
      C(throttled) (429 answers), C(timeouts), C(slow_answers), C(requests), C(resolved_by_read_back).
  returned: always
  type: list
  elements: dict
counts:
  description: Tokens, changed, by action, needing a person, failing the job, audit findings and endpoints.
  returned: always
  type: dict
files:
  description: The files written (or, in check mode, that would be), by format.
  returned: always
  type: dict
  sample: {json: /var/lib/tokenops/reports/tokenops-rotation.json}
stats:
  description: A summary for C(ansible.builtin.set_stats), for the next step of a workflow.
  returned: always
  type: dict
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.tokenops.rotation.plugins.module_utils.report import (
    CONDITIONS,
    DEFAULT_FAIL_ON,
    RENDERERS,
    build,
    failure_lines,
    stats,
    summary_lines,
)


def write_atomically(path, text, mode=0o644):
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(to_bytes(text))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main():
    module = AnsibleModule(
        argument_spec=dict(
            sources=dict(type="list", elements="dict", required=True),
            dest=dict(type="path", default="~/.ansible/tokenops/reports"),
            name=dict(type="str", default="tokenops-rotation"),
            formats=dict(type="list", elements="str", choices=sorted(RENDERERS), default=["json", "markdown", "html", "prometheus"]),
            prometheus_path=dict(type="path"),
            fail_on=dict(type="list", elements="str", default=list(DEFAULT_FAIL_ON)),
            consent_wait_limit=dict(type="str", default="1d"),
            fail=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    unknown = sorted(set(p["fail_on"]) - set(CONDITIONS))
    if unknown:
        module.fail_json(msg="fail_on: unknown condition(s) %s; choose from %s" % (", ".join(unknown), ", ".join(sorted(CONDITIONS))))
    if not p["name"] or "/" in p["name"]:
        module.fail_json(msg="name is a file name without a folder, such as tokenops-rotation")
    if p["prometheus_path"] and not p["prometheus_path"].endswith(".prom"):
        module.fail_json(msg="prometheus_path must end in .prom: the node_exporter textfile collector reads only those files")
    try:
        report = build(p["sources"], fail_on=p["fail_on"], consent_wait_limit=p["consent_wait_limit"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))

    files = {}
    for fmt in p["formats"]:
        extension = RENDERERS[fmt][0]
        files[fmt] = p["prometheus_path"] if fmt == "prometheus" and p["prometheus_path"] else os.path.join(p["dest"], p["name"] + extension)
    if not module.check_mode:
        for fmt, path in files.items():
            try:
                folder = os.path.dirname(path)
                if folder and not os.path.isdir(folder):
                    os.makedirs(folder, 0o755)
                write_atomically(path, RENDERERS[fmt][1](report))
            except (IOError, OSError) as exc:
                module.fail_json(msg="cannot write the %s report to %s: %s" % (fmt, path, exc), files=files)

    out = dict(changed=bool(files), files=files, stats=stats(report, files), summary=summary_lines(report),
               failure_lines=failure_lines(report), **report)
    if p["fail"] and report["failures"]:
        out.pop("failed", None)
        module.fail_json(msg="\n".join(out["failure_lines"]), **out)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
