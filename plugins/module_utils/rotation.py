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
import re
import socket
import time
import uuid

from ansible_collections.tokenops.rotation.plugins.module_utils.store import (
    StoreConflict,
    StoreError,
)

# "removed": the store entry was deleted but the credential lives on in the product (DPA has no delete API).
ACTIONS = ("none", "created", "updated", "rotated", "revoked", "recovered", "needs_reconcile", "needs_interaction", "removed")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class FlowError(Exception):
    """A failure of the flow itself, with the step it happened in; message has no secrets."""

    def __init__(self, message, step=None, action=None, details=None):
        super(FlowError, self).__init__(message)
        self.step = step
        self.action = action
        self.details = details or {}


class BackOff(Exception):
    """Another run holds this entry (a live intent, or it wrote first)."""


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
    """False only when the holder ran on this host and its process is gone."""
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
    intent before a mint; `persist` stores what was minted (retrying a store outage briefly,
    because the secret exists nowhere else); `finish` clears the intent.
    """

    def __init__(self, store, path, product, check_mode=False, lock_timeout=300.0, holder=None,
                 persist_attempts=3, persist_backoff=0.5, now=utcnow, sleep=time.sleep):
        self.store = store
        self.path = path
        self.product = product
        self.check_mode = check_mode
        self.lock_timeout = lock_timeout
        self.holder = holder or holder_id()
        self.persist_attempts = persist_attempts
        self.persist_backoff = persist_backoff
        self.now = now
        self.sleep = sleep
        self.version = 0
        self.record = None
        self.before = None
        self.writes = 0
        self.rotation_id = None

    # -- reading

    def load(self):
        entry = self.store.read(self.path)
        self.version = entry.version
        self.record = copy.deepcopy(entry.data) if entry.data else None
        self.before = copy.deepcopy(self.record)
        return self.record

    @property
    def pending(self):
        return (self.record or {}).get("pending")

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
        age = (self.now() - started).total_seconds()
        return age < self.lock_timeout and holder_alive(pending.get("holder"))

    # -- writing

    def _write(self, record):
        if self.check_mode:
            raise RuntimeError("the flow must not write in check mode")  # a bug, not a user error
        self.version = self.store.write(self.path, record, self.version)
        self.record = record
        self.writes += 1
        return self.version

    def begin(self, step, **data):
        """Record the intent before minting. Raises BackOff when another run wrote first."""
        record = copy.deepcopy(self.record) if self.record else {"product": self.product}
        self.rotation_id = str(uuid.uuid4())
        pending = {"rotation_id": self.rotation_id, "step": step, "started_at": iso(self.now()), "holder": self.holder}
        pending.update(data)
        record["pending"] = pending
        try:
            self._write(record)
        except StoreConflict:
            raise BackOff("another run changed %s while this one was deciding; it backed off" % self.path)
        return pending

    def adopt_pending(self):
        """Take over a stale intent for recovery: re-stamp it with this run as the holder."""
        record = copy.deepcopy(self.record)
        record["pending"] = dict(record["pending"], holder=self.holder, started_at=iso(self.now()),
                                 recovered_from=record["pending"].get("holder"))
        self.rotation_id = record["pending"].get("rotation_id")
        try:
            self._write(record)
        except StoreConflict:
            raise BackOff("another run took over the interrupted rotation of %s first" % self.path)
        return record["pending"]

    def step(self, step, **data):
        """Advance the intent to the next step (persisting step data such as a new secret)."""
        record = copy.deepcopy(self.record)
        record["pending"] = dict(record.get("pending") or {}, step=step, **data)
        return self._persist(record)

    def persist(self, changes, keep_pending=False, remove=()):
        """Write `changes` into the record; the intent is cleared unless keep_pending."""
        record = copy.deepcopy(self.record) if self.record else {"product": self.product}
        record.update(changes)
        for key in remove:
            record.pop(key, None)
        if not keep_pending:
            record.pop("pending", None)
        return self._persist(record)

    def _persist(self, record):
        attempt = 0
        while True:
            try:
                return self._write(record)
            except StoreConflict:
                # Our intent should have kept others out; look at what is there now.
                current = self.store.read(self.path)
                if current.data == record:
                    # An earlier attempt committed although the store reported a failure.
                    self.version = current.version
                    self.record = record
                    self.writes += 1
                    return self.version
                theirs = (current.data or {}).get("pending") or {}
                if self.rotation_id and theirs.get("rotation_id") == self.rotation_id:
                    self.version = current.version
                    continue
                raise FlowError("%s changed under this run's rotation %s (now held by %s); "
                                "what this run minted was not stored" % (self.path, self.rotation_id, theirs.get("holder", "nobody")),
                                step="persist", action="needs_reconcile")
            except StoreError:
                attempt += 1
                if attempt >= self.persist_attempts:
                    raise
                self.sleep(self.persist_backoff * (2 ** (attempt - 1)))

    def abandon(self):
        """Withdraw this run's intent after a definite failure: nothing was minted."""
        if not self.pending or self.pending.get("rotation_id") != self.rotation_id:
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
        existed = self.store.delete(self.path)
        self.writes += 1
        self.record = None
        return existed


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
        view["pending"] = {k: v for k, v in record["pending"].items() if k in ("rotation_id", "step", "started_at", "holder", "new_token_id")}
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
