"""A run that backs off from another run's token says what that holder did, and the report pages a person only for a
holder that really stopped: not for one that finished normally, however long after its lease the report is written.
"""

import datetime

import pytest

from ansible_collections.tokenops.rotation.plugins.module_utils import report as rep

from conftest import das_env, das_task, wait_for

pytestmark = pytest.mark.integration

# timeout: the held requests wait for the test, longer than the default 30 s.
APP = {"description": "app", "allow_path_patterns": ["^/v1/tokens/.*"], "ttl": "24h", "timeout": 600}
# Long enough that the run which backs off reads the dead holder's intent inside its lease on a loaded machine.
DEAD_LEASE = 30


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def path_of(store, das, token_id):
    return "%s/das/%s/%s" % (store.prefix, das.host, token_id)


def test_a_holder_that_finished_is_not_flagged_and_one_that_died_is(runner, das, store):
    env = das_env(das, store)
    tokens = [{"id": name} for name in ("live-held", "dead-held", "slow")]
    created = runner.run([das_task(das, store, tokens=tokens, **APP)], env=env)
    assert [r["action"] for r in created.result["results"]] == ["created"] * 3, created.result

    # Holder 1: a live run rotating live-held, held inside its regenerate until the test releases it.
    das.sim.faults.add("PUT", r"^/v1/tokens/live-held$", "latency", delay=600)
    live_proc, live_handle = runner.start([das_task(das, store, id="live-held", state="rotated", **APP)], env=env)
    wait_for(lambda: (store.entry("das", das.host, "live-held") or {}).get("pending"), "the live holder's intent", timeout=300)
    wait_for(das.sim.faults.arrived.is_set, "the live holder's regenerate to reach DAS", timeout=300)

    # Holder 2: a run on another AWX node that died after recording its intent; its lease runs out soon.
    dead_lease_end = utcnow() + datetime.timedelta(seconds=DEAD_LEASE)

    def held_by_a_dead_run(record):
        record["pending"] = {"rotation_id": "dead-run-1", "step": "regenerate", "started_at": iso(utcnow()),
                             "holder": "awx-job-7-node-b:4242", "lease_expires_at": iso(dead_lease_end), "secret_usable": True}
        return record
    store.rewrite(path_of(store, das, "dead-held"), held_by_a_dead_run)

    # This run backs off from both, and is held on its third token until the dead holder's lease has run out.
    das.sim.faults.add("PUT", r"^/v1/tokens/slow$", "latency", delay=600)
    proc, handle = runner.start([das_task(das, store, tokens=tokens, state="rotated", **APP)], env=env)
    wait_for(lambda: das.sim.faults.pending() == 0, "this run's regenerate of slow to reach DAS", timeout=300)
    wait_for(lambda: utcnow() > dead_lease_end, "the dead holder's lease to run out", timeout=120)
    das.sim.faults.release.set()
    live = runner.finish(live_proc, live_handle)
    assert live.result["action"] == "rotated", live.result
    run = runner.finish(proc, handle)
    results = {r["id"]: r for r in run.result["results"]}
    assert results["slow"]["action"] == "rotated", results["slow"]
    for name in ("live-held", "dead-held"):
        assert results[name]["backed_off"] is True and results[name]["backed_off_at"], results[name]
    assert results["live-held"]["holder_state"] in ("finished", "working"), results["live-held"]
    assert results["dead-held"]["holder_state"] == "stopped", results["dead-held"]

    # The report, written long after both leases ended.
    source = {"product": "das", "endpoint": "tenant-a", "url": das.url, "check_mode": False,
              "configured": [t["id"] for t in tokens], "removing": [], "rotate": run.result}
    rows = {r["token"]: r for r in rep.build([source], now=utcnow() + datetime.timedelta(hours=1))["rows"]}
    assert rows["live-held"]["conditions"] == ["backed_off"] and not rows["live-held"]["fails_job"], rows["live-held"]
    assert rows["dead-held"]["conditions"] == ["backed_off_stale"] and rows["dead-held"]["fails_job"], rows["dead-held"]
    assert "awx-job-7-node-b:4242" in rows["dead-held"]["todo"][0]
