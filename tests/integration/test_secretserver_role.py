"""The secretserver role, with an inventory whose host is the Secret Server (the play the lead adds to playbooks/rotate.yml)."""

import json

import pytest
import yaml

import secretserver_fixtures
from secretserver_fixtures import USER

pytestmark = pytest.mark.integration
ss, ss_factory = secretserver_fixtures.ss, secretserver_fixtures.ss_factory   # the simulator fixtures

PLAY = [{"name": "Delinea Secret Server tokens", "hosts": "secretserver", "gather_facts": False,
         "roles": [{"role": "tokenops.rotation.secretserver"}]}]


def inventory(tmp_path, ss, store, reports_password, **host_vars):
    tokens = [{"username": USER}, {"id": "reports", "username": "svc-reports", "domain": "CORP", "password": reports_password}]
    host = {"secretserver_url": ss.url, "secretserver_store": store.options, "secretserver_tokens": tokens,
            "secretserver_report_file": str(tmp_path / "report.json")}
    host.update(host_vars)
    doc = {"all": {"vars": {"ansible_connection": "local"}, "children": {"secretserver": {"hosts": {"pam-a": host}}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def run_role(runner, ss, store, inv, check=False):
    env = dict(store.env, TSS_PASSWORD=ss.password)
    proc, results = runner.start(env=env, inventory=inv, check=check, playbook=PLAY)
    return runner.finish(proc, results)


def recap_changed(run):
    line = [ln for ln in run.stdout.splitlines() if ln.startswith("pam-a")][-1]
    return int(line.split("changed=")[1].split()[0])


def report(tmp_path):
    return {r["id"]: r for r in json.loads((tmp_path / "report.json").read_text())}


def test_role_logs_in_then_changes_nothing(runner, ss, store, tmp_path):
    inv = inventory(tmp_path, ss, store, ss.add_user("svc-reports", domain="CORP"))
    first = run_role(runner, ss, store, inv)
    assert first.rc == 0, first
    rows = report(tmp_path)
    assert {k: (r["action"], r["method"]) for k, r in rows.items()} == {USER: ("created", "password"), "reports": ("created", "password")}
    assert all(r["fingerprint"].startswith("sha256:") and r["host"] == "pam-a" and "secret" not in r for r in rows.values())
    # The store path uses the inventory host's name.
    assert ss.works(store.read("%s/secretserver/pam-a/reports" % store.prefix))
    ss.sim.reset_counts()
    writes = store.writes()
    second = run_role(runner, ss, store, inv)
    assert second.rc == 0 and recap_changed(second) == 0, second
    assert ss.sim.count(writes_only=True) == 0 and store.writes() == writes
    assert {r["action"] for r in report(tmp_path).values()} == {"none"}


def test_role_refreshes_when_due_and_cleans_up(runner, ss, file_store, tmp_path):
    password = ss.add_user("svc-reports", domain="CORP")
    assert run_role(runner, ss, file_store, inventory(tmp_path, ss, file_store, password)).rc == 0
    inv = inventory(tmp_path, ss, file_store, password, secretserver_max_age="0s", secretserver_tokens_absent=["reports"],
                    secretserver_tokens=[{"username": USER}])
    run = run_role(runner, ss, file_store, inv)
    assert run.rc == 0, run
    rows = report(tmp_path)
    assert (rows[USER]["action"], rows[USER]["method"], rows[USER]["refreshes_remaining"]) == ("rotated", "refresh", 2)
    assert rows["reports"]["action"] == "revoked" and file_store.read("%s/secretserver/pam-a/reports" % file_store.prefix) is None


def test_role_check_mode_changes_nothing(runner, ss, file_store, tmp_path):
    run = run_role(runner, ss, file_store, inventory(tmp_path, ss, file_store, "unused-password"), check=True)
    assert run.rc == 0 and recap_changed(run) > 0, run
    assert ss.sim.count(writes_only=True) == 0 and not file_store.file_path.exists()


def test_role_rejects_bad_arguments(runner, ss, file_store, tmp_path):
    run = run_role(runner, ss, file_store, inventory(tmp_path, ss, file_store, "unused-password", secretserver_state="absent"))
    assert run.rc != 0 and "secretserver_state" in run.stdout and ss.sim.count() == 0
