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
from ansible.module_utils.json_utils import _filter_non_json_lines

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

    @property
    def output(self):
        """Everything the run printed: where a traceback would show."""
        return self.stdout + self.stderr

    def __repr__(self):
        return "<Run rc=%s>\n%s\n%s" % (self.rc, self.stdout[-4000:], self.stderr[-2000:])


class DirectRun(Run):
    """Tasks whose modules ran the way Ansible runs them on a host, without ansible-playbook (see Runner.run).

    Only the modules' results exist: reading Ansible's output fails the test, saying how to get it.
    """

    def __init__(self, rc, results, module_output):   # pylint: disable=super-init-not-called
        self.rc = rc
        self.results = results
        self.module_output = module_output

    @property
    def output(self):
        return self.module_output

    @property
    def stdout(self):
        raise AssertionError("this run did not go through ansible-playbook: mark the test @pytest.mark.playbook to read Ansible's output")

    stderr = stdout

    def __repr__(self):
        return "<DirectRun rc=%s>\n%s" % (self.rc, json.dumps(self.results, default=str)[-6000:])


class DirectTask:
    """What finish() needs of a module task started directly."""

    def __init__(self, task):
        self.task = task


def plain_module_tasks(tasks):
    """Tasks that are only this collection's modules with literal arguments (and environment): no templating, loops,
    conditions or roles."""
    if not tasks:
        return False
    for task in tasks:
        modules = [key for key in task if key.startswith("tokenops.rotation.")]
        if len(modules) != 1 or set(task) - set(modules) - {"name", "register", "ignore_errors", "no_log", "environment"}:
            return False
        if "{{" in json.dumps(task, default=str):
            return False
    return True


class Runner:
    """Runs tasks through ansible-playbook at -vvvv, or, for plain module tasks, runs the modules directly.

    A module runs as Ansible runs it on a host (`python module.py args.json`, see ModuleProcess) with the arguments
    Ansible adds for --check, --diff and -vvvv, and its result is judged as Ansible judges it. That costs a fraction
    of an ansible-playbook start, which is what most of the suite's time went to. Tests about what Ansible itself does
    (its output, roles, lookups, templating, the -vvvv leak scans) are marked `playbook` and always go through
    ansible-playbook; TOKENOPS_TEST_VIA=ansible-playbook sends every run through it.
    """

    def __init__(self, tmp_path, direct=False):
        self.tmp_path = tmp_path
        self.count = 0
        self.direct = direct
        self.modules = ModuleProcess(tmp_path)

    def env(self, extra=None):
        # Nothing of the test process's Vault, DAS or Ansible settings, but its own HOME and Ansible folders.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("VAULT_", "STYRA_", "ANSIBLE_")) or k in ("ANSIBLE_HOME", "ANSIBLE_REMOTE_TEMP")}
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

    def goes_direct(self, tasks, playbook=None, inventory=None, extra_args=()):
        return self.direct and playbook is None and inventory is None and not extra_args and plain_module_tasks(tasks)

    def start(self, tasks=None, env=None, check=False, diff=False, playbook=None, inventory=None, extra_args=()):
        """Start ansible-playbook (or one plain module task) in its own process group; returns (proc, handle) for finish()."""
        if self.goes_direct(tasks, playbook, inventory, extra_args) and len(tasks) == 1:
            return self.start_module(tasks[0], env, check, diff), DirectTask(tasks[0])
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
        if isinstance(result_file, DirectTask):
            printed = []
            result = self.judge_module(result_file.task, proc, timeout, printed)
            return DirectRun(2 if result["failed"] and not result_file.task.get("ignore_errors") else 0, [result], "\n".join(printed))
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
        if self.goes_direct(tasks, playbook, inventory, extra_args):
            return self.run_modules(tasks, env, check, diff, timeout)
        proc, result_file = self.start(tasks, env, check, diff, playbook, inventory, extra_args)
        return self.finish(proc, result_file, timeout)

    def start_module(self, task, env, check, diff):
        """The task's module as Ansible starts it on a host, with the arguments Ansible adds and its environment."""
        fqcn = next(key for key in task if key.startswith("tokenops.rotation."))
        args = dict(task[fqcn] or {})
        args.update({"_ansible_check_mode": check, "_ansible_diff": diff, "_ansible_verbosity": 4,
                     "_ansible_no_log": bool(task.get("no_log")), "_ansible_module_name": fqcn})
        module_env = self.env(env)
        module_env["PYTHONPATH"] = collections_path()
        module_env.update({name: str(value) for name, value in (task.get("environment") or {}).items()})
        return self.modules.start(fqcn.rsplit(".", 1)[1], args, env=module_env, inherit=False)

    def judge_module(self, task, proc, timeout, printed):
        """The module's result as the result_file callback records it."""
        result = self.modules.judge(proc, timeout, printed)
        result["_task"] = task.get("name") or next(key for key in task if key.startswith("tokenops.rotation."))
        result["_host"] = "localhost"   # the harness's plays run on localhost
        result["failed"] = bool(result.get("failed"))
        result["_status"] = "failed" if result["failed"] else ("skipped" if result.get("skipped") else "ok")
        OUTPUTS.append(("results", json.dumps(result, default=str)))
        return result

    def run_modules(self, tasks, env, check, diff, timeout):
        """The tasks' modules one after another, stopping at a failure that is not ignored, as a play does (rc 2)."""
        results = []
        printed = []
        rc = 0
        for task in tasks:
            result = self.judge_module(task, self.start_module(task, env, check, diff), timeout, printed)
            results.append(result)
            if result["failed"] and not task.get("ignore_errors"):
                rc = 2
                break
        return DirectRun(rc, results, "\n".join(printed))

    @staticmethod
    def kill(proc):
        with contextlib.suppress(ProcessLookupError):     # a module run directly may already be dead
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
def runner(request, tmp_path):
    direct = not request.node.get_closest_marker("playbook") and os.environ.get("TOKENOPS_TEST_VIA") != "ansible-playbook"
    return Runner(tmp_path, direct=direct)


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

class ForkedModule:
    """The part of Popen the tests use (pid, returncode, poll, wait, communicate), for a module forked by ModuleProcess."""

    def __init__(self, process, out_path, err_path):
        self.process = process
        self.pid = process.pid
        self.out_path = out_path
        self.err_path = err_path
        self.returncode = None

    def poll(self):
        if self.returncode is None and self.process.exitcode is not None:
            self.returncode = self.process.exitcode    # negative for a signal, as Popen says it
            self.process.close()
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            self.process.join(timeout)
            if self.poll() is None:
                raise subprocess.TimeoutExpired("module process %d" % self.pid, timeout)
        return self.returncode

    def communicate(self, timeout=None):
        self.wait(timeout)
        return (self.out_path.read_text(errors="replace") if self.out_path.exists() else "",
                self.err_path.read_text(errors="replace") if self.err_path.exists() else "")


_FORKSERVER = []


def module_forkserver():
    """multiprocessing's forkserver, started with the installed collection on its path and every module's imports done.

    Started once per test process. Returns (context, the child's function, the modules' sys.path): the work tree's
    own copy of the collection, first on this process's path for the unit tests, stays out of the modules' path.
    """
    if not _FORKSERVER:
        import multiprocessing
        from multiprocessing import forkserver

        import module_runner

        here = str(Path(__file__).resolve().parent)
        first = [collections_path(), here]
        left_out = set(first) | {"", str(REPO), str(REPO / ".build" / "collections")}
        modules_path = first + [p for p in sys.path if p not in left_out]
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["module_runner"] + module_runner.PRELOAD)
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(first)    # the server's own path, for its preloading
        try:
            forkserver.ensure_running()
        finally:
            if saved is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = saved
        _FORKSERVER.append((context, module_runner.run, modules_path))
    return _FORKSERVER[0]


class ModuleProcess:
    """A module of the installed collection run the way Ansible runs it on a host (`python module.py args.json`).

    Forked from a server that already imported what every module imports (tests/integration/module_runner.py): a run
    costs a fraction of an ansible-playbook start, so tests can afford many. TOKENOPS_TEST_MODULE_START=exec starts a
    new interpreter for each run instead, exactly as Ansible does.
    """

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.count = 0

    def start(self, module, args, env=None, inherit=True):
        """`inherit=False`: `env` is the whole environment (the Runner's, as ansible-playbook would pass it on)."""
        self.count += 1
        args_file = self.tmp_path / ("module-args-%d.json" % self.count)
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        path = Path(collections_path()) / "ansible_collections" / "tokenops" / "rotation" / "plugins" / "modules" / (module + ".py")
        full_env = {}
        if inherit:
            full_env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "STYRA_", "ANSIBLE_", "TSS_"))}
            full_env["PYTHONPATH"] = collections_path()
        full_env.update(env or {})
        if os.environ.get("TOKENOPS_TEST_MODULE_START") == "exec":
            return subprocess.Popen([sys.executable, str(path), str(args_file)], env=full_env, cwd=str(self.tmp_path),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        context, run, modules_path = module_forkserver()
        out_path = self.tmp_path / ("module-out-%d.txt" % self.count)
        err_path = self.tmp_path / ("module-err-%d.txt" % self.count)
        child_args = (str(path), str(args_file), full_env, str(self.tmp_path), str(out_path), str(err_path), modules_path)
        process = context.Process(target=run, args=child_args, daemon=True)
        process.start()
        return ForkedModule(process, out_path, err_path)

    @staticmethod
    def finish(proc, timeout=300):
        stdout, stderr = proc.communicate(timeout=timeout)
        OUTPUTS.append(("module stdout", stdout))
        OUTPUTS.append(("module stderr", stderr))
        try:
            return json.loads(stdout)
        except ValueError:
            raise AssertionError("the module printed no JSON result (rc %s): %s %s" % (proc.returncode, stdout[-2000:], stderr[-2000:]))

    @staticmethod
    def judge(proc, timeout=300, printed=None):
        """The module's result as Ansible would report it: output that is not a JSON result is a MODULE FAILURE."""
        stdout, stderr = proc.communicate(timeout=timeout)
        OUTPUTS.append(("module stdout", stdout))
        OUTPUTS.append(("module stderr", stderr))
        if printed is not None:
            printed.extend((stdout, stderr))
        try:
            filtered, _noise = _filter_non_json_lines(stdout, objects_only=True)    # as the controller reads it
            result = json.loads(filtered)
        except ValueError:
            return {"failed": True, "msg": "MODULE FAILURE", "rc": proc.returncode, "module_stdout": stdout, "module_stderr": stderr}
        if not isinstance(result, dict):
            return {"failed": True, "msg": "MODULE FAILURE: not a JSON object", "module_stdout": stdout}
        if proc.returncode and not result.get("failed"):
            result["failed"] = True
        result.setdefault("changed", False)         # Ansible's task result always says
        for key in ("warnings", "deprecations"):   # a module sends summaries; the result Ansible hands on has their text
            if isinstance(result.get(key), list):
                result[key] = [_message_text(item) for item in result[key]]
        return result


def _message_text(item):
    if not isinstance(item, dict):
        return item
    return (item.get("event") or item).get("msg")


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
    assert sum(len(text) for _where, text in outputs) > 50000      # -vvvv output really was searched
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
