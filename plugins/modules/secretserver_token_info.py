#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: secretserver_token_info
short_description: Report stored Delinea Secret Server tokens, whether they still work, when they expire and how many refreshes remain
version_added: 0.1.0
description:
  - Reads the store entries that M(tokenops.rotation.secretserver_token) keeps and, for each, asks Secret
    Server whether the stored access token still works (C(GET /api/v1/users/current)).
  - Says when the access token and its refresh token expire, how many refreshes the chain has left, when
    the chain ends, and whether the rotation policy finds the token due.
  - Never returns a token; the store's entry is described by its fingerprint and version.
author:
  - tokenops developers (@tokenops)
extends_documentation_fragment:
  - tokenops.rotation.secretserver
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
  ids:
    description:
      - The names of the managed tokens (the O(tokenops.rotation.secretserver_token#module:id) of each).
      - By default every entry under C(<prefix>/secretserver/<host>/). Entries at a custom C(store_path) must be named.
    type: list
    elements: str
  check:
    description:
      - Ask Secret Server whether each stored token still works. V(false) reports from the store alone.
    type: bool
    default: true
seealso:
  - module: tokenops.rotation.secretserver_token
"""

EXAMPLES = r"""
- name: Does the automation token still work, and how long does its session last?
  tokenops.rotation.secretserver_token_info:
    url: https://pam.example.com/SecretServer
    ids: [svc-automation]
  register: ss_info

- name: Fail when a token no longer works
  ansible.builtin.assert:
    that: ss_info.tokens | rejectattr('works') | list | length == 0
"""

RETURN = r"""
tokens:
  description: The tokens, sorted by id.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The managed token's name.
      type: str
    in_store:
      description: Whether the store holds an access token for it.
      type: bool
    works:
      description: Whether Secret Server accepted the stored token (null when not asked or nothing is stored).
      type: bool
    status:
      description: The HTTP status of C(GET /api/v1/users/current) with the stored token.
      type: int
    user:
      description: The user the token belongs to, as Secret Server reports it (C(id), C(username), C(display_name)).
      type: dict
    username:
      description: The user the token was obtained for, from the store.
      type: str
    domain:
      description: Its domain.
      type: str
    method:
      description: How the stored token was obtained (V(password), V(refresh) or V(platform)).
      type: str
    expires_at:
      description: When the access token expires (UTC, ISO 8601).
      type: str
    seconds_left:
      description: Seconds until it expires; negative when expired.
      type: int
    due:
      description: Whether the policy (O(rotate_before), O(max_age)) finds it due, or it no longer works.
      type: bool
    due_reason:
      description: Why it is due.
      type: str
    refresh_expires_at:
      description: When the stored refresh token expires.
      type: str
    refreshes_remaining:
      description: How many refreshes are left now (0 when the refresh token is missing or expired).
      type: int
    session_expires_at:
      description: The latest the chain keeps a live token without a password login.
      type: str
    login_required:
      description: Why the next run must log in with the password grant, when the chain is known to be over.
      type: str
    fingerprint:
      description: Fingerprint of the stored access token.
      type: str
    store_path:
      description: Its store entry.
      type: str
    store_version:
      description: Version of its store entry (0 when absent).
      type: int
    pending:
      description: An intent recorded in the store (in progress or interrupted).
      type: dict
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

from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils.module import TokenModule, run_module
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import (
    parse_time,
    utcnow,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.secretserver import (
    PRODUCT,
    URL_HINT,
    SecretServerClient,
    error_parser,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.secretserver_rotation import PRODUCT_KEY
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreError


class SecretServerTokenInfoModule(TokenModule):
    product = PRODUCT_KEY
    product_name = PRODUCT
    url_env = "TSS_BASE_URL"
    url_hint = URL_HINT

    def __init__(self):
        super(SecretServerTokenInfoModule, self).__init__(
            dict(ids=dict(type="list", elements="str"), check=dict(type="bool", default=True)),
            run_options=False,
        )

    def validate(self):
        self.check_ids()

    def run(self):
        p = self.params
        try:
            if p["ids"] is not None:
                wanted = p["ids"]
            else:
                folder = self.store_path("-").rsplit("/", 1)[0] + "/"
                wanted = [path[len(folder):] for path in self.store.list(folder)]
            client = SecretServerClient(self.http(error_parser=error_parser), self.secret) if p["check"] else None
            tokens = [self.describe(token_id, client) for token_id in sorted(wanted)]
        except (ApiError, StoreError) as exc:
            self.fail(str(exc))
        self.exit_json(changed=False, tokens=tokens)

    def describe(self, token_id, client):
        now = utcnow()
        record, item = self.stored(self.store_path(token_id))
        self.secret(record.get("secret"))
        self.secret(record.get("refresh_token"))
        expires = parse_time(record.get("expires_at"))
        refresh_expires = parse_time(record.get("refresh_expires_at"))
        refresh_alive = bool(record.get("refresh_token")) and refresh_expires is not None and refresh_expires > now
        status, user = None, None
        if client is not None and record.get("secret"):
            status, user = client.check(record.get("vault_url") or self.params["url"], record["secret"])
        due, reason = self.policy.due(now, parse_time(record.get("issued_at")), expires, parse_time(record.get("rotated_at")))
        if record.get("login_required"):
            due, reason = True, record["login_required"].get("reason")
        if status is not None and status != 200:
            due, reason = True, "the stored token no longer works (HTTP %d)" % status
        item.update(
            id=token_id,
            works=(status == 200) if status is not None else None,
            status=status,
            user=user,
            username=record.get("username"),
            domain=record.get("domain"),
            method=record.get("method"),
            expires_at=record.get("expires_at"),
            seconds_left=int((expires - now).total_seconds()) if expires else None,
            due=bool(due) if record.get("secret") else True,
            due_reason=reason if record.get("secret") else "no token in the store",
            refresh_expires_at=record.get("refresh_expires_at") if record.get("refresh_token") else None,
            refreshes_remaining=(record.get("refreshes_remaining") or 0) if refresh_alive else 0,
            session_expires_at=record.get("session_expires_at"),
            login_required=(record.get("login_required") or {}).get("reason"),
        )
        return item


def main():
    run_module(SecretServerTokenInfoModule)


if __name__ == "__main__":
    main()
