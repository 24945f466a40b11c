"""The people who use a DAS token the collection keeps: they read it from OpenBao with hvac and call DAS with it.

After the collection creates the token, the stored secret works; after it rotates the token, the new stored secret
works and the old one stops (at once, or when the regenerate grace ends). Under each simulator switch that
changes what a consumer sees: the grace after regenerate, and the status of a path outside the token's patterns.
"""

import pytest
import requests

from conftest import das_env, das_task
from consumer_fixtures import bao_store, read_entry  # noqa: F401 pylint: disable=unused-import

pytestmark = pytest.mark.integration

TOKEN = {"id": "reporting", "description": "reports", "allow_path_patterns": ["^/v1/tokens"], "ttl": "24h",
         "role_bindings": [{"role_id": "WorkspaceViewer", "resource_kind": "workspace", "resource_id": "*"}]}


def consume(das, secret, path="/v1/tokens"):
    return requests.get(das.url + path, headers={"Authorization": "Bearer " + secret}, timeout=10).status_code


def run_das(runner, das, store, **options):
    run = runner.run([das_task(das, store, **options)], env=das_env(das, store))
    assert run.results, run
    return run.result


@pytest.mark.parametrize("switches", [{}, {"regenerate_grace_seconds": 30}, {"path_refusal_status": 401}],
                         ids=["defaults", "grace-30s", "path-refusal-401"])
def test_consumers_use_the_stored_token_before_and_after_rotation(runner, das_factory, bao, bao_store, switches):
    das = das_factory(**switches)
    created = run_das(runner, das, bao_store, **TOKEN)
    assert created["action"] == "created", created
    first = read_entry(bao, bao_store, "das", das.host, "reporting")["secret"]
    assert consume(das, first) == 200
    # Outside its patterns the token is refused, with the status DAS gives (undocumented: the switch).
    assert consume(das, first, "/v1/systems/anything") == switches.get("path_refusal_status", 403)

    rotated = run_das(runner, das, bao_store, state="rotated", **TOKEN)
    assert rotated["action"] == "rotated", rotated
    second = read_entry(bao, bao_store, "das", das.host, "reporting")["secret"]
    assert second != first and consume(das, second) == 200
    grace = switches.get("regenerate_grace_seconds", 0)
    if grace:
        assert consume(das, first) == 200              # still inside the grace DAS gives the old secret
        das.sim.clock.advance(grace + 1)
    assert consume(das, first) == 401 and consume(das, second) == 200


@pytest.mark.parametrize("refusal", [403, 401])
def test_verify_tells_a_path_refusal_from_a_dead_secret(runner, das_factory, bao, bao_store, refusal):
    """Where DAS answers 401 for a path outside the token's patterns (path_refusal_status=401, undocumented), the default
    probe GET /v1/tokens/{id} is outside the patterns of most tokens: the module probes the literal start of the token's
    own pattern instead, so a working secret is never called dead, and a dead one still is."""
    das = das_factory(path_refusal_status=refusal)
    opts = dict(id="systems/pay/opa", description="payments OPA", allow_path_patterns=["^/v1/systems/pay/.*"], ttl="24h")
    result = run_das(runner, das, bao_store, **opts)
    assert result["action"] == "created" and not result.get("failed"), result
    assert result["verified"] == "authorized", result        # 404 on /v1/systems/pay/: authenticated and allowed
    assert run_das(runner, das, bao_store, **opts)["action"] == "none"    # the stored secret is not taken for dead
    secret = read_entry(bao, bao_store, "das", das.host, "systems/pay/opa")["secret"]
    # Someone regenerates it with another tool: the stored secret dies.
    answer = requests.put(das.url + "/v1/tokens/systems/pay/opa", headers={"Authorization": "Bearer " + das.admin},
                          json={"description": "payments OPA", "allow_path_patterns": ["^/v1/systems/pay/.*"], "ttl": "24h",
                                "regenerate": True}, timeout=10)
    assert answer.status_code == 200 and not das.sim.secret_works(secret)
    # The probe that finds out runs as often as verify.every says (every run with 0).
    healed = run_das(runner, das, bao_store, verify={"every": "0"}, **opts)
    assert healed["action"] == "rotated" and "no longer authenticates" in healed["msg"], healed
    assert das.sim.secret_works(read_entry(bao, bao_store, "das", das.host, "systems/pay/opa")["secret"])


def test_a_401_on_a_path_the_patterns_give_no_start_of_is_unproven(runner, das_factory, bao_store):
    das = das_factory(path_refusal_status=401)
    result = run_das(runner, das, bao_store, id="odd", description="", allow_path_patterns=[".*/policies/.*"], ttl="24h")
    assert result["action"] == "created" and result["verified"] == "unproven", result


def test_a_run_with_nothing_due_probes_the_secret_only_as_often_as_verify_every(runner, das, bao, bao_store):
    """Nothing due: one request per token (the GET that says it exists and when it expires), no probe, no store write,
    until the secret was last proven longer ago than verify.every; then the probe runs and its time is stored."""
    opts = dict(id="systems/pay/opa", description="payments OPA", allow_path_patterns=["^/v1/systems/pay/.*"], ttl="24h")
    created = run_das(runner, das, bao_store, **opts)
    assert created["action"] == "created" and created["verified_at"], created
    path = "%s/das/%s/systems/pay/opa" % (bao_store.prefix, das.host)
    writes = bao_store.writes()
    das.sim.reset_counts()
    idle = run_das(runner, das, bao_store, **opts)
    assert idle["action"] == "none" and not idle["changed"] and idle["verified_at"] == created["verified_at"], idle
    assert das.sim.count() == 1 and das.sim.count("GET", "/v1/tokens/systems/pay/opa") == 1
    assert bao_store.writes() == writes

    # Eight days later by the store's record: the default (7d) asks for a probe, which passes; its time is stored.
    bao_store.rewrite(path, lambda record: dict(record, verified_at="2000-01-01T00:00:00Z"))
    writes = bao_store.writes()
    das.sim.reset_counts()
    probed = run_das(runner, das, bao_store, **opts)
    assert probed["action"] == "none" and not probed["changed"], probed
    assert das.sim.count() == 2 and das.sim.count(writes_only=True) == 0
    assert probed["verified_at"] > "2000-01-01" and bao_store.read(path)["verified_at"] == probed["verified_at"]
    assert bao_store.writes() != writes
    # With verify.every: 0 every run probes.
    das.sim.reset_counts()
    assert run_das(runner, das, bao_store, verify={"every": "0"}, **opts)["action"] == "none"
    assert das.sim.count() == 2
