"""Open Payments intents left at every step, the way a killed run leaves them, and what the next run makes of them.

A run killed on another execution node leaves its intent in the store with a lease that ran out. Each grant below is
brought to one step and one variant of what happened before the kill (the change was never sent, it was carried out and
its answer lost, the grant or the previous grant was cancelled or the token revoked by someone else), its record is
written with that stale intent, and one ordinary run over all of them follows. Each heals (a stored token that works, no
intent left) or, where only a person can help (a grant that needed the resource owner's consent), says needs_reconcile
with the steps to take; none is left with a dead token and no record of why.
"""

import pytest

from ansible_collections.tokenops.rotation.plugins.module_utils.store import store_from_params
from openpayments_fixtures import op, op_env, op_factory, op_task, record_of, run_op  # noqa: F401 pylint: disable=unused-import

pytestmark = pytest.mark.integration

FINISH = "https://client.example/return"

# grant id -> (the step its stale intent records, what happened before the kill)
PLAIN = {
    "granting-nothing": "granting",            # the first grant request was lost: nothing stored but the intent
    "granting-replacing": "granting",          # a request replacing a live grant (changed access) was lost
    "granting-token-dead": "granting",         # the request replacing a dead token (already out of the store) was lost
    "rotating-not-sent": "rotating",
    "rotating-carried-out": "rotating",        # the rotation happened; its answer died with the run
    "rotating-grant-cancelled": "rotating",    # someone else cancelled the grant meanwhile
    "cancelling_previous-live": "cancelling_previous",
    "cancelling_previous-gone": "cancelling_previous",        # someone else cancelled the previous grant already
    "cancelling_previous-token-dead": "cancelling_previous",  # and the new token was revoked by someone else
    "revoking-not-sent": "revoking",
    "revoking-carried-out": "revoking",
    "cancelling-not-sent": "cancelling",
    "cancelling-carried-out": "cancelling",
}
CONSENT = {
    "continuing-not-sent": "continuing",       # approved, interact_ref known, the continuation never arrived
    "continuing-carried-out": "continuing",    # the continuation issued the token; its answer died with the run
    "continuing-grant-cancelled": "continuing",
    "continuing-poll": "continuing",           # an interrupted poll of an approved grant without finish_uri
    "rotating-consent-carried-out": "rotating",
}


class Hand:
    """What other tools and a killed run did: changes made in the simulator directly, and records written to the store."""

    def __init__(self, op, store):
        self.op = op
        self.sim = op.sim
        self.store = store

    def _backend(self):
        options = dict(self.store.options)
        if self.store.backend == "vault":
            options.update(url=self.store.env["VAULT_ADDR"], token=self.store.env["VAULT_TOKEN"])
        return store_from_params(options)

    def path(self, grant_id):
        return "%s/openpayments/%s/%s" % (self.store.prefix, self.op.host, grant_id)

    def write(self, grant_id, record):
        backend = self._backend()
        backend.write(self.path(grant_id), record, backend.read(self.path(grant_id)).version)

    def stale(self, grant_id, record, step, **data):
        record = dict(record)
        record["pending"] = dict({"rotation_id": "killed-%s" % grant_id, "step": step, "started_at": "2020-01-01T00:00:00Z",
                                  "holder": "another-node:4242", "lease_expires_at": "2020-01-01T00:01:00Z",
                                  "secret_usable": step in ("granting", "continuing", "cancelling_previous")}, **data)
        self.write(grant_id, record)

    def revoke_token(self, record):
        with self.sim.lock:
            self.sim.tokens[record["token_id"]]["revoked_at"] = self.sim.clock.now()

    def rotate_token(self, record):
        with self.sim.lock:
            old = self.sim.tokens[record["token_id"]]
            old["revoked_at"] = self.sim.clock.now()
            self.sim._new_token(self.sim.grants[old["grant_id"]])    # pylint: disable=protected-access

    def cancel_grant(self, continue_uri):
        grant = self.sim.grant_of(continue_uri)
        with self.sim.lock:
            self.sim.grants[grant["id"]].update(state="finalized", finalization="revoked")

    def finalization(self, continue_uri):
        return self.sim.grant_of(continue_uri)["finalization"]


def run_many(runner, op, store, **options):
    """One run over many grants: the file store's lock is shared by every worker of the run, so it may wait longer."""
    task = op_task(op, store, **options)
    task["tokenops.rotation.openpayments_token"]["store"]["timeout"] = 60
    run = runner.run([task], env=op_env(op, store))
    assert run.results, run
    return run.result


def interaction_of(redirect):
    return redirect.split("/interact/")[1].split("/")[0]


def bring_to_steps(runner, op, store):
    """Grants at every step, with stale intents; returns {grant id: what the test checks afterwards}."""
    hand = Hand(op, store)
    spares = [{"id": "spare-live"}, {"id": "spare-gone"}, {"id": "spare-dead"}]
    grants = [{"id": gid} for gid in PLAIN if gid != "granting-nothing"] + spares
    made = run_many(runner, op, store, tokens=grants, access=op.incoming)
    assert {r["action"] for r in made["results"]} == {"created"}, made
    consent = [{"id": gid, "access": op.outgoing, "finish_uri": None if gid == "continuing-poll" else FINISH} for gid in CONSENT]
    asked = run_many(runner, op, store, tokens=consent, access=op.outgoing)
    refs = {r["id"]: op.sim.approve(interaction_of(r["redirect"]))["interact_ref"] for r in asked["results"]}
    continued = [dict(item, interact_ref=refs[item["id"]]) for item in consent
                 if item["id"] in ("continuing-carried-out", "rotating-consent-carried-out")]
    done = run_many(runner, op, store, tokens=continued, access=op.outgoing)
    assert {r["action"] for r in done["results"]} == {"created"}, done

    records = {gid: record_of(store, op, gid) for gid in list(PLAIN) + list(CONSENT) + ["spare-live", "spare-gone", "spare-dead"]}
    checks = {}
    # granting
    hand.stale("granting-nothing", {"product": "openpayments"}, "granting", reason="no grant in the store")
    rec = records["granting-replacing"]
    hand.stale("granting-replacing", rec, "granting", reason="the access asked for changed")
    checks["granting-replacing"] = dict(old_grant=rec["grant"]["continue_uri"], old_token=rec["secret"])
    rec = records["granting-token-dead"]
    hand.revoke_token(rec)
    token_keys = ("secret", "fingerprint", "token_id", "manage", "expires_in", "expires_at", "issued_at", "access")
    hand.stale("granting-token-dead", {k: v for k, v in rec.items() if k not in token_keys},
               "granting", secret_usable=False, reason="the token was found dead")
    checks["granting-token-dead"] = dict(old_grant=rec["grant"]["continue_uri"])
    # rotating
    rec = records["rotating-not-sent"]
    hand.stale("rotating-not-sent", rec, "rotating", token_id=rec["token_id"])
    checks["rotating-not-sent"] = dict(same_grant=rec["grant"]["continue_uri"], old_token=rec["secret"])
    rec = records["rotating-carried-out"]
    hand.rotate_token(rec)
    hand.stale("rotating-carried-out", rec, "rotating", token_id=rec["token_id"])
    checks["rotating-carried-out"] = dict(old_grant=rec["grant"]["continue_uri"])
    rec = records["rotating-grant-cancelled"]
    hand.cancel_grant(rec["grant"]["continue_uri"])
    hand.stale("rotating-grant-cancelled", rec, "rotating", token_id=rec["token_id"])
    checks["rotating-grant-cancelled"] = dict(old_grant=rec["grant"]["continue_uri"], cancelled_already=True)
    # cancelling_previous: the previous grant is a spare one's
    for gid, spare in (("cancelling_previous-live", "spare-live"), ("cancelling_previous-gone", "spare-gone"),
                       ("cancelling_previous-token-dead", "spare-dead")):
        rec = dict(records[gid])
        previous = records[spare]["grant"]
        rec["previous"] = {"continue_uri": previous["continue_uri"], "continue_token": previous["continue_token"],
                           "token_id": records[spare]["token_id"], "fingerprint": records[spare]["fingerprint"]}
        if gid == "cancelling_previous-gone":
            hand.cancel_grant(previous["continue_uri"])
        if gid == "cancelling_previous-token-dead":
            hand.revoke_token(rec)
        hand.stale(gid, rec, "cancelling_previous")
        checks[gid] = dict(previous=previous["continue_uri"], cancelled_already=gid == "cancelling_previous-gone")
    # revoking and cancelling (state absent, interrupted; the next run is a present one)
    for gid in ("revoking-not-sent", "revoking-carried-out", "cancelling-not-sent", "cancelling-carried-out"):
        rec = records[gid]
        if gid == "revoking-carried-out":
            hand.revoke_token(rec)
        if gid == "cancelling-carried-out":
            hand.cancel_grant(rec["grant"]["continue_uri"])
        hand.stale(gid, rec, gid.split("-", maxsplit=1)[0], token_id=rec["token_id"])
    # grants that needed the resource owner's consent
    rec = records["continuing-not-sent"]
    hand.stale("continuing-not-sent", rec, "continuing", interact_ref=refs["continuing-not-sent"])
    rec = records["continuing-carried-out"]
    pending_before = dict(rec, grant=dict(rec["grant"], status="pending"))
    for key in token_keys:
        pending_before.pop(key, None)
    hand.stale("continuing-carried-out", pending_before, "continuing", interact_ref=refs["continuing-carried-out"])
    rec = records["continuing-grant-cancelled"]
    hand.cancel_grant(rec["grant"]["continue_uri"])
    hand.stale("continuing-grant-cancelled", rec, "continuing", interact_ref=refs["continuing-grant-cancelled"])
    hand.stale("continuing-poll", records["continuing-poll"], "continuing")
    rec = records["rotating-consent-carried-out"]
    hand.rotate_token(rec)
    hand.stale("rotating-consent-carried-out", rec, "rotating", token_id=rec["token_id"])
    return hand, checks


def test_every_stuck_step_heals_or_says_what_a_person_must_do(runner, op, store):
    hand, checks = bring_to_steps(runner, op, store)
    items = [{"id": gid, "access": op.incoming} for gid in PLAIN]
    items[[i["id"] for i in items].index("granting-replacing")]["access"] = op.incoming[:1]
    items += [{"id": gid, "access": op.outgoing, "finish_uri": None if gid == "continuing-poll" else FINISH} for gid in CONSENT]
    op.sim.reset_counts()
    run = run_many(runner, op, store, tokens=items, access=op.incoming)
    results = {r["id"]: r for r in run["results"]}

    for gid, step in PLAIN.items():
        result, record = results[gid], record_of(store, op, gid)
        assert not result.get("failed") and result["action"] == "recovered", (gid, result)
        assert result["recovered_step"] == step, (gid, result)
        assert "pending" not in record and op.sim.token_works(record["secret"]), (gid, record.get("pending"))
        check = checks.get(gid, {})
        if "old_grant" in check:
            assert hand.finalization(check["old_grant"]) == "revoked" and result["cancelled_grant"], (gid, result)
        if "same_grant" in check:           # the rotation never happened: it happens now, in the same grant
            assert record["grant"]["continue_uri"] == check["same_grant"] and not op.sim.token_works(check["old_token"])
        if "previous" in check:
            assert hand.finalization(check["previous"]) == "revoked" and "previous" not in record, (gid, record)
        if "cancelled_already" in check:
            assert result["cancelled_already"] is check["cancelled_already"], (gid, result)
    assert not op.sim.token_works(checks["granting-replacing"]["old_token"])

    # Grants that needed consent: a token when the continuation (or poll) can still give it, else the steps for a person.
    for gid in ("continuing-not-sent", "continuing-poll"):
        result, record = results[gid], record_of(store, op, gid)
        assert result["action"] == "recovered" and op.sim.token_works(record["secret"]) and "pending" not in record, (gid, result)
    for gid in ("continuing-carried-out", "continuing-grant-cancelled", "rotating-consent-carried-out"):
        result, record = results[gid], record_of(store, op, gid)
        assert result["failed"] and result["action"] == "needs_reconcile", (gid, result)
        steps = " ".join(result["reconcile_steps"])
        assert "state: absent and scope: grant" in steps and "state: present" in steps and "interact_ref" in steps, (gid, steps)
        assert "secret" not in record and "pending" not in record, (gid, record)

    # And the reconcile steps work: cancel, ask again, approve, continue.
    gid = "rotating-consent-carried-out"
    assert run_op(runner, op, store, id=gid, state="absent", scope="grant")["action"] == "revoked"
    asked = run_op(runner, op, store, id=gid, access=op.outgoing, finish_uri=FINISH)
    ref = op.sim.approve(interaction_of(asked["redirect"]))["interact_ref"]
    assert run_op(runner, op, store, id=gid, access=op.outgoing, finish_uri=FINISH, interact_ref=ref)["action"] == "created"
    assert op.sim.token_works(record_of(store, op, gid)["secret"])
