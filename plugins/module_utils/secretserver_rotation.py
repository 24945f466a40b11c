# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Delinea Secret Server tokens: the product's steps over the shared Flow.

The stored record keeps the access token as `secret` (what consumers read) and its companions:
`refresh_token` (single use), `refresh_expires_at`, `refreshes_used` and `refreshes_remaining` of
the chain, `session_expires_at` (the latest the chain can last without a password login),
`method` (how the token was obtained), `username`, `domain`, `otp_required`, `vault_url` (the Secret
Server a Delinea Platform token is for; other tokens are for the task's `url`), and
`login_required` when the refresh chain is known to be over.

A refresh token is spent from the moment it is sent, whether or not the answer arrives, so the
intent is recorded before the refresh and the new pair is persisted before anything else. Steps
recorded in the store's `pending` intent, and how the next run recovers each:

  refreshing  the stored refresh token was sent; it counts as used -> log in with the password grant
  logging_in  a password (or platform) grant was sent; at worst a session nobody holds lapses -> log in again
  expiring    (state absent) the token may be expired -> absent expires and deletes again; present logs in again
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import (
    BackOff,
    Flow,
    FlowError,
    diff_text,
    fingerprint,
    iso,
    minted_fields,
    parse_time,
    result_for,
    utcnow,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.secretserver import (
    PRODUCT,
    REFRESH_GRACE_SECONDS,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreError

PRODUCT_KEY = "secretserver"
STEP_REFRESH = "refreshing"
STEP_LOGIN = "logging_in"
STEP_EXPIRE = "expiring"
RECOVERY_NOTES = {
    STEP_REFRESH: "a refresh was interrupted, so its refresh token counts as used",
    STEP_LOGIN: "a login was interrupted",
    STEP_EXPIRE: "an expiration was interrupted, so the stored token may be dead",
}
NEW_TOKEN = "(new token)"
# What the token endpoint answers to credentials it does not take (400 "Login failed." is documented, 1.4).
CREDENTIALS_REFUSED = (400, 401, 403)
REFRESH_KEYS = ("refresh_token", "refresh_fingerprint", "refresh_expires_at")
# What the diff shows beyond the shared view: the chain's state, never a token.
COMPANION_KEYS = ("method", "refresh_fingerprint", "refresh_expires_at", "refreshes_remaining", "session_expires_at")


def companion_diff_text(record):
    text = diff_text(record)
    if not record:
        return text
    lines = ["%s: %s" % (key, record[key]) for key in COMPANION_KEYS if record.get(key) is not None]
    if record.get("login_required"):
        lines.append("login_required: %s" % record["login_required"].get("reason"))
    return text + "".join(line + "\n" for line in lines)


def with_companion_diff(result, before, after, header):
    """Like module.with_diff, with the refresh chain's fingerprint, expiry and count."""
    before_text, after_text = companion_diff_text(before), companion_diff_text(after)
    if before_text != after_text:
        result["_diff"] = dict(before=before_text, after=after_text, before_header=header, after_header=header)
    return result


def session_end(expires_at, lifetime, remaining):
    """The latest moment the chain can keep a live access token without a password login: each remaining refresh
    made as late as its refresh token allows (lifetime + 15 minutes after the grant) adds one lifetime."""
    if expires_at is None:
        return None
    return expires_at + datetime.timedelta(seconds=(remaining or 0) * (lifetime + REFRESH_GRACE_SECONDS))


class SecretServerRotation:
    def __init__(self, mod, client):
        self.mod = mod
        self.ss = client
        self.params = mod.params
        self.check = mod.module.check_mode
        self.platform = bool(self.params["platform"])
        self.login_method = "platform" if self.platform else "password"

    # ------------------------------------------------------------ entry point per token

    def flow(self, spec):
        # The clock is passed explicitly so that one clock decides expiry and intent age.
        return Flow(self.mod.store, spec["path"], PRODUCT_KEY,
                    check_mode=self.check, lock_timeout=self.mod.lock_timeout, now=utcnow)

    def run(self, spec):
        flow = self.flow(spec)
        stored = flow.load() or {}
        for key in ("secret", "refresh_token"):
            self.mod.secret(stored.get(key))
        if flow.pending_is_live():
            pending = flow.pending
            raise BackOff("%s is being changed by %s since %s (rotation %s, step %s); this run left it alone"
                          % (flow.path, pending.get("holder"), pending.get("started_at"), pending.get("rotation_id"), pending.get("step")))
        if self.params["state"] == "absent":
            return self.absent(flow, spec)
        if flow.pending:
            return self.recover(flow, spec)
        return self.present(flow, spec)

    def api_url(self, record):
        """Where the stored token is used: the platform's vault, else the task's url (which may move; the token does not care)."""
        return (record or {}).get("vault_url") or self.params["url"]

    # ------------------------------------------------------------ state present / rotated

    def present(self, flow, spec):
        record = flow.record or {}
        now = utcnow()
        if not record.get("secret"):
            return self.mint(flow, spec, self.login_method, "created", "no token in the store")
        if self.params["state"] == "rotated":
            return self.mint(flow, spec, self.login_method, "rotated", "state rotated")
        other = self._other_identity(record, spec)
        if other:
            # The stored tokens are someone else's: never refresh them for this user.
            return self.mint(flow, spec, self.login_method, "rotated", other)
        if record.get("login_required"):
            due, reason = True, record["login_required"].get("reason") or "a login is required"
        else:
            due, reason = self.mod.policy.due(now, parse_time(record.get("issued_at")), parse_time(record.get("expires_at")),
                                              parse_time(record.get("rotated_at")))
        if not due and self.params["verify"]:
            status, _user = self.ss.check(self.api_url(record), record["secret"])
            if status != 200:
                due, reason = True, "the stored token no longer works (HTTP %d on users/current)" % status
        if not due:
            return self.result(spec, "none", flow, method="reuse")
        method = "refresh" if self.can_refresh(record, now) else self.login_method
        return self.mint(flow, spec, method, "rotated", reason)

    def _other_identity(self, record, spec):
        """Why the stored token is not this task's to keep (another grant or another user), or None."""
        stored_method = "platform" if record.get("method") == "platform" else "password"
        if stored_method != self.login_method:
            return "the stored token was obtained through the %s, this task uses the %s" % (
                _grant_name(stored_method), _grant_name(self.login_method))
        if (record.get("username") or "").lower() != (spec["username"] or "").lower() \
                or (record.get("domain") or "").lower() != (spec.get("domain") or "").lower():
            return "the stored token belongs to another user (%s)" % _user_label(record.get("username"), record.get("domain"))
        return None

    def can_refresh(self, record, now):
        """Whether the rules allow a refresh: enabled here, a refresh token that is unused, unexpired and under the cap."""
        if self.platform or not self.params["refresh"] or not record.get("refresh_token"):
            return False
        refresh_expires = parse_time(record.get("refresh_expires_at"))
        if refresh_expires is None or refresh_expires <= now:
            return False
        return (record.get("refreshes_used") or 0) < self.params["max_refreshes"]

    def mint(self, flow, spec, method, action, reason):
        record = flow.record or {}
        if method == "password":
            self._check_otp(spec, record, reason)
        if self.check:
            return self.predicted(flow, spec, method, action, reason)
        if method == "refresh":
            flow.begin(STEP_REFRESH, reason=reason, refresh_fingerprint=record.get("refresh_fingerprint"))
            try:
                grant = self.ss.refresh_grant(self.api_url(record), self.mod.secret(record["refresh_token"]), spec["username"])
            except ApiError as exc:
                # Spent whatever the answer: fall back to the password grant now.
                lost = "its answer was lost" if exc.outcome_unknown else "Secret Server refused it"
                note = ("the refresh token was used up (%s: %s); logged in with the password grant instead"
                        % (lost, self.mod.redactor.scrub(exc.describe())))
                return self.login(flow, spec, action, reason, note=note, refresh_spent=True)
            return self.store_grant(flow, spec, grant, "refresh", action, reason)
        flow.begin(STEP_LOGIN, reason=reason)
        return self.login(flow, spec, action, reason)

    def _check_otp(self, spec, record, reason):
        """A password grant for a user with two-factor authentication needs a fresh one-time password.

        Raises needs_interaction before any request; `flow` writes are the caller's.
        """
        if self.platform:
            return
        otp = spec.get("otp")
        who = _user_label(spec["username"], spec.get("domain"))
        if otp and record.get("otp_fingerprint") == fingerprint(otp):
            raise FlowError("%s: %s needs a password login (%s), but the otp given was already used for an earlier login, and a "
                            "one-time password works once: run the task again with a fresh otp" % (PRODUCT, who, reason),
                            step="login", action="needs_interaction")
        if not otp and record.get("otp_required"):
            raise FlowError("%s: %s needs a password login (%s), and the user logs in with a one-time password: run the task once "
                            "with a fresh otp; later runs refresh without one while the refresh chain lasts" % (PRODUCT, who, reason),
                            step="login", action="needs_interaction")

    def login(self, flow, spec, action, reason, note=None, refresh_spent=False):
        """The password (or platform) grant under an intent that is already recorded; persists what it gets."""
        record = flow.record or {}
        url = self.params["url"]
        vault_url = None
        if refresh_spent:
            try:
                self._check_otp(spec, record, reason)
            except FlowError as exc:
                # A fresh one-time password is needed now that the refresh token is spent: record that, then ask.
                self.mark_login_required(flow, note or reason)
                exc.details["changed"] = True
                raise
        try:
            if self.platform:
                grant = self.ss.platform_grant(url, spec["username"], spec["password"])
                vault_url = self.ss.vault_url(url, grant.access_token, self.params["vault_name"])
            else:
                grant = self.ss.password_grant(url, spec["username"], spec["password"], spec.get("domain"), spec.get("otp"))
        except ApiError as exc:
            raise self._login_failed(flow, spec, exc, note or reason, refresh_spent)
        return self.store_grant(flow, spec, grant, self.login_method, action, reason, vault_url=vault_url, note=note)

    def _login_failed(self, flow, spec, exc, why, refresh_spent):
        """What a failed login leaves behind, and the error that says what to do."""
        who = _user_label(spec["username"], spec.get("domain"))
        if exc.outcome_unknown:
            return FlowError("%s. Whether Secret Server started a session is unknown; the intent (rotation %s) stays at %s and the "
                             "next run logs in again" % (exc, flow.rotation_id, flow.path), step="login")
        # A definite answer: no session was made. What the failed refresh spent is recorded; otherwise nothing changed.
        if refresh_spent:
            self.mark_login_required(flow, why)
        else:
            flow.abandon()
        changed = bool(refresh_spent)
        if exc.status not in CREDENTIALS_REFUSED:
            # Not an answer about the credentials (a server error, a rate limit): the next run simply tries again.
            if not refresh_spent:
                return exc
            return FlowError("%s. The refresh token was used up before; the next run logs in with the password grant"
                             % exc, step="login", details={"changed": True})
        if self.platform:
            return FlowError("%s. The platform refused the client credentials of %s: check the service user's client id and secret "
                             "(username and password) and that it may use the vault, then run again" % (exc, spec["username"]),
                             step="login", action="needs_reconcile", details={"changed": changed})
        if spec.get("otp") or (flow.record or {}).get("otp_required"):
            return FlowError("%s. The login of %s was refused: the one-time password was wrong or already used, or the password is "
                             "wrong; run again with a fresh otp (and check password and domain)" % (exc, who),
                             step="login", action="needs_interaction", details={"changed": changed})
        stored = flow.record or {}
        keeps = (" The stored token (%s) works until %s at the latest." % (stored.get("fingerprint"), stored.get("expires_at"))
                 if stored.get("secret") else "")
        return FlowError("%s. The password grant of %s was refused: the password or the domain is wrong or was changed, the user "
                         "is locked or disabled, or it needs a one-time password (otp). Fix the credentials (for example the password "
                         "in your vault) and run again. A login was needed because %s.%s" % (exc, who, why, keeps),
                         step="login", action="needs_reconcile", details={"changed": changed})

    def mark_login_required(self, flow, reason):
        """The refresh chain is over: drop the spent refresh token, clear the intent, say why."""
        flow.persist({"login_required": {"reason": reason, "since": iso(utcnow())}, "refreshes_remaining": 0}, remove=REFRESH_KEYS)

    def store_grant(self, flow, spec, grant, method, action, reason, vault_url=None, note=None):
        """Persist the new access (and refresh) token before anything else, then verify it."""
        record = flow.record or {}
        previous = record.get("secret")
        now = utcnow()
        api_url = vault_url or self.params["url"]
        expires_at = now + datetime.timedelta(seconds=grant.expires_in)
        # A refresh token this task will not use is not kept: one secret less at rest.
        refresh_token = grant.refresh_token if method != "platform" and self.params["refresh"] else None
        used = (record.get("refreshes_used") or 0) + 1 if method == "refresh" else 0
        remaining = max(self.params["max_refreshes"] - used, 0) if refresh_token else 0
        extra = {
            "vault_url": vault_url,
            "username": spec["username"],
            "domain": spec.get("domain") or None,
            "method": method,
            "lifetime": grant.expires_in,
            "refreshes_used": used,
            "refreshes_remaining": remaining,
            "session_expires_at": iso(session_end(expires_at, grant.expires_in, remaining)),
        }
        remove = ["login_required", "verified"]
        if refresh_token:
            extra.update(refresh_token=refresh_token, refresh_fingerprint=fingerprint(refresh_token),
                         refresh_expires_at=iso(now + datetime.timedelta(seconds=grant.expires_in + REFRESH_GRACE_SECONDS)))
        else:
            remove.extend(REFRESH_KEYS)
        if method == "password":
            extra["otp_required"] = bool(spec.get("otp"))
            extra["otp_fingerprint"] = fingerprint(spec.get("otp")) if spec.get("otp") else None
        fields = minted_fields(grant.access_token, now, expires_at=expires_at, rotated=bool(previous),
                               count=(record.get("rotation_count") or 0) + (1 if previous else 0), extra=extra)
        try:
            flow.persist(fields, remove=remove)
        except StoreError as exc:
            raise FlowError(self._persist_failed_msg(flow, spec, method, exc, expires_at), step="persist")
        out = {"method": method}
        if note:
            out["msg"] = note
        if self.params["state"] == "rotated" and previous and previous != grant.access_token and record.get("method") != "platform":
            out["previous_expired"] = self._expire_previous(record, previous)
        out["verified"] = self.verify(flow, api_url, grant.access_token)
        return self.result(spec, action, flow, reason=reason, **out)

    def _persist_failed_msg(self, flow, spec, method, exc, expires_at):
        who = _user_label(spec["username"], spec.get("domain"))
        if method == "refresh":
            return ("%s refreshed the token of %s, but the store (%s) failed to save the new tokens: %s. The refresh token in the "
                    "store is used up (it works once) and the new session was not stored; it lapses at %s. The intent (rotation %s) "
                    "recorded at %s makes the next run log in with the password grant"
                    % (PRODUCT, who, self.mod.store.describe(), exc, iso(expires_at), flow.rotation_id, flow.path))
        return ("%s logged %s in, but the store (%s) failed to save the new token: %s. The new session was not stored and lapses at "
                "%s; the intent (rotation %s) recorded at %s makes the next run log in again"
                % (PRODUCT, who, self.mod.store.describe(), exc, iso(expires_at), flow.rotation_id, flow.path))

    def _expire_previous(self, record, previous):
        """state rotated: end the replaced session too. Best effort; its lifetime is short anyway."""
        try:
            return self.ss.expire(self.api_url(record), self.mod.secret(previous))
        except ApiError as exc:
            self.mod.warn("%s; the replaced token lapses at %s" % (exc, record.get("expires_at")))
            return False

    def verify(self, flow, api_url, token):
        if not self.params["verify"]:
            return None
        status, _user = self.ss.check(api_url, token)
        if status != 200:
            self.mark_login_required(flow, "the new token was rejected (HTTP %d) right after it was stored" % status)
            raise FlowError("%s: verify: the new token is stored but Secret Server rejects it (HTTP %d on users/current); "
                            "the next run logs in again" % (PRODUCT, status), step="verify", details={"changed": True})
        return "authorized"

    def predicted(self, flow, spec, method, action, reason):
        record = flow.record or {}
        after = dict(record)
        after.pop("pending", None)
        after.pop("login_required", None)
        now = utcnow()
        lifetime = record.get("lifetime")
        after.update(fingerprint=NEW_TOKEN, issued_at=iso(now), method=method,
                     expires_at=iso(now + datetime.timedelta(seconds=lifetime)) if lifetime else None)
        if record.get("secret"):
            after.update(rotated_at=iso(now), rotation_count=(record.get("rotation_count") or 0) + 1)
        used = (record.get("refreshes_used") or 0) + 1 if method == "refresh" else 0
        if method == "platform" or not self.params["refresh"]:
            for key in REFRESH_KEYS:
                after.pop(key, None)
            after["refreshes_remaining"] = 0
        else:
            # Whether a password login hands out a refresh token is the server's setting: predicted as last time.
            after.update(refresh_fingerprint=NEW_TOKEN, refreshes_used=used,
                         refreshes_remaining=max(self.params["max_refreshes"] - used, 0),
                         refresh_expires_at=iso(now + datetime.timedelta(seconds=lifetime + REFRESH_GRACE_SECONDS)) if lifetime else None)
        after["session_expires_at"] = iso(session_end(parse_time(after.get("expires_at")), lifetime or 0, after["refreshes_remaining"]))
        result = result_for(spec["id"], action, flow, record=after, msg=reason, method=method,
                            refreshes_remaining=after["refreshes_remaining"], session_expires_at=after["session_expires_at"])
        result["store_version"] = flow.version
        return with_companion_diff(result, flow.before, after, flow.path)

    def result(self, spec, action, flow, reason=None, **extra):
        record = flow.record or {}
        msg = extra.pop("msg", None) or (reason if action != "none" else None)
        for key in ("refresh_expires_at", "refreshes_remaining", "session_expires_at"):
            extra.setdefault(key, record.get(key))
        result = result_for(spec["id"], action, flow, msg=msg, return_secret=self.params["return_secret"], **extra)
        return with_companion_diff(result, flow.before, flow.record, flow.path)

    # ------------------------------------------------------------ recovery

    def recover(self, flow, spec):
        pending = flow.pending
        step = pending.get("step")
        if step not in RECOVERY_NOTES:
            raise FlowError("%s: the store entry has an intent at an unknown step %r; a person must look at it"
                            % (flow.path, step), step="recover", action="needs_reconcile")
        note = "recovered rotation %s interrupted at step %s (holder %s): %s" % (
            pending.get("rotation_id"), step, pending.get("holder"), RECOVERY_NOTES[step])
        refresh_spent = step != STEP_LOGIN
        if self.check:
            self._check_otp(spec, flow.record, note)
            result = result_for(spec["id"], "recovered", flow, msg="would log in again: " + note, method=self.login_method)
            return with_companion_diff(result, flow.before, flow.before, flow.path)
        flow.adopt_pending()
        if not refresh_spent:
            self._check_otp_or_abandon(flow, spec, note)
        result = self.login(flow, spec, "recovered", note, note=note, refresh_spent=refresh_spent)
        result["recovered_step"] = step
        return result

    def _check_otp_or_abandon(self, flow, spec, note):
        try:
            self._check_otp(spec, flow.record, note)
        except FlowError:
            flow.abandon()
            raise

    # ------------------------------------------------------------ state absent

    def absent(self, flow, spec):
        record = flow.record
        if not record:
            return result_for(spec["id"], "none", flow)
        now = utcnow()
        secret = record.get("secret")
        expires = parse_time(record.get("expires_at"))
        platform_token = record.get("method") == "platform"
        ask_server = bool(secret) and not platform_token and (expires is None or expires > now)
        if self.check:
            result = result_for(spec["id"], "revoked", flow, record={}, expired_on_server=None)
            return with_companion_diff(result, flow.before, None, flow.path)
        expired = None
        if ask_server:
            flow.begin(STEP_EXPIRE)
            try:
                expired = self.ss.expire(self.api_url(record), self.mod.secret(secret))
            except ApiError as exc:
                if exc.outcome_unknown:
                    raise FlowError("%s. Whether it was expired is unknown; the intent (rotation %s) stays at %s and the next run "
                                    "with state absent expires and deletes it" % (exc, flow.rotation_id, flow.path), step="expire")
                flow.abandon()
                raise
        flow.delete()
        self._warn_survivors(spec, record, now, platform_token)
        result = result_for(spec["id"], "revoked", flow, record={}, expired_on_server=expired)
        result["store_version"] = 0
        return with_companion_diff(result, flow.before, None, flow.path)

    def _warn_survivors(self, spec, record, now, platform_token):
        if platform_token and parse_time(record.get("expires_at")) and parse_time(record.get("expires_at")) > now:
            self.mod.warn("%s: the Delinea Platform token of %s cannot be revoked through the API; it was deleted from the store "
                          "and lapses at %s" % (PRODUCT, spec["id"], record.get("expires_at")))
        refresh_expires = parse_time(record.get("refresh_expires_at"))
        if record.get("refresh_token") and refresh_expires and refresh_expires > now:
            self.mod.warn("%s: no documented call revokes a refresh token; the one of %s was deleted from the store and, unless "
                          "the expiration ended it too, lapses at %s" % (PRODUCT, spec["id"], record.get("refresh_expires_at")))


def _grant_name(method):
    return "Delinea Platform" if method == "platform" else "password grant"


def _user_label(username, domain):
    return "%s\\%s" % (domain, username) if domain else (username or "(no user)")
