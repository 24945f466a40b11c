"""The demo's products as `make demo` sets them up (hacking/demo_products), run by the modules against their simulators.

The README says the demo rotates "the Open Payments tokens the resource server refuses": so the resource server must
be able to judge the demo's tokens (a verify_url it answers), not leave them to their expiry.
"""

import argparse
import sys
import time

import pytest

import conftest
from conftest import REPO
from tests.simulators.__main__ import PRODUCTS
from tests.simulators.base import Clock

sys.path.insert(0, str(REPO / "hacking"))
from demo_products import openpayments as demo_openpayments  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = pytest.mark.integration

UNJUDGED = "could not say whether the token works"


@pytest.fixture
def demo_op(tmp_path):
    """The Open Payments simulator and its demo client, as hacking/demo.py starts them."""
    spec = PRODUCTS[demo_openpayments.PRODUCT]
    args = argparse.Namespace(tls=True, state_file=None, tls_dir=str(tmp_path / "op-tls"))
    sim = spec.build(args, dict(demo_openpayments.SWITCHES, clock=Clock(start=time.time() - demo_openpayments.ADVANCE)))
    url = sim.start()
    info = {"product": demo_openpayments.PRODUCT, "url": url, "base_url": sim.base_url, "ca_path": sim.ca_path}
    info.update(spec.bootstrap(sim))
    try:
        yield sim, info
    finally:
        conftest.CANARIES.update(sim.issued)
        sim.stop()


def demo_task(info, store):
    host = demo_openpayments.host_vars(info, dict(store.options))
    args = {"url": host["openpayments_url"], "ca_path": host["openpayments_ca_path"],
            "client_wallet_address": host["openpayments_client_wallet_address"], "key_id": host["openpayments_key_id"],
            "store": host["openpayments_store"], "rotate_before": host["openpayments_rotate_before"], "tokens": host["openpayments_tokens"]}
    return [{"name": "demo grants", "tokenops.rotation.openpayments_token": args, "register": "r", "ignore_errors": True}]


def probes(sim):
    """(status) of each resource-server GET the modules made to judge a token."""
    return [r.status for r in sim.requests if r.method == "GET" and r.path.startswith("/rs/")]


def test_the_demos_open_payments_tokens_are_judged_by_the_resource_server(runner, demo_op, file_store):
    sim, info = demo_op
    env = demo_openpayments.environment(info)
    tasks = demo_task(info, file_store)
    first = runner.run(tasks, env=env)
    results = {r["id"]: r for r in first.result["results"]}
    assert {i: r["action"] for i, r in results.items()} == {"invoicing": "created", "quotes": "created",
                                                            "monthly-payout": "needs_interaction"}, results
    # Each new token was verified at the resource server (quotes may not list incoming payments: 403, it authenticates).
    assert results["invoicing"]["verified"] == "authorized" and results["quotes"]["verified"] == "authenticated", results
    assert not [w for w in first.result.get("warnings", []) if UNJUDGED in w], first.result["warnings"]

    # A run with nothing due asks the resource server about each stored token, and gets an answer.
    sim.reset_counts()
    second = runner.run(tasks, env=env)
    assert {r["id"]: r["action"] for r in second.result["results"]} == {"invoicing": "none", "quotes": "none",
                                                                        "monthly-payout": "needs_interaction"}
    assert not [w for w in second.result.get("warnings", []) if UNJUDGED in w], second.result["warnings"]
    assert sorted(probes(sim)) == [200, 403], probes(sim)

    # A token the resource server refuses (revoked by another tool) is replaced on the next run.
    with sim.lock:
        sim.token_by_value(file_store.entry("openpayments", normalize(info), "invoicing")["secret"])["revoked_at"] = sim.clock.now()
    third = runner.run(tasks, env=env)
    invoicing = [r for r in third.result["results"] if r["id"] == "invoicing"][0]
    # (A revoked token means a new grant: reported as recovered, with why.)
    assert invoicing["action"] == "recovered" and "refused by the resource server (HTTP 401" in invoicing["msg"], invoicing
    assert sim.token_works(file_store.entry("openpayments", normalize(info), "invoicing")["secret"])


def normalize(info):
    from ansible_collections.tokenops.rotation.plugins.module_utils.store import normalize_host
    return normalize_host(info["url"])
