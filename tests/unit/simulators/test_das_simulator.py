"""Fidelity and behaviour of the Styra DAS simulator (tests/simulators/das.py).

The simulator is tuned to ../shared/api/das.md and the vendor OpenAPI file; these tests check both: every
response shape against the spec, and the documented semantics (das.md 1.4-1.8) plus one test per switch
for the behaviours the documentation leaves open (das.md 1.9).
"""

from __future__ import annotations

import functools
import copy
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.fixtures.simulators import clock, http, start_simulator  # noqa: F401  # pylint: disable=unused-import
from tests.simulators.base import Clock
from tests.simulators.das import DasSimulator, format_go_duration, parse_go_duration

REPO_ROOT = Path(__file__).resolve().parents[3]
SPEC_PATH = REPO_ROOT.parent / "shared/api/specs/das-openapi.yaml"
SPEC_URI = "urn:styra:das-openapi"
START = 1_800_000_000.0   # 2027-01-15T08:00:00Z
ADMIN = ("WorkspaceAdministrator", "workspace", "*")
VIEWER = ("WorkspaceViewer", "workspace", "*")
REFRESHER = ("WorkspaceTokenRefresher", "workspace", "*")
FULL_BODY = {"description": "app", "allow_path_patterns": ["v1/data/.*"], "regenerate": False, "ttl": "24h"}


# ---- fixtures -------------------------------------------------------------------------------

@pytest.fixture
def make_sim(start_simulator):
    return functools.partial(start_simulator, DasSimulator)


@pytest.fixture
def sim(make_sim):
    return make_sim()


@pytest.fixture
def admin(sim):
    return sim.seed_token("admin", roles=[ADMIN])


class Client:
    """A thin caller: `das.put("/v1/tokens/x", secret, json=...)` returns the requests.Response."""

    def __init__(self, sim, http):
        self.sim, self.http = sim, http

    def call(self, method, path, secret=None, headers=None, **kwargs):
        headers = dict(headers or {})
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret}"
        kwargs.setdefault("timeout", 5)
        if self.sim.tls:
            kwargs.setdefault("verify", self.sim.ca_path)
        return self.http.request(method, self.sim.base_url + path, headers=headers, **kwargs)

    def get(self, path, secret=None, **kwargs):
        return self.call("GET", path, secret, **kwargs)

    def put(self, path, secret=None, **kwargs):
        return self.call("PUT", path, secret, **kwargs)

    def post(self, path, secret=None, **kwargs):
        return self.call("POST", path, secret, **kwargs)

    def delete(self, path, secret=None, **kwargs):
        return self.call("DELETE", path, secret, **kwargs)


@pytest.fixture
def das(sim, http):
    return Client(sim, http)


def client_for(sim, http):
    return Client(sim, http)


# ---- OpenAPI checker ------------------------------------------------------------------------

class SpecChecker:
    """Validates a response body against the spec's schema for (operation, status).

    Schemas are resolved from `paths[template][method].responses[status]` with a referencing registry on the
    whole spec. Object schemas are made strict (additionalProperties: false where the spec leaves it open) so a
    misspelt or invented key fails too. Statuses an operation does not declare (401, 403, the 400 of a token
    PUT, ...) are checked against meta.v1.ErrorResponse, the product's documented error body.
    """

    def __init__(self, spec: dict):
        from jsonschema import FormatChecker
        from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT4

        self.spec = spec
        strict = self._strict_copy(spec)
        self.registry = Registry().with_resource(SPEC_URI, Resource.from_contents(strict, default_specification=DRAFT4))
        self.loose_registry = Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT4))
        self.format_checker = FormatChecker()   # jsonschema's, with date-time (rfc3339-validator) ...
        self.format_checker.checkers.update(oas30_format_checker.checkers)   # ... plus int64 and friends
        self.validator_cls = OAS30ReadValidator
        self.checked: set[tuple[str, str, int]] = set()

    @staticmethod
    def _strict_copy(spec: dict) -> dict:
        spec = copy.deepcopy(spec)
        schemas = spec["components"]["schemas"]
        # Schemas composed with allOf/oneOf/anyOf cannot be strict branch by branch; leave those alone.
        composed = set()
        for schema in schemas.values():
            for key in ("allOf", "oneOf", "anyOf"):
                for branch in schema.get(key, []):
                    if "$ref" in branch:
                        composed.add(branch["$ref"].rsplit("/", 1)[-1])

        def tighten(schema):
            if not isinstance(schema, dict) or any(k in schema for k in ("allOf", "oneOf", "anyOf")):
                return
            if "properties" in schema and "additionalProperties" not in schema:
                schema["additionalProperties"] = False
            for sub in schema.get("properties", {}).values():
                tighten(sub)
            tighten(schema.get("items"))
            if isinstance(schema.get("additionalProperties"), dict):
                tighten(schema["additionalProperties"])

        for name, schema in schemas.items():
            if name not in composed:
                tighten(schema)
        return spec

    def schema_ref(self, method: str, template: str, status: int) -> str:
        operation = self.spec["paths"][template][method.lower()]
        response = operation["responses"].get(str(status))
        if response is None:
            assert status >= 400, f"{method} {template} answered {status}, which the spec does not declare"
            return "#/components/schemas/meta.v1.ErrorResponse"
        schema = response["content"]["application/json"]["schema"]
        return schema["$ref"]

    def errors(self, body, ref: str, strict: bool = True) -> list[str]:
        registry = self.registry if strict else self.loose_registry
        validator = self.validator_cls({"$ref": SPEC_URI + ref}, registry=registry, format_checker=self.format_checker)
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]

    def check(self, response: requests.Response, method: str, template: str, status: int | None = None, strict: bool = True):
        """Assert the response has the expected status and a spec-valid JSON body; returns the body.

        strict=False only for the rolebinding 400s: the spec types them as RoleBindingsPostResponse (das.md 1.6, "sic"),
        and the simulator's body carries that shape plus the meta.v1.ErrorResponse fields every client reads.
        """
        if status is not None:
            assert response.status_code == status, response.text
        assert response.headers.get("Content-Type", "").startswith("application/json")
        body = response.json()
        ref = self.schema_ref(method, template, response.status_code)
        problems = self.errors(body, ref, strict)
        assert not problems, f"{method} {template} {response.status_code} does not match {ref}: {problems}"
        if response.status_code >= 400:
            # Every error also carries the documented error fields (the rolebinding 400 has both shapes).
            assert not [p for p in self._loose_errors(body) if p], body
        self.checked.add((method.upper(), template, response.status_code))
        return body

    def _loose_errors(self, body) -> list[str]:
        from jsonschema import Draft4Validator
        error_schema = self.spec["components"]["schemas"]["meta.v1.ErrorResponse"]
        return [e.message for e in Draft4Validator(error_schema).iter_errors(body)]


@pytest.fixture(scope="module")
def spec():
    if not SPEC_PATH.is_file():
        pytest.skip("../shared/api/specs/das-openapi.yaml not found: DAS simulator fidelity is checked only where shared/ sits beside the clone")
    import yaml
    with SPEC_PATH.open() as handle:
        document = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return SpecChecker(document)


# ---- fidelity against the OpenAPI file ------------------------------------------------------

def test_spec_checker_rejects_what_the_spec_forbids(spec):
    token_ref = spec.schema_ref("GET", "/v1/tokens/{tokenId}", 200)
    good = {"request_id": "r", "result": {"id": "a", "description": "", "ttl": "24h", "allow_path_patterns": [], "metadata": {},
                                          "expires": "2027-01-15T08:00:00Z", "uses": 1}}
    assert spec.errors(good, token_ref) == []
    missing = copy.deepcopy(good)
    del missing["result"]["allow_path_patterns"]
    assert spec.errors(missing, token_ref)
    invented = copy.deepcopy(good)
    invented["result"]["secret"] = "x"
    assert spec.errors(invented, token_ref)
    wrong_type = copy.deepcopy(good)
    wrong_type["result"]["uses"] = "1"
    assert spec.errors(wrong_type, token_ref)
    bad_time = copy.deepcopy(good)
    bad_time["result"]["expires"] = "tomorrow"
    assert spec.errors(bad_time, token_ref)
    assert spec.errors({"message": "no code"}, spec.schema_ref("GET", "/v1/tokens/{tokenId}", 404))
    with pytest.raises(AssertionError):
        spec.schema_ref("GET", "/v1/tokens", 201)


ALTERNATIVE_SWITCHES = {
    "error_codes": {400: "invalid", 401: "unauthenticated", 403: "permission_denied", 404: "missing", 409: "exists"},
    "partial_put": "reset",
    "regenerate_grace_seconds": 30,
    "list_expired": False,
    "ttl_echo": "normalized",
    "refresher_can_get": True,
    "delete_missing_status": 200,
    "update_result": "empty",
    "max_ttl_seconds": 86400 * 30,
    "ttl_update_resets_expires": True,
    "path_refusal_status": 401,
}


@pytest.mark.parametrize("switches", [{}, ALTERNATIVE_SWITCHES], ids=["defaults", "alternatives"])
def test_every_response_matches_the_openapi_spec(spec, make_sim, http, clock, switches):
    sim = make_sim(**switches)
    das = client_for(sim, http)
    admin = sim.seed_token("admin", roles=[ADMIN])
    nobody = sim.seed_token("nobody")
    sim.seed_token("systems/s1/opa", roles=[("SystemOPA", "system", "s1")])
    tokens, token, system = "/v1/tokens", "/v1/tokens/{tokenId}", "/v1/systems/{system}"
    bindings, binding, subjects = "/v2/authz/rolebindings", "/v2/authz/rolebindings/{id}", "/v2/authz/rolebindings/{id}/subjects"

    spec.check(das.put("/v1/tokens/systems/s1/app", admin, json=FULL_BODY), "PUT", token, 200)                       # create
    spec.check(das.put("/v1/tokens/systems/s1/app", admin, json={**FULL_BODY, "description": "x"}), "PUT", token, 200)  # update
    body = spec.check(das.put("/v1/tokens/systems/s1/app", admin, json={"regenerate": True}), "PUT", token, 200)      # regenerate
    assert body["result"]
    spec.check(das.put("/v1/tokens/systems/s1/app", admin, json=FULL_BODY, headers={"If-None-Match": "*"}), "PUT", token, 409)
    spec.check(das.put("/v1/tokens/bad", admin, json={**FULL_BODY, "ttl": "1d"}), "PUT", token, 400)
    spec.check(das.get("/v1/tokens", admin), "GET", tokens, 200)
    spec.check(das.get("/v1/tokens/systems/s1/app", admin), "GET", token, 200)
    spec.check(das.get("/v1/tokens/missing", admin), "GET", token, 404)
    spec.check(das.get("/v1/tokens", "not-a-secret"), "GET", tokens, 401)
    spec.check(das.get("/v1/tokens", nobody), "GET", tokens, 403)
    systems_only = sim.seed_token("systems-only", roles=[ADMIN], allow_path_patterns=["^/v1/systems/.*"])
    spec.check(das.get("/v1/tokens", systems_only), "GET", tokens, switches.get("path_refusal_status", 403))
    spec.check(das.get("/v1/systems/s1", admin), "GET", system, 200)
    spec.check(das.get("/v1/systems/unknown", admin), "GET", system, 404)
    spec.check(das.get("/v2/authz/roles", admin), "GET", "/v2/authz/roles", 200)
    spec.check(das.get("/v2/authz/roles?resource_kind=system", admin), "GET", "/v2/authz/roles", 200)

    new_binding = {"resource_filter": {"kind": "system", "id": "s1"}, "role_id": "SystemViewer",
                   "subjects": [{"kind": "token", "id": "systems/s1/app"}]}
    created = spec.check(das.post(bindings, admin, json=new_binding), "POST", bindings, 200)["rolebinding"]
    rb_id = created["id"]
    spec.check(das.post(bindings, admin, json={**new_binding, "id": rb_id}, headers={"If-None-Match": "*"}), "POST", bindings, 409)
    spec.check(das.post(bindings, admin, json={**new_binding, "role_id": "NoSuchRole"}), "POST", bindings, 400, strict=False)
    spec.check(das.post(bindings, admin, json={**new_binding, "id": "no-such-binding"}), "POST", bindings, 404)
    spec.check(das.post(bindings, admin, json={**new_binding, "id": rb_id}), "POST", bindings, 200)
    spec.check(das.get(bindings + "?resource_kind=system&subject_id=systems/s1/app", admin), "GET", bindings, 200)
    spec.check(das.get(f"{bindings}/{rb_id}", admin), "GET", binding, 200)
    spec.check(das.get(f"{bindings}/missing", admin), "GET", binding, 404)
    user = {"subjects": [{"kind": "user", "id": "alice@example.com"}]}
    spec.check(das.post(f"{bindings}/{rb_id}/subjects", admin, json=user), "POST", subjects, 200)
    spec.check(das.put(f"{bindings}/{rb_id}/subjects", admin, json={"subjects": [{"kind": "token", "id": "t"}]}), "PUT", subjects, 200)
    spec.check(das.delete(f"{bindings}/{rb_id}/subjects", admin, json=user), "DELETE", subjects, 200)
    spec.check(das.put(f"{bindings}/{rb_id}/subjects", admin, json={"subjects": [{"id": "no kind"}]}), "PUT", subjects, 400, strict=False)
    spec.check(das.post(f"{bindings}/missing/subjects", admin, json=user), "POST", subjects, 404)
    spec.check(das.delete(f"{bindings}/missing/subjects", admin, json=user), "DELETE", subjects, 404)
    spec.check(das.delete(f"{bindings}/{rb_id}", admin), "DELETE", binding, 200)
    spec.check(das.delete(f"{bindings}/{rb_id}", admin), "DELETE", binding, 404)
    spec.check(das.delete(f"{bindings}/{rb_id}", admin, headers={"If-Match": "*"}), "DELETE", binding, 200)

    spec.check(das.delete("/v1/tokens/systems/s1/app", admin), "DELETE", token, 200)
    missing_delete = das.delete("/v1/tokens/systems/s1/app", admin)
    spec.check(missing_delete, "DELETE", token, switches.get("delete_missing_status", 404))
    clock.advance(87600 * 3600)   # everything expires, including the admin
    spec.check(das.get("/v1/tokens", admin), "GET", tokens, 401)

    expected = {
        ("GET", tokens, 200), ("GET", token, 200), ("GET", token, 404), ("PUT", token, 200), ("PUT", token, 409),
        ("PUT", token, 400), ("DELETE", token, 200), ("GET", tokens, 401), ("GET", tokens, 403), ("GET", system, 200),
        ("GET", "/v2/authz/roles", 200), ("GET", bindings, 200), ("POST", bindings, 200), ("POST", bindings, 400),
        ("POST", bindings, 404), ("POST", bindings, 409), ("GET", binding, 200), ("GET", binding, 404), ("DELETE", binding, 200),
        ("DELETE", binding, 404), ("POST", subjects, 200), ("PUT", subjects, 200), ("DELETE", subjects, 200), ("PUT", subjects, 400),
    }
    assert expected <= spec.checked


def test_error_body_is_meta_v1_error_response(das, admin):
    body = das.get("/v1/tokens/nope", admin).json()
    assert set(body) == {"code", "message", "request_id"} and body["code"] == "not_found"
    unknown_route = das.get("/v1/nothing-here", admin)
    assert unknown_route.status_code == 404 and unknown_route.json()["code"] == "not_found"
    assert das.call("PATCH", "/v1/tokens/x", admin).status_code == 405


def test_an_api_path_without_a_route_checks_the_token_first(sim, das, admin):
    """"All DAS APIs return 401" for a dead token (das.md 1.4): a path the simulator does not implement too."""
    assert das.get("/v1/data/anything", admin).status_code == 404
    assert das.get("/v1/data/anything", "not-a-token").status_code == 401
    narrow = sim.seed_token("narrow", allow_path_patterns=["^/v1/systems/.*"])
    assert das.get("/v1/data/anything", narrow).status_code == 403


# ---- PUT /v1/tokens/{id} semantics (das.md 1.4) ---------------------------------------------

def test_put_creates_a_token_and_shows_its_secret_only_once(sim, das, admin):
    response = das.put("/v1/tokens/alice/test", admin, json=FULL_BODY)
    assert response.status_code == 200
    secret = response.json()["result"]
    assert secret in sim.issued and sim.secret_works(secret)
    listed = das.get("/v1/tokens", admin)
    single = das.get("/v1/tokens/alice/test", admin)
    assert secret not in listed.text and secret not in single.text
    result = single.json()["result"]
    assert result["id"] == "alice/test" and result["ttl"] == "24h" and result["description"] == "app"
    assert result["expires"] == "2027-01-16T08:00:00Z"   # START + 24h
    assert result["metadata"]["created_by"] == "admin" and "token" not in result
    assert das.get("/v1/tokens", secret).status_code == 403   # new tokens have no rights until bound (Authz v2)


def test_put_without_ttl_lasts_about_ten_years(sim, das, admin):
    body = {k: v for k, v in FULL_BODY.items() if k != "ttl"}
    assert das.put("/v1/tokens/longlived", admin, json=body).status_code == 200
    assert sim.token("longlived")["expires"] == START + 87600 * 3600


@pytest.mark.parametrize("missing", ["description", "allow_path_patterns", "regenerate"])
def test_create_requires_the_spec_required_fields(das, admin, missing):
    body = {k: v for k, v in FULL_BODY.items() if k != missing}
    response = das.put("/v1/tokens/new", admin, json=body)
    assert response.status_code == 400 and missing in response.json()["message"]
    assert das.get("/v1/tokens/new", admin).status_code == 404


@pytest.mark.parametrize("ttl", ["1d", "abc", "", "24", "-1h", "0s", "h"])
def test_invalid_ttl_is_rejected(das, admin, ttl):
    assert das.put("/v1/tokens/new", admin, json={**FULL_BODY, "ttl": ttl}).status_code == 400


@pytest.mark.parametrize("body", ["not json", "[]", '{"description": 5, "allow_path_patterns": [], "regenerate": false}',
                                  '{"description": "", "allow_path_patterns": "x", "regenerate": false}',
                                  '{"description": "", "allow_path_patterns": [], "regenerate": "yes"}'])
def test_malformed_put_bodies_are_rejected(das, admin, body):
    response = das.put("/v1/tokens/new", admin, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400


def test_go_durations():
    assert parse_go_duration("1h30m") == 5400 * 10**9
    assert parse_go_duration("1.5s") == 1_500_000_000
    assert parse_go_duration("2h45m30.5s") == (2 * 3600 + 45 * 60 + 30.5) * 10**9
    assert [format_go_duration(parse_go_duration(t)) for t in ("24h", "90s", "1.5s", "500ms", "87600h", "1us", "1.5h")] == \
        ["24h0m0s", "1m30s", "1.5s", "500ms", "87600h0m0s", "1µs", "1h30m0s"]
    with pytest.raises(ValueError):
        parse_go_duration("7d")


def test_if_none_match_star_is_create_only(sim, das, admin, clock):
    first = das.put("/v1/tokens/app", admin, json=FULL_BODY, headers={"If-None-Match": "*"})
    assert first.status_code == 200
    secret = first.json()["result"]
    conflict = das.put("/v1/tokens/app", admin, json={**FULL_BODY, "description": "changed"}, headers={"If-None-Match": "*"})
    assert conflict.status_code == 409 and conflict.json()["code"] == "conflict"
    assert sim.token("app")["description"] == "app" and sim.secret_works(secret)
    clock.advance(24 * 3600)   # expired: create-only succeeds again and replaces it
    again = das.put("/v1/tokens/app", admin, json=FULL_BODY, headers={"If-None-Match": "*"})
    assert again.status_code == 200 and again.json()["result"] != secret


def test_update_without_regenerate_returns_no_secret_and_keeps_it(sim, das, admin, clock):
    secret = das.put("/v1/tokens/app", admin, json=FULL_BODY).json()["result"]
    expires = sim.token("app")["expires"]
    clock.advance(3600)
    response = das.put("/v1/tokens/app", admin, json={**FULL_BODY, "description": "new", "allow_path_patterns": ["a", "b"]})
    assert response.status_code == 200 and "result" not in response.json()
    stored = sim.token("app")
    assert stored["description"] == "new" and stored["allow_path_patterns"] == ["a", "b"]
    assert stored["secret"] == secret and sim.secret_works(secret) and stored["expires"] == expires
    assert stored["metadata"]["last_modified_at"] == START + 3600 and stored["metadata"]["created_at"] == START


def test_regenerate_issues_a_new_secret_and_kills_the_old_one(sim, das, admin, clock):
    old = das.put("/v1/tokens/app", admin, json=FULL_BODY).json()["result"]
    sim.seed_token("reader", roles=[VIEWER])
    clock.advance(3600)
    new = das.put("/v1/tokens/app", admin, json={"regenerate": True}).json()["result"]
    assert new and new != old and new in sim.issued
    assert not sim.secret_works(old) and sim.secret_works(new)
    assert sim.token("app")["expires"] == START + 3600 + 24 * 3600   # reset from the stored ttl
    clock.advance(60)
    das.put("/v1/tokens/app", admin, json={"regenerate": True, "ttl": "48h"})
    assert sim.token("app")["expires"] == START + 3660 + 48 * 3600   # reset from the new ttl


def test_regenerated_old_secret_gets_401(sim, das, admin):
    old = sim.seed_token("app", roles=[VIEWER])
    assert das.get("/v1/tokens", old).status_code == 200
    das.put("/v1/tokens/app", admin, json={"regenerate": True})
    response = das.get("/v1/tokens", old)
    assert response.status_code == 401 and response.json()["code"] == "unauthorized"


def test_expired_token_is_replaced_by_a_partial_put(sim, das, admin, clock):
    """The documented refresher call {"regenerate": true, "ttl": "24h"} targets a token that just expired."""
    old = sim.seed_token("app", roles=[VIEWER], ttl="1h", description="kept")
    clock.advance(3600)
    assert das.get("/v1/tokens", old).status_code == 401
    response = das.put("/v1/tokens/app", admin, json={"regenerate": True, "ttl": "24h"})
    assert response.status_code == 200
    new = response.json()["result"]
    stored = sim.token("app")
    assert stored["metadata"]["created_at"] == START + 3600 and stored["description"] == "kept"
    assert stored["expires"] == START + 3600 + 24 * 3600
    assert das.get("/v1/tokens", new).status_code == 200 and not sim.secret_works(old)


def test_token_ids_keep_their_slashes(sim, das, admin):
    assert das.put("/v1/tokens/systems/s1/opa-version", admin, json=FULL_BODY).status_code == 200
    assert das.get("/v1/tokens/systems/s1/opa-version", admin).json()["result"]["id"] == "systems/s1/opa-version"
    # The server sees the decoded path, as Go's net/http does.
    assert das.get("/v1/tokens/systems%2Fs1%2Fopa-version", admin).status_code == 200
    assert sim.token("systems/s1/opa-version") is not None


def test_delete_revokes_and_leaves_bindings(sim, das, admin):
    secret = sim.seed_token("app", roles=[VIEWER])
    response = das.delete("/v1/tokens/app", admin)
    assert response.status_code == 200 and set(response.json()) == {"request_id"}
    assert not sim.secret_works(secret) and das.get("/v1/tokens", secret).status_code == 401
    assert das.get("/v1/tokens/app", admin).status_code == 404
    assert das.delete("/v1/tokens/app", admin).status_code == 404
    assert sim.bindings_for("app") == [VIEWER]


def test_uses_counts_authenticated_requests(sim, das):
    reader = sim.seed_token("reader", roles=[VIEWER])
    for _request in range(3):
        das.get("/v1/tokens", reader)
    das.put("/v1/tokens/reader", reader, json={"regenerate": True})   # 403, still a use
    assert sim.token("reader")["uses"] == 4


# ---- authentication and authorization -------------------------------------------------------

@pytest.mark.parametrize("header", [None, "Bearer", "Bearer unknown-secret", "Basic abc", "bearer"])
def test_401_without_a_valid_bearer(das, admin, header):
    headers = {"Authorization": header} if header else {}
    for method, path in (("GET", "/v1/tokens"), ("PUT", "/v1/tokens/x"), ("GET", "/v2/authz/rolebindings")):
        response = das.call(method, path, headers=headers, json=FULL_BODY if method == "PUT" else None)
        assert response.status_code == 401, (method, path)
        assert response.json()["code"] == "unauthorized"


def test_401_once_the_callers_ttl_passes(sim, das, clock):
    reader = sim.seed_token("reader", roles=[VIEWER], ttl="10m")
    clock.advance(599)
    assert das.get("/v1/tokens", reader).status_code == 200
    clock.advance(1)
    assert das.get("/v1/tokens", reader).status_code == 401


def test_403_without_role_bindings(sim, das, admin):
    nobody = sim.seed_token("nobody")
    sim.seed_token("other")
    for method, path in (("GET", "/v1/tokens"), ("GET", "/v1/tokens/other"), ("PUT", "/v1/tokens/other"),
                         ("DELETE", "/v1/tokens/other"), ("GET", "/v2/authz/roles"), ("GET", "/v2/authz/rolebindings"),
                         ("PUT", "/v1/tokens/nobody")):
        response = das.call(method, path, nobody, json=FULL_BODY if method == "PUT" else None)
        assert response.status_code == 403, (method, path)
        assert response.json()["code"] == "forbidden"


def test_viewer_reads_everything_and_writes_nothing(sim, das, admin):
    reader = sim.seed_token("reader", roles=[VIEWER])
    sim.add_system("s1")
    for path in ("/v1/tokens", "/v1/tokens/admin", "/v1/systems/s1", "/v2/authz/roles", "/v2/authz/rolebindings"):
        assert das.get(path, reader).status_code == 200, path
    assert das.put("/v1/tokens/admin", reader, json=FULL_BODY).status_code == 403
    assert das.delete("/v1/tokens/admin", reader).status_code == 403
    binding = {"resource_filter": {"kind": "workspace", "id": "*"}, "role_id": "WorkspaceAdministrator", "subjects": [{"kind": "token", "id": "reader"}]}
    assert das.post("/v2/authz/rolebindings", reader, json=binding).status_code == 403
    assert sim.bindings_for("reader") == [VIEWER]


def test_workspace_refresher_only_updates_existing_workspace_tokens(sim, das, admin):
    refresher = sim.seed_token("refresher", roles=[REFRESHER])
    app = sim.seed_token("application-token", ttl="24h")
    sim.seed_token("systems/s1/opa")
    response = das.put("/v1/tokens/application-token", refresher, json={"regenerate": True, "ttl": "24h"})
    assert response.status_code == 200 and not sim.secret_works(app) and sim.secret_works(response.json()["result"])
    assert das.put("/v1/tokens/systems/s1/opa", refresher, json={"regenerate": True}).status_code == 403
    assert das.put("/v1/tokens/brand-new", refresher, json=FULL_BODY).status_code == 403
    assert sim.token("brand-new") is None
    for method, path in (("GET", "/v1/tokens/application-token"), ("GET", "/v1/tokens"), ("DELETE", "/v1/tokens/application-token"),
                         ("GET", "/v2/authz/rolebindings"), ("GET", "/v1/systems/s1")):
        assert das.call(method, path, refresher).status_code == 403, (method, path)


def test_refresher_rotates_itself(sim, das):
    refresher = sim.seed_token("refresher", roles=[REFRESHER])
    response = das.put("/v1/tokens/refresher", refresher, json={"regenerate": True})
    assert response.status_code == 200
    assert not sim.secret_works(refresher) and das.put("/v1/tokens/refresher", response.json()["result"], json={"regenerate": True}).status_code == 200


def test_system_refresher_is_limited_to_its_system(sim, das, admin):
    refresher = sim.seed_token("refreshers/s1", roles=[("SystemTokenRefresher", "system", "s1")])
    sim.seed_token("systems/s1/opa")
    sim.seed_token("systems/s2/opa")
    sim.seed_token("application-token")
    assert das.put("/v1/tokens/systems/s1/opa", refresher, json={"regenerate": True}).status_code == 200
    assert das.put("/v1/tokens/systems/s2/opa", refresher, json={"regenerate": True}).status_code == 403
    assert das.put("/v1/tokens/application-token", refresher, json={"regenerate": True}).status_code == 403
    assert das.put("/v1/tokens/systems/s1/new", refresher, json=FULL_BODY).status_code == 403
    assert das.get("/v1/tokens/systems/s1/opa", refresher).status_code == 403
    assert das.get("/v1/systems/s1", refresher).status_code == 403
    # Self-rotation works although its own id lies outside systems/s1/.
    assert das.put("/v1/tokens/refreshers/s1", refresher, json={"regenerate": True}).status_code == 200


def test_system_roles_read_only_their_system(sim, das, admin):
    opa = sim.seed_token("systems/s1/opa", roles=[("SystemOPA", "system", "s1")])
    sim.seed_token("systems/s2/opa", roles=[("SystemOwner", "system", "s2")])
    response = das.get("/v1/systems/s1", opa)
    assert response.status_code == 200
    assert [t["id"] for t in response.json()["result"]["tokens"]] == ["systems/s1/opa"]
    assert das.get("/v1/systems/s2", opa).status_code == 403
    assert das.get("/v1/tokens", opa).status_code == 403
    assert das.get("/v1/tokens/systems/s1/opa", opa).status_code == 403


def test_a_new_binding_grants_rights_and_removing_the_subject_revokes_them(sim, das, admin):
    secret = das.put("/v1/tokens/app", admin, json={**FULL_BODY, "allow_path_patterns": ["^/v1/tokens"]}).json()["result"]
    assert das.get("/v1/tokens", secret).status_code == 403
    # Workspace bindings: the resource id is undocumented, so any id is accepted.
    binding = {"resource_filter": {"kind": "workspace", "id": "my-tenant"}, "role_id": "WorkspaceViewer", "subjects": [{"kind": "token", "id": "app"}]}
    rb = das.post("/v2/authz/rolebindings", admin, json=binding).json()["rolebinding"]
    assert das.get("/v1/tokens", secret).status_code == 200
    assert sim.bindings_for("app") == [("WorkspaceViewer", "workspace", "my-tenant")]
    das.delete(f"/v2/authz/rolebindings/{rb['id']}/subjects", admin, json={"subjects": [{"kind": "token", "id": "app"}]})
    assert das.get("/v1/tokens", secret).status_code == 403


# ---- switches (das.md 1.9) ------------------------------------------------------------------

def test_switch_error_codes(make_sim, http):
    sim = make_sim(error_codes={401: "unauthenticated", 404: "missing"})
    das = client_for(sim, http)
    admin = sim.seed_token("admin", roles=[ADMIN])
    assert das.get("/v1/tokens", "wrong").json()["code"] == "unauthenticated"
    assert das.get("/v1/tokens/none", admin).json()["code"] == "missing"


@pytest.mark.parametrize("mode, description, patterns", [("keep", "app", ["v1/data/.*"]), ("reset", "", [])])
def test_switch_partial_put(make_sim, http, mode, description, patterns):
    sim = make_sim(partial_put=mode)
    das = client_for(sim, http)
    admin = sim.seed_token("admin", roles=[ADMIN])
    das.put("/v1/tokens/app", admin, json=FULL_BODY)
    assert das.put("/v1/tokens/app", admin, json={"regenerate": True, "ttl": "24h"}).status_code == 200
    stored = sim.token("app")
    assert (stored["description"], stored["allow_path_patterns"]) == (description, patterns)


@pytest.mark.parametrize("grace", [0, 60])
def test_switch_regenerate_grace_seconds(make_sim, http, clock, grace):
    sim = make_sim(regenerate_grace_seconds=grace)
    das = client_for(sim, http)
    admin = sim.seed_token("admin", roles=[ADMIN])
    old = sim.seed_token("app", roles=[VIEWER])
    new = das.put("/v1/tokens/app", admin, json={"regenerate": True}).json()["result"]
    assert (das.get("/v1/tokens", old).status_code == 200) is (grace > 0)
    clock.advance(max(grace - 1, 0))
    assert sim.secret_works(old) is (grace > 0)
    clock.advance(1)
    assert not sim.secret_works(old) and das.get("/v1/tokens", old).status_code == 401
    assert das.get("/v1/tokens", new).status_code == 200


@pytest.mark.parametrize("list_expired", [True, False])
def test_switch_list_expired(make_sim, http, clock, list_expired):
    sim = make_sim(list_expired=list_expired)
    das = client_for(sim, http)
    admin = sim.seed_token("admin", roles=[ADMIN])
    sim.seed_token("short", ttl="1h")
    clock.advance(3600)
    ids = [t["id"] for t in das.get("/v1/tokens", admin).json()["result"]]
    assert ("short" in ids) is list_expired and "admin" in ids
    assert das.get("/v1/tokens/short", admin).status_code == 200   # GET by id still shows it, expires in the past


@pytest.mark.parametrize("echo, expected", [("as_sent", "1h30m"), ("normalized", "1h30m0s")])
def test_switch_ttl_echo(make_sim, http, echo, expected):
    sim = make_sim(ttl_echo=echo)
    das = client_for(sim, http)
    admin = sim.seed_token("admin", roles=[ADMIN])
    das.put("/v1/tokens/app", admin, json={**FULL_BODY, "ttl": "1h30m"})
    assert das.get("/v1/tokens/app", admin).json()["result"]["ttl"] == expected
    assert das.get("/v1/tokens", admin).json()["result"][1]["ttl"] == expected


@pytest.mark.parametrize("can_get", [False, True])
def test_switch_refresher_can_get(make_sim, http, can_get):
    sim = make_sim(refresher_can_get=can_get)
    das = client_for(sim, http)
    refresher = sim.seed_token("refresher", roles=[REFRESHER])
    system_refresher = sim.seed_token("sysrefresher", roles=[("SystemTokenRefresher", "system", "s1")])
    sim.seed_token("app")
    sim.seed_token("systems/s1/opa")
    expected = 200 if can_get else 403
    assert das.get("/v1/tokens/app", refresher).status_code == expected
    assert das.get("/v1/tokens/systems/s1/opa", system_refresher).status_code == expected
    # Never outside the scope, and never the full list.
    assert das.get("/v1/tokens/systems/s1/opa", refresher).status_code == 403
    assert das.get("/v1/tokens/app", system_refresher).status_code == 403
    assert das.get("/v1/tokens", refresher).status_code == 403


@pytest.mark.parametrize("status", [404, 200])
def test_switch_delete_missing_status(make_sim, http, status):
    sim = make_sim(delete_missing_status=status)
    das = client_for(sim, http)
    admin = sim.seed_token("admin", roles=[ADMIN])
    assert das.delete("/v1/tokens/never-existed", admin).status_code == status


@pytest.mark.parametrize("mode", ["omit", "empty"])
def test_switch_update_result(make_sim, http, mode):
    sim = make_sim(update_result=mode)
    das = client_for(sim, http)
    admin = sim.seed_token("admin", roles=[ADMIN])
    das.put("/v1/tokens/app", admin, json=FULL_BODY)
    body = das.put("/v1/tokens/app", admin, json={**FULL_BODY, "description": "x"}).json()
    assert body.get("result", None) == (None if mode == "omit" else "")
    assert ("result" in body) is (mode == "empty")


def test_switch_max_ttl_seconds(make_sim, http):
    sim = make_sim(max_ttl_seconds=86400)
    das = client_for(sim, http)
    admin = sim.seed_token("admin", roles=[ADMIN])
    assert das.put("/v1/tokens/app", admin, json={**FULL_BODY, "ttl": "24h0m1s"}).status_code == 400
    assert das.put("/v1/tokens/app", admin, json={**FULL_BODY, "ttl": "24h"}).status_code == 200
    no_ttl = {k: v for k, v in FULL_BODY.items() if k != "ttl"}
    assert das.put("/v1/tokens/capped", admin, json=no_ttl).status_code == 200
    assert sim.token("capped")["expires"] == START + 86400
    unlimited = make_sim()
    admin2 = unlimited.seed_token("admin", roles=[ADMIN])
    assert client_for(unlimited, http).put("/v1/tokens/app", admin2, json={**FULL_BODY, "ttl": "876000h"}).status_code == 200


@pytest.mark.parametrize("resets", [False, True])
def test_switch_ttl_update_resets_expires(make_sim, http, clock, resets):
    sim = make_sim(ttl_update_resets_expires=resets)
    das = client_for(sim, http)
    admin = sim.seed_token("admin", roles=[ADMIN])
    das.put("/v1/tokens/app", admin, json=FULL_BODY)
    clock.advance(100)
    das.put("/v1/tokens/app", admin, json={**FULL_BODY, "ttl": "48h"})
    assert sim.token("app")["expires"] == (START + 100 + 48 * 3600 if resets else START + 24 * 3600)


@pytest.mark.parametrize("status", [403, 401])
def test_allow_path_patterns_are_enforced(make_sim, http, status):
    """A token may only call paths one of its patterns matches (a search: "^/data/foo" allows every path below it)."""
    sim = make_sim(**({} if status == 403 else {"path_refusal_status": status}))
    das = client_for(sim, http)
    limited = sim.seed_token("systems/s1/app", roles=[ADMIN], allow_path_patterns=["^/v1/systems/.*"])
    assert das.get("/v1/systems/s1", limited).status_code == 200
    refused = das.get("/v1/tokens", limited)
    assert refused.status_code == status and set(refused.json()) == {"code", "message", "request_id"}
    assert das.put("/v1/tokens/other", limited, json=FULL_BODY).status_code == status
    assert sim.token("other") is None
    assert das.get("/v1/tokens", "not-a-secret").status_code == 401      # a dead secret stays 401 under either setting


@pytest.mark.parametrize("patterns, path, allowed", [
    ([], "/v1/tokens", True),                           # an empty list allows every path (das.md 1.4.5)
    ([".*"], "/v1/tokens", True),
    (["v1/tokens/.*"], "/v1/tokens/app", True),         # unanchored: matches anywhere in the path
    (["^/v1/tokens/app$"], "/v1/tokens/app", True),
    (["^/v1/tokens/app$"], "/v1/tokens/application", False),
    (["^/v1/data/.*", "^/v1/tokens$"], "/v1/tokens", True),
    (["^/data/foo"], "/v1/tokens", False),
])
def test_allow_path_pattern_matching(make_sim, http, patterns, path, allowed):
    sim = make_sim()
    das = client_for(sim, http)
    sim.seed_token("app")
    token = sim.seed_token("reader", roles=[ADMIN], allow_path_patterns=patterns)
    assert (das.get(path, token).status_code != 403) is allowed


def test_a_token_limited_to_its_own_path_rotates_itself_but_reads_nothing_else(make_sim, http):
    sim = make_sim()
    das = client_for(sim, http)
    refresher = sim.seed_token("refresher", roles=[REFRESHER], allow_path_patterns=["^/v1/tokens/refresher$"])
    sim.seed_token("app")
    assert das.put("/v1/tokens/app", refresher, json={"regenerate": True}).status_code == 403
    new = das.put("/v1/tokens/refresher", refresher, json={"regenerate": True}).json()["result"]
    assert sim.secret_works(new)


def test_an_invalid_pattern_is_refused(sim, das, admin):
    response = das.put("/v1/tokens/app", admin, json={**FULL_BODY, "allow_path_patterns": ["^/v1/(unclosed"]})
    assert response.status_code == 400 and sim.token("app") is None


def test_unknown_or_invalid_switches_are_refused():
    with pytest.raises(TypeError):
        DasSimulator(partial_puts="keep")
    with pytest.raises(ValueError):
        DasSimulator(ttl_echo="go")


# ---- role bindings --------------------------------------------------------------------------

def _binding(role="SystemOPA", kind="system", rid="s1", subjects=({"kind": "token", "id": "systems/s1/opa"},), **extra):
    return {"resource_filter": {"kind": kind, "id": rid}, "role_id": role, "subjects": list(subjects), **extra}


def test_rolebinding_post_creates_updates_replaces_and_conflicts(das, admin):
    url = "/v2/authz/rolebindings"
    first = das.post(url, admin, json=_binding()).json()["rolebinding"]
    assert das.post(url, admin, json=_binding(id=first["id"]), headers={"If-None-Match": "*"}).status_code == 409
    replaced = das.post(url, admin, json=_binding(role="SystemViewer", rid="s2", id=first["id"])).json()["rolebinding"]
    assert replaced["id"] == first["id"] and replaced["role_id"] == "SystemViewer" and replaced["resource_filter"]["id"] == "s2"
    assert len(das.get(url, admin).json()["rolebindings"]) == 2   # admin's own binding plus this one
    assert das.post(url, admin, json=_binding(id="nope")).status_code == 404
    assert das.post(url, admin, json=_binding(role="WorkspaceViewer")).status_code == 400    # role kind mismatch
    assert das.post(url, admin, json=_binding(role="Nope")).status_code == 400
    assert das.post(url, admin, json={"role_id": "SystemOPA", "subjects": []}).status_code == 400
    bad = das.post(url, admin, json=_binding(subjects=[{"kind": "token"}]))
    assert bad.status_code == 400 and bad.json()["code"] == "bad_request" and "rolebinding" in bad.json()


@pytest.mark.parametrize("create_only", [False, True])
def test_rolebinding_post_without_id_creates_a_new_binding_beside_one_of_the_same_role(sim, das, admin, create_only):
    """The spec: "id: if present, implies updating existing rolebinding in its entirety, otherwise create new"."""
    url = "/v2/authz/rolebindings"
    headers = {"If-None-Match": "*"} if create_only else {}
    first = das.post(url, admin, json=_binding(), headers=headers).json()["rolebinding"]
    second = das.post(url, admin, json=_binding(subjects=[{"kind": "user", "id": "bob"}]), headers=headers)
    assert second.status_code == 200, second.text
    second = second.json()["rolebinding"]
    assert second["id"] != first["id"]
    stored = {b["id"]: b["subjects"] for b in das.get(url + "?role_id=SystemOPA", admin).json()["rolebindings"]}
    assert stored == {first["id"]: [{"kind": "token", "id": "systems/s1/opa"}], second["id"]: [{"kind": "user", "id": "bob"}]}
    assert sim.bindings_for("systems/s1/opa") == [("SystemOPA", "system", "s1")]   # the first subject keeps its right


def test_rolebinding_filters_or_within_a_parameter_and_across_subjects(sim, das, admin):
    sim.seed_token("systems/s1/opa", roles=[("SystemOPA", "system", "s1")])
    sim.seed_token("systems/s2/opa", roles=[("SystemOPA", "system", "s2")])
    sim.seed_token("v", roles=[("SystemViewer", "system", "s2")])

    def roles(query):
        found = das.get("/v2/authz/rolebindings" + query, admin).json()["rolebindings"]
        return sorted((b["role_id"], b["resource_filter"]["id"]) for b in found)

    assert roles("?resource_kind=system&resource_id=s1&resource_id=s2&role_id=SystemOPA") == [("SystemOPA", "s1"), ("SystemOPA", "s2")]
    assert roles("?resource_id=s2") == [("SystemOPA", "s2"), ("SystemViewer", "s2")]
    assert roles("?subject_kind=token&subject_id=v") == [("SystemViewer", "s2")]
    assert roles("?resource_kind=workspace") == [("WorkspaceAdministrator", "*")]
    assert roles("?role_id=SystemOwner") == []
    assert roles("?internal=true") == []


def test_rolebinding_subject_operations(das, admin):
    url = das.post("/v2/authz/rolebindings", admin, json=_binding()).json()["rolebinding"]["id"]
    url = f"/v2/authz/rolebindings/{url}/subjects"
    a, b, c = ({"kind": "token", "id": x} for x in "abc")
    assert das.post(url, admin, json={"subjects": [a, b]}).json()["rolebinding"]["subjects"] == [a, b]        # replace
    assert das.put(url, admin, json={"subjects": [b, c]}).json()["rolebinding"]["subjects"] == [a, b, c]     # merge
    assert das.delete(url, admin, json={"subjects": [a, c]}).json()["rolebinding"]["subjects"] == [b]        # remove
    assert das.put(url, admin, json={}).status_code == 400


def test_rolebinding_get_and_delete(das, admin):
    rb = das.post("/v2/authz/rolebindings", admin, json=_binding()).json()["rolebinding"]
    assert das.get(f"/v2/authz/rolebindings/{rb['id']}", admin).json()["rolebinding"] == rb
    assert das.delete(f"/v2/authz/rolebindings/{rb['id']}", admin).status_code == 200
    assert das.get(f"/v2/authz/rolebindings/{rb['id']}", admin).status_code == 404
    assert das.delete(f"/v2/authz/rolebindings/{rb['id']}", admin).status_code == 404
    assert das.delete(f"/v2/authz/rolebindings/{rb['id']}", admin, headers={"If-Match": "*"}).status_code == 200


def test_roles_list_and_filter(das, admin):
    everything = {r["id"]: r["resource_kind"] for r in das.get("/v2/authz/roles", admin).json()["roles"]}
    assert everything["WorkspaceTokenRefresher"] == "workspace" and everything["SystemTokenRefresher"] == "system"
    systems = das.get("/v2/authz/roles?resource_kind=system", admin).json()["roles"]
    assert systems and all(r["resource_kind"] == "system" for r in systems)


# ---- faults ---------------------------------------------------------------------------------

def test_fault_status_answers_without_doing_the_work(sim, das, admin):
    sim.faults.add("PUT", r"^/v1/tokens/", "status", times=1, status=503)
    response = das.put("/v1/tokens/app", admin, json=FULL_BODY)
    assert response.status_code == 503 and {"code", "message"} <= set(response.json())
    assert sim.token("app") is None
    assert das.put("/v1/tokens/app", admin, json=FULL_BODY).status_code == 200   # times counted down
    assert sim.faults.pending() == 0


def test_fault_retry_after(sim, das, admin):
    sim.faults.add("PUT", r"^/v1/tokens/app$", "retry_after", times=2, retry_after=7)
    for _attempt in range(2):
        response = das.put("/v1/tokens/app", admin, json=FULL_BODY)
        assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert sim.token("app") is None
    assert das.put("/v1/tokens/app", admin, json=FULL_BODY).status_code == 200


def test_fault_drop_after_commit(sim, das, admin):
    old = sim.seed_token("app")
    sim.faults.add("PUT", r"^/v1/tokens/app$", "drop_after_commit")
    issued_before = set(sim.issued)
    with pytest.raises(requests.exceptions.ConnectionError):
        das.put("/v1/tokens/app", admin, json={"regenerate": True})
    # The work was committed: a new secret exists that the client never saw, and the old one is dead.
    unseen = sim.issued - issued_before
    assert len(unseen) == 1 and sim.token("app")["secret"] in unseen and not sim.secret_works(old)
    assert sim.requests[-1].status is None and sim.requests[-1].fault == "drop_after_commit"
    assert das.get("/v1/tokens/app", admin).status_code == 200   # the next request is served normally


def test_fault_hang_after_commit(sim, das, admin):
    sim.faults.add("PUT", r"^/v1/tokens/", "hang_after_commit", delay=5)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        das.put("/v1/tokens/app", admin, json=FULL_BODY, timeout=0.3)
    assert sim.faults.committed.is_set() and sim.token("app") is not None
    assert time.monotonic() - started < 2


def test_fault_latency(sim, das, admin):
    sim.faults.add("GET", r"^/v1/tokens$", "latency", delay=0.3)
    started = time.monotonic()
    response = das.get("/v1/tokens", admin)
    assert response.status_code == 200 and time.monotonic() - started >= 0.3
    started = time.monotonic()
    das.get("/v1/tokens", admin)
    assert time.monotonic() - started < 0.3


def test_faults_match_method_and_path_and_clear(sim, das, admin):
    sim.faults.add("GET", r"^/v2/", "status", times=None, status=500)
    assert das.get("/v1/tokens", admin).status_code == 200
    assert das.get("/v2/authz/roles", admin).status_code == 500
    assert das.get("/v2/authz/roles", admin).status_code == 500   # times=None: until cleared
    sim.faults.add("*", r"tokens", "status", status=502)
    assert das.put("/v1/tokens/x", admin, json=FULL_BODY).status_code == 502
    sim.faults.clear()
    assert das.get("/v2/authz/roles", admin).status_code == 200
    with pytest.raises(ValueError):
        sim.faults.add("GET", "x", "explode")


# ---- request log ----------------------------------------------------------------------------

def test_request_log_counts_and_redacts(sim, das, admin):
    das.get("/v1/tokens", admin)
    das.put("/v1/tokens/app", admin, json=FULL_BODY)
    das.get("/v2/authz/roles?resource_kind=system", admin)
    das.delete("/v1/tokens/app", admin)
    assert sim.count() == 4 and sim.count("GET") == 2 and sim.count(writes_only=True) == 2
    assert sim.count(path_prefix="/v1/tokens") == 3 and sim.count("PUT", "/v1/tokens/app") == 1
    record = sim.requests[2]
    assert record.query == {"resource_kind": ["system"]} and record.status == 200
    assert all(r.headers["Authorization"] == "<redacted>" for r in sim.requests)
    sim.reset_counts()
    assert sim.count() == 0


def test_log_never_contains_an_issued_secret(sim, das, admin, caplog, clock):
    caplog.set_level(logging.DEBUG, logger="simulator.das")
    secret = das.put("/v1/tokens/app", admin, json=FULL_BODY).json()["result"]
    das.put("/v1/tokens/app", admin, json={"regenerate": True})
    das.get("/v1/tokens", secret)   # 401 with a now-dead secret
    sim.faults.add("PUT", "app", "drop_after_commit")
    with pytest.raises(requests.exceptions.ConnectionError):
        das.put("/v1/tokens/app", admin, json={"regenerate": True})
    das.put(f"/v1/tokens/{secret}", admin, json={"oops": secret})
    assert caplog.records, "the simulator must log request lines"
    assert len(sim.issued) >= 4
    logged = caplog.text + repr(sim.requests)
    leaked = [s for s in sim.issued if s in logged and s != secret]
    assert not leaked
    # A secret the caller put in the path is its own doing; bodies and Authorization never show up.
    assert json.dumps({"oops": secret}) not in logged and f"Bearer {admin}" not in logged and admin not in logged


# ---- TLS, lifecycle, persistence, CLI -------------------------------------------------------

def test_tls_with_the_generated_ca(make_sim, http):
    from cryptography import x509
    sim = make_sim(tls=True)
    assert sim.base_url.startswith("https://127.0.0.1:")
    admin = sim.seed_token("admin", roles=[ADMIN])
    headers = {"Authorization": f"Bearer {admin}"}
    assert http.get(sim.base_url + "/v1/tokens", headers=headers, verify=sim.ca_path, timeout=5).status_code == 200
    localhost = f"https://localhost:{sim.port}/v1/tokens"
    assert http.get(localhost, headers=headers, verify=sim.ca_path, timeout=5).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        http.get(sim.base_url + "/v1/tokens", headers=headers, verify=True, timeout=5)
    ca = x509.load_pem_x509_certificate(Path(sim.ca_path).read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # The server keeps serving after a client refused its certificate.
    assert http.get(sim.base_url + "/v1/tokens", headers=headers, verify=sim.ca_path, timeout=5).status_code == 200


def test_stop_closes_kept_alive_connections(sim, das, admin):
    assert das.get("/v1/tokens", admin).status_code == 200
    sim.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        das.get("/v1/tokens", admin, timeout=2)


def test_state_survives_a_restart(tmp_path, clock, http):
    state = tmp_path / "das.json"
    first = DasSimulator(clock=clock, state_file=str(state))
    first.start()
    try:
        admin = first.seed_token("admin", roles=[ADMIN])
        created = client_for(first, http).put("/v1/tokens/app", admin, json={**FULL_BODY, "allow_path_patterns": []}).json()["result"]
        client_for(first, http).post("/v2/authz/rolebindings", admin, json=_binding(role="WorkspaceViewer", kind="workspace", rid="*",
                                                                                    subjects=[{"kind": "token", "id": "app"}]))
    finally:
        first.stop()
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    second = DasSimulator(clock=clock, state_file=str(state))
    second.start()
    try:
        das = client_for(second, http)
        assert das.get("/v1/tokens", created).status_code == 200
        assert second.bindings_for("app") == [VIEWER] and {admin, created} <= second.issued
        regenerated = das.put("/v1/tokens/app", admin, json={"regenerate": True}).json()["result"]
    finally:
        second.stop()
    third = DasSimulator(clock=clock, state_file=str(state))
    with third:
        assert third.secret_works(regenerated) and not third.secret_works(created)


def test_clock():
    frozen = Clock(start=100, frozen=True)
    frozen.advance(5)
    assert frozen.now() == 105
    frozen.set(50)
    assert frozen.now() == 50
    running = Clock()
    running.advance(3600)
    assert abs(running.now() - time.time() - 3600) < 1
    running.set(1000)
    assert 1000 <= running.now() < 1001


def test_concurrent_regenerates_are_atomic(sim, http, admin):
    sim.seed_token("app")
    results = []

    def rotate():
        results.append(client_for(sim, requests.Session()).put("/v1/tokens/app", admin, json={"regenerate": True}).json()["result"])

    threads = [threading.Thread(target=rotate) for _thread in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 8 and sum(sim.secret_works(s) for s in results) == 1


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.05)
    raise AssertionError("the simulator did not write its info file")


def _run_cli(tmp_path, *extra):
    info = tmp_path / "info.json"
    info.unlink(missing_ok=True)
    command = [sys.executable, "-m", "tests.simulators", "das", "--port", "0", "--state-file", str(tmp_path / "state.json"),
               "--info-file", str(info), *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, _wait_for(info, process), info


def _stop_cli(process):
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_cli_serves_seeds_an_admin_and_restarts_with_its_state(tmp_path, http):
    process, info, info_path = _run_cli(tmp_path, "--tls", "--switch", "update_result=empty")
    try:
        assert stat.S_IMODE(info_path.stat().st_mode) == 0o600
        assert info["url"].startswith("https://127.0.0.1:") and Path(info["ca_path"]).is_file()
        headers = {"Authorization": f"Bearer {info['admin_token']}"}
        created = http.put(info["url"] + "/v1/tokens/app", headers=headers, json=FULL_BODY, verify=info["ca_path"], timeout=5)
        assert created.status_code == 200
        update = http.put(info["url"] + "/v1/tokens/app", headers=headers, json=FULL_BODY, verify=info["ca_path"], timeout=5)
        assert update.json()["result"] == ""   # the switch reached the simulator
    finally:
        _stop_cli(process)
    process, again, _info = _run_cli(tmp_path, "--tls")
    try:
        assert again["admin_token"] == info["admin_token"] and again["ca_path"] == info["ca_path"]
        listed = http.get(again["url"] + "/v1/tokens", headers=headers, verify=again["ca_path"], timeout=5)
        assert sorted(t["id"] for t in listed.json()["result"]) == ["app", "tokenops-admin"]
    finally:
        _stop_cli(process)


def test_hang_before_commit_never_does_the_work():
    """The request arrives, the client is cut off, and the server state does not change."""
    sim = DasSimulator()
    url = sim.start()
    try:
        admin = sim.seed_token("admin", roles=[("WorkspaceAdministrator", "workspace", "*")])
        sim.faults.add("PUT", r"^/v1/tokens/app$", "hang_before_commit", delay=0.2)
        body = {"description": "", "allow_path_patterns": [".*"], "regenerate": False}
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.put(url + "/v1/tokens/app", json=body, headers={"Authorization": "Bearer " + admin}, timeout=5)
        assert sim.faults.received.is_set()
        assert sim.token("app") is None
    finally:
        sim.stop()
