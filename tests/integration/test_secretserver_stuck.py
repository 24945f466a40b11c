"""Secret Server entries stuck at every step a run records, the way a run killed on another execution node leaves them
(its intent's lease ran out), in the variants that apply: what the killed run had already done in Secret Server (a
refresh or a login carried out, a token expired), and what someone else did meanwhile (sessions ended by an
administrator, the password changed).

The next ordinary run heals each entry (a stored token Secret Server accepts, and no intent), or says needs_reconcile
with the steps a person takes. One run handles every entry, as a fleet run does: one entry's failure stops no other.
Before it, the token lookup hands no consumer a dead token for any entry the killed runs left behind.
"""

import pytest
import requests

import secretserver_fixtures
from secretserver_fixtures import consumer_lookups, judge, record_of, ss_env, ss_task, stale_intent

pytestmark = pytest.mark.integration
ss_factory = secretserver_fixtures.ss_factory   # the simulator fixture

# What each stuck entry is: its intent's step and what happened around it.
PRESENT = {
    "refresh-unsent": "refreshing",                  # killed before the refresh reached Secret Server
    "refresh-committed": "refreshing",               # killed after Secret Server carried the refresh out
    "refresh-sessions-ended": "refreshing",          # and an administrator ended the user's sessions meanwhile
    "refresh-password-changed": "refreshing",        # and the user's password was changed meanwhile
    "login-committed": "logging_in",                 # killed after Secret Server started the new session
    "login-sessions-ended": "logging_in",            # and an administrator ended the user's sessions meanwhile
    "login-first": "logging_in",                     # the very first login: nothing stored yet
    "expiring": "expiring",                          # state absent killed after its expiration; now state present
    "expiring-previous": "expiring_previous",        # state rotated killed before expiring the replaced token
    "expiring-previous-ended": "expiring_previous",  # and the new token was ended by an administrator meanwhile
    "unknown-step": "frobnicating",                  # an intent this version does not know
}
ABSENT = {"absent-expired": "expiring", "absent-unsent": "expiring"}
# Entries whose token someone else ended: no record can know that, so the lookup is not asked about them.
ENDED_BY_SOMEONE_ELSE = {"refresh-sessions-ended", "login-sessions-ended", "expiring-previous-ended"}


def grant(ss, **form):
    """What the killed run had sent to /oauth2/token; its answer never reached the store."""
    response = requests.post(ss.url + "/oauth2/token", data=form, timeout=30)
    assert response.status_code == 200, response.status_code


def expire(ss, token):
    response = requests.post(ss.url + "/api/v1/oauth-expiration", headers={"Authorization": "Bearer " + token}, timeout=30)
    assert response.status_code == 200 and response.json() is True


def run_tokens(runner, ss, store, tokens, **options):
    # A dozen tokens share one store file: on a loaded machine its lock may be busy for longer than the harness's 2 s.
    task = ss_task(ss, store, tokens=tokens, **options)
    task["tokenops.rotation.secretserver_token"]["store"]["timeout"] = 60
    run = runner.run([task], env=ss_env(ss, store))
    results = run.result["results"]
    assert [r["id"] for r in results] == [t.get("id") or t["username"] for t in tokens], run
    return {r["id"]: r for r in results}


@pytest.mark.parametrize("revokes", [False, True], ids=["refresh-keeps-access", "refresh-ends-access"])
def test_every_stuck_step_heals_or_says_what_to_do(runner, ss_factory, file_store, revokes):
    ss = ss_factory(refresh_revokes_previous_access=revokes)
    passwords = {name: ss.add_user(name) for name in list(PRESENT) + list(ABSENT)}
    made = [{"username": name, "password": passwords[name]} for name in passwords if name != "login-first"]
    created = run_tokens(runner, ss, file_store, made)
    assert {r["action"] for r in created.values()} == {"created"}, created
    stored = {name: record_of(file_store, ss, name) for name in passwords}

    # What the killed runs (and other people) did.
    stale_intent(file_store, ss, "refreshing", "refresh-unsent")
    grant(ss, grant_type="refresh_token", refresh_token=stored["refresh-committed"]["refresh_token"])
    stale_intent(file_store, ss, "refreshing", "refresh-committed")
    ss.sim.expire_all("refresh-sessions-ended")
    stale_intent(file_store, ss, "refreshing", "refresh-sessions-ended")
    ss.sim.set_password("refresh-password-changed", "a new password")
    stale_intent(file_store, ss, "refreshing", "refresh-password-changed")
    grant(ss, grant_type="password", username="login-committed", password=passwords["login-committed"])
    stale_intent(file_store, ss, "logging_in", "login-committed", secret_usable=True)
    ss.sim.expire_all("login-sessions-ended")
    stale_intent(file_store, ss, "logging_in", "login-sessions-ended", secret_usable=True)
    grant(ss, grant_type="password", username="login-first", password=passwords["login-first"])
    stale_intent(file_store, ss, "logging_in", "login-first", secret_usable=True)
    for name in ("expiring", "absent-expired"):
        expire(ss, stored[name]["secret"])
        stale_intent(file_store, ss, "expiring", name)
    stale_intent(file_store, ss, "expiring", "absent-unsent")
    stale_intent(file_store, ss, "expiring_previous", "expiring-previous", secret_usable=True)
    ss.sim.expire_all("expiring-previous-ended")
    stale_intent(file_store, ss, "expiring_previous", "expiring-previous-ended", secret_usable=True)
    stale_intent(file_store, ss, "frobnicating", "unknown-step", secret_usable=True)

    asked = [name for name in passwords if name not in ENDED_BY_SOMEONE_ELSE]
    seen = dict(zip(asked, (judge(ss, answer) for answer in consumer_lookups(file_store, ss, asked))))
    assert seen["login-committed"] == seen["expiring-previous"] == "works", seen      # their intents keep the token
    assert seen["expiring"] == seen["absent-expired"] == "refused", seen

    first_grant = len(ss.sim.grants)
    results = run_tokens(runner, ss, file_store, [{"username": name, "password": passwords[name]} for name in PRESENT])
    for name, step in PRESENT.items():
        result = results[name]
        record = record_of(file_store, ss, name)
        if name in ("refresh-password-changed", "unknown-step"):
            assert result.get("failed") and result["action"] == "needs_reconcile" and result["reconcile_steps"], result
            continue
        assert not result.get("failed") and result.get("recovered_step") == step, (name, result)
        assert ss.works(record) and "pending" not in record and "login_required" not in record, (name, result)
    # A refresh token a killed run may have sent is never sent again; the recoveries log in.
    grants = [(g["grant"], g["user"]) for g in ss.sim.grants[first_grant:]]
    assert [g for g in grants if g[0] == "refresh"] == [("refresh", "expiring-previous-ended")], grants
    for name in ("refresh-unsent", "refresh-committed", "refresh-sessions-ended", "login-committed", "login-first", "expiring"):
        assert results[name]["action"] == "recovered" and results[name]["method"] == "password", (name, results[name])
    assert results["expiring-previous"]["action"] == "recovered" and results["expiring-previous"]["method"] == "reuse"
    assert not [g for g in grants if g[1] == "expiring-previous"], grants
    # The new token of expiring-previous-ended is dead: the run replaces it as any run does.
    assert results["expiring-previous-ended"]["action"] == "rotated"

    # The changed password: the refresh is spent, the login refused; a person gives the new password.
    changed = results["refresh-password-changed"]
    assert "password grant of refresh-password-changed was refused" in changed["msg"] and changed["changed"] is True
    assert any("password" in step for step in changed["reconcile_steps"])
    record = record_of(file_store, ss, "refresh-password-changed")
    assert "pending" not in record and "refresh_token" not in record and record["login_required"]
    fixed = run_tokens(runner, ss, file_store, [{"username": "refresh-password-changed", "password": "a new password"}])
    assert fixed["refresh-password-changed"]["method"] == "password" and ss.works(record_of(file_store, ss, "refresh-password-changed"))

    # An unknown step: only a person can tell what it did; the entry is left as it is, with the steps.
    unknown = results["unknown-step"]
    assert "frobnicating" in unknown["msg"] and any("pending" in step for step in unknown["reconcile_steps"]), unknown
    assert record_of(file_store, ss, "unknown-step")["pending"]["step"] == "frobnicating"

    # state absent finishes an interrupted expiration, whether or not it had reached Secret Server.
    gone = run_tokens(runner, ss, file_store, [{"id": name} for name in ABSENT], state="absent")
    assert gone["absent-expired"]["action"] == gone["absent-unsent"]["action"] == "revoked", gone
    assert gone["absent-expired"]["expired_on_server"] is False and gone["absent-unsent"]["expired_on_server"] is True
    assert not ss.sim.token_works(stored["absent-unsent"]["secret"])
    assert record_of(file_store, ss, "absent-expired") == record_of(file_store, ss, "absent-unsent") == {}
