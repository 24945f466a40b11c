"""Open Payments rotations that go wrong, and what the next run makes of them.

The invariant after every scenario: the store holds a token that works, or the record of an
interrupted step (`pending`) that the next run heals, or the run says `needs_reconcile` with the
steps a person must take. Never a dead token with no record of why.
"""


import pytest

from conftest import wait_for
from openpayments_fixtures import (  # noqa: F401 pylint: disable=unused-import
    op,
    op_env,
    op_factory,
    op_task,
    record_of,
    run_op,
)

pytestmark = pytest.mark.integration

ROTATE = r"^/auth/token/"


def working(op, store, grant_id="app"):
    record = record_of(store, op, grant_id)
    return op.sim.token_works(record.get("secret", "")) and "pending" not in record


def make(runner, op, store):
    """The grant exists and its token is stored."""
    result = run_op(runner, op, store, id="app", access=op.incoming)
    assert result["action"] == "created", result
    op.sim.reset_counts()
    return record_of(store, op)


@pytest.fixture
def made(runner, op, store):
    return make(runner, op, store)


@pytest.fixture
def made_in_file(runner, op, file_store):
    return make(runner, op, file_store)


def test_rotate_answer_lost_after_commit_means_a_new_grant(runner, op, store, made):
    op.sim.faults.add("POST", ROTATE, "drop_after_commit")
    result = run_op(runner, op, store, id="app", access=op.incoming, state="rotated")
    assert result["action"] == "recovered" and not result["failed"], result
    assert "answer was lost" in result["msg"] and result["cancelled_grant"], result
    # The lost rotation, the second ask that proved it (401), a new grant, the old grant's cancel (requests to the
    # wallet address and the resource server, which verify the new token, aside).
    assert [(r.method, r.path.split("/")[2], r.status) for r in op.sim.requests if r.path.startswith("/auth/")] == [
        ("POST", "token", None), ("POST", "token", 401), ("POST", "op", 200), ("DELETE", "continue", 204)]
    assert working(op, store) and not op.sim.token_works(made["secret"])
    assert op.sim.grant_of(made["grant"]["continue_uri"])["finalization"] == "revoked"
    assert len(op.sim.live_tokens()) == 1          # nothing else of ours is left alive at the AS


def test_rotate_outcome_unknown_twice_leaves_the_intent_and_the_next_run_heals(runner, op, store, made):
    op.sim.faults.add("POST", ROTATE, "drop_after_commit")
    op.sim.faults.add("POST", ROTATE, "status", status=504)
    result = run_op(runner, op, store, id="app", access=op.incoming, state="rotated")
    assert result["failed"] and "unknown" in result["msg"] and "next run asks the old manage URL again" in result["msg"], result
    record = record_of(store, op)
    assert record["pending"]["step"] == "rotating" and not op.sim.token_works(record["secret"])   # dead, and the store says why
    result = run_op(runner, op, store, id="app", access=op.incoming)
    assert result["action"] == "recovered" and result["recovered_step"] == "rotating", result
    assert working(op, store)


def test_rotate_answer_lost_for_an_interactive_grant_needs_reconcile(runner, op, file_store):
    opts = dict(id="payout", access=op.outgoing)
    pending = run_op(runner, op, file_store, **opts)
    ref = op.sim.approve(pending["redirect"].split("/interact/")[1].split("/")[0])["interact_ref"]
    assert run_op(runner, op, file_store, interact_ref=ref, **opts)["action"] == "created"
    op.sim.faults.add("POST", ROTATE, "drop_after_commit")
    result = run_op(runner, op, file_store, state="rotated", **opts)
    assert result["failed"] and result["action"] == "needs_reconcile", result
    for step in ("state: absent and scope: grant", "state: present", "redirect URL", "interact_ref"):
        assert step in result["msg"], result["msg"]
    record = record_of(file_store, op, "payout")
    assert "secret" not in record and record["lost"] and "pending" not in record   # no dead token for consumers to read
    # Until a person acts, every run says the same and sends nothing.
    op.sim.reset_counts()
    again = run_op(runner, op, file_store, **opts)
    assert again["action"] == "needs_reconcile" and op.sim.count() == 0, again
    # The steps of the message work.
    assert run_op(runner, op, file_store, id="payout", state="absent", scope="grant")["action"] == "revoked"
    pending = run_op(runner, op, file_store, **opts)
    assert pending["action"] == "needs_interaction", pending
    ref = op.sim.approve(pending["redirect"].split("/interact/")[1].split("/")[0])["interact_ref"]
    assert run_op(runner, op, file_store, interact_ref=ref, **opts)["action"] == "created"
    assert working(op, file_store, "payout")


def test_store_down_after_rotation(runner, op, store, made):
    op.sim.faults.add("POST", ROTATE, "hang_after_commit", delay=0.5)
    # A short lease: the persist waits out the store for the lease, less a store time-out.
    proc, results = runner.start([op_task(op, store, id="app", access=op.incoming, state="rotated", lease="8s")], env=op_env(op, store))
    wait_for(op.sim.faults.committed.is_set, what="the AS to commit the rotation")
    with store.outage():
        run = runner.finish(proc, results)
    result = run.result
    assert result["failed"] and result["step"] == "persist", result
    assert "store failed to save the new token" in result["msg"] and "requests a new grant" in result["msg"]
    assert not op.sim.token_works(made["secret"])
    healed = run_op(runner, op, store, id="app", access=op.incoming)
    # A Vault write that timed out may still commit when the server wakes up: then nothing is left to do.
    assert healed["action"] in (("recovered", "none") if store.backend == "vault" else ("recovered",)), healed
    assert working(op, store)


@pytest.mark.parametrize("fault", [dict(kind="status", status=503), dict(kind="status", status=500), dict(kind="retry_after", retry_after=3600)],
                         ids=["503", "500", "429-longer-than-waited-for"])
def test_refused_rotation_fails_cleanly_and_the_old_token_keeps_working(runner, op, file_store, made_in_file, fault):
    made = made_in_file
    op.sim.faults.add("POST", ROTATE, **fault)
    result = run_op(runner, op, file_store, id="app", access=op.incoming, state="rotated")
    status = fault.get("status", 429)
    assert result["failed"] and "Open Payments: rotate token failed: POST /auth/token/%s returned HTTP %d" % (made["token_id"], status) \
        in result["msg"], result
    assert op.sim.count("POST", "/auth/token/") == 1                 # a rotation is never repeated by the HTTP layer
    assert record_of(file_store, op) == made and op.sim.token_works(made["secret"])
    assert run_op(runner, op, file_store, id="app", access=op.incoming, state="rotated")["action"] == "rotated"


def test_rate_limited_rotation_is_sent_again_after_its_retry_after(runner, op, file_store, made_in_file):
    # A 429 says the rotation was not carried out: it is sent again (signed anew) once the wait it asked for is over.
    op.sim.faults.add("POST", ROTATE, "retry_after", retry_after=1)
    result = run_op(runner, op, file_store, id="app", access=op.incoming, state="rotated")
    assert result["action"] == "rotated" and not result.get("failed"), result
    posts = [r for r in op.sim.requests if r.method == "POST" and r.path.startswith("/auth/token/")]
    assert [r.status for r in posts] == [429, 200]
    assert posts[1].received_at - posts[0].received_at >= 1.0
    assert not op.sim.token_works(made_in_file["secret"]) and working(op, file_store)


def test_refused_grant_request_leaves_nothing(runner, op, file_store):
    op.sim.faults.add("POST", r"^/auth/op$", "status", status=503)
    result = run_op(runner, op, file_store, id="app", access=op.incoming)
    assert result["failed"] and "grant request failed" in result["msg"] and "503" in result["msg"], result
    assert record_of(file_store, op) == {} and op.sim.count("POST", "/auth/op") == 1
    assert run_op(runner, op, file_store, id="app", access=op.incoming)["action"] == "created"


def test_two_concurrent_runs_one_rotates_the_other_backs_off(runner, op, file_store, made_in_file):
    # The first run is held inside its rotation (its intent recorded) until the second has finished.
    op.sim.faults.add("POST", ROTATE, "latency", delay=300)
    first, first_results = runner.start([op_task(op, file_store, id="app", access=op.incoming, state="rotated")],
                                        env=op_env(op, file_store))
    wait_for(op.sim.faults.arrived.is_set, what="the first run's rotation", timeout=300)
    second = run_op(runner, op, file_store, id="app", access=op.incoming, state="rotated")
    op.sim.faults.release.set()
    first = runner.finish(first, first_results)
    assert first.result["action"] == "rotated", first
    assert second["changed"] is False and second["backed_off"] is True and "being changed by" in second["msg"], second
    assert second["holder"] and second["lease_expires_at"] and second["step"] == "rotating", second
    assert op.sim.count("POST", "/auth/token/") == 1 and working(op, file_store)
    assert record_of(file_store, op)["rotation_count"] == made_in_file.get("rotation_count", 0) + 1
