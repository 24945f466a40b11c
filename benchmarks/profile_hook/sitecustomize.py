"""Instrumentation of a module run for benchmarks/fleet.py; loaded through PYTHONPATH, never by the collection.

When TOKENOPS_BENCH_PROFILE names a file, the Python that runs the module records, and appends to
that file as one JSON line when it exits:

  - timestamps: interpreter start, AnsibleModule ready, the token work begun and done,
    exit_json/fail_json begun, the process's end;
  - per component, the number of calls, their summed wall time (over all threads) and the CPU time
    the calling threads spent inside them: store operations, key derivations of the file store,
    HTTP requests of the product client, AnsibleModule.exit_json (result masking and output);
  - the process's CPU time (user + system), a module's with that of the helper processes it waited for.

It patches classes when their module is imported (a meta path finder wraps the loader), so the
collection itself carries no benchmark code.
"""

import atexit
import functools
import importlib.abc
import json
import os
import resource
import sys
import threading
import time

_OUT = os.environ.get("TOKENOPS_BENCH_PROFILE")
_PREFIX = "ansible_collections.tokenops.rotation.plugins.module_utils."

STATS = {}
MARKS = {"start": time.time()}
_LOCK = threading.Lock()


def _timed(name, func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return func(*args, **kwargs)
        finally:
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            with _LOCK:
                entry = STATS.setdefault(name, [0, 0.0, 0.0])
                entry[0] += 1
                entry[1] += wall
                entry[2] += cpu
    return wrapper


def _marked(mark, func, at_end=False):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if not at_end:
            MARKS.setdefault(mark, time.time())
        try:
            return func(*args, **kwargs)
        finally:
            if at_end:
                MARKS[mark] = time.time()
    return wrapper


def _patch(name, module):
    if name == _PREFIX + "store_file":
        cls = module.FileStore
        for op in ("read", "write", "delete", "list"):
            setattr(cls, op, _timed("store %s" % op, getattr(cls, op)))
        module._derive = _timed("file store key derivation", module._derive)
        module.FileStore._write_file = _timed("file store durable write (fsync, rename)", module.FileStore._write_file)
    elif name == _PREFIX + "store_vault":
        cls = module.VaultStore
        for op in ("read", "write", "delete", "list"):
            setattr(cls, op, _timed("store %s" % op, getattr(cls, op)))
    elif name == _PREFIX + "http_client":
        module.HttpClient.request = _timed("product HTTP request", module.HttpClient.request)
    elif name == _PREFIX + "module":
        cls = module.TokenModule
        cls.run = _marked("token work begun", cls.run)
        cls.exit = _marked("token work done", cls.exit)
    elif name == "ansible.module_utils.basic":
        cls = module.AnsibleModule
        cls.__init__ = _marked("AnsibleModule ready", cls.__init__, at_end=True)
        cls.exit_json = _marked("exit_json begun", _timed("AnsibleModule.exit_json/fail_json", cls.exit_json))
        cls.fail_json = _marked("exit_json begun", _timed("AnsibleModule.exit_json/fail_json", cls.fail_json))
        cls.warn = _timed("AnsibleModule.warn", cls.warn)


class _Loader(importlib.abc.Loader):
    def __init__(self, name, inner):
        self.name = name
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        _patch(self.name, module)

    def __getattr__(self, attr):   # get_data, get_filename, is_package ... of the real loader
        return getattr(self.inner, attr)


class _Finder(importlib.abc.MetaPathFinder):
    WANTED = {_PREFIX + "store_file", _PREFIX + "store_vault", _PREFIX + "http_client", _PREFIX + "module",
              "ansible.module_utils.basic"}

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.WANTED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(fullname, spec.loader)
                return spec
        return None


def _dump():
    MARKS["end"] = time.time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    if "AnsibleModule ready" in MARKS:
        # A module's with the helpers it waited for: the file store derives its keys in one (store_file.KeyFactory).
        # (Not ansible-playbook's: its children are the job's workers.)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu += children.ru_utime + children.ru_stime
    record = {"argv0": os.path.basename(sys.argv[0]) if sys.argv else "", "pid": os.getpid(), "marks": MARKS,
              "stats": STATS, "cpu": cpu}
    with open(_OUT, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _cprofile(path):
    """TOKENOPS_BENCH_CPROFILE=path: cProfile every thread of the module process, merged into path.pid (pstats)."""
    import cProfile
    import pstats
    profiles = []

    def start():
        profile = cProfile.Profile(time.thread_time)   # CPU: wall inside a call is mostly waiting for the GIL
        with _LOCK:
            profiles.append(profile)
        profile.enable()
        return profile

    run = threading.Thread.run

    def profiled_run(self):
        profile = start()
        try:
            run(self)
        finally:
            profile.disable()

    def dump():
        main.disable()
        stats = None
        for profile in profiles:
            try:
                stats = pstats.Stats(profile) if stats is None else stats.add(profile)
            except TypeError:   # a profile that saw no call
                continue
        if stats is not None:
            stats.dump_stats("%s.%d" % (path, os.getpid()))

    threading.Thread.run = profiled_run
    main = start()
    atexit.register(dump)


if _OUT:
    sys.meta_path.insert(0, _Finder())
    atexit.register(_dump)
    if os.environ.get("TOKENOPS_BENCH_CPROFILE") and "AnsiballZ" in (sys.argv[0] if sys.argv else ""):
        _cprofile(os.environ["TOKENOPS_BENCH_CPROFILE"])
