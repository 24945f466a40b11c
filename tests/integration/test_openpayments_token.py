"""openpayments_token and openpayments_token_info against the Open Payments simulator, with the file store and OpenBao."""

import urllib.parse

import pytest

from openpayments_fixtures import (  # noqa: F401 pylint: disable=unused-import
    assert_idempotent,
    op,
    op_env,
    op_factory,
    op_task,
    record_of,
    run_op,
)

pytestmark = pytest.mark.integration


def interaction_of(redirect):
    return redirect.split("/interact/")[1].split("/")[0]


def test_grant_rotate_revoke_then_nothing(runner, op, store):
    grant_rotate_revoke(runner, op, store)


def test_strict_server(runner, op_factory, file_store):
    """RFC 9635 behaviour (openpayments.md 2.3, 2.9): fresh `created`, digest with every body, the managed token in Authorization."""
    op = op_factory(strict=True)
    grant_rotate_revoke(runner, op, file_store)
    pending = run_op(runner, op, file_store, id="payout", access=op.outgoing)
    ref = op.sim.approve(interaction_of(pending["redirect"]))["interact_ref"]
    assert run_op(runner, op, file_store, id="payout", access=op.outgoing, interact_ref=ref)["action"] == "created"
    assert run_op(runner, op, file_store, id="payout", state="absent", scope="grant")["action"] == "revoked"
    assert not op.sim.rejections, op.sim.rejections


def grant_rotate_revoke(runner, op, store):
    opts = dict(id="app", access=op.incoming, verify_url=op.rs)
    result = run_op(runner, op, store, **opts)
    assert result["action"] == "created" and result["changed"] and result["verified"] == "authorized", result
    first = record_of(store, op)
    assert op.sim.token_works(first["secret"]) and "pending" not in first and "secret" not in result
    assert first["fingerprint"] == result["fingerprint"] and first["token_id"] == result["token_id"]
    assert first["manage"].endswith("/token/" + result["token_id"]) and first["grant"]["continue_token"] in op.sim.issued
    assert_idempotent(runner, op, store, **opts)

    # Due (rotate_before longer than the 600 s life): rotation; the old token and manage URL die at once.
    result = run_op(runner, op, store, rotate_before="700s", **opts)
    second = record_of(store, op)
    assert result["action"] == "rotated" and "rotate_before" in result["msg"], result
    assert op.sim.token_works(second["secret"]) and not op.sim.token_works(first["secret"])
    assert second["manage"] != first["manage"] and second["rotation_count"] == 1
    assert op.sim.count("POST", "/auth/token/" + first["token_id"]) == 1

    result = run_op(runner, op, store, id="app", state="absent")
    assert result["action"] == "revoked" and result["changed"], result
    assert not op.sim.token_works(second["secret"])
    kept = record_of(store, op)
    assert "secret" not in kept and kept["grant"]["continue_uri"]      # the grant stays, for a later cancel
    assert_idempotent(runner, op, store, id="app", state="absent")
    # A later present replaces the token with a new grant and cancels the old grant.
    result = run_op(runner, op, store, **opts)
    assert result["action"] == "created" and result["cancelled_grant"], result
    assert op.sim.grant_of(kept["grant"]["continue_uri"])["finalization"] == "revoked"


def test_interactive_grant_with_finish_redirect(runner, op, store):
    opts = dict(id="payout", access=op.outgoing, finish_uri="https://client.example/return")
    result = run_op(runner, op, store, **opts)
    assert result["action"] == "needs_interaction" and result["changed"] and result["grant_status"] == "pending", result
    assert result["redirect"].startswith(op.sim.auth_server + "/interact/") and "fingerprint" not in result or not result["fingerprint"]
    stored = record_of(store, op, "payout")
    assert "secret" not in stored and stored["grant"]["continue_token"] in op.sim.issued
    # Not approved yet, no interact_ref: nothing to do, nothing sent.
    assert_waiting = run_op(runner, op, store, **opts)
    assert assert_waiting["action"] == "needs_interaction" and not assert_waiting["changed"]
    approval = op.sim.approve(interaction_of(result["redirect"]))
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(approval["redirect"]).query)
    # A forged hash is refused before the grant is continued.
    forged = run_op(runner, op, store, interact_ref=query["interact_ref"][0], interact_hash="AAAA", **opts)
    assert forged["failed"] and "interact_hash does not match" in forged["msg"], forged
    result = run_op(runner, op, store, interact_ref=query["interact_ref"][0], interact_hash=query["hash"][0], **opts)
    assert result["action"] == "created" and result["grant_status"] == "issued" and result["interactive"] is True, result
    assert op.sim.token_works(record_of(store, op, "payout")["secret"])
    assert result["access"][0]["limits"]["debitAmount"]["value"] == "500"
    assert_idempotent(runner, op, store, **opts)
    # Rotation works the same for an interactive grant; cancel ends it.
    assert run_op(runner, op, store, state="rotated", **opts)["action"] == "rotated"
    token = record_of(store, op, "payout")["secret"]
    result = run_op(runner, op, store, id="payout", state="absent", scope="grant")
    assert result["action"] == "revoked" and result["changed"] and not op.sim.token_works(token), result
    assert record_of(store, op, "payout") == {}
    assert_idempotent(runner, op, store, id="payout", state="absent", scope="grant")


def test_interactive_grant_by_polling(runner, op_factory, file_store):
    op = op_factory(wait=1)
    opts = dict(id="payout", access=op.outgoing, poll_timeout="3s")
    result = run_op(runner, op, file_store, **opts)
    assert result["action"] == "needs_interaction", result
    op.sim.approve(interaction_of(result["redirect"]))
    result = run_op(runner, op, file_store, **opts)
    assert result["action"] == "created" and op.sim.token_works(record_of(file_store, op, "payout")["secret"]), result


def test_revoked_outside_is_reported_and_then_nothing_changes(runner, op, file_store):
    run_op(runner, op, file_store, id="app", access=op.incoming)
    record = record_of(file_store, op)
    with op.sim.lock:
        op.sim.tokens[record["token_id"]]["revoked_at"] = op.sim.clock.now()
    result = run_op(runner, op, file_store, id="app", state="absent")
    assert result["action"] == "revoked" and result["revoked_on_server"] is False and "already" in result["msg"], result
    assert op.sim.count("DELETE", "/auth/token/") == 1
    again = run_op(runner, op, file_store, id="app", state="absent")
    assert again["changed"] is False and again["action"] == "none", again
    assert op.sim.count("DELETE", "/auth/token/") == 1


def test_dead_token_found_by_verify_url_is_replaced(runner, op, file_store):
    opts = dict(id="app", access=op.incoming, verify_url=op.rs)
    run_op(runner, op, file_store, **opts)
    old = record_of(file_store, op)
    with op.sim.lock:                                   # someone cancels the grant outside the collection
        grant = op.sim.grant_of(old["grant"]["continue_uri"])
        op.sim.grants[grant["id"]]["finalization"] = "revoked"
    result = run_op(runner, op, file_store, **opts)
    assert result["action"] == "recovered" and "no longer knows" in result["msg"], result
    assert op.sim.token_works(record_of(file_store, op)["secret"])


def test_changed_access_gets_a_new_grant(runner, op, file_store):
    run_op(runner, op, file_store, id="app", access=op.incoming)
    old = record_of(file_store, op)
    result = run_op(runner, op, file_store, id="app", access=op.incoming[:1])
    assert result["action"] == "updated" and result["access"] == op.incoming[:1], result
    assert not op.sim.token_works(old["secret"]) and op.sim.grant_of(old["grant"]["continue_uri"])["finalization"] == "revoked"


def test_check_mode_predicts_and_sends_nothing(runner, op, store):
    opts = dict(id="app", access=op.incoming)
    predicted = run_op(runner, op, store, check=True, diff=True, **opts)
    assert predicted["action"] == "created" and predicted["changed"] is True, predicted
    assert op.sim.count() == 0 and record_of(store, op) == {}
    run_op(runner, op, store, **opts)
    for options, expected in ((dict(state="rotated", **opts), "rotated"), (dict(id="app", state="absent"), "revoked"),
                              (dict(id="app", state="absent", scope="grant"), "revoked"), (opts, "none")):
        writes = store.writes()
        op.sim.reset_counts()
        predicted = run_op(runner, op, store, check=True, diff=True, **options)
        assert predicted["action"] == expected and predicted["changed"] == (expected != "none"), predicted
        # Nothing goes to the authorization server; the stored token may be checked with the resource server (a GET).
        assert [(r.method, r.path) for r in op.sim.requests if r.method != "GET" or r.path.startswith("/auth/")] == []
        assert store.writes() == writes


@pytest.mark.playbook   # reads what Ansible prints
def test_diff_shows_fingerprints_never_tokens(runner, op, file_store):
    run = runner.run([op_task(op, file_store, id="app", access=op.incoming)], env=op_env(op, file_store), diff=True)
    record = record_of(file_store, op)
    assert "+fingerprint: %s" % record["fingerprint"] in run.stdout and "+token_id: %s" % record["token_id"] in run.stdout
    assert record["secret"] not in run.stdout and record["grant"]["continue_token"] not in run.stdout


def test_many_grants_in_one_task(runner, op, store):
    tokens = [{"id": "shop-%d" % i} for i in range(4)] + [{"id": "quotes", "access": [{"type": "quote", "actions": ["create"]}]}]
    result = run_op(runner, op, store, tokens=tokens, access=op.incoming, concurrency=3)
    assert result["changed"] and [r["action"] for r in result["results"]] == ["created"] * 5, result
    for item in result["results"]:
        assert op.sim.token_works(record_of(store, op, item["id"])["secret"])
    assert result["results"][4]["access"] == [{"type": "quote", "actions": ["create"]}]
    assert_idempotent(runner, op, store, tokens=tokens, access=op.incoming, concurrency=3)


def test_return_secret_only_with_no_log(runner, op, file_store):
    task = op_task(op, file_store, id="app", access=op.incoming, return_secret=True)
    run = runner.run([task], env=op_env(op, file_store))
    assert run.result["failed"] and "no_log" in run.result["msg"] and op.sim.count() == 0
    task["no_log"] = True
    runner.run([task, {"name": "check", "ansible.builtin.assert": {"that": ["r.secret | length == 20"]}}], env=op_env(op, file_store))
    assert op.sim.token_works(record_of(file_store, op)["secret"])


def test_rotation_of_an_expired_token_under_both_server_behaviours(runner, op_factory, file_store):
    """openpayments.md 2.10 q1: Rafiki rotates expired tokens; another server may refuse. Either way a token results."""
    for rotate_expired in (True, False):
        op = op_factory(rotate_expired=rotate_expired)
        run_op(runner, op, file_store, id="app", access=op.incoming)
        op.sim.clock.advance(601)
        result = run_op(runner, op, file_store, id="app", access=op.incoming, state="rotated")
        assert result["action"] == ("rotated" if rotate_expired else "recovered"), result
        assert op.sim.token_works(record_of(file_store, op)["secret"])


def test_info_reports_grants_expiry_and_due(runner, op, file_store):
    run_op(runner, op, file_store, id="app", access=op.incoming)
    run_op(runner, op, file_store, id="payout", access=op.outgoing)
    op.sim.reset_counts()
    writes = file_store.writes()
    info = {"url": op.url, "store": file_store.options, "rotate_before": "700s"}
    run = runner.run([{"name": "info", "tokenops.rotation.openpayments_token_info": info, "register": "r"}])
    grants = {g["id"]: g for g in run.result["grants"]}
    assert set(grants) == {"app", "payout"}, run.result
    assert grants["app"]["due"] is True and grants["app"]["grant_status"] == "issued" and 0 < grants["app"]["seconds_left"] <= 600
    assert grants["app"]["access"] == op.incoming and grants["app"]["fingerprint"].startswith("sha256:")
    assert grants["payout"]["grant_status"] == "pending" and grants["payout"]["redirect"] and grants["payout"]["due"] is False
    assert "secret" not in str(run.result) or all("secret" not in g for g in grants.values())
    assert op.sim.count() == 0 and file_store.writes() == writes
    run = runner.run([{"name": "info", "tokenops.rotation.openpayments_token_info": dict(info, ids=["app"], rotate_before="1m"),
                       "register": "r"}])
    assert [(g["id"], g["due"]) for g in run.result["grants"]] == [("app", False)]
