"""A job as AWX runs it: a private data directory handed to ansible-runner (imported by test_awx_*.py).

The layout is the one AWX writes for a job (awx/main/tasks/jobs.py: build_private_data_dir,
build_inventory, build_env, _write_extra_vars_file, write_args_file; the credentials through
CredentialType.inject_credential, here tests/fixtures/awx.py):

    project/rotate.yml       the job template's playbook in the project: it imports tokenops.rotation.rotate
    inventory/hosts          an executable script that prints the inventory as JSON (mode 0700)
    env/envvars              the job's environment, the credentials' env injectors included
    env/extravars            the job template's extra vars (mode 0400)
    env/cmdline              ansible-playbook's arguments: verbosity, limit, check, `-e @file` of extra-vars injectors
    env/settings             ansible-runner settings (job timeout)
    env/tmpXXXXXXXX          files written by file injectors (mode 0600)
    artifacts/<ident>/       what ansible-runner leaves: job_events/*.json, stdout, status, rc

The collection comes from the execution environment (TOKENOPS_COLLECTIONS_PATH plays the EE's
/usr/share/ansible/collections). HOME is a fresh directory per job, as a container's is.

    job = AwxJob(tmp_path / "job")
    job.inventory({"das": {"tenant-a": {...}}})
    job.credential("das", {"api_token": ...})        # validated against the shipped type, then injected
    result = job.run()
    result.status, result.rc, result.events, result.stdout, result.artifact_data, result.module_results("das_token")
"""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import yaml

import conftest
from tests.fixtures import awx

PROJECT_PLAYBOOK = [{"name": "Rotate every product's tokens", "ansible.builtin.import_playbook": "tokenops.rotation.rotate"}]


class JobResult:
    """What ansible-runner left for one job: exit status, events, stdout."""

    def __init__(self, job, ident, proc):
        self.job = job
        self.ident = ident
        self.artifacts = job.root / "artifacts" / ident
        self.process_output = proc.stdout + proc.stderr
        self.rc = int(self._read("rc", "-1"))
        self.status = self._read("status", "missing")
        self.stdout = self._read("stdout", "")
        self.events = []
        for path in sorted((self.artifacts / "job_events").glob("*.json")):
            self.events.append(json.loads(path.read_text()))
        self.events.sort(key=lambda e: e.get("counter", 0))

    def _read(self, name, default):
        path = self.artifacts / name
        return path.read_text().strip() if path.exists() else default

    def texts(self):
        """Everything of this job a person could see in AWX: the job events (with their stdout) and the stdout.

        Not artifacts/<ident>/command: ansible-runner records the job's whole environment there,
        credentials included, like env/envvars (mode 0600, inside the private data directory AWX
        deletes after the job, shown to no one).
        """
        texts = [("awx job stdout", self.stdout), ("awx runner output", self.process_output)]
        for path in sorted((self.artifacts / "job_events").glob("*.json")):
            texts.append(("awx job event", path.read_text()))
        return texts

    @property
    def stats(self):
        """The playbook_on_stats event's data (AWX's host summaries)."""
        found = [e for e in self.events if e.get("event") == "playbook_on_stats"]
        return found[-1]["event_data"] if found else {}

    @property
    def artifact_data(self):
        """What the playbook gave set_stats: the data a workflow's next node receives."""
        return self.stats.get("artifact_data", {})

    def module_results(self, module):
        """[(host, result)] of every task that ran tokenops.rotation.<module> and finished (ok or failed).

        A module name ending in `*` matches by prefix (`das_*`: das_token and das_token_info).
        """
        wanted = "tokenops.rotation." + module
        found = []
        for event in self.events:
            data = event.get("event_data", {})
            action = data.get("resolved_action") or data.get("task_action") or ""
            if event.get("event") in ("runner_on_ok", "runner_on_failed") and \
                    (action == wanted or (wanted.endswith("*") and action.startswith(wanted[:-1]))):
                res = dict(data.get("res") or {})
                if event["event"] == "runner_on_failed":
                    res.setdefault("failed", True)    # the event says so; the result itself may not
                found.append((data.get("host"), res))
        return found

    def actions(self, module):
        """{(host, token id): action} over the module's results."""
        actions = {}
        for host, res in self.module_results(module):
            for item in res.get("results", [res]):
                if "id" in item:
                    actions[(host, item["id"])] = item.get("action")
        return actions

    def __repr__(self):
        return "<AWX job %s status=%s rc=%s>\n%s" % (self.ident, self.status, self.rc, self.stdout[-6000:])


class AwxJob:
    """A private data directory laid out as AWX lays it out, run by ansible-runner."""

    def __init__(self, root, playbook="rotate.yml", project_playbook=None):
        self.root = Path(root)
        self.playbook = playbook
        self.home = self.root.parent / (self.root.name + "-home")
        for sub in ("project", "inventory", "env"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, stat.S_IRWXU)
        (self.root / "project" / playbook).write_text(yaml.safe_dump(project_playbook or PROJECT_PLAYBOOK, sort_keys=False))
        self.injected = awx.Injected()
        self.extra_vars = {}
        self.count = 0

    def inventory(self, groups, all_vars=None):
        """groups: {group: {host: hostvars}}. Written as AWX writes an inventory: a script printing JSON."""
        group_vars = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
        group_vars.update(all_vars or {})
        data = {"all": {"children": sorted(groups), "vars": group_vars}, "_meta": {"hostvars": {}}}
        for group, hosts in groups.items():
            data[group] = {"hosts": sorted(hosts)}
            for host, hostvars in hosts.items():
                # AWX adds remote_tower_enabled and remote_tower_id, and keeps the id back for its own events.
                data["_meta"]["hostvars"][host] = dict(hostvars, remote_tower_enabled="true")
        path = self.root / "inventory" / "hosts"
        path.write_text("#! %s\n# -*- coding: utf-8 -*-\nprint(%r)\n" % (sys.executable, json.dumps(data)))
        os.chmod(path, stat.S_IRUSR | stat.S_IXUSR | stat.S_IWUSR)
        return data

    def credential(self, stem, inputs):
        """Attach a credential of a shipped type: AWX refuses inputs the type does not take, then injects them."""
        ctype = awx.load_types()[stem]
        problems = awx.input_problems(ctype, inputs)
        assert not problems, problems
        awx.inject(ctype, inputs, self.root, self.injected)
        return self

    def run(self, extra_vars=None, limit=None, check=False, diff=False, forks=None, verbosity=4, timeout=900, env=None):
        self.count += 1
        ident = str(self.count)
        env_dir = self.root / "env"
        # The job's environment: what AWX sets for every job, then the credentials' injectors.
        envvars = {
            "ANSIBLE_FORCE_COLOR": "False",   # AWX's default is True; plain text keeps the assertions readable
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
            "ANSIBLE_PARAMIKO_RECORD_HOST_KEYS": "False",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_COLLECTIONS_PATH": conftest.collections_path(),
            "ANSIBLE_LOCAL_TEMP": str(self.home / ".ansible" / "tmp"),
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "JOB_ID": ident,
            "INVENTORY_ID": "1",
            "MAX_EVENT_RES": "700000",
            "AWX_PRIVATE_DATA_DIR": str(self.root),
        }
        envvars.update(self.injected.env)
        envvars.update(env or {})
        self._write(env_dir / "envvars", yaml.safe_dump(envvars), stat.S_IRUSR | stat.S_IWUSR)
        self._write(env_dir / "extravars", yaml.safe_dump(dict(self.extra_vars, **(extra_vars or {}))), stat.S_IRUSR)
        args = []
        if verbosity:
            args.append("-" + "v" * verbosity)
        if limit:
            args += ["--limit", limit]
        if forks:
            args += ["--forks", str(forks)]
        if check:
            args.append("--check")
        if diff:
            args.append("--diff")
        args += self.injected.args
        self._write(env_dir / "cmdline", " ".join(args), stat.S_IRUSR)
        self._write(env_dir / "settings", yaml.safe_dump({"job_timeout": timeout, "suppress_ansible_output": True}),
                    stat.S_IRUSR | stat.S_IWUSR)
        # The execution node's own environment: nothing of the test process's (no VAULT_*, no ANSIBLE_*).
        self.home.mkdir(parents=True, exist_ok=True)
        process_env = {"PATH": "%s:%s" % (conftest.BIN, os.environ.get("PATH", "/usr/bin:/bin")), "HOME": str(self.home),
                       "TMPDIR": os.environ.get("TMPDIR", str(self.root)), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        # A failed job is a result to look at, not an error of the harness: check=False.
        proc = subprocess.run([str(conftest.BIN / "ansible-runner"), "run", str(self.root), "-p", self.playbook, "--ident", ident],
                              env=process_env, cwd=str(self.root), capture_output=True, text=True, timeout=timeout + 60, check=False)
        result = JobResult(self, ident, proc)
        # The session-wide leak scan covers what AWX would show of this job.
        conftest.OUTPUTS.extend(result.texts())
        return result

    @staticmethod
    def _write(path, text, mode):
        if path.exists():
            os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        path.write_text(text)
        os.chmod(path, mode)
