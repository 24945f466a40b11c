"""ansible-doc renders the Open Payments modules and role with examples and return values."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import collections_path


def ansible_doc(*args):
    return subprocess.run([str(Path(sys.executable).parent / "ansible-doc")] + list(args), capture_output=True, text=True,
                          timeout=120, check=False,
                          env={"ANSIBLE_COLLECTIONS_PATH": collections_path(), "PATH": "/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1"})


@pytest.mark.parametrize("name", ["tokenops.rotation.openpayments_token", "tokenops.rotation.openpayments_token_info"])
def test_module_docs_render(name):
    run = ansible_doc("-t", "module", name)
    assert run.returncode == 0, run.stderr
    assert "[WARNING]" not in run.stderr and "ERROR" not in run.stderr, run.stderr
    for part in ("EXAMPLES:", "RETURN VALUES:", "ATTRIBUTES:", "check_mode", "private_key" if name.endswith("_token") else "grants"):
        assert part in run.stdout, part


def test_role_argument_spec_renders():
    run = ansible_doc("-t", "role", "tokenops.rotation.openpayments")
    assert run.returncode == 0, run.stderr
    assert "openpayments_tokens" in run.stdout and "openpayments_url" in run.stdout
