# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SolarWinds DPA refresh tokens: the product's steps over the shared Flow.

DPA mints nothing through its API; an administrator makes refresh tokens in the web interface.
So the steps are about keeping the right one in the store:

  present   store the given token once (after an exchange proves it works), then validate the
            stored one on every run: the cached access token's probe while it is fresh, else an exchange
  rotated   adopt a new token: record the intent with the new token (the old one stays current),
            exchange the new one, then promote it and keep the old one as `previous`
  absent    delete the store entry; deleting the token in DPA is a person's step in the web interface

One intent step, and how the next run recovers it:

  adopting  the new token is in the intent; verify it and promote it, or withdraw the intent
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
from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils.module import with_diff
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import (
    BackOff,
    FlowError,
    fingerprint,
    iso,
    result_for,
    utcnow,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreError

ADOPTING = "adopting"


class DpaRotation:
    def __init__(self, module, client):
        self.mod = module
        self.dpa = client
        self.params = module.params
        self.check = module.module.check_mode
        self.access = AccessTokens(client, renew_before=module.renew_before)

    # ------------------------------------------------------------ entry point per token

    def run(self, spec):
        flow = self.mod.flow(self.mod.store_path(spec["id"], spec["store_path"]))
        try:
            record = flow.load() or {}
        except StoreError as exc:
            raise FlowError("%s: read the store entry of %s failed: %s" % (PRODUCT, spec["id"], exc), step="read store")
        # Every secret of the record is masked from here on, in results, messages and warnings.
        for value in (record.get("secret"), record.get("access_token"), (record.get("previous") or {}).get("secret"),
                      (record.get("pending") or {}).get("new_secret")):
            self.mod.secret(value)
        if flow.pending and flow.pending_is_live():
            pending = flow.pending
            raise BackOff("%s is being changed by %s since %s (rotation %s); this run left it alone"
                          % (flow.path, pending.get("holder"), pending.get("started_at"), pending.get("rotation_id")))
        state = self.params["state"]
        if state == "absent":
            return self.absent(flow, spec)
        if flow.pending:
            if state == "rotated" and flow.pending.get("new_fingerprint") != fingerprint(spec["refresh_token"]):
                if not self.check:
                    self._withdraw_stale(flow)
            else:
                return self.recover(flow, spec)
        if not record.get("secret"):
            return self.store_first(flow, spec)
        if state == "rotated" and fingerprint(spec["refresh_token"]) != record.get("fingerprint"):
            return self.adopt(flow, spec, spec["refresh_token"], spec["claims"])
        if state == "present" and spec["refresh_token"] and fingerprint(spec["refresh_token"]) != record.get("fingerprint"):
            self.mod.warn("%s: the refresh_token given (%s) is not the stored one (%s); state present keeps the stored one. "
                          "Adopt the given one with state: rotated" % (spec["id"], spec["claims"].name, record.get("token_id")))
        return self.keep(flow, spec)

    # ------------------------------------------------------------ present: the stored token

    def store_first(self, flow, spec):
        """Nothing stored yet: exchange the given token, then store it."""
        token = spec["refresh_token"]
        if not token:
            raise FlowError("%s: the store has no refresh token for %s at %s: give refresh_token once, as copied from %s"
                            % (PRODUCT, spec["id"], flow.path, MANAGEMENT_PAGE), step="read store")
        claims = spec["claims"]
        access = self._exchange_given(token, claims, "validate refresh token '%s'" % claims.name,
                                      "it was not stored")
        now = utcnow()
        fields = self._fields(token, claims, now, access)
        fields["rotation_count"] = 0
        if self.check:
            result = self._result(spec, "created", flow, fields, access, "exchange")
            return with_diff(result, flow.before, fields, flow.path)
        try:
            flow.persist(fields)
        except FlowError:
            raise BackOff("another run stored a refresh token at %s first; this run left it alone" % flow.path)
        except StoreError as exc:
            raise FlowError("%s: store refresh token '%s' failed: %s. Nothing was stored; run again (the token works in DPA)"
                            % (PRODUCT, claims.name, exc), step="persist")
        return with_diff(self._result(spec, "created", flow, flow.record, access, "exchange"), flow.before, flow.record, flow.path)

    def keep(self, flow, spec):
        """The stored token stays: validate it, renew the cached access token when asked to return one."""
        record = flow.record
        claims = read_claims(record["secret"], "the stored refresh token of %s" % spec["id"])
        expiry = Expiry(claims, utcnow())
        if expiry.status == "expired":
            raise FlowError("%s (the store entry %s)" % (expiry.text, flow.path), step="check expiry", action="needs_reconcile")
        try:
            access, renewed, how, _probe = self.access.current(record, "validate refresh token '%s'" % claims.name)
        except ApiError as exc:
            if rejected(exc):
                raise FlowError("%s. The stored refresh token '%s' no longer works: it was deleted in DPA or DPA's clock says it expired. "
                                "Create a new one in DPA (%s) and adopt it with state: rotated; the store entry %s is unchanged"
                                % (exc, claims.name, MANAGEMENT_PAGE, flow.path), step="validate", action="needs_reconcile")
            raise
        cached = renewed and self.params["return_access_token"] and not self.check and self._cache(flow, access)
        # A renewed cache is a store write, and a run that writes reports a change (DESIGN principle 5).
        return self._result(spec, "updated" if cached else "none", flow, record, access, how, renewed=renewed)

    # ------------------------------------------------------------ rotated: adopt a new token

    def adopt(self, flow, spec, token, claims, recovering=False):
        old = flow.record
        step = "verify new refresh token '%s'" % claims.name
        if self.check:
            access = self._exchange_given(token, claims, step, "it would not be adopted; '%s' would stay current" % old.get("token_id"))
            after = self._promoted(old, token, claims, utcnow(), access)
            result = self._result(spec, "recovered" if recovering else "rotated", flow, after, access, "exchange")
            return with_diff(result, flow.before, after, flow.path)
        if not recovering:
            try:
                flow.begin(ADOPTING, new_secret=token, new_token_id=claims.name, new_fingerprint=fingerprint(token),
                           new_expires_at=iso(claims.expires_at))
            except StoreError as exc:
                raise FlowError("%s: record the adoption of '%s' failed: %s. Nothing changed: '%s' stays current"
                                % (PRODUCT, claims.name, exc, old.get("token_id")), step="record intent")
        try:
            access = self.dpa.exchange(token, step)
        except ApiError as exc:
            kept = self._withdraw(flow)
            if rejected(exc):
                raise FlowError("%s. The new refresh token '%s' does not work (deleted, expired or made on another DPA server): "
                                "it was not adopted, and '%s' stays current in the store%s"
                                % (exc, claims.name, old.get("token_id"), kept), step="verify")
            raise FlowError("%s. The new refresh token '%s' could not be verified, so it was not adopted; '%s' stays current in the "
                            "store%s. Run again" % (exc, claims.name, old.get("token_id"), kept), step="verify")
        promoted = self._promoted(old, token, claims, utcnow(), access)
        try:
            flow.persist(promoted)
        except StoreError as exc:
            raise FlowError("%s: the new refresh token '%s' works, but saving it as current failed: %s. The store still holds '%s' as "
                            "current (it still works in DPA) and the new one in the intent of rotation %s at %s; the next run "
                            "completes the adoption" % (PRODUCT, claims.name, exc, old.get("token_id"), flow.rotation_id, flow.path),
                            step="persist")
        result = self._result(spec, "recovered" if recovering else "rotated", flow, flow.record, access, "exchange")
        return with_diff(result, flow.before, flow.record, flow.path)

    def _promoted(self, old, token, claims, now, access):
        record = dict(old)
        record.pop("pending", None)
        record.update(self._fields(token, claims, now, access))
        record["rotated_at"] = iso(now)
        record["rotation_count"] = (old.get("rotation_count") or 0) + 1
        # The old token still works in DPA until a person deletes it there; the store keeps it for that time.
        record["previous"] = {"secret": old.get("secret"), "fingerprint": old.get("fingerprint"), "token_id": old.get("token_id"),
                              "issued_at": old.get("issued_at"), "expires_at": old.get("expires_at"), "replaced_at": iso(now)}
        return record

    def _withdraw(self, flow):
        """Take back this run's intent after the new token failed; returns a note when that failed too."""
        try:
            flow.abandon()
        except (StoreError, FlowError) as exc:
            return " (withdrawing the intent failed too: %s; the next run withdraws it)" % exc
        return ""

    def _withdraw_stale(self, flow):
        """A dead run's intent for another new token: this run's token supersedes it."""
        flow.adopt_pending()
        kept = self._withdraw(flow)
        if kept:
            raise FlowError("%s: %s holds an interrupted adoption that could not be withdrawn%s" % (PRODUCT, flow.path, kept),
                            step="recover")

    # ------------------------------------------------------------ recovery

    def recover(self, flow, spec):
        pending = flow.pending
        if pending.get("step") != ADOPTING or not pending.get("new_secret"):
            raise FlowError("%s: the store entry has an intent at an unknown step %r; a person must look at it"
                            % (flow.path, pending.get("step")), step="recover", action="needs_reconcile")
        token = pending["new_secret"]
        claims = read_claims(token, "the refresh token of the interrupted adoption at %s" % flow.path)
        if not self.check:
            flow.adopt_pending()
        return self.adopt(flow, spec, token, claims, recovering=True)

    # ------------------------------------------------------------ absent

    def absent(self, flow, spec):
        record = flow.record
        if not record:
            return result_for(spec["id"], "none", flow)
        names = [name for name in (record.get("token_id"), (record.get("previous") or {}).get("token_id"),
                                   (record.get("pending") or {}).get("new_token_id")) if name]
        step = ("The refresh token%s %s still work%s in DPA: delete %s in DPA's web interface (%s), which also revokes "
                "%s access tokens" % ("s" if len(names) > 1 else "", ", ".join("'%s'" % n for n in names), "" if len(names) > 1 else "s",
                                      "them" if len(names) > 1 else "it", MANAGEMENT_PAGE, "their" if len(names) > 1 else "its"))
        if not self.check:
            try:
                flow.delete()
            except StoreError as exc:
                raise FlowError("%s: delete the store entry %s failed: %s" % (PRODUCT, flow.path, exc), step="delete")
        msg = "%s the store entry %s. %s." % ("Would remove" if self.check else "Removed", flow.path, step)
        self.mod.warn("%s: %s" % (spec["id"], msg))
        result = result_for(spec["id"], "removed", flow, record={}, msg=msg, manual_step=step + ".",
                            names_in_dpa=names)
        result["store_version"] = flow.version if self.check else 0
        return with_diff(result, flow.before, None, flow.path)

    # ------------------------------------------------------------ shared pieces

    def _exchange_given(self, token, claims, step, consequence):
        try:
            return self.dpa.exchange(token, step)
        except ApiError as exc:
            if rejected(exc):
                raise FlowError("%s. The refresh token '%s' given does not work (deleted, expired or made on another DPA server); %s"
                                % (exc, claims.name, consequence), step="validate")
            raise

    def _fields(self, token, claims, now, access):
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

    def _cache(self, flow, access):
        """Write a renewed access token into the record (check-and-set). True when it was written."""
        # The access token works and is returned either way; only the next run's reuse of it is lost.
        try:
            flow.persist(cache_fields(access), keep_pending=True)
            return True
        except FlowError:
            self.mod.warn("%s: %s changed while the access token was renewed; it is returned but not cached" % (PRODUCT, flow.path))
        except StoreError as exc:
            self.mod.warn("%s: the access token is returned but caching it in %s failed: %s" % (PRODUCT, flow.path, exc))
        return False

    def _result(self, spec, action, flow, record, access, how, renewed=True):
        claims = read_claims(record["secret"], "the refresh token of %s" % spec["id"])
        expiry = Expiry(claims, utcnow(), spec["warn_seconds"], spec["fail_seconds"], label="%s: refresh token '%s'" % (spec["id"], claims.name))
        extra = dict(never_expires=claims.never_expires, issued_at=iso(claims.issued_at), days_left=expiry.days_left,
                     expiry_status=expiry.status, validated_by=how)
        if record.get("previous"):
            prev = record["previous"]
            extra["previous"] = {"token_id": prev.get("token_id"), "fingerprint": prev.get("fingerprint"), "expires_at": prev.get("expires_at"),
                                 "replaced_at": prev.get("replaced_at")}
        msg = None
        if action in ("rotated", "recovered"):
            prev = record["previous"]
            msg = ("%s '%s' (expires %s) in place of '%s' (expires %s). '%s' still works in DPA until someone deletes it there (%s) "
                   "once nothing uses it" % ("Would adopt" if self.check else "Adopted", claims.name, iso(claims.expires_at) or "never",
                                             prev.get("token_id"), prev.get("expires_at") or "never", prev.get("token_id"), MANAGEMENT_PAGE))
            extra["manual_step"] = "Delete the refresh token '%s' in DPA (%s) once nothing uses it." % (prev.get("token_id"), MANAGEMENT_PAGE)
        if self.params["return_access_token"]:
            extra.update(access_token=access.value, access_token_expires_at=iso(access.expires_at), access_token_renewed=renewed)
        result = result_for(spec["id"], action, flow, record=record, msg=msg, return_secret=self.params["return_secret"], **extra)
        if expiry.status == "warn":
            self.mod.warn(expiry.text)
        elif expiry.status in ("fail", "expired"):
            result["failed"] = True
            result["msg"] = expiry.text if not msg else "%s. %s" % (msg, expiry.text)
        return result
