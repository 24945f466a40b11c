# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rotation flow every product shares.

The store is the lock and the state machine: a rotation writes its intent (`pending`) with
check-and-set before it mints, persists what it minted before it does anything else, and clears
the intent when it is done. A run that finds somebody else's live intent backs off; a run that
finds a stale one (its holder died) hands it to the product's recovery.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import hashlib
import os
import random
import re
import socket
import threading
import time
import uuid

from ansible_collections.tokenops.rotation.plugins.module_utils.store import (
    StoreBusy,
    StoreConflict,
    StoreError,
    StoreOutcomeUnknown,
)

# Waiting out a busy store: full-jitter backoff from STORE_BACKOFF seconds up to STORE_BACKOFF_CAP.
STORE_BACKOFF = 0.1
STORE_BACKOFF_CAP = 2.0

# "removed": the store entry was deleted but the credential lives on in the product (DPA has no delete API).
ACTIONS = ("none", "created", "updated", "rotated", "revoked", "recovered", "needs_reconcile", "needs_interaction", "removed")

# A record key set, outside any intent, when the stored secret may no longer work (for example a Secret Server token
# whose refresh token was spent and whose login failed): {reason, since}. The token lookup refuses such a secret.
SECRET_UNUSABLE = "secret_unusable"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class FlowError(Exception):
    """A failure of the flow itself, with the step it happened in; message has no secrets.

    `reconcile_steps` lists what a person must do when `action` is needs_reconcile (or
    needs_interaction); `details` adds fields to the token's result.
    """

    def __init__(self, message, step=None, action=None, details=None, reconcile_steps=None):
        super(FlowError, self).__init__(message)
        self.step = step
        self.action = action
        self.details = details or {}
        self.reconcile_steps = list(reconcile_steps or [])


class BackOff(Exception):
    """Another run holds this entry (a live intent, or it wrote first). `holder` says who, when known."""

    def __init__(self, message, pending=None, store_busy=False):
        super(BackOff, self).__init__(message)
        self.pending = pending or {}
        self.store_busy = store_busy   # the store was too slow: nobody else holds the token


class IntentMissing(RuntimeError):
    """A bug: a request that changes the product was about to be sent without this run's intent recorded."""


# ---------------------------------------------------------------- time and durations

def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def iso(value):
    if value is None:
        return None
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value):
    """ISO 8601 (with Z, offsets, or fractional seconds as DAS sends) -> aware datetime; None stays None."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    text = str(value).strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    # Before Python 3.11, fromisoformat takes exactly 3 or 6 fractional digits; Go sends 1 to 9.
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", text)
    if match:
        frac = match.group(2)
        frac = ("." + (frac[1:7] + "000000")[:6]) if frac else ""
        text = match.group(1) + frac + match.group(3)
    parsed = datetime.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


def parse_duration(value, name="duration"):
    """'90d', '24h', '1h30m', '45s' or a number of seconds -> seconds (float).

    Raises ValueError with a message naming the option.
    """
    if isinstance(value, bool):
        raise ValueError("%s must be a duration such as 24h, 7d or 90m, not a boolean" % name)
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("%s must not be negative" % name)
        return float(value)
    text = str(value).strip().lower()
    if re.match(r"^\d+(\.\d+)?$", text):
        return float(text)
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError("%s: %r is not a duration; use a number of seconds or units such as 90d, 24h, 1h30m, 45s" % (name, value))
    return total


def parse_rotate_before(value, name="rotate_before"):
    """A duration, or a percentage of the token's lifetime ('20%'). Returns ('seconds'|'percent', number)."""
    text = str(value).strip()
    if text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            raise ValueError("%s: %r is not a percentage" % (name, value))
        if not 0 <= percent <= 100:
            raise ValueError("%s: a percentage must be between 0%% and 100%%" % name)
        return ("percent", percent)
    return ("seconds", parse_duration(value, name))


def fingerprint(secret):
    """A short, stable, non-reversible name for a secret, for diffs and results."""
    if not secret:
        return None
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


# ---------------------------------------------------------------- the due policy

class Policy:
    """The one place that decides whether a token is due for rotation."""

    def __init__(self, rotate_before="20%", max_age=None):
        self.rotate_before = parse_rotate_before(rotate_before) if rotate_before not in (None, "") else None
        self.max_age = parse_duration(max_age, "max_age") if max_age not in (None, "") else None

    @classmethod
    def from_params(cls, params):
        return cls(rotate_before=params.get("rotate_before"), max_age=params.get("max_age"))

    def due(self, now, issued_at=None, expires_at=None, rotated_at=None):
        """(due, reason). Times are aware datetimes or None."""
        if expires_at is not None:
            left = (expires_at - now).total_seconds()
            if left <= 0:
                return True, "expired at %s" % iso(expires_at)
            if self.rotate_before is not None:
                kind, amount = self.rotate_before
                if kind == "seconds":
                    threshold = amount
                else:
                    start = issued_at or rotated_at
                    lifetime = (expires_at - start).total_seconds() if start else None
                    threshold = lifetime * amount / 100.0 if lifetime else 0
                if left < threshold:
                    return True, "expires at %s, within rotate_before" % iso(expires_at)
        if self.max_age is not None:
            born = rotated_at or issued_at
            if born is not None and (now - born).total_seconds() >= self.max_age:
                return True, "older than max_age (%s)" % iso(born)
        return False, None


# ---------------------------------------------------------------- the record and its flow

def holder_id():
    return "%s:%d" % (socket.gethostname(), os.getpid())


def holder_alive(holder):
    """False only when the holder ran on this host and its process is gone.

    A holder on another host (an AWX job in another container) cannot be asked; its intent's lease
    tells whether it is alive.
    """
    try:
        host, pid = holder.rsplit(":", 1)
        pid = int(pid)
    except (AttributeError, ValueError):
        return True
    if host != socket.gethostname():
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Flow:
    """One store entry's rotation, step by step.

    Every write is check-and-set against the version this flow last saw; `begin` records the
    intent before a change is sent to the product; `persist` stores what was minted (retrying a
    store outage briefly, because the secret exists nowhere else); `finish` clears the intent.

    An intent carries a lease (`lease_expires_at`) that the run holding it renews (`renew`, called
    by the driver's heartbeat); an intent whose lease ran out, or that is older than
    `lock_timeout`, belongs to a run that died, wherever it ran. `changes_sent` counts the requests
    that may have changed the product under this flow's intent (the HTTP layer's change guard
    counts them), so that a failure that changed nothing withdraws the intent, and a conflict that
    changed nothing is a back-off, not a reconcile.
    """

    def __init__(self, store, path, product, check_mode=False, lock_timeout=300.0, holder=None,
                 persist_attempts=3, persist_backoff=0.5, now=utcnow, sleep=time.sleep, lease=60.0, monotonic=time.monotonic):
        self.store = store
        self.path = path
        self.product = product
        self.check_mode = check_mode
        self.lock_timeout = lock_timeout
        self.lease = lease
        self.holder = holder or holder_id()
        self.persist_attempts = persist_attempts
        self.persist_backoff = persist_backoff
        self.now = now
        self.sleep = sleep
        self.monotonic = monotonic
        self.store_waited = 0.0     # seconds this flow waited out a busy store
        self.store_retries = 0
        self.resolved_writes = 0    # writes whose lost answer a read-back resolved
        self.version = 0
        self.record = None
        self.before = None
        self.writes = 0
        self.rotation_id = None
        self.changes_sent = 0
        self.changes_refused = 0
        # The heartbeat thread and the flow's own thread both write; one at a time.
        self._lock = threading.RLock()

    # -- reading

    def load(self):
        """Read the entry. A busy store is waited out for up to a lease; then this run backs off (nothing was sent)."""
        deadline = self.monotonic() + self.lease
        attempt = 0
        while True:
            try:
                entry = self.store.read(self.path)
                break
            except StoreBusy as exc:
                if not self._wait_busy(attempt, deadline):
                    raise BackOff("the store did not answer the read of %s in time (%s); nothing was sent to the product, "
                                  "the next run tries again" % (self.path, exc), store_busy=True)
                attempt += 1
        self.version = entry.version
        self.record = copy.deepcopy(entry.data) if entry.data else None
        self.before = copy.deepcopy(self.record)
        return self.record

    @property
    def pending(self):
        return (self.record or {}).get("pending")

    @property
    def holds_intent(self):
        """This run's intent is the one recorded (the only state in which a change may be sent)."""
        pending = self.pending
        return bool(pending and self.rotation_id and pending.get("rotation_id") == self.rotation_id
                    and pending.get("holder") == self.holder)

    @property
    def may_have_changed(self):
        """Whether a request that may have changed the product was sent under this flow."""
        return self.changes_sent > self.changes_refused

    def pending_is_live(self):
        """True when another run's intent is recent and its holder may still be working."""
        pending = self.pending
        if not pending:
            return False
        if pending.get("holder") == self.holder:
            return False
        started = parse_time(pending.get("started_at"))
        if started is None:
            return False
        now = self.now()
        if (now - started).total_seconds() >= self.lock_timeout:
            return False
        lease_until = parse_time(pending.get("lease_expires_at"))
        if lease_until is not None and now >= lease_until:
            return False
        return holder_alive(pending.get("holder"))

    # -- writing

    def _write(self, record, budget=None):
        """A check-and-set write against self.version; `budget` seconds (None: what is left of this run's lease)
        to wait out a busy store and to resolve a write whose answer was lost."""
        if self.check_mode:
            raise RuntimeError("the flow must not write in check mode")  # a bug, not a user error
        with self._lock:
            self.version = self._write_resolved(record, self._budget() if budget is None else budget)
            self.record = record
            self.writes += 1
            return self.version

    def _budget(self):
        """Seconds left to this run's lease, less one store time-out (so that no write lands after the lease)."""
        lease_until = parse_time(((self.record or {}).get("pending") or {}).get("lease_expires_at")) if self.holds_intent else None
        left = (lease_until - self.now()).total_seconds() if lease_until is not None else self.lease
        margin = float(getattr(self.store, "timeout", 0) or 0)
        return max(0.0, left - margin)

    def _wait_busy(self, attempt, deadline):
        """Sleep a backoff before the next try at a busy store; False when that would pass the deadline."""
        delay = random.uniform(STORE_BACKOFF / 2, min(STORE_BACKOFF_CAP, STORE_BACKOFF * (2 ** attempt)))
        if self.monotonic() + delay > deadline:
            return False
        self.sleep(delay)
        self.store_waited += delay
        self.store_retries += 1
        self.store.note_wait(delay)
        return True

    def _write_resolved(self, record, budget):
        """Write; a busy store is waited out and a lost answer is read back, until `budget` seconds are spent.

        Read back after a lost answer: the entry holds this write's record (at a newer version) -> it
        landed; it is still at the version the write was based on -> it did not, send it again; anything
        else -> StoreConflict (somebody else wrote), handled as any conflict is.
        """
        base = self.version
        deadline = self.monotonic() + budget
        attempt = 0
        while True:
            try:
                return self.store.write(self.path, record, base)
            except StoreOutcomeUnknown as exc:
                last = exc
                landed = self._read_back(record, base, deadline)
                if landed is None:
                    raise StoreOutcomeUnknown("%s; the store did not answer again before this run's lease ran short" % exc)
                if landed:
                    return landed
            except StoreBusy as exc:
                last = exc
            if not self._wait_busy(attempt, deadline):
                raise last
            attempt += 1

    def _read_until(self, deadline):
        """The entry, a busy store waited out until the deadline; None when it did not answer by then."""
        attempt = 0
        while True:
            try:
                return self.store.read(self.path)
            except StoreBusy:
                if not self._wait_busy(attempt, deadline):
                    return None
                attempt += 1

    def _read_back(self, record, base, deadline):
        """After a write whose answer was lost: its version when it landed, 0 when it did not, None when the store
        did not answer before the deadline. Raises StoreConflict when somebody else wrote."""
        entry = self._read_until(deadline)
        if entry is None:
            return None
        self.resolved_writes += 1
        self.store.note_read_back()
        if entry.data == record and entry.version > base:
            return entry.version
        if entry.version == base:
            return 0
        raise StoreConflict("%s changed since it was read (expected version %d, found %d)" % (self.path, base, entry.version))

    def _lease_until(self):
        return iso(self.now() + datetime.timedelta(seconds=self.lease))

    def begin(self, step, secret_usable=True, **data):
        """Record the intent before a change. Raises BackOff when another run wrote first.

        `secret_usable` says whether the stored secret still works while this step runs (the
        token lookup hands it out only then).
        """
        with self._lock:
            record = copy.deepcopy(self.record) if self.record else {"product": self.product}
            self.rotation_id = str(uuid.uuid4())
            pending = {"rotation_id": self.rotation_id, "step": step, "started_at": iso(self.now()), "holder": self.holder,
                       "lease_expires_at": self._lease_until(), "secret_usable": bool(secret_usable)}
            pending.update(data)
            record["pending"] = pending
            try:
                self._write(record, budget=self.lease)
            except StoreConflict:
                self.rotation_id = None
                raise BackOff("another run changed %s while this one was deciding; this run left it alone" % self.path)
            except StoreBusy as exc:
                self.rotation_id = None
                raise BackOff("the store did not record this run's intent at %s in time (%s); nothing was sent to the product, "
                              "the next run tries again" % (self.path, exc), store_busy=True)
            return pending

    def adopt_pending(self, **data):
        """Take over a stale intent for recovery: re-stamp it with this run as the holder."""
        with self._lock:
            record = copy.deepcopy(self.record)
            old = record["pending"]
            record["pending"] = dict(old, holder=self.holder, started_at=iso(self.now()), lease_expires_at=self._lease_until(),
                                     recovered_from=old.get("holder"), **data)
            self.rotation_id = old.get("rotation_id") or str(uuid.uuid4())
            record["pending"]["rotation_id"] = self.rotation_id
            try:
                self._write(record, budget=self.lease)
            except StoreConflict:
                self.rotation_id = None
                raise BackOff("another run took over the interrupted rotation of %s first" % self.path)
            except StoreBusy as exc:
                self.rotation_id = None
                raise BackOff("the store did not record this run's take-over of %s in time (%s); nothing was sent to the "
                              "product, the next run tries again" % (self.path, exc), store_busy=True)
            return record["pending"]

    def renew(self):
        """Extend this run's lease (the heartbeat). False when the intent is no longer ours."""
        with self._lock:
            if not self.holds_intent or self.check_mode:
                return False
            record = copy.deepcopy(self.record)
            record["pending"]["lease_expires_at"] = self._lease_until()
            try:
                self._write(record, budget=0)
            except StoreConflict:
                # Someone took the entry over (our lease had run out): the next write of this flow
                # finds out and reports it.
                return False
            except StoreError:
                return True   # an outage: try again at the next beat
            return True

    def release(self):
        """End this run's lease but keep its intent as the record of an unfinished change, so the next
        run recovers it at once instead of waiting for the lease to run out."""
        with self._lock:
            if not self.holds_intent or self.check_mode:
                return
            record = copy.deepcopy(self.record)
            record["pending"]["lease_expires_at"] = iso(self.now())
            try:
                self._write(record, budget=min(self._budget(), float(getattr(self.store, "timeout", 0) or 0)))
            except StoreError:
                pass   # the lease runs out by itself

    def step(self, step, secret_usable=None, **data):
        """Advance the intent to the next step (persisting step data such as a new secret)."""
        with self._lock:
            record = copy.deepcopy(self.record)
            pending = dict(record.get("pending") or {}, step=step, lease_expires_at=self._lease_until(), **data)
            if secret_usable is not None:
                pending["secret_usable"] = bool(secret_usable)
            record["pending"] = pending
            return self._persist(record)

    def persist(self, changes, keep_pending=False, remove=(), next_step=None, **step_data):
        """Write `changes` into the record; the intent is cleared unless keep_pending or next_step.

        With `next_step` the intent stays and moves on to that step in the same write (a change
        that still follows, such as role bindings after a mint, stays under the intent).
        """
        with self._lock:
            record = copy.deepcopy(self.record) if self.record else {"product": self.product}
            record.update(changes)
            for key in remove:
                record.pop(key, None)
            if next_step is not None and record.get("pending"):
                pending = dict(record["pending"], step=next_step, lease_expires_at=self._lease_until(), **step_data)
                record["pending"] = pending
            elif not keep_pending:
                record.pop("pending", None)
            return self._persist(record)

    def finish(self):
        """Clear this run's intent (the change is complete and nothing else needs storing)."""
        if self.holds_intent:
            self.persist({})

    def _persist(self, record):
        attempt = 0
        while True:
            try:
                return self._write(record)
            except StoreConflict:
                # Our intent should have kept others out; look at what is there now.
                current = self._read_until(self.monotonic() + self._budget())
                if current is None:
                    raise StoreOutcomeUnknown("%s: the store did not answer the read-back after a conflicting write before "
                                              "this run's lease ran short" % self.path)
                if current.data == record:
                    # An earlier attempt committed although the store reported a failure.
                    self.version = current.version
                    self.record = record
                    self.writes += 1
                    return self.version
                theirs = (current.data or {}).get("pending") or {}
                if self.rotation_id and theirs.get("rotation_id") == self.rotation_id and theirs.get("holder") == self.holder:
                    # Our own intent, written by an attempt whose answer was lost (or by our heartbeat).
                    self.version = current.version
                    continue
                if not self.may_have_changed:
                    raise BackOff("another run changed %s while this one was working (now held by %s); this run changed "
                                  "nothing and left it alone" % (self.path, theirs.get("holder", "nobody")), pending=theirs)
                raise FlowError("%s changed under this run's rotation %s (now held by %s): what this run changed in the product "
                                "was not stored" % (self.path, self.rotation_id, theirs.get("holder", "nobody")),
                                step="persist", action="needs_reconcile",
                                reconcile_steps=["Run the rotation again: the run now holding %s (or the next run) recovers or "
                                                 "re-does the rotation and stores a working secret" % self.path,
                                                 "If it still fails, check in the product that the secret stored at %s works, and "
                                                 "rotate it with state: rotated if it does not" % self.path])
            except StoreBusy:
                raise   # waited out for what was left of the lease already
            except StoreError:
                attempt += 1
                if attempt >= self.persist_attempts:
                    raise
                self.sleep(self.persist_backoff * (2 ** (attempt - 1)))

    def abandon(self):
        """Withdraw this run's intent after a definite failure: nothing was changed."""
        with self._lock:
            if not self.holds_intent:
                return
            if not self.before:
                self.delete()
                return
            record = copy.deepcopy(self.record)
            record.pop("pending", None)
            self._persist(record)

    def delete(self):
        if self.check_mode:
            raise RuntimeError("the flow must not write in check mode")
        with self._lock:
            existed = self._delete_resolved(self._budget())
            self.writes += 1
            self.record = None
            return existed

    def _delete_resolved(self, budget):
        """Delete; a busy store is waited out and a lost answer read back (gone: it landed), until `budget` runs out."""
        deadline = self.monotonic() + budget
        attempt = 0
        while True:
            try:
                return self.store.delete(self.path)
            except StoreBusy as exc:
                last = exc
                if isinstance(exc, StoreOutcomeUnknown):
                    entry = self._read_until(deadline)
                    if entry is None:
                        raise StoreOutcomeUnknown("%s; the store did not answer again before this run's lease ran short" % exc)
                    self.resolved_writes += 1
                    self.store.note_read_back()
                    if entry.data is None and entry.version == 0:
                        return True
            if not self._wait_busy(attempt, deadline):
                raise last
            attempt += 1

    # -- the change guard (called by the HTTP layer through the driver)

    def authorize_change(self, what):
        """Before a request that changes the product: this run's intent must be recorded."""
        if self.check_mode or not self.holds_intent:
            raise IntentMissing("%s: %s was about to be sent without this run's intent recorded at %s; this is a bug in "
                                "tokenops.rotation, nothing was sent" % (self.product, what, self.path))
        self.changes_sent += 1

    def change_refused(self):
        """The last change request got a definite refusal: it changed nothing."""
        self.changes_refused += 1


# ---------------------------------------------------------------- records and results

def minted_fields(secret, now, expires_at=None, rotated=True, count=None, extra=None):
    """The record fields for a freshly minted secret."""
    fields = {
        "secret": secret,
        "fingerprint": fingerprint(secret),
        "issued_at": iso(now),
        "expires_at": iso(expires_at) if isinstance(expires_at, datetime.datetime) else expires_at,
    }
    if rotated:
        fields["rotated_at"] = iso(now)
    if count is not None:
        fields["rotation_count"] = count
    if extra:
        fields.update(extra)
    return fields


def public_view(record):
    """What may be shown of a record: no secret values, only fingerprints and times."""
    if not record:
        return {}
    view = {}
    for key in ("token_id", "fingerprint", "issued_at", "expires_at", "rotated_at", "rotation_count", "verified"):
        if record.get(key) is not None:
            view[key] = record[key]
    if record.get("pending"):
        view["pending"] = {k: v for k, v in record["pending"].items()
                           if k in ("rotation_id", "step", "started_at", "holder", "new_token_id", "lease_expires_at", "secret_usable")}
    if record.get("previous"):
        prev = record["previous"]
        view["previous"] = {k: v for k, v in prev.items() if k in ("token_id", "fingerprint", "revoke_after")}
    return view


def diff_text(record):
    view = public_view(record)
    if not view:
        return "(absent)\n"
    lines = []
    for key in sorted(view):
        value = view[key]
        if isinstance(value, dict):
            for sub in sorted(value):
                lines.append("%s.%s: %s" % (key, sub, value[sub]))
        else:
            lines.append("%s: %s" % (key, value))
    return "\n".join(lines) + "\n"


def result_for(name, action, flow=None, record=None, changed=None, msg=None, secret=None, return_secret=False, **extra):
    """The result shape of DESIGN.md, for one credential."""
    if action not in ACTIONS:
        raise ValueError("unknown action %s" % action)
    record = record if record is not None else (flow.record if flow else None)
    view = public_view(record)
    result = {
        "id": name,
        "changed": bool(changed) if changed is not None else action not in ("none", "needs_reconcile", "needs_interaction"),
        "action": action,
        "token_id": view.get("token_id", name),
        "fingerprint": view.get("fingerprint"),
        "expires_at": view.get("expires_at"),
        "rotated_at": view.get("rotated_at"),
        "store_path": flow.path if flow else None,
        "store_version": flow.version if flow else None,
    }
    if msg:
        result["msg"] = msg
    if view.get("pending"):
        result["pending"] = view["pending"]
    if view.get("previous"):
        result["previous"] = view["previous"]
    if return_secret:
        result["secret"] = secret if secret is not None else (record or {}).get("secret")
    result.update(extra)
    return result
