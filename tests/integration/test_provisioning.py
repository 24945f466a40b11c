"""The provisioning playbooks, as a workflow runs them before the scheduled job.

Each writes its token where the product's role reads it, with the role's CA and store settings, and
hands the next step only a store path (set_stats). The scheduled job then keeps them without an error.
"""

import json

import pytest
import yaml

from conftest import REPO, StoreUnderTest
from openpayments_fixtures import KEY_ID, op_factory  # noqa: F401  # pylint: disable=unused-import
from secretserver_fixtures import USER, ss_factory  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.integration

OPA_PATTERNS = ["^/v1/systems/sys-1/.*"]


def test_provisioned_tokens_are_kept_by_the_scheduled_job(tmp_path, runner, bao, das_factory, ss_factory, op_factory):  # noqa: F811
    store = StoreUnderTest("vault", tmp_path, bao)
    das = das_factory(tls=True)   # a private CA: the provisioning must take das_ca_path as the role does
    ss, op = ss_factory(), op_factory()
    hosts = {
        "das": {"tenant-a": {"das_url": das.url, "das_ca_path": das.sim.ca_path, "das_store": store.options}},
        "secretserver": {"pam-1": {"secretserver_url": ss.url, "secretserver_store": store.options}},
        "openpayments": {"as-1": {"openpayments_url": op.url, "openpayments_client_wallet_address": op.client,
                                  "openpayments_key_id": KEY_ID, "openpayments_store": store.options}},
    }

    def inventory():
        doc = {"all": {"vars": {"ansible_connection": "local", "tokenops_report_dir": str(tmp_path / "reports")},
                       "children": {group: {"hosts": h} for group, h in hosts.items()}}}
        path = tmp_path / "inventory.yml"
        path.write_text(yaml.safe_dump(doc))
        return str(path)

    env = dict(store.env, STYRA_DAS_TOKEN=das.admin, TSS_PASSWORD=ss.password, OPEN_PAYMENTS_PRIVATE_KEY=op.pem)
    extra = {"das_tenant": "tenant-a", "new_system_id": "sys-1", "secretserver_server": "pam-1", "new_username": USER,
             "openpayments_server": "as-1", "new_grant_id": "payout", "new_grant_access": op.outgoing,
             "new_grant_finish_uri": "https://client.example/return"}
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    # The three workflow steps, as installed with the collection.
    workflow = [{"import_playbook": "tokenops.rotation.provision_das_token"},
                {"import_playbook": "tokenops.rotation.provision_secretserver_token"},
                {"import_playbook": "tokenops.rotation.provision_openpayments_grant"}]
    provisioned = runner.run(playbook=workflow, env=env, inventory=inventory(), extra_args=["-e", "@%s" % (tmp_path / "extra.json")])
    assert provisioned.rc == 0, provisioned

    # The next step gets store paths (and the consent URL), nothing else: no secret, no token.
    stats = {}
    for result in provisioned.results:
        stats.update((result.get("ansible_stats") or {}).get("data") or {})
    redirect = [r for r in provisioned.results if r.get("action") == "needs_interaction"][0]["redirect"]
    assert stats == {"opa_token_store_path": "%s/das/tenant-a/systems/sys-1/opa" % store.prefix,
                     "secretserver_token_store_path": "%s/secretserver/pam-1/%s" % (store.prefix, USER),
                     "openpayments_grant_store_path": "%s/openpayments/as-1/payout" % store.prefix,
                     "openpayments_grant_status": "needs_interaction", "openpayments_consent_url": redirect}
    assert redirect.startswith(op.sim.auth_server + "/interact/")
    assert das.sim.secret_works(store.read(stats["opa_token_store_path"])["secret"])
    assert ss.works(store.read(stats["secretserver_token_store_path"]))

    # The scheduled job finds them where its roles read, and keeps them without an error.
    hosts["das"]["tenant-a"]["das_tokens"] = [{
        "id": "systems/sys-1/opa", "description": "OPA of system sys-1", "allow_path_patterns": OPA_PATTERNS, "ttl": "720h",
        "role_bindings": [{"role_id": "SystemOPA", "resource_kind": "system", "resource_id": "sys-1"}]}]
    hosts["secretserver"]["pam-1"]["secretserver_tokens"] = [{"id": USER, "username": USER}]
    hosts["openpayments"]["as-1"]["openpayments_tokens"] = [{"id": "payout", "access": op.outgoing,
                                                             "finish_uri": "https://client.example/return"}]
    # Rotated at once (as when they come due): the job holds what rotating needs.
    hosts["das"]["tenant-a"]["das_state"] = hosts["secretserver"]["pam-1"]["secretserver_state"] = "rotated"
    old_opa = store.read(stats["opa_token_store_path"])["secret"]
    rotate = yaml.safe_load((REPO / "playbooks" / "rotate.yml").read_text())
    run = runner.run(playbook=rotate, env=env, inventory=inventory(), diff=True)
    assert run.rc == 0, run
    report = json.loads((tmp_path / "reports" / "tokenops-rotation.json").read_text())
    assert {(r["product"], r["token"]): r["action"] for r in report["rows"]} == {
        ("das", "systems/sys-1/opa"): "rotated", ("secretserver", USER): "rotated", ("openpayments", "payout"): "needs_interaction"}
    assert report["failures"] == []
    new_opa = store.read(stats["opa_token_store_path"])["secret"]
    assert new_opa != old_opa and das.sim.secret_works(new_opa) and not das.sim.secret_works(old_opa)
    assert [r["redirect"] for r in report["rows"] if r["token"] == "payout"] == [redirect]
    # No DPA in this inventory, and not a word about it.
    assert "WARNING" not in run.stdout + run.stderr, [ln for ln in (run.stdout + run.stderr).splitlines() if "WARNING" in ln]

    # --limit (what AWX job slicing does too) and one fork: the report still comes, over the hosts the job ran.
    del hosts["secretserver"]["pam-1"]["secretserver_state"]
    limited = runner.run(playbook=rotate, env=env, inventory=inventory(), extra_args=["--limit", "pam-1", "--forks", "1"])
    assert limited.rc == 0, limited
    report = json.loads((tmp_path / "reports" / "tokenops-rotation.json").read_text())
    assert [(r["product"], r["token"], r["action"]) for r in report["rows"]] == [("secretserver", USER, "none")]
