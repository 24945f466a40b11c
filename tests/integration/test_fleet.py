"""The scheduled job, playbooks/rotate.yml, over all four products at once.

A catalog with fresh, due, expired, broken, backed-off and consent-waiting tokens: every product runs,
each token gets the right action, the report across products lists them by urgency, and the job fails
at the very end naming exactly what needs a person. Check mode predicts the same. Another run, with one
product's simulator down, still rotates the other three and says in its report what failed.
"""

import json
import subprocess
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

import conftest
from conftest import REPO, StoreUnderTest
from dpa_fixtures import dpa_factory  # noqa: F401  # pylint: disable=unused-import
from openpayments_fixtures import KEY_ID, op_factory  # noqa: F401  # pylint: disable=unused-import
from secretserver_fixtures import USER, ss_factory  # noqa: F401  # pylint: disable=unused-import
from tests.simulators.base import Clock

pytestmark = pytest.mark.integration

ROTATE = yaml.safe_load((REPO / "playbooks" / "rotate.yml").read_text())
HOURS = 3600


@pytest.fixture
def vault_store(bao, tmp_path):
    return StoreUnderTest("vault", tmp_path, bao)


class Fleet:
    """Four simulators, one inventory host each, one OpenBao store; runs of rotate.yml and their reports."""

    def __init__(self, tmp_path, runner, store, das, dpa, ss, op):
        self.tmp_path, self.runner, self.store = tmp_path, runner, store
        self.das, self.dpa, self.ss, self.op = das, dpa, ss, op
        self.reports = tmp_path / "reports"
        self.hosts = {}

    names = {"das": "tenant-a", "dpa": "dpa-1", "secretserver": "pam-1", "openpayments": "as-1"}

    def inventory(self, **overrides):
        """The inventory of this run: each group's host, with this run's overrides of its variables."""
        children = {group: {"hosts": {self.names[group]: dict(host, **overrides.get(group, {}))}} for group, host in self.hosts.items()}
        doc = {"all": {"vars": {"ansible_connection": "local", "tokenops_report_dir": str(self.reports),
                                "tokenops_consent_wait_limit": "1h"}, "children": children}}
        path = self.tmp_path / ("inventory-%d.yml" % time.monotonic_ns())
        path.write_text(yaml.safe_dump(doc))
        return str(path)

    def env(self):
        env = dict(self.store.env, STYRA_DAS_TOKEN=self.das.admin, TSS_PASSWORD=self.ss.password)
        env["OPEN_PAYMENTS_PRIVATE_KEY"] = self.op.pem
        return env

    def start(self, check=False, **overrides):
        return self.runner.start(env=self.env(), inventory=self.inventory(**overrides), check=check, playbook=ROTATE)

    def run(self, check=False, **overrides):
        # A check run writes its report as a prediction, beside the real one (and no Prometheus file).
        report_file = self.reports / ("tokenops-rotation-check.json" if check else "tokenops-rotation.json")
        if report_file.exists():
            report_file.unlink()
        metrics = self.reports / "tokenops-rotation.prom"
        real_metrics = metrics.read_text() if metrics.exists() else None
        run = self.runner.finish(*self.start(check=check, **overrides), timeout=300)
        report = json.loads(report_file.read_text())
        if check:
            returned = [r for r in run.results if r.get("_task", "").startswith("Report | One row per token")][0]
            assert report["prediction"] is True and report["rows"] == returned["rows"]
            assert (metrics.read_text() if metrics.exists() else None) == real_metrics   # the real run's metrics stay
        return run, report


def actions(report):
    return {(r["product"], r["token"]): r["action"] + ("+backed_off" if r["backed_off"] else "") for r in report["rows"]}


def failing(report):
    return sorted((f["product"], f["token"], tuple(f["conditions"])) for f in report["failures"])


@pytest.fixture
def fleet(tmp_path, runner, vault_store, das_factory, dpa_factory, ss_factory, op_factory):  # noqa: F811
    # DAS's clock stands 20 hours back while the tokens are made, then moves to now: what was made
    # with a 24-hour ttl is due, with a 2-hour ttl expired.
    das = das_factory(clock=Clock(start=time.time() - 20 * HOURS))
    dpa, ss, op = dpa_factory(), ss_factory(), op_factory()
    return Fleet(tmp_path, runner, vault_store, das, dpa, ss, op)


def das_host(das, store, tokens):
    return {"das_url": das.url, "das_store": store.options, "das_rotate_before": "6h", "das_tokens": tokens}


def das_token(token_id, ttl):
    return {"id": token_id, "description": token_id, "allow_path_patterns": ["^/v1/systems/%s/.*" % token_id], "ttl": ttl}


def test_the_job_over_a_mixed_catalog(fleet, runner):
    das, dpa, ss, op, store = fleet.das, fleet.dpa, fleet.ss, fleet.op, fleet.store
    fleet.hosts["das"] = das_host(das, store, [das_token("fresh", "720h"), das_token("due", "24h"), das_token("expired", "2h"),
                                               das_token("broken", "24h"), das_token("held", "720h")])
    revoked = dpa.issue("revoked")
    fleet.hosts["dpa"] = {"dpa_url": dpa.url, "dpa_ca_path": dpa.ca_path, "dpa_store": store.options, "dpa_tokens": [
        {"id": "reporting", "refresh_token": dpa.issue("reporting")}, {"id": "archive", "refresh_token": dpa.issue("archive", never=True)},
        {"id": "soon", "refresh_token": dpa.issue("soon", days=20)}, {"id": "dying", "refresh_token": dpa.issue("dying", days=3)},
        {"id": "revoked", "refresh_token": revoked}]}
    otp_password = ss.add_user("svc-otp", otp=True)
    ss_tokens = [{"id": "automation", "username": USER}, {"id": "reports", "username": "svc-reports", "password": ss.add_user("svc-reports")},
                 {"id": "otp-user", "username": "svc-otp", "password": otp_password}]
    # Without refresh tokens a dead session means a password login, which check mode can foresee (a refresh it cannot:
    # whether the server still honours a refresh token is known only by spending it).
    fleet.hosts["secretserver"] = {"secretserver_url": ss.url, "secretserver_store": store.options, "secretserver_tokens": ss_tokens,
                                   "secretserver_refresh": False}
    op_tokens = [{"id": "invoicing", "access": op.incoming},
                 {"id": "payout-old", "access": op.outgoing, "finish_uri": "https://client.example/return"}]
    fleet.hosts["openpayments"] = {"openpayments_url": op.url, "openpayments_client_wallet_address": op.client,
                                   "openpayments_key_id": KEY_ID, "openpayments_store": store.options, "openpayments_tokens": op_tokens}

    # The first run makes everything (the one-time code of svc-otp is given once, as a person would).
    seed_tokens = [dict(t) for t in ss_tokens]
    seed_tokens[2]["otp"] = ss.sim.new_otp("svc-otp")
    seed, seeded = fleet.run(secretserver={"secretserver_tokens": seed_tokens})
    assert seed.rc == 2 and failing(seeded) == [("dpa", "dying", ("dpa_fail_before",))], seed
    assert {a for k, a in actions(seeded).items() if k[1] not in ("payout-old",)} == {"created"}, actions(seeded)

    # Then the world moves on.
    das.sim.clock.advance(20 * HOURS)                      # due and expired come due
    das.sim.faults.add("PUT", r"^/v1/tokens/broken$", "status", status=403, times=None)   # broken cannot be rotated
    das.sim.seed_token("legacy-ci", ttl="720h", allow_path_patterns=["^/v1/policies/.*"])   # made by hand, in no inventory
    dpa.sim.delete_refresh_token(revoked)                  # an administrator deleted it in DPA's interface
    ss.sim.expire_all(USER)                                # an administrator ended the sessions of two users
    ss.sim.expire_all("svc-otp")
    path = "%s/openpayments/as-1/payout-old" % store.prefix
    record = store.read(path)
    record["grant"]["requested_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2 * HOURS))
    store.bao.server.api("POST", "secret/data/" + path, json={"data": record})   # asked for two hours ago
    fleet.hosts["openpayments"]["openpayments_tokens"] = op_tokens + [
        {"id": "payout-new", "access": op.outgoing, "finish_uri": "https://client.example/return"}]

    # Another run holds `held`: it recorded its intent and waits inside DAS's PUT.
    das.sim.faults.add("PUT", r"^/v1/tokens/held$", "hang_before_commit", delay=900)
    holder_task = conftest.das_task(das, store, state="rotated", tokens=[das_token("held", "720h")], timeout=1200)
    holder_task["tokenops.rotation.das_token"]["store"]["host"] = "tenant-a"   # where the job's das host keeps it
    holder, holder_results = runner.start([holder_task], env=conftest.das_env(das, store))
    try:
        assert das.sim.faults.received.wait(120), "the holding run never reached DAS"
        checked, predicted = fleet.run(check=True)
        run, report = fleet.run()
    finally:
        pending = (store.entry("das", "tenant-a", "held") or {}).get("pending")
        if pending:
            runner.crash(holder, holder_results, pending)
        else:
            runner.kill(holder)

    expected = {
        ("das", "fresh"): "none", ("das", "due"): "rotated", ("das", "expired"): "created", ("das", "broken"): "failed",
        ("das", "held"): "none+backed_off",
        ("dpa", "reporting"): "none", ("dpa", "archive"): "none", ("dpa", "soon"): "none", ("dpa", "dying"): "none",
        ("dpa", "revoked"): "needs_reconcile",
        ("secretserver", "automation"): "rotated", ("secretserver", "reports"): "none",
        ("secretserver", "otp-user"): "needs_interaction",
        ("openpayments", "invoicing"): "none", ("openpayments", "payout-old"): "needs_interaction",
        ("openpayments", "payout-new"): "needs_interaction",
    }
    assert actions(report) == expected, actions(report)

    # The job fails at the very end, naming exactly what needs a person, each with what to do.
    assert run.rc == 2, run
    assert failing(report) == [("das", "broken", ("failed",)), ("dpa", "dying", ("dpa_fail_before",)),
                               ("dpa", "revoked", ("needs_reconcile",)), ("openpayments", "payout-old", ("consent_overdue",)),
                               ("secretserver", "otp-user", ("needs_interaction",))]
    # Each endpoint that owns such an item fails, naming its own items (AWX marks those hosts).
    final = [r for r in run.results if r["_task"].startswith("Fail | Name each item") and r["_status"] == "failed"]
    assert sorted(r["_host"] for r in final) == ["as-1", "dpa-1", "pam-1", "tenant-a"], [(r["_host"], r["_task"]) for r in final]
    own = {r["_host"]: r["msg"].splitlines() for r in final}
    assert own["dpa-1"][0].startswith("2 item(s) of dpa-1 need a person") and len(own["dpa-1"]) == 3
    assert all(line.split(" (")[0].split()[-2] == host for host, host_lines in own.items() for line in host_lines[1:])
    lines = [line for host_lines in own.values() for line in host_lines[1:]]
    assert sorted(line.split(" (")[0] for line in lines) == [
        "Delinea Secret Server pam-1 otp-user", "Open Payments as-1 payout-old", "SolarWinds DPA dpa-1 dying",
        "SolarWinds DPA dpa-1 revoked", "Styra DAS tenant-a broken"]
    payout = [line for line in lines if "payout-old" in line][0]
    assert op.sim.auth_server + "/interact/" in payout and "longer than consent_wait_limit" in payout
    assert "DPA's web interface" in [line for line in lines if " dying " in line][0]
    # Only the final play failed: every product's host ran to its end, and failed once, there.
    recap = {ln.split()[0]: ln for ln in run.stdout.splitlines() if " : ok=" in ln}
    assert set(recap) == {"tenant-a", "dpa-1", "pam-1", "as-1"}, run.stdout[-3000:]
    assert all("failed=1" in ln and "unreachable=0" in ln for ln in recap.values()), recap
    assert "Could not match supplied host pattern" not in run.stdout + run.stderr

    # Rows by urgency: what fails the job, then a person's tasks, then what changed, then the rest.
    rows = report["rows"]
    order = [(r["fails_job"], r["needs_person"], r["changed"] and not r["needs_person"]) for r in rows]
    assert order == sorted(order, reverse=True), order
    # Within each group, what expires first comes first (broken in 4 hours, dying in 3 days, revoked in 90), unknown last.
    urgent = [r for r in rows if r["fails_job"]]
    assert [r["token"] for r in urgent if r["token"] in ("broken", "dying", "revoked")] == ["broken", "dying", "revoked"]
    lefts = [(r["seconds_left"] is None, r["seconds_left"] or 0) for r in urgent]
    assert lefts == sorted(lefts) and urgent[-1]["token"] == "payout-old"
    assert [r["token"] for r in rows if r["needs_person"] and not r["fails_job"]] == ["soon", "payout-new"]
    assert {r["token"] for r in rows if not r["needs_person"] and r["changed"]} == {"due", "expired", "automation"}
    assert [r["token"] for r in rows if r["backed_off"]] == ["held"]
    # The tenant's audit: the token made by hand, and the administrator token that allows everything for ten years.
    assert [(a["token"], a["findings"]) for a in report["audit"]] == [
        ("legacy-ci", ["unmanaged"]), ("tokenops-admin", ["unmanaged", "allows_all_paths", "never_expires"])]
    for name in ("tokenops-rotation.md", "tokenops-rotation.html", "tokenops-rotation.prom"):
        assert (fleet.reports / name).stat().st_size > 500

    # Check mode predicted the same actions; only a refusal it cannot foresee (broken's 403) differs.
    assert checked.rc == 2 and predicted["check_mode"] is True
    predicted_actions = actions(predicted)
    assert predicted_actions.pop(("das", "broken")) == "rotated"
    assert predicted_actions == {k: v for k, v in expected.items() if k != ("das", "broken")}


def test_a_product_that_is_down_does_not_stop_the_others(fleet):
    das, dpa, ss, op, store = fleet.das, fleet.dpa, fleet.ss, fleet.op, fleet.store
    fleet.hosts["das"] = das_host(das, store, [das_token("app", "720h")])
    fleet.hosts["dpa"] = {"dpa_url": dpa.url, "dpa_ca_path": dpa.ca_path, "dpa_store": store.options,
                          "dpa_tokens": [{"id": "reporting", "refresh_token": dpa.issue("reporting-q1")}]}
    fleet.hosts["secretserver"] = {"secretserver_url": ss.url, "secretserver_store": store.options,
                                   "secretserver_tokens": [{"id": "automation", "username": USER}]}
    fleet.hosts["openpayments"] = {"openpayments_url": op.url, "openpayments_client_wallet_address": op.client,
                                   "openpayments_key_id": KEY_ID, "openpayments_store": store.options,
                                   "openpayments_tokens": [{"id": "invoicing", "access": op.incoming}]}
    first, made = fleet.run()
    assert first.rc == 0 and set(actions(made).values()) == {"created"}, first

    das.sim.stop()   # the first product of the job is down
    run, report = fleet.run(dpa={"dpa_state": "rotated", "dpa_tokens": [{"id": "reporting", "refresh_token": dpa.issue("reporting-q2")}]},
                            secretserver={"secretserver_state": "rotated"}, openpayments={"openpayments_state": "rotated"})
    assert actions(report) == {("das", "app"): "failed", ("dpa", "reporting"): "rotated", ("secretserver", "automation"): "rotated",
                               ("openpayments", "invoicing"): "rotated"}
    app = [r for r in report["rows"] if r["token"] == "app"][0]
    assert "Connection refused" in app["msg"] and app["todo"] == [app["msg"]]
    assert failing(report) == [("das", "app", ("failed",))]
    # The audit of the tenant (in the same pass as the rotation) could not list it either.
    assert report["errors"] and report["errors"][0]["stage"] == "audit" and report["errors"][0]["product"] == "das"
    assert run.rc == 2 and "Styra DAS tenant-a app (failed)" in run.stdout
    # The rotated tokens work; the prometheus file says the run failed.
    assert ss.works(store.entry("secretserver", "pam-1", "automation"))
    assert op.sim.token_works(store.entry("openpayments", "as-1", "invoicing")["secret"])
    prom = (fleet.reports / "tokenops-rotation.prom").read_text()
    assert "\ntokenops_rotation_run_success 0\n" in prom


def test_the_job_prints_a_line_per_host_and_reports_every_token(fleet, tmp_path):
    """At default verbosity the job's output says per host what happened and what needs a person, not every token's
    result (an AWX job keeps every line); the report files have one row per token, read from the job's spool, which
    is gone after the job. With -v the output has every token's result too."""
    das, dpa, ss, op, store = fleet.das, fleet.dpa, fleet.ss, fleet.op, fleet.store
    ids = ["fleet-token-%02d" % i for i in range(30)]
    fleet.hosts["das"] = das_host(das, store, [das_token(i, "720h") for i in ids])
    fleet.hosts["dpa"] = {"dpa_url": dpa.url, "dpa_ca_path": dpa.ca_path, "dpa_store": store.options,
                          "dpa_tokens": [{"id": "reporting", "refresh_token": dpa.issue("reporting")}]}
    fleet.hosts["secretserver"] = {"secretserver_url": ss.url, "secretserver_store": store.options,
                                   "secretserver_tokens": [{"id": "automation", "username": USER}]}
    fleet.hosts["openpayments"] = {"openpayments_url": op.url, "openpayments_client_wallet_address": op.client,
                                   "openpayments_key_id": KEY_ID, "openpayments_store": store.options,
                                   "openpayments_tokens": [{"id": "invoicing", "access": op.incoming}]}
    spool_parent = tmp_path / "job-tmp"
    spool_parent.mkdir()
    env = fleet.runner.env(dict(fleet.env(), TMPDIR=str(spool_parent), TOKENOPS_RESULT_FILE=str(tmp_path / "results.jsonl")))

    def job(*verbosity):
        cmd = [str(conftest.BIN / "ansible-playbook"), *verbosity, "-i", fleet.inventory(), str(REPO / "playbooks" / "rotate.yml")]
        proc = subprocess.run(cmd, env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=600, check=False)
        conftest.OUTPUTS.extend([("stdout", proc.stdout), ("stderr", proc.stderr)])
        return proc, json.loads((fleet.reports / "tokenops-rotation.json").read_text())

    quiet, report = job()
    assert quiet.returncode == 0, quiet.stdout[-3000:]
    assert sorted(r["token"] for r in report["rows"] if r["product"] == "das") == ids
    assert {r["action"] for r in report["rows"]} == {"created"} and len(report["rows"]) == 33
    assert "Styra DAS tenant-a: 30 token(s), 30 created" in quiet.stdout
    assert not [i for i in ids if i in quiet.stdout], "a token's own result at default verbosity"
    assert not list(spool_parent.glob("tokenops-spool-*")), "the job's spool is left behind"

    verbose, report = job("-v")
    assert verbose.returncode == 0 and {r["action"] for r in report["rows"]} == {"none"}
    assert all(i in verbose.stdout for i in ids)


def test_the_job_reads_each_products_tokens_from_a_file(fleet, tmp_path):
    """<product>_tokens_file: each role hands its module a file that lists the tokens, which the module reads itself;
    the list never becomes an inventory variable or a module argument (the -vvvv output shows the file, not its items,
    nor the secrets in it), the report has a row for every id in the files, and a file that cannot be read fails its
    host's tokens in the report while the other products rotate."""
    das, dpa, ss, op, store = fleet.das, fleet.dpa, fleet.ss, fleet.op, fleet.store
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    das_ids = ["from-file-%02d" % i for i in range(6)]
    (catalog / "das.yml").write_text(yaml.safe_dump({"tokens": [das_token(i, "720h") for i in das_ids]}))
    refresh = dpa.issue("reporting-from-file")
    (catalog / "dpa.json").write_text(json.dumps([{"id": "reporting", "refresh_token": refresh}]))
    password = ss.add_user("svc-from-file")
    (catalog / "secretserver.yml").write_text(yaml.safe_dump([{"id": "reports", "username": "svc-from-file", "password": password}]))
    # A grant that waits for consent, continued with the interact_ref the job is given (openpayments_interact_refs).
    grants = [{"id": "invoicing", "access": op.incoming},
              {"id": "payout", "access": op.outgoing, "finish_uri": "https://client.example/return"}]
    (catalog / "openpayments.yml").write_text(yaml.safe_dump(grants))
    fleet.hosts["das"] = {"das_url": das.url, "das_store": store.options, "das_rotate_before": "6h",
                          "das_tokens_file": str(catalog / "das.yml")}
    fleet.hosts["dpa"] = {"dpa_url": dpa.url, "dpa_ca_path": dpa.ca_path, "dpa_store": store.options,
                          "dpa_tokens_file": str(catalog / "dpa.json")}
    fleet.hosts["secretserver"] = {"secretserver_url": ss.url, "secretserver_store": store.options,
                                   "secretserver_tokens_file": str(catalog / "secretserver.yml")}
    fleet.hosts["openpayments"] = {"openpayments_url": op.url, "openpayments_client_wallet_address": op.client,
                                   "openpayments_key_id": KEY_ID, "openpayments_store": store.options,
                                   "openpayments_tokens_file": str(catalog / "openpayments.yml")}

    first, made = fleet.run()
    expected = {("das", i): "created" for i in das_ids}
    expected.update({("dpa", "reporting"): "created", ("secretserver", "reports"): "created",
                     ("openpayments", "invoicing"): "created", ("openpayments", "payout"): "needs_interaction"})
    assert actions(made) == expected, first.stdout[-3000:]
    assert das.sim.secret_works(store.entry("das", "tenant-a", das_ids[0])["secret"])
    assert ss.works(store.entry("secretserver", "pam-1", "reports"))
    # The module's arguments at -vvvv name the file, never its items or the secrets in them.
    assert "6 token(s) from tokens_file %s" % (catalog / "das.yml") in first.stdout
    assert "^/v1/systems/from-file-00/.*" not in first.stdout and password not in first.stdout and refresh not in first.stdout

    # The resource owner approves; the job is given the finish redirect's interact_ref as an extra variable.
    payout = [r for r in made["rows"] if r["token"] == "payout"][0]
    landed = op.sim.approve(payout["redirect"].split("/interact/")[1].split("/")[0])["redirect"]
    interact_ref = parse_qs(urlsplit(landed).query)["interact_ref"][0]
    second, continued = fleet.run(openpayments={"openpayments_interact_refs": {"payout": interact_ref}})
    assert actions(continued)[("openpayments", "payout")] == "created", second.stdout[-3000:]
    assert op.sim.token_works(store.entry("openpayments", "as-1", "payout")["secret"])
    assert set(a for k, a in actions(continued).items() if k[1] != "payout") == {"none"}, actions(continued)

    # A tokens file and a list for the same host: refused as bad input, nothing sent; the report names the file's tokens.
    calls = das.sim.count()
    run, report = fleet.run(das={"das_tokens": [das_token("inline", "720h")]})
    das_rows = {r["token"]: r for r in report["rows"] if r["product"] == "das"}
    assert set(das_rows) == set(das_ids), das_rows
    assert all(r["failed"] and "tokens_file and tokens are mutually exclusive" in r["msg"] for r in das_rows.values()), das_rows
    assert das.sim.count() == calls and run.rc == 2

    # A tokens file that is gone: its host's report says so, and the other products still run.
    (catalog / "das.yml").unlink()
    run, report = fleet.run()
    das_rows = [r for r in report["rows"] if r["product"] == "das"]
    assert len(das_rows) == 1 and das_rows[0]["failed"] and "tokens_file" in das_rows[0]["msg"], das_rows
    assert str(catalog / "das.yml") in das_rows[0]["msg"] and "Traceback" not in das_rows[0]["msg"]
    assert actions(report)[("dpa", "reporting")] == "none" and actions(report)[("secretserver", "reports")] == "none"
    assert run.rc == 2
