# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SolarWinds DPA client (plugins/module_utils/dpa.py): input checks, JWT claims, expiry, the
exchange and the probe against the DPA simulator, and the access-token cache. Also the two additions
to the shared mechanism the DPA modules need (the "removed" action, TokenModule(policy_options=False))."""

from __future__ import annotations

import base64
import datetime
import json
import os
from pathlib import Path

import pytest

from ansible_collections.tokenops.rotation.plugins.module_utils.dpa import (
    DEFAULT_ACCESS_LIFETIME,
    PRODUCT,
    AccessToken,
    AccessTokens,
    DpaClient,
    Expiry,
    api_url,
    cache_fields,
    cached_access_token,
    read_claims,
    rejected,
    threshold_seconds,
    validate_token_id,
)
from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError, HttpClient
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import ACTIONS, result_for
from tests.simulators.base import Clock, SimServer
from tests.simulators.dpa import DpaSimulator

UTC = datetime.timezone.utc
NOW = datetime.datetime(2027, 1, 15, 8, 0, 0, tzinfo=UTC)
DAY = 86400


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


def jwt(payload, header=None):
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return "%s.%s.c2lnbmF0dXJl" % (part(header or {"alg": "HS256"}), part(payload))


# ---- input --------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("https://dpa.example.com:8124", "https://dpa.example.com:8124/iwc/api"),
    ("https://dpa.example.com:8124/", "https://dpa.example.com:8124/iwc/api"),
    ("https://dpa.example.com:8124/iwc/api/", "https://dpa.example.com:8124/iwc/api"),
    ("http://10.0.0.5:8123/dpa", "http://10.0.0.5:8123/dpa/iwc/api"),
])
def test_api_url(url, expected):
    assert api_url(url) == expected


@pytest.mark.parametrize("url", ["dpa.example.com:8124", "ftp://dpa", "https://", "", None, "https://dpa/?a=1", "https://u:pw@/x"])
def test_api_url_refuses_what_is_no_server_url_without_repeating_it(url):
    with pytest.raises(ValueError) as info:
        api_url(url)
    assert "pw" not in str(info.value)


@pytest.mark.parametrize("token_id", ["reporting", "capacity-planning", "a.b_c~d", "R2"])
def test_token_id_accepts(token_id):
    validate_token_id(token_id)


@pytest.mark.parametrize("token_id", ["", None, ".", "..", "a/b", "a b", ".hidden", "x?y", 7])
def test_token_id_rejects(token_id):
    with pytest.raises(ValueError):
        validate_token_id(token_id)


def test_thresholds_are_durations():
    assert threshold_seconds("30d", "warn_before") == 30 * DAY
    assert threshold_seconds("", "warn_before") is None and threshold_seconds(None, "x") is None
    with pytest.raises(ValueError, match="warn_before must be a duration"):
        threshold_seconds("20%", "warn_before")
    with pytest.raises(ValueError, match="fail_before"):
        threshold_seconds("soon", "fail_before")


# ---- claims ---------------------------------------------------------------------------------------

def test_claims_of_a_dpa_refresh_token():
    claims = read_claims(jwt({"sub": "MyToken", "iat": 1700000000, "exp": 1707776000}))
    assert claims.name == "MyToken" and not claims.never_expires
    assert claims.issued_at == datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert (claims.expires_at - claims.issued_at).days == 90


def test_claims_without_exp_or_iat():
    claims = read_claims(jwt({"sub": "forever"}))
    assert claims.never_expires and claims.issued_at is None


def test_claims_of_the_simulator_tokens_need_no_key():
    sim = DpaSimulator(clock=Clock(start=1_800_000_000, frozen=True))
    claims = read_claims(sim.issue_refresh_token("reporting", iat=False))
    assert claims.name == "reporting" and claims.issued_at is None
    assert claims.expires_at == datetime.datetime.fromtimestamp(1_800_000_000 + 90 * DAY, UTC)


@pytest.mark.parametrize("token, message", [
    ("", "is empty"),
    ("plain-text-token", "is not a JWT"),
    ("a.b", "is not a JWT"),
    ("a.b.c.d", "is not a JWT"),
    ("eyJhbGciOiJIUzI1NiJ9..c2ln", "is not a JWT"),
    ("eyJhbGciOiJIUzI1NiJ9.e30+.c2ln", "is not a JWT"),
    ("eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln", "payload is not base64url-encoded JSON"),
    (jwt({"sub": "x"}, header=["alg"]), "header is not a JSON object"),
    (jwt({"sub": "x"}, header={"typ": "JWT"}), "is not a signed JWT"),
    (jwt({"sub": "x"}, header={"alg": "none"}), "is not a signed JWT"),
    (jwt({"iat": 1}), "has no sub claim"),
    (jwt({"sub": ""}), "has no sub claim"),
    (jwt({"sub": "x", "exp": "tomorrow"}), "the exp claim is not a number"),
    (jwt({"sub": "x", "iat": True}), "the iat claim is not a number"),
    (jwt({"sub": "x", "exp": 10 ** 20}), "the exp claim is out of range"),
])
def test_claims_refuse_what_is_no_refresh_token_without_repeating_it(token, message):
    with pytest.raises(ValueError) as info:
        read_claims(token, "the token")
    assert message in str(info.value) and str(info.value).startswith("the token")
    if len(token) > 12:
        assert token not in str(info.value) and token.split(".")[-1] not in str(info.value)


# ---- expiry ----------------------------------------------------------------------------------------

def claims_expiring_in(seconds, iat=True):
    payload = {"sub": "reporting", "exp": int(NOW.timestamp() + seconds)}
    if iat:
        payload["iat"] = int(NOW.timestamp() - 80 * DAY)
    return read_claims(jwt(payload))


@pytest.mark.parametrize("left, status", [
    (40 * DAY, "ok"), (14 * DAY + 1, "ok"), (14 * DAY - 1, "warn"), (7 * DAY + 1, "warn"), (7 * DAY - 1, "fail"), (1, "fail"),
    (0, "expired"), (-DAY, "expired"),
])
def test_expiry_against_warn_and_fail(left, status):
    expiry = Expiry(claims_expiring_in(left), NOW, warn_before=14 * DAY, fail_before=7 * DAY)
    assert expiry.status == status
    if status in ("warn", "fail"):
        assert ("%s_before" % status) in expiry.text and "Refresh Token Management" in expiry.text and "state: rotated" in expiry.text


def test_expiry_without_thresholds_and_never():
    assert Expiry(claims_expiring_in(DAY), NOW).status == "ok"
    assert Expiry(claims_expiring_in(-1), NOW).status == "expired"
    never = Expiry(read_claims(jwt({"sub": "forever"})), NOW, warn_before=14 * DAY, fail_before=7 * DAY)
    assert never.status == "never" and never.days_left is None and "never expires" in never.text


def test_expiry_text_in_words():
    expiry = Expiry(claims_expiring_in(10 * DAY + 3600), NOW, warn_before=14 * DAY)
    assert expiry.days_left == 10
    assert expiry.text == ("SolarWinds DPA refresh token 'reporting' expires at 2027-01-25T09:00:00Z, in 10 days (warn_before: 14 days): "
                           "create a new refresh token in DPA (Options > Users & Contacts > Refresh Token Management) and adopt it "
                           "with state: rotated")


# ---- the client against the simulator -----------------------------------------------------------

@pytest.fixture
def make_dpa():
    started = []

    def make(**switches):
        sim = DpaSimulator(tls=True, **switches)
        sim.start()
        started.append(sim)
        http = HttpClient(PRODUCT, api_url(sim.base_url), ca_path=sim.ca_path, sleep=lambda _s: None)
        return sim, DpaClient(http)

    yield make
    for sim in started:
        sim.stop()


def test_exchange_and_probe(make_dpa):
    sim, client = make_dpa()
    refresh = sim.issue_refresh_token("reporting")
    before = datetime.datetime.now(UTC)
    access = client.exchange(refresh, "exchange")
    assert access.value in sim.issued and access.token_type == "bearer"
    assert 899 <= (access.expires_at - before).total_seconds() <= 902
    probe = client.probe(access)
    assert (probe.status, probe.works, probe.authorized, probe.monitor_count) == (200, True, True, 2)
    request = sim.requests[0]
    assert request.method == "POST" and request.path == "/iwc/api/security/oauth/token"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize("switches, lifetime, token_type", [
    ({"expires_in_field": "absent"}, DEFAULT_ACCESS_LIFETIME, "bearer"),
    ({"access_lifetime": 365}, 365, "bearer"),
    ({"token_response": "minimal", "token_type": "Bearer"}, 900, "Bearer"),
])
def test_exchange_under_the_open_questions(make_dpa, switches, lifetime, token_type):
    sim, client = make_dpa(**switches)
    before = datetime.datetime.now(UTC)
    access = client.exchange(sim.issue_refresh_token("reporting"), "exchange")
    assert abs((access.expires_at - before).total_seconds() - lifetime) < 3 and access.token_type == token_type
    assert client.probe(access).works


@pytest.mark.parametrize("status", [400, 401])
def test_a_refused_refresh_token_is_rejected_and_named(make_dpa, status):
    sim, client = make_dpa(bad_refresh_status=status)
    token = sim.issue_refresh_token("reporting")
    sim.delete_refresh_token(token)
    with pytest.raises(ApiError) as info:
        client.exchange(token, "validate refresh token 'reporting'")
    assert rejected(info.value) and info.value.status == status and info.value.code == "invalid_grant"
    assert str(info.value).startswith("SolarWinds DPA: validate refresh token 'reporting' failed: POST /iwc/api/security/oauth/token")
    assert token not in str(info.value)


def test_server_errors_are_not_a_rejection_and_503_is_retried(make_dpa):
    sim, client = make_dpa()
    token = sim.issue_refresh_token("reporting")
    sim.faults.add("POST", "oauth/token$", "status", status=503, times=2)
    assert client.exchange(token, "exchange").value and sim.count("POST") == 3
    sim.faults.add("POST", "oauth/token$", "status", status=500)
    with pytest.raises(ApiError) as info:
        client.exchange(token, "exchange")
    assert not rejected(info.value) and info.value.status == 500


@pytest.mark.parametrize("switches, status, works, authorized", [
    ({}, 401, False, False),
    ({"bad_access_status": 403}, 403, False, False),
    ({"monitor_access": "forbidden"}, 403, True, False),
])
def test_probe_tells_dead_from_forbidden(make_dpa, switches, status, works, authorized):
    sim, client = make_dpa(**switches)
    access = client.exchange(sim.issue_refresh_token("reporting"), "exchange")
    if switches.get("monitor_access") != "forbidden":
        sim.reboot()
    probe = client.probe(access)
    assert (probe.status, probe.works, probe.authorized) == (status, works, authorized)


def test_an_answer_without_access_token_is_an_error_and_an_echoed_token_is_scrubbed():
    server = SimServer()
    server.route("POST", r"^/iwc/api/security/oauth/token$",
                 lambda req: (400, {"error": "invalid_grant", "error_description": "bad token " + req.body.decode().split("refresh_token=")[1]}))
    server.start()
    try:
        client = DpaClient(HttpClient(PRODUCT, api_url(server.base_url), sleep=lambda _s: None))
        secret = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2ln"
        with pytest.raises(ApiError) as info:
            client.exchange(secret, "exchange")
        assert secret not in str(info.value) and "<redacted>" in str(info.value)
        server.route("POST", r"^/iwc/api/security/oauth/token2$", lambda req: (200, {"token_type": "bearer"}))
    finally:
        server.stop()
    empty = SimServer()
    empty.route("POST", r"^/iwc/api/security/oauth/token$", lambda req: (200, {"token_type": "bearer", "expires_in": 900}))
    empty.start()
    try:
        with pytest.raises(ApiError, match="the answer has no access_token"):
            DpaClient(HttpClient(PRODUCT, api_url(empty.base_url))).exchange("a.b.c", "exchange")
    finally:
        empty.stop()


# ---- the access-token cache ---------------------------------------------------------------------

def test_cache_fields_round_trip():
    access = AccessToken("secret-access", "bearer", NOW)
    assert cache_fields(access) == {"access_token": "secret-access", "access_token_type": "bearer", "access_expires_at": "2027-01-15T08:00:00Z"}
    back = cached_access_token(cache_fields(access))
    assert (back.value, back.token_type, back.expires_at) == ("secret-access", "bearer", NOW)
    assert cached_access_token({}) is None and cached_access_token({"access_token": "x"}) is None


def test_access_tokens_reuse_fresh_and_renew_dead_or_near_expiry(make_dpa):
    sim, client = make_dpa()
    refresh = sim.issue_refresh_token("reporting")
    record = dict(secret=refresh, **cache_fields(client.exchange(refresh, "exchange")))
    tokens = AccessTokens(client, renew_before=60)
    sim.reset_counts()
    access, renewed, how, probe = tokens.current(record, "step")
    assert (access.value, renewed, how, probe.works) == (record["access_token"], False, "probe", True)
    assert sim.count("POST") == 0 and sim.count("GET") == 1
    sim.reboot()
    access, renewed, how, probe = tokens.current(record, "step")
    assert renewed and how == "exchange" and probe is None and access.value != record["access_token"]
    record.update(cache_fields(access))
    sim.reset_counts()
    access, renewed, how, _probe = AccessTokens(client, renew_before=900).current(record, "step")
    assert renewed and how == "exchange" and sim.count("GET") == 0    # near expiry: no probe, a new exchange
    sim.reboot()
    access, renewed, how, _probe = AccessTokens(client, probe=False).current(dict(record, **cache_fields(access)), "step")
    assert not renewed and how == "cache"                                # without the probe a dead token is not noticed
    assert not sim.access_token_works(access.value)


# ---- the shared mechanism's additions ------------------------------------------------------------

def test_removed_action_is_a_change():
    assert "removed" in ACTIONS
    result = result_for("reporting", "removed", record={})
    assert result["changed"] is True and result["action"] == "removed"


def test_token_module_without_policy_options(monkeypatch):
    """policy_options=False: no rotate_before/max_age (DPA cannot rotate), and no self.policy."""
    from ansible.module_utils import basic
    from ansible.module_utils.common.text.converters import to_bytes
    from ansible_collections.tokenops.rotation.plugins.module_utils.module import TokenModule

    class Probe(TokenModule):
        product, product_name, url_env = "x", "X", "X_URL"

    def build(args, **kwargs):
        monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args})))
        monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
        return Probe({}, run_options=False, **kwargs)

    # The default file store's folder must exist (a missing volume is refused): this test makes it in its own HOME.
    Path(os.environ["HOME"], ".ansible", "tokenops").mkdir(parents=True)
    without = build({"url": "https://x", "store": {"vault_password": "p"}}, policy_options=False)
    assert without.policy is None and "rotate_before" not in without.params and "max_age" not in without.params
    with_policy = build({"url": "https://x", "store": {"vault_password": "p"}})
    assert with_policy.policy is not None and with_policy.params["rotate_before"] == "20%"
    with pytest.raises(SystemExit):
        build({"url": "https://x", "rotate_before": "1d", "store": {"vault_password": "p"}}, policy_options=False)


# ---- the steps on the driver (in process: a file store and the simulator) ------------------------

class FakeModule:
    """What the driver and DpaSteps use of the module: options, the store, the guarded HTTP client, warnings."""

    def __init__(self, store, sim, state="present", check=False, return_access_token=False):
        from types import SimpleNamespace

        from ansible_collections.tokenops.rotation.plugins.module_utils.driver import ChangeGuard
        self.module = SimpleNamespace(check_mode=check)
        self.params = {"state": state, "return_access_token": return_access_token, "return_secret": False}
        self.guard = ChangeGuard()
        # The guard is wired as in a guarded module: a change without this run's intent would raise IntentMissing.
        self.http = HttpClient(PRODUCT, api_url(sim.base_url), ca_path=sim.ca_path, sleep=lambda _s: None, change_guard=self.guard)
        self.redactor = self.http.redactor
        self.store = store
        self.lease, self.lock_timeout, self.renew_before = 60.0, 300.0, 60.0
        self.warnings = []

    def secret(self, value):
        self.redactor.add(value)
        return value

    def warn(self, text):
        self.warnings.append(text)

    @staticmethod
    def store_path(token_id, explicit=None):
        return explicit or "t/dpa/sim/%s" % token_id


class ConflictOnce:
    """A store whose next write loses a check-and-set race (another writer got there first)."""

    def __init__(self, store):
        self.store = store
        self.armed = False

    def __getattr__(self, name):
        return getattr(self.store, name)

    def write(self, path, data, cas):
        from ansible_collections.tokenops.rotation.plugins.module_utils.store import StoreConflict
        if self.armed:
            self.armed = False
            raise StoreConflict("version moved on")
        return self.store.write(path, data, cas)


@pytest.fixture
def on_driver(tmp_path, make_dpa):
    """run(token=..., **options) -> (result, record, module): one token through the driver with DpaSteps."""
    from ansible_collections.tokenops.rotation.plugins.module_utils.driver import Driver
    from ansible_collections.tokenops.rotation.plugins.module_utils.dpa_rotation import DpaSteps
    from ansible_collections.tokenops.rotation.plugins.module_utils.store_file import FileStore
    sim, _client = make_dpa()
    store = ConflictOnce(FileStore(str(tmp_path / "store.vault"), vault_password="pw"))

    def run(token=None, state="present", check=False, return_access_token=False, warn="30d", fail="7d"):
        mod = FakeModule(store, sim, state=state, check=check, return_access_token=return_access_token)
        spec = {"id": "reporting", "store_path": None, "refresh_token": token, "claims": read_claims(token) if token else None,
                "warn_seconds": threshold_seconds(warn, "warn_before"), "fail_seconds": threshold_seconds(fail, "fail_before")}
        driver = Driver(mod, DpaSteps(mod, DpaClient(mod.http)))
        try:
            result = driver.run(spec)
        finally:
            driver.close()
            mod.http.close()
        return result, store.read("t/dpa/sim/reporting").data, mod

    run.sim, run.store = sim, store
    return run


def stale(record, new, name, live=False):
    """An adoption of `new` left by a run on another host; its lease ran out (or, live, it still runs)."""
    until = "2999-01-01T00:00:00Z" if live else "2020-01-01T00:01:00Z"
    started = datetime.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if live else "2020-01-01T00:00:00Z"
    return dict(record, pending={"rotation_id": "r-1", "step": "adopting", "started_at": started, "holder": "elsewhere:1",
                                 "lease_expires_at": until, "secret_usable": True, "new_secret": new, "new_token_id": name})


def stuck(run, live=False):
    """'reporting-old' stored, and an adoption of 'reporting-new' by a run elsewhere recorded on it; returns both tokens."""
    old, new = run.sim.issue_refresh_token("reporting-old"), run.sim.issue_refresh_token("reporting-new")
    _result, record, _mod = run(old)
    run.store.write("t/dpa/sim/reporting", stale(record, new, "reporting-new", live), run.store.read("t/dpa/sim/reporting").version)
    return old, new


def test_store_adopt_and_validate_send_no_change_and_pass_the_guard(on_driver):
    sim = on_driver.sim
    old, new = sim.issue_refresh_token("reporting-old"), sim.issue_refresh_token("reporting-new")
    created, record, _mod = on_driver(old)
    assert created["action"] == "created" and not created.get("failed") and "pending" not in record, created
    assert (created["expiry_status"], created["validated_by"]) == ("ok", "exchange") and created["days_left"] in (89, 90)
    rotated, record, _mod = on_driver(new, state="rotated")
    assert rotated["action"] == "rotated" and record["secret"] == new and record["previous"]["secret"] == old, rotated
    assert "reporting-old" in rotated["manual_step"] and rotated["previous"]["replaced_at"]
    kept, _record, _mod = on_driver()
    assert kept["action"] == "none" and kept["validated_by"] == "probe" and not kept["changed"], kept


def test_a_renewed_access_token_is_cached_with_check_and_set_and_reported_updated(on_driver):
    sim = on_driver.sim
    on_driver(sim.issue_refresh_token("reporting"))
    sim.reboot()
    result, record, _mod = on_driver(return_access_token=True)
    assert result["action"] == "updated" and result["changed"] and result["access_token"] == record["access_token"], result
    sim.reboot()
    on_driver.store.armed = True                          # another writer got there first: returned, not cached
    result, after, mod = on_driver(return_access_token=True)
    assert result["action"] == "none" and not result["changed"] and not result.get("backed_off"), result
    assert sim.access_token_works(result["access_token"]) and after == record
    assert any("returned but not cached" in w for w in mod.warnings)


def test_recovery_completes_a_stuck_adoption(on_driver):
    old, new = stuck(on_driver)
    result, record, _mod = on_driver()
    assert result["action"] == "recovered" and result["recovered_step"] == "adopting" and record["secret"] == new, result
    assert record["previous"]["secret"] == old and "pending" not in record


def test_recovery_withdraws_an_adoption_whose_token_dpa_refuses(on_driver):
    sim = on_driver.sim
    old, new = stuck(on_driver)
    sim.delete_refresh_token(new)
    result, after, mod = on_driver()
    assert result["action"] == "recovered" and not result.get("failed") and after["secret"] == old and "pending" not in after
    assert any("cannot complete" in w for w in mod.warnings) and result["expiry_status"] == "ok"


def test_both_dead_is_needs_reconcile_with_steps_and_the_intent_stays(on_driver):
    sim = on_driver.sim
    old, new = stuck(on_driver)
    sim.delete_refresh_token(new)
    sim.delete_refresh_token(old)
    result, after, _mod = on_driver()
    assert result["failed"] and result["action"] == "needs_reconcile" and len(result["reconcile_steps"]) == 2, result
    assert after["pending"]["new_secret"] == new and result["expiry_status"] == "ok" and result["days_left"] in (89, 90)
    assert new not in str(result) and old not in str(result)


def test_a_live_adoption_elsewhere_backs_off_with_the_expiry_fields(on_driver):
    sim = on_driver.sim
    stuck(on_driver, live=True)
    sim.reset_counts()
    result, _after, _mod = on_driver(sim.issue_refresh_token("reporting-other"), state="rotated", warn="100d")
    assert result["backed_off"] and not result["changed"] and result["holder"] == "elsewhere:1", result
    assert result["expiry_status"] == "warn" and result["days_left"] in (89, 90) and sim.count() == 0


def test_check_mode_predicts_a_recovery_and_writes_nothing(on_driver):
    stuck(on_driver)
    before = on_driver.store.read("t/dpa/sim/reporting")
    predicted, after, _mod = on_driver(check=True)
    assert predicted["action"] == "recovered" and predicted["token_id"] == "reporting-new" and after == before.data, predicted
    assert on_driver.store.read("t/dpa/sim/reporting").version == before.version
