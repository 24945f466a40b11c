"""ansible-doc renders the DPA modules, the lookup and the role with their examples and return values."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import collections_path

PLUGINS = [("module", "tokenops.rotation.dpa_refresh_token"), ("module", "tokenops.rotation.dpa_refresh_token_info"),
           ("lookup", "tokenops.rotation.dpa_access_token"), ("role", "tokenops.rotation.dpa")]


def ansible_doc(kind, name):
    return subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-t", kind, name], capture_output=True, text=True,
                          timeout=120, check=False,
                          env={"ANSIBLE_COLLECTIONS_PATH": collections_path(), "PATH": "/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1"})


@pytest.mark.parametrize("kind, name", PLUGINS)
def test_ansible_doc_renders(kind, name):
    run = ansible_doc(kind, name)
    assert run.returncode == 0, run.stderr
    assert "[WARNING]" not in run.stderr and "ERROR" not in run.stderr, run.stderr
    if kind == "role":
        assert "dpa_tokens" in run.stdout and "dpa_fail_before" in run.stdout
        return
    assert "EXAMPLES:" in run.stdout and "RETURN" in run.stdout
    if kind == "module":
        assert "ATTRIBUTES:" in run.stdout and "check_mode" in run.stdout and "warn_before" in run.stdout
        assert "rotate_before" not in run.stdout      # DPA cannot rotate: the rotation policy options are not offered
