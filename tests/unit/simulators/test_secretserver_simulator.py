"""Fidelity and behaviour of the Delinea Secret Server simulator (tests/simulators/secretserver.py).

The documented semantics of secretserver.md 1.1-1.5 and the behaviour model of 1.9, then one test per switch
for what the documentation leaves open (1.10 and the [INF]/[UNK] notes).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.fixtures.simulators import clock, http, start_simulator  # noqa: F401  # pylint: disable=unused-import
from tests.simulators.secretserver import AUTH_FAILED, SecretServerSimulator

REPO_ROOT = Path(__file__).resolve().parents[3]
START = 1_800_000_000.0
USER, PASSWORD = "svc-api", "s3cret-pass-word"


@pytest.fixture
def make_sim(start_simulator):
    def make(**kwargs):
        sim = start_simulator(SecretServerSimulator, **kwargs)
        sim.add_user(USER, PASSWORD)
        return sim

    return make


@pytest.fixture
def sim(make_sim):
    return make_sim()


def token(http, sim, **form):
    return http.post(sim.api_url + "/oauth2/token", data=form, timeout=5)


def login(http, sim, username=USER, password=PASSWORD, **extra):
    response = token(http, sim, username=username, password=password, grant_type="password", **extra)
    assert response.status_code == 200, response.text
    return response.json()


def refresh(http, sim, refresh_token):
    return token(http, sim, grant_type="refresh_token", refresh_token=refresh_token)


def current(http, sim, access):
    return http.get(sim.api_url + "/api/v1/users/current", headers={"Authorization": "Bearer " + access}, timeout=5)


# ---- the documented behaviour -----------------------------------------------------------------------

def test_password_grant_shape_and_lifetime(http, sim):
    body = login(http, sim)
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 1200
    assert current(http, sim, body["access_token"]).json()["userName"] == USER
    assert body["access_token"] in sim.issued and body["refresh_token"] in sim.issued


def test_on_premises_base_path(http, sim):
    assert sim.api_url.endswith("/SecretServer")
    assert http.post(sim.base_url + "/oauth2/token", data={"grant_type": "password"}, timeout=5).status_code == 404


def test_only_form_bodies(http, sim):
    response = http.post(sim.api_url + "/oauth2/token", json={"username": USER, "password": PASSWORD, "grant_type": "password"}, timeout=5)
    assert response.status_code == 400 and "error" in response.json()


@pytest.mark.parametrize("form", [{"password": "wrong"}, {"username": "nobody"}, {"domain": "CORP"}])
def test_login_failed(http, sim, form):
    fields = {"username": USER, "password": PASSWORD, "grant_type": "password", **form}
    response = token(http, sim, **fields)
    assert response.status_code == 400 and response.json() == {"error": "Login failed."}


def test_unknown_grant_type(http, sim):
    assert token(http, sim, grant_type="client_credentials").json() == {"error": "unsupported_grant_type"}
    assert token(http, sim).status_code == 400


def test_domain_user(http, sim):
    sim.add_user("alice", "alice-pass", domain="CORP")
    assert token(http, sim, username="alice", password="alice-pass", grant_type="password").status_code == 400
    assert login(http, sim, "alice", "alice-pass", domain="corp")["access_token"]


def test_otp_header_single_use(http, sim):
    sim.add_user("bob", "bob-pass", otp=True)
    assert token(http, sim, username="bob", password="bob-pass", grant_type="password").status_code == 400
    code = sim.new_otp("bob")
    ok = http.post(sim.api_url + "/oauth2/token", data={"username": "bob", "password": "bob-pass", "grant_type": "password"},
                   headers={"otp": code}, timeout=5)    # header names are case-insensitive
    assert ok.status_code == 200
    again = http.post(sim.api_url + "/oauth2/token", data={"username": "bob", "password": "bob-pass", "grant_type": "password"},
                      headers={"OTP": code}, timeout=5)
    assert again.status_code == 400
    assert sim.requests[-1].headers.get("OTP") == "<redacted>"


def test_refresh_is_single_use_and_returns_a_new_pair(http, sim):
    first = login(http, sim)
    second = refresh(http, sim, first["refresh_token"]).json()
    assert second["access_token"] != first["access_token"] and second["refresh_token"] != first["refresh_token"]
    assert refresh(http, sim, first["refresh_token"]).json() == {"error": "invalid_grant"}
    assert current(http, sim, first["access_token"]).status_code == 200     # default: the old access token lives on
    assert refresh(http, sim, "never-issued").status_code == 400


def test_refresh_token_lives_session_timeout_plus_15_minutes(http, sim, clock):
    body = login(http, sim)
    clock.advance(1200)
    assert current(http, sim, body["access_token"]).status_code == 403
    clock.advance(899)
    assert refresh(http, sim, body["refresh_token"]).status_code == 200
    other = login(http, sim)
    clock.advance(2100)
    assert refresh(http, sim, other["refresh_token"]).status_code == 400


def test_refresh_cap(http, make_sim):
    sim = make_sim(max_refreshes=3)
    pair = login(http, sim)
    for _refresh in range(3):
        pair = refresh(http, sim, pair["refresh_token"]).json()
    assert "refresh_token" in pair     # the last one is handed out, but cannot be used (refresh_token_at_cap=issued)
    assert refresh(http, sim, pair["refresh_token"]).status_code == 400
    assert sim.count_grants("refresh") == 3 and sim.count_grants("refresh", ok=False) == 1


def test_refresh_disabled(http, make_sim):
    sim = make_sim(refresh_enabled=False)
    assert "refresh_token" not in login(http, sim)


def test_unlimited_timeout_has_no_refresh_tokens(http, make_sim, clock):
    sim = make_sim(session_timeout_s=None)
    body = login(http, sim)
    assert "refresh_token" not in body and body["expires_in"] == 31536000
    clock.advance(10 * 86400)
    assert current(http, sim, body["access_token"]).status_code == 200


def test_password_grant_records_whether_a_refresh_was_possible(http, sim, clock):
    pair = login(http, sim)
    login(http, sim)
    assert sim.grants[-1]["refresh_possible"] is True
    refresh(http, sim, pair["refresh_token"])
    clock.advance(3000)
    login(http, sim)
    assert sim.grants[-1]["refresh_possible"] is False


def test_dead_tokens_on_the_api(http, sim):
    for header in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = http.get(sim.api_url + "/api/v1/users/current", headers=header, timeout=5)
        assert response.status_code == 403 and response.json() == {"message": AUTH_FAILED}


def test_oauth_expiration(http, sim):
    body = login(http, sim)
    response = http.post(sim.api_url + "/api/v1/oauth-expiration", headers={"Authorization": "Bearer " + body["access_token"]}, timeout=5)
    assert response.status_code == 200 and response.json() is True
    assert current(http, sim, body["access_token"]).status_code == 403
    assert refresh(http, sim, body["refresh_token"]).status_code == 400      # default: the session's refresh token ends too
    again = http.post(sim.api_url + "/api/v1/oauth-expiration", headers={"Authorization": "Bearer " + body["access_token"]}, timeout=5)
    assert again.status_code == 403


def test_healthcheck_is_anonymous_with_both_spellings(http, sim):
    body = http.get(sim.api_url + "/api/v1/healthcheck", timeout=5).json()
    assert body["healthy"] is True and body["Healthy"] is True and "utcNow" in body


def test_version_needs_a_token_and_has_both_shapes(http, sim):
    assert http.get(sim.api_url + "/api/v1/version", timeout=5).status_code == 403
    access = login(http, sim)["access_token"]
    body = http.get(sim.api_url + "/api/v1/version", headers={"Authorization": "Bearer " + access}, timeout=5).json()
    assert body["version"] == body["model"]["version"]


def test_platform_host(http, make_sim):
    sim = make_sim(platform=True)
    sim.platform.add_service_user("svc-platform", "client-secret")
    assert http.get(sim.platform_url + "/health", timeout=5).text.find("Healthy") >= 0
    assert http.get(sim.platform_url + "/api/v1/healthcheck", timeout=5).status_code == 404
    form = {"client_id": "svc-platform", "client_secret": "client-secret", "grant_type": "client_credentials", "scope": "xpmheadless"}
    body = http.post(sim.platform_url + "/identity/api/oauth2/token/xpmplatform", data=form, timeout=5).json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"} and body["expires_in"] == 3600
    vaults = http.get(sim.platform_url + "/vaultbroker/api/vaults", headers={"Authorization": "Bearer " + body["access_token"]},
                      timeout=5).json()["vaults"]
    default = [v for v in vaults if v["isDefault"] and v["isActive"]]
    assert len(default) == 1 and default[0]["connection"]["url"] == sim.api_url
    assert current(http, sim, body["access_token"]).json()["userName"] == "svc-platform"    # the vault takes it
    bad = http.post(sim.platform_url + "/identity/api/oauth2/token/xpmplatform", data=dict(form, client_secret="x"), timeout=5)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"
    user_token = login(http, sim)["access_token"]
    assert http.get(sim.platform_url + "/vaultbroker/api/vaults", headers={"Authorization": "Bearer " + user_token},
                    timeout=5).status_code == 401


# ---- one test per switch ----------------------------------------------------------------------------

def test_switch_auth_fail_status(http, make_sim):
    assert current(http, make_sim(auth_fail_status=401), "nope").status_code == 401


def test_switch_refresh_revokes_previous_access(http, make_sim):
    sim = make_sim(refresh_revokes_previous_access=True)
    first = login(http, sim)
    refresh(http, sim, first["refresh_token"])
    assert current(http, sim, first["access_token"]).status_code == 403


def test_switch_expiration_keeps_refresh(http, make_sim):
    sim = make_sim(expiration_kills_refresh=False)
    body = login(http, sim)
    http.post(sim.api_url + "/api/v1/oauth-expiration", headers={"Authorization": "Bearer " + body["access_token"]}, timeout=5)
    assert refresh(http, sim, body["refresh_token"]).status_code == 200


def test_switch_token_errors(http, make_sim):
    sim = make_sim(token_errors={"login": [401, "Invalid credentials"], "refresh_used": [401, "Refresh token already used"]})
    assert token(http, sim, username=USER, password="x", grant_type="password").json() == {"error": "Invalid credentials"}
    pair = login(http, sim)
    refresh(http, sim, pair["refresh_token"])
    response = refresh(http, sim, pair["refresh_token"])
    assert response.status_code == 401 and response.json()["error"] == "Refresh token already used"
    assert refresh(http, sim, "unknown").json()["error"] == "invalid_grant"      # situations not overridden keep the default


def test_switch_expires_in_skew(http, make_sim):
    assert login(http, make_sim(expires_in_skew=-1))["expires_in"] == 1199


def test_switch_refresh_token_when_disabled_null(http, make_sim):
    body = login(http, make_sim(refresh_enabled=False, refresh_token_when_disabled="null"))
    assert "refresh_token" in body and body["refresh_token"] is None


def test_switch_refresh_token_at_cap_omitted(http, make_sim):
    sim = make_sim(max_refreshes=1, refresh_token_at_cap="omitted")
    pair = refresh(http, sim, login(http, sim)["refresh_token"]).json()
    assert "refresh_token" not in pair and "access_token" in pair


def test_switch_refresh_before_expiry(http, make_sim, clock):
    sim = make_sim(refresh_before_expiry=False)
    pair = login(http, sim)
    early = refresh(http, sim, pair["refresh_token"])
    assert early.status_code == 400 and sim.refresh_usable(pair["refresh_token"]) is False     # not yet, but not spent
    clock.advance(1200)
    assert sim.refresh_usable(pair["refresh_token"]) and refresh(http, sim, pair["refresh_token"]).status_code == 200


def test_switch_token_type(http, make_sim):
    assert login(http, make_sim(token_type="Bearer"))["token_type"] == "Bearer"


def test_switch_accept_json_body(http, make_sim):
    sim = make_sim(accept_json_body=True)
    response = http.post(sim.api_url + "/oauth2/token", json={"username": USER, "password": PASSWORD, "grant_type": "password"}, timeout=5)
    assert response.status_code == 200


def test_switch_version(http, make_sim):
    sim = make_sim(version_anonymous=True, version_shape="model")
    assert http.get(sim.api_url + "/api/v1/version", timeout=5).json() == {"model": {"version": "11.7.000002"}}


@pytest.mark.parametrize("keys, present, absent", [("lower", "healthy", "Healthy"), ("upper", "Healthy", "healthy")])
def test_switch_healthcheck_keys(http, make_sim, keys, present, absent):
    body = http.get(make_sim(healthcheck_keys=keys).api_url + "/api/v1/healthcheck", timeout=5).json()
    assert body[present] is True and absent not in body


def test_switch_password_change_kills_sessions(http, make_sim):
    sim = make_sim(password_change_kills_sessions=True)
    body = login(http, sim)
    sim.set_password(USER, "changed")
    assert current(http, sim, body["access_token"]).status_code == 403 and refresh(http, sim, body["refresh_token"]).status_code == 400
    kept = make_sim()
    body = login(http, kept)
    kept.set_password(USER, "changed")
    assert current(http, kept, body["access_token"]).status_code == 200


def test_switch_platform_extra_fields(http, make_sim):
    sim = make_sim(platform=True, platform_extra_fields=True)
    sim.platform.add_service_user("c", "client-secret")
    form = {"client_id": "c", "client_secret": "client-secret", "grant_type": "client_credentials", "scope": "xpmheadless"}
    body = http.post(sim.platform_url + "/identity/api/oauth2/token/xpmplatform", data=form, timeout=5).json()
    assert {"refresh_token", "id_token", "session_expires_in"} <= set(body) and body["refresh_token"] in sim.issued


def test_unknown_switch_and_bad_choice_are_refused():
    with pytest.raises(TypeError):
        SecretServerSimulator(colour="red")
    with pytest.raises(ValueError):
        SecretServerSimulator(auth_fail_status=500)


# ---- logs, state and the command line ---------------------------------------------------------------

def test_log_and_records_hold_no_secret(http, make_sim, caplog):
    caplog.set_level(logging.DEBUG, logger="simulator")
    sim = make_sim()
    body = login(http, sim)
    refresh(http, sim, body["refresh_token"])
    current(http, sim, body["access_token"])
    text = caplog.text + json.dumps([r.headers for r in sim.requests]) + json.dumps(sim.grants)
    for secret in list(sim.issued) + [PASSWORD]:
        assert secret not in text


def test_state_survives_a_restart(http, tmp_path, clock):
    state = str(tmp_path / "state.json")
    first = SecretServerSimulator(clock=clock, state_file=state, platform=True)
    first.start()
    first.add_user(USER, PASSWORD)
    first.platform.add_service_user("c", "client-secret")
    body = login(http, first)
    first.stop()
    assert oct(os.stat(state).st_mode & 0o777) == "0o600"
    second = SecretServerSimulator(clock=clock, state_file=state, platform=True)
    second.start()
    try:
        assert current(http, second, body["access_token"]).status_code == 200
        assert refresh(http, second, body["refresh_token"]).status_code == 200
        assert second.platform.service_users == {"c": "client-secret"}
    finally:
        second.stop()


def test_command_line_writes_the_info_file(tmp_path):
    info = tmp_path / "info.json"
    proc = subprocess.Popen([sys.executable, "-m", "tests.simulators", "secretserver", "--info-file", str(info),
                             "--state-file", str(tmp_path / "state.json"), "--switch", "session_timeout_s=600"],
                            cwd=str(REPO_ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while not info.exists() and time.time() < deadline:
            time.sleep(0.05)
        document = json.loads(info.read_text())
        assert document["url"].endswith("/SecretServer") and document["platform_url"].startswith("http://127.0.0.1:")
        session = requests.Session()
        session.trust_env = False
        body = session.post(document["url"] + "/oauth2/token", data={"username": "svc-reports", "domain": "CORP",
                                                                     "password": document["password"], "grant_type": "password"},
                            timeout=5).json()
        assert body["expires_in"] == 600
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
