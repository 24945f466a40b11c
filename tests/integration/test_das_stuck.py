"""Every state an interrupted DAS rotation can leave behind heals on the next run, or ends in needs_reconcile with steps.

Each test writes the record a killed run leaves: its intent at one step, held by a run on another host whose lease
ran out (an AWX job killed in its container), and the product in the state that step may have left it in, or in a
worse one: the new secret dead, the new id gone, the previous id deleted by someone else. One more run must end
with a stored secret that works in DAS.
"""

import datetime
import uuid

import pytest
import requests

from conftest import das_env, das_task

pytestmark = pytest.mark.integration

APP = {"description": "app", "allow_path_patterns": ["^/v1/tokens/.*"], "ttl": "24h"}
OVERLAP = dict(APP, strategy="overlap", grace_period="1h")
VIEWER = [{"role_id": "WorkspaceViewer", "resource_kind": "workspace", "resource_id": "*"}]


def run_das(runner, das, store, **options):
    run = runner.run([das_task(das, store, **options)], env=das_env(das, store))
    assert run.results, run
    return run.result


def path_of(store, das, token_id):
    return "%s/das/%s/%s" % (store.prefix, das.host, token_id)


def leave_intent(store, das, entry_id, step, usable, **data):
    """The record as a run killed on another host leaves it: its intent at `step`, its lease run out."""
    files = store._file_store()
    entry = files.read(path_of(store, das, entry_id))
    now = datetime.datetime.now(datetime.timezone.utc)
    record = dict(entry.data or {"product": "das"})
    record["pending"] = dict(rotation_id=str(uuid.uuid4()), step=step, holder="awx-job-4711-node-b:77",
                             started_at=(now - datetime.timedelta(seconds=90)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                             lease_expires_at=(now - datetime.timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                             secret_usable=usable, **data)
    files.write(path_of(store, das, entry_id), record, entry.version)
    return record


def put(das, token_id, regenerate=True, **body):
    """What another tool (or the killed run) did in DAS: create or regenerate a token; returns its new secret."""
    payload = dict(APP, regenerate=regenerate, **body)
    answer = requests.put(das.url + "/v1/tokens/" + token_id, json=payload,
                          headers={"Authorization": "Bearer " + das.admin}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json().get("result")


def delete(das, token_id):
    answer = requests.delete(das.url + "/v1/tokens/" + token_id, headers={"Authorization": "Bearer " + das.admin}, timeout=10)
    assert answer.status_code == 200, answer.text


def healed(store, das, token_id="app"):
    record = store.entry("das", das.host, token_id)
    assert record and "pending" not in record, record
    assert das.sim.secret_works(record["secret"]), record.get("token_id")
    return record


@pytest.fixture
def made(runner, das, file_store):
    run_das(runner, das, file_store, id="app", **APP)
    return file_store.entry("das", das.host, "app")


# ------------------------------------------------------------------ regenerate in place

@pytest.mark.parametrize("variant", ["regenerated", "id deleted", "never sent"])
def test_minting(runner, das, file_store, made, variant):
    if variant == "regenerated":
        put(das, "app")                    # the killed run's regenerate committed: the stored secret is dead
        assert not das.sim.secret_works(made["secret"])
    elif variant == "id deleted":
        delete(das, "app")                 # and someone deleted the token meanwhile
    leave_intent(file_store, das, "app", "minting", False, token_id="app")
    result = run_das(runner, das, file_store, id="app", **APP)
    assert result["action"] == "recovered" and result["recovered_step"] == "minting", result
    assert healed(file_store, das)["secret"] != made["secret"]


# ------------------------------------------------------------------ overlap

@pytest.mark.parametrize("variant", ["new id created", "new id absent"])
def test_creating(runner, das, file_store, made, variant):
    if variant == "new id created":
        put(das, "app-b")                  # created, its secret lost with the killed run
    leave_intent(file_store, das, "app", "creating", True, new_token_id="app-b", old_token_id="app")
    result = run_das(runner, das, file_store, id="app", **OVERLAP)
    assert result["action"] == "recovered" and result["token_id"] == "app-b", result
    record = healed(file_store, das)
    assert record["token_id"] == "app-b" and record["previous"]["token_id"] == "app"
    assert das.sim.secret_works(made["secret"])       # the overlap: the old secret lives until the grace ends


@pytest.mark.parametrize("variant", ["new secret works", "new secret dead", "new id gone", "previous id deleted"])
def test_verifying(runner, das, file_store, made, variant):
    new_secret = put(das, "app-b")
    if variant == "new secret dead":
        put(das, "app-b")                  # someone regenerated the new id: the secret in the intent is dead
    elif variant == "new id gone":
        delete(das, "app-b")
    elif variant == "previous id deleted":
        delete(das, "app")
    leave_intent(file_store, das, "app", "verifying", True, new_token_id="app-b", old_token_id="app", new_secret=new_secret)
    result = run_das(runner, das, file_store, id="app", **OVERLAP)
    assert result["action"] == "recovered" and result["token_id"] == "app-b", result
    record = healed(file_store, das)
    assert record["token_id"] == "app-b"
    assert (record["secret"] == new_secret) == (variant in ("new secret works", "previous id deleted"))


@pytest.mark.parametrize("variant", ["previous id present", "previous id deleted"])
def test_revoking_previous(runner, das, file_store, made, variant):
    run_das(runner, das, file_store, id="app", state="rotated", **OVERLAP)
    rotated = file_store.entry("das", das.host, "app")
    assert rotated["previous"]["token_id"] == "app"
    if variant == "previous id deleted":
        delete(das, "app")
    leave_intent(file_store, das, "app", "revoking_previous", True, old_token_id="app")
    result = run_das(runner, das, file_store, id="app", **OVERLAP)
    assert result["action"] == "recovered" and result["revoked_token_id"] == "app", result
    record = healed(file_store, das)
    assert "previous" not in record and das.sim.token("app") is None
    assert record["secret"] == rotated["secret"]


# ------------------------------------------------------------------ bindings, updates, revocation

def test_binding(runner, das, file_store, made):
    leave_intent(file_store, das, "app", "binding", True)
    result = run_das(runner, das, file_store, id="app", role_bindings=VIEWER, **APP)
    assert result["action"] == "recovered", result
    healed(file_store, das)
    assert das.sim.bindings_for("app") == [("WorkspaceViewer", "workspace", "*")]


def test_updating(runner, das, file_store, made):
    leave_intent(file_store, das, "app", "updating", True, token_id="app")
    changed = dict(APP)
    changed["description"] = "changed"
    result = run_das(runner, das, file_store, id="app", **changed)
    assert result["action"] == "updated" and result["recovered_step"] == "updating", result
    assert result["msg"].startswith("recovered: the interrupted step 'updating' was settled; then updated"), result
    assert healed(file_store, das)["secret"] == made["secret"]
    assert das.sim.token("app")["description"] == "changed"


def test_revoking_interrupted_then_present_again(runner, das, file_store, made):
    delete(das, "app")                     # the killed absent run had deleted the token
    leave_intent(file_store, das, "app", "revoking", False, token_ids=["app"])
    result = run_das(runner, das, file_store, id="app", **APP)
    assert result["recovered_step"] == "revoking" and not result.get("failed"), result
    assert healed(file_store, das)["secret"] != made["secret"]


def test_revoking_interrupted_then_absent_again(runner, das, file_store, made):
    leave_intent(file_store, das, "app", "revoking", False, token_ids=["app"])
    result = run_das(runner, das, file_store, id="app", state="absent")
    assert result["action"] == "revoked", result
    assert das.sim.token("app") is None and file_store.entry("das", das.host, "app") is None


def test_an_unknown_step_gives_reconcile_steps(runner, das, file_store, made):
    leave_intent(file_store, das, "app", "teleporting", False)
    result = run_das(runner, das, file_store, id="app", **APP)
    assert result["failed"] and result["action"] == "needs_reconcile", result
    assert result["reconcile_steps"] and "teleporting" in result["msg"]
