# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Styra DAS token rotation: the product's steps, run by the shared driver (driver.py).

Steps recorded in the store's `pending` intent, and how the next run recovers each:

  minting            (regenerate in place)  the old secret may be dead -> regenerate again
  creating           (overlap: new id)      the new id may exist without a stored secret -> PUT it again with regenerate
  verifying          (overlap)              the new secret is in the intent -> verify and promote it; a new secret
                                            proven dead (or its id deleted meanwhile) -> mint the new id again
  binding            (after a create)       the secret is stored; bindings may be half done -> apply them again
  revoking_previous  (after a grace period) the previous id may be gone already -> delete again (404 is fine)
  updating           (fields, bindings)     idempotent -> decide again from what DAS holds now
  revoking           (state absent)         some ids may be gone already -> delete again (404 is fine)

The refresher token (a WorkspaceTokenRefresher / SystemTokenRefresher kept in the store) is a token
like the others, with `role: refresher` in its spec: it is adopted from `initial_secret`, learns its
expiry when DAS did not say it, and renews itself with its own secret when due.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

from ansible_collections.tokenops.rotation.plugins.module_utils.das import (
    PRODUCT,
    binding_key,
    ttl_seconds,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.driver import Plan, Steps
from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import (
    SECRET_UNUSABLE,
    FlowError,
    iso,
    minted_fields,
    parse_time,
    utcnow,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreError

NEW_SECRET = "(new secret)"
REFRESHER = "refresher"


class DasSteps(Steps):
    product = "das"
    product_name = PRODUCT

    def __init__(self, mod):
        super(DasSteps, self).__init__(mod)
        self.das = mod.das
        self.admin = self.params["api_token"]
        self.regen_bearer = self.admin      # replaced by the refresher's secret when one is used
        self.refresher_id = None
        self._bindings_seen = {}            # token id -> its bindings as the last binding plan read them

    # ------------------------------------------------------------ state present / rotated

    def present(self, token):
        if token.spec.get("role") == REFRESHER:
            return self.refresher_present(token)
        spec = token.spec
        record = token.record
        now = utcnow()
        live_id = record.get("token_id") or spec["id"]
        remote = self.das.get_token(live_id, self.admin) if self.admin else None
        remote_expires = parse_time(remote.get("expires")) if remote else None
        if remote is not None and remote_expires is not None and remote_expires <= now:
            remote = None  # DAS replaces an expired token on the next PUT (das.md 1.4)

        mint, reason, warn = self._mint_decision(token, record, remote, remote_expires, now, live_id)
        cleanup = self._previous_due(record, now)
        if mint == "rotate" and spec["strategy"] == "overlap" and record.get("previous") and not cleanup:
            self.mod.warn("%s is due (%s) but its previous id %s is still in its grace period until %s; rotation waits"
                          % (spec["id"], reason, record["previous"].get("token_id"), record["previous"].get("revoke_after")))
            mint = None
        update = mint is None and remote is not None and self._drifted(remote, spec)
        overlap = mint == "rotate" and spec["strategy"] == "overlap" and bool(record.get("secret"))
        # The bindings of the live id; a create or an overlap sets up the bindings of its new id itself.
        bind_plan = self._binding_plan(live_id, spec) if remote is not None and not overlap and mint != "create" else ([], [])
        if warn:
            self.mod.warn(warn)

        if mint == "create":
            action = "created"
        elif mint == "rotate":
            action = "rotated"
        elif cleanup:
            action = "revoked"
        elif update or bind_plan[0] or bind_plan[1]:
            action = "updated"
        elif token.notes.get("proven_at"):
            # The probe that verify.every asked for passed: its time is stored, the token is unchanged.
            proven = token.notes["proven_at"]
            return Plan("none", run=lambda token: self._store_proof(token, proven), changed=False)
        else:
            return Plan("none")
        predicted = self._predicted(record, spec, mint, now, live_id, cleanup)
        msg = reason if mint else None

        if cleanup:
            first, usable, data = "revoking_previous", True, {"old_token_id": record["previous"].get("token_id")}
        elif overlap:
            first, usable, data = "creating", True, self._overlap_data(spec, live_id, reason)
        elif mint:
            # A regenerate kills the stored secret once DAS carries it out; a create has none yet.
            first, usable, data = "minting", False, {"token_id": live_id, "reason": reason}
        else:
            first, usable, data = "updating", True, {"token_id": live_id}

        def run(token):
            out = {}
            if cleanup:
                then = self._next_step(spec, live_id, reason, mint, overlap, update, bind_plan)
                out["revoked_token_id"] = self.revoke_previous(token, then=then)
            if overlap:
                out.update(self.create_overlap(token, spec, self._other_id(spec, live_id), live_id))
            elif mint:
                bearer = self.regen_bearer if mint == "rotate" else self.admin
                # Bindings that change with the rotation are made under the same intent.
                follow = "binding" if (bind_plan[0] or bind_plan[1]) else None
                out.update(self.mint_in_place(token, spec, live_id, bearer, created=(mint == "create"), next_step=follow))
            if update:
                self.das.put_token(live_id, self.body(spec, regenerate=False), self.admin, "update token %s" % live_id, update=True)
                # DAS's last_modified_at moves for this change of ours. What DAS says now is kept, so that the next
                # run does not take it for someone else's change (_probe_due); DAS's own clock, not ours.
                after = self.das.get_token(live_id, self.admin) or {}
                seen = (after.get("metadata") or {}).get("last_modified_at")
                if seen:
                    token.flow.persist({"last_modified_seen": seen}, keep_pending=True)
            if bind_plan[0] or bind_plan[1]:
                self.apply_bindings(live_id, bind_plan)
            return out

        return Plan(action, reason=msg, intent=first, usable=usable, data=data, predicted=predicted, run=run,
                    changes=self._changes(remote if update else None, spec, bind_plan, live_id))

    def _changes(self, remote, spec, bind_plan, live_id):
        """(before, after) of what the run changes in DAS besides the store: drifted fields, role bindings."""
        before, after = {}, {}
        if remote is not None:
            if (remote.get("description") or "") != (spec["description"] or ""):
                before["description"], after["description"] = repr(remote.get("description") or ""), repr(spec["description"] or "")
            have, want = sorted(remote.get("allow_path_patterns") or []), sorted(spec["allow_path_patterns"] or [])
            if have != want:
                before["allow_path_patterns"], after["allow_path_patterns"] = ", ".join(have) or "(none)", ", ".join(want) or "(none)"
        to_add, to_remove = bind_plan
        if to_add or to_remove:
            removed = {binding_key(b) for b in to_remove}
            have = sorted(set(self._bound(live_id)) | removed, key=str)
            want = sorted((set(have) - removed) | set(to_add), key=str)
            before["role_bindings"] = "; ".join(" ".join(map(str, key)) for key in have) or "(none)"
            after["role_bindings"] = "; ".join(" ".join(map(str, key)) for key in want) or "(none)"
        return (before, after) if before or after else None

    def _bound(self, token_id):
        """The (role, kind, resource) keys bound to a token, as the binding plan read them."""
        return [binding_key(b) for b in self._bindings_seen.get(token_id, [])]

    def _next_step(self, spec, live_id, reason, mint, overlap, update, bind_plan):
        """The intent step that follows the revocation of the previous id in the same run, with its data."""
        if overlap:
            return ("creating", True, self._overlap_data(spec, live_id, reason))
        if mint:
            return ("minting", False, {"token_id": live_id, "reason": reason})
        if update or bind_plan[0] or bind_plan[1]:
            return ("updating", True, {"token_id": live_id})
        return None

    def _overlap_data(self, spec, live_id, reason):
        return {"new_token_id": self._other_id(spec, live_id), "old_token_id": live_id, "reason": reason}

    def _mint_decision(self, token, record, remote, remote_expires, now, live_id):
        """('create'|'rotate'|None, reason, warning)."""
        spec = token.spec
        state = self.params["state"]
        if not record.get("secret"):
            if remote is not None and state != "rotated":
                raise FlowError(
                    "Styra DAS token %s exists but the store (%s) has no secret for it. Run with state: rotated to regenerate it "
                    "and store the new secret (its current secret stops working), or delete it in DAS" % (live_id, token.flow.path),
                    step="inspect", action="needs_reconcile",
                    reconcile_steps=["Find out who uses token %s in DAS and whether its secret is kept elsewhere" % live_id,
                                     "Run this task once with state: rotated: it regenerates %s and stores the new secret at %s "
                                     "(the current secret stops working)" % (live_id, token.flow.path)])
            if not self.admin:
                raise FlowError("Styra DAS token %s has no secret in the store at %s, and a refresher token cannot create tokens: "
                                "give api_token to create it" % (spec["id"], token.flow.path), step="inspect")
            if remote is None:
                return "create", "no token in DAS and no secret in the store", None
            return "rotate", "state rotated", None
        if state == "rotated":
            return "rotate", "state rotated", None
        if self.admin and remote is None:
            return "create", "missing in DAS", ("Styra DAS token %s was missing or expired in DAS although the store had its secret; "
                                                "it is created anew" % live_id)
        due, reason = self.mod.policy.due(now, parse_time(record.get("issued_at")),
                                          remote_expires or parse_time(record.get("expires_at")),
                                          parse_time(record.get("rotated_at")))
        if not due and self._probe_due(record, now, remote):
            if self.dead(live_id, record["secret"], self._patterns(record, spec)):
                due, reason = True, "the stored secret no longer authenticates (HTTP 401)"
            elif self.params["verify"]["enabled"]:
                token.notes["proven_at"] = iso(now)
        return ("rotate" if due else None), reason, None

    def _probe_due(self, record, now, remote):
        """Whether the stored secret of a token that is not due is probed in this run: when it was last proven longer
        ago than verify.every, or when DAS says the token changed since (someone may have regenerated it elsewhere:
        only a probe can tell)."""
        every = self.mod.verify_every
        proven = parse_time(record.get("verified_at"))
        if not every or proven is None or (now - proven).total_seconds() >= every:
            return True
        stamp = ((remote or {}).get("metadata") or {}).get("last_modified_at")
        if stamp and stamp == record.get("last_modified_seen"):
            return False    # the last change DAS knows of is this collection's own update
        modified = parse_time(stamp)
        # verified_at is kept to the second
        return modified is not None and modified.replace(microsecond=0) > proven

    def _store_proof(self, token, proven):
        """Store when the secret was proven: no change in DAS, nothing the token's consumers see."""
        try:
            token.flow.persist({"verified_at": proven})
        except StoreError as exc:   # the proof is kept next time; the token itself is fine
            self.mod.warn("Styra DAS: %s: the time of the passed probe could not be stored: %s" % (token.id, exc))
            return {}
        return {"verified_at": proven}

    def _previous_due(self, record, now):
        previous = record.get("previous")
        if not previous:
            return False
        revoke_after = parse_time(previous.get("revoke_after"))
        return revoke_after is None or now >= revoke_after

    def _drifted(self, remote, spec):
        return ((remote.get("description") or "") != (spec["description"] or "")
                or sorted(remote.get("allow_path_patterns") or []) != sorted(spec["allow_path_patterns"] or []))

    def _predicted(self, record, spec, mint, now, live_id, cleanup):
        after = dict(record)
        after.pop("pending", None)
        if cleanup:
            after.pop("previous", None)
        if mint:
            new_id = live_id
            if mint == "rotate" and spec["strategy"] == "overlap" and record.get("secret"):
                new_id = self._other_id(spec, live_id)
                after["previous"] = {"token_id": live_id, "fingerprint": record.get("fingerprint"),
                                     "revoke_after": iso(now + datetime.timedelta(seconds=spec["grace_seconds"]))}
                if spec["grace_seconds"] <= 0:
                    after.pop("previous")
            after.update(token_id=new_id, fingerprint=NEW_SECRET, issued_at=iso(now), rotated_at=iso(now),
                         expires_at=iso(self._expiry(spec, now)),
                         rotation_count=(record.get("rotation_count") or 0) + (1 if record.get("secret") else 0))
        return after

    # ------------------------------------------------------------ minting

    def body(self, spec, regenerate):
        body = {"description": spec.get("description") or "", "allow_path_patterns": list(spec.get("allow_path_patterns") or []),
                "regenerate": regenerate}
        if spec.get("ttl"):
            body["ttl"] = spec["ttl"]
        return body

    def _expiry(self, spec, now):
        if spec.get("ttl"):
            return now + datetime.timedelta(seconds=ttl_seconds(spec["ttl"]))
        return None

    def _mint(self, token, token_id, spec, bearer, step):
        """PUT the full body with regenerate. Returns the new secret.

        A create or regenerate whose answer was lost may have committed; sending it again issues
        yet another secret and supersedes the lost one, so one more attempt is safe here, unlike
        in the HTTP layer, which does not know that the lost secret is worthless.
        """
        attempt = 0
        while True:
            try:
                secret = self.das.put_token(token_id, self.body(spec, regenerate=True), bearer, step)
            except ApiError as exc:
                if exc.outcome_unknown and attempt == 0:
                    attempt += 1
                    continue
                if exc.outcome_unknown:
                    raise FlowError("%s. Whether DAS carried it out is unknown; the intent (rotation %s) stays in the store at %s "
                                    "and the next run regenerates %s again" % (exc, token.flow.rotation_id, token.flow.path, token_id),
                                    step="mint")
                if exc.status == 401 and bearer is not None and bearer != self.admin:
                    raise FlowError(self._refresher_dead_msg(exc), step="mint", action="needs_reconcile",
                                    reconcile_steps=self._refresher_dead_steps())
                raise
            if not secret:
                raise FlowError("Styra DAS: %s: PUT /v1/tokens/%s answered without a secret" % (step, token_id), step="mint")
            return self.mod.secret(secret)

    def mint_in_place(self, token, spec, token_id, bearer, created=False, next_step=None):
        """Regenerate (or create) token_id; the new secret is persisted before anything else.

        With `next_step` (or role bindings of a new token) the intent stays for the changes that follow.
        """
        flow = token.flow
        record = flow.record or {}
        step = "%s token %s" % ("create" if created else "regenerate", token_id)
        secret = self._mint(token, token_id, spec, bearer, step)
        now = utcnow()
        count = (record.get("rotation_count") or 0) + (0 if created and not record.get("secret") else 1)
        # A secret DAS has just issued counts as proven then; the probe below takes it back if it fails.
        extra = {"token_id": token_id, "fields": self._fields(spec), "verified_at": iso(now)}
        if spec.get("role") == REFRESHER:
            extra["role"] = REFRESHER
        fields = minted_fields(secret, now, expires_at=self._expiry(spec, now), count=count, rotated=not created, extra=extra)
        bindings = created and spec.get("role_bindings") is not None
        # The role bindings of a new token are changes too: the intent stays until they are made.
        self._persist_new(token, fields, token_id, remove=("verified",), next_step="binding" if bindings else next_step)
        try:
            out = {"verified": self.verify(token_id, secret, spec.get("allow_path_patterns"))}
        except FlowError as exc:
            if exc.details.get("secret_dead"):
                # The secret just stored is proven dead: consumers must not get it until the next run mints again.
                flow.persist({SECRET_UNUSABLE: {"reason": str(exc), "since": iso(utcnow())}}, keep_pending=bool(flow.pending),
                             remove=("verified_at",))
            raise
        if bindings:
            self.apply_bindings(token_id, self._binding_plan(token_id, spec))
        return out

    def _refresher_dead_msg(self, exc):
        return ("%s. The refresher token %s's stored secret is rejected, so it cannot regenerate anything. A person must "
                "regenerate the refresher with an administrator token (PUT /v1/tokens/%s with regenerate: true) and store "
                "the new secret, for example by running this task once with api_token set and state: rotated for the refresher"
                % (exc, self.refresher_id, self.refresher_id))

    def _refresher_dead_steps(self):
        return ["Regenerate the refresher token %s with an administrator token (PUT /v1/tokens/%s with regenerate: true)"
                % (self.refresher_id, self.refresher_id),
                "Store its new secret: run this task once with api_token set (and refresher.initial_secret set to the new secret "
                "after deleting the refresher's store entry), or with state: rotated for the refresher"]

    def _persist_new(self, token, fields, token_id, remove=(), next_step=None, **step_data):
        flow = token.flow
        try:
            flow.persist(fields, remove=tuple(remove) + (SECRET_UNUSABLE,), next_step=next_step, secret_usable=True, **step_data)
        except StoreError as exc:
            raise FlowError("Styra DAS issued a new secret for %s but the store failed to save it: %s. The old secret no longer "
                            "works. The rotation intent %s is recorded at %s, so the next run regenerates %s again"
                            % (token_id, exc, flow.rotation_id, flow.path, token_id), step="persist")

    @staticmethod
    def _patterns(record, spec):
        """The patterns the live secret was issued with (the stored fields), else the task's."""
        fields = record.get("fields") or {}
        return fields.get("allow_path_patterns") if fields.get("allow_path_patterns") is not None else spec.get("allow_path_patterns")

    def _fields(self, spec):
        return {"description": spec.get("description") or "", "allow_path_patterns": list(spec.get("allow_path_patterns") or []),
                "ttl": spec.get("ttl")}

    # ------------------------------------------------------------ overlap

    def _other_id(self, spec, live_id):
        return spec["overlap_id"] if live_id == spec["id"] else spec["id"]

    def create_overlap(self, token, spec, new_id, old_id):
        """Step creating: mint the second id, keep its secret in the intent, then verify and promote it."""
        flow = token.flow
        secret = self._mint(token, new_id, spec, self.admin, "create overlap token %s" % new_id)
        now = utcnow()
        expires = self._expiry(spec, now)
        try:
            flow.step("verifying", new_token_id=new_id, new_secret=secret, new_issued_at=iso(now), new_expires_at=iso(expires))
        except StoreError as exc:
            raise FlowError("Styra DAS created %s for an overlap rotation but the store failed to save its secret: %s. The current "
                            "secret of %s still works; the next run recreates %s" % (new_id, exc, old_id, new_id), step="persist")
        return self.promote_overlap(token, spec, new_id, old_id, secret)

    def promote_overlap(self, token, spec, new_id, old_id, secret):
        """Step verifying: bind, verify and promote the new id; the old one becomes `previous`."""
        flow = token.flow
        pending = flow.pending
        # The new id gets the bindings the old one has (or the desired ones), before it is promoted.
        if spec.get("role_bindings") is not None:
            self.apply_bindings(new_id, self._binding_plan(new_id, spec))
        else:
            self._copy_bindings(old_id, new_id)
        verified = self.verify(new_id, secret, spec.get("allow_path_patterns"))
        record = flow.record
        now = utcnow()
        previous = {"secret": record.get("secret"), "fingerprint": record.get("fingerprint"), "token_id": old_id,
                    "revoke_after": iso(now + datetime.timedelta(seconds=spec["grace_seconds"]))}
        fields = minted_fields(secret, parse_time(pending.get("new_issued_at")) or now,
                               expires_at=pending.get("new_expires_at"), count=(record.get("rotation_count") or 0) + 1,
                               extra={"token_id": new_id, "fields": self._fields(spec), "previous": previous})
        fields["rotated_at"] = iso(now)
        if verified is not None:
            fields["verified_at"] = iso(now)
        revoke_now = spec["grace_seconds"] <= 0
        self._persist_new(token, fields, new_id, remove=("verified",),
                          next_step="revoking_previous" if revoke_now else None, old_token_id=old_id)
        out = {"verified": verified}
        if revoke_now:
            out["revoked_token_id"] = self.revoke_previous(token)
        return out

    def revoke_previous(self, token, then=None):
        """Step revoking_previous: delete the previous id (its grace period is over) and its bindings.

        `then` is the step (name, usable, data) this run goes on with under the same intent; without
        one, `previous` leaves the record and the intent is cleared.
        """
        flow = token.flow
        previous = flow.record.get("previous") or {}
        token_id = previous.get("token_id") or (flow.pending or {}).get("old_token_id")
        if token_id:
            self.das.delete_token(token_id, self.admin)
            self._unbind_all(token_id)
        if then is None:
            flow.persist({}, remove=("previous",))
        else:
            step, usable, data = then
            flow.persist({}, remove=("previous",), next_step=step, secret_usable=usable, **data)
        return token_id

    # ------------------------------------------------------------ role bindings

    def _binding_plan(self, token_id, spec):
        if spec.get("role_bindings") is None or not self.admin:
            return [], []
        current = self.das.bindings_of(token_id, self.admin)
        self._bindings_seen[token_id] = current
        have = {binding_key(b): b for b in current}
        want = {(b["role_id"], b["resource_kind"], b["resource_id"]) for b in spec["role_bindings"]}
        to_add = sorted(k for k in want if k not in have)
        to_remove = [have[k] for k in sorted(have) if k not in want]
        return to_add, to_remove

    def apply_bindings(self, token_id, plan):
        to_add, to_remove = plan
        for role_id, kind, resource_id in to_add:
            self.das.add_binding(token_id, role_id, kind, resource_id, self.admin)
        for binding in to_remove:
            self.das.remove_binding(token_id, binding, self.admin)

    def _copy_bindings(self, old_id, new_id):
        if not self.admin:
            return
        have = {binding_key(b) for b in self.das.bindings_of(new_id, self.admin)}
        for binding in self.das.bindings_of(old_id, self.admin):
            key = binding_key(binding)
            if key not in have:
                self.das.add_binding(new_id, key[0], key[1], key[2], self.admin)

    def _unbind_all(self, token_id):
        for binding in self.das.bindings_of(token_id, self.admin):
            self.das.remove_binding(token_id, binding, self.admin)

    # ------------------------------------------------------------ verification

    def probe_target(self, token_id, patterns):
        """(path, conclusive): the path a secret is probed on, and whether a 401 there proves the secret dead.

        DAS refuses a path outside a token's allow_path_patterns with a status it does not document
        (das.md: 403 inferred, 401 possible). The configured path is used when the token may call it;
        else a path made from the literal start of one of its own patterns; else the configured path,
        where a 401 may only be that refusal.
        """
        path = self.params["verify"]["path"].replace("{id}", token_id)
        patterns = [p for p in (patterns or []) if p]
        if not patterns or _allowed(path, patterns):
            return path, True
        for pattern in patterns:
            candidate = _literal_start(pattern)
            if candidate and _allowed(candidate, [pattern]):
                return candidate, True
        return path, False

    def probe(self, token_id, secret, patterns):
        """(status, path, conclusive) of a request made with `secret`; status None when probing is off."""
        if not self.params["verify"]["enabled"]:
            return None, None, True
        path, conclusive = self.probe_target(token_id, patterns)
        return self.das.probe(path, secret), path, conclusive

    def dead(self, token_id, secret, patterns):
        """True only when DAS proves the secret does not authenticate."""
        status, _path, conclusive = self.probe(token_id, secret, patterns)
        return status == 401 and conclusive

    def verify(self, token_id, secret, patterns):
        """'authorized' (2xx/404), 'authenticated' (403), 'unproven' (401 on a path outside the token's patterns)
        or None when probing is off; FlowError when DAS proves the new secret dead."""
        status, path, conclusive = self.probe(token_id, secret, patterns)
        if status is None:
            return None
        if status == 401:
            if not conclusive:
                self.mod.warn("Styra DAS: verify: %s answers 401 to the new secret of %s, which may be DAS refusing a path "
                              "outside the token's allow_path_patterns; set verify.path to a path the token may call"
                              % (path, token_id))
                return "unproven"
            raise FlowError("Styra DAS: verify: the new secret of %s is stored but does not authenticate (HTTP 401 on %s); the "
                            "next run mints it again" % (token_id, path), step="verify", details={"secret_dead": True})
        if status == 403:
            if self.params["verify"]["require_authorized"]:
                raise FlowError("Styra DAS: verify: the new secret of %s authenticates but lacks the right to %s (HTTP 403); "
                                "check its role bindings and allow_path_patterns" % (token_id, path), step="verify")
            return "authenticated"
        return "authorized"

    # ------------------------------------------------------------ recovery

    def recover(self, token):
        spec = token.spec
        pending = token.pending
        step = pending.get("step")
        note = "recovered rotation %s interrupted at step %s (holder %s)" % (pending.get("rotation_id"), step, pending.get("holder"))
        record = token.record
        if step == "minting":
            token_id = pending.get("token_id") or spec["id"]
            bearer = self.regen_bearer
            if spec.get("role") == REFRESHER:
                # The refresher's own secret may be the one that died: the administrator token is surer.
                bearer = self.admin or record.get("secret") or spec["ref"].get("initial_secret")
            created = not record.get("secret")
            predicted = self._predicted(record, spec, "create" if created else "rotate", utcnow(), token_id, False)
            predicted["token_id"] = token_id
            return Plan("recovered", reason=note, intent="minting", usable=False, predicted=predicted,
                        run=lambda t: self.mint_in_place(t, spec, token_id, bearer, created=created))
        if step in ("creating", "verifying"):
            new_id = pending.get("new_token_id")
            old_id = pending.get("old_token_id") or record.get("token_id") or spec["id"]
            if not new_id:
                self.unknown_step(token)
            predicted = self._predicted(record, spec, "rotate", utcnow(), old_id, False)
            predicted["token_id"] = new_id
            return Plan("recovered", reason=note, intent=step, usable=True, predicted=predicted,
                        run=lambda t: self._resume_overlap(t, spec, step, new_id, old_id))
        if step == "binding":
            token_id = record.get("token_id") or spec["id"]
            return Plan("recovered", reason=note, intent="binding", usable=True,
                        run=lambda t: self.apply_bindings(token_id, self._binding_plan(token_id, spec)) or {})
        if step == "revoking_previous":
            after = dict(record)
            after.pop("previous", None)
            return Plan("recovered", reason=note, intent="revoking_previous", usable=True, predicted=after,
                        run=lambda t: {"revoked_token_id": self.revoke_previous(t)})
        if step in ("updating", "revoking"):
            # Nothing to finish: decide again from what DAS holds now.
            plan = self.present(token)
            if plan.action == "none":
                plan.action, plan.reason, plan.changed = "recovered", note, True
            return plan
        return self.unknown_step(token)

    def _resume_overlap(self, token, spec, step, new_id, old_id):
        """Finish an overlap rotation: the new secret in the intent when it still works, else the new id minted again."""
        secret = token.pending.get("new_secret") if step == "verifying" else None
        if secret:
            secret = self.mod.secret(secret)
            if self.dead(new_id, secret, spec.get("allow_path_patterns")):
                # Proven dead (the new id was deleted or regenerated by someone else): never a dead end.
                self.mod.warn("%s: the new secret of %s kept in the interrupted rotation no longer authenticates; %s is minted again"
                              % (spec["id"], new_id, new_id))
                secret = None
        if secret is None:
            return self.create_overlap(token, spec, new_id, old_id)
        return self.promote_overlap(token, spec, new_id, old_id, secret)

    def decorate(self, token, result, record):
        if token.spec.get("role") == REFRESHER:
            self.after_refresher(record)
        result.setdefault("verified_at", (record or {}).get("verified_at"))
        return result

    # ------------------------------------------------------------ state absent

    def absent(self, token):
        spec = token.spec
        record = token.record
        candidates = [record.get("token_id") or spec["id"], spec["id"]]
        if record.get("previous"):
            candidates.append(record["previous"].get("token_id"))
        if (record.get("pending") or {}).get("new_token_id"):
            candidates.append(record["pending"]["new_token_id"])
        ids = []
        for token_id in candidates:
            if token_id and token_id not in ids and self.das.get_token(token_id, self.admin) is not None:
                ids.append(token_id)
        if not ids and not token.flow.record:
            return Plan("none")

        def run(token):
            for token_id in ids:
                self.das.delete_token(token_id, self.admin)
                self._unbind_all(token_id)
            if token.flow.record:
                token.flow.delete()
            return {}

        return Plan("revoked", intent="revoking" if ids else None, usable=False, data={"token_ids": ids}, predicted={},
                    run=run, fields={"revoked_token_ids": ids})

    # ------------------------------------------------------------ the refresher

    def refresher_spec(self, ref):
        self.refresher_id = ref["id"]
        return {"id": ref["id"], "role": REFRESHER, "description": ref["description"],
                "allow_path_patterns": ref["allow_path_patterns"] or [], "ttl": ref["ttl"], "store_path": ref["store_path"],
                "role_bindings": None, "strategy": "regenerate", "overlap_id": None, "grace_seconds": 0, "ref": ref}

    def after_refresher(self, token_record):
        """Application tokens are regenerated with the refresher's current secret."""
        secret = (token_record or {}).get("secret")
        self.regen_bearer = self.mod.secret(secret) if secret else self.admin

    def refresher_present(self, token):
        """Adopt initial_secret once, learn the expiry, renew when due (self_rotate) or warn when it cannot."""
        spec = token.spec
        ref = spec["ref"]
        record = token.record
        now = utcnow()
        adopt = None
        if not record.get("secret"):
            if not ref["initial_secret"]:
                raise FlowError("Styra DAS refresher %s has no secret in the store at %s: set refresher.initial_secret once"
                                % (ref["id"], token.flow.path), step="refresher")
            adopt = minted_fields(ref["initial_secret"], now, rotated=False, count=0,
                                  extra={"token_id": ref["id"], "role": REFRESHER, "expires_at": None})
            record = dict(record, **adopt)
        learned = None
        if not record.get("expires_at"):
            learned = self._refresher_expiry(ref)
            if learned is not None:
                record["expires_at"] = iso(learned)
        self.after_refresher(record)
        expires_at = parse_time(record.get("expires_at"))
        due, reason = self.mod.policy.due(now, parse_time(record.get("issued_at")), expires_at, parse_time(record.get("rotated_at")))
        if expires_at is None and ref["self_rotate"]:
            # An unknown expiry cannot be watched: renewing now with its ttl makes it known.
            due, reason = True, "its expiry is unknown (set refresher.expires_at, or it renews now to learn it)"
        if not ref["self_rotate"]:
            if due or expires_at is None:
                self.mod.warn("Styra DAS refresher %s %s and self_rotate is off: renew it (and store its new secret) before it "
                              "expires, or every token it renews goes with it"
                              % (ref["id"], reason if due else "has an unknown expiry (set refresher.expires_at)"))
            due = False
        stored = {}
        if adopt:
            stored.update(adopt)
        if learned is not None or (adopt and record.get("expires_at")):
            stored["expires_at"] = record["expires_at"]
        if not due:
            if not stored:
                return Plan("none")

            def store_only(token):
                token.flow.persist(stored)
                self.after_refresher(token.flow.record)
                return {}
            return Plan("created" if adopt else "updated", reason="stored the refresher's initial secret" if adopt else
                        "learned the refresher's expiry", predicted=record, run=store_only)
        predicted = dict(record, fingerprint=NEW_SECRET, issued_at=iso(now), rotated_at=iso(now),
                         expires_at=iso(self._expiry(spec, now)), rotation_count=(record.get("rotation_count") or 0) + 1)

        def renew(token):
            if stored:
                # The adopted secret is stored first: it is the bearer of its own renewal.
                token.flow.persist(stored, keep_pending=True)
            out = self.mint_in_place(token, spec, ref["id"], record["secret"])
            self.after_refresher(token.flow.record)
            return out
        return Plan("rotated", reason=reason, intent="minting", usable=False, data={"token_id": ref["id"], "reason": reason},
                    predicted=predicted, run=renew)

    def _refresher_expiry(self, ref):
        """The refresher's expiry: refresher.expires_at, else what DAS says to the administrator token; None when unknown."""
        if ref.get("expires_at"):
            return parse_time(ref["expires_at"])
        if self.admin:
            remote = self.das.get_token(ref["id"], self.admin)
            if remote and remote.get("expires"):
                return parse_time(remote["expires"])
        return None


def _allowed(path, patterns):
    for pattern in patterns:
        try:
            if re.search(pattern, path):
                return True
        except re.error:
            continue
    return False


_META = re.compile(r"[.*+?()\[\]{}|$\\]")


def _literal_start(pattern):
    """The literal text a pattern starts with ('^/v1/systems/pay/.*' -> '/v1/systems/pay/'), or None."""
    text = pattern[1:] if pattern.startswith("^") else pattern
    cut = _META.search(text)
    literal = text[:cut.start()] if cut else text
    return literal if literal.startswith("/") else None
