# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adaptive concurrency per endpoint: the job slows down instead of failing tokens.

Every request to a store or a product goes through the one HTTP layer, which takes a slot of its
endpoint (scheme, host and port) first. How many slots an endpoint has is its limit, adapted as
TCP adapts a window (additive increase, multiplicative decrease): an answer that came back 429 or
503, a time-out, or an answer slower than half the client's timeout halves it (once per round of
requests: only a request sent after the last decrease can decrease it again); every good answer
adds 1/limit, about one slot per round. A 429's Retry-After pauses the endpoint: no request to it
leaves before that time. A module's `concurrency` (its threads) stays the ceiling of its own share.

Several forks of one job, and other jobs of the same user on this host, share one endpoint's limit
through a small file per endpoint (`TOKENOPS_BACKPRESSURE_DIR`, else `<temp dir>/tokenops-<uid>/endpoints`):
its first bytes hold the limit, the pause and a round counter (read through mmap, changed under
an fcntl lock), and slot i is a POSIX lock on byte 4096 + i of the same file. The kernel drops a
process's locks when it dies, so a killed module never keeps a slot. A limit untouched for
STALE_AFTER seconds starts again from the ceiling, so a slow store yesterday does not slow today's job.
Where the folder cannot be used, the limit is kept per process.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import mmap
import os
import struct
import tempfile
import threading
import time

try:
    import fcntl
    HAS_FCNTL = True
except ImportError:  # pragma: no cover - not POSIX
    HAS_FCNTL = False

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    from urlparse import urlsplit  # type: ignore

CEILING = 256            # slots per endpoint: the most threads any number of modules can have in flight
STALE_AFTER = 120.0      # seconds after which an untouched shared limit starts again from the ceiling
SLOT_BASE = 4096         # byte offset of slot 0's lock in the endpoint file
STATE = struct.Struct("<dddqq")     # limit, pause_until, updated_at, round, high (most slots held since the round began)
HIGH = struct.Struct("<q")
HIGH_AT = STATE.size - HIGH.size   # the last field
FILE_SIZE = 4096
MAX_PAUSE = 60.0         # the longest Retry-After the clients wait for (http_client.HttpClient.max_retry_after)
POLL = 0.02              # how often a waiting thread looks again for a slot freed by another process

# Outcomes of one request, as the HTTP layer classifies them.
OK = "ok"
THROTTLED = "throttled"     # 429
OVERLOADED = "overloaded"   # 503, 502, 504
TIMEOUT = "timeout"
SLOW = "slow"               # answered, but later than half the client's timeout
NEUTRAL = "neutral"         # no answer that says anything about load (refused, TLS error)
DECREASE = (THROTTLED, OVERLOADED, TIMEOUT, SLOW)


def endpoint_of(url):
    """The endpoint a URL's requests share: scheme://host:port, lowercased, without user info."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if ":" in host:
        host = "[%s]" % host
    return "%s://%s:%d" % (parts.scheme.lower(), host, port)


def shared_folder():
    folder = os.environ.get("TOKENOPS_BACKPRESSURE_DIR")
    if folder:
        return folder
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return os.path.join(tempfile.gettempdir(), "tokenops-%d" % uid, "endpoints")


class Ticket:
    __slots__ = ("slot", "round", "started")

    def __init__(self, slot, round_, started):
        self.slot = slot
        self.round = round_
        self.started = started


class EndpointStats:
    """What one endpoint cost this process: seconds waited, retries, the lowest limit, what slowed it."""

    def __init__(self, ceiling):
        self.waited = 0.0
        self.retries = 0
        self.lowest = ceiling
        self.throttled = 0
        self.timeouts = 0
        self.slow = 0
        self.requests = 0
        self.read_backs = 0     # writes whose lost answer was resolved by reading the entry back

    def as_dict(self, ceiling):
        return {"waited_s": round(self.waited, 3), "retries": self.retries, "lowest_concurrency": min(self.lowest, ceiling),
                "throttled": self.throttled, "timeouts": self.timeouts, "slow_answers": self.slow, "requests": self.requests,
                "resolved_by_read_back": self.read_backs}


class _LocalState:
    """The shared state's stand-in where no file can be used: the same fields, in this process only."""

    def __init__(self, ceiling):
        self.values = [float(ceiling), 0.0, time.time(), 0, 0]

    def read(self):
        return tuple(self.values)

    def write(self, values):
        self.values = list(values)

    def write_high(self, value):
        self.values[4] = max(self.values[4], value)


class _SharedState:
    """The endpoint file: the state in its first bytes (mmap), slot locks further on."""

    def __init__(self, path, ceiling):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(self.fd).st_size < FILE_SIZE:
                os.ftruncate(self.fd, FILE_SIZE)
            self.map = mmap.mmap(self.fd, FILE_SIZE)
        except Exception:
            os.close(self.fd)
            raise
        self.ceiling = ceiling

    def read(self):
        return STATE.unpack_from(self.map, 0)

    def write(self, values):
        STATE.pack_into(self.map, 0, *values)

    def write_high(self, value):
        if value > HIGH.unpack_from(self.map, HIGH_AT)[0]:
            HIGH.pack_into(self.map, HIGH_AT, value)

    def lock(self):
        fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, 0)

    def unlock(self):
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, 0)

    def try_slot(self, slot):
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, SLOT_BASE + slot)
            return True
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise

    def free_slot(self, slot):
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, SLOT_BASE + slot)


class EndpointLimit:
    """The adaptive limit of one endpoint, as this process sees and changes it."""

    def __init__(self, endpoint, folder=None, ceiling=CEILING, sleep=time.sleep, clock=time.time):
        self.endpoint = endpoint
        self.ceiling = int(ceiling)
        self.sleep = sleep
        self.clock = clock
        self.stats = EndpointStats(self.ceiling)
        # TOKENOPS_BACKPRESSURE=fixed keeps every limit at its ceiling (the benchmark's comparison; pauses still hold)
        self.adaptive = os.environ.get("TOKENOPS_BACKPRESSURE", "adaptive") != "fixed"
        self._lock = threading.Lock()          # this process's threads, around the shared state and the slot table
        self._freed = threading.Condition(self._lock)
        self._held = set()                     # slots this process holds (POSIX locks belong to the process)
        self.shared = False
        self._state = None
        if folder is not False and HAS_FCNTL:
            try:
                folder = folder or shared_folder()
                os.makedirs(folder, mode=0o700, exist_ok=True)
                name = hashlib.sha256(endpoint.encode("utf-8")).hexdigest()[:24] + ".limit"
                self._state = _SharedState(os.path.join(folder, name), self.ceiling)
                self.shared = True
            except (OSError, ValueError):
                self._state = None
        if self._state is None:
            self._state = _LocalState(self.ceiling)
        self._fresh()

    # -- the shared state

    def _locked_state(self):
        """Enter the shared state's lock (this process's threading lock must be held)."""
        if self.shared:
            self._state.lock()

    def _unlock_state(self):
        if self.shared:
            self._state.unlock()

    def _fresh(self):
        with self._lock:
            self._locked_state()
            try:
                limit, pause_until, updated_at, round_, high = self._state.read()
                now = self.clock()
                if updated_at <= 0 or now - updated_at > STALE_AFTER or not 1 <= limit <= self.ceiling:
                    self._state.write((float(self.ceiling), 0.0, now, round_, 0))
            finally:
                self._unlock_state()

    def limit(self):
        return int(self._state.read()[0])

    # -- taking and giving back a slot

    def acquire(self, skip_pause=False):
        """Wait for the endpoint's pause to end and for a free slot under its limit; return a ticket.

        `skip_pause`: the caller waited out its own 429's Retry-After already."""
        started = time.monotonic()
        blocked = False
        while True:
            limit, pause_until, _updated, round_, high = self._state.read()
            now = self.clock()
            if pause_until > now and not skip_pause:
                blocked = True
                self.sleep(min(pause_until - now, 1.0))
                continue
            allowed = max(1, min(self.ceiling, int(limit)))
            with self._lock:
                slot = self._take(allowed)
                if slot is not None:
                    if slot + 1 > high:
                        self._note_high(slot + 1)
                    if blocked:
                        self.stats.waited += time.monotonic() - started
                    self.stats.requests += 1
                    self.stats.lowest = min(self.stats.lowest, allowed)
                    return Ticket(slot, round_, time.monotonic())
                # Woken by a slot this process frees, or after POLL to see one another process freed.
                blocked = True
                self._freed.wait(POLL)

    def _take(self, allowed):
        for slot in range(allowed):
            if slot in self._held:
                continue
            if not self.shared or self._state.try_slot(slot):
                self._held.add(slot)
                return slot
        return None

    def _note_high(self, value):
        # Only this field, and not under the file lock: a race only makes the next decrease start a little lower or higher.
        self._state.write_high(value)

    def release(self, ticket, outcome, slow_after=None):
        """Give the slot back and adapt the limit to what the answer said (an OK later than slow_after is SLOW)."""
        if outcome == OK and slow_after and time.monotonic() - ticket.started > slow_after:
            outcome = SLOW
        with self._lock:
            if self.shared:
                self._state.free_slot(ticket.slot)
            self._held.discard(ticket.slot)
            self._freed.notify()
            if outcome == THROTTLED:
                self.stats.throttled += 1
            elif outcome == TIMEOUT:
                self.stats.timeouts += 1
            elif outcome == SLOW:
                self.stats.slow += 1
            if not self.adaptive:
                return
            if outcome in DECREASE:
                self._decrease(ticket)
            elif outcome == OK:
                self._increase()

    def _decrease(self, ticket):
        self._locked_state()
        try:
            limit, pause_until, _updated, round_, high = self._state.read()
            if ticket.round != round_:
                return      # sent before the last decrease: that one already answered for this round
            in_flight = max(1, min(int(limit), int(high) or int(limit)))
            limit = max(1.0, float(in_flight // 2))
            # The next round's decrease starts from the new limit (slots above it are not taken).
            self._state.write((limit, pause_until, self.clock(), round_ + 1, int(limit)))
            self.stats.lowest = min(self.stats.lowest, int(limit))
        finally:
            self._unlock_state()

    def _increase(self):
        limit = self._state.read()[0]
        if limit >= self.ceiling:
            return
        self._locked_state()
        try:
            limit, pause_until, _updated, round_, high = self._state.read()
            limit = min(float(self.ceiling), limit + 1.0 / max(limit, 1.0))
            self._state.write((limit, pause_until, self.clock(), round_, high))
        finally:
            self._unlock_state()

    def pause(self, seconds):
        """A Retry-After: no request to this endpoint leaves for `seconds`. A wait longer than MAX_PAUSE is no
        pause: the clients do not wait that long (they report the 429), and neither do the endpoint's other requests."""
        if not seconds or seconds <= 0 or seconds > MAX_PAUSE:
            return
        with self._lock:
            self._locked_state()
            try:
                values = list(self._state.read())
                values[1] = max(values[1], self.clock() + seconds)
                values[2] = self.clock()
                self._state.write(values)
            finally:
                self._unlock_state()

    def note_wait(self, seconds):
        with self._lock:
            self.stats.waited += max(0.0, seconds)

    def note_retry(self):
        with self._lock:
            self.stats.retries += 1

    def note_read_back(self):
        with self._lock:
            self.stats.read_backs += 1


_LIMITS = {}
_LIMITS_LOCK = threading.Lock()


def limit_for(url):
    """The process's EndpointLimit of a URL's endpoint (one per endpoint, shared by the store and the product clients)."""
    endpoint = endpoint_of(url)
    with _LIMITS_LOCK:
        found = _LIMITS.get(endpoint)
        if found is None:
            found = _LIMITS[endpoint] = EndpointLimit(endpoint)
        return found


def report(ceiling=CEILING):
    """Per endpoint, what this process waited, retried and fell to (for the module's result); only endpoints it used.

    `ceiling`: the module's own concurrency, which its lowest concurrency cannot exceed."""
    with _LIMITS_LOCK:
        limits = list(_LIMITS.values())
    return dict((limit.endpoint, limit.stats.as_dict(min(ceiling, limit.ceiling))) for limit in limits if limit.stats.requests)
