"""A recovery that completes an interrupted rotation applies the due policy to what it recovered, in the same run.

Seen at 5,056 tokens: run 1's rotation was interrupted after the mint, at step `binding`; run 2 completed it with the
secret minted in run 1, which was already inside `rotate_before`, and stopped; run 3, which should have found nothing
due, rotated it.
"""

import time

import pytest

from conftest import das_env, das_task
from test_das_stuck import APP, healed, leave_intent
from tests.simulators.base import Clock

pytestmark = pytest.mark.integration

HOURS = 3600
POLICY = dict(APP, rotate_before="6h")     # APP's ttl is 24h


def run_das(runner, das, store, **options):
    run = runner.run([das_task(das, store, **options)], env=das_env(das, store))
    assert run.results, run
    return run.result


def test_a_recovered_secret_that_is_due_is_rotated_in_the_same_run(runner, das_factory, file_store):
    # The secret of the interrupted run was minted 20 hours ago (DAS's clock stands back): 4 of its 24 hours are left.
    das = das_factory(clock=Clock(start=time.time() - 20 * HOURS))
    assert run_das(runner, das, file_store, id="app", **POLICY)["action"] == "created"
    minted = file_store.entry("das", das.host, "app")
    das.sim.clock.advance(20 * HOURS)
    leave_intent(file_store, das, "app", "binding", True)

    # Check mode predicts what the real run does, and changes nothing.
    writes = file_store.writes()
    run = runner.run([das_task(das, file_store, id="app", **POLICY)], env=das_env(das, file_store), check=True)
    predicted = run.result
    assert predicted["action"] == "rotated" and predicted["recovered_step"] == "binding" and not predicted["failed"], predicted
    assert file_store.writes() == writes and das.sim.secret_works(minted["secret"])

    second = run_das(runner, das, file_store, id="app", **POLICY)
    assert second["action"] == "rotated" and second["recovered_step"] == "binding" and not second["failed"], second
    assert second["msg"].startswith("recovered: ") and "; then rotated: " in second["msg"], second
    assert "within rotate_before" in second["msg"].split("; then rotated: ")[1], second
    assert predicted["msg"].split("; then")[0] == second["msg"].split("; then")[0], (predicted, second)
    record = healed(file_store, das)
    assert record["secret"] != minted["secret"] and not das.sim.secret_works(minted["secret"])

    # The next run finds nothing due.
    third = run_das(runner, das, file_store, id="app", **POLICY)
    assert third["action"] == "none" and third["changed"] is False, third


def test_a_recovered_secret_that_is_not_due_stays(runner, das, file_store):
    assert run_das(runner, das, file_store, id="app", **POLICY)["action"] == "created"
    minted = file_store.entry("das", das.host, "app")
    leave_intent(file_store, das, "app", "binding", True)
    second = run_das(runner, das, file_store, id="app", **POLICY)
    assert second["action"] == "recovered" and second["recovered_step"] == "binding", second
    assert healed(file_store, das)["secret"] == minted["secret"]
