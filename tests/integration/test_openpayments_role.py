"""The openpayments role in a play, with an inventory whose host is the authorization server."""

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from openpayments_fixtures import KEY_ID, op, op_env, op_factory  # noqa: F401 pylint: disable=unused-import

pytestmark = pytest.mark.integration

# The role on its own, in a play of its own.
PLAY = [{"name": "Open Payments access tokens", "hosts": "openpayments", "gather_facts": False,
         "roles": [{"role": "tokenops.rotation.openpayments"}]}]


def inventory(tmp_path, op, store, **host_vars):
    host = {"openpayments_url": op.url, "openpayments_client_wallet_address": op.client, "openpayments_key_id": KEY_ID,
            "openpayments_store": store.options, "openpayments_report_file": str(tmp_path / "report.json"),
            "openpayments_tokens": [{"id": "invoicing", "access": op.incoming},
                                    {"id": "payout", "access": op.outgoing, "finish_uri": "https://client.example/return"}]}
    host.update(host_vars)
    doc = {"all": {"vars": {"ansible_connection": "local"}, "children": {"openpayments": {"hosts": {"as-1": host}}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def run_role(runner, op, store, inv, check=False):
    proc, results = runner.start(env=op_env(op, store), inventory=inv, check=check, playbook=PLAY)
    return runner.finish(proc, results)


def report(tmp_path):
    return {r["id"]: r for r in json.loads((tmp_path / "report.json").read_text())}


def recap_changed(run):
    line = [ln for ln in run.stdout.splitlines() if ln.startswith("as-1")][-1]
    return int(line.split("changed=")[1].split()[0])


def test_role_grants_then_changes_nothing(runner, op, store, tmp_path):
    inv = inventory(tmp_path, op, store)
    first = run_role(runner, op, store, inv)
    assert first.rc == 0, first
    rows = report(tmp_path)
    assert {i: r["action"] for i, r in rows.items()} == {"invoicing": "created", "payout": "needs_interaction"}
    assert rows["invoicing"]["fingerprint"].startswith("sha256:") and all("secret" not in r for r in rows.values())
    assert "payout: approve at " + op.sim.auth_server + "/interact/" in first.stdout
    # The store path uses the inventory host's name.
    assert op.sim.token_works(store.read("%s/openpayments/as-1/invoicing" % store.prefix)["secret"])
    op.sim.reset_counts()
    writes = store.writes()
    second = run_role(runner, op, store, inv)
    assert second.rc == 0 and recap_changed(second) == 0, second
    assert op.sim.count(writes_only=True) == 0 and store.writes() == writes
    assert {r["action"] for r in report(tmp_path).values()} == {"none", "needs_interaction"}


def test_role_rotates_and_cancels(runner, op, file_store, tmp_path):
    assert run_role(runner, op, file_store, inventory(tmp_path, op, file_store)).rc == 0
    old = file_store.read("%s/openpayments/as-1/invoicing" % file_store.prefix)
    inv = inventory(tmp_path, op, file_store, openpayments_state="rotated", openpayments_tokens_absent=["payout"],
                    openpayments_tokens=[{"id": "invoicing", "access": op.incoming}])
    run = run_role(runner, op, file_store, inv)
    assert run.rc == 0, run
    rows = report(tmp_path)
    assert rows["invoicing"]["action"] == "rotated" and rows["payout"]["action"] == "revoked"
    assert not op.sim.token_works(old["secret"]) and file_store.read("%s/openpayments/as-1/payout" % file_store.prefix) is None


def test_role_check_mode_changes_nothing(runner, op, file_store, tmp_path):
    run = run_role(runner, op, file_store, inventory(tmp_path, op, file_store), check=True)
    assert run.rc == 0 and recap_changed(run) > 0, run
    assert op.sim.count() == 0 and not file_store.file_path.exists()


def test_role_rejects_bad_arguments(runner, op, file_store, tmp_path):
    run = run_role(runner, op, file_store, inventory(tmp_path, op, file_store, openpayments_state="sideways"))
    assert run.rc != 0 and "openpayments_state" in run.stdout and op.sim.count() == 0


ROTATE = yaml.safe_load((Path(__file__).resolve().parents[2] / "playbooks" / "rotate.yml").read_text())


def run_job(runner, op, store, inv, tmp_path, extra_vars=None):
    """rotate.yml over the inventory; returns (run, the report's row of each grant)."""
    args = ["-e", json.dumps(dict(tokenops_report_dir=str(tmp_path / "reports"), **(extra_vars or {})))]
    proc, results = runner.start(env=op_env(op, store), inventory=inv, playbook=ROTATE, extra_args=args)
    run = runner.finish(proc, results)
    assert (tmp_path / "reports" / "tokenops-rotation.json").exists(), run
    rows = json.loads((tmp_path / "reports" / "tokenops-rotation.json").read_text())["rows"]
    return run, {row["token"]: row for row in rows}


def test_a_grant_with_finish_uri_is_continued_with_the_interact_ref_given_to_the_job(runner, op, file_store, tmp_path):
    """Request, the report's advice, approval, the interact_ref handed to the job as it says, the token issued.

    A re-run without the interact_ref keeps waiting: the advice must not be "approve, then run the job again".
    payout gets the interact_ref alone; payout-eu the redirect's interact_ref and hash.
    """
    grants = [{"id": "invoicing", "access": op.incoming}] + [
        {"id": grant_id, "access": op.outgoing, "finish_uri": "https://client.example/return"} for grant_id in ("payout", "payout-eu")]
    inv = inventory(tmp_path, op, file_store, openpayments_tokens=grants)
    first, rows = run_job(runner, op, file_store, inv, tmp_path)
    assert first.rc == 0 and rows["payout"]["action"] == "needs_interaction", first
    todo = " ".join(rows["payout"]["todo"])
    redirect = rows["payout"]["redirect"]
    assert redirect in todo and "https://client.example/return?hash=...&interact_ref=..." in todo, todo
    assert "openpayments_interact_refs: {payout: <interact_ref>}" in todo, todo
    assert "then run the job again" not in todo.replace("run the job again with that interact_ref", ""), todo

    # The resource owner approves; the browser lands on the finish URI with interact_ref (and hash) in its query.
    landed = {}
    for grant_id in ("payout", "payout-eu"):
        url = op.sim.approve(rows[grant_id]["redirect"].split("/interact/")[1].split("/")[0])["redirect"]
        assert url.startswith("https://client.example/return?")
        landed[grant_id] = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}

    again, rows = run_job(runner, op, file_store, inv, tmp_path)
    assert again.rc == 0 and rows["payout"]["action"] == "needs_interaction", again   # approval alone continues nothing

    given = {"payout": landed["payout"]["interact_ref"], "payout-eu": landed["payout-eu"]}   # payout-eu: interact_ref and hash
    final, rows = run_job(runner, op, file_store, inv, tmp_path, {"openpayments_interact_refs": given})
    assert final.rc == 0, final
    for grant_id in ("payout", "payout-eu"):
        assert rows[grant_id]["action"] == "created" and not rows[grant_id]["todo"], rows[grant_id]
        stored = file_store.read("%s/openpayments/as-1/%s" % (file_store.prefix, grant_id))
        assert stored["grant"]["status"] == "issued" and op.sim.token_works(stored["secret"])
    assert rows["invoicing"]["action"] == "none"
