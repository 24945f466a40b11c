# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""secretserver_token's rotation (plugins/module_utils/secretserver_rotation.py) run in-process against the
Secret Server simulator, with one frozen clock for both: the module's `utcnow` reads the simulator's Clock.

The long-running schedule lives here: hundreds of scheduled runs in a few seconds, each one a real module run
(argument parsing, the file store, the HTTP layer), counted against the rules of secretserver.md 1.5.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import io
import json
import threading

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.tokenops.rotation.plugins.module_utils import driver, secretserver_rotation
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import Flow
from ansible_collections.tokenops.rotation.plugins.module_utils.store import normalize_host, store_from_params
from ansible_collections.tokenops.rotation.plugins.modules.secretserver_token import SecretServerTokenModule
from tests.simulators.base import Clock
from tests.simulators.secretserver import SecretServerSimulator

START = 1_800_000_000.0          # 2027-01-15T08:00:00Z
USER, PASSWORD = "svc-automation", "correct horse battery staple"
MINUTE, HOUR = 60, 3600


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "TSS_BASE_URL", "TSS_USERNAME", "TSS_PASSWORD", "TSS_DOMAIN"):
        monkeypatch.delenv(name, raising=False)


class Harness:
    """The module run in-process: its clock is the simulator's, its store a real ansible-vault file."""

    def __init__(self, sim, tmp_path, monkeypatch):
        self.sim = sim
        self.store_options = {"backend": "file", "file_path": str(tmp_path / "store.vault"), "vault_password": "unit-test-pw"}
        self.store = store_from_params(self.store_options)
        now = functools.partial(lambda clock: datetime.datetime.fromtimestamp(int(clock.now()), tz=datetime.timezone.utc), sim.clock)
        monkeypatch.setattr(secretserver_rotation, "utcnow", now)
        # One clock decides expiry and the age and lease of intents: the driver's flows read it too.
        monkeypatch.setattr(driver, "Flow", functools.partial(Flow, now=now))

    def run(self, **args):
        full = {"url": self.sim.api_url, "store": self.store_options, "username": USER, "password": PASSWORD, "retries": 0}
        full.update(args)
        out = io.StringIO()
        with patch_module_args(full), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            SecretServerTokenModule().run()
        return json.loads(out.getvalue())

    def path(self, token_id=USER, url=None):
        return "tokenops/secretserver/%s/%s" % (normalize_host(url or self.sim.api_url), token_id)

    def record(self, token_id=USER, url=None):
        return self.store.read(self.path(token_id, url)).data or {}


@pytest.fixture
def make_harness(tmp_path, monkeypatch):
    started = []

    def make(user_options=None, **settings):
        sim = SecretServerSimulator(clock=Clock(start=START, frozen=True), **settings)
        sim.start()
        sim.add_user(USER, PASSWORD, **(user_options or {}))
        started.append(sim)
        return Harness(sim, tmp_path, monkeypatch)

    yield make
    for sim in started:
        sim.stop()


# ---- the long-running schedule ------------------------------------------------------------------

def schedule(every, span, gaps=()):
    """Seconds to wait before each run: every `every` seconds for `span`, then the extra gaps, each followed by an hour of runs."""
    waits = [every] * int(span // every)
    for gap in gaps:
        waits.append(gap)
        waits.extend([every] * int(HOUR // every))
    return waits


def least_password_logins(waits, lifetime, cap, rotate_before, refresh_before_expiry=True):
    """The rules of secretserver.md 1.5 as a reference model, independent of the module.

    At each run the token must be usable afterwards (more than rotate_before left). A refresh is possible with an
    unused refresh token younger than lifetime + 15 minutes whose chain is under the cap (and, on a server that
    only refreshes expired tokens, once its access token has expired); a refresh gives the same lifetime as a
    login. Logging in while a refresh is possible only resets the chain early, so the least number of logins is
    reached by refreshing whenever it is possible.
    """
    now, logins, access_expires, refresh_expires, count = 0, 1, lifetime, lifetime + 900, 0
    for wait in waits:
        now += wait
        left = access_expires - now
        if left > 0 and left >= rotate_before:
            continue
        early = left > 0 and not refresh_before_expiry
        if now < refresh_expires and count < cap and not early:
            count += 1
        else:
            logins, count = logins + 1, 0
        access_expires, refresh_expires = now + lifetime, now + lifetime + 900
    return logins


SCHEDULE_SETTINGS = [
    ({}, "20%"),
    ({"auth_fail_status": 401}, "20%"),
    ({"refresh_revokes_previous_access": True}, "20%"),
    ({"expiration_kills_refresh": False}, "20%"),
    ({"expires_in_skew": -1}, "20%"),
    ({"refresh_token_at_cap": "omitted"}, "20%"),
    ({"token_errors": {"refresh_capped": [401, "Maximum number of refreshes reached"], "refresh_expired": [403, "Token expired"]}}, "20%"),
    ({"refresh_before_expiry": False}, "0s"),
]


@pytest.mark.parametrize("settings, rotate_before", SCHEDULE_SETTINGS,
                         ids=[",".join("%s=%s" % kv for kv in s.items()) or "documented-defaults" for s, _r in SCHEDULE_SETTINGS])
def test_long_running_schedule_keeps_a_working_token_with_the_fewest_logins(make_harness, settings, rotate_before):
    """Every 5 minutes for a day (an hour for the other settings), then a 30-minute gap (the access token expired,
    its refresh token lives), a 40-minute gap (both expired) and a night off, each followed by an hour of runs."""
    h = make_harness(max_refreshes=3, **settings)
    span = 24 * HOUR if not settings else 2 * HOUR
    waits = schedule(5 * MINUTE, span, gaps=(30 * MINUTE, 40 * MINUTE, 10 * HOUR))
    lifetime = 1200 + settings.get("expires_in_skew", 0)
    threshold = 0.2 * lifetime if rotate_before == "20%" else 0
    methods = []
    first = h.run(rotate_before=rotate_before)
    assert first["action"] == "created" and first["method"] == "password", first
    for wait in waits:
        h.sim.clock.advance(wait)
        result = h.run(rotate_before=rotate_before)
        assert not result.get("failed"), result
        methods.append(result["method"])
        record = h.record()
        # After every run the store holds a token Secret Server accepts, with more than rotate_before left.
        assert h.sim.token_works(record["secret"]) and "pending" not in record, (len(methods), result)
        expires = datetime.datetime.fromisoformat(record["expires_at"].replace("Z", "+00:00")).timestamp()
        assert expires - h.sim.clock.now() >= threshold
    logins = h.sim.count_grants("password")
    assert len(waits) >= (300 if not settings else 60)
    assert methods.count("refresh") > 2 * logins            # most replacements were refreshes
    assert logins == methods.count("password") + 1
    # Never a password login while the server would have taken a refresh...
    assert [g for g in h.sim.grants if g["grant"] == "password" and g.get("refresh_possible")] == []
    # ...so the count is the least the rules allow.
    assert logins == least_password_logins(waits, lifetime, 3, threshold, settings.get("refresh_before_expiry", True))
    # And no refresh was sent that the rules doomed (over the cap, lapsed, or too early).
    assert h.sim.count_grants("refresh", ok=False) == 0


def test_reference_model_counts():
    """The model itself: a chain is a login and three refreshes of 20 minutes, 80 minutes in all."""
    assert least_password_logins([20 * MINUTE] * 12, 1200, 3, 0) == 4          # 4 hours, a chain per 80 minutes
    assert least_password_logins([36 * MINUTE], 1200, 3, 0) == 2                # the refresh token lapsed after 35 minutes
    assert least_password_logins([34 * MINUTE], 1200, 3, 0) == 1
    assert least_password_logins([10 * MINUTE] * 2, 1200, 3, 0, refresh_before_expiry=False) == 1


def test_a_schedule_slower_than_the_refresh_token_logs_in_every_time(make_harness):
    """Runs 40 minutes apart: each refresh token has lapsed (lifetime + 15 minutes), so every run must log in."""
    h = make_harness()
    h.run()
    for _run in range(5):
        h.sim.clock.advance(40 * MINUTE)
        assert h.run()["method"] == "password"
    assert h.sim.count_grants("password") == 6 and h.sim.count_grants("refresh", ok=None) == 0


# ---- one run at a time: the paths, the faults, what the next run makes of them ----------------------

TOKEN_PATH = "/SecretServer/oauth2/token"


def due_soon(h):
    """Move to 17 minutes after the stored token's grant: 3 minutes left, within the default rotate_before of 20%."""
    issued = datetime.datetime.fromisoformat(h.record()["issued_at"].replace("Z", "+00:00")).timestamp()
    h.sim.clock.set(issued + 17 * MINUTE)


def test_reuse_makes_one_read_and_no_write(make_harness):
    h = make_harness()
    h.run()
    version = h.store.read(h.path()).version
    h.sim.reset_counts()
    result = h.run()
    assert result["action"] == "none" and result["method"] == "reuse" and result["changed"] is False, result
    assert h.sim.count() == 1 and h.sim.count("GET", "/SecretServer/api/v1/users/current") == 1
    assert h.store.read(h.path()).version == version


def test_refresh_persists_the_new_pair_and_counts_down(make_harness):
    h = make_harness()
    h.run()
    first = h.record()
    due_soon(h)
    result = h.run()
    record = h.record()
    assert result["action"] == "rotated" and result["method"] == "refresh", result
    assert record["refresh_token"] != first["refresh_token"] and not h.sim.refresh_usable(first["refresh_token"])
    assert h.sim.refresh_usable(record["refresh_token"]) and h.sim.token_works(record["secret"])
    assert record["refreshes_used"] == 1 and record["refreshes_remaining"] == 2 == result["refreshes_remaining"]
    assert record["refresh_fingerprint"] != first["refresh_fingerprint"] and record["rotation_count"] == 1
    assert result["refresh_expires_at"] == record["refresh_expires_at"] and "secret" not in result


def test_refresh_answer_lost_counts_as_spent_and_the_same_run_logs_in(make_harness):
    h = make_harness()
    h.run()
    stale = h.record()
    due_soon(h)
    h.sim.faults.add("POST", TOKEN_PATH, "drop_after_commit")
    result = h.run()
    assert result["action"] == "rotated" and result["method"] == "password", result
    assert "used up" in result["msg"] and "answer was lost" in result["msg"]
    assert h.sim.count_grants("refresh") == 1 and not h.sim.refresh_usable(stale["refresh_token"])   # the server used it
    record = h.record()
    assert h.sim.token_works(record["secret"]) and record["refreshes_used"] == 0 and "pending" not in record


def test_refresh_and_login_answers_lost_leave_the_intent_and_the_next_run_recovers(make_harness):
    h = make_harness(refresh_revokes_previous_access=True)
    h.run()
    due_soon(h)
    h.sim.faults.add("POST", TOKEN_PATH, "drop_after_commit", times=2)
    result = h.run()
    assert result["failed"] and result["step"] == "login" and "next run logs in again" in result["msg"], result
    record = h.record()
    # The refresh killed the stored access token (this setting), and the record says why.
    assert not h.sim.token_works(record["secret"]) and record["pending"]["step"] == "refreshing"
    result = h.run()
    assert result["action"] == "recovered" and result["recovered_step"] == "refreshing" and result["method"] == "password", result
    assert h.sim.token_works(h.record()["secret"]) and "pending" not in h.record()


def test_interrupted_refresh_of_a_dead_holder_is_recovered_with_the_password_grant(make_harness):
    h = make_harness()
    h.run()
    record = h.record()
    path = h.path()
    record["pending"] = {"rotation_id": "r-1", "step": "refreshing", "started_at": record["issued_at"], "holder": "elsewhere:1"}
    h.store.write(path, record, h.store.read(path).version)
    h.sim.clock.advance(6 * MINUTE)   # past lock_timeout: the holder is presumed dead
    h.sim.reset_counts()
    result = h.run()
    assert result["action"] == "recovered" and result["method"] == "password", result
    assert h.sim.count_grants("refresh", ok=None) == 0     # the possibly used refresh token is never sent again


@pytest.mark.parametrize("revokes", [False, True], ids=["refresh-keeps-access", "refresh-ends-access"])
def test_a_refresh_intent_says_whether_the_stored_token_still_works(make_harness, revokes):
    """Whether a refresh ends the access token it replaces is not documented (refresh_revokes_previous_access): the
    first refresh's intent says the stored token may not work; each refresh checks the token it replaced, and the
    intents that follow say what this server does. A consumer is never told a dead token works."""
    h = make_harness(refresh_revokes_previous_access=revokes)
    h.run()
    usable = []
    for _refresh in range(3):
        due_soon(h)
        h.sim.faults.clear()
        h.sim.faults.add("POST", TOKEN_PATH, "hang_after_commit", delay=120)
        results = []
        run = threading.Thread(target=lambda: results.append(h.run()))
        run.start()
        try:
            assert h.sim.faults.committed.wait(120), "the refresh never arrived"
            held = h.record()       # the refresh is done in Secret Server, its answer not yet back
            assert held["pending"]["step"] == "refreshing"
            usable.append(held["pending"]["secret_usable"])
            if held["pending"]["secret_usable"]:
                assert h.sim.token_works(held["secret"])
        finally:
            h.sim.faults.release.set()
            run.join(120)
        assert results and results[0]["method"] == "refresh", results
    assert usable == [False, not revokes, not revokes]
    assert h.record()["refresh_keeps_access"] is (not revokes)


def test_live_intent_of_another_run_backs_off(make_harness):
    h = make_harness()
    h.run()
    record, path = h.record(), h.path()
    record["pending"] = {"rotation_id": "r-2", "step": "refreshing", "started_at": record["issued_at"], "holder": "elsewhere:1"}
    h.store.write(path, record, h.store.read(path).version)
    h.sim.reset_counts()
    result = h.run(state="rotated")
    assert result["changed"] is False and result["backed_off"] is True and "elsewhere:1" in result["msg"], result
    assert h.sim.count() == 0


def test_cap_reached_goes_straight_to_the_password_grant(make_harness):
    h = make_harness(max_refreshes=3)
    h.run()
    for _refresh in range(3):
        due_soon(h)
        assert h.run()["method"] == "refresh"
    assert h.record()["refreshes_remaining"] == 0
    due_soon(h)
    result = h.run()
    assert result["method"] == "password" and result["refreshes_remaining"] == 3, result
    assert h.sim.count_grants("refresh", ok=False) == 0     # no refresh sent that the cap refuses


def test_server_cap_lower_than_configured_falls_back(make_harness):
    h = make_harness(max_refreshes=1)
    h.run(max_refreshes=5)
    due_soon(h)
    assert h.run(max_refreshes=5)["method"] == "refresh"
    due_soon(h)
    result = h.run(max_refreshes=5)
    assert result["method"] == "password" and "refused" in result["msg"], result
    assert h.sim.count_grants("refresh", ok=False) == 1 and h.sim.token_works(h.record()["secret"])


def test_refresh_tokens_turned_off_on_the_server(make_harness):
    h = make_harness()
    h.run()
    h.sim.refresh_enabled = False
    due_soon(h)
    result = h.run()
    assert result["method"] == "password" and result["refreshes_remaining"] == 0, result
    assert "refresh_token" not in h.record() and h.sim.token_works(h.record()["secret"])
    due_soon(h)
    h.sim.reset_counts()
    assert h.run()["method"] == "password"
    assert h.sim.count_grants("refresh", ok=False) == 1     # only the first, which found out


def test_refresh_option_off_always_logs_in(make_harness):
    h = make_harness()
    h.run(refresh=False)
    assert "refresh_token" not in h.record()
    due_soon(h)
    assert h.run(refresh=False)["method"] == "password"
    assert h.sim.count_grants("refresh", ok=None) == 0


def test_unlimited_session_timeout_has_no_refresh_token(make_harness):
    h = make_harness(session_timeout_s=None, unlimited_expires_in=86400)
    result = h.run()
    assert result["refreshes_remaining"] == 0 and "refresh_token" not in h.record()
    h.sim.clock.advance(20 * HOUR)
    assert h.run()["method"] == "password"


@pytest.mark.parametrize("kills", [False, True], ids=["sessions-survive", "sessions-end"])
def test_password_changed(make_harness, kills):
    """The chain may outlive the password; once a login is needed, the run says what to do, and the new password heals it."""
    h = make_harness(password_change_kills_sessions=kills)
    h.run()
    h.sim.set_password(USER, "a new password nobody told us")
    due_soon(h)
    result = h.run()
    if not kills:
        assert result["method"] == "refresh", result     # the refresh token still works
        for _refresh in range(2):
            due_soon(h)
            h.run()
        due_soon(h)
        result = h.run()
    assert result["failed"] and result["action"] == "needs_reconcile", result
    assert "password grant of %s was refused" % USER in result["msg"] and "Login failed." in result["msg"]
    assert "Fix the credentials" in result["msg"] and PASSWORD not in json.dumps(result)
    record = h.record()
    assert "pending" not in record and result["changed"] is kills
    if kills:
        # The refresh was tried and refused: the spent chain is recorded, and the dead token carries the reason.
        assert not h.sim.token_works(record["secret"]) and "refresh_token" not in record and record["login_required"]
    else:
        # Only the login was refused: nothing changed, the stored token keeps its last minutes.
        assert h.sim.token_works(record["secret"]) and "login_required" not in record
    refreshes = h.sim.count_grants("refresh", ok=None)
    again = h.run()
    assert again["action"] == "needs_reconcile" and h.sim.count_grants("refresh", ok=None) == refreshes   # no refresh left to try
    healed = h.run(password="a new password nobody told us")
    assert healed["action"] == "rotated" and healed["method"] == "password" and h.sim.token_works(h.record()["secret"])
    assert "login_required" not in h.record()


def test_otp_user(make_harness):
    h = make_harness(user_options={"otp": True})
    refused = h.run()
    assert refused["failed"] and "otp" in refused["msg"] and not h.record(), refused
    code = h.sim.new_otp(USER)
    assert h.run(otp=code)["action"] == "created"
    assert h.record()["otp_required"] is True
    due_soon(h)
    assert h.run()["method"] == "refresh"                      # no code needed while the chain lasts
    h.sim.refresh_enabled = False
    due_soon(h)
    h.sim.reset_counts()
    result = h.run(otp=code)                                    # the code of the first login, again
    assert result["action"] == "needs_interaction" and result["failed"], result
    # The refresh was tried (and refused), the used code was never sent.
    assert "already used" in result["msg"] and h.sim.count("POST") == 1 and h.sim.count_grants("password", ok=None) == 2
    h.sim.reset_counts()
    result = h.run()
    assert result["action"] == "needs_interaction" and "fresh otp" in result["msg"] and h.sim.count("POST") == 0
    result = h.run(otp=h.sim.new_otp(USER))
    assert result["action"] == "rotated" and result["method"] == "password" and h.sim.token_works(h.record()["secret"])


def test_otp_needed_after_a_failed_refresh_records_the_spent_chain(make_harness):
    h = make_harness(user_options={"otp": True}, max_refreshes=0)
    h.run(otp=h.sim.new_otp(USER), max_refreshes=3)
    due_soon(h)
    result = h.run(max_refreshes=3)
    assert result["action"] == "needs_interaction" and result["changed"] is True, result
    record = h.record()
    assert "pending" not in record and "refresh_token" not in record and "used up" in record["login_required"]["reason"]
    assert h.sim.token_works(record["secret"])                  # the old access token still has 3 minutes


def test_domain_user(make_harness):
    h = make_harness(user_options={"domain": "CORP"})
    assert h.run()["failed"]
    result = h.run(domain="corp")
    assert result["action"] == "created" and h.record()["domain"] == "corp"
    refreshes = h.sim.count_grants("refresh", ok=None)
    other = h.run(domain="OTHER")                              # another user: its tokens are neither reused nor refreshed
    assert other["action"] == "needs_reconcile" and "another user (corp\\svc-automation)" in other["msg"], other
    assert h.sim.count_grants("refresh", ok=None) == refreshes and h.sim.count_grants("password", ok=False) == 2


def test_state_rotated_starts_a_fresh_session_and_expires_the_old(make_harness):
    h = make_harness()
    h.run()
    old = h.record()
    result = h.run(state="rotated")
    new = h.record()
    assert result["action"] == "rotated" and result["method"] == "password" and result["previous_expired"] is True
    assert not h.sim.token_works(old["secret"]) and h.sim.token_works(new["secret"]) and new["refreshes_used"] == 0


@pytest.mark.parametrize("status", [403, 401])
def test_absent(make_harness, status):
    h = make_harness(auth_fail_status=status)
    h.run()
    token = h.record()["secret"]
    result = h.run(state="absent")
    assert result["action"] == "revoked" and result["expired_on_server"] is True and result["changed"], result
    assert not h.sim.token_works(token) and not h.record()
    # Whether the expiration also ended the refresh token is not documented: the run says so.
    assert "no documented call revokes a refresh token" in json.dumps(result["warnings"])
    assert h.run(state="absent")["action"] == "none"
    # A token someone else already ended: Secret Server answers 401/403, which means gone.
    h.run()
    h.sim.expire_all(USER)
    result = h.run(state="absent")
    assert result["action"] == "revoked" and result["expired_on_server"] is False and not h.record(), result


def test_absent_of_a_locally_expired_token_asks_nothing(make_harness):
    h = make_harness()
    h.run()
    h.sim.clock.advance(HOUR)
    h.sim.reset_counts()
    result = h.run(state="absent")
    assert result["action"] == "revoked" and result["expired_on_server"] is None and h.sim.count() == 0


def test_check_mode_predicts_without_a_grant_or_a_write(make_harness):
    h = make_harness()
    predicted = h.run(_ansible_check_mode=True)
    assert predicted["action"] == "created" and predicted["method"] == "password" and not h.record()
    assert h.sim.count("POST") == 0
    h.run()
    due_soon(h)
    before = h.record()
    predicted = h.run(_ansible_check_mode=True, _ansible_diff=True)
    assert predicted["action"] == "rotated" and predicted["method"] == "refresh", predicted
    assert "refreshes_remaining: 3" in predicted["diff"]["before"] and before["fingerprint"] in predicted["diff"]["before"]
    assert h.record() == before and h.sim.count_grants("refresh", ok=None) == 0
    assert h.run()["method"] == "refresh"


def test_platform_token_for_the_default_vault(make_harness):
    h = make_harness(platform=True)
    h.sim.platform.add_service_user("svc-platform", "platform-client-secret")
    args = dict(url=h.sim.platform_url, platform=True, username="svc-platform", password="platform-client-secret", id="plat")
    result = h.run(**args)
    record = h.record("plat", h.sim.platform_url)
    assert result["action"] == "created" and result["method"] == "platform", result
    assert record["vault_url"] == h.sim.api_url and h.sim.token_works(record["secret"]) and "refresh_token" not in record
    assert h.run(**args)["action"] == "none"
    h.sim.clock.advance(55 * MINUTE)
    assert h.run(**args)["method"] == "platform"
    result = h.run(state="absent", **args)
    assert result["action"] == "revoked" and "cannot be revoked" in json.dumps(result["warnings"]), result


def test_bad_input_is_refused_before_any_request(make_harness):
    h = make_harness()
    for args, needle in ((dict(url="ftp://x"), "http or https"), (dict(max_refreshes=-1), "max_refreshes"),
                         (dict(password=None), "needs password"), (dict(vault_name="v"), "platform: true"),
                         (dict(username="CORP\\svc"), "domain"), (dict(platform=True, otp="123456"), "do not apply"),
                         (dict(tokens=[{"username": "a"}, {"username": "a"}]), "listed twice"),
                         (dict(tokens=[{"username": "a"}, {"username": "b"}], otp="123456"), "per item"),
                         (dict(id="a/../b"), "segment")):
        result = h.run(**args)
        assert result["failed"] and needle in result["msg"], (args, result)
    assert h.sim.count() == 0 and not h.record()


def test_a_moved_url_keeps_the_stored_token(make_harness):
    """The same server under another address (a new port, a DNS name): the stored token is checked there and kept."""
    h = make_harness()
    h.store_options["host"] = "pam"
    h.run()
    moved = h.sim.api_url.replace("127.0.0.1", "localhost")
    h.sim.reset_counts()
    result = h.run(url=moved)
    assert result["action"] == "none" and h.sim.count("GET", "/SecretServer/api/v1/users/current") == 1, result


@pytest.mark.parametrize("fault", [dict(kind="retry_after", retry_after=3600), dict(kind="status", status=503)], ids=["429", "503"])
def test_a_login_that_is_not_answered_about_the_credentials_is_a_plain_failure(make_harness, fault):
    """A rate limit or a server error says nothing about the password: no needs_reconcile, and the next run tries again.
    (A 429 whose Retry-After the client waits for is waited out and sent again: the 429 here asks for an hour.)"""
    h = make_harness()
    h.run()
    due_soon(h)
    status = fault.get("status", 429)
    h.sim.faults.add("POST", TOKEN_PATH, times=2, **fault)     # the refresh, then the login
    result = h.run()
    assert result["failed"] and result["action"] == "failed" and "HTTP %d" % status in result["msg"], result
    assert "used up before" in result["msg"] and result["changed"] is True
    record = h.record()
    assert "pending" not in record and record["login_required"] and h.sim.token_works(record["secret"])
    assert h.run()["method"] == "password" and "login_required" not in h.record()
