"""The people who use an Open Payments token the collection keeps: they read it from OpenBao with hvac and use it
with Interledger's own SDK (@interledger/open-payments, responses validated against its OpenAPI files): a resource
call with the stored token, and a rotation with the stored manage URL.

After the collection creates and rotates the token, the new stored token works and the old one is refused; the
stored manage URL is the live one. Under each simulator switch that changes what the SDK sees: strict RFC 9635
signature checks, and whether the wallet address serves a DID document.

A consumer that reads the entry with the tokenops.rotation.token lookup while a run is at any step, or after a run was
killed there, gets a token that works or a refusal that says why; never a dead token.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import wait_for
from consumer_fixtures import bao_store, read_entry  # noqa: F401 pylint: disable=unused-import
from openpayments_fixtures import (  # noqa: F401 pylint: disable=unused-import
    KEY_ID,
    lookup,
    op,
    op_env,
    op_factory,
    op_task,
    record_of,
)

pytestmark = pytest.mark.integration

NODE_DIR = Path(__file__).resolve().parents[1] / "interop" / "node"
NODE = shutil.which("node") or ("/usr/bin/node" if os.path.exists("/usr/bin/node") else None)

needs_sdk = pytest.mark.skipif(
    NODE is None or not (NODE_DIR / "node_modules" / "@interledger" / "open-payments").is_dir(),
    reason="needs node and @interledger/open-payments: run `make interop` (npm ci in tests/interop/node)")


def sdk(op, *steps):
    """Run the steps with the SDK as the collection's client identity; returns one result per step."""
    payload = {"walletAddressUrl": op.client, "privateKeyPem": op.pem, "keyId": KEY_ID, "steps": list(steps)}
    run = subprocess.run([NODE, str(NODE_DIR / "consumer.js")], input=json.dumps(payload), capture_output=True, text=True,
                         timeout=120, check=False, cwd=str(NODE_DIR))
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)["results"]


def list_with(op, token):
    return {"op": "list", "accessToken": token, "resourceServer": op.sim.resource_server, "walletAddress": op.shop}


def create_with(op, token):
    return {"op": "create", "accessToken": token, "resourceServer": op.sim.resource_server, "walletAddress": op.shop}


def run_op(runner, op, store, **options):  # pylint: disable=redefined-outer-name
    run = runner.run([op_task(op, store, **options)], env=op_env(op, store))
    assert run.results, run
    return run.result


@needs_sdk
@pytest.mark.parametrize("switches", [{}, {"strict": True}, {"did_document": "document"}],
                         ids=["defaults", "strict", "did-document"])
def test_the_sdk_uses_and_rotates_the_stored_token(runner, op_factory, bao, bao_store, switches):
    op = op_factory(**switches)
    opts = dict(id="app", access=op.incoming, verify_url=op.rs)
    assert run_op(runner, op, bao_store, **opts)["action"] == "created"
    first = read_entry(bao, bao_store, "openpayments", op.host, "app")
    assert run_op(runner, op, bao_store, rotate_before="700s", **opts)["action"] == "rotated"
    stored = read_entry(bao, bao_store, "openpayments", op.host, "app")
    assert stored["secret"] != first["secret"] and stored["manage"] != first["manage"]

    wallet, old, listed, created, rotated = sdk(op, {"op": "wallet", "url": op.shop}, list_with(op, first["secret"]),
                                                list_with(op, stored["secret"]), create_with(op, stored["secret"]),
                                                {"op": "rotate", "accessToken": stored["secret"], "manage": stored["manage"]})
    assert wallet["ok"] and wallet["resourceServer"] == op.sim.resource_server
    assert (wallet["did"].get("error", {}).get("status") == 500) is (switches.get("did_document") is None)
    assert old == {"ok": False, "status": 401, "code": "invalid_token", "description": "invalid or expired access token",
                   "validationErrors": None}
    assert listed["ok"] and created["ok"], (listed, created)
    assert rotated["ok"] and rotated["manage"] != stored["manage"], rotated
    newest, stale = sdk(op, list_with(op, rotated["value"]), list_with(op, stored["secret"]))
    assert newest["ok"] and stale["status"] == 401
    assert not op.sim.rejections, op.sim.rejections


@needs_sdk
def test_the_stored_token_is_refused_where_its_access_does_not_reach(runner, op_factory, bao, bao_store):
    """A quote-only grant's token: the SDK's resource calls outside its access get 403 from the resource server."""
    op = op_factory()
    quote_only = [{"type": "quote", "actions": ["create", "read"]}]
    assert run_op(runner, op, bao_store, id="quotes", access=quote_only)["action"] == "created"
    token = read_entry(bao, bao_store, "openpayments", op.host, "quotes")["secret"]
    refused_create, refused_list = sdk(op, create_with(op, token), list_with(op, token))
    assert refused_create["status"] == 403 and refused_list["status"] == 403


@needs_sdk
@pytest.mark.parametrize("how", ["rotate", "revoke"])
def test_a_token_rotated_or_revoked_by_another_tool_is_noticed_without_verify_url(runner, op_factory, bao, bao_store, how):
    """Issue 11: without verify_url the module asks the resource server the wallet address advertises, so a token another tool
    rotated or revoked is replaced on the next run, not when it is due. The result says plainly what the cancellation of the
    old grant cut off, and that is what happened: a token the other tool rotated to stops working."""
    op = op_factory()
    opts = dict(id="app", access=op.incoming)
    run_op(runner, op, bao_store, **opts)
    stored = read_entry(bao, bao_store, "openpayments", op.host, "app")
    theirs, = sdk(op, {"op": how, "accessToken": stored["secret"], "manage": stored["manage"]})
    assert theirs["ok"], theirs
    result = run_op(runner, op, bao_store, **opts)
    assert result["action"] == "recovered" and result["lost_token_id"] == stored["token_id"], result
    assert "refused by the resource server (HTTP 401" in result["msg"] and result["cancelled_grant"], result
    assert "still live" in result["cut_off"] and "another tool" in result["cut_off"] and result["cut_off"] in result["msg"]
    healed = read_entry(bao, bao_store, "openpayments", op.host, "app")
    checks = [list_with(op, healed["secret"])] + ([list_with(op, theirs["value"])] if how == "rotate" else [])
    answers = sdk(op, *checks)
    assert answers[0]["ok"], answers
    if how == "rotate":
        assert answers[1]["status"] == 401, answers      # cut off, as the result said
    assert run_op(runner, op, bao_store, **opts)["action"] == "none"


# ---- the token lookup while a run is at each step, and after the run was killed there ------------------------------

FINISH = "https://client.example/return"


def interaction_of(redirect):
    return redirect.split("/interact/")[1].split("/")[0]


def setup_for(runner, op, store, step):
    """Bring the grant to where a run of `step` starts; returns (the run's options, the request to hold)."""
    opts = dict(id="app", access=op.incoming)
    if step == "continuing":
        opts = dict(id="app", access=op.outgoing, finish_uri=FINISH)
        pending = run_op(runner, op, store, **opts)
        ref = op.sim.approve(interaction_of(pending["redirect"]))["interact_ref"]
        return dict(opts, interact_ref=ref), ("POST", r"^/auth/continue/")
    if step == "granting-first":
        return opts, ("POST", r"^/auth/op$")
    run_op(runner, op, store, **opts)
    record = record_of(store, op)
    if step == "granting-replacing":
        return dict(opts, access=op.incoming[:1]), ("POST", r"^/auth/op$")
    if step == "cancelling_previous":
        return dict(opts, access=op.incoming[:1]), ("DELETE", r"^/auth/continue/%s$" % record["grant"]["continue_uri"].rsplit("/", 1)[1])
    if step == "rotating":
        return dict(opts, state="rotated"), ("POST", r"^/auth/token/")
    if step == "revoking":
        return dict(id="app", state="absent"), ("DELETE", r"^/auth/token/")
    if step == "cancelling":
        return dict(id="app", state="absent", scope="grant"), ("DELETE", r"^/auth/continue/")
    raise AssertionError(step)


def assert_works_or_refuses(op, seen, what):
    if seen[0] == "token":
        assert op.sim.token_works(seen[1]), "%s: the lookup handed out a dead token" % what
    else:
        assert "may no longer work" in seen[1] or "has no secret" in seen[1], (what, seen[1])


@pytest.mark.parametrize("step", ["granting-first", "granting-replacing", "continuing", "rotating", "cancelling_previous",
                                  "revoking", "cancelling"])
def test_the_lookup_gives_a_working_token_or_refuses_at_every_step(runner, op, file_store, step):
    options, (method, path) = setup_for(runner, op, file_store, step)
    op.sim.faults.add(method, path, "hang_after_commit", delay=300)
    proc, results = runner.start([op_task(op, file_store, **options)], env=op_env(op, file_store))
    wait_for(op.sim.faults.committed.is_set, what="the authorization server to carry out the held request", timeout=300)
    pending = record_of(file_store, op)["pending"]
    assert pending["step"] == step.split("-", maxsplit=1)[0], pending
    held = lookup(runner, op, file_store)
    assert_works_or_refuses(op, held, "held at %s" % step)
    runner.crash(proc, results, pending)
    killed = lookup(runner, op, file_store)
    assert_works_or_refuses(op, killed, "killed at %s" % step)
    if step in ("granting-replacing", "cancelling_previous"):
        assert held[0] == killed[0] == "token", (held, killed)     # the stored token works throughout
    if step in ("rotating", "revoking", "cancelling"):
        assert "may no longer work" in held[1] and "step %s" % step in held[1], held
    if step in ("revoking", "cancelling") or step == "continuing":
        return    # a person asked for it to be gone, or a person's consent may be needed again (test_openpayments_stuck)
    healed = run_op(runner, op, file_store, **dict(options, state="present"))
    assert healed["action"] == "recovered" and not healed.get("failed"), healed
    after = lookup(runner, op, file_store)
    assert after[0] == "token" and op.sim.token_works(after[1]), after
