# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SolarWinds DPA refresh tokens: the product's steps, run by the shared driver (driver.py).

DPA mints nothing through its API; an administrator makes refresh tokens in the web interface, and
the only call that takes one (the exchange for an access token) changes nothing in DPA. So the steps
are about keeping the right token in the store:

  present   store the given token once, after an exchange proves it works (no intent: nothing in DPA
            changes); later runs validate the stored one (the cached access token's probe while it is
            fresh, else an exchange)
  rotated   adopt a new token: the intent records it (the old one stays current and works), an exchange
            proves it, and it is promoted in one write that keeps the old one as `previous`
  absent    delete the store entry; deleting the token in DPA is a person's step in the web interface

One intent step, and how the next run recovers it:

  adopting  the new token is in the intent and the stored one still works (usable). Its exchange works:
            promote it. DPA refuses it (deleted, expired): withdraw the intent and keep the stored one,
            or, when that one is dead too, needs_reconcile. A later `state: rotated` with another token
            supersedes it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.tokenops.rotation.plugins.module_utils.dpa import (
    MANAGEMENT_PAGE,
    PRODUCT,
    AccessTokens,
    Expiry,
    cache_fields,
    read_claims,
    rejected,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.driver import Plan, Steps
from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import (
    BackOff,
    FlowError,
    fingerprint,
    iso,
    utcnow,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreError

ADOPTING = "adopting"
EXPIRY_KEYS = ("expires_at", "never_expires", "days_left", "expiry_status")


class DpaSteps(Steps):
    product = "dpa"
    product_name = PRODUCT
    secret_keys = ("access_token",)

    def __init__(self, mod, client):
        super(DpaSteps, self).__init__(mod)
        self.dpa = client
        self.access = AccessTokens(client, renew_before=mod.renew_before)

    # ------------------------------------------------------------ state present / rotated

    def present(self, token):
        spec = token.spec
        record = token.record
        given = spec["refresh_token"]
        if not record.get("secret"):
            return self._store_first(token)
        if self.params["state"] == "rotated" and fingerprint(given) != record.get("fingerprint"):
            return self._adopt(token, given, spec["claims"])
        if self.params["state"] == "present" and given and fingerprint(given) != record.get("fingerprint"):
            self.mod.warn("%s: the refresh_token given (%s) is not the stored one (%s); state present keeps the stored one. "
                          "Adopt the given one with state: rotated" % (spec["id"], spec["claims"].name, record.get("token_id")))
        return self._keep(token)

    def _store_first(self, token):
        """Nothing stored yet: exchange the given token (a log-in, no change in DPA), then store it."""
        spec = token.spec
        given, claims = spec["refresh_token"], spec["claims"]
        if not given:
            raise FlowError("%s: the store has no refresh token for %s at %s: give refresh_token once, as copied from %s"
                            % (PRODUCT, spec["id"], token.flow.path, MANAGEMENT_PAGE), step="read store")
        access = self._exchange_new(token, given, claims, "validate refresh token '%s'" % claims.name, step_name="validate")
        fields = self._fields(given, claims, utcnow(), access)
        fields["rotation_count"] = 0
        self._note(token, access, True, "exchange")

        def store(token):
            try:
                token.flow.persist(fields)
            except StoreError as exc:
                raise FlowError("%s: store refresh token '%s' failed: %s. Nothing was stored; run again (the token works in DPA)"
                                % (PRODUCT, claims.name, exc), step="persist")
            return {}

        return Plan("created", predicted=dict(token.record, **fields), run=store)

    def _keep(self, token, action="none", reason=None):
        """The stored token stays: validate it; a renewed access token is cached when one is returned.

        The cache is a store write without an intent (nothing in DPA changes), with check-and-set; it is
        reported as `updated`.
        """
        record = token.record
        claims = read_claims(record["secret"], "the stored refresh token of %s" % token.id)
        expiry = Expiry(claims, utcnow())
        if expiry.status == "expired":
            raise FlowError("%s (the store entry %s)" % (expiry.text, token.flow.path), step="check expiry", action="needs_reconcile",
                            reconcile_steps=self._replace_steps(token, claims.name))
        try:
            access, renewed, how, _probe = self.access.current(record, "validate refresh token '%s'" % claims.name)
        except ApiError as exc:
            if rejected(exc):
                raise FlowError("%s. The stored refresh token '%s' no longer works: it was deleted in DPA or DPA's clock says it "
                                "expired. Create a new one in DPA (%s) and adopt it with state: rotated; the store entry %s is "
                                "unchanged" % (exc, claims.name, MANAGEMENT_PAGE, token.flow.path),
                                step="validate", action="needs_reconcile", reconcile_steps=self._replace_steps(token, claims.name))
            raise
        self._note(token, access, renewed, how)
        after = dict(record)
        after.pop("pending", None)
        if not (renewed and self.params["return_access_token"]):
            return Plan(action, reason=reason, predicted=after)
        after.update(cache_fields(access))

        def cache(token):
            # The access token works and is returned either way; only the next run's reuse of it is lost.
            try:
                token.flow.persist(cache_fields(access))
            except (BackOff, FlowError):
                self.mod.warn("%s: %s changed while the access token was renewed; it is returned but not cached"
                              % (PRODUCT, token.flow.path))
                return {"action": action}
            except StoreError as exc:
                self.mod.warn("%s: the access token is returned but caching it in %s failed: %s" % (PRODUCT, token.flow.path, exc))
                return {"action": action}
            return {}

        return Plan("updated" if action == "none" else action, reason=reason, predicted=after, run=cache)

    # ------------------------------------------------------------ rotated: adopt a new token

    def _adopt(self, token, given, claims, note=None):
        """Plan the adoption of `given`: recorded in the intent first, then exchanged, then promoted."""
        old = token.record
        plan = Plan("rotated", reason=self._adopted_msg(claims, old, note), intent=ADOPTING, usable=True,
                    data=dict(new_secret=given, new_token_id=claims.name, new_fingerprint=fingerprint(given),
                              new_expires_at=iso(claims.expires_at)),
                    fields=self._manual_step(old))
        if self.check:
            # The exchange changes nothing in DPA: check mode makes it too, so the prediction is exact.
            access = self._exchange_new(token, given, claims, "verify new refresh token '%s'" % claims.name)
            self._note(token, access, True, "exchange")
            plan.predicted = self._promoted(old, given, claims, utcnow(), access)
            return plan

        def adopt(token):
            access = self._exchange_new(token, given, claims, "verify new refresh token '%s'" % claims.name)
            self._promote(token, self._promoted(token.record, given, claims, utcnow(), access), claims)
            self._note(token, access, True, "exchange")
            return {}

        plan.run = adopt
        return plan

    def _promote(self, token, promoted, claims):
        """The new token becomes current and the intent goes, in one write."""
        flow = token.flow
        try:
            flow.persist(promoted)
        except StoreError as exc:
            raise FlowError("%s: the new refresh token '%s' works, but saving it as current failed: %s. The store still holds '%s' as "
                            "current (it still works in DPA). Run again: the next run completes the adoption from the intent of "
                            "rotation %s at %s if the store kept it; else adopt '%s' again with state: rotated"
                            % (PRODUCT, claims.name, exc, (flow.before or {}).get("token_id"), flow.rotation_id, flow.path,
                               claims.name), step="persist")

    def _promoted(self, old, token, claims, now, access):
        record = dict(old)
        record.pop("pending", None)
        record.update(self._fields(token, claims, now, access))
        record["rotated_at"] = iso(now)
        record["rotation_count"] = (old.get("rotation_count") or 0) + (1 if old.get("secret") else 0)
        record.pop("previous", None)
        if old.get("secret"):
            # The old token still works in DPA until a person deletes it there; the store keeps it for that time.
            record["previous"] = {"secret": old.get("secret"), "fingerprint": old.get("fingerprint"), "token_id": old.get("token_id"),
                                  "issued_at": old.get("issued_at"), "expires_at": old.get("expires_at"), "replaced_at": iso(now)}
        return record

    def _adopted_msg(self, claims, old, note=None):
        msg = "%s '%s' (expires %s)" % ("Would adopt" if self.check else "Adopted", claims.name, iso(claims.expires_at) or "never")
        if old.get("secret"):
            msg += (" in place of '%s' (expires %s). '%s' still works in DPA until someone deletes it there (%s) once nothing uses it"
                    % (old.get("token_id"), old.get("expires_at") or "never", old.get("token_id"), MANAGEMENT_PAGE))
        return msg + (". " + note if note else "")

    @staticmethod
    def _manual_step(old):
        if not old.get("secret"):
            return {}
        return {"manual_step": "Delete the refresh token '%s' in DPA (%s) once nothing uses it." % (old.get("token_id"), MANAGEMENT_PAGE)}

    # ------------------------------------------------------------ recovery of an interrupted adoption

    def recover(self, token):
        pending = token.pending
        if pending.get("step") != ADOPTING or not isinstance(pending.get("new_secret"), str):
            return self.unknown_step(token)
        spec = token.spec
        record = token.record
        new = self.mod.secret(pending["new_secret"])
        name = pending.get("new_token_id") or "(unnamed)"
        given = spec["refresh_token"] if self.params["state"] == "rotated" else None
        if given and fingerprint(given) != fingerprint(new):
            # A later adoption supersedes the interrupted one; its token lives on in DPA.
            superseded = ("The interrupted adoption of '%s' (rotation %s) was superseded; '%s' still works in DPA until someone "
                          "deletes it there (%s)" % (name, pending.get("rotation_id"), name, MANAGEMENT_PAGE))
            self.mod.warn("%s: %s" % (spec["id"], superseded))
            if fingerprint(given) == record.get("fingerprint"):
                return self._keep(token, action="recovered", reason=superseded)
            return self._adopt(token, given, spec["claims"], note=superseded)
        try:
            claims = read_claims(new, "the refresh token of the interrupted adoption at %s" % token.flow.path)
        except ValueError as exc:
            return self._dead_adoption(token, name, str(exc), given)
        step = "verify new refresh token '%s'" % claims.name
        try:
            access = self.dpa.exchange(new, step)
        except ApiError as exc:
            if not rejected(exc):
                raise FlowError("%s. The interrupted adoption of '%s' stays recorded at %s and the stored '%s' stays current; the "
                                "next run tries again" % (exc, claims.name, token.flow.path, record.get("token_id")), step="verify")
            return self._dead_adoption(token, claims.name, str(exc), given)
        self._note(token, access, True, "exchange")
        promoted = self._promoted(record, new, claims, utcnow(), access)
        note = "Completed the interrupted adoption (rotation %s)" % pending.get("rotation_id")
        return Plan("recovered", reason=self._adopted_msg(claims, record, note), intent=ADOPTING, usable=True, predicted=promoted,
                    fields=self._manual_step(record), run=lambda t: self._promote(t, promoted, claims) or {})

    def _dead_adoption(self, token, name, why, given):
        """The interrupted adoption's token does not work: withdraw it, and keep the stored token when that one works."""
        record = token.record
        dead = ("The interrupted adoption of '%s' cannot complete: %s. '%s' does not work (deleted, expired or made on another DPA "
                "server)" % (name, why, name))
        if not record.get("secret"):
            raise FlowError("%s, and the store entry %s holds no other refresh token" % (dead, token.flow.path), step="recover",
                            action="needs_reconcile", reconcile_steps=self._replace_steps(token, None))
        try:
            plan = self._keep(token, action="recovered", reason="%s; the intent was withdrawn and '%s' stays current"
                              % (dead, record.get("token_id")))
        except FlowError as exc:
            if exc.action != "needs_reconcile":
                raise
            raise FlowError("%s. %s" % (dead, exc), step="recover", action="needs_reconcile", reconcile_steps=exc.reconcile_steps)
        if given:
            # state rotated asked for this very token: the run fails after the dead intent is withdrawn.
            refused = FlowError("%s. It was not adopted, and '%s' stays current in the store" % (dead, record.get("token_id")),
                                step="verify")
            if self.check:
                raise refused
            keep_run = plan.run

            def withdraw_then_refuse(token):
                if keep_run:
                    keep_run(token)
                raise refused

            plan.run = withdraw_then_refuse
        self.mod.warn("%s: %s" % (token.id, plan.reason))
        return plan

    # ------------------------------------------------------------ state absent

    def absent(self, token):
        record = token.record
        if not record:
            return Plan("none")
        names = [name for name in (record.get("token_id"), (record.get("previous") or {}).get("token_id"),
                                   (record.get("pending") or {}).get("new_token_id")) if name]
        many = len(names) > 1
        step = ("The refresh token%s %s still work%s in DPA: delete %s in DPA's web interface (%s), which also revokes %s access tokens"
                % ("s" if many else "", ", ".join("'%s'" % n for n in names), "" if many else "s", "them" if many else "it",
                   MANAGEMENT_PAGE, "their" if many else "its"))
        msg = "%s the store entry %s. %s." % ("Would remove" if self.check else "Removed", token.flow.path, step)
        self.mod.warn("%s: %s" % (token.id, msg))

        def remove(token):
            token.flow.delete()
            return {}

        return Plan("removed", reason=msg, predicted={}, run=remove, fields=dict(manual_step=step + ".", names_in_dpa=names))

    # ------------------------------------------------------------ results

    def decorate(self, token, result, record):
        """Every result says where the token stands against warn_before and fail_before (the fleet report reads it)."""
        spec = token.spec
        notes = token.notes
        if not (record or {}).get("secret"):
            # Removed (or nothing stored): the expiry of the token that lives on in DPA, without thresholds.
            result.update(self._expiry_fields(token, token.flow.before, thresholds=False))
            return result
        claims = read_claims(record["secret"], "the refresh token of %s" % spec["id"])
        expiry = Expiry(claims, utcnow(), spec["warn_seconds"], spec["fail_seconds"],
                        label="%s: refresh token '%s'" % (spec["id"], claims.name))
        result.update(expires_at=iso(claims.expires_at), never_expires=claims.never_expires, issued_at=iso(claims.issued_at),
                      days_left=expiry.days_left, expiry_status=expiry.status, validated_by=notes.get("how"))
        if record.get("previous"):
            prev = record["previous"]
            result["previous"] = {"token_id": prev.get("token_id"), "fingerprint": prev.get("fingerprint"),
                                  "expires_at": prev.get("expires_at"), "replaced_at": prev.get("replaced_at")}
        access = notes.get("access")
        if self.params["return_access_token"] and access is not None:
            result.update(access_token=access.value, access_token_expires_at=iso(access.expires_at),
                          access_token_renewed=notes.get("renewed"))
        if expiry.status == "warn":
            self.mod.warn(expiry.text)
        elif expiry.status in ("fail", "expired"):
            result["failed"] = True
            result["msg"] = "%s. %s" % (result["msg"], expiry.text) if result.get("msg") else expiry.text
        return result

    def decorate_failure(self, token, result, record):
        """A failed or backed-off run reports the stored token's expiry all the same."""
        result.update(self._expiry_fields(token, record, thresholds=True))
        return result

    def _expiry_fields(self, token, record, thresholds):
        fields = dict.fromkeys(EXPIRY_KEYS)
        secret = (record or {}).get("secret")
        if not secret:
            return fields
        try:
            claims = read_claims(secret)
        except ValueError:
            return fields
        spec = token.spec
        expiry = Expiry(claims, utcnow(), spec["warn_seconds"] if thresholds else None, spec["fail_seconds"] if thresholds else None)
        fields.update(expires_at=iso(claims.expires_at), never_expires=claims.never_expires, days_left=expiry.days_left,
                      expiry_status=expiry.status)
        return fields

    # ------------------------------------------------------------ shared pieces

    def _exchange_new(self, token, given, claims, step, step_name="verify"):
        """Exchange a token that is not (yet) the stored one; a refusal or an error leaves the store as it is."""
        try:
            return self.dpa.exchange(given, step)
        except ApiError as exc:
            current = token.record.get("token_id") if token.record.get("secret") else None
            verb = "would not be" if self.check else "was not"
            what = "adopted" if current else "stored"
            stays = ("'%s' %s current in the store" % (current, "would stay" if self.check else "stays")) if current else ""
            if rejected(exc):
                raise FlowError("%s. The refresh token '%s' given does not work (deleted, expired or made on another DPA server): it "
                                "%s %s%s" % (exc, claims.name, verb, what, ", and " + stays if stays else ""), step=step_name)
            raise FlowError("%s. The refresh token '%s' could not be verified, so it %s %s%s. Run again"
                            % (exc, claims.name, verb, what, "; " + stays if stays else ""), step=step_name)

    @staticmethod
    def _note(token, access, renewed, how):
        token.notes.update(access=access, renewed=renewed, how=how)

    def _replace_steps(self, token, name):
        return ["Create a new refresh token in DPA (%s)%s" % (MANAGEMENT_PAGE, " to replace '%s'" % name if name else ""),
                "Adopt it: run this task once with state: rotated and refresh_token set to the new token; it is exchanged, then "
                "stored at %s" % token.flow.path]

    @staticmethod
    def _fields(token, claims, now, access):
        fields = {
            "product": "dpa",
            "secret": token,
            "fingerprint": fingerprint(token),
            "token_id": claims.name,
            "issued_at": iso(claims.issued_at),
            "expires_at": iso(claims.expires_at),
            "never_expires": claims.never_expires,
            "stored_at": iso(now),
        }
        fields.update(cache_fields(access))
        return fields
