"""The report's push to a real Pushgateway (the distribution's prometheus-pushgateway, on loopback), read back from its /metrics.

What an AWX job leaves behind is what it pushed: each test runs rotation_report as Ansible runs a
module (the harness's Runner), with the options or the environment variables the AWX credential
type injects, and reads what Prometheus would scrape.
"""

import json
import secrets

import pytest
from prometheus_client.parser import text_string_to_metric_families

import conftest
from tests.fixtures import pushgateway as pgw
from tests.fixtures.openbao import free_port
from tests.simulators.base import make_tls_material

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(pgw.find_binary() is None,
                                 reason="prometheus-pushgateway is not installed (Debian package prometheus-pushgateway; "
                                        "`make system-packages` installs it where root has apt-get)")]

FAR = "2099-01-01T00:00:00Z"


def rotated(token_id, expires_at=FAR):
    return {"id": token_id, "action": "rotated", "changed": True, "fingerprint": "sha256:0123456789ab", "expires_at": expires_at,
            "rotated_at": "2026-12-01T00:00:00Z"}


def source(*results, endpoint="tenant-a"):
    return {"product": "das", "endpoint": endpoint, "url": "https://%s.example" % endpoint, "check_mode": False,
            "configured": [r["id"] for r in results], "removing": [], "rotate": {"changed": True, "results": list(results)}}


GOOD = [source(rotated("ok"), rotated("other", "2098-06-01T00:00:00Z"))]
FAILING = [source(rotated("ok"), {"id": "broken", "action": "needs_reconcile", "changed": False, "fingerprint": None,
                                  "reconcile_steps": ["Revoke broken-b in DAS", "Run the job again"]})]


@pytest.fixture
def gateway(tmp_path):
    started = []

    def start(**kwargs):
        server = pgw.Pushgateway(str(tmp_path / ("pgw-%d" % len(started))), **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def report_task(tmp_path, sources, pushgateway=None, **options):
    args = dict(sources=sources, dest=str(tmp_path / "reports"), **options)
    if pushgateway is not None:
        args["pushgateway"] = pushgateway
    return {"name": "report", "tokenops.rotation.rotation_report": args}


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def ours(text, **grouping):
    """The collection's samples in a scrape, by (name, labels without the grouping key), of one group."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith("tokenops_rotation_"):
                continue
            labels = dict(sample.labels)
            if any(labels.get(k) != v for k, v in grouping.items()):
                continue
            for k in ("job", "slice", "instance"):
                labels.pop(k, None)
            found[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return found


def test_push_reads_back_as_the_textfile_says_and_slices_keep_their_own_group(runner, tmp_path, gateway):
    server = gateway()
    run = runner.run([report_task(tmp_path, GOOD, pushgateway={"url": server.url})])
    result = run.result
    assert run.rc == 0 and result["pushgateway"]["pushed"] is True, run
    assert result["pushgateway"]["grouping_key"] == {"job": "tokenops_rotation", "slice": "all"}
    scrape = server.metrics()
    pushed = ours(scrape, job="tokenops_rotation", slice="all")
    textfile = ours((tmp_path / "reports" / "tokenops-rotation.prom").read_text())
    assert pushed == textfile and len(pushed) > 10     # every sample of the textfile, and nothing else
    assert pushed[("tokenops_rotation_token_expiry_timestamp_seconds",
                   (("endpoint", "tenant-a"), ("product", "das"), ("token", "ok")))] == 4070908800
    assert pushed[("tokenops_rotation_run_success", ())] == 1
    assert pushed[("tokenops_rotation_last_success_timestamp_seconds", ())] == pushed[("tokenops_rotation_run_timestamp_seconds", ())]

    # A slice pushes to its own group and leaves the other alone (a value that needs base64: test_pushgateway_options).
    run = runner.run([report_task(tmp_path, [source(rotated("third"), endpoint="tenant-b")], pushgateway={"url": server.url},
                                  slice="team-b.2")])
    assert run.result["pushgateway"]["pushed"] and run.result["pushgateway"]["path"].endswith("/slice/team-b.2"), run
    scrape = server.metrics()
    assert ours(scrape, job="tokenops_rotation", slice="all") == pushed
    tokens = {k[1] for k in ours(scrape, job="tokenops_rotation", slice="team-b.2") if k[0] == "tokenops_rotation_token_changed"}
    assert tokens == {(("action", "rotated"), ("endpoint", "tenant-b"), ("product", "das"), ("token", "third"))}

    # The next run of a group replaces it whole: a token it no longer has is gone.
    runner.run([report_task(tmp_path, [source(rotated("ok"))], pushgateway={"url": server.url})])
    left = {dict(k[1]).get("token") for k in ours(server.metrics(), job="tokenops_rotation", slice="all")}
    assert "other" not in left and "ok" in left


def test_a_failed_run_keeps_the_last_success_in_the_gateway_and_the_textfile(runner, tmp_path, gateway):
    server = gateway()
    first = runner.run([report_task(tmp_path, GOOD, pushgateway={"url": server.url, "job": "nightly"})]).result
    success = ours(server.metrics(), job="nightly")[("tokenops_rotation_last_success_timestamp_seconds", ())]
    assert success == json_epoch(first["generated_at"])
    failed = runner.run([report_task(tmp_path, FAILING, pushgateway={"url": server.url, "job": "nightly"})])
    assert failed.rc == 0 and failed.result["outcome"] == "failed" and failed.result["pushgateway"]["pushed"], failed
    pushed = ours(server.metrics(), job="nightly")
    assert pushed[("tokenops_rotation_run_success", ())] == 0
    assert pushed[("tokenops_rotation_last_success_timestamp_seconds", ())] == success
    assert pushed[("tokenops_rotation_token_failed", (("endpoint", "tenant-a"), ("product", "das"), ("token", "broken")))] == 0
    assert pushed[("tokenops_rotation_token_needs_person", (("endpoint", "tenant-a"), ("product", "das"), ("token", "broken")))] == 1
    textfile = ours((tmp_path / "reports" / "tokenops-rotation.prom").read_text())
    assert textfile[("tokenops_rotation_last_success_timestamp_seconds", ())] == success
    # A group that never succeeded has no last success (the alert on it says so).
    runner.run([report_task(tmp_path, FAILING, pushgateway={"url": server.url, "job": "new-job"})])
    assert ("tokenops_rotation_last_success_timestamp_seconds", ()) not in ours(server.metrics(), job="new-job")


def json_epoch(text):
    import datetime
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def test_basic_auth_from_the_credential_types_variables(runner, tmp_path, gateway):
    pytest.importorskip("bcrypt", reason="bcrypt (tests/requirements.txt) hashes the Pushgateway's basic auth passwords")
    password = "pgw-pw-%s" % secrets.token_hex(8)
    conftest.CANARIES.add(password)
    server = gateway(users={"tokenops": password})
    env = {"TOKENOPS_PUSHGATEWAY_URL": server.url, "TOKENOPS_PUSHGATEWAY_USERNAME": "tokenops", "TOKENOPS_PUSHGATEWAY_PASSWORD": password}
    run = runner.run([report_task(tmp_path, GOOD, pushgateway={})], env=env)
    assert run.result["pushgateway"]["pushed"] is True, run
    assert ours(server.metrics(auth=("tokenops", password)), job="tokenops_rotation", slice="all")
    assert server.get("/metrics")[0] == 401      # the Pushgateway really asks for the password

    # A wrong password: a warning in the task, its summary and the report file; the task does not fail.
    env["TOKENOPS_PUSHGATEWAY_PASSWORD"] = "wrong-%s" % password
    conftest.CANARIES.add(env["TOKENOPS_PUSHGATEWAY_PASSWORD"])
    run = runner.run([report_task(tmp_path, GOOD, pushgateway={})], env=env)
    result = run.result
    assert run.rc == 0 and not result["failed"] and result["pushgateway"]["pushed"] is False, run
    warning = result["pushgateway"]["warning"]
    assert "HTTP 401" in warning and "PUT /metrics/job/tokenops_rotation/slice/all" in warning
    assert result["warnings"] == [warning] and result["summary"][-1] == "Warning: " + warning
    assert json.loads((tmp_path / "reports" / "tokenops-rotation.json").read_text())["warnings"] == [warning]
    assert "## Warnings" in (tmp_path / "reports" / "tokenops-rotation.md").read_text()
    assert password not in json.dumps(run.results) + run.output


def test_bearer_token_through_a_proxy(runner, tmp_path, gateway):
    token = "pgw-token-%s" % secrets.token_hex(12)
    conftest.CANARIES.add(token)
    server = gateway()
    with pgw.BearerProxy(server, token) as proxy:
        run = runner.run([report_task(tmp_path, FAILING, pushgateway={"url": proxy.url})], env={"TOKENOPS_PUSHGATEWAY_TOKEN": token})
        assert run.result["pushgateway"]["pushed"] is True, run
        # The failed run read the group's last success back (GET) before it replaced the group (PUT), both with the token.
        assert [(m, p.split("/")[1], ok) for m, p, ok in proxy.seen] == [("GET", "api", True), ("PUT", "metrics", True)]
        assert ours(server.metrics(), job="tokenops_rotation", slice="all")[("tokenops_rotation_run_success", ())] == 0

        run = runner.run([report_task(tmp_path, GOOD, pushgateway={"url": proxy.url, "token": "not-" + token})])
        assert run.rc == 0 and "HTTP 401" in run.result["pushgateway"]["warning"], run
        assert token not in json.dumps(run.results) + run.output
        # Both credentials at once is refused before any request.
        before = len(proxy.seen)
        run = runner.run([report_task(tmp_path, GOOD, pushgateway={"url": proxy.url, "token": token, "username": "u", "password": "p"})])
        assert "not both" in run.result["pushgateway"]["warning"] and len(proxy.seen) == before, run


def test_tls_with_the_ca_file(runner, tmp_path, gateway):
    ca_path, cert_path, key_path = make_tls_material(str(tmp_path / "tls"))
    server = gateway(tls=(cert_path, key_path, ca_path))
    assert server.url.startswith("https://")
    run = runner.run([report_task(tmp_path, GOOD, pushgateway={"url": server.url})], env={"TOKENOPS_PUSHGATEWAY_CA_PATH": ca_path})
    assert run.result["pushgateway"]["pushed"] is True, run
    assert ours(server.metrics(), job="tokenops_rotation")
    run = runner.run([report_task(tmp_path, GOOD, pushgateway={"url": server.url})])    # the system's CAs do not know it
    assert run.rc == 0 and "TLS error" in run.result["pushgateway"]["warning"], run


def test_an_unreachable_gateway_is_a_warning_and_the_files_are_written(runner, tmp_path):
    url = "http://127.0.0.1:%d" % free_port()
    run = runner.run([report_task(tmp_path, FAILING, pushgateway={"url": url, "timeout": 5}, fail=True)])
    result = run.result
    # The task fails for what needs a person (fail: true), and only for that; the push is a warning.
    assert result["failed"] and result["msg"].startswith("1 item(s) need a person"), run
    assert result["pushgateway"]["pushed"] is False and "connection error" in result["pushgateway"]["warning"]
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
        "tokenops-rotation.html", "tokenops-rotation.json", "tokenops-rotation.md", "tokenops-rotation.prom"]

    # Bad settings are a warning too, said before any request.
    run = runner.run([report_task(tmp_path, GOOD, pushgateway={"url": "pushgateway:9091"})])
    assert run.rc == 0 and "pushgateway.url must be" in run.result["pushgateway"]["warning"], run
    # No URL anywhere: nothing is pushed and nothing is said.
    run = runner.run([report_task(tmp_path, GOOD, pushgateway={})])
    assert run.result["pushgateway"] == {"enabled": False, "pushed": False, "grouping_key": {"job": "tokenops_rotation", "slice": "all"}}
    assert not run.result.get("warnings")


def test_check_mode_pushes_nothing(runner, tmp_path, gateway):
    server = gateway()
    run = runner.run([report_task(tmp_path, GOOD, pushgateway={"url": server.url})], check=True)
    assert run.result["pushgateway"]["pushed"] is False and not ours(server.metrics()), run


@pytest.mark.playbook
def test_rotate_yml_pushes_with_the_credential_types_variables(runner, tmp_path, gateway):
    """The scheduled job as AWX runs it: the credential type's variables are in the job's environment."""
    server = gateway()
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    spare:\n      ansible_connection: local\n")
    playbook = [{"name": "The scheduled job", "ansible.builtin.import_playbook": "tokenops.rotation.rotate"}]
    run = runner.run(playbook=playbook, inventory=str(inventory), env={"TOKENOPS_PUSHGATEWAY_URL": server.url},
                     extra_args=["-e", "tokenops_report_dir=%s" % (tmp_path / "reports")])
    assert run.rc == 0, run
    pushed = ours(server.metrics(), job="tokenops_rotation", slice="all")
    assert pushed[("tokenops_rotation_run_success", ())] == 1
    # The job variable names another job for the grouping key.
    run = runner.run(playbook=playbook, inventory=str(inventory), env={"TOKENOPS_PUSHGATEWAY_URL": server.url},
                     extra_args=["-e", json.dumps({"tokenops_report_dir": str(tmp_path / "reports"),
                                                   "tokenops_pushgateway": {"job": "tokens-eu"}})])
    assert run.rc == 0 and ours(server.metrics(), job="tokens-eu"), run
