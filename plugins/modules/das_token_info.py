#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: das_token_info
short_description: Report Styra DAS tokens with their expiry, age and whether they are due
version_added: 0.1.0
description:
  - Lists Styra DAS tokens (C(GET /v1/tokens)) joined with their store entries, and says for each
    when it expires, how old its secret is, and whether the rotation policy finds it due.
  - Never returns a secret; the store's entry is described by its fingerprint and version.
  - Without O(api_token) only the tokens named in O(ids) are reported, from the store alone.
author:
  - tokenops developers (@tokenops)
extends_documentation_fragment:
  - tokenops.rotation.das
  - tokenops.rotation.connection
  - tokenops.rotation.store
  - tokenops.rotation.rotation
attributes:
  check_mode:
    support: full
    description: The module only reads.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
options:
  api_token:
    description:
      - Secret of a DAS token allowed to list tokens (WorkspaceViewer or more).
      - Falls back to the environment variable E(STYRA_DAS_TOKEN).
  ids:
    description:
      - Only these token ids. Required without O(api_token).
    type: list
    elements: str
  query:
    description:
      - A JMESPath expression applied to the list of tokens; its value is returned as RV(query_result).
    type: str
seealso:
  - module: tokenops.rotation.das_token
"""

EXAMPLES = r"""
- name: Which tokens are due within a week?
  tokenops.rotation.das_token_info:
    url: https://example.styra.com
    rotate_before: 7d
    query: "[?due].id"
  register: das_due

- name: One token's expiry, from the store alone
  tokenops.rotation.das_token_info:
    url: https://example.styra.com
    ids: [application-token]
  register: app_token
"""

RETURN = r"""
tokens:
  description: The tokens, sorted by id.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The DAS token id.
      type: str
    description:
      description: Its description in DAS.
      type: str
    in_das:
      description: Whether DAS has it (null when DAS was not asked).
      type: bool
    in_store:
      description: Whether the store has a secret for it.
      type: bool
    expires_at:
      description: Expiry (UTC, ISO 8601), from DAS when known, else from the store.
      type: str
    days_left:
      description: Days until it expires, rounded down; negative when expired.
      type: int
    age_days:
      description: Days since its secret was issued or last rotated.
      type: int
    due:
      description: Whether the policy (O(rotate_before), O(max_age)) finds it due.
      type: bool
    due_reason:
      description: Why it is due.
      type: str
    fingerprint:
      description: Fingerprint of the stored secret.
      type: str
    store_path:
      description: Its store entry.
      type: str
    store_version:
      description: Version of its store entry (0 when absent).
      type: int
    pending:
      description: A rotation intent recorded in the store (in progress or interrupted).
      type: dict
    uses:
      description: How often DAS saw the token used, when DAS reports it.
      type: int
query_result:
  description: The value of O(query) applied to RV(tokens).
  returned: when O(query) is given
  type: raw
"""

import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib

from ansible_collections.tokenops.rotation.plugins.module_utils.das import DasClient, validate_token_id
from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils.module import InputError, TokenModule, run_module
from ansible_collections.tokenops.rotation.plugins.module_utils import validators
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import (
    iso,
    parse_time,
    utcnow,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreError

try:
    import jmespath
    HAS_JMESPATH = True
    JMESPATH_IMPORT_ERROR = None
except ImportError:
    HAS_JMESPATH = False
    JMESPATH_IMPORT_ERROR = traceback.format_exc()


class DasTokenInfoModule(TokenModule):
    product = "das"
    product_name = "Styra DAS"
    url_env = "STYRA_DAS_URL"

    def __init__(self):
        super(DasTokenInfoModule, self).__init__(
            dict(
                api_token=dict(type="str", no_log=True, fallback=(env_fallback, ["STYRA_DAS_TOKEN"])),
                ids=dict(type="list", elements="str"),
                query=dict(type="str"),
            ),
            run_options=False,
            required_one_of=[("api_token", "ids")],
        )

    def validate(self):
        p = self.params
        if p["api_token"] is not None:
            validators.text(p["api_token"], "api_token", secret=True)
        if p["query"] is not None:
            if not HAS_JMESPATH:
                self.module.fail_json(msg=missing_required_lib("jmespath"), exception=JMESPATH_IMPORT_ERROR)
            validators.text(p["query"], "query")
            try:
                self.expression = jmespath.compile(p["query"])
            except (jmespath.exceptions.JMESPathError, RecursionError) as exc:
                raise InputError("query is not a JMESPath expression: %s" % validators.cut(str(exc), 200))
        self.check_ids(validate_token_id)

    def run(self):
        p = self.params
        if p["api_token"]:
            self.secret(p["api_token"])
        remote = {}
        try:
            if p["api_token"]:
                for token in DasClient(self.http()).list_tokens(p["api_token"]):
                    remote[token.get("id")] = token
            wanted = p["ids"] if p["ids"] is not None else sorted(remote)
            tokens = [self.describe(token_id, remote.get(token_id), bool(p["api_token"])) for token_id in wanted]
        except (ApiError, StoreError) as exc:
            self.fail(str(exc))
        out = dict(changed=False, tokens=tokens)
        if p["query"] is not None:
            out["query_result"] = self.expression.search(tokens)
        self.module.exit_json(**out)

    def describe(self, token_id, token, asked_das):
        now = utcnow()
        record, item = self.stored(self.store_path(token_id))
        expires = parse_time((token or {}).get("expires")) or parse_time(record.get("expires_at"))
        issued = parse_time(record.get("rotated_at")) or parse_time(record.get("issued_at"))
        if issued is None and token:
            issued = parse_time((token.get("metadata") or {}).get("created_at"))
        due, reason = self.policy.due(now, parse_time(record.get("issued_at")), expires, parse_time(record.get("rotated_at")))
        item.update(
            id=token_id,
            description=(token or {}).get("description"),
            in_das=(token is not None) if asked_das else None,
            expires_at=iso(expires),
            days_left=int((expires - now).total_seconds() // 86400) if expires else None,
            age_days=int((now - issued).total_seconds() // 86400) if issued else None,
            due=bool(due),
            due_reason=reason,
            uses=(token or {}).get("uses"),
        )
        return item


def main():
    run_module(DasTokenInfoModule)


if __name__ == "__main__":
    main()
