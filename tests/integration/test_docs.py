"""ansible-doc renders every plugin with its examples and return values."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, collections_path

PLUGINS = [("module", "tokenops.rotation.das_token"), ("module", "tokenops.rotation.das_token_info"),
           ("module", "tokenops.rotation.rotation_report"), ("lookup", "tokenops.rotation.token")]


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


@pytest.mark.parametrize("role", ["das", "dpa", "secretserver", "openpayments"])
def test_role_argument_spec_renders(role):
    ansible_doc = str(Path(sys.executable).parent / "ansible-doc")
    run = subprocess.run([ansible_doc, "-t", "role", "tokenops.rotation." + role], capture_output=True, text=True, timeout=120, check=False,
                         env={"ANSIBLE_COLLECTIONS_PATH": collections_path(), "PATH": "/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1"})
    assert run.returncode == 0, run.stderr
    assert "%s_tokens" % role in run.stdout and "%s_url" % role in run.stdout
    assert "%s_lock_timeout" % role in run.stdout and "%s_lease" % role in run.stdout and "%s_fail_at_end" % role in run.stdout


def test_secret_role_options_are_no_log():
    """Role options that carry a secret, or a dictionary that may hold one, are no_log in the argument specs."""
    secret = {"das": ["das_api_token", "das_store", "das_refresher.initial_secret"],
              "dpa": ["dpa_store", "dpa_tokens.refresh_token"],
              "secretserver": ["secretserver_password", "secretserver_store", "secretserver_tokens.password", "secretserver_tokens.otp"],
              "openpayments": ["openpayments_private_key", "openpayments_store"]}
    for role, names in secret.items():
        options = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
        for name in names:
            option, _dot, suboption = name.partition(".")
            spec = options[option]
            if suboption:
                spec = spec["options"][suboption]
            assert spec.get("no_log") is True, "%s: %s" % (role, name)
