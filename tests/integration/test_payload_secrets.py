"""A job killed mid-task leaves Ansible's module payloads on disk: none of them may hold a secret.

Ansible writes each module task to `<remote_tmp>/ansible-tmp-*/AnsiballZ_<module>.py`, with the task's arguments
in it as JSON, and deletes the file when the task ends. A job killed with SIGKILL (a node lost, a container
stopped) never gets there. Every secret option falls back to an environment variable that the module reads
itself, so a credential injected by the shipped AWX credential types never becomes an argument.

The run is rotate.yml through ansible-playbook, with the environment the credential types inject and the
inventory the README gives. Each product's simulator holds the request its module sends with the credential
(a hang fault, released by the test), so every module is running, its payload on disk, when the job is killed.
The same run with the credentials passed as arguments (lookup('env', ...), the old advice) is the control: the
scan finds them there.
"""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import conftest
from dpa_fixtures import dpa, dpa_factory  # noqa: F401  # pylint: disable=unused-import
from openpayments_fixtures import op, op_factory  # noqa: F401  # pylint: disable=unused-import
from secretserver_fixtures import ss, ss_factory  # noqa: F401  # pylint: disable=unused-import
from test_awx_job import Fleet
from tests.fixtures import awx

pytestmark = [pytest.mark.integration, pytest.mark.playbook]

ROTATE = [{"name": "Rotate every product's tokens", "ansible.builtin.import_playbook": "tokenops.rotation.rotate"}]
CREDENTIAL_VARIABLES = ("VAULT_", "STYRA_", "ANSIBLE_", "TSS_", "DPA_", "OPEN_PAYMENTS_", "TOKENOPS_")


def processes_under(folder):
    """Pids of the processes whose command line names `folder` (this test's own modules, run from its temp folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmdline:
            found.append(int(entry.name))
    return found


def files_under(*folders):
    return [Path(root) / name for folder in folders for root, _dirs, names in os.walk(folder) for name in names]


def credentials_env(fleet, root):
    """The job's environment as AWX builds it from the attached credentials (their env and file injectors)."""
    injected = awx.Injected()
    for stem, inputs in fleet.credentials.items():
        ctype = awx.load_types()[stem]
        assert not awx.input_problems(ctype, inputs)
        awx.inject(ctype, inputs, root, injected)
    assert not injected.args    # nothing injected as an extra var
    return dict(injected.env)


@pytest.mark.parametrize("advice", ["environment", "arguments"])
def test_a_killed_job_leaves_no_secret_in_a_module_payload(tmp_path, das, dpa, ss, op, advice):
    fleet = Fleet(tmp_path, das, dpa, ss, op, "file")
    groups = fleet.groups()
    if advice == "arguments":
        # The control: the credentials handed to the modules as arguments, as the README advised before.
        groups["das"]["tenant-a"]["das_refresher"]["initial_secret"] = "{{ lookup('env', 'STYRA_DAS_REFRESHER_SECRET') }}"
        groups["dpa"]["dpa-a"]["dpa_tokens"] = [{"id": "reporting", "refresh_token": "{{ lookup('env', 'DPA_REFRESH_TOKEN') }}"}]
        groups["secretserver"]["pam-a"]["secretserver_password"] = "{{ lookup('env', 'TSS_PASSWORD') }}"
    inventory = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                         "children": {group: {"hosts": hosts} for group, hosts in groups.items()}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "rotate.yml").write_text(yaml.safe_dump(ROTATE))
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    local_tmp, remote_tmp, home = tmp_path / "local-tmp", tmp_path / "remote-tmp", tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(CREDENTIAL_VARIABLES)}
    env.update(credentials_env(fleet, private))
    env.update({
        "HOME": str(home),
        "ANSIBLE_COLLECTIONS_PATH": conftest.collections_path(),
        "ANSIBLE_LOCAL_TEMP": str(local_tmp),
        "ANSIBLE_REMOTE_TEMP": str(remote_tmp),
        "ANSIBLE_KEEP_REMOTE_FILES": "0",
        "ANSIBLE_PIPELINING": "0",      # the payload goes through a file, as over any connection without pipelining
        "ANSIBLE_FORKS": "8",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
    })
    # Each module is held at the request it sends with its credential.
    held = {
        "das_token": (das.sim, "PUT", r"^/v1/tokens/ci-deployer$"),
        "dpa_refresh_token": (dpa.sim, "POST", r"/iwc/api/security/oauth/token$"),
        "secretserver_token": (ss.sim, "POST", r"/oauth2/token$"),
    }
    for sim, method, path in held.values():
        sim.faults.add(method, path, "hang_before_commit", delay=900)

    proc = subprocess.Popen([str(conftest.BIN / "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "rotate.yml")],
                            env=env, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        for module, (sim, _method, _path) in held.items():
            assert sim.faults.arrived.wait(300), "%s never reached its simulator" % module
        payloads = {path.name for path in files_under(remote_tmp) if path.name.startswith("AnsiballZ_")}
        assert payloads >= {"AnsiballZ_%s.py" % module for module in held}, payloads
        # The job dies at once, its modules with it (Ansible starts each in a session of its own).
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in processes_under(tmp_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        output = proc.communicate(timeout=60)[0]
        conftest.OUTPUTS.append(("killed job output", output))
        conftest.wait_for(lambda: not [pid for pid in processes_under(tmp_path) if conftest.process_alive(pid)], "the modules to die")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for sim, _method, _path in held.values():
            sim.faults.release.set()

    left = files_under(local_tmp, remote_tmp, home)
    assert {path.name for path in left} >= {"AnsiballZ_%s.py" % module for module in held}     # the kill left them
    canaries = fleet.canaries | das.sim.issued | dpa.sim.issued | ss.sim.issued | op.sim.issued
    found = sorted({(path.name, canary[:6]) for path in left for canary in canaries
                    if canary and canary in path.read_text(errors="replace")})
    if advice == "arguments":
        # The scan sees a secret that was passed as an argument: each of the three credentials.
        names = {name for name, _prefix in found}
        assert names >= {"AnsiballZ_das_token.py", "AnsiballZ_dpa_refresh_token.py", "AnsiballZ_secretserver_token.py"}, found
        return
    assert not found, found
