"""An adoption of a new DPA refresh token under faults: a bad or deleted new token, the store down,
the module killed, 5xx and 429 from DPA.

The invariant after every scenario: the store's current refresh token works, and a new token that
was not promoted is either refused with a message naming the step, or recorded in the intent, which
the next run completes. Never a dead token in the store, never a lost new one.
"""

import time

import pytest

from conftest import wait_for
from dpa_fixtures import dpa_task, record_of, run_dpa
# Fixtures: pytest finds them by name in this module.
from dpa_fixtures import dpa, dpa_factory  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.integration

TOKEN_PATH = r"^/iwc/api/security/oauth/token$"
PROBE_PATH = r"^/iwc/api/databases/monitor-information$"


class Tokens:
    """The stored token and the new one; its repr keeps them out of pytest's failure reports."""

    def __init__(self, old, new):
        self.old, self.new = old, new

    def __iter__(self):
        return iter((self.old, self.new))

    def __repr__(self):
        return "<Tokens reporting-old, reporting-new>"


def _made(runner, dpa, store):
    """'reporting-old' is stored; 'reporting-new' was just made by an administrator."""
    old = dpa.issue("reporting-old")
    assert run_dpa(runner, dpa, store, id="reporting", refresh_token=old)["action"] == "created"
    new = dpa.issue("reporting-new")
    dpa.sim.reset_counts()
    return Tokens(old, new)


@pytest.fixture
def tokens(runner, dpa, store):
    return _made(runner, dpa, store)


@pytest.fixture
def file_tokens(runner, dpa, file_store):
    return _made(runner, dpa, file_store)


def assert_old_current(store, dpa, old):
    record = record_of(store, dpa)
    assert record["secret"] == old and dpa.sim.refresh_token_works(old) and "pending" not in record, \
        {k: v for k, v in record.items() if k not in ("secret", "access_token", "previous")}


@pytest.mark.parametrize("kind", ["forged", "deleted", "expired in DPA"])
def test_a_bad_new_token_is_not_adopted(runner, dpa, file_store, file_tokens, kind):
    old, new = file_tokens
    if kind == "forged":
        new = dpa.forged("reporting-new")
    elif kind == "deleted":
        dpa.sim.delete_refresh_token(new)
    else:
        new = dpa.issue("reporting-new", seconds=60)
        dpa.sim.clock.advance(120)             # DPA's clock passed its exp; the controller's has not
    result = run_dpa(runner, dpa, file_store, id="reporting", refresh_token=new, state="rotated")
    assert result["failed"] and result["step"] == "verify", result
    assert "SolarWinds DPA: verify new refresh token 'reporting-new' failed: POST /iwc/api/security/oauth/token returned HTTP 400 " \
           "(error code invalid_grant)" in result["msg"]
    assert "it was not adopted, and 'reporting-old' stays current" in result["msg"]
    dpa.sim.clock.set(time.time())
    assert_old_current(file_store, dpa, old)


def test_store_down_during_adoption(runner, dpa, store, tokens):
    old, new = tokens
    dpa.sim.faults.add("POST", TOKEN_PATH, "hang_after_commit", delay=0.5)
    task = dpa_task(dpa, store, id="reporting", refresh_token=new, state="rotated")
    task["tokenops.rotation.dpa_refresh_token"]["store"]["timeout"] = 1    # each of the persist's attempts gives up sooner
    task["tokenops.rotation.dpa_refresh_token"]["lease"] = "6s"    # the persist waits out the store for the lease
    proc, results = runner.start([task], env=dict(store.env))
    wait_for(dpa.sim.faults.committed.is_set, "DPA to answer the exchange of the new token")
    # The store goes away while the module learns that the new token works.
    with store.outage():
        result = runner.finish(proc, results).result
    assert result["failed"] and result["step"] == "persist", result
    assert "the new refresh token 'reporting-new' works, but saving it as current failed" in result["msg"]
    assert "the next run completes the adoption" in result["msg"]
    record = record_of(store, dpa)
    # Nothing is lost: the old token is current and works, and the new one waits in the intent. With Vault, writes
    # that sat in the socket commit when the server wakes up: the promotion (the new token is current), or the
    # withdrawal of the intent that followed the failure (the old one stays current; the new one is adopted again).
    assert record["secret"] in (old, new) and dpa.sim.refresh_token_works(record["secret"])
    if record["secret"] == old and "pending" in record:
        assert record["pending"]["step"] == "adopting" and record["pending"]["new_secret"] == new
        healed = run_dpa(runner, dpa, store, id="reporting")          # the next ordinary run completes the adoption
        # ... unless the promotion that sat in OpenBao's socket committed after the read above: nothing left to do.
        late_promotion = store.backend == "vault" and healed["action"] == "none" and healed["token_id"] == "reporting-new"
        assert healed["action"] == "recovered" or late_promotion, healed
    else:
        assert store.backend == "vault", record
        healed = run_dpa(runner, dpa, store, id="reporting", refresh_token=new, state="rotated")
        assert healed["action"] == ("rotated" if record["secret"] == old else "none"), healed
    assert not healed["failed"], healed
    record = record_of(store, dpa)
    assert record["secret"] == new and record["previous"]["secret"] == old and "pending" not in record


def test_store_down_before_adoption(runner, dpa, file_store, file_tokens):
    old, new = file_tokens
    with file_store.outage():
        result = run_dpa(runner, dpa, file_store, id="reporting", refresh_token=new, state="rotated")
    assert result["failed"] and result["action"] == "failed" and "SolarWinds DPA: file store " in result["msg"], result
    assert result["expiry_status"] is None                 # nothing could be read
    assert dpa.sim.count() == 0
    assert_old_current(file_store, dpa, old)


def test_killed_during_adoption_the_next_run_completes_it(runner, dpa, file_store, file_tokens):
    old, new = file_tokens
    dpa.sim.faults.add("POST", TOKEN_PATH, "hang_after_commit", delay=30)
    proc, results = runner.start([dpa_task(dpa, file_store, id="reporting", refresh_token=new, state="rotated")], env={})
    wait_for(dpa.sim.faults.committed.is_set, "DPA to answer the exchange of the new token")
    runner.crash(proc, results, record_of(file_store, dpa)["pending"])
    record = record_of(file_store, dpa)
    assert record["secret"] == old and dpa.sim.refresh_token_works(old) and record["pending"]["new_secret"] == new
    # The next ordinary run, without the new token in its input, finds it in the intent.
    result = run_dpa(runner, dpa, file_store, id="reporting")
    assert result["action"] == "recovered" and result["token_id"] == "reporting-new", result
    record = record_of(file_store, dpa)
    assert record["secret"] == new and record["previous"]["token_id"] == "reporting-old" and "pending" not in record


@pytest.mark.parametrize("second_state", ["present", "rotated"])
def test_a_concurrent_run_backs_off(runner, dpa, file_store, file_tokens, second_state):
    old, new = file_tokens
    # The first run is held inside the exchange of the new token (its intent recorded) until the second has finished.
    dpa.sim.faults.add("POST", TOKEN_PATH, "latency", delay=300)
    first_task = dpa_task(dpa, file_store, id="reporting", refresh_token=new, state="rotated", timeout=300)
    proc, results = runner.start([first_task], env={})
    wait_for(dpa.sim.faults.arrived.is_set, "the first run's exchange of the new token", timeout=300)
    held = record_of(file_store, dpa)
    assert held["pending"]["step"] == "adopting" and held["pending"]["secret_usable"] is True and held["secret"] == old
    other = {"refresh_token": dpa.issue("reporting-other")} if second_state == "rotated" else {}
    second = run_dpa(runner, dpa, file_store, id="reporting", state=second_state, **other)
    dpa.sim.faults.release.set()
    first = runner.finish(proc, results).result
    assert first["action"] == "rotated", first
    assert second["backed_off"] is True and second["changed"] is False and not second["failed"], second
    assert "is being changed by" in second["msg"] and second["holder"] == held["pending"]["holder"] and second["lease_expires_at"]
    assert second["expiry_status"] == "ok" and second["expires_at"] == held["expires_at"]    # the fleet report's fields
    assert dpa.posts() == 1                               # the first run's exchange; the second sent nothing
    record = record_of(file_store, dpa)
    assert record["secret"] == new and record["previous"]["secret"] == old and "pending" not in record


@pytest.mark.parametrize("fault, expect", [
    (dict(kind="status", status=503), "rotated"),                   # retried: a repeated exchange is harmless
    (dict(kind="retry_after", retry_after=1), "rotated"),           # waits for Retry-After, then goes on
    (dict(kind="status", status=500), "HTTP 500"),                  # not retried: refused, nothing changes
    (dict(kind="status", status=503, times=None), "HTTP 503"),      # still down after the retries
], ids=["503-once", "429", "500", "503-always"])
def test_server_errors_on_the_exchange(runner, dpa, file_store, file_tokens, fault, expect):
    old, new = file_tokens
    dpa.sim.faults.add("POST", TOKEN_PATH, **fault)
    started = time.time()
    result = run_dpa(runner, dpa, file_store, id="reporting", refresh_token=new, state="rotated")
    dpa.sim.faults.clear()
    if expect == "rotated":
        assert result["action"] == "rotated" and not result["failed"], result
        assert dpa.posts() == 2 and record_of(file_store, dpa)["secret"] == new
        if fault["kind"] == "retry_after":
            posts = [r for r in dpa.sim.requests if r.method == "POST"]
            assert posts[0].status == 429 and posts[1].at - posts[0].at >= 0.9 and time.time() - started >= 1
        return
    assert result["failed"] and result["step"] == "verify", result
    assert ("SolarWinds DPA: verify new refresh token 'reporting-new' failed: POST /iwc/api/security/oauth/token returned %s" % expect) \
        in result["msg"] and "could not be verified, so it was not adopted; 'reporting-old' stays current" in result["msg"]
    assert dpa.posts() == (1 if expect == "HTTP 500" else 4)
    assert_old_current(file_store, dpa, old)
    assert run_dpa(runner, dpa, file_store, id="reporting", refresh_token=new, state="rotated")["action"] == "rotated"


def test_probe_errors_are_retried(runner, dpa, file_store, file_tokens):
    dpa.sim.faults.add("GET", PROBE_PATH, "status", status=502, times=2)
    result = run_dpa(runner, dpa, file_store, id="reporting")
    assert result["action"] == "none" and result["validated_by"] == "probe" and not result["failed"], result
    assert dpa.sim.count("GET") == 3 and dpa.posts() == 0
