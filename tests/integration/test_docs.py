"""ansible-doc renders every plugin with its examples and return values."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import collections_path

PLUGINS = [("module", "tokenops.rotation.das_token"), ("module", "tokenops.rotation.das_token_info"),
           ("lookup", "tokenops.rotation.token")]


@pytest.mark.parametrize("kind, name", PLUGINS)
def test_ansible_doc_renders(kind, name):
    ansible_doc = str(Path(sys.executable).parent / "ansible-doc")
    run = subprocess.run([ansible_doc, "-t", kind, name], capture_output=True, text=True, timeout=120, check=False,
                         env={"ANSIBLE_COLLECTIONS_PATH": collections_path(), "PATH": "/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1"})
    assert run.returncode == 0, run.stderr
    assert "[WARNING]" not in run.stderr and "ERROR" not in run.stderr, run.stderr
    assert "EXAMPLES:" in run.stdout
    assert ("RETURN VALUES:" in run.stdout) if kind == "module" else ("RETURN" in run.stdout)
    if kind == "module":
        assert "ATTRIBUTES:" in run.stdout and "check_mode" in run.stdout


def test_role_argument_spec_renders():
    ansible_doc = str(Path(sys.executable).parent / "ansible-doc")
    run = subprocess.run([ansible_doc, "-t", "role", "tokenops.rotation.das"], capture_output=True, text=True, timeout=120, check=False,
                         env={"ANSIBLE_COLLECTIONS_PATH": collections_path(), "PATH": "/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1"})
    assert run.returncode == 0, run.stderr
    assert "das_tokens" in run.stdout and "das_url" in run.stdout
