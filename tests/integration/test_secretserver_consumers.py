"""The people who use a Secret Server token the collection keeps: they read it from OpenBao with hvac and read
secrets with Delinea's own python-tss-sdk (AccessTokenAuthorizer), as community.general.tss does with `token`.

After the collection logs in, the stored token reads secrets; after it refreshes, the new stored token reads them
and the old one stops. Whether a refresh itself kills the previous access token is unknown
(refresh_revokes_previous_access): the old token must stop under both settings, because the collection expires it.
"""

import pytest

from consumer_fixtures import bao_store, read_entry  # noqa: F401 pylint: disable=unused-import
from secretserver_fixtures import USER, ss_env, ss_factory, ss_task  # noqa: F401 pylint: disable=unused-import

pytestmark = pytest.mark.integration

tss = pytest.importorskip("delinea.secrets.server", reason="python-tss-sdk is a test dependency (tests/requirements.txt)")


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


@pytest.mark.parametrize("switches", [{}, {"refresh_revokes_previous_access": True}, {"auth_fail_status": 401},
                                      {"mislabelled_form_body": "form"}],
                         ids=["defaults", "refresh-revokes-previous", "auth-fail-401", "mislabelled-form-accepted"])
def test_consumers_read_secrets_with_the_stored_token(runner, ss_factory, bao, bao_store, switches):
    ss = ss_factory(**switches)
    secret_id = ss.sim.add_secret("db", folder=ss.sim.add_folder("Apps"), username="app", password="db-pw")
    created = run_ss(runner, ss, bao_store)
    assert created["action"] == "created", created
    first = read_entry(bao, bao_store, "secretserver", ss.host, USER)["secret"]
    assert reads_secret(ss, first, secret_id)

    refreshed = run_ss(runner, ss, bao_store, max_age="0s")
    assert refreshed["action"] == "rotated" and refreshed["method"] == "refresh", refreshed
    second = read_entry(bao, bao_store, "secretserver", ss.host, USER)["secret"]
    assert second != first
    assert reads_secret(ss, second, secret_id) and not reads_secret(ss, first, secret_id)
