# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open Payments access tokens: the product's steps over the shared Flow.

A rotation (POST to the manage URL) kills the old token and the old manage URL at once, so the
new value and manage URL are persisted before anything else. Steps recorded in the store's
`pending` intent, and how the next run recovers each:

  granting    a grant request's answer may be lost -> request a grant again (the lost one cannot be
              found; its token expires by itself)
  continuing  a continuation may have issued the token -> continue again: the token, or proof that it
              was issued and lost (the AS refuses a second continuation) -> needs_reconcile
  rotating    the old token may be dead -> POST the old manage URL again: it rotates now, or answers 401,
              which proves the token lost -> a new grant (non-interactive) or needs_reconcile (interactive)
  revoking, cancelling (state absent) -> treated as `rotating`: the token either rotates or proves dead

A grant that was replaced (a lost token, changed access) is kept in `previous` until its
cancellation (DELETE of its continuation URI) succeeds.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import secrets
import time

from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils.module import with_diff
from ansible_collections.tokenops.rotation.plugins.module_utils.openpayments import (
    interaction_hash,
    management_id,
    needs_interaction,
    signature_refused,
    token_dead,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import (
    BackOff,
    FlowError,
    iso,
    minted_fields,
    parse_time,
    result_for,
    utcnow,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreError

NEW_SECRET = "(new token)"
# The token's fields in a record; the grant's (`grant`, `request`) outlive a revoked token.
TOKEN_KEYS = ("secret", "fingerprint", "token_id", "manage", "expires_in", "expires_at", "issued_at", "access", "verified")


class OpenPaymentsRotation:
    def __init__(self, module):
        self.mod = module
        self.op = module.op
        self.params = module.params
        self.check = module.module.check_mode
        self.grant_url = module.params["url"]

    # ------------------------------------------------------------ entry point per token

    def run(self, spec):
        flow = self.mod.flow(self.mod.store_path(spec["id"], spec["store_path"]))
        record = flow.load() or {}
        # Every secret the record holds is masked from here on, whether or not this run sends it.
        for value in (record.get("secret"), (record.get("grant") or {}).get("continue_token"),
                      (record.get("previous") or {}).get("continue_token")):
            if value:
                self.mod.secret(value)
        if flow.pending and flow.pending_is_live():
            pending = flow.pending
            raise BackOff("%s is being changed by %s since %s (rotation %s, step %s); this run left it alone" % (
                flow.path, pending.get("holder"), pending.get("started_at"), pending.get("rotation_id"), pending.get("step")))
        if self.params["state"] == "absent":
            return self.absent(flow, spec)
        if flow.pending:
            return self.recover(flow, spec)
        return self.present(flow, spec)

    # ------------------------------------------------------------ results

    def _result(self, spec, action, flow, record=None, changed=None, msg=None, **extra):
        record = record if record is not None else flow.record
        grant = (record or {}).get("grant") or {}
        if grant:
            extra.setdefault("grant_status", grant.get("status"))
            extra.setdefault("interactive", bool(grant.get("interactive")))
            if grant.get("status") == "pending" and grant.get("redirect"):
                extra.setdefault("redirect", grant["redirect"])
        if (record or {}).get("access") is not None:
            extra.setdefault("access", record["access"])
        result = result_for(spec["id"], action, flow, record=record, changed=changed, msg=msg,
                            return_secret=self.params["return_secret"] and bool((record or {}).get("secret")), **extra)
        return with_diff(result, flow.before, record, flow.path)

    def _predict(self, spec, action, flow, after, msg=None, changed=None, **extra):
        if changed is None:
            changed = action not in ("none", "needs_interaction")
        result = self._result(spec, action, flow, record=after, changed=changed, msg=msg, **extra)
        result["store_version"] = flow.version
        result.pop("secret", None)
        return result

    # ------------------------------------------------------------ state present / rotated

    def present(self, flow, spec):
        record = flow.record or {}
        grant = record.get("grant") or {}
        if record.get("lost"):
            raise FlowError(self._lost_msg(flow, record["lost"].get("reason")), step="inspect", action="needs_reconcile")
        if grant.get("status") == "pending":
            return self.continue_pending(flow, spec)
        if not record.get("secret") or not record.get("manage"):
            reason = "no grant in the store" if not grant else "the store holds the grant but no live token"
            return self.new_grant(flow, spec, reason, action="created")
        if self._access_changed(record, spec):
            if grant.get("interactive"):
                self.mod.warn("%s: the grant in the store was made for other access than the task asks for; a grant that needed "
                              "the resource owner's consent is not replaced unattended. Run with state: absent and scope: grant, "
                              "then state: present, to request one for the new access" % spec["id"])
            else:
                return self.new_grant(flow, spec, "the access asked for changed", action="updated")
        cleanup = bool(record.get("previous"))
        due, reason = self._due(record, spec)
        if self.check:
            after = dict(record)
            if due:
                after.update(fingerprint=NEW_SECRET, token_id=NEW_SECRET, issued_at=iso(utcnow()), rotated_at=iso(utcnow()),
                             rotation_count=(record.get("rotation_count") or 0) + 1)
            if cleanup:
                after.pop("previous", None)
            return self._predict(spec, "rotated" if due else ("revoked" if cleanup else "none"), flow, after, msg=reason)
        extra = {}
        if cleanup:
            extra.update(self.cancel_previous(flow))
        if due:
            return self.rotate(flow, spec, reason, **extra)
        return self._result(spec, "revoked" if cleanup else "none", flow, **extra)

    def _access_changed(self, record, spec):
        asked = (record.get("request") or {}).get("access")
        return asked is not None and asked != spec["access"]

    def _due(self, record, spec):
        if self.params["state"] == "rotated":
            return True, "state rotated"
        now = utcnow()
        due, reason = self.mod.policy.due(now, parse_time(record.get("issued_at")), parse_time(record.get("expires_at")),
                                          parse_time(record.get("rotated_at")))
        if not due and spec["verify_url"]:
            if self.op.probe(spec["verify_url"], record["secret"]) == 401:
                due, reason = True, "the stored token is refused by the resource server (HTTP 401 on %s)" % spec["verify_url"]
        return due, reason

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

    def _request_fields(self, spec):
        return {"access": spec["access"], "interaction": spec["interaction"], "finish_uri": spec["finish_uri"]}

    def new_grant(self, flow, spec, reason, action="created", recovering=False):
        """Request a grant; persist it (and its token) before anything else; cancel the grant it replaces."""
        record = flow.record or {}
        interactive = self._offers_interaction(spec) and needs_interaction(spec["access"])
        if self.check:
            after = {k: v for k, v in record.items() if k not in TOKEN_KEYS + ("lost", "previous")}
            if not interactive:
                after.update(fingerprint=NEW_SECRET, token_id=NEW_SECRET, issued_at=iso(utcnow()))
            predicted = "needs_interaction" if interactive else ("recovered" if recovering else action)
            # A grant that needs consent is still requested and stored by a real run: that is a change.
            return self._predict(spec, predicted, flow, after, msg=reason, changed=True)
        if recovering:
            flow.step("granting", reason=reason)
        else:
            flow.begin("granting", reason=reason)
        body, client_nonce = self._grant_body(spec)
        try:
            answer = self.op.request_grant(self.grant_url, body)
        except ApiError as exc:
            if exc.outcome_unknown:
                raise FlowError("%s. Whether the authorization server made the grant is unknown; the intent (rotation %s) stays in the "
                                "store at %s and the next run requests a grant again (a grant made by the lost request cannot be "
                                "found, and its token expires by itself)" % (exc, flow.rotation_id, flow.path), step="grant")
            if record.get("secret") or recovering:
                # The stored token is dead or unknown: the intent stays as the record of why.
                raise FlowError("%s. The intent (rotation %s) stays in the store at %s; the next run requests a grant again"
                                % (exc, flow.rotation_id, flow.path), step="grant")
            flow.abandon()
            raise
        now = utcnow()
        cont = answer["continue"]
        grant = {"continue_uri": cont.get("uri"), "continue_token": (cont.get("access_token") or {}).get("value"),
                 "requested_at": iso(now), "grant_url": self.grant_url}
        changes = {"grant": grant, "request": self._request_fields(spec)}
        old = record.get("grant") or {}
        if old.get("continue_uri") and old.get("continue_token") and old.get("continue_uri") != grant["continue_uri"]:
            changes["previous"] = {"continue_uri": old["continue_uri"], "continue_token": old["continue_token"],
                                   "token_id": record.get("token_id"), "fingerprint": record.get("fingerprint")}
        remove = ("lost",)
        if "access_token" in answer:
            grant.update(status="issued", interactive=False)
            changes.update(self._token_fields(answer["access_token"], now, record, rotated=bool(record.get("secret"))))
        else:
            interact = answer.get("interact") or {}
            grant.update(status="pending", interactive=True, redirect=interact.get("redirect"), as_nonce=interact.get("finish"),
                         client_nonce=client_nonce, finish_uri=spec["finish_uri"], wait=cont.get("wait"))
            remove += TOKEN_KEYS
        self._persist_grant(flow, changes, remove, grant)
        extra = self.cancel_previous(flow) if flow.record.get("previous") else {}
        if grant["status"] == "pending":
            if self.mod.poll_seconds > 0 and not spec["finish_uri"]:
                return self.continue_pending(flow, spec, changed=True)
            return self._result(spec, "needs_interaction", flow, changed=True,
                                msg="the grant needs the resource owner's consent: open the redirect URL, then run again%s"
                                % (" with interact_ref from the finish redirect" if spec["finish_uri"] else ""), **extra)
        extra["verified"] = self.verify(spec, flow.record["secret"])
        return self._result(spec, "recovered" if recovering else action, flow, msg=reason, **extra)

    def _persist_grant(self, flow, changes, remove, grant):
        try:
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

    def continue_pending(self, flow, spec, changed=False, recovering=False):
        """A grant waiting for the resource owner: continue it with interact_ref, or poll it (honouring `wait`)."""
        record = flow.record
        grant = record["grant"]
        interact_ref = spec["interact_ref"]
        if recovering and not interact_ref:
            interact_ref = (flow.pending or {}).get("interact_ref")
        if interact_ref:
            self._check_hash(spec, grant, interact_ref)
            if self.check:
                after = dict(record, fingerprint=NEW_SECRET, token_id=NEW_SECRET, issued_at=iso(utcnow()))
                return self._predict(spec, "created", flow, after, msg="would continue the grant with interact_ref")
            return self._continue(flow, spec, interact_ref, recovering)
        if grant.get("finish_uri"):
            return self._result(spec, "needs_interaction", flow, changed=changed,
                                msg="waiting for the resource owner: open the redirect URL; the AS then redirects to %s, and "
                                "interact_ref from that redirect continues the grant (run again with interact_ref)" % grant["finish_uri"])
        if self.check:
            return self._predict(spec, "needs_interaction", flow, record,
                                 msg="a real run polls the authorization server; whether the grant is approved is not known here")
        return self._poll(flow, spec, changed)

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

    def _continue(self, flow, spec, interact_ref, recovering):
        grant = flow.record["grant"]
        if recovering:
            flow.step("continuing", interact_ref=interact_ref)
        else:
            flow.begin("continuing", interact_ref=interact_ref)
        self._honour_wait(grant)
        try:
            answer = self._continue_once(grant, interact_ref)
        except ApiError as exc:
            if exc.outcome_unknown:
                raise FlowError("%s. Whether the authorization server issued the token is unknown; the intent (rotation %s) stays "
                                "at %s and the next run continues again" % (exc, flow.rotation_id, flow.path), step="continue")
            if recovering and exc.status == 401 and exc.code == "request_denied":
                # The grant was approved and continued before: the lost continuation got its token.
                return self.token_lost(flow, spec, "the continuation of %s issued a token whose answer was lost; the AS refuses "
                                       "a second continuation (HTTP 401 request_denied)" % spec["id"])
            flow.abandon()
            if exc.status == 401 and exc.code == "request_denied":
                return self._result(spec, "needs_interaction", flow, changed=False,
                                    msg="the resource owner has not approved the grant yet (%s); open the redirect URL" % exc)
            if exc.status in (401, 404) and exc.code in ("invalid_continuation", "invalid_request") and not signature_refused(exc):
                raise FlowError("%s. The authorization server does not know interact_ref for this grant, or the resource owner "
                                "denied it. To start over, run with state: absent and scope: grant, then state: present" % exc,
                                step="continue", action="needs_reconcile")
            raise
        return self._took_token(flow, spec, answer, recovering)

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

    def _poll(self, flow, spec, changed):
        grant = flow.record["grant"]
        deadline = time.time() + self.mod.poll_seconds
        self._honour_wait(grant)
        while True:
            try:
                answer = self.op.continue_grant(grant["continue_uri"], grant["continue_token"])
            except ApiError as exc:
                if exc.status == 400 and exc.code == "too_fast":
                    answer = {}
                elif exc.status == 401 and exc.code == "request_denied":
                    raise FlowError("%s. The authorization server will not continue the grant of %s: the resource owner denied "
                                    "it, or an earlier poll received its token and the answer was lost. Run with state: absent "
                                    "and scope: grant, then state: present to ask for consent again" % (exc, spec["id"]),
                                    step="continue", action="needs_reconcile")
                else:
                    raise
            if answer.get("access_token"):
                return self._took_token(flow, spec, answer, recovering=False, begun=False)
            wait = float((answer.get("continue") or {}).get("wait") or grant.get("wait") or 1)
            if time.time() + wait > deadline:
                return self._result(spec, "needs_interaction", flow, changed=changed,
                                    msg="waiting for the resource owner to approve the grant at the redirect URL; run again "
                                    "(poll_timeout lets a run wait)")
            time.sleep(wait)

    def _took_token(self, flow, spec, answer, recovering, begun=True):
        token = answer.get("access_token")
        if not isinstance(token, dict) or not token.get("value") or not token.get("manage"):
            if begun:
                flow.abandon()
            return self._result(spec, "needs_interaction", flow, changed=False, msg="the grant is not approved yet")
        now = utcnow()
        record = flow.record
        grant = dict(record["grant"], status="issued")
        for key in ("redirect", "as_nonce", "client_nonce"):
            grant.pop(key, None)
        cont = answer.get("continue") or {}
        if (cont.get("access_token") or {}).get("value"):
            grant.update(continue_uri=cont.get("uri") or grant["continue_uri"], continue_token=cont["access_token"]["value"])
        fields = self._token_fields(token, now, record, rotated=False)
        fields["grant"] = grant
        self._persist_minted(flow, fields, "issued a token for the grant of %s" % spec["id"])
        verified = self.verify(spec, token["value"])
        return self._result(spec, "recovered" if recovering else "created", flow, changed=True, verified=verified)

    # ------------------------------------------------------------ rotation

    def rotate(self, flow, spec, reason, recovering=False, **extra):
        record = flow.record
        if not recovering:
            flow.begin("rotating", token_id=record.get("token_id"), reason=reason)
        try:
            new = self.op.rotate_token(record["manage"], record["secret"])
        except ApiError as exc:
            if exc.outcome_unknown:
                new, lost = self._rotate_again(flow, spec, exc)
                if lost is not None:
                    return lost
            elif token_dead(exc):
                return self.token_lost(flow, spec, "the authorization server no longer knows token %s (%s: revoked, rotated "
                                       "elsewhere or its grant cancelled)" % (record.get("token_id"), exc))
            elif recovering:
                raise FlowError("%s. Whether the interrupted rotation was carried out is still unknown; the intent (rotation %s) "
                                "stays at %s and the next run tries again" % (exc, flow.rotation_id, flow.path), step="rotate")
            else:
                # A definite refusal (429, 5xx, invalid_rotation): nothing changed, the old token still works.
                flow.abandon()
                raise
        fields = self._token_fields(new, utcnow(), record, rotated=True)
        self._persist_minted(flow, fields, "rotated token %s" % record.get("token_id"))
        extra["verified"] = self.verify(spec, new["value"])
        action = "recovered" if recovering else "rotated"
        return self._result(spec, action, flow, msg=reason if not recovering else "recovered an interrupted %s" % reason, **extra)

    def _rotate_again(self, flow, spec, first):
        """The first POST may have rotated: the old manage URL either rotates now or proves the token lost (401)."""
        record = flow.record
        try:
            return self.op.rotate_token(record["manage"], record["secret"]), None
        except ApiError as exc:
            if token_dead(exc):
                return None, self.token_lost(flow, spec, "the rotation of token %s was carried out but its answer was lost (%s); "
                                             "the old token and manage URL died with it" % (record.get("token_id"), first))
            raise FlowError("%s. Whether the authorization server rotated the token is unknown (asking again: %s). The intent "
                            "(rotation %s) stays in the store at %s; the next run asks the old manage URL again, which either "
                            "rotates or proves the token lost" % (first, exc, flow.rotation_id, flow.path), step="rotate")

    def _persist_minted(self, flow, fields, what):
        try:
            flow.persist(fields, remove=("lost", "verified"))
        except StoreError as exc:
            raise FlowError("Open Payments %s but the store failed to save the new token: %s. The old token no longer works. The "
                            "intent (rotation %s) is recorded at %s, so the next run finds the token lost and requests a new "
                            "grant (or, for a grant that needed consent, reports needs_reconcile)"
                            % (what, exc, flow.rotation_id, flow.path), step="persist")

    def token_lost(self, flow, spec, why):
        """The live token is gone. Non-interactive: a new grant replaces the old; interactive: a person must act."""
        record = flow.record
        if not (record.get("grant") or {}).get("interactive"):
            return self.new_grant(flow, spec, why, recovering=True)
        lost = {"at": iso(utcnow()), "reason": why, "token_id": record.get("token_id"), "fingerprint": record.get("fingerprint")}
        try:
            flow.persist({"lost": lost}, remove=TOKEN_KEYS)
        except StoreError as exc:
            raise FlowError("%s; and the store failed to record it: %s" % (self._lost_msg(flow, why), exc), step="persist",
                            action="needs_reconcile")
        raise FlowError(self._lost_msg(flow, why), step="rotate", action="needs_reconcile")

    def _lost_msg(self, flow, why):
        return ("Open Payments: the access token stored at %s is lost: %s. Its grant needed the resource owner's consent, so a "
                "new one is not requested unattended. To restore access: 1) run this task with state: absent and scope: grant, "
                "which cancels the old grant (its continuation token is still in the store); 2) run it with state: present and "
                "have the resource owner approve the grant at the redirect URL it returns; 3) run it again with interact_ref "
                "from the finish redirect, or let it poll" % (flow.path, why))

    def cancel_previous(self, flow):
        """Cancel the grant a new one replaced (its continuation is kept until this succeeds)."""
        previous = flow.record["previous"]
        try:
            gone = not self.op.cancel_grant(previous["continue_uri"], previous["continue_token"])
        except ApiError as exc:
            self.mod.warn("the grant %s that was replaced could not be cancelled (%s); it stays in the store and the next run "
                          "cancels it" % (management_id(previous["continue_uri"]), exc))
            return {}
        flow.persist({}, remove=("previous",), keep_pending=bool(flow.pending))
        return {"cancelled_grant": management_id(previous["continue_uri"]), "cancelled_already": gone}

    # ------------------------------------------------------------ verification

    def verify(self, spec, token):
        """'authorized' (2xx, 404) or 'authenticated' (403) from the resource server; None without verify_url."""
        if not spec["verify_url"]:
            return None
        status = self.op.probe(spec["verify_url"], token)
        if status == 401:
            raise FlowError("Open Payments: verify: the new token of %s is stored but the resource server refuses it (HTTP 401 on %s)"
                            % (spec["id"], spec["verify_url"]), step="verify")
        return "authenticated" if status == 403 else "authorized"

    # ------------------------------------------------------------ recovery

    def recover(self, flow, spec):
        pending = flow.pending
        step = pending.get("step")
        if self.check:
            return self._predict(spec, "recovered", flow, flow.record, msg="would recover the interrupted step %s of rotation %s"
                                 % (step, pending.get("rotation_id")))
        flow.adopt_pending()
        record = flow.record
        if step == "continuing" and (record.get("grant") or {}).get("status") == "pending":
            result = self.continue_pending(flow, spec, recovering=True)
        elif record.get("secret") and record.get("manage") and step in ("rotating", "revoking", "cancelling"):
            result = self.rotate(flow, spec, "rotation (step %s)" % step, recovering=True)
        elif step == "granting" or not record.get("secret"):
            self.mod.warn("%s: an interrupted grant request (rotation %s) may have made a grant the store has no record of; it "
                          "cannot be cancelled, and its token expires by itself" % (spec["id"], pending.get("rotation_id")))
            result = self.new_grant(flow, spec, "an interrupted grant request", recovering=True)
        else:
            raise FlowError("%s: the store entry has an intent at an unknown step %r; a person must look at it" % (flow.path, step),
                            step="recover", action="needs_reconcile")
        result["recovered_step"] = step
        return result

    # ------------------------------------------------------------ state absent

    def absent(self, flow, spec):
        record = flow.record or {}
        if self.params["scope"] == "grant":
            return self._cancel(flow, spec, record)
        if not record.get("secret") or not record.get("manage"):
            return self._result(spec, "none", flow)
        after = {k: v for k, v in record.items() if k not in TOKEN_KEYS + ("pending",)}
        if self.check:
            return self._predict(spec, "revoked", flow, after)
        flow.begin("revoking", token_id=record.get("token_id"))
        try:
            revoked = self.op.revoke_token(record["manage"], record["secret"])
        except ApiError as exc:
            if exc.outcome_unknown:
                raise FlowError("%s. Whether the token was revoked is unknown; the intent stays at %s and the next run with "
                                "state: absent revokes it again" % (exc, flow.path), step="revoke")
            flow.abandon()
            raise
        flow.persist({}, remove=TOKEN_KEYS)
        if revoked:
            return self._result(spec, "revoked", flow, revoked_on_server=True)
        # 401: the AS had revoked it already (or it was rotated elsewhere). Nothing changed there, but the dead
        # value left the store, and a run that writes does not report changed: false (as secretserver_token).
        return self._result(spec, "revoked", flow, revoked_on_server=False,
                            msg="the authorization server had revoked token %s already; its dead value left the store" % record.get("token_id"))

    def _cancel(self, flow, spec, record):
        if not record:
            return self._result(spec, "none", flow)
        if self.check:
            result = self._predict(spec, "revoked", flow, {})
            result["store_version"] = flow.version
            return result
        grants = []
        grant = record.get("grant") or {}
        if grant.get("continue_uri") and grant.get("continue_token"):
            flow.begin("cancelling")
            grants.append(grant)
        if record.get("previous"):
            grants.append(record["previous"])
        cancelled = []
        for item in grants:
            try:
                if self.op.cancel_grant(item["continue_uri"], item["continue_token"]):
                    cancelled.append(management_id(item["continue_uri"]))
            except ApiError as exc:
                if exc.outcome_unknown:
                    raise FlowError("%s. Whether the grant was cancelled is unknown; the intent stays at %s and the next run with "
                                    "state: absent cancels it again" % (exc, flow.path), step="cancel")
                if flow.pending:
                    flow.abandon()
                raise
        flow.delete()
        result = self._result(spec, "revoked", flow, record={}, cancelled_grants=cancelled)
        result["store_version"] = 0
        return result
