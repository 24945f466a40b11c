"""Back-pressure in the mechanism: the adaptive endpoint limit, and the flow's read-back of writes whose answer was lost."""

import multiprocessing
import threading

import pytest

from ansible_collections.tokenops.rotation.plugins.module_utils import backpressure
from ansible_collections.tokenops.rotation.plugins.module_utils.backpressure import (
    OK,
    OVERLOADED,
    THROTTLED,
    TIMEOUT,
    EndpointLimit,
    endpoint_of,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import BackOff, Flow, FlowError
from ansible_collections.tokenops.rotation.plugins.module_utils.store import (
    StoreBusy,
    StoreOutcomeUnknown,
    store_from_params,
)

PATH = "tokenops/das/h/app"


# ---- the endpoint limit ------------------------------------------------------------------------

def test_endpoint_of_names_scheme_host_and_port_without_user_info():
    assert endpoint_of("https://user:pw@Vault.Example.com/v1/secret/data/x?y=1") == "https://vault.example.com:443"
    assert endpoint_of("http://127.0.0.1:8200/v1/sys") == "http://127.0.0.1:8200"


def fill(limit, count):
    return [limit.acquire() for _slot in range(count)]


def test_a_throttled_answer_halves_the_limit_from_what_was_in_flight(tmp_path):
    limit = EndpointLimit("http://a:1", folder=str(tmp_path))
    tickets = fill(limit, 16)
    for ticket in tickets[1:]:
        limit.release(ticket, OK)
    limit.release(tickets[0], THROTTLED)
    assert limit.limit() == 8
    assert limit.stats.throttled == 1 and limit.stats.lowest == 8


def test_answers_from_the_same_round_decrease_once(tmp_path):
    limit = EndpointLimit("http://a:1", folder=str(tmp_path))
    tickets = fill(limit, 16)
    for ticket in tickets:          # all sent before the first decrease: one burst of trouble, one halving
        limit.release(ticket, TIMEOUT)
    assert limit.limit() == 8
    tickets = fill(limit, 8)        # sent after it: the next round may decrease again
    limit.release(tickets[0], OVERLOADED)
    assert limit.limit() == 4
    for ticket in tickets[1:]:
        limit.release(ticket, OK)


def test_an_answer_slower_than_half_the_timeout_counts_as_trouble(tmp_path):
    limit = EndpointLimit("http://a:1", folder=str(tmp_path))
    tickets = fill(limit, 4)
    for ticket in tickets[1:]:
        limit.release(ticket, OK, slow_after=60.0)      # quick enough
    assert limit.limit() == backpressure.CEILING
    limit.release(tickets[0], OK, slow_after=0.0000001)
    assert limit.limit() == 2 and limit.stats.slow == 1


def test_good_answers_grow_the_limit_back_to_the_ceiling(tmp_path):
    limit = EndpointLimit("http://a:1", folder=str(tmp_path), ceiling=8)
    tickets = fill(limit, 8)
    throttled = tickets.pop()
    for ticket in tickets:
        limit.release(ticket, OK)
    limit.release(throttled, THROTTLED)
    assert limit.limit() == 4
    for _answer in range(60):
        limit.release(limit.acquire(), OK)
    assert limit.limit() == 8


def test_no_more_than_the_limit_in_flight(tmp_path):
    limit = EndpointLimit("http://a:1", folder=str(tmp_path), ceiling=4)
    tickets = fill(limit, 4)
    taken = threading.Event()

    def fifth():
        limit.release(limit.acquire(), OK)
        taken.set()

    waiter = threading.Thread(target=fifth)
    waiter.start()
    assert not taken.wait(0.3)       # the fifth waits for a slot
    limit.release(tickets[0], OK)
    assert taken.wait(10)
    waiter.join()
    for ticket in tickets[1:]:
        limit.release(ticket, OK)
    assert limit.stats.waited > 0


def test_a_retry_after_pauses_every_request_to_the_endpoint(tmp_path):
    slept = []
    now = [1000.0]

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    limit = EndpointLimit("http://a:1", folder=str(tmp_path), sleep=sleep, clock=lambda: now[0])
    limit.pause(3)
    limit.release(limit.acquire(), OK)
    assert sum(slept) == pytest.approx(3.0)


def _hold_slots(folder, count, held, release):
    limit = EndpointLimit("http://shared:1", folder=folder, ceiling=4)
    tickets = fill(limit, count)
    held.set()
    release.wait(30)
    for ticket in tickets:
        limit.release(ticket, OK)


def test_forks_share_the_limit_of_an_endpoint(tmp_path):
    # Another process holds 3 of the 4 slots: this one gets only the fourth until it lets them go.
    context = multiprocessing.get_context("fork")
    held, release = context.Event(), context.Event()
    other = context.Process(target=_hold_slots, args=(str(tmp_path), 3, held, release))
    other.start()
    try:
        assert held.wait(30)
        limit = EndpointLimit("http://shared:1", folder=str(tmp_path), ceiling=4)
        first = limit.acquire()
        assert first.slot == 3
        got = threading.Event()
        waiter = threading.Thread(target=lambda: (limit.release(limit.acquire(), OK), got.set()))
        waiter.start()
        assert not got.wait(0.3)
        release.set()
        assert got.wait(10)
        waiter.join()
        limit.release(first, OK)
    finally:
        release.set()
        other.join(30)


def test_a_dead_process_keeps_no_slot(tmp_path):
    context = multiprocessing.get_context("fork")
    held, release = context.Event(), context.Event()
    other = context.Process(target=_hold_slots, args=(str(tmp_path), 4, held, release))
    other.start()
    assert held.wait(30)
    other.kill()
    other.join(30)
    limit = EndpointLimit("http://shared:1", folder=str(tmp_path), ceiling=4)
    limit.release(limit.acquire(), OK)


def test_a_decrease_is_seen_by_the_other_processes(tmp_path):
    first = EndpointLimit("http://b:1", folder=str(tmp_path))
    second = EndpointLimit("http://b:1", folder=str(tmp_path))
    tickets = fill(first, 10)
    throttled = tickets.pop()
    for ticket in tickets:
        first.release(ticket, OK)
    first.release(throttled, THROTTLED)
    assert second.limit() == first.limit() == 5


def test_the_module_figures_name_each_endpoint_used(monkeypatch, tmp_path):
    monkeypatch.setattr(backpressure, "_LIMITS", {})
    limit = backpressure.limit_for("http://c:1/x")
    limit.release(limit.acquire(), OK)
    limit.note_retry()
    figures = backpressure.report(ceiling=16)
    assert figures == {"http://c:1": {"waited_s": 0.0, "retries": 1, "lowest_concurrency": 16, "throttled": 0, "timeouts": 0,
                                      "slow_answers": 0, "requests": 1, "resolved_by_read_back": 0}}


# ---- the flow over a store that loses answers ------------------------------------------------------

@pytest.fixture
def store(tmp_path):
    made = store_from_params({"backend": "file", "file_path": str(tmp_path / "s.vault"), "vault_password": "pw"})
    yield made
    made.close()


class LossyStore:
    """A store fault hook: the next writes are applied or not, and their answer lost; reads may be busy."""

    timeout = 1

    def __init__(self, inner):
        self.inner = inner
        self.lose = []            # per write: "landed" (applied, no answer), "dropped" (not applied, no answer), "busy"
        self.busy_reads = 0       # reads that time out (None: every one)
        self.read_backs = 0
        self.waits = []

    def read(self, path):
        if self.busy_reads is None or self.busy_reads > 0:
            if self.busy_reads:
                self.busy_reads -= 1
            raise StoreBusy("vault store: read %s failed: no answer within 1s" % path)
        return self.inner.read(path)

    def write(self, path, data, cas):
        fate = self.lose.pop(0) if self.lose else None
        if fate == "landed":
            self.inner.write(path, data, cas)
        if fate in ("landed", "dropped"):
            raise StoreOutcomeUnknown("vault store: write %s failed: no answer within 1s; the change may or may not have been applied"
                                      % path)
        if fate == "busy":
            raise StoreBusy("vault store: write %s failed: HTTP 429" % path)
        return self.inner.write(path, data, cas)

    def delete(self, path):
        return self.inner.delete(path)

    def note_wait(self, seconds):
        self.waits.append(seconds)

    def note_read_back(self):
        self.read_backs += 1


class FakeTime:
    def __init__(self):
        self.now = 0.0

    def sleep(self, seconds):
        self.now += seconds

    def monotonic(self):
        return self.now


def lossy_flow(store, **kwargs):
    lossy = LossyStore(store)
    clock = FakeTime()
    flow = Flow(lossy, PATH, "das", holder="runner-a:1", sleep=clock.sleep, monotonic=clock.monotonic, lease=60.0, **kwargs)
    return lossy, flow, clock


def test_a_lost_answer_of_a_write_that_landed_is_read_back(store):
    lossy, flow, _clock = lossy_flow(store)
    flow.load()
    lossy.lose = ["landed"]
    flow.begin("minting")
    assert store.read(PATH).version == 1 == flow.version         # written once, not twice
    assert flow.holds_intent and lossy.read_backs == 1
    lossy.lose = ["landed"]
    flow.persist({"secret": "minted-secret-aaaaaaaa"})
    entry = store.read(PATH)
    assert entry.version == 2 and entry.data["secret"] == "minted-secret-aaaaaaaa" and "pending" not in entry.data
    assert lossy.read_backs == 2


def test_a_lost_answer_of_a_write_that_did_not_land_is_sent_again(store):
    lossy, flow, _clock = lossy_flow(store)
    flow.load()
    flow.begin("minting")
    lossy.lose = ["dropped", "dropped"]
    flow.persist({"secret": "minted-secret-bbbbbbbb"})
    entry = store.read(PATH)
    assert entry.version == 2 and entry.data["secret"] == "minted-secret-bbbbbbbb"
    assert lossy.read_backs == 2 and len(lossy.waits) == 2


def test_a_lost_answer_after_someone_else_wrote_is_a_conflict(store):
    lossy, flow, _clock = lossy_flow(store)
    flow.load()
    lossy.lose = ["dropped"]
    original = lossy.write

    def someone_else_first(path, data, cas):
        store.write(path, {"product": "das", "pending": {"holder": "runner-b:2", "rotation_id": "x"}}, 0)
        lossy.write = original
        return original(path, data, cas)

    lossy.write = someone_else_first
    with pytest.raises(BackOff):
        flow.begin("minting")
    assert store.read(PATH).data["pending"]["holder"] == "runner-b:2"


def test_a_minted_secret_is_saved_through_a_busy_stretch(store):
    lossy, flow, clock = lossy_flow(store)
    flow.load()
    flow.begin("minting")
    flow.authorize_change("regenerate")
    lossy.lose = ["busy"] * 10 + ["landed"]
    lossy.busy_reads = 5           # and the read-back waits too
    flow.persist({"secret": "minted-secret-cccccccc"})
    assert store.read(PATH).data["secret"] == "minted-secret-cccccccc"
    assert 0 < clock.now < 60


def test_may_or_may_not_only_when_the_store_stays_away_for_the_whole_lease(store):
    lossy, flow, clock = lossy_flow(store)
    flow.load()
    flow.begin("minting")
    flow.authorize_change("regenerate")
    lossy.lose = ["landed"]
    lossy.busy_reads = None        # never answers again
    with pytest.raises(StoreOutcomeUnknown) as caught:
        flow.persist({"secret": "minted-secret-dddddddd"})
    assert "may or may not have been applied" in str(caught.value) and "lease ran short" in str(caught.value)
    assert 55 <= clock.now <= 60    # it kept trying for the lease, less one store time-out
    assert "minted-secret-dddddddd" not in str(caught.value)


def test_an_intent_the_store_cannot_record_in_time_backs_off(store):
    lossy, flow, clock = lossy_flow(store)
    flow.load()
    lossy.lose = ["busy"] * 10000
    with pytest.raises(BackOff) as caught:
        flow.begin("minting")
    assert caught.value.store_busy and "nothing was sent to the product" in str(caught.value)
    assert not flow.holds_intent
    assert store.read(PATH).data is None
    assert clock.now <= 60


def test_a_read_the_store_cannot_answer_in_time_backs_off(store):
    lossy, flow, _clock = lossy_flow(store)
    lossy.busy_reads = None
    with pytest.raises(BackOff) as caught:
        flow.load()
    assert caught.value.store_busy


def test_a_conflict_is_still_a_conflict(store):
    lossy, flow, _clock = lossy_flow(store)
    flow.load()
    flow.begin("minting")
    flow.authorize_change("regenerate")
    store.write(PATH, {"product": "das", "pending": {"holder": "runner-b:2", "rotation_id": "y"}}, flow.version)
    lossy.lose = ["dropped"]
    with pytest.raises(FlowError) as caught:
        flow.persist({"secret": "minted-secret-eeeeeeee"})
    assert caught.value.action == "needs_reconcile"      # read back, the entry is somebody else's: a conflict, as before


# ---- the report ---------------------------------------------------------------------------------

def test_the_report_adds_up_each_endpoint_over_hosts_and_stages():
    from ansible_collections.tokenops.rotation.plugins.module_utils import report

    def figures(waited, retries, lowest, throttled=0):
        return {"waited_s": waited, "retries": retries, "lowest_concurrency": lowest, "throttled": throttled, "timeouts": 1,
                "slow_answers": 0, "requests": 10, "resolved_by_read_back": 2}

    store, das_a, das_b = "http://vault:8200", "https://a:443", "https://b:443"
    sources = [
        {"product": "das", "endpoint": "tenant-a", "read": {"backpressure": {store: figures(1.0, 2, 16)}},
         "rotate": {"results": [], "backpressure": {store: figures(2.5, 5, 4, 3), das_a: figures(0, 0, 16)}}},
        {"product": "das", "endpoint": "tenant-b", "rotate": {"results": [], "backpressure": {store: figures(0.5, 1, 8), das_b: figures(3, 3, 2, 3)}}},
    ]
    built = report.build(sources)
    by_endpoint = {item["endpoint"]: item for item in built["backpressure"]}
    assert by_endpoint[store] == {"endpoint": store, "waited_s": 4.0, "retries": 8, "lowest_concurrency": 4, "throttled": 3,
                                  "timeouts": 3, "slow_answers": 0, "requests": 30, "resolved_by_read_back": 6}
    assert by_endpoint[das_b]["lowest_concurrency"] == 2
    lines = report.summary_lines(built)
    assert "Slowed down by %s: waited 4.0 s, 8 retries, concurrency down to 4" % store in lines[1]
    assert not [line for line in lines if das_a in line]     # it made nobody wait
    assert report.stats(built, [])["backpressure"] == built["backpressure"]


# ---- the Vault store honours 429 and Retry-After --------------------------------------------------

def test_the_vault_store_waits_out_a_429_as_told_and_writes_once():
    from ansible_collections.tokenops.rotation.plugins.module_utils.store_vault import VaultStore
    from tests.simulators.base import SimServer

    sim = SimServer()
    sim.route("POST", r"/v1/secret/data/(?P<path>.+)", lambda req: (200, {"data": {"version": 1}}))
    sim.faults.add("POST", r"^/v1/secret/data/", "retry_after", times=2, retry_after=1)
    sim.start()
    try:
        store = VaultStore(sim.base_url, token="root-token-xyz", timeout=5)
        assert store.write("tokenops/das/h/app", {"secret": "s-123456"}, 0) == 1
        store.close()
    finally:
        sim.stop()
    posts = [r for r in sim.requests if r.method == "POST"]
    assert [r.status for r in posts] == [429, 429, 200]
    assert posts[1].received_at - posts[0].received_at >= 1.0 and posts[2].received_at - posts[1].received_at >= 1.0
    figures = backpressure.limit_for(sim.base_url).stats
    assert figures.throttled == 2 and figures.retries == 2 and figures.waited >= 2.0


def test_a_lost_answer_of_a_delete_is_read_back(store):
    lossy, flow, _clock = lossy_flow(store)
    flow.load()
    flow.begin("creating")
    original = lossy.delete
    calls = []

    def delete_then_lose(path):
        calls.append(path)
        if len(calls) == 1:
            original(path)
            raise StoreOutcomeUnknown("vault store: delete %s failed: no answer within 1s" % path)
        return original(path)

    lossy.delete = delete_then_lose
    flow.abandon()                     # the entry this run created goes away
    assert store.read(PATH).data is None and len(calls) == 1 and lossy.read_backs == 1
