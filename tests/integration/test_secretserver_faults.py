"""Secret Server faults at each step boundary, and what the next run makes of them.

The invariant after every scenario: the store holds a token Secret Server accepts, or its record says why (an
intent, or that a login is required), or the run said needs_reconcile / needs_interaction with what to do.
Never a dead token in the store without a record.
"""


import pytest

import secretserver_fixtures
from conftest import wait_for
from secretserver_fixtures import USER, assert_working_or_recorded, record_of, ss_env, ss_task

pytestmark = pytest.mark.integration
ss, ss_factory = secretserver_fixtures.ss, secretserver_fixtures.ss_factory   # the simulator fixtures

TOKEN = r"^/SecretServer/oauth2/token$"


def run_ss(runner, ss, store, **options):
    run = runner.run([ss_task(ss, store, **options)], env=ss_env(ss, store))
    assert run.results, run
    return run.result


def start_ss(runner, ss, store, **options):
    return runner.start([ss_task(ss, store, **options)], env=ss_env(ss, store))


def healed(runner, ss, store):
    """The next, ordinary run ends with a working token and no intent."""
    result = run_ss(runner, ss, store)
    assert not result["failed"], result
    record = record_of(store, ss)
    assert ss.works(record) and "pending" not in record and "login_required" not in record, result
    return result


@pytest.fixture
def made(runner, ss, store):
    result = run_ss(runner, ss, store)
    assert result["action"] == "created", result
    ss.sim.reset_counts()
    return record_of(store, ss)


def test_refresh_answer_lost_after_the_server_used_it(runner, ss, file_store):
    """The refresh token is spent although no answer came: the same run logs in instead, and says so."""
    store = file_store
    run_ss(runner, ss, store)
    made = record_of(store, ss)
    ss.sim.reset_counts()
    ss.sim.faults.add("POST", TOKEN, "drop_after_commit")
    result = run_ss(runner, ss, store, max_age="0s")
    assert result["action"] == "rotated" and result["method"] == "password" and not result["failed"], result
    assert "used up" in result["msg"] and "answer was lost" in result["msg"]
    assert ss.sim.count_grants("refresh") == 1 and not ss.sim.refresh_usable(made["refresh_token"])
    assert assert_working_or_recorded(store, ss) == "working"
    assert ss.sim.count("POST", "/SecretServer/oauth2/token") == 2      # the lost refresh, then one login; never the refresh again


def test_killed_after_the_refresh_committed(runner, ss_factory, file_store):
    """The worst case: the refresh ends the stored access token (one setting of the unknown) and the run dies
    before it can store the new pair. The record says why, and the next run logs in."""
    ss = ss_factory(refresh_revokes_previous_access=True)
    run_ss(runner, ss, file_store)
    old = record_of(file_store, ss)
    ss.sim.faults.add("POST", TOKEN, "hang_after_commit", delay=30)
    proc, results = start_ss(runner, ss, file_store, max_age="0s")
    wait_for(ss.sim.faults.committed.is_set, what="Secret Server to commit the refresh")
    runner.crash(proc, results, record_of(file_store, ss)["pending"])
    record = record_of(file_store, ss)
    assert record["pending"]["step"] == "refreshing" and record["secret"] == old["secret"]
    assert not ss.works(record) and not ss.sim.refresh_usable(old["refresh_token"])
    assert assert_working_or_recorded(file_store, ss) == "recorded"
    result = healed(runner, ss, file_store)
    assert result["action"] == "recovered" and result["recovered_step"] == "refreshing" and result["method"] == "password"
    assert ss.sim.count_grants("refresh", ok=False) == 0          # the spent refresh token was never sent again


def test_store_outage_after_a_refresh(runner, ss, store, made):
    ss.sim.faults.add("POST", TOKEN, "hang_after_commit", delay=0.5)
    task = ss_task(ss, store, max_age="0s")
    task["tokenops.rotation.secretserver_token"]["store"]["timeout"] = 1    # the outage is found out sooner
    task["tokenops.rotation.secretserver_token"]["lease"] = "6s"    # the persist waits out the store for the lease
    proc, results = runner.start([task], env=ss_env(ss, store))
    wait_for(ss.sim.faults.committed.is_set, what="Secret Server to commit the refresh")
    with store.outage():
        run = runner.finish(proc, results)
    result = run.result
    assert result["failed"] and result["step"] == "persist", result
    assert "refresh token in the store is used up" in result["msg"] and "next run log in with the password grant" in result["msg"]
    assert assert_working_or_recorded(store, ss) in ("working", "recorded")
    assert not ss.sim.refresh_usable(made["refresh_token"])
    # A Vault write that timed out may still commit when the server wakes up: then the record is complete.
    assert healed(runner, ss, store)["action"] in (("recovered", "none") if store.backend == "vault" else ("recovered",))


def test_server_cap_lower_than_configured(runner, ss_factory, file_store):
    ss = ss_factory(max_refreshes=1)
    tasks = [ss_task(ss, file_store, max_refreshes=3)] + [ss_task(ss, file_store, max_refreshes=3, max_age="0s") for _run in range(2)]
    results = [r for r in runner.run(tasks, env=ss_env(ss, file_store)).results if r["_task"] == "secretserver_token"]
    assert [r["method"] for r in results] == ["password", "refresh", "password"], results
    assert "refused" in results[2]["msg"] and not results[2]["failed"]
    assert assert_working_or_recorded(file_store, ss) == "working"


def test_refresh_tokens_turned_off(runner, ss, file_store):
    run_ss(runner, ss, file_store)
    ss.sim.refresh_enabled = False
    results = [r for r in runner.run([ss_task(ss, file_store, max_age="0s")] * 2, env=ss_env(ss, file_store)).results
               if r["_task"] == "secretserver_token"]
    assert [r["method"] for r in results] == ["password", "password"] and results[1]["refreshes_remaining"] == 0, results
    assert ss.sim.count_grants("refresh", ok=False) == 1      # found out once, then no refresh token is kept
    assert "refresh_token" not in record_of(file_store, ss) and assert_working_or_recorded(file_store, ss) == "working"


@pytest.mark.parametrize("kills", [False, True], ids=["sessions-survive", "sessions-end"])
def test_password_changed(runner, ss_factory, file_store, kills):
    ss = ss_factory(password_change_kills_sessions=kills, max_refreshes=1)
    run_ss(runner, ss, file_store)
    ss.sim.set_password(USER, "the new password")
    results = [r for r in runner.run([ss_task(ss, file_store, max_age="0s")] * 2, env=ss_env(ss, file_store)).results
               if r["_task"] == "secretserver_token"]
    expected = ["needs_reconcile", "needs_reconcile"] if kills else ["rotated", "needs_reconcile"]
    assert [r["action"] for r in results] == expected, results
    msg = results[-1]["msg"]
    assert "password grant of %s was refused" % USER in msg and "Fix the credentials" in msg and "Login failed." in msg
    assert assert_working_or_recorded(file_store, ss, results[-1]) in ("working", "recorded")
    fixed = runner.run([ss_task(ss, file_store, max_age="0s")], env=dict(ss_env(ss, file_store), TSS_PASSWORD="the new password"))
    assert fixed.result["action"] == "rotated" and fixed.result["method"] == "password", fixed.result
    assert assert_working_or_recorded(file_store, ss) == "working"


def test_server_error_on_the_first_login(runner, ss, file_store):
    store = file_store
    ss.sim.faults.add("POST", TOKEN, "status", status=503)
    result = run_ss(runner, ss, store)
    assert result["failed"] and "password grant for %s failed: POST /SecretServer/oauth2/token returned HTTP 503" % USER in result["msg"]
    assert ss.sim.count("POST") == 1 and record_of(store, ss) == {}        # never repeated; the intent withdrawn
    assert run_ss(runner, ss, store)["action"] == "created"


def test_two_concurrent_runs_one_refreshes_the_other_backs_off(runner, ss, file_store):
    run_ss(runner, ss, file_store)
    made = record_of(file_store, ss)
    ss.sim.reset_counts()
    # The first run is held inside its refresh (its intent recorded) until the second has finished.
    ss.sim.faults.add("POST", TOKEN, "latency", delay=300)
    first, first_results = start_ss(runner, ss, file_store, max_age="0s")
    wait_for(ss.sim.faults.arrived.is_set, what="the first run's refresh", timeout=300)
    second = runner.run([ss_task(ss, file_store, max_age="0s")], env=ss_env(ss, file_store))
    ss.sim.faults.release.set()
    first = runner.finish(first, first_results)
    assert first.result["action"] == "rotated" and first.result["method"] == "refresh", first.result
    assert second.result["changed"] is False and second.result["backed_off"] is True, second.result
    assert "is being changed by" in second.result["msg"] and second.result["step"] == "refreshing"
    assert second.result["holder"] and second.result["lease_expires_at"]
    assert ss.sim.count("POST", "/SecretServer/oauth2/token") == 1 and ss.sim.count_grants("refresh") == 1
    record = record_of(file_store, ss)
    assert ss.works(record) and record["refreshes_used"] == 1 and record["rotation_count"] == made.get("rotation_count", 0) + 1
    assert assert_working_or_recorded(file_store, ss) == "working"
