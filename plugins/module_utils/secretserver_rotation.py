# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Delinea Secret Server tokens: the product's steps, run by the shared driver (driver.py).

The stored record keeps the access token as `secret` (what consumers read) and its companions:
`refresh_token` (single use), `refresh_expires_at`, `refreshes_used` and `refreshes_remaining` of
the chain, `session_expires_at` (the latest the chain can last without a password login),
`method` (how the token was obtained), `username`, `domain`, `otp_required`, `vault_url` (the Secret
Server a Delinea Platform token is for; other tokens are for the task's `url`), `login_required`
when the refresh chain is known to be over, and `refresh_keeps_access` once this server was seen
to keep (true) or end (false) an access token when its refresh token is used.

A refresh token is spent from the moment it is sent, whether or not the answer arrives, so the
new pair is persisted before anything else. Steps recorded in the store's `pending` intent, whether
the stored `secret` still works meanwhile (`usable`, what the token lookup goes by), and how the
next run recovers each:

  refreshing         the stored refresh token was sent; it counts as used -> log in with the password grant.
                     usable only where this server was seen to keep the old access token on a refresh:
                     whether a refresh ends it is not documented (secretserver.md 1.5)
  logging_in         a password (or platform) grant was sent; at worst a session nobody holds lapses -> log in
                     again. usable: a login does not end the stored token
  expiring           (state absent) the token may be expired -> absent expires and deletes again; present logs in
                     again. not usable
  expiring_previous  (state rotated) the new token is stored; the replaced one may still live -> decide again from
                     the stored token (the replaced one lapses by itself). usable: the stored token is the new one
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.tokenops.rotation.plugins.module_utils.driver import Plan, Steps
from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import (
    SECRET_UNUSABLE,
    BackOff,
    FlowError,
    fingerprint,
    iso,
    minted_fields,
    parse_time,
    utcnow,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.secretserver import (
    PRODUCT,
    REFRESH_GRACE_SECONDS,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreError, error_text

PRODUCT_KEY = "secretserver"
STEP_REFRESH = "refreshing"
STEP_LOGIN = "logging_in"
STEP_EXPIRE = "expiring"
STEP_EXPIRE_PREVIOUS = "expiring_previous"
RECOVERY_NOTES = {
    STEP_REFRESH: "a refresh was interrupted, so its refresh token counts as used",
    STEP_LOGIN: "a login was interrupted",
    STEP_EXPIRE: "an expiration was interrupted, so the stored token may be dead",
    STEP_EXPIRE_PREVIOUS: "the expiration of a replaced token was interrupted; the new token is stored and the replaced "
                          "one lapses by itself",
}
NEW_TOKEN = "(new token)"
# What the token endpoint answers to credentials it does not take (400 "Login failed." is documented, 1.4).
CREDENTIALS_REFUSED = (400, 401, 403)
REFRESH_KEYS = ("refresh_token", "refresh_fingerprint", "refresh_expires_at")
# An old access token with less left than this may have lapsed by itself: its check after a refresh tells nothing.
LEARN_MARGIN_SECONDS = 60


def session_end(expires_at, lifetime, remaining):
    """The latest moment the chain can keep a live access token without a password login: each remaining refresh
    made as late as its refresh token allows (lifetime + 15 minutes after the grant) adds one lifetime."""
    if expires_at is None:
        return None
    return expires_at + datetime.timedelta(seconds=(remaining or 0) * (lifetime + REFRESH_GRACE_SECONDS))


class SecretServerSteps(Steps):
    product = PRODUCT_KEY
    product_name = PRODUCT
    secret_keys = ("refresh_token",)
    # What the diff shows beyond the shared view: the chain's state, never a token.
    diff_keys = ("method", "refresh_fingerprint", "refresh_expires_at", "refreshes_remaining", "session_expires_at",
                 "login_required")

    def __init__(self, mod, client):
        super(SecretServerSteps, self).__init__(mod)
        self.ss = client
        self.platform = bool(self.params["platform"])
        self.login_method = "platform" if self.platform else "password"

    def api_url(self, record):
        """Where the stored token is used: the platform's vault, else the task's url (which may move; the token does not care)."""
        return (record or {}).get("vault_url") or self.params["url"]

    # ------------------------------------------------------------ state present / rotated

    def present(self, token):
        spec = token.spec
        record = token.record
        now = utcnow()
        if not record.get("secret"):
            return self.replace(token, self.login_method, "created", "no token in the store")
        if self.params["state"] == "rotated":
            return self.replace(token, self.login_method, "rotated", "state rotated")
        other = self._other_identity(record, spec)
        if other:
            # The stored tokens are someone else's: never refresh them for this user.
            return self.replace(token, self.login_method, "rotated", other)
        if record.get("login_required"):
            due, reason = True, record["login_required"].get("reason") or "a login is required"
        else:
            due, reason = self.mod.policy.due(now, parse_time(record.get("issued_at")), parse_time(record.get("expires_at")),
                                              parse_time(record.get("rotated_at")))
        if not due and self.params["verify"]:
            status, _user = self.ss.check(self.api_url(record), record["secret"])
            if status != 200:
                due, reason = True, "the stored token no longer works (HTTP %d on users/current)" % status
                token.notes["stored_dead"] = True
        if not due:
            return Plan("none", fields={"method": "reuse"})
        method = "refresh" if self.can_refresh(record, now) else self.login_method
        return self.replace(token, method, "rotated", reason)

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

    @staticmethod
    def refresh_keeps_access(record):
        """Whether the stored access token still works while its refresh is under way: only where this server was
        seen to keep an access token when its refresh token was used (undocumented, secretserver.md 1.5)."""
        return record.get("refresh_keeps_access") is True

    def replace(self, token, method, action, reason):
        """The plan that replaces the stored token by a refresh or a login."""
        record = token.record
        if method == "password":
            self._check_otp(token.spec, record, reason)
        predicted = self.predicted(record, method)
        if method == "refresh":
            return Plan(action, reason=reason, intent=STEP_REFRESH, usable=self.refresh_keeps_access(record),
                        data={"reason": reason, "refresh_fingerprint": record.get("refresh_fingerprint")},
                        predicted=predicted, run=lambda t: self.refresh(t, action, reason), fields={"method": method})
        return Plan(action, reason=reason, intent=STEP_LOGIN, usable=True, data={"reason": reason}, predicted=predicted,
                    run=lambda t: self.login(t, action, reason), fields={"method": method})

    def refresh(self, token, action, reason):
        """The refresh grant under the recorded intent; a refresh that fails is spent, and the same run logs in."""
        record = token.record
        try:
            grant = self.ss.refresh_grant(self.api_url(record), self.mod.secret(record["refresh_token"]), token.spec["username"])
        except ApiError as exc:
            lost = "its answer was lost" if exc.outcome_unknown else "Secret Server refused it"
            note = ("the refresh token was used up (%s: %s); logged in with the password grant instead"
                    % (lost, self.mod.redactor.scrub(exc.describe())))
            return self.login(token, action, reason, note=note, refresh_spent=True)
        out = self.store_grant(token, grant, "refresh", reason)
        self._learn_refresh_effect(token, record)
        return out

    def _learn_refresh_effect(self, token, before):
        """After a refresh whose new pair is stored: does the access token it replaced still work? What this server
        does is recorded (a hint for the next refresh's intent, so consumers keep the token where it keeps working)."""
        previous = before.get("secret")
        expires = parse_time(before.get("expires_at"))
        if not self.params["verify"] or not previous or token.notes.get("stored_dead") or expires is None \
                or (expires - utcnow()).total_seconds() < LEARN_MARGIN_SECONDS:
            return
        try:
            status, _user = self.ss.check(self.api_url(before), previous)
        except ApiError:
            return
        keeps = status == 200
        record = token.flow.record or {}
        if record.get("secret") and record.get("refresh_keeps_access") is not keeps:
            try:
                token.flow.persist({"refresh_keeps_access": keeps})
            except (StoreError, FlowError, BackOff):
                pass   # only a hint: the next refresh learns it again

    def _check_otp(self, spec, record, reason):
        """A password grant for a user with two-factor authentication needs a fresh one-time password.

        Raises needs_interaction before any request; `flow` writes are the caller's.
        """
        if self.platform:
            return
        otp = spec.get("otp")
        who = _user_label(spec["username"], spec.get("domain"))
        steps = ["Run the task once with a fresh otp (one-time password) for %s; later runs refresh without one while the "
                 "refresh chain lasts" % who]
        if otp and record.get("otp_fingerprint") == fingerprint(otp):
            raise FlowError("%s: %s needs a password login (%s), but the otp given was already used for an earlier login, and a "
                            "one-time password works once: run the task again with a fresh otp" % (PRODUCT, who, reason),
                            step="login", action="needs_interaction", reconcile_steps=steps)
        if not otp and record.get("otp_required"):
            raise FlowError("%s: %s needs a password login (%s), and the user logs in with a one-time password: run the task once "
                            "with a fresh otp; later runs refresh without one while the refresh chain lasts" % (PRODUCT, who, reason),
                            step="login", action="needs_interaction", reconcile_steps=steps)

    def login(self, token, action, reason, note=None, refresh_spent=False):
        """The password (or platform) grant under an intent that is already recorded; persists what it gets."""
        flow = token.flow
        spec = token.spec
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
            raise self._login_failed(token, exc, note or reason, refresh_spent)
        out = self.store_grant(token, grant, self.login_method, reason, vault_url=vault_url)
        if note:
            out["msg"] = note
        return out

    def _login_failed(self, token, exc, why, refresh_spent):
        """What a failed login leaves behind, and the error that says what to do."""
        flow = token.flow
        spec = token.spec
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
                             step="login", action="needs_reconcile", details={"changed": changed},
                             reconcile_steps=["Check in the Delinea Platform that the service user %s exists, is enabled, and may "
                                              "use the vault; check its client id (username) and client secret (password)"
                                              % spec["username"],
                                              "Put the right client secret where the task reads it (password or TSS_PASSWORD) "
                                              "and run the task again"])
        if spec.get("otp") or (flow.record or {}).get("otp_required"):
            return FlowError("%s. The login of %s was refused: the one-time password was wrong or already used, or the password is "
                             "wrong; run again with a fresh otp (and check password and domain)" % (exc, who),
                             step="login", action="needs_interaction", details={"changed": changed},
                             reconcile_steps=["Run the task once with a fresh otp for %s; check its password and domain if that "
                                              "is refused too" % who])
        stored = flow.record or {}
        keeps = (" The stored token (%s) works until %s at the latest." % (stored.get("fingerprint"), stored.get("expires_at"))
                 if stored.get("secret") else "")
        return FlowError("%s. The password grant of %s was refused: the password or the domain is wrong or was changed, the user "
                         "is locked or disabled, or it needs a one-time password (otp). Fix the credentials (for example the password "
                         "in your vault) and run again. A login was needed because %s.%s" % (exc, who, why, keeps),
                         step="login", action="needs_reconcile", details={"changed": changed},
                         reconcile_steps=["Check in Secret Server that %s can log in: its password and domain, that it is not "
                                          "locked or disabled, and whether it needs two-factor authentication (then give otp)" % who,
                                          "Put the right password where the task reads it (password or TSS_PASSWORD) and run "
                                          "the task again: it logs in and stores a new token at %s" % flow.path])

    def mark_login_required(self, flow, reason, token_dead=None):
        """The refresh chain is over: drop the spent refresh token, clear the intent, say why.

        The stored access token may be dead too (rejected, or its refresh token spent on a server that may end the
        replaced token): then the record says so, and the token lookup refuses it until a login stores a new one.
        """
        if token_dead is None:
            token_dead = not self.refresh_keeps_access(flow.record or {})
        changes = {"login_required": {"reason": reason, "since": iso(utcnow())}, "refreshes_remaining": 0}
        if token_dead and (flow.record or {}).get("secret"):
            changes[SECRET_UNUSABLE] = {"reason": reason, "since": iso(utcnow())}
        flow.persist(changes, remove=REFRESH_KEYS)

    def store_grant(self, token, grant, method, reason, vault_url=None):
        """Persist the new access (and refresh) token before anything else, then verify it.

        With state rotated the replaced token is expired next, under the intent (step expiring_previous)."""
        flow = token.flow
        spec = token.spec
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
        remove = ["login_required", "verified", SECRET_UNUSABLE]
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
        expire_previous = (self.params["state"] == "rotated" and previous and previous != grant.access_token
                           and record.get("method") != "platform")
        try:
            if expire_previous:
                flow.persist(fields, remove=remove, next_step=STEP_EXPIRE_PREVIOUS, secret_usable=True,
                             previous_fingerprint=record.get("fingerprint"))
            else:
                flow.persist(fields, remove=remove)
        except StoreError as exc:
            raise FlowError(self._persist_failed_msg(flow, spec, method, exc, expires_at), step="persist")
        out = {"method": method}
        if expire_previous:
            out["previous_expired"] = self._expire_previous(record, previous)
            flow.finish()
        out["verified"] = self.verify(flow, api_url, grant.access_token)
        return out

    def _persist_failed_msg(self, flow, spec, method, exc, expires_at):
        who = _user_label(spec["username"], spec.get("domain"))
        if method == "refresh":
            return ("%s refreshed the token of %s, but the store failed to save the new tokens: %s. The refresh token in the "
                    "store is used up (it works once) and the new session was not stored; it lapses at %s. The intent (rotation %s) "
                    "recorded at %s makes the next run log in with the password grant"
                    % (PRODUCT, who, error_text(self.mod.store, exc), iso(expires_at), flow.rotation_id, flow.path))
        return ("%s logged %s in, but the store failed to save the new token: %s. The new session was not stored and lapses at "
                "%s; the intent (rotation %s) recorded at %s makes the next run log in again"
                % (PRODUCT, who, error_text(self.mod.store, exc), iso(expires_at), flow.rotation_id, flow.path))

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
            self.mark_login_required(flow, "the new token was rejected (HTTP %d) right after it was stored" % status, token_dead=True)
            raise FlowError("%s: verify: the new token is stored but Secret Server rejects it (HTTP %d on users/current); "
                            "the next run logs in again" % (PRODUCT, status), step="verify", details={"changed": True})
        return "authorized"

    def predicted(self, record, method):
        """The record after a refresh or login (check mode and the diff): fingerprints of tokens not yet issued are placeholders."""
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
        return after

    def decorate(self, token, result, record):
        if record:
            for key in ("refresh_expires_at", "refreshes_remaining", "session_expires_at"):
                result.setdefault(key, record.get(key))
        return result

    # ------------------------------------------------------------ recovery

    def recover(self, token):
        pending = token.pending
        step = pending.get("step")
        if step not in RECOVERY_NOTES:
            return self.unknown_step(token)
        note = "recovered rotation %s interrupted at step %s (holder %s): %s" % (
            pending.get("rotation_id"), step, pending.get("holder"), RECOVERY_NOTES[step])
        if step == STEP_EXPIRE_PREVIOUS:
            # The new token is stored: decide again from it, as an ordinary run would.
            plan = self.present(token)
            if plan.action == "none":
                plan.action, plan.reason, plan.changed = "recovered", note, True
            return plan
        record = token.record
        refresh_spent = step != STEP_LOGIN
        try:
            self._check_otp(token.spec, record, note)
        except FlowError as exc:
            if token.check:
                raise
            return self._ask_for_otp(exc, note, refresh_spent)
        usable = self.refresh_keeps_access(record) if step == STEP_REFRESH else step == STEP_LOGIN
        return Plan("recovered", reason=note, intent=step, usable=usable, predicted=self.predicted(record, self.login_method),
                    run=lambda t: self.login(t, "recovered", note, note=note, refresh_spent=refresh_spent),
                    fields={"method": self.login_method})

    def _ask_for_otp(self, error, note, refresh_spent):
        """A login is needed and only a fresh one-time password allows it: nothing is sent, the interrupted intent goes
        (the driver clears it), and a spent refresh chain is recorded."""
        def ask(token):
            if refresh_spent:
                self.mark_login_required(token.flow, note)
                error.details["changed"] = True
            raise error
        return Plan("recovered", reason=note, run=ask)

    # ------------------------------------------------------------ state absent

    def absent(self, token):
        record = token.flow.record
        if not record:
            return Plan("none")
        now = utcnow()
        secret = record.get("secret")
        expires = parse_time(record.get("expires_at"))
        platform_token = record.get("method") == "platform"
        ask_server = bool(secret) and not platform_token and (expires is None or expires > now)

        def run(token):
            flow = token.flow
            expired = None
            if ask_server:
                try:
                    expired = self.ss.expire(self.api_url(record), self.mod.secret(secret))
                except ApiError as exc:
                    if exc.outcome_unknown:
                        raise FlowError("%s. Whether it was expired is unknown; the intent (rotation %s) stays at %s and the next "
                                        "run with state absent expires and deletes it" % (exc, flow.rotation_id, flow.path),
                                        step="expire")
                    raise
            flow.delete()
            self._warn_survivors(token.spec, record, now, platform_token)
            return {"expired_on_server": expired}

        return Plan("revoked", intent=STEP_EXPIRE if ask_server else None, usable=False, predicted={}, run=run,
                    fields={"expired_on_server": None})

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
