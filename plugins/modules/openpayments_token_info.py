#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: openpayments_token_info
short_description: Report the stored Open Payments grants and access tokens with their access, expiry and whether each is due
version_added: 0.1.0
description:
  - Lists the grants the store holds for an Open Payments authorization server (the entries under
    C(<prefix>/openpayments/<host>/)), or the ones named in O(ids), and says for each what access it
    grants, when its token expires, whether the rotation policy finds it due, and whether it waits
    for the resource owner's consent.
  - Reads the store only. The authorization server has no endpoint that reads a token, so no request
    is sent to it, and no client key is needed.
  - Never returns a token or a continuation token; the stored token is described by its fingerprint.
author:
  - tokenops developers (@tokenops)
extends_documentation_fragment:
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
  url:
    description:
      - The authorization server's grant endpoint, as given to M(tokenops.rotation.openpayments_token);
        its host names the store entries.
      - Falls back to the environment variable E(OPEN_PAYMENTS_AUTH_SERVER).
  ids:
    description: Only these grants (their names in the store). Default is every grant stored for the server.
    type: list
    elements: str
seealso:
  - module: tokenops.rotation.openpayments_token
"""

EXAMPLES = r"""
- name: Which Open Payments grants are due within two minutes, and which wait for consent?
  tokenops.rotation.openpayments_token_info:
    url: https://auth.wallet.example/tenant-1
    rotate_before: 2m
  register: op_grants

- name: Show them
  ansible.builtin.debug:
    msg: "due: {{ op_grants.grants | selectattr('due') | map(attribute='id') | list }}"
"""

RETURN = r"""
grants:
  description: The stored grants, sorted by id.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The grant's name in the store.
      type: str
    grant_status:
      description: C(pending) while it waits for consent, C(issued) once it gave a token; null without a grant.
      type: str
    interactive:
      description: Whether the grant needed the resource owner's consent.
      type: bool
    redirect:
      description: Where the resource owner approves a pending grant.
      type: str
    grant_requested_at:
      description: When the stored grant was requested (UTC, ISO 8601); how long a pending grant has waited for consent.
      type: str
    access:
      description: The access granted (or asked for, while the grant is pending).
      type: list
      elements: dict
    token_id:
      description: The management id of the stored token.
      type: str
    fingerprint:
      description: Fingerprint of the stored token.
      type: str
    expires_at:
      description: When the stored token expires (UTC, ISO 8601).
      type: str
    seconds_left:
      description: Seconds until it expires; negative when expired.
      type: int
    due:
      description: Whether the policy (O(rotate_before), O(max_age)) finds the token due.
      type: bool
    due_reason:
      description: Why it is due.
      type: str
    lost:
      description: Why the token was lost, when a person must act (C(needs_reconcile)).
      type: str
    in_store:
      description: Whether the store holds an access token for the grant.
      type: bool
    pending:
      description: A step recorded in the store (in progress or interrupted).
      type: dict
    store_path:
      description: Its store entry.
      type: str
    store_version:
      description: Version of its store entry.
      type: int
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

from ansible_collections.tokenops.rotation.plugins.module_utils.module import TokenModule, run_module
from ansible_collections.tokenops.rotation.plugins.module_utils.openpayments import URL_HINT
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import parse_time, utcnow
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreError, error_text


class OpenPaymentsTokenInfoModule(TokenModule):
    product = "openpayments"
    product_name = "Open Payments"
    url_env = "OPEN_PAYMENTS_AUTH_SERVER"
    url_hint = URL_HINT

    def __init__(self):
        super(OpenPaymentsTokenInfoModule, self).__init__(dict(ids=dict(type="list", elements="str")), run_options=False)

    def validate(self):
        self.check_ids()

    def run(self):
        try:
            if self.params["ids"] is not None:
                paths = [(grant_id, self.store_path(grant_id)) for grant_id in self.params["ids"]]
            else:
                base = self.store_path("x").rsplit("/", 1)[0] + "/"
                paths = [(path[len(base):], path) for path in self.store.list(base) if path.startswith(base)]
            grants = [self.describe(grant_id, path) for grant_id, path in sorted(paths)]
        except StoreError as exc:
            self.fail("%s: %s" % (self.product_name, error_text(self.store, exc)))
        self.exit_json(changed=False, grants=grants)

    def describe(self, grant_id, path):
        now = utcnow()
        record, item = self.stored(path)
        grant = record.get("grant") or {}
        expires = parse_time(record.get("expires_at"))
        due, reason = (False, None)
        if record.get("secret"):
            due, reason = self.policy.due(now, parse_time(record.get("issued_at")), expires, parse_time(record.get("rotated_at")))
        item.update(
            id=grant_id,
            grant_status=grant.get("status"),
            interactive=bool(grant.get("interactive")) if grant else None,
            redirect=grant.get("redirect") if grant.get("status") == "pending" else None,
            grant_requested_at=grant.get("requested_at"),
            access=record.get("access") if record.get("access") is not None else (record.get("request") or {}).get("access"),
            token_id=record.get("token_id"),
            expires_at=record.get("expires_at") if record.get("secret") else None,
            seconds_left=int((expires - now).total_seconds()) if expires and record.get("secret") else None,
            due=bool(due),
            due_reason=reason,
            lost=(record.get("lost") or {}).get("reason"),
        )
        return item


def main():
    run_module(OpenPaymentsTokenInfoModule)


if __name__ == "__main__":
    main()
