"""Fidelity and behaviour of the SolarWinds DPA simulator (tests/simulators/dpa.py).

The documented behaviour (dpa.md 2.3-2.8) and one test per switch for what section 2.9 leaves open.
"""

from __future__ import annotations

import functools
import base64
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
from tests.simulators.dpa import DEFAULT_REFRESH_LIFETIME, DpaSimulator

REPO_ROOT = Path(__file__).resolve().parents[3]
START = 1_800_000_000.0
TOKEN = "/iwc/api/security/oauth/token"
MONITORS = "/iwc/api/databases/monitor-information"


@pytest.fixture
def make_sim(start_simulator):
    return functools.partial(start_simulator, DpaSimulator)


@pytest.fixture
def sim(make_sim):
    return make_sim()


def exchange(http, sim, refresh_token, grant_type="refresh_token"):
    return http.post(sim.base_url + TOKEN, data={"grant_type": grant_type, "refresh_token": refresh_token}, timeout=10)


def monitors(http, sim, access, scheme="bearer", path=MONITORS):
    return http.get(sim.base_url + path, headers={"Authorization": "%s %s" % (scheme, access)}, timeout=10)


def decode(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# ---- refresh tokens -------------------------------------------------------------------------

def test_refresh_token_is_an_hs256_jwt_like_the_documented_sample(sim, clock):
    token = sim.issue_refresh_token("MyToken")
    header, payload, _signature = token.split(".")
    # The docs' sample begins eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJNeVRva2VuIiw: {"alg":"HS256"} and {"sub":"MyToken",
    assert token.startswith("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJNeVRva2VuIiw")
    assert decode(header) == {"alg": "HS256"}
    claims = decode(payload)
    assert claims["iat"] == int(START) and claims["exp"] == int(START) + DEFAULT_REFRESH_LIFETIME
    assert token in sim.issued


def test_refresh_token_claims_per_token(sim):
    forever = decode(sim.issue_refresh_token("forever", lifetime=None).split(".")[1])
    no_iat = decode(sim.issue_refresh_token("no-iat", iat=False).split(".")[1])
    assert "exp" not in forever and "iat" in forever
    assert "iat" not in no_iat and "exp" in no_iat


def test_no_refresh_token_api(sim, http):
    """DPA has no REST endpoint that lists, creates or deletes refresh tokens (dpa.md 2.3)."""
    for method, path in (("GET", "/iwc/api/security/refresh-tokens"), ("POST", "/iwc/api/security/refresh-tokens"),
                         ("DELETE", "/iwc/api/security/oauth/token/x"), ("GET", "/iwc/api/tokens")):
        response = http.request(method, sim.base_url + path, timeout=10)
        assert response.status_code == 404
        assert response.json()["error"] == "Not Found" and response.json()["path"] == path


# ---- the exchange ---------------------------------------------------------------------------

def test_exchange_answers_like_the_psdpa_fixture(sim, http):
    response = exchange(http, sim, sim.issue_refresh_token("reporting"))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "id", "userType", "jti"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 900 and body["id"] == -1 and body["userType"] == "repo"
    assert body["access_token"] in sim.issued and body["access_token"].count(".") == 2
    assert decode(body["access_token"].split(".")[1])["jti"] == body["jti"]


@pytest.mark.parametrize("case", ["forged", "deleted", "expired", "unknown string"])
@pytest.mark.parametrize("status", [400, 401])
def test_bad_refresh_token_is_invalid_grant(make_sim, clock, http, case, status):
    sim = make_sim(bad_refresh_status=status)
    token = sim.issue_refresh_token("reporting", lifetime=60)
    if case == "forged":
        header, payload, _sig = token.split(".")
        token = header + "." + payload + "." + base64.urlsafe_b64encode(b"x" * 32).rstrip(b"=").decode()
    elif case == "deleted":
        sim.delete_refresh_token(token)
    elif case == "expired":
        clock.advance(60)
    else:
        token = "not-a-token"
    response = exchange(http, sim, token)
    assert response.status_code == status
    assert response.json() == {"error": "invalid_grant", "error_description": "Invalid refresh token"}


def test_never_expiring_token_works_years_later(sim, clock, http):
    token = sim.issue_refresh_token("forever", lifetime=None)
    clock.advance(20 * 365 * 86400)
    assert exchange(http, sim, token).status_code == 200


def test_grant_type_and_form_body_are_required(sim, http):
    token = sim.issue_refresh_token("reporting")
    wrong = exchange(http, sim, token, grant_type="password")
    assert wrong.status_code == 400 and wrong.json()["error"] == "unsupported_grant_type"
    as_json = http.post(sim.base_url + TOKEN, json={"grant_type": "refresh_token", "refresh_token": token}, timeout=10)
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"


# ---- access tokens and the monitor endpoints ------------------------------------------------

def test_monitor_information(sim, http):
    access = exchange(http, sim, sim.issue_refresh_token("reporting")).json()["access_token"]
    listing = monitors(http, sim, access)
    assert listing.status_code == 200 and [m["dbId"] for m in listing.json()["data"]] == [1, 2]
    assert {"dbId", "name", "databaseType", "monitorState", "linkedToVirtualMachine"} <= set(listing.json()["data"][0])
    one = monitors(http, sim, access, scheme="Bearer", path="/iwc/api/databases/2/monitor-information")
    assert one.status_code == 200 and one.json()["data"]["name"] == "ORDERS-ORA"
    missing = monitors(http, sim, access, path="/iwc/api/databases/99/monitor-information")
    assert missing.status_code == 422                       # PSDPA's "not found"
    anonymous = http.get(sim.base_url + MONITORS, timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"


@pytest.mark.parametrize("how", ["lifetime", "reboot", "refresh deleted", "refresh expired"])
def test_access_token_dies(sim, clock, http, how):
    refresh = sim.issue_refresh_token("reporting", lifetime=3600)
    access = exchange(http, sim, refresh).json()["access_token"]
    assert monitors(http, sim, access).status_code == 200 and sim.access_token_works(access)
    if how == "lifetime":
        clock.advance(900)
    elif how == "reboot":
        sim.reboot()
    elif how == "refresh deleted":
        sim.delete_refresh_token(refresh)
    else:
        clock.set(START + 3600)
    response = monitors(http, sim, access)
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"
    assert not sim.access_token_works(access)
    if how in ("lifetime", "reboot"):
        assert exchange(http, sim, refresh).status_code == 200   # the refresh token lives on


# ---- switches (dpa.md 2.9) ------------------------------------------------------------------

def test_switch_bad_access_status(make_sim, http):
    sim = make_sim(bad_access_status=403)
    response = monitors(http, sim, "no-such-token")
    assert response.status_code == 403 and response.json()["error"] == "invalid_token"


def test_switch_error_style_spring(make_sim, http):
    sim = make_sim(error_style="spring")
    body = exchange(http, sim, "bad").json()
    assert body["status"] == 400 and body["error"] == "Bad Request" and body["path"] == TOKEN and "timestamp" in body


def test_switch_token_response_fields_and_lifetime(make_sim, clock, http):
    sim = make_sim(token_response="minimal", access_lifetime=365, expires_in_field="absent", token_type="Bearer")
    body = exchange(http, sim, sim.issue_refresh_token("reporting")).json()
    assert set(body) == {"access_token", "token_type"} and body["token_type"] == "Bearer"
    clock.advance(364)
    assert monitors(http, sim, body["access_token"]).status_code == 200
    clock.advance(1)
    assert monitors(http, sim, body["access_token"]).status_code == 401


def test_switch_monitor_access_forbidden(make_sim, http):
    sim = make_sim(monitor_access="forbidden")
    access = exchange(http, sim, sim.issue_refresh_token("reporting")).json()["access_token"]
    response = monitors(http, sim, access)
    assert response.status_code == 403 and response.json()["error"] == "access_denied"
    assert sim.access_token_works(access)


@pytest.mark.parametrize("switches", [{"bad_refresh_status": 404}, {"error_style": "xml"}, {"access_lifetime": 0}, {"colour": "red"}])
def test_switch_values_are_checked(switches):
    with pytest.raises((ValueError, TypeError)):
        DpaSimulator(**switches)


# ---- the harness: TLS, faults, state, log, command line -------------------------------------

def test_tls_with_its_own_ca(make_sim, http):
    sim = make_sim(tls=True)
    assert sim.base_url.startswith("https://")
    response = http.post(sim.base_url + TOKEN, data={"grant_type": "refresh_token", "refresh_token": sim.issue_refresh_token("r")},
                         verify=sim.ca_path, timeout=10)
    assert response.status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        http.get(sim.base_url + MONITORS, verify=True, timeout=10)


def test_faults_apply_to_the_exchange(sim, http):
    token = sim.issue_refresh_token("reporting")
    sim.faults.add("POST", r"/security/oauth/token$", "retry_after", retry_after=2)
    limited = exchange(http, sim, token)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert exchange(http, sim, token).status_code == 200 and sim.count("POST", TOKEN) == 2


def test_restart_keeps_refresh_tokens_and_loses_access_tokens(tmp_path, clock, http):
    state = str(tmp_path / "dpa-state.json")
    first = DpaSimulator(clock=clock, state_file=state)
    first.start()
    refresh = first.issue_refresh_token("reporting")
    access = exchange(http, first, refresh).json()["access_token"]
    first.stop()
    assert oct(os.stat(state).st_mode & 0o777) == "0o600"
    second = DpaSimulator(clock=clock, state_file=state)
    second.start()
    try:
        assert monitors(http, second, access).status_code == 401          # a restart is a reboot
        assert exchange(http, second, refresh).status_code == 200
        assert second.live_refresh_token("reporting") == refresh and refresh in second.issued
    finally:
        second.stop()


def test_log_has_no_token(sim, http, caplog):
    caplog.set_level(logging.DEBUG, logger="simulator")
    refresh = sim.issue_refresh_token("reporting")
    access = exchange(http, sim, refresh).json()["access_token"]
    monitors(http, sim, access)
    exchange(http, sim, refresh + "x")
    assert caplog.text and refresh not in caplog.text and access not in caplog.text
    assert all(r.headers.get("Authorization") in (None, "<redacted>") for r in sim.requests)


def test_command_line_hands_out_the_same_demo_tokens_after_a_restart(tmp_path):
    info, state = tmp_path / "info.json", tmp_path / "state.json"

    def start():
        if info.exists():
            info.unlink()
        proc = subprocess.Popen([sys.executable, "-m", "tests.simulators", "dpa", "--tls", "--state-file", str(state), "--info-file", str(info)],
                                cwd=str(REPO_ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while not info.exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)
        return proc, json.loads(info.read_text())

    proc, first = start()
    try:
        assert set(first["refresh_tokens"]) == {"reporting", "archive"} and first["ca_path"]
        token = first["refresh_tokens"]["reporting"]
        response = requests.post(first["url"] + TOKEN, data={"grant_type": "refresh_token", "refresh_token": token},
                                 verify=first["ca_path"], timeout=10)
        assert response.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    proc, second = start()
    try:
        assert second["refresh_tokens"] == first["refresh_tokens"]
        assert oct(os.stat(info).st_mode & 0o777) == "0o600"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
