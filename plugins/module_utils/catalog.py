# -*- coding: utf-8 -*-
# Copyright: tokenops.rotation contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A token catalog: the `tokens` list of a product module kept in a file (option `tokens_file`).

At 10,000 tokens an inventory that lists every token costs Ansible more than the modules do: the
main process parses and copies it, every fork maps it, and every task templates it. A catalog file
is read by the module itself (and by the report, for the ids it must show), so the token list never
passes through Ansible's variables, templating or module arguments.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

# ansible-core's own YAML shim for modules: PyYAML comes with ansible-core, and the C loader where it is built.
from ansible.module_utils.common.yaml import HAS_YAML, yaml_load


def read_token_list(path, option="tokens_file"):
    """The list of token items in the file at `path`: JSON or YAML, a list or a mapping with a `tokens` list.

    ValueError names the option, the file and what is wrong with it; nothing is sent anywhere.
    """
    if not isinstance(path, str) or not path.strip():
        raise ValueError("%s must be the path of a JSON or YAML file that lists the tokens" % option)
    path = os.path.expanduser(os.path.expandvars(path))
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except (IOError, OSError) as exc:
        raise ValueError("%s: cannot read %s: %s" % (option, path, exc.strerror or exc))
    except UnicodeDecodeError:
        raise ValueError("%s: %s is not UTF-8 text" % (option, path))
    stripped = text.lstrip()
    try:
        if stripped[:1] in ("[", "{"):
            data = json.loads(text)
        elif HAS_YAML:
            data = yaml_load(text)   # a safe loader
        else:  # pragma: no cover - PyYAML comes with ansible-core
            raise ValueError("PyYAML is not available")
    except ValueError as exc:
        # A JSON file that is not quite JSON may still be YAML (a trailing comment, single quotes).
        data = _yaml_or_none(text)
        if data is None:
            raise ValueError("%s: %s is neither JSON nor YAML: %s" % (option, path, str(exc).splitlines()[0]))
    except Exception as exc:  # yaml.YAMLError and its kin: the file's fault
        raise ValueError("%s: %s is not valid YAML: %s" % (option, path, " ".join(str(exc).split())[:300]))
    if isinstance(data, dict) and "tokens" in data:
        data = data["tokens"]
    if not isinstance(data, list):
        raise ValueError("%s: %s must hold a list of tokens (or a mapping whose `tokens` is that list), not %s"
                         % (option, path, "nothing" if data is None else type(data).__name__))
    return data


def _yaml_or_none(text):
    if not HAS_YAML:
        return None
    try:
        return yaml_load(text)
    except Exception:  # pylint: disable=broad-except
        return None


def token_ids(items):
    """The ids a catalog's items name (an item without `id` is named by `username`, as Secret Server's are)."""
    ids = []
    for item in items:
        if isinstance(item, dict):
            name = item.get("id") if item.get("id") not in (None, "") else item.get("username")
            if name not in (None, ""):
                ids.append(str(name))
    return ids
