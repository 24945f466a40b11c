"""The people who use a Secret Server token the collection keeps: they read it from OpenBao with hvac and read
secrets with Delinea's own python-tss-sdk (AccessTokenAuthorizer), as community.general.tss does with `token`, or they
read it with the tokenops.rotation.token lookup, also while a refresh, a login or an expiration is under way or after
one was killed.

After the collection logs in, the stored token reads secrets; after it refreshes, the new stored token reads them.
Whether a refresh itself ends the previous access token is not documented (refresh_revokes_previous_access), and
expiring it would end the new refresh token too where an expiration ends the session's refresh token
(expiration_kills_refresh), so the collection leaves it to lapse: it stops at once or at its own expiry.
"""

import pytest

from conftest import wait_for
from consumer_fixtures import bao_store, read_entry  # noqa: F401 pylint: disable=unused-import
from secretserver_fixtures import USER, consumer_gets, ss, ss_env, ss_factory, ss_task  # noqa: F401 pylint: disable=unused-import

pytestmark = pytest.mark.integration

tss = pytest.importorskip("delinea.secrets.server", reason="python-tss-sdk is a test dependency (tests/requirements.txt)")

TOKEN = r"^/SecretServer/oauth2/token$"
EXPIRATION = r"^/SecretServer/api/v1/oauth-expiration$"


def run_ss(runner, ss, store, **options):
    run = runner.run([ss_task(ss, store, **options)], env=ss_env(ss, store))
    assert run.results, run
    return run.result


def reads_secret(ss, token, secret_id):
    """True when the SDK reads the secret with this token; False when Secret Server refuses the token."""
    client = tss.SecretServer(ss.url, tss.AccessTokenAuthorizer(token, ss.url))
    try:
        secret = client.get_secret(secret_id)
    except tss.SecretServerClientError:
        return False
    assert client.get_secret_by_path("\\Apps\\db")["id"] == secret_id
    assert {i["slug"]: i["itemValue"] for i in secret["items"]}["username"] == "app"
    return True


def session_expiry(ss, token):
    with ss.sim.lock:
        return ss.sim.access[token]["expires"]


@pytest.mark.parametrize("switches", [{}, {"refresh_revokes_previous_access": True}, {"auth_fail_status": 401},
                                      {"mislabelled_form_body": "refuse"}],
                         ids=["defaults", "refresh-revokes-previous", "auth-fail-401", "mislabelled-form-refused"])
def test_consumers_read_secrets_with_the_stored_token(runner, ss_factory, bao, bao_store, switches):
    ss = ss_factory(**switches)
    secret_id = ss.sim.add_secret("db", folder=ss.sim.add_folder("Apps"), username="app", password="db-pw")
    created = run_ss(runner, ss, bao_store)
    assert created["action"] == "created", created
    first = read_entry(bao, bao_store, "secretserver", ss.host, USER)["secret"]
    assert reads_secret(ss, first, secret_id)

    ss.sim.clock.advance(60)      # the refresh comes a minute later, so its session outlives the first by that minute
    refreshed = run_ss(runner, ss, bao_store, max_age="0s")
    assert refreshed["action"] == "rotated" and refreshed["method"] == "refresh", refreshed
    second = read_entry(bao, bao_store, "secretserver", ss.host, USER)["secret"]
    assert second != first and reads_secret(ss, second, secret_id)
    # A consumer still holding the replaced token: it stops at once where a refresh ends it, else at its own expiry.
    assert reads_secret(ss, first, secret_id) is not switches.get("refresh_revokes_previous_access", False)
    assert session_expiry(ss, second) > session_expiry(ss, first)
    ss.sim.clock.set(session_expiry(ss, first) + 0.5)
    assert not reads_secret(ss, first, secret_id) and reads_secret(ss, second, secret_id)


def hold(ss, path, kind="hang_after_commit"):
    """The next request to `path` is held (after Secret Server did the work, by default) until the test releases it."""
    ss.sim.faults.clear()
    ss.sim.faults.add("POST", path, kind, delay=600)


def held_then_killed(runner, ss, store, expect, **options):
    """Start a run, hold it at its request after the commit, ask the lookup, kill the run, ask again."""
    proc, results = runner.start([ss_task(ss, store, **options)], env=ss_env(ss, store))
    wait_for(ss.sim.faults.committed.is_set, what="Secret Server to carry out the held request", timeout=600)
    pending = store.entry("secretserver", ss.host, USER)["pending"]
    during = consumer_gets(store, ss)
    runner.crash(proc, results, pending)
    ss.sim.faults.release.set()
    after = consumer_gets(store, ss)
    assert (during, after) == (expect, expect), (pending["step"], during, after)
    return pending


@pytest.mark.parametrize("revokes", [False, True], ids=["refresh-keeps-access", "refresh-ends-access"])
def test_lookup_during_a_refresh_and_after_a_kill(runner, ss_factory, file_store, revokes):
    """A refresh's intent says the stored token may not work until this server was seen to keep the token a refresh
    replaces; from then on consumers keep reading it during a refresh, and after a refresh that was killed."""
    ss = ss_factory(refresh_revokes_previous_access=revokes)
    assert run_ss(runner, ss, file_store)["action"] == "created"
    assert consumer_gets(file_store, ss) == "works"

    hold(ss, TOKEN)
    pending = held_then_killed(runner, ss, file_store, "refused", max_age="0s")
    assert pending["step"] == "refreshing" and pending["secret_usable"] is False
    healed = run_ss(runner, ss, file_store)
    assert healed["action"] == "recovered" and healed["method"] == "password", healed
    assert consumer_gets(file_store, ss) == "works"

    # A refresh held before Secret Server carries it out, then let go: it learns what a refresh does here.
    hold(ss, TOKEN, kind="latency")
    proc, results = runner.start([ss_task(ss, file_store, max_age="0s")], env=ss_env(ss, file_store))
    wait_for(ss.sim.faults.arrived.is_set, what="the refresh to arrive", timeout=600)
    assert consumer_gets(file_store, ss) == "refused"
    ss.sim.faults.release.set()
    refreshed = runner.finish(proc, results).result
    assert refreshed["method"] == "refresh" and not refreshed["failed"], refreshed
    assert file_store.entry("secretserver", ss.host, USER)["refresh_keeps_access"] is (not revokes)

    hold(ss, TOKEN)
    pending = held_then_killed(runner, ss, file_store, "refused" if revokes else "works", max_age="0s")
    assert pending["step"] == "refreshing" and pending["secret_usable"] is (not revokes)
    assert run_ss(runner, ss, file_store)["action"] == "recovered"
    assert consumer_gets(file_store, ss) == "works"


def test_lookup_during_a_login_an_expiration_and_a_revocation(runner, ss, file_store):
    """A login leaves the stored token working; so does the expiration of the token state rotated replaced (the new
    one is stored first); state absent's expiration may end it, and the lookup says so."""
    assert run_ss(runner, ss, file_store)["action"] == "created"

    hold(ss, TOKEN)
    pending = held_then_killed(runner, ss, file_store, "works", state="rotated")
    assert pending["step"] == "logging_in"
    healed = run_ss(runner, ss, file_store)
    assert healed["action"] == "recovered" and healed["recovered_step"] == "logging_in", healed

    hold(ss, EXPIRATION)
    pending = held_then_killed(runner, ss, file_store, "works", state="rotated")
    assert pending["step"] == "expiring_previous"
    healed = run_ss(runner, ss, file_store)
    assert healed["action"] == "recovered" and healed["recovered_step"] == "expiring_previous", healed
    assert consumer_gets(file_store, ss) == "works"

    hold(ss, EXPIRATION)
    pending = held_then_killed(runner, ss, file_store, "refused", state="absent", id=USER)
    assert pending["step"] == "expiring"
    gone = run_ss(runner, ss, file_store, state="absent", id=USER)
    assert gone["action"] == "revoked" and gone["expired_on_server"] is False, gone
    assert consumer_gets(file_store, ss) == "refused"
