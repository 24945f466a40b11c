"""A DPA adoption stuck at its one step (`adopting`), as a run killed on another host leaves it (its lease ran out),
in every variant that applies to DPA, and what the next run makes of it.

DPA changes nothing when a token is adopted, so the store is all there is: the intent holds the new token, the stored
one stays current. The next run either heals (a stored token that works, no intent left) or reports needs_reconcile
with the steps a person takes. A token lookup in between returns a token that works, or a clear refusal.
"""

import hashlib

import pytest

from dpa_fixtures import lookup, record_of, run_dpa, write_record
# Fixtures: pytest finds them by name in this module.
from dpa_fixtures import dpa, dpa_factory  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.integration


def fp(token):
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


class Stuck:
    """The stored token, the new one in the stale intent; its repr keeps the tokens out of pytest's reports."""

    def __init__(self, old, new, record):
        self.old, self.new, self.record = old, new, record

    def __repr__(self):
        return "<Stuck reporting-old -> reporting-new>"


def stale_intent(new, name, step="adopting"):
    """The intent of a run on another host that died at `step`: its lease ran out a minute ago."""
    return {"rotation_id": "0d5c7a6e-dead-4bad-8000-000000000001", "step": step, "started_at": "2020-01-01T00:00:00Z",
            "holder": "awx-node-7.example.com:4242", "lease_expires_at": "2020-01-01T00:01:00Z", "secret_usable": True,
            "new_secret": new, "new_token_id": name, "new_fingerprint": fp(new), "new_expires_at": None}


def stick(runner, dpa, store, step="adopting"):
    """'reporting-old' is stored; a run that was adopting 'reporting-new' died on another host."""
    old = dpa.issue("reporting-old")
    assert run_dpa(runner, dpa, store, id="reporting", refresh_token=old)["action"] == "created"
    new = dpa.issue("reporting-new")
    record = dict(record_of(store, dpa), pending=stale_intent(new, "reporting-new", step))
    write_record(store, dpa, record)
    dpa.sim.reset_counts()
    return Stuck(old, new, record)


def consumer_secret(store, dpa):
    """What a consumer gets from the tokenops.rotation.token lookup for the entry (in process), or its refusal."""
    from ansible.errors import AnsibleLookupError
    try:
        return lookup("token", ["dpa/%s/reporting" % dpa.host], store)[0], None
    except AnsibleLookupError as exc:
        return None, str(exc)


def assert_consumer_gets_a_working_token(store, dpa):
    secret, refusal = consumer_secret(store, dpa)
    assert secret is not None, refusal
    assert dpa.sim.refresh_token_works(secret), "the lookup handed out a dead refresh token"


def assert_healed(store, dpa, secret):
    record = record_of(store, dpa)
    assert record["secret"] == secret and dpa.sim.refresh_token_works(secret) and "pending" not in record, \
        {k: v for k, v in record.items() if k not in ("secret", "access_token", "previous")}
    assert_consumer_gets_a_working_token(store, dpa)


def test_stuck_adoption_completes(runner, dpa, store):
    stuck = stick(runner, dpa, store)
    assert_consumer_gets_a_working_token(store, dpa)         # the intent says the stored token still works
    result = run_dpa(runner, dpa, store, id="reporting")
    assert result["action"] == "recovered" and result["recovered_step"] == "adopting" and not result["failed"], result
    assert result["token_id"] == "reporting-new" and "Refresh Token Management" in result["manual_step"]
    assert result["expiry_status"] == "ok" and result["days_left"] in (89, 90)
    assert_healed(store, dpa, stuck.new)
    assert record_of(store, dpa)["previous"]["secret"] == stuck.old


def test_stuck_adoption_whose_new_token_was_deleted(runner, dpa, file_store):
    stuck = stick(runner, dpa, file_store)
    dpa.sim.delete_refresh_token(stuck.new)
    assert_consumer_gets_a_working_token(file_store, dpa)
    result = run_dpa(runner, dpa, file_store, id="reporting")
    # Never a dead end: the dead adoption is withdrawn and the stored token stays current.
    assert result["action"] == "recovered" and result["changed"] and not result["failed"], result
    assert "cannot complete" in result["msg"] and "'reporting-old' stays current" in result["msg"]
    assert any("reporting-new" in w and "does not work" in w for w in result["warnings"]), result
    assert result["token_id"] == "reporting-old" and result["expiry_status"] == "ok" and "manual_step" not in result
    assert_healed(file_store, dpa, stuck.old)
    assert "previous" not in record_of(file_store, dpa)
    again = run_dpa(runner, dpa, file_store, id="reporting")
    assert again["action"] == "none" and not again["changed"], again


def test_stuck_adoption_of_a_dead_token_asked_for_again(runner, dpa, file_store):
    """state rotated with the very token of the stuck adoption, which DPA refuses: refused, and the intent is withdrawn."""
    stuck = stick(runner, dpa, file_store)
    dpa.sim.delete_refresh_token(stuck.new)
    result = run_dpa(runner, dpa, file_store, id="reporting", refresh_token=stuck.new, state="rotated")
    assert result["failed"] and result["step"] == "verify" and "It was not adopted, and 'reporting-old' stays current" \
        in result["msg"], result
    assert_healed(file_store, dpa, stuck.old)


def test_stuck_adoption_whose_stored_token_was_deleted(runner, dpa, store):
    stuck = stick(runner, dpa, store)
    dpa.sim.delete_refresh_token(stuck.old)                  # someone deleted the current one in DPA meanwhile
    result = run_dpa(runner, dpa, store, id="reporting")
    assert result["action"] == "recovered" and result["token_id"] == "reporting-new" and not result["failed"], result
    assert_healed(store, dpa, stuck.new)


def test_stuck_adoption_with_both_tokens_deleted_needs_a_person(runner, dpa, file_store):
    stuck = stick(runner, dpa, file_store)
    dpa.sim.delete_refresh_token(stuck.new)
    dpa.sim.delete_refresh_token(stuck.old)
    result = run_dpa(runner, dpa, file_store, id="reporting")
    assert result["failed"] and result["action"] == "needs_reconcile", result
    assert "cannot complete" in result["msg"] and "'reporting-old' no longer works" in result["msg"]
    steps = " ".join(result["reconcile_steps"])
    assert "Refresh Token Management" in steps and "state: rotated" in steps, result
    assert result["expiry_status"] == "ok" and result["expires_at"] == stuck.record["expires_at"]
    assert record_of(file_store, dpa)["pending"]["new_secret"] == stuck.new      # the record of why stays
    # The person's step: a new token, adopted with state rotated, supersedes the dead adoption.
    fresh = dpa.issue("reporting-fresh")
    result = run_dpa(runner, dpa, file_store, id="reporting", refresh_token=fresh, state="rotated")
    assert result["action"] == "rotated" and not result["failed"] and result["token_id"] == "reporting-fresh", result
    assert_healed(file_store, dpa, fresh)


def test_stuck_adoption_superseded_by_a_later_rotation(runner, dpa, store):
    stuck = stick(runner, dpa, store)
    newer = dpa.issue("reporting-newer")
    result = run_dpa(runner, dpa, store, id="reporting", refresh_token=newer, state="rotated")
    # One meaning per action name, in every product: the change of its own is the action, and the message says first
    # what was settled, as a recovery followed by a due rotation does (test_recovery_then_due).
    assert result["action"] == "rotated" and result["recovered_step"] == "adopting" and not result["failed"], result
    assert result["msg"].startswith("recovered: the interrupted step 'adopting' was settled; then rotated: Adopted "), result
    assert result["token_id"] == "reporting-newer" and result["previous"]["token_id"] == "reporting-old"
    assert any("adoption of 'reporting-new'" in w and "superseded" in w for w in result["warnings"]), result
    assert_healed(store, dpa, newer)
    assert record_of(store, dpa)["previous"]["secret"] == stuck.old
    assert dpa.posts() == 1                                  # only the newer token was exchanged


def test_stuck_adoption_superseded_by_the_stored_token(runner, dpa, file_store):
    """state rotated with the token that is already current: the stuck adoption of another one is withdrawn."""
    stuck = stick(runner, dpa, file_store)
    result = run_dpa(runner, dpa, file_store, id="reporting", refresh_token=stuck.old, state="rotated")
    assert result["action"] == "recovered" and result["token_id"] == "reporting-old" and not result["failed"], result
    assert_healed(file_store, dpa, stuck.old)


def test_check_mode_predicts_the_recovery_and_writes_nothing(runner, dpa, file_store):
    stuck = stick(runner, dpa, file_store)
    writes = file_store.writes()
    predicted = run_dpa(runner, dpa, file_store, id="reporting", check=True)
    assert predicted["action"] == "recovered" and predicted["token_id"] == "reporting-new", predicted
    assert file_store.writes() == writes and record_of(file_store, dpa) == stuck.record
    real = run_dpa(runner, dpa, file_store, id="reporting")
    keys = ("action", "token_id", "fingerprint", "expires_at")
    assert [real[k] for k in keys] == [predicted[k] for k in keys], (real, predicted)


@pytest.mark.parametrize("garbage", ["a step no version wrote", "a new token that is no JWT"])
def test_stuck_record_that_makes_no_sense(runner, dpa, file_store, garbage):
    stuck = stick(runner, dpa, file_store, step="minting" if garbage.startswith("a step") else "adopting")
    if garbage.startswith("a new token"):
        record = dict(stuck.record, pending=dict(stuck.record["pending"], new_secret="not-a-jwt"))
        write_record(file_store, dpa, record)
    result = run_dpa(runner, dpa, file_store, id="reporting")
    if garbage.startswith("a step"):
        # Only a person can tell what a step this version never writes meant.
        assert result["failed"] and result["action"] == "needs_reconcile" and result["reconcile_steps"], result
        assert "unknown step 'minting'" in result["msg"] and dpa.sim.count() == 0
        assert_consumer_gets_a_working_token(file_store, dpa)
        return
    assert result["action"] == "recovered" and not result["failed"] and "is not a JWT" in result["msg"], result
    assert_healed(file_store, dpa, stuck.old)


def test_stuck_adoption_asked_for_again_is_recovered(runner, dpa, store):
    """state rotated with the very token the stuck adoption holds: the run resumes that adoption and does nothing more,
    so it reports recovered (the one name every product gives a settled interrupted rotation), not rotated."""
    stuck = stick(runner, dpa, store)
    result = run_dpa(runner, dpa, store, id="reporting", refresh_token=stuck.new, state="rotated")
    assert result["action"] == "recovered" and result["recovered_step"] == "adopting" and not result["failed"], result
    assert result["token_id"] == "reporting-new" and result["previous"]["token_id"] == "reporting-old", result
    assert_healed(store, dpa, stuck.new)
    assert record_of(store, dpa)["previous"]["secret"] == stuck.old
    again = run_dpa(runner, dpa, store, id="reporting", refresh_token=stuck.new, state="rotated")
    assert again["action"] == "none" and not again["changed"], again
