"""The test suite is hermetic: every test, and every process it starts, keeps out of the real HOME and the system
temp folder, and the guard that .ci/run turns on fails a session that writes under the real HOME.

The guard's own tests run pytest in a child process on a throwaway test file, with HOME pointing at a folder made
here, so they show the guard catching a write without touching anybody's home directory.
"""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
AREA_VARIABLES = ("HOME", "ANSIBLE_HOME", "ANSIBLE_LOCAL_TEMP", "ANSIBLE_REMOTE_TEMP", "TMPDIR",
                  "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")
SEEN_HOMES = []


@pytest.mark.parametrize("turn", [1, 2])
def test_each_test_has_its_own_home_and_temp_folders_inside_the_sessions_area(turn):
    area = Path(os.environ["TOKENOPS_TEST_AREA"])
    for name in AREA_VARIABLES:
        assert Path(os.environ[name]).is_relative_to(area), (name, os.environ[name])
    assert Path(tempfile.gettempdir()) == Path(os.environ["TMPDIR"])
    assert Path(os.path.expanduser("~")) == Path(os.environ["HOME"])
    assert os.environ["ANSIBLE_COLLECTIONS_PATH"] == os.environ.get("TOKENOPS_COLLECTIONS_PATH", os.environ["ANSIBLE_COLLECTIONS_PATH"])
    SEEN_HOMES.append((turn, os.environ["HOME"]))
    homes = {home for _turn, home in SEEN_HOMES}
    assert len(homes) == len(SEEN_HOMES), "two tests shared a HOME: %s" % SEEN_HOMES


def test_a_process_the_test_starts_gets_the_same_folders():
    code = "import os, tempfile; print(os.path.expanduser('~')); print(tempfile.gettempdir())"
    home, temp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert home == os.environ["HOME"] and temp == os.environ["TMPDIR"]


def test_ansible_keeps_its_files_in_the_tests_own_folders():
    """ansible-config, run as the tests run ansible-playbook, resolves its home and temp folders inside the test's area."""
    ansible_config = Path(sys.executable).parent / "ansible-config"
    out = subprocess.run([str(ansible_config), "dump", "--only-changed", "--format", "json"], capture_output=True, text=True,
                         check=True).stdout
    settings = {item["name"]: item["value"] for item in json.loads(out) if "name" in item}
    area = Path(os.environ["TOKENOPS_TEST_AREA"])
    for name in ("ANSIBLE_HOME", "DEFAULT_LOCAL_TMP"):
        assert Path(settings[name]).is_relative_to(area), (name, settings[name])
    assert settings["COLLECTIONS_PATHS"] == [os.environ["ANSIBLE_COLLECTIONS_PATH"]]


def _guarded_session(tmp_path, test_body, node=None):
    """pytest in a child process, with the guard on and HOME at a new folder: (completed process, that HOME)."""
    fake_home = tmp_path / "real-home"
    fake_home.mkdir()
    (fake_home / ".profile").write_text("# a file the user had\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TOKENOPS_TEST_AREA", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS")}
    env.update(HOME=str(fake_home), TOKENOPS_TEST_HOME_GUARD="1", INNER_REAL_HOME=str(fake_home))
    if node is None:
        inner = tmp_path / "inner" / "test_inner.py"
        inner.parent.mkdir()
        inner.write_text(textwrap.dedent(test_body))
        # The suite's conftest, loaded as a plugin: the throwaway test lives outside tests/.
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS)] + [p for p in [env.get("PYTHONPATH")] if p])
        cmd = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q", "-c", os.devnull,
               "--rootdir", str(inner.parent), str(inner)]
        cwd = inner.parent
    else:
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "0", node]
        cwd = REPO
    proc = subprocess.run(cmd, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=300, check=False)
    return proc, fake_home


def test_guard_fails_a_session_that_writes_under_the_real_home(tmp_path):
    proc, fake_home = _guarded_session(tmp_path, """
        import os

        def test_leaves_something_behind():
            with open(os.path.join(os.environ["INNER_REAL_HOME"], ".leftover"), "w") as handle:
                handle.write("x")
    """)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout   # the test itself passed: the guard failed the session
    assert "TOKENOPS_TEST_HOME_GUARD: the session wrote under the real HOME" in proc.stderr
    assert "added %s" % (fake_home / ".leftover") in proc.stderr


def test_guard_sees_a_file_changed_under_the_real_home(tmp_path):
    proc, fake_home = _guarded_session(tmp_path, """
        import os

        def test_appends_to_a_users_file():
            with open(os.path.join(os.environ["INNER_REAL_HOME"], ".profile"), "a") as handle:
                handle.write("export X=1\\n")
    """)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "changed %s" % (fake_home / ".profile") in proc.stderr


def test_guard_passes_a_session_that_writes_only_its_own_home(tmp_path):
    proc, fake_home = _guarded_session(tmp_path, """
        import os
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        def test_writes_home_and_temp_the_usual_ways():
            Path("~/.ansible/tokenops").expanduser().mkdir(parents=True)
            Path(tempfile.mkdtemp(), "x").write_text("x")
            subprocess.run([sys.executable, "-c", "import pathlib; pathlib.Path('~/.cache/x').expanduser().parent.mkdir()"],
                           check=True)
    """)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in fake_home.iterdir()) == [".profile"]


@pytest.mark.slow
def test_the_default_store_test_passes_with_an_empty_home_and_leaves_it_untouched(tmp_path):
    """Issue 17's reproduction: a test of the default file store once passed only where ~/.ansible/tokenops existed."""
    proc, fake_home = _guarded_session(
        tmp_path, None, node="tests/unit/plugins/module_utils/test_dpa.py::test_token_module_without_policy_options")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert sorted(p.name for p in fake_home.iterdir()) == [".profile"]
