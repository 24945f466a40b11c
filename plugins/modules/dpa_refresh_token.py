#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: dpa_refresh_token
short_description: Validate, adopt and remove SolarWinds DPA refresh tokens kept in a store, and warn ahead of their expiry
version_added: 0.1.0
description:
  - SolarWinds DPA refresh tokens are made by an administrator in DPA's web interface (Options,
    Users & Contacts, Refresh Token Management), shown once, and exchanged at
    C(POST /iwc/api/security/oauth/token) for access tokens that live 900 seconds. DPA has no API
    that creates, renews or deletes refresh tokens, so this module does everything around them
    that can be automated.
  - O(state=present) keeps a refresh token in the store. The first time, the token given in
    O(refresh_token) is exchanged and, when that works, stored with its name (the JWT C(sub)
    claim), creation time (C(iat)) and expiry (C(exp)). Later runs validate the stored token.
  - O(state=rotated) adopts a new refresh token an administrator made. The new token is written to
    the store as the intent of the adoption, exchanged, and promoted only when the exchange works;
    the old one stays current until then and is kept as C(previous) afterwards.
  - An adoption that was interrupted (the run was killed, the store went away) is finished by the next
    run when DPA accepts its token, and withdrawn, keeping the stored token, when DPA refuses it. When
    neither works the result is C(needs_reconcile) with the steps a person takes. A later
    O(state=rotated) with another token supersedes it.
  - O(state=absent) deletes the store entry. The token itself lives on in DPA until a person deletes
    it in the web interface, which the result says plainly.
  - O(warn_before) and O(fail_before) turn the silent expiry of a refresh token into a warning and
    then a failed task, weeks ahead.
  - The JWT claims are read without checking the signature, which only DPA can do; the exchange is
    what proves a token works.
author:
  - tokenops developers (@tokenops)
extends_documentation_fragment:
  - tokenops.rotation.dpa
  - tokenops.rotation.connection
  - tokenops.rotation.store
  - tokenops.rotation.dpa.expiry
  - tokenops.rotation.rotation.run
attributes:
  check_mode:
    support: full
    description:
      - Reads the store and exchanges the refresh token (a log-in, which changes nothing in DPA),
        so the prediction is exact, including a new token that does not work; writes nothing.
  diff_mode:
    support: full
    description: Shows names, fingerprints and times; never a token.
options:
  state:
    description:
      - V(present) stores O(refresh_token) when the store has none, else validates the stored one.
        A different O(refresh_token) is not taken (a stale inventory value must not replace a newer
        token); the module warns and keeps the stored one.
      - V(rotated) adopts O(refresh_token) in place of the stored one, after an exchange proves it
        works. Nothing happens when it is already the stored one. The replaced token stays in the entry
        as C(previous), token included, until the next adoption; it still works in DPA until a person
        deletes it there, and can be adopted again meanwhile.
      - V(absent) deletes the store entry (and its C(previous)). DPA keeps the token until a person
        deletes it in Refresh Token Management, which also revokes its access tokens.
    type: str
    choices: [present, rotated, absent]
    default: present
  id:
    description:
      - The name of the managed refresh token in the store, for example C(reporting). It names the
        store entry and stays the same across adoptions, while the token's name in DPA (its C(sub))
        may change.
      - Mutually exclusive with O(tokens).
    type: str
  refresh_token:
    description:
      - The refresh token as DPA showed it when it was created (a JWT, C(eyJhbGciOiJIUzI1NiJ9....)).
      - Required with O(state=rotated). With O(state=present) it is needed only the first time; later
        runs use the stored token.
      - A string that is not a JWT with a C(sub) claim, or whose C(exp) has passed, is refused before
        any request.
      - When not given (and O(tokens) is not used), the environment variable C(DPA_REFRESH_TOKEN) is read, as the
        SolarWinds DPA AWX credential type of this collection sets it. A value read from the environment never
        becomes a module argument, so it is not in the module payload Ansible writes to its temporary folder.
        An empty variable counts as unset.
    type: str
  tokens:
    description:
      - Several refresh tokens in one task, handled with O(concurrency) at a time.
      - An option an item leaves out takes the module's top-level value, except O(refresh_token),
        which belongs to its item only.
    type: list
    elements: dict
    suboptions:
      id:
        description: As O(id).
        type: str
        required: true
      refresh_token:
        description: As O(refresh_token), for this item only (C(DPA_REFRESH_TOKEN) is not read for items).
        type: str
      refresh_token_env:
        description:
          - The name of an environment variable that holds this item's refresh token, read when
            O(tokens[].refresh_token) is not given, for example C(DPA_REFRESH_TOKEN) as the
            SolarWinds DPA AWX credential type of this collection sets it.
          - The token is read from the environment by the module, so it never becomes a module argument and is not in
            the module payload Ansible writes to its temporary folder. An unset or empty variable counts as not given.
        type: str
      store_path:
        description: As O(store_path).
        type: str
      warn_before:
        description: As O(warn_before).
        type: str
      fail_before:
        description: As O(fail_before).
        type: str
  store_path:
    description: Store entry path of the token, instead of C(<prefix>/dpa/<host>/<id>).
    type: str
  return_access_token:
    description:
      - Return an access token of the stored refresh token as RV(access_token), for later tasks that
        call the DPA API. The cached one is returned while it has more than
        O(access_token_renew_before) left and the probe (C(GET /iwc/api/databases/monitor-information))
        accepts it; otherwise the refresh token is exchanged again and the new access token is cached
        in the store entry with its expiry (check-and-set).
      - Renewing the cached access token is a write to the store (check-and-set, without an intent since nothing changes in DPA)
        and is reported as a change, action V(updated).
      - The task must set C(no_log=true); the module refuses otherwise. The
        C(tokenops.rotation.dpa_access_token) lookup does the same without a task result.
    type: bool
    default: false
  access_token_renew_before:
    description:
      - Exchange the refresh token again when the cached access token has less than this left.
    type: str
    default: 60s
seealso:
  - module: tokenops.rotation.dpa_refresh_token_info
  - plugin: tokenops.rotation.dpa_access_token
    plugin_type: lookup
  - name: Manage tokens used for authentication to the DPA API
    description: How an administrator creates and deletes refresh tokens.
    link: https://documentation.solarwinds.com/en/success_center/dpa/content/dpa-create-manage-refresh-tokens.htm
notes:
  - The access token cache lives in the refresh token's store entry. A plain O(state=present) run
    writes it only together with a change of the entry, so a run with nothing to do writes nothing.
  - An access token dies when DPA restarts, and (DPA 2020.2 and later) when its refresh token is
    deleted or expires; the probe of the cached access token finds that out.
"""

EXAMPLES = r"""
- name: Store the refresh token an administrator created, once; later runs validate the stored one
  tokenops.rotation.dpa_refresh_token:
    url: https://dpa.example.com:8124
    ca_path: /etc/pki/dpa-ca.pem
    id: reporting
    refresh_token: "{{ vault_dpa_reporting_refresh_token }}"
    store:
      backend: vault
      url: https://vault.example.com:8200

- name: Adopt the new refresh token made in DPA; the old one stays current unless the new one works
  tokenops.rotation.dpa_refresh_token:
    url: https://dpa.example.com:8124
    id: reporting
    refresh_token: "{{ new_refresh_token }}"
    state: rotated

- name: The first run in AWX, the refresh token from the SolarWinds DPA credential (DPA_REFRESH_TOKEN), not an argument
  tokenops.rotation.dpa_refresh_token:
    url: https://dpa.example.com:8124
    tokens:
      - id: reporting
        refresh_token_env: DPA_REFRESH_TOKEN
      - id: capacity-planning

- name: A nightly check of every refresh token of this DPA server
  tokenops.rotation.dpa_refresh_token:
    url: https://dpa.example.com:8124
    tokens:
      - id: reporting
      - id: capacity-planning
        warn_before: 60d
    warn_before: 30d
    fail_before: 7d

- name: An access token for the next task
  tokenops.rotation.dpa_refresh_token:
    url: https://dpa.example.com:8124
    id: reporting
    return_access_token: true
  no_log: true
  register: dpa

- name: Forget a refresh token (then delete it in DPA's web interface)
  tokenops.rotation.dpa_refresh_token:
    url: https://dpa.example.com:8124
    id: reporting
    state: absent
"""

RETURN = r"""
changed:
  description:
    - Whether the store changed (or would, in check mode). Renewing the cached access token in the store is one (action V(updated)).
  returned: always
  type: bool
action:
  description:
    - V(none), V(created) (stored for the first time), V(updated) (the cached access token was
      renewed in the store), V(rotated) (a new token adopted, also one that supersedes an interrupted adoption, then with
      RV(recovered_step)), V(recovered) (an interrupted adoption was completed, or withdrawn because DPA refuses its
      token while the stored one works), V(removed) (the store entry was deleted;
      see RV(manual_step)), V(needs_reconcile) (the stored token no longer works; see RV(msg) and RV(reconcile_steps)).
  returned: when O(id) is given
  type: str
  sample: rotated
id:
  description: The managed token's id as given.
  returned: when O(id) is given
  type: str
  sample: reporting
token_id:
  description: The refresh token's name in DPA (its C(sub) claim).
  returned: when O(id) is given
  type: str
  sample: reporting-2025-q3
fingerprint:
  description: C(sha256:) and the first 12 hex digits of the SHA-256 of the stored refresh token.
  returned: when O(id) is given and a token is stored
  type: str
  sample: sha256:3f2a9c0d1b7e
issued_at:
  description: When the refresh token was created (its C(iat) claim; UTC, ISO 8601), or null when it has none.
  returned: when a token is stored
  type: str
expires_at:
  description:
    - When the stored refresh token expires (its C(exp) claim; UTC, ISO 8601), or null when it never expires or
      nothing could be read. With V(removed), the expiry of the token that lives on in DPA.
  returned: always, in each result
  type: str
  sample: "2026-03-01T08:00:00Z"
never_expires:
  description: True for a refresh token without an C(exp) claim.
  returned: when a token is stored
  type: bool
days_left:
  description: Whole days until the refresh token expires; null when it never expires or nothing could be read.
  returned: always, in each result (failed and backed-off ones too)
  type: int
expiry_status:
  description:
    - V(ok), V(warn) (within O(warn_before)), V(fail) (within O(fail_before)), V(expired) or V(never); null when
      nothing could be read. With V(removed), the removed token's status without the thresholds.
  returned: always, in each result (failed and backed-off ones too)
  type: str
validated_by:
  description:
    - How the refresh token was found to work. V(probe) means the cached access token it issued was
      accepted by C(GET /iwc/api/databases/monitor-information); V(exchange) means a new exchange.
  returned: when a token is stored
  type: str
rotated_at:
  description: When the current refresh token was adopted in place of another (UTC, ISO 8601).
  returned: when O(id) is given
  type: str
previous:
  description: The refresh token the current one replaced. It still works in DPA until a person deletes it there.
  returned: after an adoption
  type: dict
  contains:
    token_id:
      description: Its name in DPA.
      type: str
    fingerprint:
      description: Its fingerprint.
      type: str
    expires_at:
      description: Its expiry, or null.
      type: str
    replaced_at:
      description: When it was replaced.
      type: str
manual_step:
  description: What a person must do in DPA's web interface (delete a replaced or removed refresh token there).
  returned: with V(rotated), V(removed), and V(recovered) when an interrupted adoption was completed
  type: str
reconcile_steps:
  description: What a person must do, in order, when RV(action) is V(needs_reconcile).
  returned: with V(needs_reconcile)
  type: list
  elements: str
recovered_step:
  description:
    - The step of the interrupted adoption that this run settled first (V(adopting)).
    - With RV(action=recovered) that was all; with V(rotated) the run then adopted another token, as O(state=rotated)
      asked, and C(msg) says both, in that order.
  returned: when the run found an interrupted adoption
  type: str
names_in_dpa:
  description: The names in DPA of the refresh tokens whose store entry was removed.
  returned: with V(removed)
  type: list
  elements: str
store_path:
  description: The store entry of the token.
  returned: when O(id) is given
  type: str
  sample: tokenops/dpa/dpa.example.com_8124/reporting
store_version:
  description: The store entry's version after this run (0 when it does not exist).
  returned: when O(id) is given
  type: int
pending:
  description: The intent of an adoption that is in progress or was interrupted.
  returned: when the store entry has one
  type: dict
backed_off:
  description: True when another run held the store entry and this one left it alone.
  returned: when it happened
  type: bool
holder:
  description: The run (host and process) that holds the store entry, when this one backed off.
  returned: with RV(backed_off)
  type: str
lease_expires_at:
  description: Until when that run's intent is valid unless it renews it (UTC, ISO 8601).
  returned: with RV(backed_off)
  type: str
backed_off_at:
  description: When this run found the other run's intent and left the token alone (UTC, ISO 8601).
  returned: with RV(backed_off)
  type: str
holder_state:
  description:
    - What the run that held the token had done when this run re-read the entry, after its other tokens.
    - V(finished) (its intent is gone), V(taken_over) (another run recovers it), V(working) (its lease still runs)
      or V(stopped) (its intent is still there and its lease ran out, so it died mid-rotation). The report of
      playbook C(tokenops.rotation.rotate) fails the job (V(backed_off_stale)) only for V(stopped).
  returned: with RV(backed_off), when the entry could be re-read
  type: str
  sample: finished
holder_checked_at:
  description: When RV(holder_state) was found (UTC, ISO 8601).
  returned: with RV(holder_state)
  type: str
access_token:
  description: An access token of the stored refresh token. Only with O(return_access_token=true).
  returned: when O(return_access_token=true)
  type: str
access_token_expires_at:
  description: When RV(access_token) expires (UTC, ISO 8601).
  returned: when O(return_access_token=true)
  type: str
access_token_renewed:
  description: Whether RV(access_token) comes from a new exchange rather than the cache.
  returned: when O(return_access_token=true)
  type: bool
secret:
  description: The stored refresh token. Only with O(return_secret=true).
  returned: when O(return_secret=true)
  type: str
results:
  description: One result as above per item of O(tokens).
  returned: when O(tokens) is given
  type: list
  elements: dict
msg:
  description:
    - What went wrong, naming the product, the step, the HTTP status and DPA's error code; what was
      adopted; or what a person must do.
  returned: on failure, and with V(rotated) and V(removed)
  type: str
backpressure:
  description:
    - Per store and product endpoint (C(scheme://host:port)) this task used, what a slow or rate-limiting endpoint cost it.
    - C(waited_s) seconds spent waiting (Retry-After pauses, a busy store waited out, a free slot under the endpoint's
      adaptive limit), C(retries) requests sent again, C(lowest_concurrency) the fewest requests the endpoint was allowed
      in flight (at most O(concurrency)), C(throttled) 429 answers, C(timeouts), C(slow_answers) (slower than half the
      timeout), C(requests), C(resolved_by_read_back) store writes whose lost answer was settled by reading the entry back.
  returned: when the task sent a request
  type: dict
  sample: {"http://127.0.0.1:8200": {"waited_s": 3.2, "retries": 14, "lowest_concurrency": 4, "throttled": 12,
           "timeouts": 0, "slow_answers": 0, "requests": 1520, "resolved_by_read_back": 0}}
"""

import re

from ansible.module_utils.errors import AnsibleFallbackNotFound

from ansible_collections.tokenops.rotation.plugins.module_utils.dpa import (
    URL_HINT,
    DpaClient,
    api_url,
    read_claims,
    threshold_seconds,
    validate_token_id,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.dpa_rotation import DpaSteps
from ansible_collections.tokenops.rotation.plugins.module_utils.module import (
    InputError,
    TokenModule,
    merged,
    run_module,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import utcnow
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreConfigError
from ansible_collections.tokenops.rotation.plugins.module_utils import validators

ITEM_KEYS = ("id", "store_path", "warn_before", "fail_before")

ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["present", "rotated", "absent"], default="present"),
    id=dict(type="str"),
    refresh_token=dict(type="str", no_log=True),
    tokens=dict(type="list", elements="dict", no_log=False, options=dict(  # ids and settings; refresh_token below is no_log
        id=dict(type="str", required=True),
        refresh_token=dict(type="str", no_log=True),
        refresh_token_env=dict(type="str", no_log=False),   # the name of a variable, not its value
        store_path=dict(type="str"),
        warn_before=dict(type="str"),
        fail_before=dict(type="str"),
    )),
    store_path=dict(type="str"),
    warn_before=dict(type="str", default="30d"),
    fail_before=dict(type="str", default="7d"),
    return_access_token=dict(type="bool", default=False),
    access_token_renew_before=dict(type="str", default="60s", no_log=False),
)


class DpaRefreshTokenModule(TokenModule):
    product = "dpa"
    product_name = "SolarWinds DPA"
    url_env = "DPA_URL"
    url_hint = URL_HINT

    def __init__(self):
        super(DpaRefreshTokenModule, self).__init__(
            ARGUMENT_SPEC,
            policy_options=False,
            mutually_exclusive=[("id", "tokens"), ("refresh_token", "tokens")],
            required_one_of=[("id", "tokens")],
        )
        self.single = self.params["id"] is not None

    def _mark_no_log(self, value):
        # The task that asks for the access token is no_log (checked in validate()), as with return_secret.
        if self.params.get("return_access_token"):
            return
        super(DpaRefreshTokenModule, self)._mark_no_log(value)

    # -- input checks, all before any request

    def validate(self):
        p = self.params
        p["url"] = api_url(p["url"])
        if p["return_access_token"] and not self.module.no_log:
            raise InputError("return_access_token: true puts an access token in the task result; set no_log: true on the task, "
                             "or use the tokenops.rotation.dpa_access_token lookup")
        self.renew_before = validators.duration(p["access_token_renew_before"], "access_token_renew_before")
        if p["tokens"] is not None:
            items = p["tokens"]
        else:
            items = [{"id": p["id"], "refresh_token": p["refresh_token"]}]
            if p["refresh_token"] is None and p["state"] != "absent":
                # Read here, not as an Ansible fallback: with `tokens` the variable belongs to no item but the one naming it.
                try:
                    items[0]["refresh_token"] = validators.env_fallback("DPA_REFRESH_TOKEN")
                except AnsibleFallbackNotFound:
                    pass
        if not items:
            raise InputError("tokens must list at least one token")
        now = utcnow()
        specs = []
        for index, item in enumerate(items):
            spec = merged(p, item, ITEM_KEYS)
            spec["id"] = item["id"]
            where = "tokens[%d] (%s)" % (index, spec["id"]) if p["tokens"] is not None else spec["id"]
            try:
                validate_token_id(spec["id"], "tokens[%d]: id" % index if p["tokens"] is not None else "id")
                spec["warn_seconds"] = threshold_seconds(spec["warn_before"], "warn_before")
                spec["fail_seconds"] = threshold_seconds(spec["fail_before"], "fail_before")
                self.store_path(spec["id"], spec["store_path"])
            except (ValueError, StoreConfigError) as exc:
                raise InputError(str(exc))
            given = item.get("refresh_token")
            if given is None and item.get("refresh_token_env"):
                given = self._from_env(item["refresh_token_env"], where)
            spec["refresh_token"], spec["claims"] = self._given_token(given, where, now)
            if p["state"] == "rotated" and not spec["refresh_token"]:
                raise InputError("%s: state rotated adopts the refresh_token given, and none was given" % where)
            if spec["id"] in [s["id"] for s in specs]:
                raise InputError("token %s is listed twice" % spec["id"])
            specs.append(spec)
        self._specs = specs

    @staticmethod
    def _from_env(name, where):
        """The refresh token in environment variable `name`, or None when it is unset or empty.

        Read here, by the module, so that a token a credential injects never travels as a module argument (Ansible
        writes those into the module payload on disk, which a killed job leaves behind).
        """
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise InputError("%s: refresh_token_env must be the name of an environment variable, got %s" % (where, validators.shown(name)))
        try:
            return validators.env_fallback(name)
        except AnsibleFallbackNotFound:
            return None

    def _given_token(self, token, where, now):
        if token is None or self.params["state"] == "absent":
            return None, None
        token = self.secret(token.strip())
        try:
            claims = read_claims(token, "%s: refresh_token" % where)
        except ValueError as exc:
            raise InputError(str(exc))
        if claims.expires_at is not None and claims.expires_at <= now:
            raise InputError("%s: the refresh_token given ('%s') expired at %s (its exp claim); create a new one in DPA"
                             % (where, claims.name, claims.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")))
        return token, claims

    def token_specs(self):
        return self._specs

    # -- the run

    def run(self):
        self.use_steps(DpaSteps(self, DpaClient(self.http())))
        super(DpaRefreshTokenModule, self).run()


def main():
    run_module(DpaRefreshTokenModule)


if __name__ == "__main__":
    main()
