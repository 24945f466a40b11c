"""Integration harness: ansible-playbook against the simulators and a real OpenBao dev server.

Every playbook runs at -vvvv. Every output (stdout, stderr, the recorded task results, the
simulators' logs) is kept for the session, and at the end it is scanned for every secret any
simulator issued: a leak anywhere fails the session (see test_leaks.py for the focused test).
"""

import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ansible_collections.tokenops.rotation.plugins.module_utils.store import normalize_host
from tests.fixtures.openbao import OpenBaoServer
from tests.simulators.das import DasSimulator

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CALLBACKS = Path(__file__).resolve().parent / "callback_plugins"

# Everything the session printed or logged, and every secret that must never be in it.
OUTPUTS = []
CANARIES = set()
SIMULATORS = []


class _KeepLog(logging.Handler):
    """The simulators' own request logs are scanned for secrets too."""

    def emit(self, record):
        OUTPUTS.append(("simulator log", self.format(record)))


_sim_log = logging.getLogger("simulator")
_sim_log.setLevel(logging.DEBUG)
_sim_log.addHandler(_KeepLog())


def collections_path():
    """The installed collection (make), else the work tree through the dev link."""
    path = os.environ.get("TOKENOPS_COLLECTIONS_PATH")
    if path:
        return path
    return str(REPO / ".build" / "collections")


# ------------------------------------------------------------------ OpenBao, with an audit log

class Bao:
    """The session's OpenBao, and a count of the requests that changed something, from its audit log."""

    def __init__(self, server, audit_path):
        self.server = server
        self.url = server.url
        self.token = server.root_token
        self.audit_path = audit_path

    def writes(self):
        count = 0
        if not self.audit_path.exists():
            return 0
        for line in self.audit_path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("type") != "request":
                continue
            req = entry.get("request") or {}
            if req.get("operation") in ("create", "update", "delete") and req.get("path", "").startswith("secret/"):
                count += 1
        return count

    def requests(self):
        if not self.audit_path.exists():
            return 0
        return sum(1 for line in self.audit_path.read_text().splitlines() if '"type":"request"' in line.replace(" ", ""))

    def read(self, path):
        return self.server.kv_read(path)


@pytest.fixture(scope="session")
def bao():
    server = OpenBaoServer(audit=True)
    server.start()
    OUTPUTS.append(("openbao log", server.log_path))
    try:
        yield Bao(server, Path(server.audit_path))
    finally:
        server.stop()


# ------------------------------------------------------------------ stores as the modules see them

class StoreUnderTest:
    """The `store` option for a backend, and the means to read it and count its writes."""

    def __init__(self, backend, tmp_path, bao=None):
        self.backend = backend
        self.bao = bao
        self.prefix = "t%s" % secrets.token_hex(4)   # each test its own corner of the store
        if backend == "file":
            # The store's folder must exist: the file store refuses to create it (a volume that failed to mount).
            (tmp_path / "store").mkdir(mode=0o700, exist_ok=True)
            self.file_path = tmp_path / "store" / "tokens.vault"
            self.password_file = tmp_path / "vault-pass"
            self.password_file.write_text("pw-%s\n" % secrets.token_hex(8))
            self.options = {"backend": "file", "prefix": self.prefix, "file_path": str(self.file_path),
                            "vault_password_file": str(self.password_file), "timeout": 2}
            self.env = {}
        else:
            self.options = {"backend": "vault", "prefix": self.prefix, "timeout": 2}
            self.env = {"VAULT_ADDR": bao.url, "VAULT_TOKEN": bao.token}

    def _file_store(self):
        from ansible_collections.tokenops.rotation.plugins.module_utils.store_file import FileStore
        return FileStore(str(self.file_path), vault_password_file=str(self.password_file))

    def read(self, path):
        """The stored record at a full entry path, or None."""
        if self.backend == "file":
            return self._file_store().read(path).data
        return self.bao.read(path)

    @contextlib.contextmanager
    def outage(self):
        """The store is unreachable inside the block: OpenBao stopped (SIGSTOP), or the file store's lock held.

        Every file-store operation holds `<file_path>.lock` shared (only a migration takes it exclusively),
        so holding it exclusively stops reads and writes until the store's timeout fails them.
        """
        if self.backend == "vault":
            self.bao.server.pause()
            try:
                yield
            finally:
                self.bao.server.resume()
            return
        lock_fd = os.open(str(self.file_path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock_fd)

    def rewrite(self, path, change):
        """Change the stored record at a full entry path in place, as another process would (check-and-set)."""
        params = dict(self.options)
        if self.backend == "vault":
            params.update(url=self.bao.url, token=self.bao.token)
        from ansible_collections.tokenops.rotation.plugins.module_utils.store import store_from_params
        with store_from_params(params) as backend:
            entry = backend.read(path)
            data = change(entry.data)
            backend.write(path, data, entry.version)
            return data

    def entry(self, product, host, token_id):
        return self.read("%s/%s/%s/%s" % (self.prefix, product, host, token_id))

    def writes(self):
        """A counter that moves on every store write of this backend."""
        if self.backend == "file":
            return file_store_state(self.file_path)
        return self.bao.writes()


def file_store_state(file_path):
    """What changes when a file store is written: every entry file's name, inode and mtime.

    A write replaces its entry file (a new inode), a delete removes it. Only entry files (*.vault)
    count: not the per-entry locks, which a write that lost its check-and-set also creates, nor the
    key cache (.keyring), which a run that derived keys keeps up to date.
    """
    if not file_path.exists():
        return ()
    if file_path.is_file():     # the single-file format of earlier versions
        info = file_path.stat()
        return (("", info.st_ino, info.st_mtime_ns),)
    state = []
    for root, dirs, files in os.walk(file_path):
        if root == str(file_path):
            dirs[:] = [d for d in dirs if d != ".locks"]
        for name in files:
            if name.endswith(".vault"):
                info = os.stat(os.path.join(root, name))
                state.append((os.path.relpath(os.path.join(root, name), file_path), info.st_ino, info.st_mtime_ns))
    return tuple(sorted(state))


@pytest.fixture(params=["file", "vault"])
def store(request, tmp_path):
    bao = request.getfixturevalue("bao") if request.param == "vault" else None
    return StoreUnderTest(request.param, tmp_path, bao)


@pytest.fixture
def file_store(tmp_path):
    return StoreUnderTest("file", tmp_path)


# ------------------------------------------------------------------ the DAS simulator

class Das:
    def __init__(self, sim, url, admin):
        self.sim = sim
        self.url = url
        self.admin = admin
        self.host = normalize_host(url)    # the host segment of an entry path, as the modules make it


@pytest.fixture
def das_factory():
    started = []

    def start(**switches):
        sim = DasSimulator(**switches)
        url = sim.start()
        admin = sim.seed_token("tokenops-admin", roles=[("WorkspaceAdministrator", "workspace", "*")])
        SIMULATORS.append(sim)
        started.append(sim)
        return Das(sim, url, admin)

    yield start
    for sim in started:
        CANARIES.update(sim.issued)
        sim.stop()


@pytest.fixture
def das(das_factory):
    return das_factory()


# ------------------------------------------------------------------ running playbooks

class Run:
    def __init__(self, proc, results, stdout, stderr):
        self.rc = proc.returncode
        self.stdout = stdout
        self.stderr = stderr
        self.results = results

    @property
    def result(self):
        """The result of the last task that was not the harness's own."""
        return self.results[-1] if self.results else {}

    def __repr__(self):
        return "<Run rc=%s>\n%s\n%s" % (self.rc, self.stdout[-4000:], self.stderr[-2000:])


class Runner:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.count = 0

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "STYRA_", "ANSIBLE_"))}
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": collections_path(),
            "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACKS),
            "ANSIBLE_CALLBACKS_ENABLED": "result_file",
            "ANSIBLE_LOCAL_TEMP": str(self.tmp_path / "ansible-tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "ANSIBLE_DEPRECATION_WARNINGS": "0",
        })
        env.update(extra or {})
        return env

    def write(self, tasks=None, playbook=None, extra_vars=None):
        self.count += 1
        path = self.tmp_path / ("playbook-%d.yml" % self.count)
        if playbook is None:
            playbook = [{"name": "test", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]
        path.write_text(yaml.safe_dump(playbook, sort_keys=False))
        return path

    def start(self, tasks=None, env=None, check=False, diff=False, playbook=None, inventory=None, extra_args=()):
        """Start ansible-playbook in its own process group; returns (proc, result_file)."""
        path = self.write(tasks, playbook)
        result_file = self.tmp_path / ("results-%d.jsonl" % self.count)
        cmd = [str(BIN / "ansible-playbook"), "-vvvv", "-i", inventory or "localhost,", "-c", "local", str(path)]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        cmd.extend(extra_args)
        full_env = self.env(env)
        full_env["TOKENOPS_RESULT_FILE"] = str(result_file)
        proc = subprocess.Popen(cmd, env=full_env, cwd=str(self.tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        return proc, result_file

    def finish(self, proc, result_file, timeout=180):
        stdout, stderr = proc.communicate(timeout=timeout)
        OUTPUTS.append(("stdout", stdout))
        OUTPUTS.append(("stderr", stderr))
        results = []
        if result_file.exists():
            text = result_file.read_text()
            OUTPUTS.append(("results", text))
            results = [json.loads(line) for line in text.splitlines() if line.strip()]
        return Run(proc, results, stdout, stderr)

    def run(self, tasks=None, env=None, check=False, diff=False, playbook=None, inventory=None, extra_args=(), timeout=180):
        proc, result_file = self.start(tasks, env, check, diff, playbook, inventory, extra_args)
        return self.finish(proc, result_file, timeout)

    @staticmethod
    def kill(proc):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def crash(self, proc, results, pending):
        """Kill the module that holds a rotation (its pid is in the intent's holder), then the playbook.

        Ansible starts the module in a session of its own, so killing the playbook alone leaves it running.
        """
        pid = int(pending["holder"].rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        self.kill(proc)
        self.finish(proc, results)
        wait_for(lambda: not process_alive(pid), "the module process to die")


def wait_for(predicate, what="condition", timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"   # a zombie is dead
    except OSError:
        return False


@pytest.fixture
def runner(tmp_path):
    return Runner(tmp_path)


def das_task(das, store, state="present", env_token=True, **options):
    """A das_token task: the simulator's URL, the store, and the given options."""
    args = {"url": das.url, "state": state, "store": dict(store.options)}
    args.update(options)
    return {"name": "das_token", "tokenops.rotation.das_token": args, "register": "r", "ignore_errors": True}


def das_env(das, store, admin=True):
    env = dict(store.env)
    if admin:
        env["STYRA_DAS_TOKEN"] = das.admin
    return env


# ------------------------------------------------------------------ modules run as Ansible runs them, without a playbook

class ModuleProcess:
    """A module of the installed collection run the way Ansible runs it on a host (`python module.py args.json`).

    Costs a fraction of an ansible-playbook run, so tests that need many runs at once (concurrency) can afford them.
    """

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.count = 0

    def start(self, module, args, env=None):
        self.count += 1
        args_file = self.tmp_path / ("module-args-%d.json" % self.count)
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        path = Path(collections_path()) / "ansible_collections" / "tokenops" / "rotation" / "plugins" / "modules" / (module + ".py")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "STYRA_", "ANSIBLE_", "TSS_"))}
        full_env["PYTHONPATH"] = collections_path()
        full_env.update(env or {})
        return subprocess.Popen([sys.executable, str(path), str(args_file)], env=full_env, cwd=str(self.tmp_path),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    @staticmethod
    def finish(proc, timeout=300):
        stdout, stderr = proc.communicate(timeout=timeout)
        OUTPUTS.append(("module stdout", stdout))
        OUTPUTS.append(("module stderr", stderr))
        try:
            return json.loads(stdout)
        except ValueError:
            raise AssertionError("the module printed no JSON result (rc %s): %s %s" % (proc.returncode, stdout[-2000:], stderr[-2000:]))


@pytest.fixture
def modules(tmp_path):
    return ModuleProcess(tmp_path)


# ------------------------------------------------------------------ the session-wide leak scan

def assert_no_leaks(first_output, canaries, store):
    """None of `canaries`, nor the store's own credential, in any output since OUTPUTS[first_output].

    Every entry file of the file store must be ansible-vault encrypted, with no canary in it either.
    """
    canaries = set(canaries)
    if store.backend == "vault":
        canaries.add(store.bao.token)
    else:
        canaries.add(store.password_file.read_text().strip())
        entry_files = [Path(root) / name for root, _dirs, files in os.walk(store.file_path) for name in files
                       if name.endswith(".vault")]
        assert entry_files
        for entry_file in entry_files:
            on_disk = entry_file.read_text()
            assert on_disk.startswith("$ANSIBLE_VAULT;1.1;AES256")
            assert not [c[:6] for c in canaries if c in on_disk]
    outputs = [(where, text) for where, text in OUTPUTS[first_output:] if isinstance(text, str)]
    assert sum(len(text) for _where, text in outputs) > 100000     # -vvvv output really was searched
    leaks = [(where, c[:6]) for c in canaries for where, text in outputs if c in text]
    assert not leaks, leaks


def scan_for_canaries():
    """Every place a secret was seen: [(where, secret prefix)]."""
    texts = []
    for where, value in OUTPUTS:
        if where == "openbao log":
            try:
                value = Path(value).read_text(errors="replace")
            except OSError:
                continue
        texts.append((where, value))
    found = []
    for secret in CANARIES:
        for where, text in texts:
            if secret and secret in text:
                found.append((where, secret[:6] + "..."))
    return found


@pytest.fixture(scope="session", autouse=True)
def no_secret_leaked_in_this_session():
    """After the last test of the session (of each worker, with pytest-xdist): no issued secret in any output.

    An error in this teardown fails the run wherever it happens, unlike an exit status set by a worker.
    """
    yield
    leaks = scan_for_canaries()
    if leaks:
        sys.stderr.write("\nSECRET LEAK: issued secrets found in output: %s\n" % leaks[:10])
        pytest.fail("SECRET LEAK: issued secrets found in output: %s" % leaks[:10], pytrace=False)
