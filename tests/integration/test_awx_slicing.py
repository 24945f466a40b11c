"""AWX job slicing: three slices of rotate.yml at once, then the workflow node that merges their reports.

Each slice is a job of its own (ansible-runner on a private data directory laid out as AWX lays it out), over the
part of the inventory AWX gives it, all against the session's one OpenBao. The merged report must be what one
unsliced job over the same fleet reports, and no slice may overwrite another's files, metrics or artifacts.
"""

import json
import secrets
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

import conftest
from awx_job import AwxJob
from secretserver_fixtures import USER, ss_factory  # noqa: F401  # pylint: disable=unused-import

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SLICES = 3
TENANTS = ["tenant-1", "tenant-2", "tenant-3", "tenant-4"]
SERVERS = ["pam-1", "pam-2"]
MERGE_PLAYBOOK = [{"name": "Merge the slices' reports", "ansible.builtin.import_playbook": "tokenops.rotation.merge_reports"}]


def awx_slice(hosts, number, count):
    """The hosts of slice `number` (1-based) of `count`, as AWX picks them.

    awx/main/models/inventory.py, Inventory.get_sliced_hosts: the enabled hosts ordered by name, then
    host_queryset[number - 1::count]; awx/main/tasks/jobs.py build_inventory passes the job's job_slice_number and
    job_slice_count. (Ordering is the database's; these names sort the same in any collation.)
    """
    ordered = sorted(hosts)
    return ordered[number - 1::count] if count > 1 and number > 0 else ordered


class SlicedFleet:
    """Four DAS tenants and two Secret Servers (a simulator each), their tokens in one Vault under one prefix."""

    def __init__(self, das_factory, ss_factory, bao):    # pylint: disable=redefined-outer-name
        self.prefix = "slice%s" % secrets.token_hex(4)
        self.das = {name: das_factory() for name in TENANTS}
        self.ss = {name: ss_factory() for name in SERVERS}
        password = self.ss[SERVERS[0]].password
        for server in self.ss.values():
            server.sim.add_user(USER, password)     # one Secret Server credential for the job, as in AWX
        self.store = {"backend": "vault", "prefix": self.prefix}
        policy = "awx-%s" % self.prefix
        bao.server.put_policy(policy, ["secret/data/%s/*" % self.prefix, "secret/metadata/%s/*" % self.prefix])
        vault_token = bao.server.create_token([policy])
        conftest.CANARIES.add(vault_token)
        self.credentials = {"store_vault": {"url": bao.url, "auth_method": "token", "token": vault_token},
                            "secretserver": {"username": USER, "password": password}}
        # Each tenant's administrator token reaches its host from the job's environment (a custom credential).
        self.env = {"DAS_TOKEN_%s" % name.replace("-", "_").upper(): das.admin for name, das in self.das.items()}

    def groups(self, hosts=None):
        das = {name: {"das_url": das.url, "das_store": self.store,
                      "das_api_token": "{{ lookup('env', 'DAS_TOKEN_%s') }}" % name.replace("-", "_").upper(),
                      "das_tokens": [{"id": "deployer", "allow_path_patterns": ["^/v1/policies/.*"], "ttl": "168h"},
                                     {"id": "reader", "allow_path_patterns": ["^/v1/data/.*"], "ttl": "72h"}]}
               for name, das in self.das.items()}
        pam = {name: {"secretserver_url": ss.url, "secretserver_store": self.store, "secretserver_tokens": [{"id": "automation"}]}
               for name, ss in self.ss.items()}
        groups = {"das": das, "secretserver": pam}
        if hosts is not None:
            groups = {group: {h: v for h, v in members.items() if h in hosts} for group, members in groups.items()}
        return groups

    def job(self, root, hosts=None, playbook=None):
        job = AwxJob(root, playbook="merge.yml", project_playbook=MERGE_PLAYBOOK) if playbook == "merge" else AwxJob(root)
        if playbook == "merge":
            job.inventory({})     # the merge node reads report files only: no hosts, no credentials
            return job
        job.inventory(self.groups(hosts))
        for stem, inputs in self.credentials.items():
            job.credential(stem, inputs)
        return job

    def configured(self):
        return {("das", h, t) for h in TENANTS for t in ("deployer", "reader")} | {("secretserver", h, "automation") for h in SERVERS}


def awx_vars(job_id, **more):
    """The meta variables AWX gives every job (awx/main/models/unified_jobs.py awx_meta_vars, jobs.py Job.awx_meta_vars)."""
    meta = {"awx_job_id": job_id, "awx_job_launch_type": "workflow", "awx_job_template_id": 7, "awx_job_template_name": "Rotate tokens",
            "awx_inventory_id": 1, "awx_inventory_name": "fleet"}
    meta.update({"tower_" + key[len("awx_"):]: value for key, value in meta.items()})
    meta.update(more)
    return meta


def handled(result):
    """{(product, host, token id)} the job's rotation modules returned a result for."""
    found = set()
    for product, module in (("das", "das_token"), ("secretserver", "secretserver_token")):
        found |= {(product, host, token) for host, token in result.actions(module)}
    return found


def outcomes(report):
    """A report's rows and audit, by token, with what a run decided about each (not when, not which simulator)."""
    rows = {}
    for r in report["rows"]:
        rows[(r["product"], r["endpoint"], r["token"])] = (r["action"], r["changed"], tuple(r["conditions"]), r["fails_job"],
                                                           r["needs_person"], bool(r["fingerprint"]), tuple(r["todo"]))
    audit = sorted((a["endpoint"], a["token"], tuple(a["findings"]), a["fails_job"]) for a in report["audit"])
    return rows, audit


def series(path):
    """[(name, labels)] of every sample of a Prometheus text file."""
    return [(s.name, dict(s.labels)) for family in text_string_to_metric_families(path.read_text()) for s in family.samples]


def test_three_slices_at_once_add_up_to_one_unsliced_run(das_factory, ss_factory, bao, tmp_path):  # noqa: F811
    # The same fleet twice (simulators and store prefix of their own): once as one job, once sliced in three.
    whole = SlicedFleet(das_factory, ss_factory, bao)
    sliced = SlicedFleet(das_factory, ss_factory, bao)

    unsliced_dir = tmp_path / "unsliced-reports"
    baseline = whole.job(tmp_path / "unsliced").run(extra_vars=awx_vars(100, tokenops_report_dir=str(unsliced_dir)),
                                                    env=whole.env, verbosity=1)
    assert baseline.status == "successful", baseline
    assert handled(baseline) == whole.configured()

    # The slices' report folder is storage every job of the container group mounts (a persistent volume).
    volume = tmp_path / "persistent-volume" / "reports"
    hosts = TENANTS + SERVERS
    slice_hosts = {number: awx_slice(hosts, number, SLICES) for number in range(1, SLICES + 1)}
    assert sorted(h for part in slice_hosts.values() for h in part) == sorted(hosts)
    jobs = {number: sliced.job(tmp_path / ("slice-%d" % number), hosts=part) for number, part in slice_hosts.items()}
    results, finished = {}, []
    start = threading.Barrier(SLICES)

    def run_slice(number):
        # Slice jobs of one sliced job: job ids of their own, the workflow job AWX made for the slicing, the
        # job template's extra vars (tokenops_sliced), AWX's meta variables; no slice number (AWX passes none).
        extra = awx_vars(300 + number, awx_workflow_job_id=300, awx_workflow_job_name="Rotate tokens",
                         tokenops_sliced=True, tokenops_report_dir=str(volume))
        start.wait(timeout=60)
        results[number] = jobs[number].run(extra_vars=extra, env=sliced.env, verbosity=1)
        finished.append(number)

    threads = [threading.Thread(target=run_slice, args=(n,)) for n in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=1200)
    assert sorted(results) == list(range(1, SLICES + 1))
    for number, result in results.items():
        assert result.status == "successful", result

    # The three ran at once: each started before any other ended.
    windows = [(min(e["created"] for e in r.events), max(e["created"] for e in r.events)) for r in results.values()]
    assert max(start for start, _end in windows) < min(end for _start, end in windows), windows

    # Every token was handled by exactly one slice, the one AWX gave its host.
    by_slice = {number: handled(result) for number, result in results.items()}
    for number, tokens in by_slice.items():
        assert tokens and {host for _p, host, _t in tokens} == set(slice_hosts[number])
    assert sum(len(tokens) for tokens in by_slice.values()) == len(set().union(*by_slice.values()))
    assert set().union(*by_slice.values()) == sliced.configured()

    # Each slice's files, metrics and set_stats key carry its slice (its AWX job id).
    for number, result in results.items():
        slice_name = str(300 + number)
        stats = result.artifact_data["tokenops_rotation_report_slice_" + slice_name]
        assert stats["slice"] == slice_name
        assert stats["files"]["json"] == str(volume / ("tokenops-rotation.slice-%s.json" % slice_name))
        assert "tokenops_rotation_report" not in result.artifact_data
        assert set(result.artifact_data["tokenops_rotation_tokens_slice_" + slice_name]["das"]) == \
            {h for h in slice_hosts[number] if h in TENANTS}
    assert sorted(p.name for p in volume.iterdir()) == sorted(
        "tokenops-rotation.slice-%d.%s" % (300 + n, ext) for n in results for ext in ("json", "md", "html", "prom"))

    # No slice's metrics overwrite another's: every series carries its slice, and no two slices share a series.
    seen = {}
    for number in results:
        samples = series(volume / ("tokenops-rotation.slice-%d.prom" % (300 + number)))
        assert samples and all(labels.get("slice") == str(300 + number) for _name, labels in samples)
        for name, labels in samples:
            key = (name, tuple(sorted(labels.items())))
            assert key not in seen, "slice %d repeats a series of slice %s: %s" % (number, seen.get(key), key)
            seen[key] = number

    # The next workflow node gets the slices' artifacts as AWX merges them (awx/main/models/workflow.py,
    # WorkflowJob.get_effective_artifacts: dict.update in the order the jobs finished): no key collides.
    artifacts = {}
    for number in finished:
        artifacts.update(results[number].artifact_data)
    assert {k for k in artifacts if k.startswith("tokenops_rotation_report")} == \
        {"tokenops_rotation_report_slice_%d" % (300 + n) for n in results}
    merged_dir = tmp_path / "persistent-volume" / "merged"
    merge = sliced.job(tmp_path / "merge", playbook="merge").run(
        extra_vars=dict(artifacts, **awx_vars(400, tokenops_report_dir=str(merged_dir))), verbosity=1)
    assert merge.status == "successful", merge
    assert merge.artifact_data["tokenops_rotation_report"]["slices"] and "tokenops_rotation_report_slice_301" not in merge.artifact_data

    merged = json.loads((merged_dir / "tokenops-rotation.json").read_text())
    unsliced = json.loads((unsliced_dir / "tokenops-rotation.json").read_text())
    # One row per token, the same tokens and the same outcomes as the run without slicing.
    keys = [(r["product"], r["endpoint"], r["token"]) for r in merged["rows"]]
    assert len(keys) == len(set(keys)) == len(sliced.configured())
    assert outcomes(merged) == outcomes(unsliced)
    assert [r["token"] for r in merged["rows"]] and merged["outcome"] == unsliced["outcome"]
    for key in ("tokens", "changed", "by_action", "needs_person", "fails_job", "audit_findings", "endpoints"):
        assert merged["counts"][key] == unsliced["counts"][key], key
    assert sorted(s["slice"] for s in merged["slices"]) == sorted(str(300 + n) for n in results) and merged["slice"] == ""
    # The same outputs as an unsliced run: the merged metrics are the unsliced run's series, without a slice label.
    assert sorted(p.name for p in merged_dir.iterdir()) == sorted(p.name for p in unsliced_dir.iterdir())
    merged_series = sorted((n, sorted(l.items())) for n, l in series(merged_dir / "tokenops-rotation.prom"))
    unsliced_series = sorted((n, sorted(l.items())) for n, l in series(unsliced_dir / "tokenops-rotation.prom"))
    assert merged_series == unsliced_series
    # Every token's secret is in the one store, once, under its own host.
    for product, host, token in sliced.configured():
        assert bao.read("%s/%s/%s/%s" % (sliced.prefix, product, host, token))["fingerprint"]


def test_a_slice_it_cannot_name_fails_the_job_before_anything_runs(tmp_path):
    reports = tmp_path / "reports"
    for name, extra, says in (
            ("no-job-id", {"tokenops_sliced": True}, "tokenops_sliced needs awx_job_id"),
            ("bad-name", {"tokenops_slice": "../x"}, "tokenops_slice must be letters, digits")):
        job = AwxJob(tmp_path / name)
        job.inventory({"das": {"tenant-1": {"das_url": "https://127.0.0.1:9", "das_tokens": [{"id": "never-sent"}]}}})
        result = job.run(extra_vars=dict(extra, tokenops_report_dir=str(reports)), verbosity=0)
        assert result.status == "failed" and says in result.stdout, result
        assert not result.module_results("das_*"), "a DAS task ran although the job could not name its slice"
    assert not reports.exists()


def test_the_merge_node_without_slices_says_what_it_needs(tmp_path):
    job = AwxJob(tmp_path / "merge", playbook="merge.yml", project_playbook=MERGE_PLAYBOOK)
    job.inventory({})
    result = job.run(extra_vars={"tokenops_report_dir": str(tmp_path / "out")}, verbosity=0)
    assert result.status == "failed" and "No report to merge: set tokenops_report_merge" in result.stdout, result
