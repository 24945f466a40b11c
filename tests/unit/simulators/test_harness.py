"""The shared simulator harness (tests/simulators/base.py), as every product's clients meet it.

Routes match the whole decoded path (a trailing newline is part of it, never dropped), and any method the harness does not
route, or a request http.server itself refuses, gets the product's own JSON error body, never an HTML page.
"""

from __future__ import annotations

import socket

import pytest

from tests.fixtures.simulators import clock, http, start_simulator  # noqa: F401  # pylint: disable=unused-import
from tests.simulators.das import DasSimulator
from tests.simulators.dpa import DpaSimulator
from tests.simulators.openpayments import OpenPaymentsSimulator
from tests.simulators.secretserver import SecretServerSimulator

ADMIN = ("WorkspaceAdministrator", "workspace", "*")


@pytest.fixture
def das(start_simulator):
    sim = start_simulator(DasSimulator)
    return sim, sim.seed_token("admin", roles=[ADMIN])


def raw_request(sim, request: bytes) -> tuple[int, dict, bytes]:
    """Send bytes as they are (no client normalises them); returns (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as conn:
        conn.sendall(request)
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _sep, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _s, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_a_percent_encoded_newline_does_not_reach_the_token_without_it(das, http):
    """`abc%0A` is the token `abc\n` (the whole rest of the path is the id, das.md 1.2), never `abc`."""
    sim, admin = das
    body = {"description": "app", "allow_path_patterns": [], "regenerate": False, "ttl": "24h"}
    assert http.put(sim.base_url + "/v1/tokens/abc", json=body, headers={"Authorization": "Bearer " + admin}, timeout=5).status_code == 200
    secret = sim.token("abc")["secret"]
    response = http.put(sim.base_url + "/v1/tokens/abc%0A", json={**body, "regenerate": True},
                        headers={"Authorization": "Bearer " + admin}, timeout=5)
    assert response.status_code == 200, response.text
    assert sim.token("abc")["secret"] == secret and sim.token("abc\n")["secret"] == response.json()["result"]


@pytest.mark.parametrize("token_id", ["a%0Ab", "systems/s1/a%0Ab", "%0Aa", "a%0A%0A"])
def test_a_token_id_with_a_newline_routes_to_the_token(das, http, token_id):
    """Not "no route": GET answers the documented 404 of a missing token, PUT creates it, GET then finds it."""
    sim, admin = das
    auth = {"Authorization": "Bearer " + admin}
    missing = http.get(sim.base_url + "/v1/tokens/" + token_id, headers=auth, timeout=5)
    assert missing.status_code == 404 and "not found" in missing.json()["message"] and "no route" not in missing.json()["message"]
    body = {"description": "app", "allow_path_patterns": ["^/v1/data/.*"], "regenerate": False, "ttl": "24h"}
    assert http.put(sim.base_url + "/v1/tokens/" + token_id, json=body, headers=auth, timeout=5).status_code == 200
    found = http.get(sim.base_url + "/v1/tokens/" + token_id, headers=auth, timeout=5)
    assert found.status_code == 200 and found.json()["result"]["id"] == token_id.replace("%0A", "\n")
    assert http.delete(sim.base_url + "/v1/tokens/" + token_id, headers=auth, timeout=5).status_code == 200


@pytest.mark.parametrize("binding_id", ["b1", "group/b1"])
def test_a_bindings_subjects_resource_allows_only_its_own_methods(das, http, binding_id):
    """OPTIONS and GET on /v2/authz/rolebindings/{id}/subjects: 405 with POST, PUT and DELETE, not the binding's GET."""
    sim, admin = das
    auth = {"Authorization": "Bearer " + admin}
    for method in ("OPTIONS", "GET"):
        response = http.request(method, "%s/v2/authz/rolebindings/%s/subjects" % (sim.base_url, binding_id), headers=auth, timeout=5)
        assert response.status_code == 405, response.text
        assert sorted(response.headers["Allow"].split(", ")) == ["DELETE", "POST", "PUT"]
    binding = http.request("OPTIONS", "%s/v2/authz/rolebindings/%s" % (sim.base_url, binding_id), headers=auth, timeout=5)
    assert binding.status_code == 405 and sorted(binding.headers["Allow"].split(", ")) == ["DELETE", "GET"]


def test_a_lone_newline_is_not_the_token_list(das, http):
    sim, admin = das
    response = http.get(sim.base_url + "/v1/tokens/%0A", headers={"Authorization": "Bearer " + admin}, timeout=5)
    assert response.status_code == 404 and "result" not in response.json()


@pytest.mark.parametrize("method", ["TRACE", "OPTIONS", "PROPFIND"])
def test_undeclared_methods_get_the_products_json_error(das, http, method):
    sim, admin = das
    response = http.request(method, sim.base_url + "/v1/tokens", headers={"Authorization": "Bearer " + admin}, timeout=5)
    assert response.status_code == 405
    assert response.headers["Content-Type"] == "application/json"
    assert set(response.json()) == {"code", "message", "request_id"}     # meta.v1.ErrorResponse
    assert "GET" in response.headers["Allow"]
    unknown = http.request(method, sim.base_url + "/nowhere", timeout=5)
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"


@pytest.mark.parametrize("cls, kwargs, path, key", [
    (SecretServerSimulator, {}, "/SecretServer/api/v1/healthcheck", "message"),
    (OpenPaymentsSimulator, {}, "/auth/token/x", "error"),
    (DpaSimulator, {}, "/iwc/api/security/oauth/token", None),
])
def test_every_simulator_answers_trace_in_json(start_simulator, http, cls, kwargs, path, key):
    sim = start_simulator(cls, **kwargs)
    response = http.request("TRACE", sim.base_url + path, timeout=5)
    assert response.status_code == 405 and response.headers["Content-Type"] == "application/json"
    assert key is None or key in response.json()


def test_a_malformed_request_gets_json_too(das):
    sim, _admin = das
    status, headers, body = raw_request(sim, b"GET /v1/tokens HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n")
    assert status == 431 and headers["content-type"] == "application/json" and b"<html" not in body.lower()
