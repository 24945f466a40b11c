"""Back-pressure benchmark: the adaptive per-endpoint limit against a fixed concurrency, side by side in one run.

    .venv/bin/python benchmarks/backpressure.py [--tokens 300] [--rate 60] [--repeat 2] [--scenarios healthy,rate-limited]
                                                [--baseline-ref REF] [--no-write]

One das_token task rotates --tokens tokens (state: rotated, concurrency 16) against the DAS simulator and a real
OpenBao dev server, with three builds of the collection:

  before     the code at --baseline-ref (fixed concurrency, no 429 handling: what this branch started from);
  fixed      this work tree with TOKENOPS_BACKPRESSURE=fixed (its limit stays at the ceiling; 429s are still
             waited out);
  adaptive   this work tree as shipped (the limit adapts per endpoint).

Twice: on a healthy store, and with a `sys/quotas/rate-limit` quota of --rate requests a second on the store's mount.
Each build rotates its own tokens (created first, without the quota). The table shows the median seconds of --repeat
runs (the task's own time, between timestamps the play takes around it), how many tokens failed, and the
adaptive/before and adaptive/fixed ratios. Results go to benchmarks/RESULTS.md (section "Back-pressure"), unless
--no-write. Not part of `make test`.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / ".build" / "collections")]

import tests.conftest  # noqa: E402,F401  pylint: disable=unused-import
from tests.fixtures.openbao import OpenBaoServer  # noqa: E402
from tests.simulators.das import DasSimulator  # noqa: E402

BIN = Path(sys.executable).parent
MOUNT = "bench"
APP = {"allow_path_patterns": ["^/v1/data/.*"], "ttl": "720h"}
SECTION = "## Back-pressure (benchmarks/backpressure.py)"


def log(text):
    sys.stderr.write("[backpressure %s] %s\n" % (time.strftime("%H:%M:%S"), text))
    sys.stderr.flush()


def baseline_collections(ref, work):
    """The collection at `ref` (git archive), importable through a dev link, as the tests use the work tree."""
    tree = work / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    link = tree / ".build" / "collections" / "ansible_collections" / "tokenops"
    link.mkdir(parents=True)
    (link / "rotation").symlink_to("../../../..")
    return str(tree / ".build" / "collections")


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="tokenops-backpressure-"))
        self.bao = OpenBaoServer()
        self.bao.start()
        self.bao.enable_kv2(MOUNT)
        self.sim = DasSimulator()
        self.url = self.sim.start()
        self.admin = self.sim.seed_token("bench-admin", roles=[("WorkspaceAdministrator", "workspace", "*")])
        if args.latency:
            self.sim.faults.add("*", r".*", "latency", times=None, delay=args.latency)
        self.builds = {"before": baseline_collections(args.baseline_ref, self.work),
                       "fixed": str(REPO / ".build" / "collections"),
                       "adaptive": str(REPO / ".build" / "collections")}
        self.count = 0

    def close(self):
        self.sim.stop()
        self.bao.stop()

    def env(self, build):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "STYRA_", "ANSIBLE_", "TOKENOPS_"))}
        env.update(STYRA_DAS_TOKEN=self.admin, VAULT_ADDR=self.bao.url, VAULT_TOKEN=self.bao.root_token,
                   ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCAL_TEMP=str(self.work / "ansible-tmp"),
                   ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_PATH=self.builds[build],
                   TOKENOPS_BACKPRESSURE_DIR=str(self.work / ("limits-%d" % self.count)))
        if build == "fixed":
            env["TOKENOPS_BACKPRESSURE"] = "fixed"
        return env

    def rotate(self, build, prefix, ids, state):
        """One das_token task over the tokens; (seconds, {action: count}, back-pressure figures)."""
        self.count += 1
        out = self.work / ("result-%d.json" % self.count)
        task = {"tokenops.rotation.das_token": {"url": self.url, "state": state, "concurrency": 16,
                                                "store": {"backend": "vault", "prefix": prefix, "mount_point": MOUNT, "timeout": 10},
                                                "tokens": [dict(APP, id=i) for i in ids]},
                "register": "r", "ignore_errors": True}
        # The task's own time, between two timestamps taken by the play (not ansible-playbook's start-up).
        before = {"ansible.builtin.set_fact": {"bench_t0": "{{ now(utc=true).timestamp() }}"}}
        keep = {"ansible.builtin.copy": {"content": "{{ {'r': r, 't0': bench_t0, 't1': now(utc=true).timestamp()} | to_json }}",
                                         "dest": str(out), "mode": "0600"}}
        path = self.work / ("playbook-%d.yml" % self.count)
        path.write_text(yaml.safe_dump([{"name": "bench", "hosts": "localhost", "gather_facts": False, "tasks": [before, task, keep]}]))
        proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(path)],
                              env=self.env(build), capture_output=True, text=True, check=False)
        if not out.exists():
            sys.exit("benchmark playbook %s failed:\n%s\n%s" % (path, proc.stdout[-4000:], proc.stderr[-2000:]))
        document = json.loads(out.read_text())
        result = document["r"]
        seconds = float(document["t1"]) - float(document["t0"])
        actions = {}
        for item in result.get("results") or []:
            actions[item.get("action", "failed")] = actions.get(item.get("action", "failed"), 0) + 1
        return seconds, actions, (result.get("backpressure") or {}).get(self.bao.url, {})

    def quota(self, on):
        if on:
            self.bao.api("POST", "sys/quotas/rate-limit/bench", json={"path": MOUNT + "/", "rate": self.args.rate, "interval": "1s"})
        else:
            self.bao.api("DELETE", "sys/quotas/rate-limit/bench")

    def run(self):
        rows = []
        n = self.args.tokens
        for limited in [name == "rate-limited" for name in self.args.scenarios.split(",")]:
            times = {build: [] for build in self.builds}
            outcome = {}
            for repeat in range(self.args.repeat):
                for build in self.builds:
                    # Each build its own tokens, made without the quota (their DAS ids differ by prefix too). On the healthy
                    # store a build rotates the same tokens again in each repeat; under the quota, where `before` leaves
                    # failed tokens behind, every repeat starts from new ones.
                    prefix = "b%d-%s-%d-%d" % (os.getpid(), build, int(limited), repeat if limited else 0)
                    ids = ["%s-t%04d" % (prefix, i) for i in range(n)]
                    self.quota(False)
                    if limited or repeat == 0:
                        _s, made, _f = self.rotate("adaptive", prefix, ids, "present")
                        assert made == {"created": n}, made
                    self.quota(limited)
                    seconds, actions, figures = self.rotate(build, prefix, ids, "rotated")
                    self.quota(False)
                    times[build].append(seconds)
                    outcome.setdefault(build, []).append((actions, figures))
                    log("%s store, %s: %.1f s %s %s" % ("rate-limited" if limited else "healthy", build, seconds, actions,
                                                        {k: figures.get(k) for k in ("throttled", "retries", "lowest_concurrency")}))
            rows.append((limited, times, outcome))
        return rows


def table(args, rows):
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0, 0, 0)
    lines = [SECTION, "",
             "%d tokens rotated (`state: rotated`, concurrency 16) by one das_token task; DAS simulator (%g s latency), OpenBao "
             "dev server, store timeout 10 s; rate-limited: a `sys/quotas/rate-limit` quota of %d requests/s on the store's "
             "mount. Median of %d runs each, builds alternating. %d cores, load average %.1f %.1f %.1f (`%s`)." % (
                 args.tokens, args.latency, args.rate, args.repeat, os.cpu_count() or 0, load[0], load[1], load[2],
                 platform.python_version()), "",
             "| store | build | seconds (median) | tokens failed (each run) | store 429s | store retries | lowest concurrency |",
             "|---|---|---|---|---|---|---|"]
    for limited, times, outcome in rows:
        for build in times:
            failed = [sum(c for a, c in actions.items() if a != "rotated") for actions, _f in outcome[build]]
            figures = outcome[build][-1][1]
            lines.append("| %s | %s | %.1f | %s | %s | %s | %s |" % (
                "rate-limited" if limited else "healthy", build, statistics.median(times[build]), ", ".join(map(str, failed)),
                figures.get("throttled", "-"), figures.get("retries", "-"), figures.get("lowest_concurrency", "-")))
        # The median of each repeat's own ratio as well: on a shared machine the load drifts between repeats more than
        # between the builds of one repeat.
        paired = statistics.median(a / b for a, b in zip(times["adaptive"], times["before"]))
        paired_fixed = statistics.median(a / f for a, f in zip(times["adaptive"], times["fixed"]))
        lines.append("| %s | adaptive / before, adaptive / fixed (ratio of medians; median of each repeat's ratio) | "
                     "%.2fx, %.2fx; %.2fx, %.2fx | | | | |" % (
                         "rate-limited" if limited else "healthy",
                         statistics.median(times["adaptive"]) / statistics.median(times["before"]),
                         statistics.median(times["adaptive"]) / statistics.median(times["fixed"]), paired, paired_fixed))
    lines.append("")
    lines.append("`before`: the code at `%s` (fixed concurrency, a 429 from the store fails the token); `fixed`: this branch with "
                 "`TOKENOPS_BACKPRESSURE=fixed` (limit held at its ceiling, 429s still waited out); `adaptive`: this branch. "
                 "A token that is not `rotated` failed (or backed off)." % args.baseline_ref)
    return "\n".join(lines) + "\n"


def write_results(text):
    path = REPO / "benchmarks" / "RESULTS.md"
    current = path.read_text() if path.exists() else ""
    if SECTION in current:
        head, _sep, rest = current.partition(SECTION)
        tail = rest.split("\n## ", 1)
        current = head + ("## " + tail[1] if len(tail) > 1 else "")
    path.write_text(current.rstrip("\n") + "\n\n" + text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--rate", type=int, default=60, help="the quota, requests per second on the store's mount")
    parser.add_argument("--latency", type=float, default=0.02, help="DAS simulator answer delay, seconds")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--scenarios", default="healthy,rate-limited", help="healthy, rate-limited or both (comma-separated)")
    parser.add_argument("--baseline-ref", default=None, help="git ref of the `before` build (default: where this branch left main)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not args.baseline_ref:
        args.baseline_ref = subprocess.run(["git", "-C", str(REPO), "merge-base", "HEAD", "main"], capture_output=True, text=True,
                                           check=True).stdout.strip()[:12]
    bench = Bench(args)
    try:
        rows = bench.run()
    finally:
        bench.close()
    text = table(args, rows)
    sys.stdout.write(text)
    if not args.no_write:
        write_results(text)


if __name__ == "__main__":
    main()
