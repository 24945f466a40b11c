"""The das role through the shipped playbook, with an inventory whose host is the DAS tenant."""

import json

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.integration


def inventory(tmp_path, das, store, **host_vars):
    tokens = [
        {"id": "systems/pay/opa", "description": "payments OPA", "allow_path_patterns": ["^/v1/systems/pay/.*"],
         "ttl": "720h", "role_bindings": [{"role_id": "SystemOPA", "resource_kind": "system", "resource_id": "pay"}]},
        {"id": "ci-deployer", "allow_path_patterns": ["^/v1/policies/.*"], "ttl": "168h", "strategy": "overlap"},
    ]
    host = {"das_url": das.url, "das_store": store.options, "das_report_file": str(tmp_path / "report.json"), "das_tokens": tokens}
    host.update(host_vars)
    doc = {"all": {"vars": {"ansible_connection": "local"}, "children": {"das": {"hosts": {"tenant-a": host}}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def run_role(runner, das, store, inv, check=False):
    env = dict(store.env, STYRA_DAS_TOKEN=das.admin)
    proc, results = runner.start(env=env, inventory=inv, check=check,
                                 playbook=yaml.safe_load((REPO / "playbooks" / "rotate.yml").read_text()))
    return runner.finish(proc, results)


def recap_changed(run):
    line = [ln for ln in run.stdout.splitlines() if ln.startswith("tenant-a")][-1]
    return int(line.split("changed=")[1].split()[0])


def test_role_creates_then_changes_nothing(runner, das, store, tmp_path):
    inv = inventory(tmp_path, das, store)
    first = run_role(runner, das, store, inv)
    assert first.rc == 0, first
    report = json.loads((tmp_path / "report.json").read_text())
    assert {r["id"]: r["action"] for r in report} == {"systems/pay/opa": "created", "ci-deployer": "created"}
    assert all(r["fingerprint"].startswith("sha256:") and "secret" not in r for r in report)
    # The store path uses the inventory host's name.
    assert das.sim.secret_works(store.read("%s/das/tenant-a/ci-deployer" % store.prefix)["secret"])
    das.sim.reset_counts()
    writes = store.writes()
    second = run_role(runner, das, store, inv)
    assert second.rc == 0 and recap_changed(second) == 0, second
    assert das.sim.count(writes_only=True) == 0 and store.writes() == writes
    assert {r["action"] for r in json.loads((tmp_path / "report.json").read_text())} == {"none"}


def test_role_rotates_and_cleans_up(runner, das, file_store, tmp_path):
    assert run_role(runner, das, file_store, inventory(tmp_path, das, file_store)).rc == 0
    deployer = {"id": "ci-deployer", "allow_path_patterns": ["^/v1/policies/.*"], "ttl": "168h", "strategy": "overlap"}
    inv = inventory(tmp_path, das, file_store, das_state="rotated", das_tokens_absent=["systems/pay/opa"], das_tokens=[deployer])
    run = run_role(runner, das, file_store, inv)
    assert run.rc == 0, run
    report = {r["id"]: r for r in json.loads((tmp_path / "report.json").read_text())}
    assert report["ci-deployer"]["action"] == "rotated" and report["ci-deployer"]["token_id"] == "ci-deployer-b"
    assert report["systems/pay/opa"]["action"] == "revoked"
    assert das.sim.token("systems/pay/opa") is None


def test_role_check_mode_changes_nothing(runner, das, file_store, tmp_path):
    run = run_role(runner, das, file_store, inventory(tmp_path, das, file_store), check=True)
    assert run.rc == 0 and recap_changed(run) > 0, run
    assert das.sim.count(writes_only=True) == 0 and not file_store.file_path.exists()


def test_role_rejects_bad_arguments(runner, das, file_store, tmp_path):
    run = run_role(runner, das, file_store, inventory(tmp_path, das, file_store, das_state="sideways"))
    assert run.rc != 0 and "das_state" in run.stdout and das.sim.count() == 0
