"""The module under every setting of the Secret Server simulator's switches (secretserver.md 1.10 and the
[INF]/[UNK] notes): one playbook walks a token's life and must end the same way whatever Secret Server does
where its documentation is silent. The long refresh schedule runs under the same settings in
tests/unit/plugins/module_utils/test_secretserver_rotation.py.
"""

import pytest

import secretserver_fixtures
from secretserver_fixtures import USER, platform_task, record_of, ss_env, ss_task

pytestmark = pytest.mark.integration
ss, ss_factory = secretserver_fixtures.ss, secretserver_fixtures.ss_factory   # the simulator fixtures

SETTINGS = [
    {},
    # With behaviours the module does not depend on: the token type's case, JSON bodies, the version endpoint's
    # access and shape, the healthcheck's key spelling.
    {"auth_fail_status": 401, "expires_in_skew": -1, "platform_extra_fields": True,
     "token_type": "Bearer", "accept_json_body": True, "version_anonymous": True, "version_shape": "flat", "healthcheck_keys": "upper"},
    {"refresh_revokes_previous_access": True, "expiration_kills_refresh": False},
    {"token_errors": {"login": [401, "Invalid username or password"], "refresh_used": [401, "Refresh token was already used"],
                      "refresh_capped": [403, "Maximum token refreshes reached"], "refresh_expired": [401, "expired"]}},
    {"refresh_token_at_cap": "omitted", "max_refreshes": 1},
    {"refresh_before_expiry": False},
    {"refresh_enabled": False, "refresh_token_when_disabled": "null"},
    {"session_timeout_s": None},
]

ACTIONS = ["created", "rotated", "rotated", "rotated", "created", "revoked", "none", "revoked"]


def refresh_methods(settings):
    """What the two due runs use: a refresh while the rules allow it, else the password grant."""
    if settings.get("refresh_enabled") is False or "session_timeout_s" in settings or settings.get("refresh_before_expiry") is False:
        return ["password", "password"]       # no refresh token, or one the server takes only after expiry
    if settings.get("max_refreshes") == 1:
        return ["refresh", "password"]        # the cap: the refresh that reaches it hands out no new refresh token
    return ["refresh", "refresh"]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(
    "%s=%s" % (k, v if k != "token_errors" else "alt") for k, v in s.items()) or "documented-defaults")
def test_token_life_under_each_setting(runner, ss_factory, file_store, settings):
    ss = ss_factory(**settings)
    tasks = [
        ss_task(ss, file_store),
        ss_task(ss, file_store, max_age="0s"),
        ss_task(ss, file_store, max_age="0s"),
        ss_task(ss, file_store, state="rotated"),
        platform_task(ss, file_store),
        ss_task(ss, file_store, state="absent", id=USER),
        ss_task(ss, file_store, state="absent", id=USER),
        platform_task(ss, file_store, state="absent"),
    ]
    run = runner.run(tasks, env=ss_env(ss, file_store))
    results = [r for r in run.results if r["_task"] in ("secretserver_token", "platform")]
    assert [r.get("action") for r in results] == ACTIONS, [(r.get("action"), r.get("msg")) for r in results]
    assert not any(r["failed"] for r in results), [r.get("msg") for r in results if r["failed"]]
    assert [r["method"] for r in results[:5]] == ["password"] + refresh_methods(settings) + ["password", "platform"]
    assert results[3]["previous_expired"] is True and results[5]["expired_on_server"] is True
    assert len({r["fingerprint"] for r in results[:4]}) == 4            # every replacement is a new token
    assert record_of(file_store, ss) == {} and file_store.entry("secretserver", ss.platform_host, "platform") is None
    # Never a password login while a refresh was possible, but for state rotated's fresh session (the last login).
    logins = [g for g in ss.sim.grants if g["grant"] == "password" and g["ok"]]
    assert len(logins) == 2 + refresh_methods(settings).count("password")
    assert not [g for g in logins[:-1] if g["refresh_possible"]]
