"""The Secret Server simulator's secrets API and the token checks in front of every /api/v1 route, as Delinea's
own python-tss-sdk (2.0.1) and a plain HTTP client meet them (tests/simulators/secretserver.py).
"""

from __future__ import annotations

import json

import pytest

from tests.fixtures.simulators import clock, http, start_simulator  # noqa: F401  # pylint: disable=unused-import
from tests.simulators.secretserver import AUTH_FAILED, SecretServerSimulator

USER, PASSWORD = "svc-api", "s3cret-pass-word"

tss = pytest.importorskip("delinea.secrets.server", reason="python-tss-sdk is a test dependency (tests/requirements.txt)")


@pytest.fixture
def make_sim(start_simulator):
    def make(**kwargs):
        sim = start_simulator(SecretServerSimulator, **kwargs)
        sim.add_user(USER, PASSWORD)
        apps = sim.add_folder("Apps")
        payments = sim.add_folder("Payments", parent=apps)
        sim.add_secret("db", folder=payments, resource="db.example", username="app", password="db-pw-1", notes="prod")
        sim.add_secret("queue", folder=apps, template=6003, machine="mq01", username="mq", password="mq-pw-2")
        return sim

    return make


@pytest.fixture
def sim(make_sim):
    return make_sim()


def login(http, sim):
    form = {"username": USER, "password": PASSWORD, "grant_type": "password"}
    response = http.post(sim.api_url + "/oauth2/token", data=form, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def api(http, sim, path, token=None, **params):
    headers = {"Authorization": "Bearer " + token} if token else {}
    return http.get(f"{sim.api_url}/api/v1{path}", headers=headers, params=params or None, timeout=5)


def sdk(sim, token):
    authorizer = tss.AccessTokenAuthorizer(token, sim.api_url)
    return tss.SecretServer(sim.api_url, authorizer)


def test_the_sdk_reads_secrets_by_id_and_by_path(http, sim):
    client = sdk(sim, login(http, sim))
    secret = client.get_secret(1)
    assert secret["name"] == "db" and secret["secretTemplateName"] == "Password"
    values = {item["slug"]: item["itemValue"] for item in secret["items"]}
    assert values == {"resource": "db.example", "username": "app", "password": "db-pw-1", "notes": "prod"}
    assert [i["fieldName"] for i in secret["items"]] == ["Resource", "Username", "Password", "Notes"]
    model = tss.ServerSecret(**secret)     # the SDK's own model: parses the datetimes and keys fields by slug
    assert model.fields["password"].value == "db-pw-1" and model.folder_id == 2
    by_path = client.get_secret_by_path("/Apps/Payments/db")
    assert by_path["id"] == 1
    assert client.get_secret_by_path("\\apps\\queue")["items"][0]["slug"] == "machine"


def test_the_sdk_reads_folders_and_searches(http, sim):
    client = sdk(sim, login(http, sim))
    folder = client.get_folder(1, query_params={}, get_all_children=True)
    assert folder["folderName"] == "Apps" and folder["folderPath"] == "\\Apps"
    assert [c["folderName"] for c in folder["childFolders"]] == ["Payments"]
    assert client.get_folder_by_path("/Apps/Payments")["id"] == 2
    assert client.get_child_folder_ids_by_folderid(1) == [2]
    assert client.get_secret_ids_by_folderid(2) == [1]
    found = json.loads(client.search_secrets({"filter.searchText": "que"}))
    assert [r["name"] for r in found["records"]] == ["queue"] and found["total"] == 1
    everything = json.loads(client.search_secrets({"filter.folderId": 1, "filter.includeSubFolders": "true"}))
    assert sorted(r["name"] for r in everything["records"]) == ["db", "queue"]
    assert {r["folderPath"] for r in everything["records"]} == {"\\Apps", "\\Apps\\Payments"}
    lookup = json.loads(client.lookup_folders({"filter.searchText": "pay"}))
    assert lookup["records"] == [{"id": 2, "value": "Payments"}]


def test_one_field_and_paging(http, sim):
    token = login(http, sim)
    assert api(http, sim, "/secrets/1/fields/password", token).json() == "db-pw-1"
    assert api(http, sim, "/secrets/1/fields/nope", token).status_code == 400
    page = api(http, sim, "/secrets", token, take=1).json()
    assert len(page["records"]) == 1 and page["total"] == 2 and page["hasNext"] is True and page["nextSkip"] == 1
    assert api(http, sim, "/secrets/search-total", token).json() == 2


def test_a_missing_secret_or_folder_is_access_denied(http, sim):
    token = login(http, sim)
    for path, params in (("/secrets/99", {}), ("/secrets/0", {"secretPath": "\\nowhere\\x"}), ("/folders/99", {})):
        response = api(http, sim, path, token, **params)
        assert response.status_code == 400 and response.json()["errorCode"] == "API_AccessDenied"
    with pytest.raises(tss.SecretServerClientError):
        sdk(sim, token).get_secret(99)


@pytest.mark.parametrize("status", [403, 401])
@pytest.mark.parametrize("path", ["/secrets/1", "/secrets", "/folders/1", "/folders/lookup", "/no-such-route", "/secrets/1/no-such"])
def test_every_api_route_checks_the_token_first(http, make_sim, status, path):
    sim = make_sim(auth_fail_status=status)
    for token in (None, "not-a-token"):
        response = api(http, sim, path, token)
        assert response.status_code == status and response.json() == {"message": AUTH_FAILED}
    assert api(http, sim, "/no-such-route", login(http, sim)).status_code == 404


def test_a_dead_token_stops_reading_secrets(http, sim):
    token = login(http, sim)
    client = sdk(sim, token)
    assert client.get_secret(1)["id"] == 1
    http.post(sim.api_url + "/api/v1/oauth-expiration", headers={"Authorization": "Bearer " + token}, timeout=5)
    with pytest.raises(tss.SecretServerClientError):
        client.get_secret(1)


@pytest.mark.parametrize("mode, status", [(None, 200), ("form", 200), ("refuse", 400)])
def test_switch_mislabelled_form_body(http, make_sim, mode, status):
    """The vendor's PowerShell sample form-encodes its body but labels it application/json (secretserver.md 1.2).

    The vendor publishes it for real servers, so by default the simulator reads it as a form; "refuse" is the strict switch.
    """
    sim = make_sim(**({} if mode is None else {"mislabelled_form_body": mode}))
    body = f"username={USER}&password={PASSWORD}&grant_type=password"
    response = http.post(sim.api_url + "/oauth2/token", data=body, headers={"Content-Type": "application/json"}, timeout=5)
    assert response.status_code == status, response.text
    if status == 200:
        assert sim.token_works(response.json()["access_token"])
    # A real JSON body is another matter (switch accept_json_body), whatever this switch says.
    as_json = http.post(sim.api_url + "/oauth2/token", json={"username": USER, "password": PASSWORD, "grant_type": "password"}, timeout=5)
    assert as_json.status_code == 400


def test_secrets_survive_a_restart(tmp_path, clock, http):
    state = str(tmp_path / "ss.json")
    first = SecretServerSimulator(clock=clock, state_file=state)
    with first:
        first.add_user(USER, PASSWORD)
        first.add_secret("db", folder=first.add_folder("Apps"), password="pw")
    second = SecretServerSimulator(clock=clock, state_file=state)
    with second:
        assert api(http, second, "/secrets/0", login(http, second), secretPath="\\Apps\\db").json()["name"] == "db"
