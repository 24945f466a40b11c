"""ansible-doc renders both Secret Server modules with their examples and return values, and the role's argument spec."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import collections_path

pytestmark = pytest.mark.integration


def ansible_doc(*args):
    return subprocess.run([str(Path(sys.executable).parent / "ansible-doc")] + list(args), capture_output=True, text=True, timeout=120,
                          check=False, env={"ANSIBLE_COLLECTIONS_PATH": collections_path(), "PATH": "/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1"})


@pytest.mark.parametrize("name", ["tokenops.rotation.secretserver_token", "tokenops.rotation.secretserver_token_info"])
def test_module_doc_renders(name):
    run = ansible_doc("-t", "module", name)
    assert run.returncode == 0, run.stderr
    assert "[WARNING]" not in run.stderr and "ERROR" not in run.stderr, run.stderr
    for section in ("EXAMPLES:", "RETURN VALUES:", "ATTRIBUTES:", "check_mode", "TSS_BASE_URL"):
        assert section in run.stdout, section


def test_role_argument_spec_renders():
    run = ansible_doc("-t", "role", "tokenops.rotation.secretserver")
    assert run.returncode == 0, run.stderr
    assert "secretserver_tokens" in run.stdout and "secretserver_url" in run.stdout
