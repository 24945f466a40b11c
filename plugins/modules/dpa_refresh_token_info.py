#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: dpa_refresh_token_info
short_description: Report the SolarWinds DPA refresh tokens kept in a store, their expiry, and whether they and their access tokens work
version_added: 0.1.0
description:
  - For each refresh token this collection keeps in the store for a DPA server, reports its name in
    DPA, its expiry and days left, how its expiry stands against O(warn_before) and O(fail_before),
    whether it still works, and whether its access token works
    (C(GET /iwc/api/databases/monitor-information)).
  - The cached access token is probed while it is fresh; otherwise the refresh token is exchanged.
    Nothing is written, and no token is returned.
author:
  - tokenops developers (@tokenops)
extends_documentation_fragment:
  - tokenops.rotation.dpa
  - tokenops.rotation.connection
  - tokenops.rotation.store
  - tokenops.rotation.dpa.expiry
attributes:
  check_mode:
    support: full
    description: The module only reads (an exchange is a log-in, which changes nothing in DPA).
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
options:
  ids:
    description:
      - The ids of the managed refresh tokens (as in M(tokenops.rotation.dpa_refresh_token)'s O(tokenops.rotation.dpa_refresh_token#module:id)).
      - By default every DPA entry of this server in the store (C(<prefix>/dpa/<host>/)).
    type: list
    elements: str
  validate:
    description:
      - Ask DPA whether the tokens work. With V(false) only the store is read (no request is sent).
    type: bool
    default: true
seealso:
  - module: tokenops.rotation.dpa_refresh_token
"""

EXAMPLES = r"""
- name: How long do this server's refresh tokens have left, and do they work?
  tokenops.rotation.dpa_refresh_token_info:
    url: https://dpa.example.com:8124
    ca_path: /etc/pki/dpa-ca.pem
  register: dpa_tokens

- name: Tell someone a month ahead
  ansible.builtin.debug:
    msg: "{{ item.id }} ({{ item.name }}) expires in {{ item.days_left }} days"
  loop: "{{ dpa_tokens.tokens | selectattr('expiry_status', 'in', ['warn', 'fail', 'expired']) }}"
  loop_control:
    label: "{{ item.id }}"
"""

RETURN = r"""
tokens:
  description: The refresh tokens, sorted by id.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The managed token's id.
      type: str
    name:
      description: Its name in DPA (the C(sub) claim).
      type: str
    in_store:
      description: Whether the store has a refresh token for it.
      type: bool
    issued_at:
      description: When it was created in DPA (C(iat); UTC, ISO 8601), or null.
      type: str
    expires_at:
      description: When it expires (C(exp); UTC, ISO 8601), or null when it never expires.
      type: str
    never_expires:
      description: True for a refresh token without an expiry.
      type: bool
    days_left:
      description: Whole days until it expires; negative when expired; null when it never expires.
      type: int
    age_days:
      description: Whole days since it was created, when its C(iat) is known.
      type: int
    expiry_status:
      description: V(ok), V(warn), V(fail), V(expired) or V(never), against O(warn_before) and O(fail_before).
      type: str
    valid:
      description:
        - Whether the refresh token works (its cached access token is accepted, or it exchanges).
          Null with O(validate=false) or when the store has none.
      type: bool
    access_token_works:
      description:
        - Whether an access token of it authenticates at C(GET /iwc/api/databases/monitor-information)
          (the cached one while fresh, else a new one). Null when not checked.
      type: bool
    authorized:
      description: Whether that access token may read monitor information (false on HTTP 403).
      type: bool
    monitor_count:
      description: How many databases DPA monitors, as the probe saw them.
      type: int
    validated_by:
      description: V(probe) (the cached access token was accepted) or V(exchange).
      type: str
    error:
      description: Why the refresh token does not work (DPA's answer to the exchange).
      type: str
    fingerprint:
      description: Fingerprint of the stored refresh token.
      type: str
    previous:
      description: The refresh token it replaced (name, fingerprint, expiry), which may still work in DPA.
      type: dict
    pending:
      description: An adoption intent recorded in the store (in progress or interrupted).
      type: dict
    store_path:
      description: Its store entry.
      type: str
    store_version:
      description: Version of its store entry (0 when absent).
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

from ansible_collections.tokenops.rotation.plugins.module_utils.dpa import (
    URL_HINT,
    AccessTokens,
    DpaClient,
    Expiry,
    api_url,
    rejected,
    read_claims,
    threshold_seconds,
    validate_token_id,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils.module import InputError, TokenModule, run_module
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import iso, utcnow
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreError


class DpaRefreshTokenInfoModule(TokenModule):
    product = "dpa"
    product_name = "SolarWinds DPA"
    url_env = "DPA_URL"
    url_hint = URL_HINT

    def __init__(self):
        super(DpaRefreshTokenInfoModule, self).__init__(
            dict(
                ids=dict(type="list", elements="str"),
                validate=dict(type="bool", default=True),
                warn_before=dict(type="str", default="30d"),
                fail_before=dict(type="str", default="7d"),
            ),
            run_options=False,
            policy_options=False,
        )

    def validate(self):
        p = self.params
        p["url"] = api_url(p["url"])
        try:
            self.warn_seconds = threshold_seconds(p["warn_before"], "warn_before")
            self.fail_seconds = threshold_seconds(p["fail_before"], "fail_before")
        except ValueError as exc:
            raise InputError(str(exc))
        self.check_ids(validate_token_id)

    def run(self):
        p = self.params
        try:
            if p["ids"] is not None:
                ids = sorted(set(p["ids"]))
            else:
                folder = self.store_path("-").rsplit("/", 1)[0]
                ids = sorted(path[len(folder) + 1:] for path in self.store.list(folder) if "/" not in path[len(folder) + 1:])
            client = DpaClient(self.http()) if p["validate"] else None
            tokens = [self.describe(token_id, client) for token_id in ids]
        except (ApiError, StoreError) as exc:
            self.fail(str(exc))
        self.exit_json(changed=False, tokens=tokens)

    def describe(self, token_id, client):
        record, item = self.stored(self.store_path(token_id))
        item.update(id=token_id, name=None, issued_at=None, expires_at=None, never_expires=None,
                    days_left=None, age_days=None, expiry_status=None, valid=None, access_token_works=None)
        if record.get("previous"):
            prev = record["previous"]
            item["previous"] = {"token_id": prev.get("token_id"), "fingerprint": prev.get("fingerprint"),
                                "expires_at": prev.get("expires_at")}
        if not record.get("secret"):
            return item
        for value in (record.get("secret"), record.get("access_token")):
            self.secret(value)
        now = utcnow()
        claims = read_claims(record["secret"], "the stored refresh token of %s" % token_id)
        expiry = Expiry(claims, now, self.warn_seconds, self.fail_seconds)
        item.update(name=claims.name, issued_at=iso(claims.issued_at), expires_at=iso(claims.expires_at),
                    never_expires=claims.never_expires, days_left=expiry.days_left, expiry_status=expiry.status,
                    age_days=int((now - claims.issued_at).total_seconds() // 86400) if claims.issued_at else None)
        if client is not None:
            item.update(self.check(client, record, claims))
        return item

    def check(self, client, record, claims):
        """Whether the refresh token and an access token of it work; nothing is cached (an info module writes nothing)."""
        try:
            access, _renewed, how, probe = AccessTokens(client).current(record, "validate refresh token '%s'" % claims.name)
        except ApiError as exc:
            if not rejected(exc):
                raise
            # No access token of a dead refresh token works: a cached one would have passed the probe above.
            return dict(valid=False, access_token_works=False, error=str(exc))
        if probe is None:
            probe = client.probe(access)
        return dict(valid=True, validated_by=how, access_token_works=probe.works, authorized=probe.authorized,
                    monitor_count=probe.monitor_count)


def main():
    run_module(DpaRefreshTokenInfoModule)


if __name__ == "__main__":
    main()
