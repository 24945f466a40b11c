# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Styra DAS client (plugins/module_utils/das.py): input validation and every call against
the DAS simulator (tests/simulators/das.py)."""

from __future__ import annotations

import pytest

from ansible_collections.tokenops.rotation.plugins.module_utils.das import (
    PRODUCT,
    DasClient,
    binding_key,
    system_of,
    ttl_seconds,
    validate_token_id,
    validate_ttl,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError, HttpClient
from tests.simulators.base import Clock
from tests.simulators.das import DasSimulator

START = 1_800_000_000.0
ADMIN = ("WorkspaceAdministrator", "workspace", "*")
VIEWER = ("WorkspaceViewer", "workspace", "*")
BODY = {"description": "app", "allow_path_patterns": ["v1/data/.*"], "ttl": "24h"}


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


# ---- validation -------------------------------------------------------------------------------

@pytest.mark.parametrize("token_id", ["application-token", "alice/test", "systems/abc123/opa-version", "a.b_c~d-e",
                                      "systems/abc123/x/y"])
def test_validate_token_id_accepts(token_id):
    validate_token_id(token_id)


@pytest.mark.parametrize("token_id", ["", None, "/x", "x/", "a//b", "../x", "x/../y", "..", "systems/x", "systems/x/",
                                      "systems//x", "app token", " app", "app?x=1", "app#frag", "app%2F", 7])
def test_validate_token_id_rejects(token_id):
    with pytest.raises(ValueError):
        validate_token_id(token_id)


@pytest.mark.parametrize("token_id", ["a/./b", ".", "x/.", "systems/./opa"])
def test_validate_token_id_rejects_dot_segments(token_id):
    with pytest.raises(ValueError):
        validate_token_id(token_id)


def test_dot_segment_reaches_another_token(das):
    """Why '.' must be rejected: the request for 'a/./b' is answered with token 'a/b'."""
    sim, client, admin = das
    sim.seed_token("a/b")
    assert client.get_token("a/./b", admin)["id"] == "a/b"
    assert sim.requests[-1].path == "/v1/tokens/a/b"


@pytest.mark.parametrize("ttl", ["24h", "720h", "1h30m", "90m", "1.5h", "45s", "500ms", None])
def test_validate_ttl_accepts(ttl):
    validate_ttl(ttl)


@pytest.mark.parametrize("ttl", ["7d", "24", "h", "", "1h 30m", "-1h", "24H", "1w", "h1"])
def test_validate_ttl_rejects(ttl):
    with pytest.raises(ValueError) as caught:
        validate_ttl(ttl)
    assert "ttl" in str(caught.value)


@pytest.mark.parametrize("ttl, seconds", [("24h", 86400), ("720h", 2592000), ("1h30m", 5400), ("90m", 5400),
                                          ("1.5h", 5400), ("45s", 45), ("500ms", 0.5), ("1m30s", 90), ("2h0m0s", 7200)])
def test_ttl_seconds(ttl, seconds):
    assert ttl_seconds(ttl) == pytest.approx(seconds)


def test_system_of_and_binding_key():
    assert system_of("systems/abc123/opa") == "abc123"
    assert system_of("alice/test") is None
    assert binding_key({"role_id": "R", "resource_filter": {"kind": "workspace", "id": "*"}}) == ("R", "workspace", "*")


# ---- the client against the simulator ---------------------------------------------------------

@pytest.fixture
def make_das():
    started = []

    def make(**switches):
        sim = DasSimulator(clock=Clock(start=START, frozen=True), **switches)
        sim.start()
        http = HttpClient(PRODUCT, sim.base_url, retries=2, timeout=5, sleep=lambda seconds: None)
        started.append((sim, http))
        return sim, DasClient(http), sim.seed_token("admin", roles=[ADMIN])

    yield make
    for sim, http in started:
        http.close()
        sim.stop()


@pytest.fixture
def das(make_das):
    return make_das()


def test_get_token(das):
    sim, client, admin = das
    sim.seed_token("app", ttl="24h", description="the app")
    token = client.get_token("app", admin)
    assert token["id"] == "app"
    assert token["description"] == "the app"
    assert token["ttl"] == "24h"
    assert "token" not in token and sim.token("app")["secret"] not in repr(token)


def test_get_missing_token_is_none(das):
    sim, client, admin = das
    assert client.get_token("nope", admin) is None
    assert sim.count("GET", "/v1/tokens/nope") == 1


def test_get_system_token_keeps_its_slashes(das):
    sim, client, admin = das
    sim.seed_token("systems/abc123/opa-version")
    assert client.get_token("systems/abc123/opa-version", admin)["id"] == "systems/abc123/opa-version"
    assert sim.requests[-1].path == "/v1/tokens/systems/abc123/opa-version"


def test_get_with_a_rejected_bearer_raises(das):
    sim, client, admin = das
    sim.seed_token("app")
    with pytest.raises(ApiError) as caught:
        client.get_token("app", "not-a-real-secret")
    assert caught.value.status == 401
    assert caught.value.code == "unauthorized"
    assert "read token app" in str(caught.value)
    assert "not-a-real-secret" not in str(caught.value)


def test_get_forbidden_raises_not_none(das):
    sim, client, admin = das
    weak = sim.seed_token("weak")
    with pytest.raises(ApiError) as caught:
        client.get_token("admin", weak)
    assert caught.value.status == 403


def test_list_tokens(das):
    sim, client, admin = das
    sim.seed_token("app")
    assert sorted(t["id"] for t in client.list_tokens(admin)) == ["admin", "app"]


def test_put_create_returns_the_secret(das):
    sim, client, admin = das
    secret = client.put_token("app", dict(BODY, regenerate=True), admin, "create token app")
    assert secret and secret in sim.issued
    assert sim.token("app")["secret"] == secret
    assert sim.secret_works(secret)


def test_put_create_without_regenerate_returns_the_secret(das):
    sim, client, admin = das
    secret = client.put_token("app", dict(BODY, regenerate=False), admin, "create token app")
    assert secret == sim.token("app")["secret"]


def test_put_regenerate_returns_a_new_secret(das):
    sim, client, admin = das
    old = sim.seed_token("app", ttl="24h")
    new = client.put_token("app", dict(BODY, regenerate=True), admin, "regenerate token app")
    assert new and new != old
    assert sim.token("app")["secret"] == new
    assert sim.secret_works(new) and not sim.secret_works(old)


@pytest.mark.parametrize("update_result", ["omit", "empty"])
def test_put_update_without_regenerate_returns_none(make_das, update_result):
    sim, client, admin = make_das(update_result=update_result)
    old = sim.seed_token("app", ttl="24h")
    assert client.put_token("app", dict(BODY, regenerate=False, description="changed"), admin, "update token app") is None
    assert sim.token("app")["description"] == "changed"
    assert sim.token("app")["secret"] == old


def test_put_regenerate_is_never_sent_twice(das):
    sim, client, admin = das
    sim.seed_token("app")
    sim.faults.add("PUT", r"^/v1/tokens/app$", "status", times=1, status=503)
    with pytest.raises(ApiError) as caught:
        client.put_token("app", dict(BODY, regenerate=True), admin, "regenerate token app")
    assert caught.value.status == 503
    assert sim.count("PUT", "/v1/tokens/app") == 1


def test_put_regenerate_lost_answer_is_unknown_outcome(das):
    sim, client, admin = das
    sim.seed_token("app")
    sim.faults.add("PUT", r"^/v1/tokens/app$", "drop_after_commit", times=1)
    with pytest.raises(ApiError) as caught:
        client.put_token("app", dict(BODY, regenerate=True), admin, "regenerate token app")
    assert caught.value.outcome_unknown is True
    assert sim.count("PUT", "/v1/tokens/app") == 1


def test_put_create_without_regenerate_is_not_repeated_after_a_lost_answer(das):
    sim, client, admin = das
    sim.faults.add("PUT", r"^/v1/tokens/app$", "drop_after_commit", times=1)
    try:
        secret = client.put_token("app", dict(BODY, regenerate=False), admin, "create token app")
    except ApiError as exc:
        assert exc.outcome_unknown is True
    else:
        assert secret == sim.token("app")["secret"]
    assert sim.count("PUT", "/v1/tokens/app") == 1


def test_put_update_is_retried(das):
    sim, client, admin = das
    sim.seed_token("app")
    sim.faults.add("PUT", r"^/v1/tokens/app$", "status", times=1, status=503)
    assert client.put_token("app", dict(BODY, regenerate=False), admin, "update token app", update=True) is None
    assert sim.count("PUT", "/v1/tokens/app") == 2


def test_put_error_names_the_step(das):
    sim, client, admin = das
    with pytest.raises(ApiError) as caught:
        client.put_token("app", dict(BODY, regenerate=True, ttl="7d"), admin, "create token app")
    assert caught.value.status == 400
    assert caught.value.step == "create token app"
    assert caught.value.code == "bad_request"


def test_delete_token(das):
    sim, client, admin = das
    sim.seed_token("app")
    assert client.delete_token("app", admin) is True
    assert sim.token("app") is None


def test_delete_missing_token_is_false_on_404(make_das):
    sim, client, admin = make_das(delete_missing_status=404)
    assert client.delete_token("nope", admin) is False


def test_delete_missing_token_does_not_raise_on_200(make_das):
    sim, client, admin = make_das(delete_missing_status=200)
    assert client.delete_token("nope", admin) in (True, False)
    assert sim.count("DELETE", "/v1/tokens/nope") == 1


def test_delete_forbidden_raises(das):
    sim, client, admin = das
    weak = sim.seed_token("weak")
    with pytest.raises(ApiError) as caught:
        client.delete_token("admin", weak)
    assert caught.value.status == 403
    assert sim.token("admin") is not None


def test_delete_is_retried_on_a_dropped_connection(das):
    sim, client, admin = das
    sim.seed_token("app")
    sim.faults.add("DELETE", r"^/v1/tokens/app$", "drop_after_commit", times=1)
    # the first DELETE removed it; the repeat finds it gone
    assert client.delete_token("app", admin) is False
    assert sim.token("app") is None
    assert sim.count("DELETE", "/v1/tokens/app") == 2


# ---- role bindings ----------------------------------------------------------------------------

def _subjects(sim, role_id, kind, resource_id):
    found = [b for b in sim.bindings.values()
             if b["role_id"] == role_id and b["resource_filter"] == {"kind": kind, "id": resource_id}]
    assert len(found) <= 1
    return sorted(s["id"] for s in found[0]["subjects"]) if found else None


def test_add_binding_creates_one(das):
    sim, client, admin = das
    sim.seed_token("app")
    assert client.find_binding(*VIEWER, admin) is None
    client.add_binding("app", *VIEWER, admin)
    assert _subjects(sim, *VIEWER) == ["app"]
    assert sim.count("POST", "/v2/authz/rolebindings") == 1
    assert ("WorkspaceViewer", "workspace", "*") in sim.bindings_for("app")


def test_add_binding_merges_and_keeps_other_subjects(das):
    sim, client, admin = das
    sim.seed_token("other", roles=[VIEWER])
    sim.seed_token("app")
    client.add_binding("app", *VIEWER, admin)
    assert _subjects(sim, *VIEWER) == ["app", "other"]
    assert sim.count("POST") == 0   # no second binding
    assert sim.count("PUT", "/v2/authz/rolebindings/") == 1


def test_add_binding_twice_is_harmless(das):
    sim, client, admin = das
    sim.seed_token("app")
    client.add_binding("app", *VIEWER, admin)
    client.add_binding("app", *VIEWER, admin)
    assert _subjects(sim, *VIEWER) == ["app"]
    assert len(sim.bindings) == 2   # the admin's and this one


def test_add_system_binding(das):
    sim, client, admin = das
    sim.seed_token("systems/abc123/opa")
    client.add_binding("systems/abc123/opa", "SystemOPA", "system", "abc123", admin)
    assert ("SystemOPA", "system", "abc123") in sim.bindings_for("systems/abc123/opa")


def test_bindings_of_lists_only_the_tokens_bindings(das):
    sim, client, admin = das
    sim.seed_token("app", roles=[VIEWER])
    sim.seed_token("other", roles=[("WorkspaceTokenRefresher", "workspace", "*")])
    found = client.bindings_of("app", admin)
    assert [binding_key(b) for b in found] == [VIEWER]


def test_remove_binding_of_its_only_subject_deletes_it(das):
    sim, client, admin = das
    sim.seed_token("app", roles=[VIEWER])
    (binding,) = client.bindings_of("app", admin)
    client.remove_binding("app", binding, admin)
    assert binding["id"] not in sim.bindings
    assert sim.bindings_for("app") == []


def test_remove_binding_with_other_subjects_removes_only_this_one(das):
    sim, client, admin = das
    sim.seed_token("app", roles=[VIEWER])
    sim.seed_token("other", roles=[VIEWER])
    (binding,) = client.bindings_of("app", admin)
    client.remove_binding("app", binding, admin)
    assert binding["id"] in sim.bindings
    assert _subjects(sim, *VIEWER) == ["other"]
    assert sim.bindings_for("other") == [VIEWER]


# ---- probe ------------------------------------------------------------------------------------

def test_probe_statuses(das):
    sim, client, admin = das
    weak = sim.seed_token("weak")
    assert client.probe("/v1/tokens", admin) == 200
    assert client.probe("/v1/tokens", "no-such-secret-0000") == 401
    assert client.probe("/v1/tokens", weak) == 403
    assert client.probe("/v1/tokens/missing", admin) == 404


def test_probe_does_not_swallow_other_errors(das):
    sim, client, admin = das
    sim.faults.add("GET", r"^/v1/tokens$", "status", times=None, status=500)
    with pytest.raises(ApiError) as caught:
        client.probe("/v1/tokens", admin)
    assert caught.value.status == 500
    assert caught.value.step == "verify"


def test_probe_of_a_regenerated_secret(das):
    sim, client, admin = das
    old = sim.seed_token("app", roles=[VIEWER])
    new = client.put_token("app", dict(BODY, regenerate=True), admin, "regenerate token app")
    # Inside the token's patterns: authenticated, and the path has no route (404); the old secret is dead (401).
    assert client.probe("/v1/data/x", new) == 404
    assert client.probe("/v1/data/x", old) == 401
    assert client.probe("/v1/tokens", new) == 403          # outside its patterns: refused
