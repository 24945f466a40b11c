# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Styra DAS token rotation: the product's steps over the shared Flow.

Steps recorded in the store's `pending` intent, and how the next run recovers each:

  minting   (regenerate in place)  the old secret may be dead -> regenerate again
  creating  (overlap: new id)      the new id may exist without a stored secret -> PUT it again with regenerate
  verifying (overlap)              the new secret is stored in the intent -> verify and promote it
  revoking  (state absent)         some ids may be gone already -> delete again (404 is fine)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.tokenops.rotation.plugins.module_utils.das import (
    binding_key,
    ttl_seconds,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils.module import with_diff
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import (
    BackOff,
    FlowError,
    fingerprint,
    iso,
    minted_fields,
    parse_time,
    result_for,
    utcnow,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreError

NEW_SECRET = "(new secret)"


class DasRotation:
    def __init__(self, module):
        self.mod = module
        self.das = module.das
        self.params = module.params
        self.check = module.module.check_mode
        self.admin = self.params["api_token"]
        self.regen_bearer = self.admin      # replaced by the refresher's secret when one is used
        self.refresher_id = None

    # ------------------------------------------------------------ entry point per token

    def run(self, spec):
        flow = self.mod.flow(self.mod.store_path(spec["id"], spec["store_path"]))
        flow.load()
        if self.params["state"] == "absent":
            if flow.pending_is_live():
                raise BackOff(self._busy(flow))
            return self.absent(flow, spec)
        if flow.pending:
            if flow.pending_is_live():
                raise BackOff(self._busy(flow))
            return self.recover(flow, spec, self.regen_bearer)
        return self.present(flow, spec)

    def _busy(self, flow):
        pending = flow.pending
        return "%s is being rotated by %s since %s (rotation %s); this run left it alone" % (
            flow.path, pending.get("holder"), pending.get("started_at"), pending.get("rotation_id"))

    # ------------------------------------------------------------ state present / rotated

    def present(self, flow, spec):
        record = flow.record or {}
        now = utcnow()
        live_id = record.get("token_id") or spec["id"]
        remote = self.das.get_token(live_id, self.admin) if self.admin else None
        remote_expires = parse_time(remote.get("expires")) if remote else None
        if remote is not None and remote_expires is not None and remote_expires <= now:
            remote = None  # DAS replaces an expired token on the next PUT (das.md 1.4)

        mint, reason, warn = self._mint_decision(flow, spec, record, remote, remote_expires, now, live_id)
        cleanup = self._previous_due(record, now)
        if mint == "rotate" and spec["strategy"] == "overlap" and record.get("previous") and not cleanup:
            self.mod.warn("%s is due (%s) but its previous id %s is still in its grace period until %s; rotation waits"
                          % (spec["id"], reason, record["previous"].get("token_id"), record["previous"].get("revoke_after")))
            mint = None
        update = (mint is None and remote is not None and self._drifted(remote, spec))
        overlap = mint == "rotate" and spec["strategy"] == "overlap" and bool(record.get("secret"))
        # The bindings of the live id; a create or an overlap sets up the bindings of its new id itself.
        bind_plan = self._binding_plan(live_id, spec) if remote is not None and not overlap and mint != "create" else ([], [])

        if mint == "create":
            action = "created"
        elif mint == "rotate":
            action = "rotated"
        elif cleanup:
            action = "revoked"
        elif update or bind_plan[0] or bind_plan[1]:
            action = "updated"
        else:
            action = "none"
        if warn:
            self.mod.warn(warn)

        if self.check:
            after = self._predicted(record, spec, mint, now, live_id, cleanup)
            result = result_for(spec["id"], action, flow, record=after if action != "none" else record, msg=reason if mint else None)
            result["store_version"] = flow.version
            return with_diff(result, flow.before, after, flow.path)

        extra = {}
        if cleanup:
            extra["revoked_token_id"] = self.revoke_previous(flow)
        if overlap:
            extra.update(self.rotate_overlap(flow, spec, live_id, reason))
        elif mint:
            extra.update(self.mint_in_place(flow, spec, live_id, reason, self.regen_bearer if mint == "rotate" else self.admin,
                                            created=(mint == "create")))
        if update:
            self.das.put_token(live_id, self.body(spec, regenerate=False), self.admin, "update token %s" % live_id, update=True)
        if bind_plan[0] or bind_plan[1]:
            self.apply_bindings(live_id, bind_plan)
        result = result_for(spec["id"], action, flow, msg=reason if mint else None,
                            return_secret=self.params["return_secret"], **extra)
        return with_diff(result, flow.before, flow.record, flow.path)

    def _mint_decision(self, flow, spec, record, remote, remote_expires, now, live_id):
        """('create'|'rotate'|None, reason, warning)."""
        state = self.params["state"]
        if not record.get("secret"):
            if remote is not None and state != "rotated":
                raise FlowError(
                    "Styra DAS token %s exists but the store (%s) has no secret for it. Run with state: rotated to regenerate it "
                    "and store the new secret (its current secret stops working), or delete it in DAS" % (live_id, flow.path),
                    step="inspect")
            if not self.admin:
                raise FlowError("Styra DAS token %s has no secret in the store at %s, and a refresher token cannot create tokens: "
                                "give api_token to create it" % (spec["id"], flow.path), step="inspect")
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
        if not due and self.params["verify"]["enabled"]:
            status = self.das.probe(self._probe_path(live_id), record["secret"])
            if status == 401:
                due, reason = True, "the stored secret no longer authenticates (HTTP 401)"
        return ("rotate" if due else None), reason, None

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

    def _mint(self, token_id, spec, bearer, step):
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
                raise
            if not secret:
                raise FlowError("Styra DAS: %s: PUT /v1/tokens/%s answered without a secret" % (step, token_id), step="mint")
            return self.mod.secret(secret)

    def mint_in_place(self, flow, spec, token_id, reason, bearer, created=False, recovering=False):
        record = flow.record or {}
        if not recovering:
            flow.begin("minting", token_id=token_id, reason=reason)
        step = "%s token %s" % ("create" if created else "regenerate", token_id)
        secret = self._mint_or_reconcile(flow, spec, token_id, bearer, step)
        now = utcnow()
        count = (record.get("rotation_count") or 0) + (0 if created and not record.get("secret") else 1)
        fields = minted_fields(secret, now, expires_at=self._expiry(spec, now), count=count, rotated=not created,
                               extra={"token_id": token_id, "fields": self._fields(spec)})
        self._persist_new(flow, fields, token_id, remove=("verified",))
        out = {"verified": self.verify(token_id, secret)}
        if created and spec.get("role_bindings") is not None:
            self.apply_bindings(token_id, self._binding_plan(token_id, spec))
        return out

    def _mint_or_reconcile(self, flow, spec, token_id, bearer, step):
        try:
            return self._mint(token_id, spec, bearer, step)
        except ApiError as exc:
            if exc.outcome_unknown:
                raise FlowError("%s. Whether DAS carried it out is unknown; the intent (rotation %s) stays in the store at %s "
                                "and the next run regenerates %s again" % (exc, flow.rotation_id, flow.path, token_id),
                                step="mint")
            if exc.status == 401 and bearer is not None and bearer != self.admin:
                raise FlowError(self._refresher_dead_msg(exc), step="mint", action="needs_reconcile")
            # A definite refusal: nothing was minted, so the intent goes away again.
            flow.abandon()
            raise

    def _refresher_dead_msg(self, exc):
        return ("%s. The refresher token %s's stored secret is rejected, so it cannot regenerate anything. A person must "
                "regenerate the refresher with an administrator token (PUT /v1/tokens/%s with regenerate: true) and store "
                "the new secret, for example by running this task once with api_token set and state: rotated for the refresher"
                % (exc, self.refresher_id, self.refresher_id))

    def _persist_new(self, flow, fields, token_id, remove=()):
        try:
            flow.persist(fields, remove=remove)
        except StoreError as exc:
            raise FlowError("Styra DAS issued a new secret for %s but the store failed to save it: %s. The old secret no longer "
                            "works. The rotation intent %s is recorded at %s, so the next run regenerates %s again"
                            % (token_id, exc, flow.rotation_id, flow.path, token_id), step="persist")

    def _fields(self, spec):
        return {"description": spec.get("description") or "", "allow_path_patterns": list(spec.get("allow_path_patterns") or []),
                "ttl": spec.get("ttl")}

    # ------------------------------------------------------------ overlap

    def _other_id(self, spec, live_id):
        return spec["overlap_id"] if live_id == spec["id"] else spec["id"]

    def rotate_overlap(self, flow, spec, live_id, reason):
        new_id = self._other_id(spec, live_id)
        flow.begin("creating", new_token_id=new_id, old_token_id=live_id, reason=reason)
        return self._continue_overlap(flow, spec, new_id, live_id)

    def _continue_overlap(self, flow, spec, new_id, old_id, secret=None):
        if secret is None:
            secret = self._mint_or_reconcile(flow, spec, new_id, self.admin, "create overlap token %s" % new_id)
            now = utcnow()
            expires = self._expiry(spec, now)
            try:
                flow.step("verifying", new_token_id=new_id, new_secret=secret, new_issued_at=iso(now), new_expires_at=iso(expires))
            except StoreError as exc:
                raise FlowError("Styra DAS created %s for an overlap rotation but the store failed to save its secret: %s. The current "
                                "secret of %s still works; the next run recreates %s" % (new_id, exc, old_id, new_id), step="persist")
        pending = flow.pending
        # The new id gets the bindings the old one has (or the desired ones), before it is promoted.
        if spec.get("role_bindings") is not None:
            self.apply_bindings(new_id, self._binding_plan(new_id, spec))
        else:
            self._copy_bindings(old_id, new_id)
        verified = self.verify(new_id, secret)
        record = flow.record
        now = utcnow()
        previous = {"secret": record.get("secret"), "fingerprint": record.get("fingerprint"), "token_id": old_id,
                    "revoke_after": iso(now + datetime.timedelta(seconds=spec["grace_seconds"]))}
        fields = minted_fields(secret, parse_time(pending.get("new_issued_at")) or now,
                               expires_at=pending.get("new_expires_at"), count=(record.get("rotation_count") or 0) + 1,
                               extra={"token_id": new_id, "fields": self._fields(spec), "previous": previous})
        fields["rotated_at"] = iso(now)
        self._persist_new(flow, fields, new_id)
        out = {"verified": verified}
        if spec["grace_seconds"] <= 0:
            out["revoked_token_id"] = self.revoke_previous(flow)
        return out

    def revoke_previous(self, flow):
        previous = flow.record.get("previous") or {}
        token_id = previous.get("token_id")
        if token_id:
            self.das.delete_token(token_id, self.admin)
            self._unbind_all(token_id)
        flow.persist({}, remove=("previous",))
        return token_id

    # ------------------------------------------------------------ role bindings

    def _binding_plan(self, token_id, spec):
        if spec.get("role_bindings") is None or not self.admin:
            return [], []
        current = self.das.bindings_of(token_id, self.admin)
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

    def _probe_path(self, token_id):
        return self.params["verify"]["path"].replace("{id}", token_id)

    def verify(self, token_id, secret):
        """'authorized' (2xx/404), 'authenticated' (403) or None when probing is off; FlowError on 401."""
        if not self.params["verify"]["enabled"]:
            return None
        status = self.das.probe(self._probe_path(token_id), secret)
        if status == 401:
            raise FlowError("Styra DAS: verify: the new secret of %s is stored but does not authenticate (HTTP 401 on %s)"
                            % (token_id, self._probe_path(token_id)), step="verify")
        if status == 403:
            if self.params["verify"]["require_authorized"]:
                raise FlowError("Styra DAS: verify: the new secret of %s authenticates but lacks the right to %s (HTTP 403); "
                                "check its role bindings" % (token_id, self._probe_path(token_id)), step="verify")
            return "authenticated"
        return "authorized"

    # ------------------------------------------------------------ recovery

    def recover(self, flow, spec, bearer, is_refresher=False):
        pending = flow.pending
        step = pending.get("step")
        if self.check:
            result = result_for(spec["id"], "recovered", flow, msg="would recover the interrupted step %s of rotation %s"
                                % (step, pending.get("rotation_id")))
            return with_diff(result, flow.before, flow.before, flow.path)
        flow.adopt_pending()
        note = "recovered rotation %s interrupted at step %s (holder %s)" % (pending.get("rotation_id"), step, pending.get("holder"))
        extra = {"recovered_step": step}
        if step == "minting":
            token_id = pending.get("token_id") or spec["id"]
            if is_refresher and bearer == flow.record.get("secret") and self.admin:
                bearer = self.admin
            extra.update(self.mint_in_place(flow, spec, token_id, "recovery", bearer, recovering=True))
        elif step == "creating":
            extra.update(self._continue_overlap(flow, spec, pending["new_token_id"], pending.get("old_token_id") or spec["id"]))
        elif step == "verifying":
            secret = self.mod.secret(pending.get("new_secret"))
            extra.update(self._continue_overlap(flow, spec, pending["new_token_id"], pending.get("old_token_id") or spec["id"], secret))
        else:
            raise FlowError("%s: the store entry has an intent at an unknown step %r; a person must look at it" % (flow.path, step),
                            step="recover", action="needs_reconcile")
        result = result_for(spec["id"], "recovered", flow, msg=note, return_secret=self.params["return_secret"], **extra)
        return with_diff(result, flow.before, flow.record, flow.path)

    # ------------------------------------------------------------ state absent

    def absent(self, flow, spec):
        record = flow.record or {}
        candidates = [record.get("token_id") or spec["id"], spec["id"]]
        if record.get("previous"):
            candidates.append(record["previous"].get("token_id"))
        if (record.get("pending") or {}).get("new_token_id"):
            candidates.append(record["pending"]["new_token_id"])
        ids = []
        for token_id in candidates:
            if token_id and token_id not in ids and self.das.get_token(token_id, self.admin) is not None:
                ids.append(token_id)
        if not ids and not flow.record:
            return result_for(spec["id"], "none", flow)
        if self.check:
            result = result_for(spec["id"], "revoked", flow, record={}, revoked_token_ids=ids)
            return with_diff(result, flow.before, None, flow.path)
        if flow.record:
            flow.begin("revoking", token_ids=ids)
        for token_id in ids:
            self.das.delete_token(token_id, self.admin)
            self._unbind_all(token_id)
        if flow.record:
            flow.delete()
        result = result_for(spec["id"], "revoked", flow, record={}, revoked_token_ids=ids)
        result["store_version"] = 0
        return with_diff(result, flow.before, None, flow.path)

    # ------------------------------------------------------------ the refresher

    def prepare_refresher(self, ref):
        """Load the refresher's secret (storing initial_secret once), renew it when due. Returns its result."""
        self.refresher_id = ref["id"]
        spec = {"id": ref["id"], "description": ref["description"], "allow_path_patterns": ref["allow_path_patterns"] or [],
                "ttl": ref["ttl"]}
        flow = self.mod.flow(self.mod.store_path(ref["id"], ref["store_path"]))
        try:
            record = flow.load()
            if flow.pending:
                if flow.pending_is_live():
                    raise BackOff(self._busy(flow))
                result = self.recover(flow, spec, (record or {}).get("secret"), is_refresher=True)
                self.regen_bearer = self.mod.secret((flow.record or {}).get("secret")) or self.admin
                return result
            adopted = False
            if not record or not record.get("secret"):
                if not ref["initial_secret"]:
                    raise FlowError("Styra DAS refresher %s has no secret in the store at %s: set refresher.initial_secret once"
                                    % (ref["id"], flow.path), step="refresher")
                adopted = True
                record = {"token_id": ref["id"], "fingerprint": fingerprint(ref["initial_secret"]), "secret": ref["initial_secret"]}
                if not self.check:
                    flow.persist(minted_fields(ref["initial_secret"], utcnow(), rotated=False, count=0,
                                               extra={"token_id": ref["id"], "role": "refresher"}))
                    record = flow.record
            self.regen_bearer = self.mod.secret(record["secret"])
            stored = result_for(ref["id"], "created" if adopted else "none", flow, record=record,
                                msg="stored the refresher's initial secret" if adopted else None)
            if not ref["self_rotate"]:
                return stored
            now = utcnow()
            due, reason = self.mod.policy.due(now, parse_time(record.get("issued_at")), parse_time(record.get("expires_at")),
                                              parse_time(record.get("rotated_at")))
            if not due:
                return stored
            if self.check:
                return result_for(ref["id"], "rotated", flow, msg=reason)
            # The refresher renews itself with its own secret; the new one is persisted before use.
            out = self.mint_in_place(flow, spec, ref["id"], reason, record["secret"])
            self.regen_bearer = flow.record["secret"]
            return result_for(ref["id"], "rotated", flow, msg=reason, **out)
        except BackOff as exc:
            return result_for(ref["id"], "none", flow, msg=str(exc), backed_off=True)
        except FlowError as exc:
            return dict(id=ref["id"], changed=flow.writes > 0, failed=True, action=exc.action or "failed",
                        msg=self.mod.redactor.scrub(str(exc)), step=exc.step)
        except (ApiError, StoreError) as exc:
            return dict(id=ref["id"], changed=flow.writes > 0, failed=True, action="failed", msg=self.mod.redactor.scrub(str(exc)))
