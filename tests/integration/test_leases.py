"""Intents carry a lease that the run holding them renews; a run killed anywhere releases its token within one lease.

In AWX container groups every job runs in its own container with its own host name, so the next job cannot ask
whether the holder's process lives: only a lease it stopped renewing tells.
"""

import datetime
import time

import pytest

from conftest import das_env, das_task, wait_for

pytestmark = pytest.mark.integration

APP = {"description": "app", "allow_path_patterns": ["^/v1/tokens/.*"], "ttl": "24h"}
PUT_APP = r"^/v1/tokens/app$"
LEASE = 15    # renewed every 5 s: a heartbeat starved for 10 s on a loaded machine still keeps it


def task(das, store, **options):
    merged = dict(APP, id="app", lease="%ds" % LEASE, lock_timeout="10m")
    merged.update(options)
    return das_task(das, store, **merged)


def entry(store, das):
    return store.entry("das", das.host, "app") or {}


def parse(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_live_holder_renews_its_lease_and_a_holder_killed_on_another_host_releases_within_it(runner, das, file_store):
    env = das_env(das, file_store)
    path = "%s/das/%s/app" % (file_store.prefix, das.host)
    assert runner.run([task(das, file_store)], env=env).result["action"] == "created"
    das.sim.faults.add("PUT", PUT_APP, "latency", delay=600)
    proc, results = runner.start([task(das, file_store, state="rotated")], env=env)
    wait_for(das.sim.faults.arrived.is_set, "the rotation to reach DAS", timeout=300)
    first_lease = entry(file_store, das)["pending"]["lease_expires_at"]
    # The holder is alive, held inside its regenerate: its heartbeat moves the lease on, past the first one.
    wait_for(lambda: utcnow() > parse(first_lease), "the first lease to run out", timeout=120)
    assert parse(entry(file_store, das)["pending"]["lease_expires_at"]) > parse(first_lease)
    late = runner.run([task(das, file_store, state="rotated")], env=env)
    assert late.result["backed_off"] is True and late.result["holder"], late.result

    # Killed, and (as in another AWX container) on a host that is not this one: only its lease can tell it died.
    # It had renewed its lease just before it died.
    pending = entry(file_store, das)["pending"]
    runner.crash(proc, results, pending)
    das.sim.faults.clear()
    lease_end = utcnow() + datetime.timedelta(seconds=LEASE)

    def moved_to_another_host(record):
        record["pending"].update(holder="awx-job-99-node-b:" + pending["holder"].rsplit(":", 1)[1], lease_expires_at=iso(lease_end))
        return record
    moved = file_store.rewrite(path, moved_to_another_host)
    started = parse(moved["pending"]["started_at"])
    early = runner.run([task(das, file_store)], env=env)
    if utcnow() < lease_end:                     # it read the entry inside the lease (always, unless the machine stalled)
        assert early.result.get("backed_off") is True, early.result
    # Once the lease has run out the next run recovers it, long before lock_timeout (10 minutes).
    wait_for(lambda: utcnow() > lease_end, "the dead holder's lease to run out", timeout=120)
    recovered = runner.run([task(das, file_store)], env=env) if entry(file_store, das).get("pending") else early
    assert recovered.result["action"] == "recovered", recovered.result
    assert (utcnow() - started).total_seconds() < 600
    record = entry(file_store, das)
    assert "pending" not in record and das.sim.secret_works(record["secret"])


def test_a_failed_change_ends_its_lease_so_the_next_run_recovers_at_once(runner, das, file_store):
    """A regenerate whose answer was lost keeps its intent as the record of why, but not its lease."""
    env = das_env(das, file_store)
    runner.run([task(das, file_store)], env=env)
    das.sim.faults.add("PUT", PUT_APP, "drop_after_commit", times=2)
    failed = runner.run([task(das, file_store, state="rotated", lease="10m")], env=env)
    assert failed.result["failed"], failed.result
    pending = entry(file_store, das)["pending"]
    assert parse(pending["lease_expires_at"]) <= datetime.datetime.now(datetime.timezone.utc)
    started = time.time()
    recovered = runner.run([task(das, file_store, lease="10m")], env=env)
    assert recovered.result["action"] == "recovered", recovered.result
    assert time.time() - started < 120
    assert das.sim.secret_works(entry(file_store, das)["secret"])
