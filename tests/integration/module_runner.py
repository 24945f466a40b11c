"""The child side of a module run forked from a preloaded server (see conftest.ModuleProcess).

Ansible starts a new interpreter for every module, and 0.4 s of its CPU goes to importing what every module
imports (Ansible's module_utils, requests, cryptography, the collection's module_utils). The tests fork each
module from a server that imported them once (multiprocessing's forkserver), and `run` gives the module what a
new interpreter would have: a session of its own, its arguments file as argv[1], its whole environment, its working
directory, its stdout and stderr, its exit status. This file imports nothing else, so the server stays lean.
"""

import os
import runpy
import sys
import tempfile

# What every module of the collection imports; the forkserver imports them once.
PRELOAD = [
    "ansible.module_utils.basic",
    "requests",
    "cryptography.hazmat.primitives.ciphers",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "ansible_collections.tokenops.rotation.plugins.module_utils.module",
    "ansible_collections.tokenops.rotation.plugins.module_utils.driver",
    "ansible_collections.tokenops.rotation.plugins.module_utils.store",
    "ansible_collections.tokenops.rotation.plugins.module_utils.store_file",
    "ansible_collections.tokenops.rotation.plugins.module_utils.store_vault",
    "ansible_collections.tokenops.rotation.plugins.module_utils.http_signatures",
    "ansible_collections.tokenops.rotation.plugins.module_utils.report",
    "ansible_collections.tokenops.rotation.plugins.module_utils.das_rotation",
    "ansible_collections.tokenops.rotation.plugins.module_utils.dpa_rotation",
    "ansible_collections.tokenops.rotation.plugins.module_utils.secretserver_rotation",
    "ansible_collections.tokenops.rotation.plugins.module_utils.openpayments_rotation",
]


def run(path, args_file, env, cwd, out_path, err_path, sys_path):
    """Runs in the forked child: become the module's own process, then run the module as __main__.

    multiprocessing gives the child the parent's sys.path (pytest's, with the work tree's copy of the collection);
    the module gets `sys_path`, the installed collection first, which the server preloaded from.
    """
    sys.path[:] = sys_path
    preloaded = sys.modules.get(PRELOAD[4])
    if preloaded is None or not preloaded.__file__.startswith(sys_path[0]):
        raise RuntimeError("the module server did not preload the installed collection from %s: %s"
                           % (sys_path[0], preloaded and preloaded.__file__))
    os.setsid()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None   # the server's cached temp folder is not this run's TMPDIR
    for fd, name in ((1, out_path), (2, err_path)):
        handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(handle, fd)
        os.close(handle)
    sys.argv = [path, args_file]
    runpy.run_path(path, run_name="__main__")
