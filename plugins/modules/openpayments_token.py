#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: openpayments_token
short_description: Request, continue, rotate, revoke and cancel Open Payments (GNAP) grants and access tokens
version_added: 0.1.0
description:
  - Keeps an Open Payments access token alive and in a secret store. With none stored it requests a
    grant (incoming-payment, outgoing-payment and quote access) from the authorization server; a
    grant that needs no consent gives a token at once, one that needs the resource owner's consent
    returns C(action=needs_interaction) with the redirect URL, and a later run continues it with
    O(interact_ref) or by polling.
  - A token is rotated when due (O(rotate_before), O(max_age), or O(state=rotated)) by C(POST) to its
    manage URL. Rotation kills the old token and the old manage URL at once, so the new value and
    manage URL are written to the store before anything else.
  - Every request to the authorization server is signed with the client's Ed25519 key (HTTP Message
    Signatures, RFC 9421, as Interledger's own client library signs them).
  - Every run asks the resource server whether the stored token still works (see O(verify) and
    O(verify_url)), so a token rotated or revoked by another tool, or whose grant was cancelled, is
    noticed at once instead of when it is due.
  - When a rotation's outcome is unknown (a timeout, a lost answer), the old manage URL is asked again;
    it either rotates or proves the token lost. A lost token of a grant that needed no consent leaves
    the store at once and is replaced by a new grant; one that needed consent ends in
    C(needs_reconcile) with the steps a person must take.
  - The grant a new one replaces is then cancelled, and cancelling a grant ends B(every) token of it.
    When the stored token had died at someone else's hand (rotated or revoked outside this
    collection), another tool may hold that grant's live token; it stops working too. The result
    says so in RV(cut_off) (and a warning). The grant is cancelled anyway, because an Open Payments
    grant has one live token at a time and gives the client no call that lists, rotates or revokes a
    token it does not hold. Leaving the grant up would leave a live token the store cannot see or
    end, and a new grant would be left behind every time it happened again. A tool that needs a
    token of its own should get its own grant (another O(id)) and must not rotate or revoke the
    stored token; consumers read it with the M(tokenops.rotation.token) lookup.
author:
  - tokenops developers (@tokenops)
extends_documentation_fragment:
  - tokenops.rotation.openpayments
  - tokenops.rotation.connection
  - tokenops.rotation.store
  - tokenops.rotation.rotation
  - tokenops.rotation.rotation.run
attributes:
  check_mode:
    support: full
    description: Reads the store, the wallet address and the resource server (see O(verify)), predicts the action, sends nothing that changes anything.
  diff_mode:
    support: full
    description: Shows fingerprints, token ids (management ids) and times; never a token.
options:
  state:
    description:
      - V(present) makes sure a grant with a usable access token is in the store, requesting or
        continuing a grant when there is none, and rotating the token when it is due.
      - V(rotated) rotates now.
      - V(absent) revokes the token (C(DELETE) of its manage URL); with O(scope=grant) it cancels the
        whole grant (C(DELETE) of its continuation URI) and deletes the store entry.
    type: str
    choices: [present, rotated, absent]
    default: present
  scope:
    description:
      - With O(state=absent), V(token) revokes the access token and keeps the grant in the store (a
        later O(state=present) replaces it), V(grant) cancels the grant with all its tokens and
        deletes the store entry.
      - A token the authorization server had revoked already (HTTP 401) is reported with
        RV(revoked_on_server=false); the task still reports a change when its dead value leaves the
        store, and none once the store holds nothing more to remove.
    type: str
    choices: [token, grant]
    default: token
  id:
    description:
      - The name of the grant in the store (its entry is C(<prefix>/openpayments/<host>/<id>)).
      - Mutually exclusive with O(tokens).
    type: str
  tokens:
    description:
      - Several grants in one task, handled with O(concurrency) at a time. Each item takes O(id),
        O(access), O(interaction), O(finish_uri), O(interact_ref), O(interact_hash), O(verify_url)
        and O(store_path); an option an item leaves out takes the module's top-level value.
    type: list
    elements: dict
  access:
    description:
      - What the access token may do, at most three items (one per resource type), as the grant
        request's C(access_token.access).
    type: list
    elements: dict
    suboptions:
      type:
        description: The resource type.
        type: str
        required: true
        choices: [incoming-payment, outgoing-payment, quote]
      actions:
        description:
          - incoming-payment takes C(create), C(complete), C(read), C(read-all), C(list), C(list-all);
            outgoing-payment C(create), C(read), C(read-all), C(list), C(list-all); quote C(create),
            C(read), C(read-all).
        type: list
        elements: str
        required: true
      identifier:
        description:
          - The wallet address the access is for. Required for outgoing-payment (the account it pays from).
        type: str
      limits:
        description:
          - For outgoing-payment, C(receiver) (an incoming payment URL), C(interval) (an ISO 8601
            repeating interval) and one of C(debitAmount) or C(receiveAmount)
            (C({value, assetCode, assetScale}), value a string).
        type: dict
  interaction:
    description:
      - Whether the grant request offers interaction with the resource owner (a redirect).
      - V(auto) offers it when the access includes outgoing-payment, which always needs consent.
        V(offer) always offers it (an authorization server that needs no consent issues the token at
        once anyway). V(none) never does.
    type: str
    choices: [auto, offer, none]
    default: auto
  finish_uri:
    description:
      - Where the authorization server sends the resource owner after the consent, with C(hash) and
        C(interact_ref) in the query. Without it the module polls the grant instead.
    type: str
  interact_ref:
    description:
      - The C(interact_ref) from the finish redirect, to continue a grant that waits for consent.
    type: str
  interact_hash:
    description:
      - The C(hash) from the finish redirect. When given it is checked against the grant's nonces
        before the grant is continued, so a forged redirect is refused.
    type: str
  interact_refs:
    description:
      - The C(interact_ref) of each grant's finish redirect, by grant id, for a task of several grants (O(tokens)
        or O(tokens_file)). A grant id maps to the C(interact_ref), or to a dictionary with C(interact_ref) and
        C(hash). It wins over an item's own O(interact_ref), as the newer redirect.
      - Role C(tokenops.rotation.openpayments) passes its C(openpayments_interact_refs) here, so a job can be
        given the redirect's values as an extra variable without templating the grant list.
    type: dict
  poll_timeout:
    description:
      - How long a run may wait for the resource owner to approve a grant requested without
        O(finish_uri), polling the continuation URI no sooner than the server's C(wait) allows.
      - V(0) polls at most once per run.
    type: str
    default: "0"
  verify:
    description:
      - Ask the resource server on every run whether the stored token works, and check each new
        token there. The question is a signed C(GET) that changes nothing; HTTP 401 means the token
        is dead (it is then rotated, or replaced by a new grant when its rotation is refused too),
        403 and 404 mean it is alive (its access does not cover that request).
      - Without O(verify_url) the request goes to the resource server the wallet address advertises
        (C(resourceServer) of the first access item's C(identifier), else of
        O(client_wallet_address)), as C(GET {resourceServer}/incoming-payments?wallet-address=...),
        and only when that wallet's C(authServer) is O(url), so the resource server trusts the
        tokens this authorization server issues. When no such wallet is found the token is judged
        by its expiry only.
      - V(false) judges tokens by their expiry only, unless O(verify_url) is given.
    type: bool
    default: true
  verify_url:
    description:
      - A resource server URL the token may read (for example an incoming payment or the wallet
        address's C(incoming-payments) list), used instead of the one O(verify) finds. Each new
        token is checked with a signed C(GET) there, and a stored token that gets HTTP 401 is
        rotated. It is used even with O(verify=false).
    type: str
  store_path:
    description: Store entry path of the grant, instead of C(<prefix>/openpayments/<host>/<id>).
    type: str
notes:
  - Open Payments access tokens live 10 minutes by default; the authorization server's C(expires_in)
    is honoured. The authorization server has no endpoint that reads a token, so whether a stored
    token is due comes from the store, and whether it still works from the resource server
    (O(verify), O(verify_url)).
  - While a run changes a grant, its store entry holds the run's intent; the
    M(tokenops.rotation.token) lookup hands out the stored token while a grant is requested,
    continued or a replaced grant cancelled, and refuses (saying why) while the token is rotated,
    revoked or its grant cancelled, because the stored token may be dead then.
  - The finish redirect's C(hash) is compared with and without base64 padding; the documentation
    and the reference server disagree on it.
seealso:
  - module: tokenops.rotation.openpayments_token_info
  - name: Open Payments, rotate an access token
    description: The authorization server's token management API.
    link: https://openpayments.dev/sdk/token-rotate/
"""

EXAMPLES = r"""
- name: A quote and incoming-payment grant (no consent needed), its token kept in OpenBao
  tokenops.rotation.openpayments_token:
    url: https://auth.wallet.example/tenant-1
    client_wallet_address: https://wallet.example/my-client
    key_id: my-client-key-1
    private_key_path: /etc/tokenops/op-client.pem
    id: invoicing
    access:
      - type: incoming-payment
        actions: [create, read, list]
        identifier: https://wallet.example/shop
      - type: quote
        actions: [create, read]
    rotate_before: 2m
    store:
      backend: vault
      url: https://vault.example.com:8200

- name: An outgoing-payment grant; the first run returns the redirect URL for the resource owner
  tokenops.rotation.openpayments_token:
    url: https://auth.wallet.example/tenant-1
    id: monthly-payout
    access:
      - type: outgoing-payment
        actions: [create, read]
        identifier: https://wallet.example/alice
        limits:
          interval: R12/2026-01-01T00:00:00Z/P1M
          debitAmount: {value: "50000", assetCode: USD, assetScale: 2}
    finish_uri: https://client.example/return
  register: payout

- name: After the consent, continue the grant with the interact_ref of the finish redirect
  tokenops.rotation.openpayments_token:
    url: https://auth.wallet.example/tenant-1
    id: monthly-payout
    access: "{{ payout_access }}"
    finish_uri: https://client.example/return
    interact_ref: "{{ interact_ref }}"
    interact_hash: "{{ interact_hash }}"

- name: Cancel a grant and all its tokens, and delete its store entry
  tokenops.rotation.openpayments_token:
    url: https://auth.wallet.example/tenant-1
    id: monthly-payout
    state: absent
    scope: grant
"""

RETURN = r"""
changed:
  description: Whether the authorization server or the store changed (or would, in check mode).
  returned: always
  type: bool
action:
  description:
    - What was done (a single O(id)). V(none), V(created) (a grant with a token), V(updated) (a new
      grant for changed access), V(rotated), V(revoked), V(recovered) (an interrupted step was
      completed, or a lost token was replaced by a new grant), V(needs_interaction) (the grant waits
      for the resource owner; see RV(redirect)), V(needs_reconcile) (a person must act; see C(msg)).
  returned: when O(id) is given
  type: str
  sample: rotated
id:
  description: The grant's name as given.
  returned: when O(id) is given
  type: str
token_id:
  description: The management id of the live token (the last segment of its manage URL, which holds no secret).
  returned: when O(id) is given
  type: str
  sample: 8f69de01-5bf9-4603-91ed-eeca101081f1
fingerprint:
  description: C(sha256:) and the first 12 hex digits of the SHA-256 of the stored token.
  returned: when a token is stored
  type: str
  sample: sha256:3f2a9c0d1b7e
expires_at:
  description: When the stored token expires (UTC, ISO 8601), from the server's C(expires_in).
  returned: when O(id) is given
  type: str
rotated_at:
  description: When the token was last rotated.
  returned: when O(id) is given
  type: str
grant_status:
  description: V(pending) while the grant waits for consent, V(issued) once it has given a token.
  returned: when the store holds a grant
  type: str
interactive:
  description: Whether the grant needed the resource owner's consent.
  returned: when the store holds a grant
  type: bool
redirect:
  description:
    - The URL where the resource owner approves the grant.
    - In check mode, for a grant not requested yet, null.
  returned: when RV(action=needs_interaction), and while the grant waits for consent
  type: str
finish_uri:
  description:
    - The O(finish_uri) of a grant that waits for consent. After the approval the authorization server sends the
      resource owner's browser there, with C(interact_ref) and C(hash) in the query; only a run given that
      O(interact_ref) continues the grant.
  returned: while a grant requested with O(finish_uri) waits for consent
  type: str
grant_requested_at:
  description:
    - When the grant that waits for the resource owner's consent was requested (UTC, ISO 8601), so a
      fleet report can tell how long it has waited.
    - In check mode, for a grant not requested yet, null.
  returned: when RV(action=needs_interaction), and while the grant waits for consent
  type: str
  sample: "2026-05-04T10:00:00Z"
access:
  description: The access the authorization server granted.
  returned: when a token is stored
  type: list
  elements: dict
store_path:
  description: The store entry of the grant.
  returned: when O(id) is given
  type: str
store_version:
  description: The store entry's version after this run (0 when it does not exist).
  returned: when O(id) is given
  type: int
verified:
  description: What the resource server said of the new token (see O(verify)) - C(authorized) (it may read
    there) or C(authenticated) (alive, its access does not cover that request).
  returned: when a token was minted and a resource server was asked
  type: str
cancelled_grant:
  description:
    - The continuation id of a replaced grant that this run cancelled. Cancelling a grant ends every
      token of it; see RV(cut_off).
  returned: when it happened
  type: str
cancelled_already:
  description: Whether the replaced grant had been cancelled already (outside this collection) when this run cancelled it.
  returned: with RV(cancelled_grant)
  type: bool
cut_off:
  description:
    - Said plainly, when the stored token had been rotated or revoked outside this collection (or its grant
      cancelled) and the grant it belonged to was then cancelled - whether that grant was still live, and so
      whether a token another tool rotated the stored one to stopped working with it.
  returned: when a grant whose token died outside this collection was cancelled
  type: str
  sample: "grant 0b7c... was still live when it was cancelled: its token 8f69... had been rotated or revoked outside
    this collection, so every token of that grant, including one another tool rotated it to, stopped working now"
lost_token_id:
  description: The management id of the stored token that was found dead and replaced by a new grant.
  returned: when it happened
  type: str
cancelled_grants:
  description: With O(state=absent) and O(scope=grant), the continuation ids of the grants this run cancelled.
  returned: when the store held grants to cancel
  type: list
  elements: str
pending:
  description: The intent of a step that is in progress or was interrupted.
  returned: when the store entry has one
  type: dict
backed_off:
  description: True when another run held the grant and this one left it alone.
  returned: when it happened
  type: bool
recovered_step:
  description:
    - The step of the interrupted rotation that this run settled first.
    - With RV(action=recovered) that was all; with V(rotated) the run then rotated the token too, because it was due.
  returned: when the run found an interrupted rotation
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
revoked_on_server:
  description: With O(state=absent) and O(scope=token), whether this run revoked the token at the
    authorization server (false when it had been revoked already, HTTP 401).
  returned: when a stored token was revoked
  type: bool
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
  description: What went wrong, naming the step, the HTTP status and the GNAP error code; or what a person must do.
  returned: on failure, with V(needs_interaction) and with V(needs_reconcile)
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


from ansible_collections.tokenops.rotation.plugins.module_utils.http_signatures import (
    Signer,
    load_private_key,
    validate_key_id,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.module import InputError, TokenModule, merged, run_module
from ansible_collections.tokenops.rotation.plugins.module_utils.openpayments import (
    URL_HINT,
    OpenPaymentsClient,
    needs_interaction,
    validate_access,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.openpayments_rotation import OpenPaymentsSteps
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreConfigError
from ansible_collections.tokenops.rotation.plugins.module_utils import validators

TOKEN_KEYS = ("id", "access", "interaction", "finish_uri", "interact_ref", "interact_hash", "verify_url", "store_path")
TOKEN_ITEM_TYPES = dict(id=str, access=list, interaction=str, finish_uri=str, interact_ref=str, interact_hash=str,
                        verify_url=str, store_path=str)

ACCESS_SPEC = dict(
    type=dict(type="str", required=True, choices=["incoming-payment", "outgoing-payment", "quote"]),
    actions=dict(type="list", elements="str", required=True),
    identifier=dict(type="str"),
    limits=dict(type="dict"),
)

ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["present", "rotated", "absent"], default="present"),
    scope=dict(type="str", choices=["token", "grant"], default="token"),
    id=dict(type="str"),
    tokens=dict(type="list", elements="dict", no_log=False),  # grant names and settings, not secrets
    access=dict(type="list", elements="dict", options=ACCESS_SPEC),
    interaction=dict(type="str", choices=["auto", "offer", "none"], default="auto"),
    finish_uri=dict(type="str"),
    interact_ref=dict(type="str", no_log=False),
    interact_hash=dict(type="str", no_log=False),
    interact_refs=dict(type="dict", no_log=False),
    poll_timeout=dict(type="str", default="0"),
    verify=dict(type="bool", default=True),
    verify_url=dict(type="str"),
    store_path=dict(type="str"),
    client_wallet_address=dict(type="str", fallback=(validators.env_fallback, ["OPEN_PAYMENTS_WALLET_ADDRESS"])),
    key_id=dict(type="str", no_log=False, fallback=(validators.env_fallback, ["OPEN_PAYMENTS_KEY_ID"])),
    private_key=dict(type="str", no_log=True, fallback=(validators.env_fallback, ["OPEN_PAYMENTS_PRIVATE_KEY"])),
    private_key_path=dict(type="path", no_log=False, fallback=(validators.env_fallback, ["OPEN_PAYMENTS_PRIVATE_KEY_PATH"])),
)


class OpenPaymentsTokenModule(TokenModule):
    product = "openpayments"
    product_name = "Open Payments"
    url_env = "OPEN_PAYMENTS_AUTH_SERVER"
    url_hint = URL_HINT

    def __init__(self):
        super(OpenPaymentsTokenModule, self).__init__(
            ARGUMENT_SPEC,
            mutually_exclusive=[("id", "tokens")],
            required_one_of=[("id", "tokens")],
        )
        self.single = self.params["id"] is not None

    def token_specs(self):
        return self._specs

    # -- input checks, all before any request

    def validate(self):
        p = self.params
        for name in ("client_wallet_address", "key_id"):
            if not p[name]:
                raise InputError("%s is required (or the environment variable %s)" % (
                    name, "OPEN_PAYMENTS_WALLET_ADDRESS" if name == "client_wallet_address" else "OPEN_PAYMENTS_KEY_ID"))
        p["client_wallet_address"] = validators.url(p["client_wallet_address"], "client_wallet_address",
                                                    what="the client's wallet address URL, such as https://wallet.example/alice")
        validate_key_id(p["key_id"])
        if p["private_key_path"]:
            p["private_key_path"] = validators.readable_file(p["private_key_path"], "private_key_path")
        if not p["private_key"] and not p["private_key_path"]:
            raise InputError("one of private_key or private_key_path is required (or OPEN_PAYMENTS_PRIVATE_KEY / "
                             "OPEN_PAYMENTS_PRIVATE_KEY_PATH): every request to the authorization server is signed")
        if p["private_key"] and p["private_key_path"]:
            raise InputError("give private_key or private_key_path, not both")
        if p["private_key"]:
            self.secret(p["private_key"])
        self.private_key = load_private_key(p["private_key"], p["private_key_path"])
        self.poll_seconds = validators.duration(p["poll_timeout"], "poll_timeout")
        if p["scope"] == "grant" and p["state"] != "absent":
            raise InputError("scope grant is for state absent (cancel the grant); present and rotated manage its token")
        items = p["tokens"] if p["tokens"] is not None else [{"id": p["id"]}]
        if not items:
            raise InputError("tokens must list at least one grant")
        specs, seen = [], set()
        for index, item in enumerate(items):
            where = "tokens[%d]" % index if p["tokens"] is not None else "the grant"
            unknown = sorted(str(key) for key in set(item) - set(TOKEN_KEYS))
            if unknown:
                raise InputError("%s has unknown option(s) %s; each item takes %s" % (where, validators.cut(", ".join(unknown)), ", ".join(TOKEN_KEYS)))
            for key, kind in TOKEN_ITEM_TYPES.items():
                value = item.get(key)
                if value is not None and not isinstance(value, kind):
                    raise InputError("%s: %s must be a %s, got %s (%s)"
                                     % (where, key, kind.__name__, validators.kind_of(value), validators.shown(value)))
            item = self._with_interact_ref(item, where)
            spec = merged(p, item, TOKEN_KEYS)
            spec["id"] = item.get("id") if p["tokens"] is not None else p["id"]
            if not spec["id"]:
                raise InputError("%s needs an id" % where)
            try:
                validators.text(spec["id"], "%s: id" % where)
                self.store_path(spec["id"], spec["store_path"])
            except (ValueError, StoreConfigError) as exc:
                raise InputError(str(exc))
            if spec["id"] in seen:
                raise InputError("grant %s is listed twice" % spec["id"])
            seen.add(spec["id"])
            self._check_spec(spec, "%s (grant %s)" % (where, spec["id"]) if p["tokens"] is not None else "grant %s" % spec["id"])
            specs.append(spec)
        self._specs = specs

    def _with_interact_ref(self, item, where):
        """The item with the interact_ref (and hash) that interact_refs gives its grant: the newer redirect wins."""
        given = (self.params.get("interact_refs") or {}).get(item.get("id")) if isinstance(item.get("id"), str) else None
        if given is None:
            return item
        if isinstance(given, dict):
            unknown = sorted(str(key) for key in set(given) - {"interact_ref", "hash"})
            if unknown:
                raise InputError("interact_refs: %s has unknown key(s) %s; it takes interact_ref and hash"
                                 % (item["id"], validators.cut(", ".join(unknown))))
            given = dict(interact_ref=given.get("interact_ref"), interact_hash=given.get("hash"))
        elif isinstance(given, str):
            given = dict(interact_ref=given, interact_hash=None)
        else:
            raise InputError("interact_refs: %s must be the interact_ref (a string) or a dictionary with interact_ref and hash, "
                             "got %s (for %s)" % (item["id"], validators.kind_of(given), where))
        item = dict((k, v) for k, v in item.items() if k not in ("interact_ref", "interact_hash"))
        item.update((k, v) for k, v in given.items() if v is not None)
        return item

    def _check_spec(self, spec, where):
        if spec["interaction"] not in ("auto", "offer", "none"):
            raise InputError("%s: interaction must be auto, offer or none" % where)
        if self.params["state"] != "absent":
            if spec["access"] is None:
                raise InputError("%s: access is required: what the token may do (incoming-payment, outgoing-payment, quote)" % where)
            spec["access"] = validate_access(spec["access"], "%s: access" % where)
            if spec["interaction"] == "none" and needs_interaction(spec["access"]):
                raise InputError("%s: an outgoing-payment grant always needs the resource owner's consent; interaction none "
                                 "cannot be used with it" % where)
        for key in ("finish_uri", "verify_url"):
            if spec[key] is not None:
                # both may carry a query: a redirect URI's own parameters, a resource's filter
                spec[key] = validators.url(spec[key], "%s: %s" % (where, key), query=True)
        for key in ("interact_ref", "interact_hash"):
            if spec[key] is not None:
                validators.text(spec[key], "%s: %s" % (where, key))
        if spec["interact_hash"] and not spec["interact_ref"]:
            raise InputError("%s: interact_hash comes with interact_ref, both from the finish redirect" % where)

    # -- the run

    def run(self):
        signer = Signer(self.private_key, self.params["key_id"])
        self.op = OpenPaymentsClient(self.http(), signer, secret=self.secret)
        self.use_steps(OpenPaymentsSteps(self))
        super(OpenPaymentsTokenModule, self).run()


def main():
    run_module(OpenPaymentsTokenModule)


if __name__ == "__main__":
    main()
