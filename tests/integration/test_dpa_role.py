"""The dpa role, with an inventory whose host is the DPA server, through the play proposed for playbooks/rotate.yml."""

import json

import pytest
import yaml

# Fixtures: pytest finds them by name in this module.
from dpa_fixtures import dpa, dpa_factory  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.integration

PLAY = [{"name": "SolarWinds DPA refresh tokens", "hosts": "dpa", "gather_facts": False, "roles": [{"role": "tokenops.rotation.dpa"}]}]


def inventory(tmp_path, dpa, store, tokens, **host_vars):
    host = {"dpa_url": dpa.url, "dpa_ca_path": dpa.ca_path, "dpa_store": store.options, "dpa_report_file": str(tmp_path / "report.json"),
            "dpa_tokens": tokens}
    host.update(host_vars)
    doc = {"all": {"vars": {"ansible_connection": "local"}, "children": {"dpa": {"hosts": {"dpa-a": host}}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def run_role(runner, store, inv, check=False):
    proc, results = runner.start(env=dict(store.env), inventory=inv, check=check, playbook=PLAY)
    return runner.finish(proc, results)


def report(tmp_path):
    return {row["id"]: row for row in json.loads((tmp_path / "report.json").read_text())}


def recap_changed(run):
    line = [ln for ln in run.stdout.splitlines() if ln.startswith("dpa-a")][-1]
    return int(line.split("changed=")[1].split()[0])


def test_role_stores_then_changes_nothing(runner, dpa, file_store, tmp_path):
    store = file_store
    tokens = [{"id": "reporting", "refresh_token": dpa.issue("reporting")}, {"id": "archive", "refresh_token": dpa.issue("archive", never=True)}]
    inv = inventory(tmp_path, dpa, store, tokens)
    first = run_role(runner, store, inv)
    assert first.rc == 0, first
    rows = report(tmp_path)
    assert {i: r["action"] for i, r in rows.items()} == {"reporting": "created", "archive": "created"}
    assert rows["archive"]["expires_at"] is None and rows["archive"]["expiry_status"] == "never"
    assert all(r["fingerprint"].startswith("sha256:") and r["host"] == "dpa-a" for r in rows.values())
    # The store path uses the inventory host's name.
    assert store.read("%s/dpa/dpa-a/reporting" % store.prefix)["secret"] == tokens[0]["refresh_token"]
    dpa.sim.reset_counts()
    writes = store.writes()
    second = run_role(runner, store, inv)
    assert second.rc == 0 and recap_changed(second) == 0, second
    assert dpa.sim.count(writes_only=True) == 0 and store.writes() == writes
    assert {r["action"] for r in report(tmp_path).values()} == {"none"}


def test_role_adopts_removes_and_reports_a_failure(runner, dpa, file_store, tmp_path):
    tokens = [{"id": "reporting", "refresh_token": dpa.issue("reporting-q1")}, {"id": "archive", "refresh_token": dpa.issue("archive")}]
    assert run_role(runner, file_store, inventory(tmp_path, dpa, file_store, tokens)).rc == 0
    new = [{"id": "reporting", "refresh_token": dpa.issue("reporting-q2")}]
    run = run_role(runner, file_store, inventory(tmp_path, dpa, file_store, new, dpa_state="rotated", dpa_tokens_absent=["archive"]))
    assert run.rc == 0, run
    rows = report(tmp_path)
    assert rows["reporting"]["action"] == "rotated" and rows["reporting"]["token_id"] == "reporting-q2"
    assert "'reporting-q1'" in rows["reporting"]["manual_step"] and rows["reporting"]["days_left"] in (89, 90)
    assert rows["reporting"]["expiry_status"] == "ok" and rows["archive"]["expiry_status"] == "ok"
    assert rows["archive"]["action"] == "removed" and "Refresh Token Management" in rows["archive"]["msg"]
    assert file_store.read("%s/dpa/dpa-a/archive" % file_store.prefix) is None
    # A token within fail_before fails the run, and the report is written all the same.
    expiring = [{"id": "expiring", "refresh_token": dpa.issue("expiring", days=3)}]
    run = run_role(runner, file_store, inventory(tmp_path, dpa, file_store, expiring))
    assert run.rc != 0 and "fail_before: 7 days" in run.stdout, run
    assert report(tmp_path)["expiring"]["expiry_status"] == "fail" and report(tmp_path)["expiring"]["action"] == "created"


def test_role_check_mode_changes_nothing(runner, dpa, file_store, tmp_path):
    inv = inventory(tmp_path, dpa, file_store, [{"id": "reporting", "refresh_token": dpa.issue("reporting")}])
    run = run_role(runner, file_store, inv, check=True)
    assert run.rc == 0 and recap_changed(run) > 0, run
    assert not file_store.file_path.exists() and dpa.sim.count("GET") == 0


def test_role_rejects_bad_arguments(runner, dpa, file_store, tmp_path):
    inv = inventory(tmp_path, dpa, file_store, [{"id": "reporting", "token": "x"}], dpa_state="sideways")
    run = run_role(runner, file_store, inv)
    assert run.rc != 0 and "dpa_state" in run.stdout and dpa.sim.count() == 0
