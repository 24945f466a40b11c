"""rotate.yml as an AWX job: ansible-runner on a private data directory laid out as AWX lays it out,
every secret supplied by the shipped credential types' injectors, all four simulators, at -vvvv.

The secrets are canaries: none may appear in the job's events or stdout (what AWX shows a user).
"""

import secrets
import stat

import pytest

import conftest
from awx_job import AwxJob
from dpa_fixtures import dpa, dpa_factory  # noqa: F401  # pylint: disable=unused-import
from openpayments_fixtures import KEY_ID, op, op_factory  # noqa: F401  # pylint: disable=unused-import
from secretserver_fixtures import USER, ss, ss_factory  # noqa: F401  # pylint: disable=unused-import

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEPLOYER = {"id": "ci-deployer", "description": "CI deployer", "allow_path_patterns": ["^/v1/policies/.*"], "ttl": "168h"}


class Fleet:
    """One endpoint per product, the store, and the credentials a job template would carry."""

    def __init__(self, tmp_path, das, dpa, ss, op, store_kind, bao=None):
        self.das, self.dpa, self.ss, self.op = das, dpa, ss, op
        self.prefix = "awx%s" % secrets.token_hex(4)
        self.refresher_secret = das.sim.seed_token("token-refresher", roles=[("WorkspaceTokenRefresher", "workspace", "*")])
        self.refresh_token = dpa.issue("reporting")
        self.canaries = set(das.sim.issued) | {das.admin, self.refresh_token, ss.password} | op.canaries()
        self.credentials = {
            "das": {"api_token": das.admin, "refresher_secret": self.refresher_secret},
            "dpa": {"refresh_token": self.refresh_token},
            "secretserver": {"username": USER, "password": ss.password},
            "openpayments": {"client_wallet_address": op.client, "key_id": KEY_ID, "private_key": op.pem},
        }
        self.store_kind = store_kind
        self.bao = bao
        if store_kind == "file":
            # The store lives on a persistent volume (mounted: the folder exists); the job's home directory does not
            # survive the job.
            self.store_file = tmp_path / "persistent-volume" / "tokenops-store"
            self.store_file.parent.mkdir()
            password = "pw-%s" % secrets.token_hex(12)
            self.canaries.add(password)
            self.credentials["store_file"] = {"vault_password": password, "store_file": str(self.store_file)}
            # The password file and the store's path reach the modules from the credential (TOKENOPS_* variables).
            self.store = {"backend": "file", "prefix": self.prefix}
        else:
            self.store = {"backend": "vault", "prefix": self.prefix}
            if store_kind == "vault_token":
                policy = "awx-%s" % self.prefix     # the job's token may touch its own prefix only
                bao.server.put_policy(policy, ["secret/data/%s/*" % self.prefix, "secret/metadata/%s/*" % self.prefix])
                token = bao.server.create_token([policy])
                self.credentials["store_vault"] = {"url": bao.url, "auth_method": "token", "token": token}
                self.canaries.add(token)
            else:
                paths = ["secret/data/%s/*" % self.prefix, "secret/metadata/%s/*" % self.prefix]
                role_id, secret_id = bao.server.enable_approle(paths, role="awx-%s" % self.prefix)
                self.credentials["store_vault"] = {"url": bao.url, "auth_method": "approle", "role_id": role_id, "secret_id": secret_id}
                self.canaries.add(secret_id)

        conftest.CANARIES.update(self.canaries)     # the session-wide scan looks for them too

    def groups(self):
        return {
            "das": {"tenant-a": {
                "das_url": self.das.url, "das_store": self.store, "das_tokens": [DEPLOYER],
                # The refresher's first secret: das_token reads STYRA_DAS_REFRESHER_SECRET (the DAS credential) itself.
                "das_refresher": {"id": "token-refresher"},
            }},
            "dpa": {"dpa-a": {
                "dpa_url": self.dpa.url, "dpa_ca_path": self.dpa.ca_path, "dpa_store": self.store,
                # The module reads the DPA credential's variable itself: the token is never a module argument.
                "dpa_tokens": [{"id": "reporting", "refresh_token_env": "DPA_REFRESH_TOKEN"}],
            }},
            # No user and no client identity in the inventory: TSS_USERNAME and OPEN_PAYMENTS_* from the credentials.
            "secretserver": {"pam-a": {"secretserver_url": self.ss.url, "secretserver_store": self.store,
                                       "secretserver_tokens": [{"id": "automation"}]}},
            "openpayments": {"as-1": {"openpayments_url": self.op.url, "openpayments_store": self.store,
                                      "openpayments_tokens": [{"id": "invoicing", "access": self.op.incoming}]}},
        }

    def job(self, root):
        job = AwxJob(root)
        job.inventory(self.groups())
        for stem, inputs in self.credentials.items():
            job.credential(stem, inputs)
        return job

    def entry(self, product, host, token_id):
        path = "%s/%s/%s/%s" % (self.prefix, product, host, token_id)
        if self.store_kind == "file":
            from ansible_collections.tokenops.rotation.plugins.module_utils.store_file import FileStore
            record = FileStore(str(self.store_file), vault_password=self.credentials["store_file"]["vault_password"]).read(path)
            return record.data
        return self.bao.read(path)


def leaks_in(result, canaries):
    """[(where, secret prefix)] for every canary in the job's events, stdout or runner output."""
    return sorted({(where, c[:6]) for c in canaries for where, text in result.texts() if c and c in text})


def assert_no_secret_in(result, canaries):
    command = result.artifacts / "command"      # the job's environment, as ansible-runner records it
    assert stat.S_IMODE(command.stat().st_mode) == 0o600
    assert sum(len(text) for _where, text in result.texts()) > 20000, "the job's output is too short to be -vvvv"
    assert "ESTABLISH LOCAL CONNECTION" in result.stdout      # -vvv and more
    leaks = leaks_in(result, canaries)
    assert not leaks, leaks


@pytest.fixture(params=["file", "vault_token", "vault_approle"])
def fleet(request, tmp_path, das, dpa, ss, op):
    bao = request.getfixturevalue("bao") if request.param != "file" else None
    return Fleet(tmp_path, das, dpa, ss, op, request.param, bao)


def test_awx_job_rotates_every_product_without_a_secret_in_its_output(fleet, tmp_path):
    job = fleet.job(tmp_path / "job")
    first = job.run()
    assert first.status == "successful" and first.rc == 0, first
    # Each credential reached its module: every product's token was made and stored.
    assert first.actions("das_token") == {("tenant-a", "ci-deployer"): "created"}
    assert first.actions("dpa_refresh_token") == {("dpa-a", "reporting"): "created"}
    assert first.actions("secretserver_token") == {("pam-a", "automation"): "created"}
    assert first.actions("openpayments_token") == {("as-1", "invoicing"): "created"}
    assert fleet.das.sim.secret_works(fleet.entry("das", "tenant-a", "ci-deployer")["secret"])
    assert fleet.entry("das", "tenant-a", "token-refresher")["secret"] == fleet.refresher_secret
    assert fleet.entry("dpa", "dpa-a", "reporting")["secret"] == fleet.refresh_token
    assert fleet.ss.works(fleet.entry("secretserver", "pam-a", "automation"))
    assert fleet.op.sim.token_works(fleet.entry("openpayments", "as-1", "invoicing")["secret"])
    if fleet.store_kind == "file":
        entry_files = sorted(fleet.store_file.rglob("*.vault"))
        assert len(entry_files) >= 5 and all(f.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256") for f in entry_files)
        assert not list(job.home.rglob("*.vault"))    # no store entry under the container's $HOME
    canaries = fleet.canaries | fleet.das.sim.issued | fleet.dpa.sim.issued | fleet.ss.sim.issued | fleet.op.sim.issued
    assert_no_secret_in(first, canaries)

    if fleet.store_kind != "file":
        return
    # The next scheduled job, in a new private data directory and container: the store on the
    # persistent volume carries the state over; nothing is due, nothing changes.
    second = fleet.job(tmp_path / "job-2").run()
    assert second.status == "successful" and second.rc == 0, second
    assert set(second.actions("das_token").values()) == {"none"}
    assert set(second.actions("dpa_refresh_token").values()) == {"none"}
    assert set(second.actions("secretserver_token").values()) == {"none"}
    assert set(second.actions("openpayments_token").values()) == {"none"}
    assert second.stats.get("changed", {}) == {}
    assert_no_secret_in(second, canaries | fleet.das.sim.issued | fleet.ss.sim.issued | fleet.op.sim.issued)


@pytest.mark.parametrize("fleet", ["file"], indirect=True)
def test_awx_job_with_a_wrong_credential_fails_without_a_secret_in_its_output(fleet, tmp_path):
    fleet.credentials["das"] = dict(fleet.credentials["das"], api_token="not-%s" % secrets.token_hex(16))
    fleet.canaries.add(fleet.credentials["das"]["api_token"])
    result = fleet.job(tmp_path / "job").run()
    assert result.status == "failed" and result.rc != 0, result
    failed = [(host, res.get("msg", "")) for host, res in result.module_results("das_*") if res.get("failed")]
    # Every DAS task of the tenant fails on the refused credential (the audit, the rotation), and says so.
    assert failed and {host for host, _msg in failed} == {"tenant-a"} and all("401" in msg for _host, msg in failed), failed
    assert_no_secret_in(result, fleet.canaries | fleet.das.sim.issued | fleet.dpa.sim.issued | fleet.ss.sim.issued | fleet.op.sim.issued)


def test_the_leak_check_sees_a_secret_a_job_prints(tmp_path):
    """The scan reads what the job showed: a playbook that prints an injected secret is caught."""
    leaky = [{"name": "Print a secret", "hosts": "all", "gather_facts": False,
              "tasks": [{"name": "Show it", "ansible.builtin.debug": {"msg": "{{ lookup('env', 'TSS_PASSWORD') }}"}}]}]
    job = AwxJob(tmp_path / "job", playbook="leaky.yml", project_playbook=leaky)
    job.inventory({"secretserver": {"pam-a": {}}})
    password = "never-registered-%s" % secrets.token_hex(8)     # not a session canary: the session scan stays green
    job.credential("secretserver", {"username": "u", "password": password})
    result = job.run(verbosity=0)
    assert result.status == "successful"
    assert {where for where, _prefix in leaks_in(result, {password})} >= {"awx job event", "awx job stdout"}


@pytest.mark.parametrize("fleet", ["file"], indirect=True)
def test_awx_marks_the_hosts_that_own_what_needs_a_person(fleet, tmp_path):
    """The job's final failure lands on the endpoints whose tokens need a person, in AWX's host events and summary.

    The DAS tenant and the DPA server come first in the inventory and are fine; Secret Server's user is refused and an
    Open Payments grant has a bad access type: those two hosts, and only they, fail, each naming its own item.
    """
    fleet.credentials["secretserver"] = dict(fleet.credentials["secretserver"], password="wrong-%s" % secrets.token_hex(8))
    fleet.canaries.add(fleet.credentials["secretserver"]["password"])
    job = fleet.job(tmp_path / "job")
    groups = fleet.groups()
    groups["openpayments"]["as-1"]["openpayments_tokens"] = [{"id": "invoicing", "access": fleet.op.incoming},
                                                             {"id": "payouts", "access": [{"type": "nope"}]}]
    job.inventory(groups)
    result = job.run()
    assert result.status == "failed" and result.rc != 0, result
    final = [e["event_data"] for e in result.events if e.get("event") == "runner_on_failed"
             and e["event_data"].get("task", "").startswith("Fail |")]
    assert {data["host"] for data in final} == {"pam-a", "as-1"}, [(d["host"], d["task"]) for d in final]
    messages = {data["host"]: data["res"]["msg"] for data in final}
    assert "automation" in messages["pam-a"] and "Delinea Secret Server pam-a" in messages["pam-a"], messages
    assert "payouts" in messages["as-1"] and "pam-a" not in messages["as-1"] and "automation" not in messages["as-1"], messages
    assert set(result.stats.get("failures", {})) == {"pam-a", "as-1"}, result.stats
    assert_no_secret_in(result, fleet.canaries | fleet.das.sim.issued | fleet.dpa.sim.issued | fleet.ss.sim.issued | fleet.op.sim.issued)


@pytest.mark.parametrize("fleet", ["file"], indirect=True)
def test_a_job_hands_every_tokens_result_to_the_workflow_and_keeps_its_events_small(fleet, tmp_path):
    """The next workflow node gets the outcome and every token's result (AWX's artifacts, from set_stats), while at
    default verbosity the report task's event (AWX keeps every event in its database) carries no row; -v adds them."""
    quiet = fleet.job(tmp_path / "job").run(verbosity=0)
    assert quiet.status == "successful" and quiet.rc == 0, quiet
    artifacts = quiet.artifact_data
    tokens = artifacts["tokenops_rotation_tokens"]
    assert {(product, host, r["id"], r["action"]) for product, hosts in tokens.items() for host, rows in hosts.items() for r in rows} == {
        ("das", "tenant-a", "ci-deployer", "created"), ("dpa", "dpa-a", "reporting", "created"),
        ("secretserver", "pam-a", "automation", "created"), ("openpayments", "as-1", "invoicing", "created")}
    [report] = [e["event_data"]["res"] for e in quiet.events if e.get("event") == "runner_on_ok"
                and e["event_data"].get("task", "").startswith("Report | One row per token")]
    assert not {"rows", "tokens", "scope"} & set(report) and report["summary"] and report["counts"]["tokens"] >= 4, sorted(report)
    assert artifacts["tokenops_rotation_report"] == report["stats"] and report["stats"]["outcome"] in ("ok", "attention")
    assert report["ansible_stats"]["data"]["tokenops_rotation_tokens"] == tokens     # handed on once, by the report task
    assert not [e for e in quiet.events if e.get("event") == "runner_on_ok"
                and (e.get("event_data") or {}).get("task_action") in ("set_stats", "ansible.builtin.set_stats")]
    # No fork per host for the final play when nothing needs a person: its first task (a meta task) ends it.
    assert not [e for e in quiet.events if (e.get("event_data") or {}).get("task", "").startswith("Fail | Name")]

    loud = fleet.job(tmp_path / "job-v").run(verbosity=1)
    assert loud.status == "successful", loud
    [report] = [e["event_data"]["res"] for e in loud.events if e.get("event") == "runner_on_ok"
                and e["event_data"].get("task", "").startswith("Report | One row per token")]
    assert [r["token"] for r in report["rows"]] and report["tokens"]["das"]["tenant-a"][0]["id"] == "ci-deployer"
    assert loud.artifact_data["tokenops_rotation_tokens"]["das"]["tenant-a"][0]["action"] == "none"
