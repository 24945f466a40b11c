"""Fleet-scale rotation: one task with a token list against the alternatives, side by side in one run.

    .venv/bin/python benchmarks/fleet_rotation.py [--tokens 40] [--store file|vault]

Against the DAS simulator, it creates N tokens and then rotates all of them (state: rotated) four ways:

  list-c8    one das_token task with `tokens:` and concurrency 8 (the design's way)
  list-c1    the same task with concurrency 1
  loop       one das_token task per token (`loop:`), as a playbook without list support would do
  raw-uri    one ansible.builtin.uri PUT per token, no store, no intent, no verification: the floor

and prints wall time per phase and ratios to list-c8. The numbers are ratios measured in one run on
one machine; absolute seconds mean nothing elsewhere. It is not part of `make test`.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / ".build" / "collections")]

from tests.simulators.das import DasSimulator  # noqa: E402  (after the path set-up)
from tests.fixtures.openbao import OpenBaoServer  # noqa: E402

BIN = Path(sys.executable).parent
APP = {"description": "bench", "allow_path_patterns": ["^/v1/data/.*"], "ttl": "24h"}


def run(playbook, env, workdir):
    path = workdir / ("pb-%d.yml" % time.monotonic_ns())
    path.write_text(yaml.safe_dump(playbook, sort_keys=False))
    started = time.monotonic()
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(path)], env=env,
                          capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit("benchmark playbook failed:\n%s" % proc.stdout[-3000:])
    return elapsed


def play(tasks):
    return [{"name": "bench", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--store", choices=["file", "vault"], default="file")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds the simulator waits before every answer, like a remote tenant")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tokenops-bench-"))
    sim = DasSimulator()
    url = sim.start()
    admin = sim.seed_token("admin", roles=[("WorkspaceAdministrator", "workspace", "*")])
    if args.latency:
        sim.faults.add("*", r".*", "latency", times=None, delay=args.latency)
    bao = None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "STYRA_"))}
    env.update(STYRA_DAS_TOKEN=admin, ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_COLLECTIONS_PATH=os.environ.get("TOKENOPS_COLLECTIONS_PATH", str(REPO / ".build" / "collections")))
    if args.store == "vault":
        bao = OpenBaoServer()
        bao.start()
        store = {"backend": "vault"}
        env.update(VAULT_ADDR=bao.url, VAULT_TOKEN=bao.root_token)
    else:
        (workdir / "pass").write_text("bench\n")
        store = {"backend": "file", "file_path": str(workdir / "store.vault"), "vault_password_file": str(workdir / "pass")}
    ids = ["bench-%03d" % i for i in range(args.tokens)]
    try:
        base = dict(url=url, store=store, **APP)
        create = dict(base, tokens=ids, concurrency=8)
        results = {"create (list-c8)": run(play([{"tokenops.rotation.das_token": create}]), env, workdir)}
        phases = {
            "list-c8": [{"tokenops.rotation.das_token": dict(base, tokens=ids, state="rotated", concurrency=8)}],
            "list-c1": [{"tokenops.rotation.das_token": dict(base, tokens=ids, state="rotated", concurrency=1)}],
            "loop": [{"tokenops.rotation.das_token": dict(base, id="{{ item }}", state="rotated"), "loop": ids}],
            "raw-uri": [{"ansible.builtin.uri": {"url": url + "/v1/tokens/{{ item }}", "method": "PUT", "body_format": "json",
                                                 "body": dict(APP, regenerate=True),
                                                 "headers": {"Authorization": "Bearer {{ lookup('ansible.builtin.env', 'STYRA_DAS_TOKEN') }}"}},
                         "loop": ids, "no_log": True}],
        }
        for name, tasks in phases.items():
            if name == "raw-uri":
                # Before the raw PUTs kill the stored secrets (the module would then rightly rotate them all).
                sim.reset_counts()
                nothing_due = dict(base, tokens=ids, concurrency=8)
                results["nothing due (list-c8)"] = run(play([{"tokenops.rotation.das_token": nothing_due}]), env, workdir)
                writes = sim.count(writes_only=True)
            results[name] = run(play(tasks), env, workdir)
    finally:
        sim.stop()
        if bao:
            bao.stop()
    reference = results["list-c8"]
    print("%d tokens, %s store, %.0f ms simulated latency, %d cores" % (args.tokens, args.store, args.latency * 1000, os.cpu_count()))
    print("%-24s %9s %14s" % ("phase", "seconds", "x list-c8"))
    for name, seconds in results.items():
        print("%-24s %9.2f %14.2f" % (name, seconds, seconds / reference))
    print("writes to DAS in the nothing-due run: %d" % writes)


if __name__ == "__main__":
    main()
