"""Shared test set-up: import paths for the collection, the simulators and OpenBao."""

import os
import sys
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


# TOKENOPS_TEST_BUSY=N (`make test-busy`): N processes that each keep a core busy for the whole session, so the
# suite proves it holds on a loaded CI machine. Started once by the controlling pytest (not by each xdist worker);
# each stops by itself when that pytest is gone, even if it was killed.
BUSY_LOOP = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    sum(range(100000))\n"


def pytest_configure(config):
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


@pytest.fixture(autouse=True)
def own_backpressure_folder(tmp_path, monkeypatch):
    """Each test its own endpoint limits (plugins/module_utils/backpressure.py): a port another test used
    before must not inherit that test's lowered limit or pause; the modules a test runs inherit it."""
    folder = tmp_path / "endpoint-limits"
    monkeypatch.setenv("TOKENOPS_BACKPRESSURE_DIR", str(folder))
    return folder


def pytest_report_header(config):
    if getattr(config, "busy_loops", None):
        return "TOKENOPS_TEST_BUSY: %d busy-loop processes keep the cores loaded" % len(config.busy_loops)
    return None
