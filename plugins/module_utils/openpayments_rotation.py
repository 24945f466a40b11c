# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open Payments access tokens: the product's steps, run by the shared driver (driver.py).

A rotation (POST to the manage URL) kills the old token and the old manage URL at once, so the
new value and manage URL are persisted before anything else. Steps recorded in the store's
`pending` intent, whether the stored token works while each is recorded (`usable`), and how the
next run recovers each:

  granting             usable unless the stored token is dead (then it has left the store already).
                       A grant request's answer may be lost -> request a grant again (the lost one
                       cannot be found; its token expires by itself)
  continuing           (an interactive grant; no token stored yet) a continuation may have issued the
                       token -> continue again: the token, or proof that it was issued and lost (the AS
                       refuses a second continuation) -> needs_reconcile
  rotating             not usable: the old token may be dead -> POST the old manage URL again: it rotates
                       now, or answers 401, which proves the token lost -> a new grant (non-interactive)
                       or needs_reconcile (interactive)
  cancelling_previous  usable (the stored token belongs to the new grant) -> cancel the replaced grant
                       again (401: it is gone already)
  revoking, cancelling (state absent) not usable -> treated as `rotating`: the token either rotates or
                       proves dead

A grant that was replaced (a lost token, changed access) is kept in `previous` until its
cancellation (DELETE of its continuation URI) succeeds. Cancelling a grant ends every token of it,
including one another tool rotated the stored token to: the result says so (`cut_off`).

Whether a stored token still works is asked of the resource server (a signed GET that changes
nothing; 401 = dead, anything else = alive): at `verify_url` when given, else at the resource
server the wallet address advertises, when that wallet's authorization server is the one the
grants come from.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import secrets
import threading
import time

try:
    from urllib.parse import urlencode
except ImportError:  # pragma: no cover
    from urllib import urlencode  # type: ignore

from ansible_collections.tokenops.rotation.plugins.module_utils.driver import Plan, Steps
from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils.openpayments import (
    PRODUCT,
    grant_gone,
    interaction_hash,
    management_id,
    needs_interaction,
    signature_refused,
    token_dead,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import (
    FlowError,
    iso,
    minted_fields,
    parse_time,
    utcnow,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreError

NEW_SECRET = "(new token)"
# The token's fields in a record; the grant's (`grant`, `request`) outlive a revoked token.
TOKEN_KEYS = ("secret", "fingerprint", "token_id", "manage", "expires_in", "expires_at", "issued_at", "access", "verified")
# Whether the stored token keeps working while an intent at this step is recorded (the token lookup).
KEEP = "keep"   # cancel_previous: the intent stays at its step
USABLE = {"granting": True, "continuing": True, "rotating": False, "cancelling_previous": True, "revoking": False,
          "cancelling": False}


def _same_url(one, other):
    return isinstance(one, str) and isinstance(other, str) and one.rstrip("/") == other.rstrip("/")


def continue_advice(grant_id, finish_uri):
    """What continues a grant requested with finish_uri: only the interact_ref of its finish redirect does (GNAP 4.2)."""
    return ("take interact_ref from the redirect that follows the approval (the resource owner's browser is sent to "
            "%s?hash=...&interact_ref=...) and run again with it: option interact_ref (and interact_hash, the redirect's hash) "
            "of grant %s, or, with the role or rotate.yml, the job variable openpayments_interact_refs: {%s: <interact_ref>}. "
            "A run without it keeps waiting" % (finish_uri, grant_id, grant_id))


class OpenPaymentsSteps(Steps):
    product = "openpayments"
    product_name = PRODUCT

    def __init__(self, mod):
        super(OpenPaymentsSteps, self).__init__(mod)
        self.op = mod.op
        self.grant_url = self.params["url"]
        self._wallets = {}
        self._wallet_lock = threading.Lock()

    def secrets(self, record):
        found = super(OpenPaymentsSteps, self).secrets(record)
        for holder in (record.get("grant"), record.get("previous")):
            value = (holder or {}).get("continue_token")
            if isinstance(value, str) and value:
                found.append(value)
        return found

    # ------------------------------------------------------------ state present / rotated

    def present(self, token):
        spec = token.spec
        record = token.record
        grant = record.get("grant") or {}
        if record.get("lost"):
            raise self._lost_error(token, record["lost"].get("reason"), step="inspect")
        if grant.get("status") == "pending":
            return self._pending_plan(token)
        if not record.get("secret") or not record.get("manage"):
            reason = "no grant in the store" if not grant else "the store holds the grant but no live token"
            return self._grant_plan(token, reason, "created")
        if self._access_changed(record, spec):
            if grant.get("interactive"):
                self.mod.warn("%s: the grant in the store was made for other access than the task asks for; a grant that needed "
                              "the resource owner's consent is not replaced unattended. Run with state: absent and scope: grant, "
                              "then state: present, to request one for the new access" % spec["id"])
            else:
                return self._grant_plan(token, "the access asked for changed", "updated")
        due, reason = self._due(token)
        cleanup = bool(record.get("previous"))
        if not due and not cleanup:
            return Plan("none")
        if not due:
            after = self._without(record, ("previous",))
            return Plan("revoked", reason="cancelled the grant an earlier run replaced", intent="cancelling_previous",
                        usable=True, predicted=after, run=self._cleanup)
        return self._rotate_plan(token, reason, cleanup)

    def _cleanup(self, token):
        out = self.cancel_previous(token)
        if "cancelled_grant" not in out:
            out.update(action="none", changed=token.flow.may_have_changed, msg="the grant an earlier run replaced could not be "
                       "cancelled yet (see the warning); the next run tries again")
        return out

    def _access_changed(self, record, spec):
        asked = (record.get("request") or {}).get("access")
        return asked is not None and asked != spec["access"]

    def _due(self, token):
        record = token.record
        if self.params["state"] == "rotated":
            return True, "state rotated"
        due, reason = self.mod.policy.due(utcnow(), parse_time(record.get("issued_at")), parse_time(record.get("expires_at")),
                                          parse_time(record.get("rotated_at")))
        if not due:
            status, url = self.check_token(token.spec, record["secret"])
            if status == 401:
                due, reason = True, ("the stored token is refused by the resource server (HTTP 401 on %s): it was rotated, "
                                     "revoked or its grant cancelled outside this collection" % url)
        return due, reason

    @staticmethod
    def _without(record, keys):
        after = dict(record)
        for key in ("pending",) + tuple(keys):
            after.pop(key, None)
        return after

    # ------------------------------------------------------------ is the stored token alive?

    def probe_url(self, spec):
        """Where the resource server is asked about a token: verify_url, else the one the wallet address advertises."""
        if spec.get("verify_url"):
            return spec["verify_url"]
        if not self.params.get("verify", True):
            return None
        wallets = [item["identifier"] for item in spec.get("access") or [] if item.get("identifier")]
        wallets.append(self.params["client_wallet_address"])
        for wallet in wallets:
            info = self._wallet(wallet)
            # Only a resource server whose wallet trusts this authorization server can judge this grant's tokens.
            if info and info.get("resourceServer") and _same_url(info.get("authServer"), self.grant_url):
                # Listing incoming payments changes nothing; the token is checked before its access (401 before 403).
                return "%s/incoming-payments?%s" % (info["resourceServer"].rstrip("/"),
                                                    urlencode({"wallet-address": info.get("id") or wallet}))
        return None

    def _wallet(self, url):
        """The wallet address document (unsigned GET), read once per run; None when it cannot be read."""
        with self._wallet_lock:
            if url not in self._wallets:
                try:
                    body = self.op.wallet_address(url)
                except ApiError as exc:
                    self.mod.warn("could not read the wallet address %s to find its resource server (%s); tokens are "
                                  "judged by their expiry only, unless verify_url is set" % (url, exc))
                    body = None
                self._wallets[url] = body
            return self._wallets[url]

    def check_token(self, spec, value):
        """(HTTP status, URL) of the resource server's answer to a signed GET with the token; (None, None) when not asked."""
        url = self.probe_url(spec)
        if not url:
            return None, None
        try:
            return self.op.probe(url, value), url
        except ApiError as exc:
            self.mod.warn("%s: the resource server could not say whether the token works (%s); it is judged by its expiry"
                          % (spec["id"], exc))
            return None, url

    def verify(self, spec, value):
        """The new token: 'authorized' (2xx, 404) or 'authenticated' (403); None when not checked; FlowError on 401."""
        status, url = self.check_token(spec, value)
        if status is None:
            return None
        if status == 401:
            raise FlowError("Open Payments: verify: the new token of %s is stored but the resource server refuses it (HTTP 401 on %s). "
                            "If that resource server cannot judge this grant's tokens, set verify_url to one that can, or "
                            "verify: false" % (spec["id"], url), step="verify")
        return "authenticated" if status == 403 else "authorized"

    # ------------------------------------------------------------ grants

    def _grant_body(self, spec):
        body = {"access_token": {"access": spec["access"]}, "client": self.params["client_wallet_address"]}
        client_nonce = None
        if self._offers_interaction(spec):
            interact = {"start": ["redirect"]}
            if spec["finish_uri"]:
                client_nonce = secrets.token_hex(16)
                interact["finish"] = {"method": "redirect", "uri": spec["finish_uri"], "nonce": client_nonce}
            body["interact"] = interact
        return body, client_nonce

    def _offers_interaction(self, spec):
        mode = spec["interaction"]
        return mode == "offer" or (mode == "auto" and needs_interaction(spec["access"]))

    def _interactive(self, spec):
        return self._offers_interaction(spec) and needs_interaction(spec["access"])

    def _request_fields(self, spec):
        return {"access": spec["access"], "interaction": spec["interaction"], "finish_uri": spec["finish_uri"]}

    def _grant_plan(self, token, reason, action, usable=True):
        """Request a grant (after cancelling a grant an earlier run replaced but could not cancel)."""
        record = token.record
        now = iso(utcnow())
        predicted = {k: v for k, v in record.items() if k not in TOKEN_KEYS + ("lost", "previous", "pending")}
        if self._interactive(token.spec):
            predicted["grant"] = {"status": "pending", "interactive": True}
            action = "needs_interaction"
        else:
            predicted.update(fingerprint=NEW_SECRET, token_id=NEW_SECRET, issued_at=now)
            predicted["grant"] = {"status": "issued", "interactive": False}
        # A grant that waits for consent is still requested and stored by a real run: that is a change.
        return Plan(action, reason=reason, intent="granting", usable=usable, data={"reason": reason}, predicted=predicted,
                    run=lambda t: self.new_grant(t, reason, action), changed=True)

    def new_grant(self, token, reason, action, lost=None):
        """Request a grant; persist it (and its token) before anything else; then cancel the grant it replaces."""
        flow = token.flow
        spec = token.spec
        record = flow.record or {}
        out = {}
        if record.get("previous"):
            # The store keeps one replaced grant: one an earlier run could not cancel goes first.
            out.update(self.cancel_previous(token, after=KEEP, strict=True))
            record = flow.record
        body, client_nonce = self._grant_body(spec)
        try:
            answer = self.op.request_grant(self.grant_url, body)
        except ApiError as exc:
            if exc.outcome_unknown:
                raise FlowError("%s. Whether the authorization server made the grant is unknown; the intent (rotation %s) stays in the "
                                "store at %s and the next run requests a grant again (a grant made by the lost request cannot be "
                                "found, and its token expires by itself)" % (exc, flow.rotation_id, flow.path), step="grant")
            raise
        now = utcnow()
        cont = answer["continue"]
        grant = {"continue_uri": cont.get("uri"), "continue_token": (cont.get("access_token") or {}).get("value"),
                 "requested_at": iso(now), "grant_url": self.grant_url}
        changes = {"grant": grant, "request": self._request_fields(spec)}
        old = record.get("grant") or {}
        if old.get("continue_uri") and old.get("continue_token") and old.get("continue_uri") != grant["continue_uri"]:
            changes["previous"] = {"continue_uri": old["continue_uri"], "continue_token": old["continue_token"],
                                   "token_id": (lost or {}).get("token_id") or record.get("token_id"),
                                   "fingerprint": (lost or {}).get("fingerprint") or record.get("fingerprint"),
                                   "replaced_because": reason}
            if lost and lost.get("outside"):
                changes["previous"]["token_lost_outside"] = True
        remove = ("lost",)
        if "access_token" in answer:
            grant.update(status="issued", interactive=False)
            changes.update(self._token_fields(answer["access_token"], now, record, rotated=bool(lost or record.get("secret"))))
        else:
            interact = answer.get("interact") or {}
            grant.update(status="pending", interactive=True, redirect=interact.get("redirect"), as_nonce=interact.get("finish"),
                         client_nonce=client_nonce, finish_uri=spec["finish_uri"], wait=cont.get("wait"))
            remove += TOKEN_KEYS
        poll = grant["status"] == "pending" and self.mod.poll_seconds > 0 and not spec["finish_uri"]
        steps = (["cancelling_previous"] if "previous" in changes else []) + (["continuing"] if poll else [])
        self._persist_grant(token, changes, remove, grant, steps[0] if steps else None)
        if "previous" in changes:
            out.update(self.cancel_previous(token, after=("continuing", USABLE["continuing"], {}) if poll else None))
        if grant["status"] == "pending":
            if poll:
                out.update(self._poll(token, changed=True))
                return out
            out.update(action="needs_interaction", changed=True,
                       msg="the grant needs the resource owner's consent: open the redirect URL, then %s"
                       % (continue_advice(spec["id"], spec["finish_uri"]) if spec["finish_uri"] else "run again"))
            return out
        out["verified"] = self.verify(spec, flow.record["secret"])
        out["action"] = action
        out["msg"] = self._explained(reason, out)
        return out

    def _explained(self, reason, out):
        """The result's msg: why, and plainly what a cancellation of the replaced grant ended."""
        parts = [reason]
        if out.get("cut_off"):
            parts.append(out["cut_off"])
        elif out.get("cancelled_grant"):
            how = "cancelled already" if out.get("cancelled_already") else "cancelled"
            parts.append("the grant it replaced (%s) was %s" % (out["cancelled_grant"], how))
        return "; ".join(parts)

    def _persist_grant(self, token, changes, remove, grant, next_step):
        flow = token.flow
        try:
            if next_step:
                flow.persist(changes, remove=remove, next_step=next_step, secret_usable=USABLE[next_step])
            else:
                flow.persist(changes, remove=remove)
        except StoreError as exc:
            # The grant exists only in this process: cancel it rather than leave a live grant nobody can find.
            cancelled = False
            try:
                cancelled = self.op.cancel_grant(grant["continue_uri"], grant["continue_token"])
            except ApiError:
                pass
            raise FlowError("Open Payments made a grant but the store failed to save it: %s. The new grant was %s. The intent "
                            "(rotation %s) is recorded at %s, so the next run requests a grant again"
                            % (exc, "cancelled again" if cancelled else "not cancelled (its token expires by itself)",
                               flow.rotation_id, flow.path), step="persist")

    def _token_fields(self, token, now, record, rotated):
        expires_in = token.get("expires_in")
        expires_at = None
        if isinstance(expires_in, int) and not isinstance(expires_in, bool):
            expires_at = now + datetime.timedelta(seconds=expires_in)
        count = (record.get("rotation_count") or 0) + (1 if rotated else 0)
        return minted_fields(self.mod.secret(token["value"]), now, expires_at=expires_at, rotated=rotated, count=count,
                             extra={"token_id": management_id(token["manage"]), "manage": token["manage"],
                                    "expires_in": expires_in, "access": token.get("access")})

    # ------------------------------------------------------------ interactive grants

    def _pending_plan(self, token, recovering_ref=None):
        """A grant waiting for the resource owner: continue it with interact_ref, or poll it (honouring `wait`)."""
        spec = token.spec
        record = token.record
        grant = record["grant"]
        interact_ref = spec["interact_ref"] or recovering_ref
        if interact_ref:
            self._check_hash(spec, grant, interact_ref)
            predicted = dict(self._without(record, ()), fingerprint=NEW_SECRET, token_id=NEW_SECRET, issued_at=iso(utcnow()))
            predicted["grant"] = dict(grant, status="issued")
            return Plan("recovered" if token.recovering else "created", reason="continued the grant with interact_ref",
                        intent="continuing", usable=True, data={"interact_ref": interact_ref}, predicted=predicted,
                        run=lambda t: self._continue(t, interact_ref), changed=True)
        if grant.get("finish_uri"):
            return Plan("needs_interaction", changed=False,
                        reason="waiting for the resource owner: open the redirect URL, then %s" % continue_advice(spec["id"], grant["finish_uri"]))
        # Polling may issue the token (a change): it runs under the intent. Whether it does is not known beforehand.
        return Plan("needs_interaction", changed=False, intent="continuing", usable=True,
                    reason="a real run polls the authorization server; whether the grant is approved is not known here",
                    run=lambda t: self._poll(t, changed=t.recovering))

    def _check_hash(self, spec, grant, interact_ref):
        given = spec["interact_hash"]
        if not given:
            return
        if not grant.get("client_nonce") or not grant.get("as_nonce"):
            raise FlowError("%s: interact_hash was given but the grant was requested without finish_uri, so there is no hash to "
                            "check" % spec["id"], step="continue")
        expected = interaction_hash(grant["client_nonce"], grant["as_nonce"], interact_ref, grant.get("grant_url") or self.grant_url)
        # The docs say unpadded base64, Rafiki pads it (openpayments.md 2.4, 2.10 q4): both are the same hash.
        if given.rstrip("=") != expected:
            raise FlowError("%s: interact_hash does not match this grant's interaction; the redirect did not come from the "
                            "authorization server for this grant, so it was not continued" % spec["id"], step="continue")

    def _continue(self, token, interact_ref):
        spec = token.spec
        flow = token.flow
        grant = flow.record["grant"]
        self._honour_wait(grant)
        try:
            answer = self._continue_once(grant, interact_ref)
        except ApiError as exc:
            if exc.outcome_unknown:
                raise FlowError("%s. Whether the authorization server issued the token is unknown; the intent (rotation %s) stays "
                                "at %s and the next run continues again" % (exc, flow.rotation_id, flow.path), step="continue")
            if token.recovering and exc.status == 401 and exc.code == "request_denied":
                # The grant was approved and continued before: the lost continuation got its token.
                return self.token_lost(token, "the continuation of %s issued a token whose answer was lost; the AS refuses "
                                       "a second continuation (HTTP 401 request_denied)" % spec["id"], outside=False)
            if exc.status == 401 and exc.code == "request_denied":
                return {"action": "needs_interaction", "changed": False,
                        "msg": "the resource owner has not approved the grant yet (%s); open the redirect URL" % exc}
            if exc.status == 401 and grant_gone(exc):
                # The grant was cancelled (or rejected): no continuation will ever give its token.
                self._needs_consent_again(token, {"at": iso(utcnow()), "reason": "the authorization server no longer knows the "
                                                  "grant of %s (%s): it was cancelled or denied" % (spec["id"], exc)}, step="continue")
            if exc.status in (401, 404) and exc.code in ("invalid_continuation", "invalid_request") and not signature_refused(exc):
                raise FlowError("%s. The authorization server does not know interact_ref for this grant, or the resource owner "
                                "denied it" % exc, step="continue", action="needs_reconcile",
                                reconcile_steps=self._restart_steps(spec))
            raise
        return self._took_token(token, answer)

    def _restart_steps(self, spec):
        return ["Run this task with state: absent and scope: grant for %s: it cancels the grant and deletes its store entry" % spec["id"],
                "Run it with state: present and have the resource owner approve the grant at the redirect URL it returns",
                "Run it again with interact_ref (and interact_hash) from the finish redirect, or let it poll (poll_timeout)"]

    def _continue_once(self, grant, interact_ref):
        try:
            return self.op.continue_grant(grant["continue_uri"], grant["continue_token"], interact_ref)
        except ApiError as exc:
            if exc.status == 400 and exc.code == "too_fast":
                time.sleep(float(grant.get("wait") or 1))
                return self.op.continue_grant(grant["continue_uri"], grant["continue_token"], interact_ref)
            raise

    def _honour_wait(self, grant):
        """The AS answers too_fast before `wait` seconds since the grant request; do not ask sooner."""
        requested = parse_time(grant.get("requested_at"))
        wait = grant.get("wait") or 0
        if requested is not None and wait:
            left = wait - (utcnow() - requested).total_seconds()
            if left > 0:
                time.sleep(min(left, wait))

    def _poll(self, token, changed):
        spec = token.spec
        grant = token.flow.record["grant"]
        deadline = time.time() + self.mod.poll_seconds
        self._honour_wait(grant)
        while True:
            try:
                answer = self.op.continue_grant(grant["continue_uri"], grant["continue_token"])
            except ApiError as exc:
                if exc.status == 400 and exc.code == "too_fast":
                    answer = {}
                elif exc.status == 401 and exc.code == "request_denied":
                    if token.recovering:
                        return self.token_lost(token, "the interrupted poll of %s received its token and the answer was lost; "
                                               "the AS refuses to continue the grant again (HTTP 401 request_denied)" % spec["id"],
                                               outside=False)
                    raise FlowError("%s. The authorization server will not continue the grant of %s: the resource owner denied "
                                    "it, or an earlier poll received its token and the answer was lost" % (exc, spec["id"]),
                                    step="continue", action="needs_reconcile", reconcile_steps=self._restart_steps(spec))
                else:
                    raise
            if answer.get("access_token"):
                return self._took_token(token, answer)
            wait = float((answer.get("continue") or {}).get("wait") or grant.get("wait") or 1)
            if time.time() + wait > deadline:
                return {"action": "needs_interaction", "changed": changed,
                        "msg": "waiting for the resource owner to approve the grant at the redirect URL; run again (poll_timeout "
                        "lets a run wait)"}
            time.sleep(wait)

    def _took_token(self, token, answer):
        spec = token.spec
        flow = token.flow
        issued = answer.get("access_token")
        if not isinstance(issued, dict) or not issued.get("value") or not issued.get("manage"):
            return {"action": "needs_interaction", "changed": False, "msg": "the grant is not approved yet"}
        now = utcnow()
        record = flow.record
        grant = dict(record["grant"], status="issued")
        for key in ("redirect", "as_nonce", "client_nonce"):
            grant.pop(key, None)
        cont = answer.get("continue") or {}
        if (cont.get("access_token") or {}).get("value"):
            grant.update(continue_uri=cont.get("uri") or grant["continue_uri"], continue_token=cont["access_token"]["value"])
        fields = self._token_fields(issued, now, record, rotated=False)
        fields["grant"] = grant
        self._persist_minted(token, fields, "issued a token for the grant of %s" % spec["id"])
        return {"action": "recovered" if token.recovering else "created", "changed": True,
                "msg": "the grant was approved; its token is stored", "verified": self.verify(spec, issued["value"])}

    # ------------------------------------------------------------ rotation

    def _rotate_plan(self, token, reason, cleanup):
        record = token.record
        now = iso(utcnow())
        after = self._without(record, ("previous",) if cleanup else ())
        after.update(fingerprint=NEW_SECRET, token_id=NEW_SECRET, issued_at=now, rotated_at=now,
                     rotation_count=(record.get("rotation_count") or 0) + 1)
        data = {"token_id": record.get("token_id"), "reason": reason}

        def run(token):
            out = {}
            if cleanup:
                out.update(self.cancel_previous(token, after=("rotating", USABLE["rotating"], data)))
            out.update(self.rotate(token, reason))
            return out

        first = "cancelling_previous" if cleanup else "rotating"
        return Plan("recovered" if token.recovering else "rotated", reason=reason, intent=first, usable=USABLE[first], data=data,
                    predicted=after, run=run)

    def rotate(self, token, reason, ours=False):
        """POST the manage URL.

        A 401 proves the stored token dead. `ours`: under an interrupted rotation of ours, whose own
        rotation (or revocation) most likely killed it; else someone outside this collection did.
        """
        flow = token.flow
        spec = token.spec
        record = flow.record
        try:
            new = self.op.rotate_token(record["manage"], record["secret"])
        except ApiError as exc:
            if exc.outcome_unknown:
                return self._rotate_again(token, reason, exc)
            if token_dead(exc) and ours:
                return self.token_lost(token, "the interrupted step of token %s (rotation, revocation or cancellation) was carried "
                                       "out and its answer lost (%s)" % (record.get("token_id"), exc), outside=False)
            if token_dead(exc):
                return self.token_lost(token, "%s; the authorization server no longer knows token %s (%s): it was rotated or "
                                       "revoked outside this collection, or its grant was cancelled"
                                       % (reason, record.get("token_id"), exc), outside=True)
            if ours:
                raise FlowError("%s. Whether the interrupted rotation was carried out is still unknown; the intent (rotation %s) "
                                "stays at %s and the next run tries again" % (exc, flow.rotation_id, flow.path), step="rotate")
            raise     # a definite refusal (429, 5xx, invalid_rotation): nothing changed, the old token still works
        return self._rotated(token, reason, new)

    def _rotated(self, token, reason, new):
        record = token.flow.record
        fields = self._token_fields(new, utcnow(), record, rotated=True)
        self._persist_minted(token, fields, "rotated token %s" % record.get("token_id"))
        return {"verified": self.verify(token.spec, new["value"]), "action": "recovered" if token.recovering else "rotated",
                "msg": reason}

    def _rotate_again(self, token, reason, first):
        """The first POST may have rotated: the old manage URL either rotates now or proves the token lost (401)."""
        flow = token.flow
        record = flow.record
        try:
            new = self.op.rotate_token(record["manage"], record["secret"])
        except ApiError as exc:
            if token_dead(exc):
                return self.token_lost(token, "the rotation of token %s was carried out but its answer was lost (%s); the old "
                                       "token and manage URL died with it" % (record.get("token_id"), first), outside=False)
            raise FlowError("%s. Whether the authorization server rotated the token is unknown (asking again: %s). The intent "
                            "(rotation %s) stays in the store at %s; the next run asks the old manage URL again, which either "
                            "rotates or proves the token lost" % (first, exc, flow.rotation_id, flow.path), step="rotate")
        return self._rotated(token, reason, new)

    def _persist_minted(self, token, fields, what):
        flow = token.flow
        try:
            flow.persist(fields, remove=("lost", "verified"))
        except StoreError as exc:
            raise FlowError("Open Payments %s but the store failed to save the new token: %s. The old token no longer works. The "
                            "intent (rotation %s) is recorded at %s, so the next run finds the token lost and requests a new "
                            "grant (or, for a grant that needed consent, reports needs_reconcile)"
                            % (what, exc, flow.rotation_id, flow.path), step="persist")

    def token_lost(self, token, why, outside):
        """The stored token is dead: it leaves the store at once (consumers never get it again).

        Non-interactive: a new grant replaces the old one, whose cancellation follows. Interactive: a person must act.
        `outside` says the token died at someone else's hand (not under an intent of ours), so cancelling its grant
        may cut off a token another tool holds.
        """
        flow = token.flow
        record = flow.record
        lost = {"at": iso(utcnow()), "reason": why, "token_id": record.get("token_id"), "fingerprint": record.get("fingerprint"),
                "outside": outside}
        if (record.get("grant") or {}).get("interactive"):
            self._needs_consent_again(token, lost, step="rotate")
        flow.persist({}, remove=TOKEN_KEYS, next_step="granting", secret_usable=False, reason=why,
                     lost_token_id=record.get("token_id"))
        out = self.new_grant(token, why, "recovered", lost=lost)
        out["lost_token_id"] = lost["token_id"]
        return out

    def _needs_consent_again(self, token, lost, step):
        """A grant that needed consent can give no token any more: the record says why (and holds no dead token), the
        intent goes, and every run says needs_reconcile with the steps until a person acts."""
        flow = token.flow
        try:
            flow.persist({"lost": lost}, remove=TOKEN_KEYS)
        except StoreError as exc:
            raise FlowError("%s; and the store failed to record it: %s" % (self._lost_msg(flow, lost["reason"]), exc), step="persist",
                            action="needs_reconcile", reconcile_steps=self._restart_steps(token.spec))
        raise self._lost_error(token, lost["reason"], step=step)

    def _lost_msg(self, flow, why):
        return ("Open Payments: the access token stored at %s is lost: %s. Its grant needed the resource owner's consent, so a "
                "new one is not requested unattended. To restore access: 1) run this task with state: absent and scope: grant, "
                "which cancels the old grant (its continuation token is still in the store); 2) run it with state: present and "
                "have the resource owner approve the grant at the redirect URL it returns; 3) run it again with interact_ref "
                "from the finish redirect, or let it poll" % (flow.path, why))

    def _lost_error(self, token, why, step):
        return FlowError(self._lost_msg(token.flow, why), step=step, action="needs_reconcile",
                         reconcile_steps=self._restart_steps(token.spec))

    def cancel_previous(self, token, after=None, strict=False):
        """Cancel the grant a new one replaced (its continuation is kept until this succeeds).

        `after` says how the intent goes on in the same write: None clears it, KEEP keeps it at its step,
        (step, usable, data) moves it to that step. A failure is a warning (the grant stays in `previous`
        and the next run cancels it), or with `strict` an error.
        """
        flow = token.flow
        previous = flow.record["previous"]
        name = management_id(previous["continue_uri"])
        try:
            live = self.op.cancel_grant(previous["continue_uri"], previous["continue_token"])
        except ApiError as exc:
            if strict:
                raise FlowError("%s. The grant %s that an earlier run replaced could not be cancelled, so no new grant was requested "
                                "(the store keeps one replaced grant); the next run tries again" % (exc, name), step="cancel")
            self.mod.warn("the grant %s that was replaced could not be cancelled (%s); it stays in the store and the next run "
                          "cancels it" % (name, exc))
            if after not in (None, KEEP):
                step, usable, data = after
                flow.step(step, secret_usable=usable, **data)
            return {}
        if after is None:
            flow.persist({}, remove=("previous",))
        elif after is KEEP:
            flow.persist({}, remove=("previous",), keep_pending=True)
        else:
            step, usable, data = after
            flow.persist({}, remove=("previous",), next_step=step, secret_usable=usable, **data)
        out = {"cancelled_grant": name, "cancelled_already": not live}
        if previous.get("token_lost_outside"):
            if live:
                out["cut_off"] = ("grant %s was still live when it was cancelled: its token %s had been rotated or revoked outside "
                                  "this collection, so every token of that grant, including one another tool rotated it to, "
                                  "stopped working now" % (name, previous.get("token_id")))
                self.mod.warn(out["cut_off"])
            else:
                out["cut_off"] = "grant %s had been cancelled outside this collection already: nothing else was cut off" % name
        return out

    # ------------------------------------------------------------ recovery

    def recover(self, token):
        pending = token.pending
        record = token.record
        step = pending.get("step")
        grant = record.get("grant") or {}
        note = "recovered rotation %s interrupted at step %s (holder %s)" % (pending.get("rotation_id"), step, pending.get("holder"))
        if step == "continuing" and grant.get("status") == "pending":
            plan = self._pending_plan(token, recovering_ref=pending.get("interact_ref"))
            if plan.intent is None:
                plan.changed = True     # nothing to send; the interrupted intent leaves the store
            return plan
        if step in ("rotating", "revoking", "cancelling") and record.get("secret") and record.get("manage"):
            after = self._without(record, ())
            after.update(fingerprint=NEW_SECRET, token_id=NEW_SECRET, issued_at=iso(utcnow()), rotated_at=iso(utcnow()))
            return Plan("recovered", reason=note, intent="rotating", usable=False, predicted=after,
                        run=lambda t: self.rotate(t, note, ours=True))
        if step == "granting" or not record.get("secret"):
            self.mod.warn("%s: an interrupted grant request (rotation %s) may have made a grant the store has no record of; it "
                          "cannot be cancelled, and its token expires by itself" % (token.id, pending.get("rotation_id")))
            usable = bool(pending.get("secret_usable")) and bool(record.get("secret"))
            return self._grant_plan(token, note, "recovered", usable=usable)
        if step in ("cancelling_previous", "continuing"):
            # The stored token is the live one; what is left is decided as a present run would.
            plan = self.present(token)
            if plan.action == "none":
                plan.reason, plan.changed = note, True
            if plan.action != "needs_interaction":
                plan.action = "recovered"
            return plan
        return self.unknown_step(token)

    # ------------------------------------------------------------ state absent

    def absent(self, token):
        record = token.record
        if self.params["scope"] == "grant":
            return self._cancel_plan(token)
        if not record.get("secret") or not record.get("manage"):
            return Plan("none")
        after = {k: v for k, v in record.items() if k not in TOKEN_KEYS + ("pending",)}
        return Plan("revoked", intent="revoking", usable=False, data={"token_id": record.get("token_id")}, predicted=after,
                    run=self._revoke)

    def _revoke(self, token):
        flow = token.flow
        record = flow.record
        try:
            revoked = self.op.revoke_token(record["manage"], record["secret"])
        except ApiError as exc:
            if exc.outcome_unknown:
                raise FlowError("%s. Whether the token was revoked is unknown; the intent stays at %s and the next run with "
                                "state: absent revokes it again" % (exc, flow.path), step="revoke")
            raise
        flow.persist({}, remove=TOKEN_KEYS)
        if revoked:
            return {"revoked_on_server": True}
        # 401: the AS had revoked it already (or it was rotated elsewhere). Nothing changed there, but the dead
        # value left the store, and a run that writes does not report changed: false (as secretserver_token).
        return {"revoked_on_server": False,
                "msg": "the authorization server had revoked token %s already; its dead value left the store" % record.get("token_id")}

    def _cancel_plan(self, token):
        record = token.record
        if not token.flow.record:
            return Plan("none")
        grants = []
        grant = record.get("grant") or {}
        if grant.get("continue_uri") and grant.get("continue_token"):
            grants.append(grant)
        if record.get("previous"):
            grants.append(record["previous"])

        def run(token):
            flow = token.flow
            cancelled = []
            for item in grants:
                try:
                    if self.op.cancel_grant(item["continue_uri"], item["continue_token"]):
                        cancelled.append(management_id(item["continue_uri"]))
                except ApiError as exc:
                    if exc.outcome_unknown:
                        raise FlowError("%s. Whether the grant was cancelled is unknown; the intent stays at %s and the next run "
                                        "with state: absent cancels it again" % (exc, flow.path), step="cancel")
                    raise
            flow.delete()
            return {"cancelled_grants": cancelled}

        return Plan("revoked", intent="cancelling" if grants else None, usable=False, predicted={}, run=run)

    # ------------------------------------------------------------ results

    def decorate(self, token, result, record):
        record = record or {}
        grant = record.get("grant") or {}
        if grant:
            result.setdefault("grant_status", grant.get("status"))
            result.setdefault("interactive", bool(grant.get("interactive")))
        if grant.get("status") == "pending" or result.get("action") == "needs_interaction":
            # The fleet report measures how long a grant has waited for consent.
            result.setdefault("redirect", grant.get("redirect"))
            result.setdefault("grant_requested_at", grant.get("requested_at"))
            if grant.get("finish_uri"):
                result.setdefault("finish_uri", grant["finish_uri"])   # where the interact_ref that continues it arrives
        if record.get("access") is not None:
            result.setdefault("access", record["access"])
        return result
