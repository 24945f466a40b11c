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
  - With O(audit=true) it also audits the whole tenant (RV(audit)) - tokens that no inventory host
    manages, tokens that allow every API path, and tokens that practically never expire.
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
  audit:
    description:
      - Also list every token of the tenant (C(GET /v1/tokens)) with what is wrong with it, as RV(audit).
      - Needs O(api_token).
    type: bool
    default: false
  managed:
    description:
      - With O(audit), more token ids that count as managed besides O(ids), for example the second
        id of an overlap rotation or a refresher token.
    type: list
    elements: str
    default: []
  audit_max_lifetime:
    description:
      - With O(audit), a token that expires later than this from now counts as one that never expires
        (DAS gives about 10 years to a token created without a ttl).
    type: str
    default: 365d
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

- name: Audit the tenant - tokens nobody manages, that allow every path or never expire
  tokenops.rotation.das_token_info:
    url: https://example.styra.com
    ids: [systems/0f1e2d3c/opa, ci-deployer]
    managed: [ci-deployer-b]
    audit: true
  register: das_audit

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
audit:
  description: Every token of the tenant that something is wrong with, sorted by id; never a secret.
  returned: when O(audit=true)
  type: list
  elements: dict
  contains:
    id:
      description: The DAS token id.
      type: str
    description:
      description: Its description in DAS.
      type: str
    expires_at:
      description: Its expiry (UTC, ISO 8601), or null when DAS gives none.
      type: str
    managed:
      description: Whether it is in O(ids) or O(managed).
      type: bool
    allows_all_paths:
      description: Whether its C(allow_path_patterns) are empty (DAS then allows every path) or match every path.
      type: bool
    never_expires:
      description: Whether it has no expiry, or one further away than O(audit_max_lifetime).
      type: bool
    findings:
      description: C(unmanaged), C(allows_all_paths), C(never_expires).
      type: list
      elements: str
query_result:
  description: The value of O(query) applied to RV(tokens).
  returned: when O(query) is given
  type: raw
backpressure:
  description:
    - Per store and product endpoint (C(scheme://host:port)) this task used, what a slow or rate-limiting endpoint cost it.
    - C(waited_s) seconds spent waiting (Retry-After pauses, a busy store waited out, a free slot under the endpoint's
      adaptive limit), C(retries) requests sent again, C(lowest_concurrency) the fewest requests the endpoint was allowed
      in flight, C(throttled) 429 answers, C(timeouts), C(slow_answers) (slower than half the
      timeout), C(requests), C(resolved_by_read_back) store writes whose lost answer was settled by reading the entry back.
  returned: when the task sent a request
  type: dict
  sample: {"http://127.0.0.1:8200": {"waited_s": 3.2, "retries": 14, "lowest_concurrency": 4, "throttled": 12,
           "timeouts": 0, "slow_answers": 0, "requests": 1520, "resolved_by_read_back": 0}}
"""

import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.tokenops.rotation.plugins.module_utils.das import DasClient, audit_findings, validate_token_id
from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils.module import InputError, TokenModule, run_module
from ansible_collections.tokenops.rotation.plugins.module_utils import validators
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import (
    iso,
    parse_time,
    utcnow,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreError
from ansible_collections.tokenops.rotation.plugins.module_utils.validators import env_fallback

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
                audit=dict(type="bool", default=False),
                managed=dict(type="list", elements="str", default=[]),
                audit_max_lifetime=dict(type="str", default="365d"),
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
        if p["audit"] and not p["api_token"]:
            raise InputError("audit lists every token of the tenant (GET /v1/tokens) and needs api_token "
                             "(or STYRA_DAS_TOKEN) with the right to list tokens")
        self.max_lifetime = validators.duration(p["audit_max_lifetime"], "audit_max_lifetime")

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
        if p["audit"]:
            managed = set(p["ids"] or []) | set(p["managed"])
            out["audit"] = audit_findings(remote, managed, self.max_lifetime, utcnow())
        if p["query"] is not None:
            out["query_result"] = self.expression.search(tokens)
        self.exit_json(**out)

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
