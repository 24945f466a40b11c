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
  - While a rotation runs, or after one was interrupted, the entry holds its intent. The intent
    says whether the stored secret still works at its step. It does during an overlap before its
    promotion, a DPA adoption or an Open Payments grant request; it may not during a DAS
    regenerate in place, an Open Payments rotation or a revocation. The lookup returns the secret
    while it still works and fails, saying why, only where it may be dead (unless O(allow_pending=true)).
  - Fails when an entry is missing or has no such key.
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
    description:
      - Return the secret even while a rotation intent on the entry says it may no longer work.
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
from ansible.plugins.lookup import LookupBase

from ansible_collections.tokenops.rotation.plugins.module_utils.store import (
    StoreError,
    check_path,
    resolve_store_params,
    store_from_params,
)

PRODUCTS = ("das", "dpa", "secretserver", "openpayments")


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        key = self.get_option("key")
        try:
            params = resolve_store_params(self.get_option("store") or {})
            store = store_from_params(params)
            values = []
            for term in terms:
                path = check_path(term, "entry path")
                if path.split("/", 1)[0] in PRODUCTS and params.get("prefix"):
                    path = "%s/%s" % (params["prefix"].strip("/"), path)
                entry = store.read(path)
                if not entry.data:
                    raise AnsibleLookupError("tokenops.rotation.token: no store entry at %s (%s)" % (path, store.describe()))
                pending = entry.data.get("pending")
                if pending and not pending.get("secret_usable") and not self.get_option("allow_pending"):
                    raise AnsibleLookupError("tokenops.rotation.token: the secret stored at %s may no longer work: a rotation is "
                                             "running or was interrupted at a step that can end it (rotation %s, step %s, since %s). "
                                             "The rotation stores the new secret when it completes; if it was interrupted, the next "
                                             "rotation run recovers it. Set allow_pending=true to read the stored value anyway"
                                             % (path, pending.get("rotation_id"), pending.get("step"), pending.get("started_at")))
                if entry.data.get(key) in (None, ""):
                    raise AnsibleLookupError("tokenops.rotation.token: the entry at %s has no %s" % (path, key))
                values.append(entry.data[key])
            return values
        except StoreError as exc:
            raise AnsibleLookupError("tokenops.rotation.token: %s" % to_native(exc))
