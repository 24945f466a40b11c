# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared rotation flow (plugins/module_utils/rotation.py): durations, the due policy,
fingerprints, times, the intent/persist/abandon cycle over a real file store, and what results
and diffs may show."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import socket
import subprocess
import sys

import pytest

from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import (
    IntentMissing,
    BackOff,
    Flow,
    FlowError,
    Policy,
    diff_text,
    fingerprint,
    holder_alive,
    holder_id,
    iso,
    minted_fields,
    parse_duration,
    parse_rotate_before,
    parse_time,
    public_view,
    result_for,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.store import (
    Store,
    StoreDenied,
    StoreUnavailable,
    store_from_params,
)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 23, 6, 20, 0, tzinfo=UTC)
PATH = "tokenops/das/das.example.com/app"
FOREIGN = "build-host-elsewhere.example:4242"


def hours(n):
    return datetime.timedelta(hours=n)


def days(n):
    return datetime.timedelta(days=n)


# ---- durations --------------------------------------------------------------------------------

@pytest.mark.parametrize("value, seconds", [
    ("90d", 90 * 86400), ("24h", 86400), ("45s", 45), ("90m", 5400), ("2w", 2 * 604800), ("500ms", 0.5),
    ("1h30m", 5400), ("1d12h", 129600), ("1w2d3h4m5s", 604800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
    ("1.5h", 5400), ("  24H ", 86400), ("90", 90), ("0", 0), ("2.5", 2.5), (90, 90.0), (1.5, 1.5), (0, 0.0),
])
def test_parse_duration(value, seconds):
    result = parse_duration(value, "max_age")
    assert result == pytest.approx(seconds)
    assert isinstance(result, float)


@pytest.mark.parametrize("value", ["", "  ", "abc", "5x", "7 d", "1h 30m", "-5", "-5m", "h", "30m1", "1h-", "d7",
                                   "1,5h", True, False, -1, -0.5])
def test_parse_duration_rejects_bad_input_naming_the_option(value):
    with pytest.raises(ValueError) as caught:
        parse_duration(value, "max_age")
    assert "max_age" in str(caught.value)


@pytest.mark.parametrize("value, expected", [
    ("20%", ("percent", 20.0)), ("0%", ("percent", 0.0)), ("100%", ("percent", 100.0)), (" 12.5% ", ("percent", 12.5)),
    ("12h", ("seconds", 43200.0)), ("7d", ("seconds", 604800.0)), ("3600", ("seconds", 3600.0)), (60, ("seconds", 60.0)),
])
def test_parse_rotate_before(value, expected):
    assert parse_rotate_before(value) == expected


@pytest.mark.parametrize("value", ["150%", "-1%", "x%", "%", "12q", ""])
def test_parse_rotate_before_rejects_bad_input_naming_the_option(value):
    with pytest.raises(ValueError) as caught:
        parse_rotate_before(value)
    assert "rotate_before" in str(caught.value)


# ---- the due policy ---------------------------------------------------------------------------

def test_due_when_expiry_is_within_rotate_before_seconds():
    policy = Policy(rotate_before="2h")
    due, reason = policy.due(NOW, issued_at=NOW - days(1), expires_at=NOW + hours(1))
    assert due is True
    assert "rotate_before" in reason and iso(NOW + hours(1)) in reason


def test_not_due_when_expiry_is_beyond_rotate_before_seconds():
    assert Policy(rotate_before="2h").due(NOW, issued_at=NOW - days(1), expires_at=NOW + hours(3)) == (False, None)


def test_due_when_expiry_is_within_a_percentage_of_the_lifetime():
    policy = Policy(rotate_before="20%")
    # lifetime 10 days, 20% = 2 days; 1 day left
    assert policy.due(NOW, issued_at=NOW - days(9), expires_at=NOW + days(1))[0] is True
    # 3 days left of 10
    assert policy.due(NOW, issued_at=NOW - days(7), expires_at=NOW + days(3)) == (False, None)


def test_percentage_uses_rotated_at_when_issued_at_is_unknown():
    policy = Policy(rotate_before="50%")
    # lifetime 10 h from rotated_at, 50% = 5 h; 4 h left
    assert policy.due(NOW, rotated_at=NOW - hours(6), expires_at=NOW + hours(4))[0] is True
    assert policy.due(NOW, rotated_at=NOW - hours(4), expires_at=NOW + hours(6)) == (False, None)


def test_percentage_without_a_start_time_only_catches_expiry():
    policy = Policy(rotate_before="90%")
    assert policy.due(NOW, expires_at=NOW + hours(1)) == (False, None)
    assert policy.due(NOW, expires_at=NOW - hours(1))[0] is True


@pytest.mark.parametrize("rotate_before", ["20%", "1s", None])
def test_expired_is_due(rotate_before):
    policy = Policy(rotate_before=rotate_before)
    due, reason = policy.due(NOW, issued_at=NOW - days(30), expires_at=NOW - datetime.timedelta(seconds=1))
    assert due is True
    assert reason.startswith("expired")


def test_expiring_exactly_now_is_expired():
    assert Policy(rotate_before=None).due(NOW, expires_at=NOW)[0] is True


def test_due_when_older_than_max_age():
    policy = Policy(rotate_before=None, max_age="30d")
    due, reason = policy.due(NOW, issued_at=NOW - days(31), rotated_at=NOW - days(31))
    assert due is True and "max_age" in reason
    assert policy.due(NOW, issued_at=NOW - days(29), rotated_at=NOW - days(29)) == (False, None)


def test_max_age_counts_from_the_last_rotation():
    policy = Policy(rotate_before=None, max_age="30d")
    assert policy.due(NOW, issued_at=NOW - days(300), rotated_at=NOW - days(1)) == (False, None)
    assert policy.due(NOW, issued_at=NOW - days(31))[0] is True   # never rotated: from issue


def test_max_age_applies_to_tokens_that_do_not_expire():
    policy = Policy(rotate_before="20%", max_age="7d")
    assert policy.due(NOW, issued_at=NOW - days(8), expires_at=None)[0] is True


def test_nothing_due():
    assert Policy().due(NOW) == (False, None)
    policy = Policy(rotate_before="20%", max_age="90d")
    assert policy.due(NOW, issued_at=NOW - days(1), expires_at=NOW + days(89)) == (False, None)


def test_policy_from_params():
    policy = Policy.from_params({"rotate_before": "6h", "max_age": "1d"})
    assert policy.rotate_before == ("seconds", 21600.0)
    assert policy.max_age == 86400.0
    empty = Policy.from_params({})
    assert empty.rotate_before is None and empty.max_age is None


def test_policy_rejects_bad_options():
    with pytest.raises(ValueError, match="max_age"):
        Policy(max_age="forever")
    with pytest.raises(ValueError, match="rotate_before"):
        Policy(rotate_before="120%")


# ---- fingerprints and times -------------------------------------------------------------------

def test_fingerprint_is_short_stable_and_hides_the_secret():
    secret = "s3cr3t-value-of-a-live-token-0123456789"
    first = fingerprint(secret)
    assert first == fingerprint(secret)
    assert re.fullmatch(r"sha256:[0-9a-f]{12}", first)
    assert first == "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]
    assert secret not in first and secret[:8] not in first
    assert fingerprint(secret + "x") != first


@pytest.mark.parametrize("empty", [None, ""])
def test_fingerprint_of_nothing_is_none(empty):
    assert fingerprint(empty) is None


@pytest.mark.parametrize("text, expected", [
    ("2026-11-23T06:20:00Z", NOW),
    ("2026-11-23T06:20:00z", NOW),
    ("2026-11-23T06:20:00.123456789Z", NOW.replace(microsecond=123456)),
    ("2026-11-23T08:20:00.987654321+02:00", NOW.replace(microsecond=987654)),
    ("2026-11-23T01:50:00-04:30", NOW),
    ("2026-11-23T06:20:00.5+00:00", NOW.replace(microsecond=500000)),
    ("2026-11-23T06:20:00", NOW),   # naive: taken as UTC
])
def test_parse_time(text, expected):
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.tzinfo is not None


def test_parse_time_passes_none_and_datetimes():
    assert parse_time(None) is None
    assert parse_time("") is None
    assert parse_time(NOW) is NOW
    assert parse_time(datetime.datetime(2026, 11, 23, 6, 20)) == NOW


def test_iso_is_utc_with_z():
    assert iso(NOW) == "2026-11-23T06:20:00Z"
    assert iso(datetime.datetime(2026, 11, 23, 8, 20, tzinfo=datetime.timezone(hours(2)))) == "2026-11-23T06:20:00Z"
    assert iso(None) is None
    assert parse_time(iso(NOW)) == NOW


def test_minted_fields():
    fields = minted_fields("new-secret-value", NOW, expires_at=NOW + days(1), count=4, extra={"token_id": "app"})
    assert fields == {"secret": "new-secret-value", "fingerprint": fingerprint("new-secret-value"),
                      "issued_at": "2026-11-23T06:20:00Z", "expires_at": "2026-11-24T06:20:00Z",
                      "rotated_at": "2026-11-23T06:20:00Z", "rotation_count": 4, "token_id": "app"}
    assert "rotated_at" not in minted_fields("x-secret", NOW, rotated=False)


# ---- holders ----------------------------------------------------------------------------------

def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()   # reaped: the pid names no process now
    return proc.pid


def test_holder_id_is_host_and_pid():
    assert holder_id() == "%s:%d" % (socket.gethostname(), os.getpid())


def test_holder_alive():
    host = socket.gethostname()
    assert holder_alive(FOREIGN) is True                 # cannot tell for another host
    assert holder_alive("%s:%d" % (host, os.getpid())) is True
    assert holder_alive("%s:%d" % (host, os.getppid())) is True
    assert holder_alive("%s:%d" % (host, _dead_pid())) is False
    assert holder_alive("garbage") is True                # unknown shape: assume alive
    assert holder_alive(None) is True


# ---- the flow over a real file store ----------------------------------------------------------

@pytest.fixture
def store(tmp_path):
    made = store_from_params({"backend": "file", "file_path": str(tmp_path / "s.vault"), "vault_password": "pw"})
    yield made
    made.close()


class Clock:
    def __init__(self, value=NOW):
        self.value = value

    def __call__(self):
        return self.value


def make_flow(store, holder="runner-a.example:100", clock=None, **kwargs):
    kwargs.setdefault("sleep", lambda seconds: None)
    return Flow(store, PATH, "das", holder=holder, now=clock or Clock(), **kwargs)


OLD_RECORD = {"product": "das", "secret": "old-secret-aaaaaaaaaaaa", "fingerprint": fingerprint("old-secret-aaaaaaaaaaaa"),
              "token_id": "app", "rotation_count": 2, "issued_at": "2026-10-01T00:00:00Z"}


def test_begin_writes_the_intent_first(store):
    flow = make_flow(store)
    assert flow.load() is None
    pending = flow.begin("minting", new_token_id="app-2")
    entry = store.read(PATH)
    assert entry.version == 1 == flow.version
    assert entry.data["product"] == "das"
    stored = entry.data["pending"]
    assert stored == pending
    assert stored["rotation_id"] == flow.rotation_id and re.fullmatch(r"[0-9a-f-]{36}", stored["rotation_id"])
    assert stored["holder"] == "runner-a.example:100"
    assert stored["step"] == "minting"
    assert stored["started_at"] == "2026-11-23T06:20:00Z"
    assert stored["new_token_id"] == "app-2"
    assert flow.writes == 1


def test_begin_keeps_the_existing_record(store):
    store.write(PATH, OLD_RECORD, 0)
    flow = make_flow(store)
    flow.load()
    flow.begin("minting")
    data = store.read(PATH).data
    assert {k: data[k] for k in OLD_RECORD} == OLD_RECORD
    assert data["pending"]["rotation_id"] == flow.rotation_id


@pytest.mark.parametrize("existing", [False, True])
def test_second_flow_that_read_the_old_version_backs_off(store, existing):
    if existing:
        store.write(PATH, OLD_RECORD, 0)
    first, second = make_flow(store, holder="runner-a:1"), make_flow(store, holder="runner-b:2")
    first.load()
    second.load()
    first.begin("minting")
    with pytest.raises(BackOff):
        second.begin("minting")
    assert store.read(PATH).data["pending"]["rotation_id"] == first.rotation_id
    assert store.read(PATH).data["pending"]["holder"] == "runner-a:1"


def _flow_seeing(store, pending_holder, age_seconds, lock_timeout=300.0, lease=600.0):
    writer = make_flow(store, holder=pending_holder, lease=lease)
    writer.load()
    writer.begin("minting")
    reader = make_flow(store, holder="runner-b.example:200", clock=Clock(NOW + datetime.timedelta(seconds=age_seconds)),
                       lock_timeout=lock_timeout)
    reader.load()
    return reader


def test_fresh_foreign_intent_is_live(store):
    assert _flow_seeing(store, FOREIGN, age_seconds=10).pending_is_live() is True


def test_foreign_intent_older_than_lock_timeout_is_stale(store):
    assert _flow_seeing(store, FOREIGN, age_seconds=301, lock_timeout=300).pending_is_live() is False
    store.delete(PATH)
    assert _flow_seeing(store, FOREIGN, age_seconds=299, lock_timeout=300).pending_is_live() is True


def test_foreign_intent_whose_lease_ran_out_is_stale_long_before_lock_timeout(store):
    # A holder on another host (an AWX job in another container) cannot be asked whether it lives;
    # a lease it no longer renews says it died.
    assert _flow_seeing(store, FOREIGN, age_seconds=29, lease=30).pending_is_live() is True
    store.delete(PATH)
    assert _flow_seeing(store, FOREIGN, age_seconds=31, lease=30).pending_is_live() is False


def test_a_renewed_lease_keeps_the_intent_live(store):
    clock = Clock()
    writer = make_flow(store, holder=FOREIGN, clock=clock, lease=30)
    writer.load()
    writer.begin("minting")
    for _beat in range(5):
        clock.value += datetime.timedelta(seconds=20)
        assert writer.renew() is True
    reader = make_flow(store, holder="runner-b.example:200", clock=Clock(clock.value + datetime.timedelta(seconds=25)))
    reader.load()
    assert reader.pending_is_live() is True
    reader = make_flow(store, holder="runner-b.example:200", clock=Clock(clock.value + datetime.timedelta(seconds=31)))
    reader.load()
    assert reader.pending_is_live() is False


def test_renew_stops_when_someone_else_took_the_intent_over(store):
    writer = make_flow(store, holder=FOREIGN, lease=30)
    writer.load()
    writer.begin("minting")
    thief = make_flow(store, holder="runner-b.example:200", clock=Clock(NOW + datetime.timedelta(seconds=60)))
    thief.load()
    assert thief.pending_is_live() is False
    thief.adopt_pending()
    assert writer.renew() is False
    assert store.read(PATH).data["pending"]["holder"] == "runner-b.example:200"


def test_release_ends_the_lease_but_keeps_the_intent(store):
    writer = make_flow(store, holder=FOREIGN, lease=600)
    writer.load()
    writer.begin("minting", token_id="app")
    writer.release()
    pending = store.read(PATH).data["pending"]
    assert pending["step"] == "minting" and pending["token_id"] == "app"
    reader = make_flow(store, holder="runner-b.example:200")
    reader.load()
    assert reader.pending_is_live() is False


def test_an_intent_without_a_lease_falls_back_to_lock_timeout(store):
    legacy = dict(OLD_RECORD, pending={"rotation_id": "r-1", "step": "minting", "holder": FOREIGN,
                                       "started_at": iso(NOW - datetime.timedelta(seconds=200))})
    store.write(PATH, legacy, 0)
    reader = make_flow(store, holder="runner-b.example:200", lock_timeout=300)
    reader.load()
    assert reader.pending_is_live() is True
    reader = make_flow(store, holder="runner-b.example:200", lock_timeout=100)
    reader.load()
    assert reader.pending_is_live() is False


def test_a_change_needs_this_runs_recorded_intent(store):
    flow = make_flow(store)
    flow.load()
    with pytest.raises(IntentMissing):
        flow.authorize_change("regenerate token app")
    flow.begin("minting")
    flow.authorize_change("regenerate token app")
    assert flow.changes_sent == 1 and flow.may_have_changed
    flow.change_refused()
    assert not flow.may_have_changed
    flow.persist({"secret": "new-secret-bbbbbbbbbbbb"})
    with pytest.raises(IntentMissing):
        flow.authorize_change("bind a role to app")


def test_check_mode_flow_refuses_every_change(store):
    flow = make_flow(store, check_mode=True)
    flow.load()
    with pytest.raises(IntentMissing):
        flow.authorize_change("regenerate token app")


def test_a_conflict_that_changed_nothing_is_a_back_off(store):
    store.write(PATH, OLD_RECORD, 0)
    first = make_flow(store, holder="runner-a:1", lease=1)
    first.load()
    first.begin("updating")
    late = make_flow(store, holder="runner-b:2", clock=Clock(NOW + datetime.timedelta(seconds=5)))
    late.load()
    late.adopt_pending()
    with pytest.raises(BackOff):
        first.persist({})
    assert store.read(PATH).data["pending"]["holder"] == "runner-b:2"


def test_fresh_intent_of_a_dead_local_process_is_stale(store):
    holder = "%s:%d" % (socket.gethostname(), _dead_pid())
    assert _flow_seeing(store, holder, age_seconds=1).pending_is_live() is False


def test_fresh_intent_of_a_live_local_process_is_live(store):
    holder = "%s:%d" % (socket.gethostname(), os.getppid())
    assert _flow_seeing(store, holder, age_seconds=1).pending_is_live() is True


def test_own_intent_and_no_intent_are_not_live(store):
    flow = make_flow(store)
    flow.load()
    assert flow.pending_is_live() is False
    flow.begin("minting")
    assert flow.pending_is_live() is False   # this run's own intent


def test_persist_clears_the_intent(store):
    flow = make_flow(store)
    flow.load()
    flow.begin("minting")
    version = flow.persist(minted_fields("new-secret-bbbbbbbbbbbb", NOW, count=1, extra={"token_id": "app"}))
    entry = store.read(PATH)
    assert version == entry.version == 2
    assert "pending" not in entry.data
    assert entry.data["secret"] == "new-secret-bbbbbbbbbbbb"
    assert entry.data["token_id"] == "app"
    assert flow.record == entry.data


def test_persist_can_keep_the_intent_and_remove_keys(store):
    store.write(PATH, dict(OLD_RECORD, previous={"secret": "p"}), 0)
    flow = make_flow(store)
    flow.load()
    flow.begin("minting")
    flow.persist({"secret": "new-secret-cccccccccc"}, keep_pending=True, remove=("previous",))
    data = store.read(PATH).data
    assert data["pending"]["rotation_id"] == flow.rotation_id
    assert "previous" not in data
    assert data["secret"] == "new-secret-cccccccccc"


def test_step_records_step_data(store):
    flow = make_flow(store)
    flow.load()
    flow.begin("minting")
    flow.step("verifying", new_secret="new-secret-dddddddd")
    pending = store.read(PATH).data["pending"]
    assert pending["step"] == "verifying" and pending["new_secret"] == "new-secret-dddddddd"
    assert pending["rotation_id"] == flow.rotation_id


class FlakyStore(Store):
    """The real store behind a switch that makes the next writes fail."""

    kind = "file"

    def __init__(self, inner):
        self.inner = inner
        self.fail_writes = 0
        self.error = StoreUnavailable
        self.commit_then_fail = 0
        self.write_calls = 0

    def read(self, path):
        return self.inner.read(path)

    def write(self, path, data, cas):
        self.write_calls += 1
        if self.fail_writes:
            self.fail_writes -= 1
            raise self.error("file store: write %s: injected outage" % path)
        version = self.inner.write(path, data, cas)
        if self.commit_then_fail:
            self.commit_then_fail -= 1
            raise StoreUnavailable("file store: write %s: timed out after sending" % path)
        return version

    def delete(self, path):
        return self.inner.delete(path)

    def list(self, prefix):
        return self.inner.list(prefix)

    def describe(self):
        return self.inner.describe()


def test_persist_retries_a_store_outage_then_succeeds(store):
    flaky = FlakyStore(store)
    sleeps = []
    flow = make_flow(flaky, persist_attempts=3, persist_backoff=0.5, sleep=sleeps.append)
    flow.load()
    flow.begin("minting")
    flaky.fail_writes = 2
    flow.persist({"secret": "new-secret-eeeeeeeeee"})
    assert sleeps == [0.5, 1.0]
    assert flaky.write_calls == 4
    data = store.read(PATH).data
    assert data["secret"] == "new-secret-eeeeeeeeee" and "pending" not in data


def test_persist_gives_up_after_its_attempts(store):
    flaky = FlakyStore(store)
    sleeps = []
    flow = make_flow(flaky, persist_attempts=3, persist_backoff=0.5, sleep=sleeps.append)
    flow.load()
    flow.begin("minting")
    flaky.fail_writes = 3
    with pytest.raises(StoreUnavailable):
        flow.persist({"secret": "new-secret-ffffffffff"})
    assert len(sleeps) == 2
    assert "secret" not in store.read(PATH).data   # the intent stays for the next run
    assert store.read(PATH).data["pending"]["rotation_id"] == flow.rotation_id


def test_begin_does_not_retry_a_store_outage(store):
    flaky = FlakyStore(store)
    flow = make_flow(flaky)
    flow.load()
    flaky.fail_writes = 1
    with pytest.raises(StoreUnavailable):
        flow.begin("minting")
    assert flaky.write_calls == 1
    assert store.read(PATH).data is None


def test_persist_after_an_outage_that_hid_a_commit_succeeds(store):
    flaky = FlakyStore(store)
    flow = make_flow(flaky)
    flow.load()
    flow.begin("minting")
    flaky.commit_then_fail = 1   # e.g. a Vault request that timed out after Vault wrote it
    flow.persist({"secret": "new-secret-gggggggggg"})
    data = store.read(PATH).data
    assert data["secret"] == "new-secret-gggggggggg" and "pending" not in data


def test_step_after_an_outage_that_hid_a_commit_succeeds(store):
    flaky = FlakyStore(store)
    flow = make_flow(flaky)
    flow.load()
    flow.begin("minting")
    flaky.commit_then_fail = 1
    flow.step("verifying", new_secret="new-secret-hhhhhhhhhh")
    assert store.read(PATH).data["pending"]["new_secret"] == "new-secret-hhhhhhhhhh"
    assert flow.version == store.read(PATH).version


def test_persist_fails_when_another_rotation_took_the_entry(store):
    mine = make_flow(store, holder="runner-a:1")
    mine.load()
    mine.begin("minting")
    theirs = make_flow(store, holder="runner-b:2")
    theirs.load()
    theirs.begin("minting")   # e.g. it judged this run's intent stale
    mine.authorize_change("regenerate token app")   # the mint was sent
    with pytest.raises(FlowError) as caught:
        mine.persist({"secret": "minted-by-a-iiiiiiiiii"})
    assert caught.value.action == "needs_reconcile"
    assert caught.value.reconcile_steps
    assert caught.value.step == "persist"
    assert "runner-b:2" in str(caught.value)
    assert "minted-by-a-iiiiiiiiii" not in str(caught.value)
    data = store.read(PATH).data
    assert data["pending"]["rotation_id"] == theirs.rotation_id   # not overwritten
    assert "secret" not in data


def test_persist_fails_when_the_entry_was_deleted_under_it(store):
    flow = make_flow(store)
    flow.load()
    flow.begin("minting")
    flow.authorize_change("regenerate token app")
    store.delete(PATH)
    with pytest.raises(FlowError) as caught:
        flow.persist({"secret": "minted-jjjjjjjjjj"})
    assert caught.value.action == "needs_reconcile"
    assert store.read(PATH).data is None


def test_denied_store_is_not_mistaken_for_a_conflict(store):
    flaky = FlakyStore(store)
    flaky.error = StoreDenied
    flow = make_flow(flaky, persist_attempts=1)
    flow.load()
    flow.begin("minting")
    flaky.fail_writes = 1
    with pytest.raises(StoreDenied):
        flow.persist({"secret": "x-secret-kkkk"})


def test_abandon_deletes_an_entry_this_run_created(store):
    flow = make_flow(store)
    flow.load()
    flow.begin("creating")
    flow.abandon()
    assert store.read(PATH).data is None
    assert flow.record is None


def test_abandon_restores_the_old_record(store):
    store.write(PATH, OLD_RECORD, 0)
    flow = make_flow(store)
    flow.load()
    flow.begin("minting")
    flow.abandon()
    entry = store.read(PATH)
    assert entry.data == OLD_RECORD
    assert entry.version == 3


def test_abandon_leaves_someone_elses_intent_alone(store):
    store.write(PATH, OLD_RECORD, 0)
    theirs = make_flow(store, holder="runner-b:2")
    theirs.load()
    theirs.begin("minting")
    mine = make_flow(store)
    mine.load()   # sees their intent; never began its own
    mine.abandon()
    assert store.read(PATH).data["pending"]["rotation_id"] == theirs.rotation_id
    assert mine.writes == 0


def test_adopt_pending_restamps_a_stale_intent(store):
    dead = "%s:%d" % (socket.gethostname(), _dead_pid())
    old = make_flow(store, holder=dead)
    old.load()
    old.begin("minting", new_token_id="app-2")
    later = Clock(NOW + hours(1))
    rescuer = make_flow(store, holder="runner-b:2", clock=later)
    rescuer.load()
    assert rescuer.pending_is_live() is False
    pending = rescuer.adopt_pending()
    stored = store.read(PATH).data["pending"]
    assert stored == pending
    assert stored["holder"] == "runner-b:2" and stored["recovered_from"] == dead
    assert stored["rotation_id"] == old.rotation_id == rescuer.rotation_id
    assert stored["started_at"] == iso(NOW + hours(1))
    assert stored["new_token_id"] == "app-2"


def test_check_mode_flow_refuses_to_write(store):
    store.write(PATH, OLD_RECORD, 0)
    flow = make_flow(store, check_mode=True)
    assert flow.load() == OLD_RECORD   # reading is fine
    with pytest.raises(RuntimeError):
        flow.begin("minting")
    with pytest.raises(RuntimeError):
        flow.persist({"secret": "x-secret-llll"})
    with pytest.raises(RuntimeError):
        flow.delete()
    entry = store.read(PATH)
    assert entry.data == OLD_RECORD and entry.version == 1
    assert flow.writes == 0


def test_check_mode_flow_does_not_create_the_store_file(tmp_path):
    path = tmp_path / "s.vault"
    store = store_from_params({"backend": "file", "file_path": str(path), "vault_password": "pw"})
    flow = Flow(store, PATH, "das", check_mode=True)
    flow.load()
    with pytest.raises(RuntimeError):
        flow.begin("minting")
    assert not path.exists()


def test_load_copies_the_record(store):
    store.write(PATH, OLD_RECORD, 0)
    flow = make_flow(store)
    flow.load()
    flow.record["secret"] = "changed"
    assert flow.before["secret"] == OLD_RECORD["secret"]


# ---- what may be shown ------------------------------------------------------------------------

LIVE = "live-secret-7c1e0f3a9b2d"
PREVIOUS = "previous-secret-5a8e2c4f6d1b"
NEW = "pending-new-secret-3b9d7f1a0c5e"


def _full_record():
    return {
        "product": "das", "secret": LIVE, "fingerprint": fingerprint(LIVE), "token_id": "app",
        "issued_at": "2026-11-01T00:00:00Z", "expires_at": "2026-12-01T00:00:00Z", "rotated_at": "2026-11-01T00:00:00Z",
        "rotation_count": 3, "fields": {"description": "app", "allow_path_patterns": ["v1/data/.*"]},
        "pending": {"rotation_id": "r-1", "step": "verifying", "started_at": "2026-11-23T06:00:00Z", "holder": FOREIGN,
                    "new_token_id": "app-2", "new_secret": NEW},
        "previous": {"secret": PREVIOUS, "fingerprint": fingerprint(PREVIOUS), "token_id": "app-1",
                     "revoke_after": "2026-11-24T00:00:00Z"},
    }


def _assert_no_secret(text):
    for value in (LIVE, PREVIOUS, NEW):
        assert value not in text


def test_public_view_shows_no_secret():
    view = public_view(_full_record())
    _assert_no_secret(json.dumps(view))
    assert "secret" not in view
    assert "new_secret" not in view["pending"]
    assert "secret" not in view["previous"]
    # and still shows what identifies them
    assert view["fingerprint"] == fingerprint(LIVE)
    assert view["previous"] == {"token_id": "app-1", "fingerprint": fingerprint(PREVIOUS), "revoke_after": "2026-11-24T00:00:00Z"}
    assert view["pending"] == {"rotation_id": "r-1", "step": "verifying", "started_at": "2026-11-23T06:00:00Z",
                               "holder": FOREIGN, "new_token_id": "app-2"}


def test_diff_text_shows_no_secret():
    text = diff_text(_full_record())
    _assert_no_secret(text)
    assert "fingerprint: %s" % fingerprint(LIVE) in text
    assert "previous.fingerprint: %s" % fingerprint(PREVIOUS) in text
    assert "pending.rotation_id: r-1" in text
    assert diff_text(None) == "(absent)\n"
    assert public_view(None) == {}


def test_result_shows_no_secret_unless_asked(store):
    record = _full_record()
    result = result_for("app", "rotated", record=record)
    _assert_no_secret(json.dumps(result))
    assert result["changed"] is True and result["action"] == "rotated"
    assert result["fingerprint"] == fingerprint(LIVE)
    assert "secret" not in result
    asked = result_for("app", "rotated", record=record, return_secret=True)
    assert asked["secret"] == LIVE
    assert PREVIOUS not in json.dumps(asked) and NEW not in json.dumps(asked)


def test_result_for_flow_and_actions(store):
    flow = make_flow(store)
    flow.load()
    flow.begin("minting")
    flow.persist(minted_fields("flow-secret-mmmmmmmm", NOW, extra={"token_id": "app"}))
    result = result_for("app", "created", flow=flow)
    assert result["store_path"] == PATH and result["store_version"] == 2
    assert result["token_id"] == "app"
    assert "flow-secret-mmmmmmmm" not in json.dumps(result)
    for action in ("none", "needs_reconcile", "needs_interaction"):
        assert result_for("app", action)["changed"] is False
    with pytest.raises(ValueError):
        result_for("app", "exploded")
