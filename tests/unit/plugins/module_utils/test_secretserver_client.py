# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Secret Server client (plugins/module_utils/secretserver.py): input checks, error parsing, and every call
against the Secret Server simulator (tests/simulators/secretserver.py)."""

from __future__ import annotations

import pytest

from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError, HttpClient
from ansible_collections.tokenops.rotation.plugins.module_utils.secretserver import (
    PRODUCT,
    SecretServerClient,
    error_parser,
    validate_url,
)
from tests.simulators.base import Clock
from tests.simulators.secretserver import SecretServerSimulator

START = 1_800_000_000.0


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_client():
    started = []

    def make(**settings):
        sim = SecretServerSimulator(clock=Clock(start=START, frozen=True), platform=True, **settings)
        sim.start()
        sim.add_user("svc", "pass-word-1")
        sim.platform.add_service_user("client", "client-secret")
        http = HttpClient(PRODUCT, sim.api_url, retries=1, timeout=5, sleep=lambda seconds: None, error_parser=error_parser)
        seen = []
        started.append((sim, http))
        return sim, SecretServerClient(http, seen.append), seen

    yield make
    for sim, http in started:
        http.close()
        sim.stop()


@pytest.mark.parametrize("url", ["https://pam.example.com/SecretServer", "http://127.0.0.1:8080", "https://t.secretservercloud.com"])
def test_validate_url_accepts(url):
    validate_url(url)


@pytest.mark.parametrize("url", ["", None, "pam.example.com", "ftp://x/SecretServer", "https://", "https://x/y?z=1", "https://x/#f"])
def test_validate_url_rejects(url):
    with pytest.raises(ValueError):
        validate_url(url)


class FakeResponse:
    def __init__(self, status, body=None, text=None, content_type="application/json"):
        self.status_code = status
        self._body = body
        self.text = text if text is not None else ""
        self.headers = {"Content-Type": content_type}

    def json(self):
        if self._body is None:
            raise ValueError("no json")
        return self._body


@pytest.mark.parametrize("response, expected", [
    (FakeResponse(400, {"error": "Login failed."}), (None, "Login failed.")),
    (FakeResponse(400, {"error": "invalid_grant"}), ("invalid_grant", None)),
    (FakeResponse(403, {"message": "Authentication failed or expired token."}), (None, "Authentication failed or expired token.")),
    (FakeResponse(400, {"message": "Bad", "messageDetail": "d", "errorCode": "API_X"}), ("API_X", "Bad")),
    (FakeResponse(200, None, "<html>Error</html>", "text/html"), (None, "an HTML page instead of JSON")),
    (FakeResponse(502, None, "bad gateway", "text/plain"), (None, "bad gateway")),
    (FakeResponse(500, [1, 2]), (None, None)),
])
def test_error_parser(response, expected):
    assert error_parser(response) == expected


def test_password_grant_registers_both_tokens(make_client):
    sim, client, seen = make_client()
    grant = client.password_grant(sim.api_url, "svc", "pass-word-1")
    assert grant.expires_in == 1200 and grant.token_type == "bearer"
    assert seen == [grant.access_token, grant.refresh_token]
    assert sim.count_grants("password") == 1


def test_refresh_grant(make_client):
    sim, client, _seen = make_client()
    first = client.password_grant(sim.api_url, "svc", "pass-word-1")
    second = client.refresh_grant(sim.api_url, first.refresh_token, "svc")
    assert second.refresh_token and second.refresh_token != first.refresh_token
    with pytest.raises(ApiError) as caught:
        client.refresh_grant(sim.api_url, first.refresh_token, "svc")
    assert caught.value.status == 400 and caught.value.code == "invalid_grant" and not caught.value.outcome_unknown
    assert first.refresh_token not in str(caught.value)


def test_failed_login_names_the_step_and_the_error(make_client):
    sim, client, _seen = make_client()
    with pytest.raises(ApiError) as caught:
        client.password_grant(sim.api_url, "svc", "wrong")
    text = str(caught.value)
    assert text == "Delinea Secret Server: password grant for svc failed: POST /SecretServer/oauth2/token returned HTTP 400: Login failed."
    assert sim.count("POST") == 1       # a grant is never repeated


def test_grants_are_not_retried_on_server_errors(make_client):
    sim, client, _seen = make_client()
    sim.faults.add("POST", "/oauth2/token$", "status", status=503)
    with pytest.raises(ApiError) as caught:
        client.password_grant(sim.api_url, "svc", "pass-word-1")
    assert caught.value.status == 503 and sim.count("POST") == 1


def test_lost_answer_is_outcome_unknown(make_client):
    sim, client, _seen = make_client()
    first = client.password_grant(sim.api_url, "svc", "pass-word-1")
    sim.faults.add("POST", "/oauth2/token$", "drop_after_commit")
    with pytest.raises(ApiError) as caught:
        client.refresh_grant(sim.api_url, first.refresh_token, "svc")
    assert caught.value.outcome_unknown and not sim.refresh_usable(first.refresh_token)


def test_null_refresh_token_means_none(make_client):
    sim, client, _seen = make_client(refresh_enabled=False, refresh_token_when_disabled="null")
    assert client.password_grant(sim.api_url, "svc", "pass-word-1").refresh_token is None


class CannedHttp:
    """An HttpClient stand-in answering every request with one response."""

    def __init__(self, response):
        self.response = response

    def request(self, *args, **kwargs):
        return self.response


@pytest.mark.parametrize("response, needle", [
    (FakeResponse(200, None, "<html>Login failed</html>", "text/html"), "not JSON"),
    (FakeResponse(200, {"token_type": "bearer"}), "without an access_token"),
    (FakeResponse(200, {"access_token": "a-token-value", "expires_in": "soon"}), "numeric expires_in"),
    (FakeResponse(200, ["a-token-value"]), "without a token"),
])
def test_a_200_without_a_usable_token_is_an_error(response, needle):
    seen = []
    client = SecretServerClient(CannedHttp(response), seen.append)
    with pytest.raises(ApiError) as caught:
        client.password_grant("https://pam.example.com/SecretServer", "svc", "pw")
    assert needle in str(caught.value) and caught.value.status == 200


def test_check_and_expire(make_client):
    sim, client, _seen = make_client(auth_fail_status=401)
    grant = client.password_grant(sim.api_url, "svc", "pass-word-1")
    status, user = client.check(sim.api_url, grant.access_token)
    assert status == 200 and user["username"] == "svc"
    assert client.expire(sim.api_url, grant.access_token) is True
    assert client.check(sim.api_url, grant.access_token) == (401, None)
    assert client.expire(sim.api_url, grant.access_token) is False      # already dead


def test_platform_grant_and_vault(make_client):
    sim, client, seen = make_client(platform_extra_fields=True)
    grant = client.platform_grant(sim.platform_url, "client", "client-secret")
    assert grant.expires_in == 3600 and len(seen) == 3          # access, refresh and id token: all registered
    assert client.vault_url(sim.platform_url, grant.access_token) == sim.api_url
    assert client.vault_url(sim.platform_url, grant.access_token, "Secret Server") == sim.api_url
    with pytest.raises(ApiError) as caught:
        client.vault_url(sim.platform_url, grant.access_token, "Retired vault")
    assert "no active vault named Retired vault" in str(caught.value) and "Retired vault (inactive)" in str(caught.value)
