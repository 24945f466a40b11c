"""The module under every setting of the DAS simulator's switches (das.md 1.9: what DAS leaves open).

One playbook walks a token's whole life (create, nothing due, field update, rotate, overlap with
revocation, refresher rotation, absent twice) and must end the same way whatever DAS does where
its documentation is silent.
"""

import pytest

from conftest import das_env, das_task

pytestmark = pytest.mark.integration

SETTINGS = [
    {},
    {"partial_put": "reset"},
    {"regenerate_grace_seconds": 30},
    {"list_expired": False},
    {"ttl_echo": "normalized"},
    {"refresher_can_get": True},
    {"delete_missing_status": 200},
    {"update_result": "empty"},
    {"max_ttl_seconds": 90 * 86400},
    {"ttl_update_resets_expires": True},
    {"error_codes": {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS"}},
]

APP = {"description": "app", "allow_path_patterns": ["^/v1/data/.*"], "ttl": "24h"}
BIND = [{"role_id": "WorkspaceViewer", "resource_kind": "workspace", "resource_id": "*"}]
EXPECTED = ["created", "none", "updated", "rotated", "created", "rotated", "rotated", "revoked", "none", "revoked"]


@pytest.mark.parametrize("switches", SETTINGS, ids=lambda s: ",".join("%s=%s" % (k, v if k != "error_codes" else "alt")
                                                                      for k, v in s.items()) or "documented-defaults")
def test_token_life_under_each_setting(runner, das_factory, file_store, switches):
    das = das_factory(**switches)
    refresher_secret = das.sim.seed_token("token-refresher", roles=[("WorkspaceTokenRefresher", "workspace", "*")])
    refresher = {"id": "token-refresher", "initial_secret": refresher_secret}
    overlap = dict(APP, strategy="overlap", grace_period="0s")
    tasks = [
        das_task(das, file_store, id="app", role_bindings=BIND, **APP),
        das_task(das, file_store, id="app", role_bindings=BIND, **APP),
        das_task(das, file_store, id="app", role_bindings=BIND, **dict(APP, description="changed")),
        das_task(das, file_store, id="app", role_bindings=BIND, state="rotated", **dict(APP, description="changed")),
        das_task(das, file_store, id="ov", **overlap),
        das_task(das, file_store, id="ov", state="rotated", **overlap),
        das_task(das, file_store, id="app", refresher=refresher, state="rotated", **dict(APP, description="changed")),
        das_task(das, file_store, id="app", state="absent"),
        das_task(das, file_store, id="app", state="absent"),
        das_task(das, file_store, id="ov", state="absent"),
    ]
    # The refresher step cannot carry role_bindings (a refresher cannot manage them); it runs without api_token.
    tasks[6]["environment"] = {"STYRA_DAS_TOKEN": ""}
    run = runner.run(tasks, env=das_env(das, file_store))
    results = [r for r in run.results if r["_task"] == "das_token"]
    assert [r.get("action") for r in results] == EXPECTED, [(r.get("action"), r.get("msg")) for r in results]
    assert not any(r["failed"] for r in results), [r.get("msg") for r in results if r["failed"]]
    assert results[5]["token_id"] == "ov-b" and results[5]["revoked_token_id"] == "ov"
    assert results[6]["refresher"]["action"] == "created"
    assert results[2]["changed"] and results[3]["fingerprint"] != results[1]["fingerprint"]
    assert das.sim.token("app") is None and das.sim.token("ov") is None and das.sim.token("ov-b") is None
    assert file_store.entry("das", das.host, "app") is None and file_store.entry("das", das.host, "ov") is None


@pytest.mark.parametrize("partial_put", ["keep", "reset"])
def test_rotation_keeps_the_path_patterns_whatever_das_does_with_omitted_fields(runner, das_factory, file_store, partial_put):
    """The module always sends the full body, so a DAS that resets omitted fields never widens a token to every path."""
    das = das_factory(partial_put=partial_put)
    refresher_secret = das.sim.seed_token("token-refresher", roles=[("WorkspaceTokenRefresher", "workspace", "*")])
    runner.run([das_task(das, file_store, id="app", **APP)], env=das_env(das, file_store))
    run = runner.run([das_task(das, file_store, id="app", state="rotated", refresher={"id": "token-refresher", "initial_secret": refresher_secret},
                               **APP)], env=das_env(das, file_store, admin=False))
    assert run.result["action"] == "rotated", run.result
    token = das.sim.token("app")
    assert token["allow_path_patterns"] == APP["allow_path_patterns"] and token["description"] == APP["description"]
