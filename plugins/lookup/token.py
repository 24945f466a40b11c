# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: token
short_description: Read the current secret of a managed token from the store
version_added: 0.1.0
description:
  - Returns the C(secret) (or another O(key)) of the store entries this collection writes, so a
    consumer task gets the live credential without ever handling a rotation.
  - Each term is an entry path, or C(<product>/<host>/<token id>) below O(store.prefix).
  - Fails when an entry is missing, has no such key, or holds an interrupted rotation of which
    the secret may be stale (unless O(allow_pending=true)).
author:
  - tokenops developers (@tokenops)
options:
  _terms:
    description: Entry paths (C(tokenops/das/example.styra.com/app)) or C(das/example.styra.com/app).
    type: list
    elements: str
    required: true
  key:
    description: Which key of the entry to return.
    type: str
    default: secret
  allow_pending:
    description: Return the secret even while a rotation intent is recorded on the entry.
    type: bool
    default: false
extends_documentation_fragment:
  - tokenops.rotation.store
notes:
  - Runs on the controller. Mark tasks that use the value with C(no_log=true).
"""

EXAMPLES = r"""
- name: Call the DAS API with the token the rotation keeps fresh
  ansible.builtin.uri:
    url: https://example.styra.com/v1/systems
    headers:
      Authorization: "Bearer {{ lookup('tokenops.rotation.token', 'das/example.styra.com/ci-deployer',
                                       store={'backend': 'vault', 'url': 'https://vault.example.com:8200'}) }}"
  no_log: true
"""

RETURN = r"""
_raw:
  description: The value of O(key) of each entry.
  type: list
  elements: str
"""

from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.tokenops.rotation.plugins.module_utils.store import (
    StoreError,
    check_path,
    resolve_store_params,
    store_from_params,
)
from ansible_collections.tokenops.rotation.plugins.module_utils import validators
from ansible_collections.tokenops.rotation.plugins.plugin_utils.lookup import CheckedLookup

PRODUCTS = ("das", "dpa", "secretserver", "openpayments")


class LookupModule(CheckedLookup):
    NAME = "tokenops.rotation.token"
    BOOLEAN_OPTIONS = ("allow_pending",)

    def checked_run(self, terms, variables):
        # Every term and option is checked before the store is touched.
        key = validators.text(self.get_option("key"), "key")
        try:
            params = resolve_store_params(self.get_option("store"))
            paths = []
            for index, term in enumerate(validators.items(terms, "terms", str, "an entry path (a string)", required=True)):
                path = check_path(validators.text(term, "terms[%d]" % index), "terms[%d] (an entry path)" % index)
                if path.split("/", 1)[0] in PRODUCTS and params.get("prefix"):
                    path = "%s/%s" % (params["prefix"].strip("/"), path)
                paths.append(path)
            store = store_from_params(params)
        except StoreError as exc:
            raise AnsibleLookupError("%s: %s" % (self.NAME, to_native(exc)))
        try:
            values = []
            for path in paths:
                entry = store.read(path)
                if not entry.data:
                    raise AnsibleLookupError("tokenops.rotation.token: no store entry at %s (%s)" % (path, store.describe()))
                if entry.data.get("pending") and not self.get_option("allow_pending"):
                    pending = entry.data["pending"]
                    raise AnsibleLookupError("tokenops.rotation.token: %s has an interrupted or running rotation (%s, step %s, since %s); "
                                             "run the rotation again, or set allow_pending=true"
                                             % (path, pending.get("rotation_id"), pending.get("step"), pending.get("started_at")))
                if entry.data.get(key) in (None, ""):
                    raise AnsibleLookupError("tokenops.rotation.token: the entry at %s has no %s" % (path, key))
                values.append(entry.data[key])
            return values
        except StoreError as exc:
            raise AnsibleLookupError("tokenops.rotation.token: %s" % to_native(exc))
        finally:
            store.close()
