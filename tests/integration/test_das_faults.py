"""A DAS rotation interrupted at each step boundary, and what the next run makes of it.

The invariant after every scenario: the store holds a secret that works, or it holds the record
of an interrupted rotation (`pending`) and the next run heals it, or the run says
`needs_reconcile` with what a person must do. Never a dead secret with no record of why.
"""

import time

import pytest

from conftest import das_env, das_task, wait_for

pytestmark = pytest.mark.integration

APP = {"description": "app", "allow_path_patterns": ["^/v1/data/.*"], "ttl": "24h"}
PUT_APP = r"^/v1/tokens/app$"


def run_das(runner, das, store, env=None, **options):
    run = runner.run([das_task(das, store, **options)], env=env if env is not None else das_env(das, store))
    assert run.results, run
    return run.result


def start_das(runner, das, store, env=None, **options):
    return runner.start([das_task(das, store, **options)], env=env if env is not None else das_env(das, store))


def record_of(store, das, token_id="app"):
    return store.entry("das", das.host, token_id) or {}


def assert_working_or_recorded(store, das, token_id="app", result=None):
    record = record_of(store, das, token_id)
    if das.sim.secret_works(record.get("secret", "")):
        return "working"
    assert record.get("pending") or (result or {}).get("action") == "needs_reconcile", \
        "a dead secret in the store with no record of why: %s" % {k: v for k, v in record.items() if k != "secret"}
    return "recorded"


def healed(runner, das, store, token_id="app", **options):
    """The next, ordinary run: it must end with a working secret and no intent left."""
    result = run_das(runner, das, store, id=token_id, **dict(APP, **options))
    assert not result["failed"], result
    record = record_of(store, das, token_id)
    assert das.sim.secret_works(record["secret"]) and "pending" not in record, result
    return result


@pytest.fixture
def made(runner, das, store):
    """The token exists and its secret is stored."""
    result = run_das(runner, das, store, id="app", **APP)
    assert result["action"] == "created", result
    das.sim.reset_counts()
    return record_of(store, das)


def test_killed_after_intent_before_mint(runner, das, store, made):
    das.sim.faults.add("PUT", PUT_APP, "hang_before_commit", delay=30)
    proc, results = start_das(runner, das, store, id="app", state="rotated", **APP)
    wait_for(das.sim.faults.received.is_set, what="the regenerate to arrive")
    runner.crash(proc, results, record_of(store, das)["pending"])
    record = record_of(store, das)
    assert record["pending"]["step"] == "minting"           # the intent was written first
    assert das.sim.secret_works(record["secret"])            # nothing was minted: the old secret still works
    assert assert_working_or_recorded(store, das) == "working"
    result = healed(runner, das, store)
    assert result["action"] == "recovered" and result["recovered_step"] == "minting"


def test_killed_after_mint_before_persist(runner, das, store, made):
    das.sim.faults.add("PUT", PUT_APP, "hang_after_commit", delay=30)
    # A short lease: the persist waits out the store for the lease, less a store time-out.
    proc, results = start_das(runner, das, store, id="app", state="rotated", lease="8s", **APP)
    wait_for(das.sim.faults.committed.is_set, what="DAS to commit the regenerate")
    runner.crash(proc, results, record_of(store, das)["pending"])
    record = record_of(store, das)
    assert not das.sim.secret_works(record["secret"])        # DAS killed the old secret...
    assert assert_working_or_recorded(store, das) == "recorded"   # ...and the store says why
    result = healed(runner, das, store)
    assert result["action"] == "recovered"


def test_store_outage_at_persist(runner, das, store, made):
    das.sim.faults.add("PUT", PUT_APP, "hang_after_commit", delay=0.5)
    # A short lease: the persist waits out the store for the lease, less a store time-out.
    proc, results = start_das(runner, das, store, id="app", state="rotated", lease="8s", **APP)
    wait_for(das.sim.faults.committed.is_set, what="DAS to commit the regenerate")
    # The store goes away while the new secret is on its way back.
    with store.outage():
        run = runner.finish(proc, results)
    result = run.result
    assert result["failed"] and result["step"] == "persist", result
    assert "next run regenerates app again" in result["msg"] and "Styra DAS" in result["msg"]
    assert assert_working_or_recorded(store, das) in ("recorded", "working")
    # A Vault write that timed out may still commit when the server wakes up (it sat in the
    # socket): then the record is complete and the next run has nothing to do.
    assert healed(runner, das, store)["action"] in (("recovered", "none") if store.backend == "vault" else ("recovered",))


def test_response_lost_after_commit_is_healed_in_the_same_run(runner, das, store, made):
    das.sim.faults.add("PUT", PUT_APP, "drop_after_commit")
    result = run_das(runner, das, store, id="app", state="rotated", **APP)
    assert result["action"] == "rotated" and not result["failed"], result
    assert das.sim.count("PUT", "/v1/tokens/app") == 2       # the lost one, and the one that superseded it
    assert assert_working_or_recorded(store, das) == "working" and "pending" not in record_of(store, das)


def test_response_lost_twice_leaves_a_record_and_the_next_run_heals(runner, das, store, made):
    das.sim.faults.add("PUT", PUT_APP, "drop_after_commit", times=2)
    result = run_das(runner, das, store, id="app", state="rotated", **APP)
    assert result["failed"] and "unknown" in result["msg"] and "next run regenerates" in result["msg"], result
    assert assert_working_or_recorded(store, das, result=result) == "recorded"
    assert healed(runner, das, store)["action"] == "recovered"


def test_server_error_on_regenerate(runner, das, store, made):
    das.sim.faults.add("PUT", PUT_APP, "status", status=503)
    result = run_das(runner, das, store, id="app", state="rotated", **APP)
    assert result["failed"], result
    assert "Styra DAS: regenerate token app failed: PUT /v1/tokens/app returned HTTP 503" in result["msg"]
    assert das.sim.count("PUT", "/v1/tokens/app") == 1       # a mint is never repeated by the HTTP layer
    record = record_of(store, das)
    assert record["secret"] == made["secret"] and das.sim.secret_works(record["secret"]) and "pending" not in record
    assert run_das(runner, das, store, id="app", state="rotated", **APP)["action"] == "rotated"


def test_server_errors_on_reads_are_retried(runner, das, store, made):
    das.sim.faults.add("GET", PUT_APP, "status", status=502, times=2)
    result = run_das(runner, das, store, id="app", **APP)
    assert result["action"] == "none" and not result["failed"], result
    assert das.sim.count("GET", "/v1/tokens/app") >= 3


def test_rate_limited_read_waits_for_retry_after(runner, das, store, made):
    das.sim.faults.add("GET", PUT_APP, "retry_after", retry_after=2)
    started = time.time()
    result = run_das(runner, das, store, id="app", **APP)
    assert result["action"] == "none" and not result["failed"], result
    gets = [r for r in das.sim.requests if r.method == "GET" and r.path == "/v1/tokens/app"]
    assert gets[0].status == 429 and gets[1].status == 200
    assert gets[1].at - gets[0].at >= 1.9 and time.time() - started >= 2


def test_rate_limited_regenerate_is_sent_again_after_its_retry_after(runner, das, store, made):
    # A 429 says the regenerate was not carried out: it is sent again once the wait it asked for is over.
    das.sim.faults.add("PUT", PUT_APP, "retry_after", retry_after=1)
    result = run_das(runner, das, store, id="app", state="rotated", **APP)
    assert result["action"] == "rotated" and not result.get("failed"), result
    puts = [r for r in das.sim.requests if r.method == "PUT" and r.path == "/v1/tokens/app"]
    assert [r.status for r in puts[-2:]] == [429, 200]
    assert puts[-1].received_at - puts[-2].received_at >= 1.0
    assert assert_working_or_recorded(store, das) == "working" and "pending" not in record_of(store, das)


def test_rate_limited_regenerate_fails_cleanly(runner, das, store, made):
    # A Retry-After longer than the client waits for (60 s): the token fails, nothing changed, the next run rotates it.
    das.sim.faults.add("PUT", PUT_APP, "retry_after", retry_after=3600)
    result = run_das(runner, das, store, id="app", state="rotated", **APP)
    assert result["failed"] and "HTTP 429" in result["msg"], result
    assert assert_working_or_recorded(store, das) == "working" and "pending" not in record_of(store, das)
    assert run_das(runner, das, store, id="app", state="rotated", **APP)["action"] == "rotated"


def test_two_concurrent_runs_one_rotates_the_other_backs_off(runner, das, store, made):
    # The first run is held inside its regenerate (its intent recorded) until the second has finished.
    das.sim.faults.add("PUT", PUT_APP, "latency", delay=300)
    first, first_results = start_das(runner, das, store, id="app", state="rotated", **APP)
    wait_for(das.sim.faults.arrived.is_set, what="the first run's regenerate", timeout=300)
    second = runner.run([das_task(das, store, id="app", state="rotated", **APP)], env=das_env(das, store))
    das.sim.faults.release.set()
    first = runner.finish(first, first_results)
    assert first.result["action"] == "rotated", first
    assert second.result["changed"] is False and second.result["backed_off"] is True, second.result
    assert "is being changed by" in second.result["msg"] and second.result["holder"] and second.result["lease_expires_at"]
    assert das.sim.count("PUT", "/v1/tokens/app") == 1
    record = record_of(store, das)
    assert das.sim.secret_works(record["secret"]) and record["rotation_count"] == made.get("rotation_count", 0) + 1


def test_two_runs_started_together(runner, das, file_store):
    run_das(runner, das, file_store, id="app", **APP)
    das.sim.reset_counts()
    procs = [start_das(runner, das, file_store, id="app", state="rotated", **APP) for _run in range(2)]
    runs = [runner.finish(p, r) for p, r in procs]
    actions = sorted(run.result["action"] for run in runs)
    backed = [run.result for run in runs if run.result.get("backed_off")]
    # Either both rotated one after the other (the second saw the first's finished record),
    # or one backed off; never two rotations racing on one version.
    assert actions in (["none", "rotated"], ["rotated", "rotated"]), [r.result for r in runs]
    if actions == ["none", "rotated"]:
        assert len(backed) == 1
    assert das.sim.count("PUT", "/v1/tokens/app") == actions.count("rotated")
    assert das.sim.secret_works(record_of(file_store, das)["secret"])


def test_overlap_killed_after_creating_the_second_id(runner, das, file_store):
    opts = dict(APP, strategy="overlap", grace_period="1h")
    run_das(runner, das, file_store, id="app", **opts)
    old = record_of(file_store, das)
    das.sim.faults.add("PUT", r"^/v1/tokens/app-b$", "hang_after_commit", delay=30)
    proc, results = start_das(runner, das, file_store, id="app", state="rotated", **opts)
    wait_for(das.sim.faults.committed.is_set, what="DAS to create app-b")
    runner.crash(proc, results, record_of(file_store, das)["pending"])
    record = record_of(file_store, das)
    assert record["pending"]["step"] == "creating" and record["secret"] == old["secret"]
    assert das.sim.secret_works(old["secret"])                 # overlap: consumers still hold a live secret
    result = healed(runner, das, file_store, **opts)
    assert result["action"] == "recovered" and result["token_id"] == "app-b"
    assert das.sim.secret_works(old["secret"])                 # still in its grace period


def test_refresher_lost_its_own_new_secret(runner, das, file_store):
    refresher_secret = das.sim.seed_token("token-refresher", roles=[("WorkspaceTokenRefresher", "workspace", "*")])
    run_das(runner, das, file_store, id="app", **APP)
    refresher = {"id": "token-refresher", "initial_secret": refresher_secret, "self_rotate": True, "ttl": "720h",
                 "allow_path_patterns": ["^/v1/tokens/.*"]}
    env = das_env(das, file_store, admin=False)
    das.sim.faults.add("PUT", r"^/v1/tokens/token-refresher$", "hang_after_commit", delay=30)
    proc, results = start_das(runner, das, file_store, env=env, id="app", refresher=refresher, max_age="0s", **APP)
    wait_for(das.sim.faults.committed.is_set, what="DAS to regenerate the refresher")
    runner.crash(proc, results, record_of(file_store, das, "token-refresher")["pending"])
    # The refresher's new secret is lost and its old one is dead: only an administrator can fix it.
    result = run_das(runner, das, file_store, env=env, id="app", refresher=refresher, **APP)
    assert result["failed"] and result["refresher"]["action"] == "needs_reconcile", result
    assert "administrator" in result["msg"] and "PUT /v1/tokens/token-refresher" in result["msg"]
    assert "pending" in record_of(file_store, das, "token-refresher")
    # With an administrator token the same task recovers the refresher.
    result = run_das(runner, das, file_store, id="app", refresher=refresher, **APP)
    assert result["refresher"]["action"] == "recovered", result
    assert das.sim.secret_works(record_of(file_store, das, "token-refresher")["secret"])
