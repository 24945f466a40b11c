#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: secretserver_token
short_description: Keep a Delinea Secret Server OAuth2 access token alive in a store, refreshing it while the rules allow
version_added: 0.1.0
description:
  - Obtains Delinea Secret Server OAuth2 access tokens (C(POST /oauth2/token)) for API users, keeps the
    current one in the configured store, and expires them (C(POST /api/v1/oauth-expiration)).
  - Consumers read the access token from the store entry's C(secret) key. The entry also keeps the
    refresh token, its expiry, how many refreshes the chain has left, and when the chain ends.
  - An access token lives for the server's session timeout (20 minutes by default). When it is due,
    the module uses the stored refresh token. A refresh token works once, whether or not its answer
    arrives, and lives for the session timeout plus 15 minutes. Secret Server also caps the refreshes of
    one chain. So the module records its intent before the refresh, persists the new access and refresh
    token before anything else, and treats a refresh whose outcome is unknown as spent.
  - When the refresh token is spent, expired or capped, or refresh tokens are off, the module logs in with
    the password grant. With O(state=present) it never logs in while a refresh is possible.
  - With O(platform=true) the token comes from the Delinea Platform (client-credentials grant) and is used
    against the vault the platform names.
author:
  - tokenops developers (@tokenops)
extends_documentation_fragment:
  - tokenops.rotation.secretserver
  - tokenops.rotation.connection
  - tokenops.rotation.store
  - tokenops.rotation.rotation
  - tokenops.rotation.rotation.run
attributes:
  check_mode:
    support: full
    description:
      - Reads the store and checks the stored token (C(GET /api/v1/users/current)).
      - Predicts the action and the method without a grant or an expiration.
  diff_mode:
    support: full
    description: Shows fingerprints, times and the refresh chain's count; never a token.
options:
  state:
    description:
      - V(present) makes sure the store holds a usable access token. It reuses the stored one while it has
        more than O(rotate_before) left and Secret Server still accepts it, then refreshes it, and logs in
        with the password grant only when a refresh is not possible.
      - V(rotated) starts a fresh session now (password grant) and expires the replaced token.
      - V(absent) expires the stored token (HTTP 401 or 403 means it was already dead) and deletes the store entry.
    type: str
    choices: [present, rotated, absent]
    default: present
  id:
    description:
      - Name of the managed token; its store entry is C(<prefix>/secretserver/<host>/<id>).
      - Defaults to O(username). Mutually exclusive with O(tokens).
    type: str
  tokens:
    description:
      - Several tokens (of several API users) in one task, handled with O(concurrency) at a time.
      - An option an item leaves out takes the module's top-level value.
    type: list
    elements: dict
    suboptions:
      id:
        description: Name of the managed token. Defaults to the item's O(tokens[].username).
        type: str
      username:
        description: The API user.
        type: str
      password:
        description: The API user's password.
        type: str
      domain:
        description: Active Directory domain of the user.
        type: str
      otp:
        description: A fresh one-time password for this user.
        type: str
      store_path:
        description: Store entry path, instead of C(<prefix>/secretserver/<host>/<id>).
        type: str
  username:
    description:
      - The API user (a local or an Active Directory user with web-services access).
      - With O(platform=true), the platform service user's client id.
      - Falls back to the environment variable E(TSS_USERNAME).
    type: str
  password:
    description:
      - The API user's password, sent only in the password grant (form encoded), never shown.
      - With O(platform=true), the service user's client secret.
      - Required unless O(state=absent). Falls back to the environment variable E(TSS_PASSWORD).
    type: str
  domain:
    description:
      - Active Directory domain of the user, sent as the C(domain) field of the password grant.
      - Falls back to the environment variable E(TSS_DOMAIN).
    type: str
  otp:
    description:
      - A fresh one-time password (two-factor authentication), sent as the C(OTP) header of a password grant.
      - It works once. The module sends it only when a password login is needed, never twice, and not at
        all when it was already used (its fingerprint is kept). When a user with two-factor authentication
        must log in and no fresh code is given, the result is C(needs_interaction).
      - With O(tokens), give it per item.
      - Without O(tokens), falls back to the environment variable E(TSS_OTP) (a code read from the environment is
        no module argument, so it is not in the module payload Ansible writes to its temporary folder). Set it for
        the one run that logs in, not in a scheduled job's credential (a spent code fails the login).
    type: str
  store_path:
    description: Store entry path of the token, instead of C(<prefix>/secretserver/<host>/<id>).
    type: str
  refresh:
    description:
      - Use refresh tokens when the server hands them out. V(false) always logs in with the password grant.
    type: bool
    default: true
  max_refreshes:
    description:
      - The server's I(Maximum Token Refreshes Allowed) (Admin > Configuration > General). After that many
        refreshes in one chain the module logs in with the password grant instead of sending a refresh that
        is bound to fail.
      - When Secret Server refuses a refresh earlier, the module falls back to the password grant anyway.
    type: int
    default: 3
  platform:
    description:
      - Obtain the token from the Delinea Platform at O(url) with the client-credentials grant
        (C(scope=xpmheadless)), then find the Secret Server URL from C(/vaultbroker/api/vaults).
      - O(username) and O(password) are the service user's client id and secret. There are no refresh tokens.
    type: bool
    default: false
  vault_name:
    description:
      - With O(platform=true), the name of the vault to use; by default the platform's active default vault.
    type: str
  verify:
    description:
      - Check the stored token before reusing it, and every new token right after it is stored, with
        C(GET /api/v1/users/current). HTTP 401 or 403 means the token is dead.
      - After a refresh, also check whether the token it replaced still works, to learn whether this server
        ends an access token when its refresh token is used (see the notes).
    type: bool
    default: true
notes:
  - Set O(rotate_before) to at least the interval of your schedule, so that no consumer holds an expired token
    between two runs. With the default session timeout of 20 minutes, C(20%) is 4 minutes.
  - Whether a refresh ends the previous access token, and whether an expiration ends the session's refresh token,
    is not documented. The module works either way. Secret Server documents no call that revokes a refresh token,
    so O(state=absent) warns when one that was deleted from the store may still live.
  - While a refresh runs, or after one was interrupted, the C(tokenops.rotation.token) lookup hands out the stored
    token only where this server was seen to keep the replaced access token on an earlier refresh (the entry's
    C(refresh_keeps_access), learned with O(verify)); elsewhere it refuses until the new token is stored or the next
    run recovers the entry. During a login and after O(state=rotated) stored its new token, it hands the token out.
  - A replaced token is left to lapse at its expiry after a refresh (expiring it could end the new refresh token too);
    O(state=rotated) expires it.
seealso:
  - module: tokenops.rotation.secretserver_token_info
  - name: Enabling Refresh Tokens for Web Services
    description: The rules of Secret Server's refresh tokens.
    link: https://docs.delinea.com/online-help/secret-server-11-6-x/authentication/enable-refresh-token/index.htm
"""

EXAMPLES = r"""
- name: A token for the automation user, kept in OpenBao, refreshed while the chain lasts
  tokenops.rotation.secretserver_token:
    url: https://pam.example.com/SecretServer
    username: svc-automation
    # password from TSS_PASSWORD: read by the module, it is no module argument (not in the payload on disk)
    rotate_before: 10m
    store:
      backend: vault
      url: https://vault.example.com:8200

- name: Several API users in one task, one of them from Active Directory
  tokenops.rotation.secretserver_token:
    url: https://pam.example.com/SecretServer
    tokens:
      - username: svc-deploy
        password: "{{ deploy_password }}"
      - id: reports
        username: svc-reports
        domain: CORP
        password: "{{ reports_password }}"
    store:
      file_path: /etc/tokenops/store.vault
      vault_password_file: /etc/tokenops/vault-pass

- name: A user with two-factor authentication logs in once with a code; later runs refresh without one
  tokenops.rotation.secretserver_token:
    url: https://pam.example.com/SecretServer
    username: alice
    otp: "{{ otp_code }}"
  register: alice_token
  failed_when: alice_token.failed and alice_token.action != 'needs_interaction'

- name: A token from the Delinea Platform for its default vault
  tokenops.rotation.secretserver_token:
    url: https://example.delinea.app
    platform: true
    username: svc-platform@example
    password: "{{ platform_client_secret }}"

- name: End the session and delete the store entry
  tokenops.rotation.secretserver_token:
    url: https://pam.example.com/SecretServer
    id: svc-automation
    state: absent
"""

RETURN = r"""
changed:
  description: Whether Secret Server or the store changed (or would, in check mode).
  returned: always
  type: bool
action:
  description:
    - What was done (a single token). V(none) (reused), V(created), V(rotated), V(recovered) (an interrupted
      refresh or login was completed), V(revoked), V(needs_interaction) (a fresh O(otp) is needed),
      V(needs_reconcile) (a person must act; see C(msg)).
  returned: when O(tokens) is not given
  type: str
  sample: rotated
method:
  description:
    - How the current token was obtained in this run. V(reuse) (the stored one still works), V(refresh),
      V(password) or V(platform).
  returned: when the token is present
  type: str
  sample: refresh
id:
  description: The managed token's name.
  returned: when O(tokens) is not given
  type: str
  sample: svc-automation
token_id:
  description: The same as RV(id); Secret Server sessions have no id of their own.
  returned: when O(tokens) is not given
  type: str
fingerprint:
  description: C(sha256:) and the first 12 hex digits of the SHA-256 of the stored access token.
  returned: when a token is stored
  type: str
  sample: sha256:3f2a9c0d1b7e
expires_at:
  description: When the stored access token expires (UTC, ISO 8601).
  returned: when a token is stored
  type: str
  sample: "2026-12-23T06:20:00Z"
rotated_at:
  description: When the access token was last replaced (UTC, ISO 8601).
  returned: when a token is stored
  type: str
refresh_expires_at:
  description: When the stored refresh token expires (the session timeout plus 15 minutes after its grant).
  returned: when a refresh token is stored
  type: str
refreshes_remaining:
  description: How many refreshes the chain has left before a password login is needed (0 without a refresh token).
  returned: when a token is stored
  type: int
session_expires_at:
  description: The latest moment the chain keeps a live token without a password login, when every refresh is made as late as allowed.
  returned: when a token is stored
  type: str
verified:
  description: V(authorized) when the new token passed C(GET /api/v1/users/current).
  returned: when a token was obtained and O(verify=true)
  type: str
previous_expired:
  description: With O(state=rotated), whether the replaced token was expired on the server.
  returned: when O(state=rotated) replaced a token
  type: bool
expired_on_server:
  description: With O(state=absent), V(true) when Secret Server expired the token, V(false) when it was already dead, null when it was not asked.
  returned: when O(state=absent) deleted an entry
  type: bool
recovered_step:
  description:
    - The step of the interrupted run that this run settled first.
    - With RV(action=recovered) that was all; with V(rotated) the run then replaced the token (it was due, or dead).
  returned: when the run found an interrupted rotation
  type: str
store_path:
  description: The store entry of the token.
  returned: when O(tokens) is not given
  type: str
  sample: tokenops/secretserver/pam.example.com/svc-automation
store_version:
  description: The store entry's version after this run (0 when it does not exist).
  returned: when O(tokens) is not given
  type: int
pending:
  description: The intent of a refresh or login that is in progress or was interrupted.
  returned: when the store entry has one
  type: dict
backed_off:
  description: True when another run held the token and this one left it alone.
  returned: when it happened
  type: bool
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
secret:
  description: The current access token. Only with O(return_secret=true).
  returned: when O(return_secret=true)
  type: str
results:
  description: One result as above per item of O(tokens).
  returned: when O(tokens) is given
  type: list
  elements: dict
msg:
  description:
    - Why the token was replaced; or what went wrong, naming the product, the step, the HTTP status and Secret Server's error;
      or what a person must do.
  returned: when the token was replaced, on failure, and with V(needs_reconcile) or V(needs_interaction)
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


from ansible.module_utils.errors import AnsibleFallbackNotFound

from ansible_collections.tokenops.rotation.plugins.module_utils.module import (
    InputError,
    TokenModule,
    merged,
    run_module,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.secretserver import (
    PRODUCT,
    URL_HINT,
    SecretServerClient,
    error_parser,
)
from ansible_collections.tokenops.rotation.plugins.module_utils import validators
from ansible_collections.tokenops.rotation.plugins.module_utils.secretserver_rotation import (
    PRODUCT_KEY,
    SecretServerSteps,
)

TOKEN_KEYS = ("id", "username", "password", "domain", "otp", "store_path")

ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["present", "rotated", "absent"], default="present"),
    id=dict(type="str"),
    tokens=dict(type="list", elements="dict", no_log=False, options=dict(   # names and users; password and otp are no_log below
        id=dict(type="str"),
        username=dict(type="str"),
        password=dict(type="str", no_log=True),
        domain=dict(type="str"),
        otp=dict(type="str", no_log=True),
        store_path=dict(type="str"),
    )),
    username=dict(type="str", fallback=(validators.env_fallback, ["TSS_USERNAME"])),
    password=dict(type="str", no_log=True, fallback=(validators.env_fallback, ["TSS_PASSWORD"])),
    domain=dict(type="str", fallback=(validators.env_fallback, ["TSS_DOMAIN"])),
    otp=dict(type="str", no_log=True),
    store_path=dict(type="str"),
    refresh=dict(type="bool", default=True),
    max_refreshes=dict(type="int", default=3),
    platform=dict(type="bool", default=False),
    vault_name=dict(type="str"),
    verify=dict(type="bool", default=True),
)


class SecretServerTokenModule(TokenModule):
    product = PRODUCT_KEY
    product_name = PRODUCT
    url_env = "TSS_BASE_URL"
    url_hint = URL_HINT

    def __init__(self):
        super(SecretServerTokenModule, self).__init__(ARGUMENT_SPEC, mutually_exclusive=[("id", "tokens")])
        self.single = self.params["tokens"] is None

    def token_specs(self):
        return self._specs

    # -- input checks, all before any request

    def validate(self):
        p = self.params
        if p["max_refreshes"] < 0:
            raise InputError("max_refreshes must be 0 or more (the server's Maximum Token Refreshes Allowed)")
        if p["platform"] and p["vault_name"] is not None and not p["vault_name"].strip():
            raise InputError("vault_name must not be empty")
        if not p["platform"] and p["vault_name"]:
            raise InputError("vault_name only applies with platform: true")
        if p["tokens"] is None and p["otp"] is None:
            # A code belongs to one user's login: TSS_OTP only without tokens (read here, never a module argument).
            try:
                p["otp"] = validators.env_fallback("TSS_OTP")
            except AnsibleFallbackNotFound:
                pass
        items = p["tokens"] if p["tokens"] is not None else [{}]
        if not items:
            raise InputError("tokens must list at least one token")
        if p["tokens"] is not None and p["otp"] and len(items) > 1:
            raise InputError("otp works once: give it per item of tokens, not for all of them")
        specs, seen = [], set()
        for index, item in enumerate(items):
            where = "tokens[%d]" % index if p["tokens"] is not None else "the token"
            spec = merged(p, item, TOKEN_KEYS)
            if p["tokens"] is not None:
                spec["id"] = item.get("id")
            spec["id"] = spec["id"] or spec["username"]
            self._check_spec(spec, where)
            if spec["id"] in seen:
                raise InputError("token %s is listed twice" % spec["id"])
            seen.add(spec["id"])
            specs.append(spec)
        self._specs = specs

    def _check_spec(self, spec, where):
        p = self.params
        # "" is an unset variable (a missing value); blanks are a mistake that must not reach the server
        for key in ("username", "domain"):
            if spec[key] not in (None, ""):
                try:
                    validators.username(spec[key], "%s: %s" % (where, key))
                except ValueError as exc:
                    raise InputError(str(exc))
        for key in ("password", "otp"):
            if spec[key] is not None:
                validators.text(spec[key], "%s: %s" % (where, key), blank=True, secret=True)
        if not spec["id"]:
            raise InputError("%s needs an id or a username" % where)
        validators.text(spec["id"], "%s: id" % where)
        spec["path"] = self.store_path(spec["id"], spec["store_path"])
        for key in ("password", "otp"):
            self.secret(spec[key])
        if p["state"] == "absent":
            return
        missing = [k for k in ("username", "password") if not spec[k]]
        if missing:
            env = {"username": "TSS_USERNAME", "password": "TSS_PASSWORD"}
            raise InputError("%s (%s) needs %s (or the environment variable%s %s)" % (
                where, spec["id"], " and ".join(missing), "s" if len(missing) > 1 else "", " and ".join(env[k] for k in missing)))
        if p["platform"] and (spec["domain"] or spec["otp"]):
            raise InputError("%s (%s): domain and otp do not apply with platform: true (the platform's service user logs in "
                             "with its client id and secret)" % (where, spec["id"]))
        if "\\" in spec["username"] and not spec["domain"]:
            raise InputError("%s (%s): give the domain in domain, not as DOMAIN\\user in username" % (where, spec["id"]))

    # -- the run

    def run(self):
        client = SecretServerClient(self.http(error_parser=error_parser), self.secret)
        self.use_steps(SecretServerSteps(self, client))
        super(SecretServerTokenModule, self).run()


def main():
    run_module(SecretServerTokenModule)


if __name__ == "__main__":
    main()
