"""Shared test set-up: import paths for the collection, the simulators and OpenBao, and hermetic runs.

Hermetic runs: no test, and no process a test starts, reads or writes the real home directory, the user's
~/.ansible or the system temp folder outside the session's own area. The session gets one folder of its own
(TOKENOPS_TEST_AREA, under the system temp folder); each pytest process, and then each test, gets its own HOME,
ANSIBLE_HOME, ANSIBLE_LOCAL_TEMP, ANSIBLE_REMOTE_TEMP, TMPDIR, XDG folders and collections path inside it, through
the environment every child inherits. Anything a test relies on that would live in a home directory (the file
store's default folder, say), the test creates.

TOKENOPS_TEST_HOME_GUARD=1 (set by .ci/run, whose HOME is a new empty folder): the controlling pytest lists what is
under the real HOME when the session starts and fails the session if anything there was added, changed or removed
by the end. Sanity and lint, which make runs beside pytest, get a HOME of their own for that reason.
"""

import itertools
import multiprocessing.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEV_COLLECTIONS = REPO / ".build" / "collections"


def _dev_collection_link():
    """`ansible_collections.tokenops.rotation` importable from the work tree, for unit tests."""
    link = DEV_COLLECTIONS / "ansible_collections" / "tokenops" / "rotation"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(os.path.relpath(REPO, link.parent))
        except FileExistsError:  # another test process made it first
            pass
    return DEV_COLLECTIONS


for path in (str(REPO), str(_dev_collection_link())):
    if path not in sys.path:
        sys.path.insert(0, path)


# ------------------------------------------------------------------ hermetic runs

ISOLATED_VARIABLES = ("HOME", "ANSIBLE_HOME", "ANSIBLE_LOCAL_TEMP", "ANSIBLE_REMOTE_TEMP", "TMPDIR",
                      "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "ANSIBLE_COLLECTIONS_PATH")
GUARDED_HOME = []      # the real HOME and what was under it at the start (controlling process, with the guard on)
SESSION_AREA = []      # this process's folder in the session's area (kept here: some tests clear TOKENOPS_* variables)
_TEST_AREAS = itertools.count(1)


def collections_path():
    """The installed collection (make), else the work tree through the dev link."""
    return os.environ.get("TOKENOPS_COLLECTIONS_PATH") or str(DEV_COLLECTIONS)


def isolated_environment(area):
    """The variables that keep a process, and every process it starts, inside `area` (created here)."""
    area = Path(area)
    env = {
        "HOME": area / "home",
        "ANSIBLE_HOME": area / "home" / ".ansible",
        "ANSIBLE_LOCAL_TEMP": area / "ansible-local",
        "ANSIBLE_REMOTE_TEMP": area / "ansible-remote",
        "TMPDIR": area / "tmp",
        "XDG_CONFIG_HOME": area / "home" / ".config",
        "XDG_CACHE_HOME": area / "home" / ".cache",
        "XDG_DATA_HOME": area / "home" / ".local" / "share",
        "XDG_STATE_HOME": area / "home" / ".local" / "state",
    }
    for folder in ("HOME", "ANSIBLE_LOCAL_TEMP", "ANSIBLE_REMOTE_TEMP", "TMPDIR"):
        env[folder].mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {name: str(value) for name, value in env.items()}
    # Only the collection under test: never the user's ~/.ansible/collections or /usr/share/ansible/collections.
    env["ANSIBLE_COLLECTIONS_PATH"] = collections_path()
    return env


def enter(env):
    """Make `env` this process's environment (and tempfile's, which caches its folder)."""
    os.environ.update(env)
    tempfile.tempdir = None


def home_listing(home):
    """Every entry under `home` with what would show a write: type, size and modification time."""
    listing = {}
    for folder, dirs, files in os.walk(home):
        for name in dirs + files:
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            # A folder's size and time change when an entry is added or removed in it; that entry shows itself.
            listing[path] = None if name in dirs else (info.st_mode, info.st_size, info.st_mtime_ns)
    return listing


def home_changes(before, after):
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(path for path in set(before) & set(after) if before[path] != after[path])
    return ["added %s" % p for p in added] + ["removed %s" % p for p in removed] + ["changed %s" % p for p in changed]


def _start_hermetic_session(config):
    """Controlling process: the session's area, its own environment, and the real HOME's listing if guarded."""
    real_home = os.environ.get("HOME") or os.path.expanduser("~")
    if os.environ.get("TOKENOPS_TEST_HOME_GUARD") == "1" and os.path.isdir(real_home):
        GUARDED_HOME.append((real_home, home_listing(real_home)))
    area = Path(tempfile.mkdtemp(prefix="tokenops-tests-"))
    config.tokenops_area = area
    os.environ["TOKENOPS_TEST_AREA"] = str(area)
    if not config.option.basetemp:
        config.option.basetemp = str(area / "pytest")   # short paths: unix sockets under tmp_path stay under 108 bytes
    SESSION_AREA.append(area / "main")
    enter(isolated_environment(SESSION_AREA[0]))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    """Controlling process, with the guard on: the session fails if anything under the real HOME changed."""
    if hasattr(session.config, "workerinput"):
        return
    if GUARDED_HOME:
        home, before = GUARDED_HOME.pop()
        changes = home_changes(before, home_listing(home))
        if changes:
            sys.stderr.write("\nTOKENOPS_TEST_HOME_GUARD: the session wrote under the real HOME %s:\n  %s\n"
                             % (home, "\n  ".join(changes[:50])))
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    session.config.tokenops_exitstatus = session.exitstatus


def _finish_hermetic_session(config):
    """Controlling process: remove the session's area, unless the session failed (its files help to see why)."""
    area = getattr(config, "tokenops_area", None)
    if area is None:
        return
    if getattr(config, "tokenops_exitstatus", None) == 0 and os.environ.get("TOKENOPS_TEST_KEEP_AREA") != "1":
        # At exit, after multiprocessing has removed its own temp folder (exit priority -100) from the area.
        multiprocessing.util.Finalize(None, shutil.rmtree, args=(str(area),), kwargs={"ignore_errors": True}, exitpriority=-101)
    else:
        sys.stderr.write("The session's files (HOME, temp folders, tmp_path) are kept in %s\n" % area)


@pytest.fixture(autouse=True)
def hermetic_test(monkeypatch):
    """Each test, and every process it starts, gets its own HOME, Ansible folders, TMPDIR and collections path.

    So each test also has its own endpoint limits (plugins/module_utils/backpressure.py keeps them under TMPDIR): a port
    another test used before never hands on that test's lowered limit or pause.
    """
    area = SESSION_AREA[0] / ("t%d" % next(_TEST_AREAS))
    for name, value in isolated_environment(area).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(tempfile, "tempdir", None)
    yield area


# TOKENOPS_TEST_BUSY=N (`make test-busy`): N processes that each keep a core busy for the whole session, so the
# suite proves it holds on a loaded CI machine. Started once by the controlling pytest (not by each xdist worker);
# each stops by itself when that pytest is gone, even if it was killed.
BUSY_LOOP = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    sum(range(100000))\n"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    if hasattr(config, "workerinput"):   # an xdist worker: its own folders inside the session's area
        SESSION_AREA.append(Path(os.environ["TOKENOPS_TEST_AREA"]) / config.workerinput["workerid"])
        enter(isolated_environment(SESSION_AREA[0]))
    else:
        _start_hermetic_session(config)
    wanted = os.environ.get("TOKENOPS_TEST_BUSY", "").strip()
    if not wanted or hasattr(config, "workerinput"):
        return
    if not wanted.isdigit():
        raise ValueError("TOKENOPS_TEST_BUSY must be a number of busy processes, got %r" % wanted)
    import subprocess
    config.busy_loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _loop in range(int(wanted))]


def pytest_unconfigure(config):
    for proc in getattr(config, "busy_loops", []):
        proc.kill()
        proc.wait()
    if not hasattr(config, "workerinput"):
        _finish_hermetic_session(config)


def pytest_report_header(config):
    if getattr(config, "busy_loops", None):
        return "TOKENOPS_TEST_BUSY: %d busy-loop processes keep the cores loaded" % len(config.busy_loops)
    return None
