"""Fleet benchmark: where the time of a rotation over thousands of tokens goes, against what it must cost.

    .venv/bin/python benchmarks/fleet.py [--tokens 500,2000] [--latency 0.02] [--profile]
                                         [--sweep 4,8,16,32] [--no-write]

Against the DAS simulator (every answer delayed by --latency, 20 ms by default, like a remote tenant)
and a real OpenBao dev server (with its audit log), for every token count:

  (a) the collection: one das_token task with `tokens:` rotates every token (state: rotated), with
      the file store and with the Vault store (each store its own tokens; they are created first);
  (b) the floor: a minimal Python script that makes exactly the same HTTP calls per token (taken from
      the simulator's request log and OpenBao's audit log of run (a), and checked against them
      afterwards) with the same concurrency, and nothing else;
  (c) what people write today: per token an ansible.builtin.uri PUT regenerate and an
      ansible.builtin.uri KV write, timed on a sample (minus an empty playbook's start-up) and
      scaled to the token count;
  (d) a run with nothing due (state: present): DAS calls, store reads and store writes per token.

It prints a table and writes it to benchmarks/RESULTS.md (unless --no-write), with the core count.
--profile breaks run (a) down: Ansible before the module, module start-up, the token work (store,
key derivations, HTTP), the module's result handling (exit_json) and Ansible's after the module.
--sweep runs (a) at several concurrencies (at the smallest token count) to choose the default.

Ratios measured side by side in one run on one machine mean something; absolute seconds do not.
Not part of `make test`.
"""

import argparse
import collections
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / ".build" / "collections")]

# tests.conftest makes the .build/collections link to the work tree
import tests.conftest  # noqa: E402,F401  pylint: disable=unused-import
from ansible_collections.tokenops.rotation.plugins.module_utils.module import RUN_SPEC  # noqa: E402
from ansible_collections.tokenops.rotation.plugins.module_utils.store import normalize_host  # noqa: E402
from tests.fixtures.openbao import OpenBaoServer  # noqa: E402
from tests.simulators.das import DasSimulator  # noqa: E402

BIN = Path(sys.executable).parent
HOOK = Path(__file__).resolve().parent / "profile_hook"
APP = {"description": "fleet", "allow_path_patterns": ["^/v1/data/.*"], "ttl": "720h"}
DEFAULT_CONCURRENCY = RUN_SPEC["concurrency"]["default"]


def log(text):
    sys.stderr.write("[fleet %s] %s\n" % (time.strftime("%H:%M:%S"), text))
    sys.stderr.flush()


def epoch(rfc3339):
    """OpenBao's audit time (nanoseconds, Z) -> epoch seconds."""
    text = rfc3339.rstrip("Z")
    main, _dot, frac = text.partition(".")
    base = datetime.datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc).timestamp()
    return base + float("0." + (frac or "0"))


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="tokenops-fleet-"))
        self.bao = OpenBaoServer(audit=True)
        self.bao.start()
        self.sim = DasSimulator()
        self.url = self.sim.start()
        self.host = normalize_host(self.url)
        self.admin = self.sim.seed_token("fleet-admin", roles=[("WorkspaceAdministrator", "workspace", "*")])
        if args.latency:
            self.sim.faults.add("*", r".*", "latency", times=None, delay=args.latency)
        (self.work / "vault-pass").write_text("fleet-benchmark-password\n")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "STYRA_", "ANSIBLE_", "TOKENOPS_"))}
        self.env.update(STYRA_DAS_TOKEN=self.admin, VAULT_ADDR=self.bao.url, VAULT_TOKEN=self.bao.root_token,
                        ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCAL_TEMP=str(self.work / "ansible-tmp"),
                        ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_NOCOLOR="1",
                        ANSIBLE_COLLECTIONS_PATH=os.environ.get("TOKENOPS_COLLECTIONS_PATH", str(REPO / ".build" / "installed")))
        self.count = 0

    def close(self):
        self.sim.stop()
        self.bao.stop()

    # -- running things

    def store(self, kind, n):
        if kind == "vault":
            return {"backend": "vault", "prefix": "fleet-%d" % n}
        folder = self.work / ("file-%d" % n)
        folder.mkdir(exist_ok=True)
        return {"backend": "file", "prefix": "fleet-%d" % n, "file_path": str(folder / "store.vault"),
                "vault_password_file": str(self.work / "vault-pass")}

    def playbook(self, tasks, profile=False, extra_vars=None):
        """Run a playbook of tasks on localhost; (seconds, [profile records of the module processes])."""
        self.count += 1
        path = self.work / ("playbook-%d.yml" % self.count)
        path.write_text(yaml.safe_dump([{"name": "fleet", "hosts": "localhost", "gather_facts": False, "tasks": tasks}],
                                       sort_keys=False))
        env = dict(self.env)
        profile_file = self.work / ("profile-%d.jsonl" % self.count)
        if profile:
            env["PYTHONPATH"] = str(HOOK)
            env["TOKENOPS_BENCH_PROFILE"] = str(profile_file)
            if os.environ.get("TOKENOPS_BENCH_CPROFILE"):   # pstats of the module process (profile_hook)
                env["TOKENOPS_BENCH_CPROFILE"] = os.environ["TOKENOPS_BENCH_CPROFILE"]
        cmd = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(path)]
        for name, value in (extra_vars or {}).items():
            cmd += ["-e", json.dumps({name: value})]
        started = time.time()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        ended = time.time()
        if proc.returncode != 0:
            sys.exit("benchmark playbook %s failed:\n%s\n%s" % (path, proc.stdout[-4000:], proc.stderr[-2000:]))
        records = []
        if profile and profile_file.exists():
            records = [json.loads(line) for line in profile_file.read_text().splitlines() if line.strip()]
            records = [r for r in records if "AnsibleModule ready" in r["marks"]]
            for record in records:
                record["playbook"] = (started, ended)
        return ended - started, records

    def collection(self, kind, n, ids, state, concurrency=None, profile=False):
        args = dict(APP, url=self.url, store=self.store(kind, n), tokens=ids, state=state)
        if concurrency:
            args["concurrency"] = concurrency
        return self.playbook([{"name": "das_token", "tokenops.rotation.das_token": args}], profile=profile)

    # -- what a run sent

    def audit_offset(self):
        path = Path(self.bao.audit_path)
        return path.stat().st_size if path.exists() else 0

    def audit_requests(self, offset):
        """[(epoch, operation, path)] of the KV requests OpenBao logged after offset."""
        with open(self.bao.audit_path, "rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode("utf-8", "replace").splitlines()
        found = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("type") != "request":
                continue
            req = entry.get("request") or {}
            found.append((epoch(entry["time"]), req.get("operation"), req.get("path", "")))
        return found

    def das_requests(self, since):
        with self.sim._records_lock:
            return [(r.at, r.method, r.path) for r in self.sim.requests[since:]]

    def calls_per_token(self, ids, das, vault):
        """Per token, its calls in order: [("das", method, "/v1/tokens/{id}") | ("vault", operation, "{path}")]."""
        wanted = set(ids)
        per = collections.defaultdict(list)
        other = []
        for at, method, path in das:
            token = path[len("/v1/tokens/"):] if path.startswith("/v1/tokens/") else None
            if token in wanted:
                per[token].append((at, ("das", method, "/v1/tokens/{id}")))
            else:
                other.append(("das", method, path))
        for at, operation, path in vault:
            token = path.rsplit("/", 1)[-1]
            if token in wanted and path.startswith("secret/"):
                per[token].append((at, ("vault", operation, path.rsplit("/", 1)[0] + "/{id}")))
            else:
                other.append(("vault", operation, path))
        sequences = collections.Counter(tuple(call for _at, call in sorted(per[i])) for i in ids)
        return sequences, other

    # -- (b) the floor

    def floor(self, kind, n, template, concurrency):
        """The same HTTP calls per token as the collection made, with the same concurrency, and nothing else.

        It runs as a script of its own (this process also runs the simulator, whose threads would
        share its GIL), and reports its own wall time.
        """
        job = {"das_url": self.url, "bao_url": self.bao.url, "admin": self.admin, "bao_token": self.bao.root_token,
               "template": template, "ids": ["fleet-%s-%d-%05d" % (kind, n, i) for i in range(n)],
               "from_prefix": "fleet-%d/" % n, "to_prefix": "floor-%d/" % n, "concurrency": concurrency, "body": dict(APP, regenerate=True)}
        path = self.work / ("floor-%s-%d.json" % (kind, n))
        path.write_text(json.dumps(job))
        proc = subprocess.run([sys.executable, __file__, "--floor-job", str(path)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit("the floor failed:\n%s" % proc.stderr[-3000:])
        return float(proc.stdout.strip().splitlines()[-1])

    # -- (c) what people write today

    def uri_per_token(self, sample):
        ids = ["uri-%03d" % i for i in range(sample)]
        for token_id in ids:
            self.sim.seed_token(token_id, description="fleet", allow_path_patterns=APP["allow_path_patterns"])
        tasks = [
            {"name": "regenerate", "ansible.builtin.uri": {
                "url": "%s/v1/tokens/{{ item }}" % self.url, "method": "PUT", "body_format": "json",
                "body": dict(APP, regenerate=True),
                "headers": {"Authorization": "Bearer {{ lookup('ansible.builtin.env', 'STYRA_DAS_TOKEN') }}"}},
             "loop": ids, "register": "minted", "no_log": True},
            {"name": "store", "ansible.builtin.uri": {
                "url": "%s/v1/secret/data/uri/{{ item.item }}" % self.bao.url, "method": "POST", "body_format": "json",
                "body": {"data": {"secret": "{{ item.json.result }}"}},
                "headers": {"X-Vault-Token": "{{ lookup('ansible.builtin.env', 'VAULT_TOKEN') }}"}},
             "loop": "{{ minted.results }}", "no_log": True},
        ]
        empty = self.playbook([{"name": "nothing", "ansible.builtin.debug": {"msg": "start-up only"}}])[0]
        seconds = self.playbook(tasks)[0]
        return (seconds - empty) / sample, seconds, empty


def floor_job(path):
    """(b): a minimal script making the collection's HTTP calls per token; prints its wall time."""
    job = json.loads(Path(path).read_text())
    local = threading.local()
    das_headers = {"Authorization": "Bearer " + job["admin"]}
    vault_headers = {"X-Vault-Token": job["bao_token"]}

    def one(token_id):
        if getattr(local, "session", None) is None:
            local.session = requests.Session()
            local.session.trust_env = False
        s = local.session
        secret = None
        version = 0
        for where, method, path in job["template"]:
            if where == "das":
                url = job["das_url"] + path.replace("{id}", token_id)
                if method == "PUT":
                    response = s.put(url, json=job["body"], headers=das_headers, timeout=30)
                    secret = response.json().get("result")
                else:   # a GET after the mint probes the new secret, as the module's verify does
                    headers = {"Authorization": "Bearer " + secret} if secret else das_headers
                    response = s.request(method, url, headers=headers, timeout=30)
            else:
                url = "%s/v1/%s" % (job["bao_url"], path.replace(job["from_prefix"], job["to_prefix"], 1).replace("{id}", token_id))
                if method == "read":
                    response = s.get(url, headers=vault_headers, timeout=30)
                    version = response.json()["data"]["metadata"]["version"] if response.status_code == 200 else 0
                else:
                    record = {"secret": secret or "", "token_id": token_id, "fingerprint": "sha256:000000000000",
                              "issued_at": "2026-01-01T00:00:00Z", "expires_at": None, "product": "das"}
                    response = s.post(url, json={"data": record, "options": {"cas": version}}, headers=vault_headers, timeout=30)
                    version = response.json()["data"]["version"]
            probe = where == "das" and method == "GET" and secret    # 403 and 404 prove the secret authenticates, as verify accepts
            if response.status_code >= 400 and not (where == "vault" and method == "read") and not (probe and response.status_code in (403, 404)):
                raise RuntimeError("floor: %s %s %s -> %d" % (where, method, path, response.status_code))

    started = time.time()
    with ThreadPoolExecutor(max_workers=job["concurrency"]) as pool:
        list(pool.map(one, job["ids"]))
    print(time.time() - started)


def with_unattributed(template, other, n):
    """The per-token template with the calls no path names a token by, when every token made them.

    DAS verify probes a path the token's allow_path_patterns allow (`/v1/data/` here), not the
    token's own: the call is the token's, but the request log cannot say whose. A call seen k times
    per token is the probe made with the new secret after the regenerate, and the floor makes it
    too; what is left is reported.
    """
    counts = collections.Counter(other)
    template = list(template)
    after_put = max((i for i, c in enumerate(template) if c[:2] == ("das", "PUT")), default=len(template) - 1) + 1
    left = []
    for call, count in counts.items():
        per_token, rest = divmod(count, n)
        template[after_put:after_put] = [call] * per_token
        left += [call] * rest
    return tuple(template), left


def file_store_state(folder):
    state = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != ".locks"]
        for name in files:
            if name.endswith(".vault"):     # entries; not the key cache
                info = os.stat(os.path.join(root, name))
                state.append((root, name, info.st_ino, info.st_mtime_ns))
    return sorted(state)


def token_work(lines):
    """Seconds of the token work, from profile_rows' lines (None without a profile)."""
    for line in lines or ():
        if line.startswith("the token work"):
            return float(line.split()[-3])
    return None


def profile_rows(records, wall):
    """Where the time of one collection run went, from the module's profile record."""
    if not records:
        return []
    record = records[0]
    marks, stats = record["marks"], record["stats"]
    started, ended = record["playbook"]
    rows = [
        ("Ansible before the module (start-up, templating, module payload)", marks["start"] - started),
        ("module start-up (interpreter, imports, AnsibleModule argument checks)", marks["AnsibleModule ready"] - marks["start"]),
        ("module options, store and client set-up", marks.get("token work begun", marks["AnsibleModule ready"]) - marks["AnsibleModule ready"]),
        ("the token work (threads: store, HTTP, rotation flow)", marks["token work done"] - marks["token work begun"]),
        ("module result handling (results, warnings, exit_json: masking, JSON)", marks["end"] - marks["token work done"]),
        ("Ansible after the module (result processing, callback, exit)", ended - marks["end"]),
    ]
    lines = [("%-74s %8.2f s  %5.1f%%" % (name, seconds, 100.0 * seconds / wall)) for name, seconds in rows]
    lines.append("%-74s %8.2f s" % ("module process CPU (user + system)", record["cpu"]))
    lines.append("inside the token work, summed over the %s threads:" % "worker")
    for name in sorted(stats):
        count, total, cpu = stats[name]
        lines.append("  %-50s %6d calls  %8.2f s wall  %7.2f s CPU  %6.2f ms CPU per call" % (name, count, total, cpu, 1000 * cpu / count))
    return lines


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--floor-job":
        floor_job(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="500,2000", help="token counts, comma separated")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the simulator waits before every answer")
    parser.add_argument("--concurrency", type=int, default=None, help="the module's concurrency (default: the module's default, %d)" % DEFAULT_CONCURRENCY)
    parser.add_argument("--stores", default="file,vault")
    parser.add_argument("--sample", type=int, default=40, help="tokens of the uri sample (c)")
    parser.add_argument("--profile", action="store_true", help="break run (a) down: where the collection's time goes")
    parser.add_argument("--sweep", default="", help="concurrencies to compare with run (a) at the smallest token count, e.g. 4,8,16,32")
    parser.add_argument("--repeat", type=int, default=3, help="runs of (a) and (b), alternately; the table shows the medians")
    parser.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/RESULTS.md alone")
    args = parser.parse_args()
    counts = [int(x) for x in args.tokens.split(",") if x.strip()]
    stores = [x.strip() for x in args.stores.split(",") if x.strip()]
    concurrency = args.concurrency or DEFAULT_CONCURRENCY
    load_before = os.getloadavg()
    bench = Bench(args)
    rows = []
    profiles = {}
    sweep = []
    uri = {}
    try:
        for n in counts:
            for kind in stores:
                ids = ["fleet-%s-%d-%05d" % (kind, n, i) for i in range(n)]
                log("%d tokens, %s store: create" % (n, kind))
                created = bench.collection(kind, n, ids, "present", args.concurrency)[0]
                log("%d tokens, %s store: (a) rotate every token" % (n, kind))
                das_from, audit_from = len(bench.sim.requests), bench.audit_offset()
                rotated, records = bench.collection(kind, n, ids, "rotated", args.concurrency, profile=args.profile)
                a_das, a_vault = bench.das_requests(das_from), bench.audit_requests(audit_from)
                sequences, other = bench.calls_per_token(ids, a_das, a_vault)
                a_vault = [r for r in a_vault if r[2].startswith("secret/")]
                template, how_many = sequences.most_common(1)[0]
                template, other = with_unattributed(template, other, n)
                if args.profile:
                    profiles[(n, kind)] = profile_rows(records, rotated)
                log("%d tokens, %s store: (d) nothing due" % (n, kind))
                das_from, audit_from = len(bench.sim.requests), bench.audit_offset()
                files_before = file_store_state(bench.work / ("file-%d" % n)) if kind == "file" else None
                idle, idle_records = bench.collection(kind, n, ids, "present", args.concurrency, profile=True)
                idle_das = bench.das_requests(das_from)
                idle_vault = [r for r in bench.audit_requests(audit_from) if r[2].startswith("secret/")]
                stats = idle_records[0]["stats"] if idle_records else {}
                reads = stats.get("store read", [0])[0]
                writes = stats.get("store write", [0])[0] + stats.get("store delete", [0])[0]
                if kind == "vault":
                    reads_seen = sum(1 for r in idle_vault if r[1] == "read")
                    writes_seen = sum(1 for r in idle_vault if r[1] in ("create", "update", "delete"))
                else:
                    reads_seen = reads
                    writes_seen = len(set(file_store_state(bench.work / ("file-%d" % n))) - set(files_before))
                log("%d tokens, %s store: (b) the floor" % (n, kind))
                das_from, audit_from = len(bench.sim.requests), bench.audit_offset()
                floor = bench.floor(kind, n, template, concurrency)
                floor_das = len(bench.das_requests(das_from))
                floor_vault = len([r for r in bench.audit_requests(audit_from) if r[2].startswith("secret/")])
                a_runs, b_runs = [rotated], [floor]
                for _repeat in range(args.repeat - 1):   # alternately, so that a change in the machine's load hits both
                    log("%d tokens, %s store: (a) and (b) again" % (n, kind))
                    a_runs.append(bench.collection(kind, n, ids, "rotated", args.concurrency)[0])
                    b_runs.append(bench.floor(kind, n, template, concurrency))
                rotated, floor = statistics.median(a_runs), statistics.median(b_runs)
                per_token_das = sum(1 for c in template if c[0] == "das")
                per_token_store = sum(1 for c in template if c[0] == "vault")
                rows.append(dict(
                    tokens=n, store=kind, create=created, a=rotated, b=floor, ratio=rotated / floor,
                    das_per_token=per_token_das, store_http_per_token=per_token_store, same_sequence=how_many,
                    other_calls=len(other), floor_das=floor_das, floor_vault=floor_vault, a_das=len(a_das), a_vault=len(a_vault),
                    idle=idle, idle_das=len(idle_das) / n, idle_reads=max(reads, reads_seen) / n, idle_writes=max(writes, writes_seen) / n,
                    template=" ".join("%s:%s" % (c[0], c[1]) for c in template), a_runs=a_runs, b_runs=b_runs,
                ))
                log("%d tokens, %s store: a %.1f s, floor %.1f s, a/b %.2f" % (n, kind, rotated, floor, rotated / floor))
            if "vault" in stores:
                log("%d tokens: (c) uri per token on a sample of %d" % (n, args.sample))
                uri[n] = bench.uri_per_token(args.sample) if not uri else uri[min(uri)]
        if args.sweep:
            n = min(counts)
            for kind in stores:
                ids = ["fleet-%s-%d-%05d" % (kind, n, i) for i in range(n)]
                for c in [int(x) for x in args.sweep.split(",")]:
                    log("sweep: %d tokens, %s store, concurrency %d" % (n, kind, c))
                    seconds = bench.collection(kind, n, ids, "rotated", c)[0]
                    sweep.append((kind, n, c, seconds))
    finally:
        bench.close()
    load_after = os.getloadavg()
    report(args, rows, uri, profiles, sweep, concurrency, load_before, load_after)


def report(args, rows, uri, profiles, sweep, concurrency, load_before, load_after):
    import ansible
    out = []
    out.append("# Fleet benchmark results")
    out.append("")
    out.append("`benchmarks/fleet.py --tokens %s --latency %s%s` on %s: %d cores, %s, Python %s, ansible-core %s; "
               "load average %.1f before and %.1f after (other work shared the machine)."
               % (args.tokens, args.latency, " --concurrency %d" % args.concurrency if args.concurrency else "",
                  datetime.date.today().isoformat(), os.cpu_count(), platform.machine(), platform.python_version(),
                  ansible.__version__, load_before[0], load_after[0]))
    out.append("The DAS simulator answers every request after %d ms; the store is a real OpenBao dev server or the "
               "file store on the local disk; the module ran with concurrency %d." % (args.latency * 1000, concurrency))
    out.append("")
    out.append("| tokens | store | (a) collection, rotate all | per token | (b) floor | a/b | HTTP calls per token (DAS + store) "
               "| (c) uri + KV write, scaled | c/a | (d) nothing due: DAS calls / store reads / store writes per token | create all |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = uri.get(r["tokens"])
        c_total = c[0] * r["tokens"] if c else None
        out.append("| %d | %s | %.1f s | %.1f ms | %.1f s | %.2f | %d + %d | %s | %s | %.2f / %.2f / %.2f (%.1f s) | %.1f s |" % (
            r["tokens"], r["store"], r["a"], 1000 * r["a"] / r["tokens"], r["b"], r["ratio"], r["das_per_token"],
            r["store_http_per_token"], "%.0f s" % c_total if c else "-", "%.0f" % (c_total / r["a"]) if c else "-",
            r["idle_das"], r["idle_reads"], r["idle_writes"], r["idle"], r["create"]))
    out.append("")
    by = {(r["tokens"], r["store"]): r for r in rows}
    counts = sorted({r["tokens"] for r in rows})
    big, small = max(counts), min(counts)
    checks = []
    if (big, "file") in by and (big, "vault") in by:
        checks.append("at %d tokens the file store takes %.2f x the Vault store's time (target: at most 1.5)"
                      % (big, by[(big, "file")]["a"] / by[(big, "vault")]["a"]))
    if (big, "vault") in by:
        checks.append("at %d tokens the collection with the Vault store takes %.2f x the floor (target: at most 1.3)"
                      % (big, by[(big, "vault")]["ratio"]))
    for kind in ("file", "vault"):
        if (big, kind) in by and (small, kind) in by and big != small:
            line = ("%s store: time per token at %d tokens is %.2f x that at %d (target: no more than about 1; Ansible's fixed "
                    "costs make it fall)" % (kind, big, (by[(big, kind)]["a"] / big) / (by[(small, kind)]["a"] / small), small))
            work = dict((n, token_work(profiles.get((n, kind)))) for n in (small, big))
            if work[small] and work[big]:
                line += "; the token work alone: %.1f ms per token at %d, %.1f ms at %d" % (
                    1000 * work[small] / small, small, 1000 * work[big] / big, big)
            checks.append(line)
    if (big, "vault") in by and token_work(profiles.get((big, "vault"))):
        work = token_work(profiles[(big, "vault")])
        checks.append("at %d tokens the Vault store's token work took %.2f x the floor; the rest of (a) is Ansible's and the "
                      "module's fixed start-up and result handling" % (big, work / by[(big, "vault")]["b"]))
    for line in checks:
        out.append("- " + line)
    for r in rows:
        if r["same_sequence"] != r["tokens"] or r["other_calls"]:
            out.append("- %d tokens, %s store: %d of the tokens had the common call sequence; %d calls belonged to no token"
                       % (r["tokens"], r["store"], r["same_sequence"], r["other_calls"]))
    out.append("")
    out.append("Calls per token in (a), in order: " + "; ".join("%s store: %s" % (r["store"], r["template"]) for r in rows if r["tokens"] == small))
    if any(len(r["a_runs"]) > 1 for r in rows):
        out.append("(a) and (b) ran %d times each, alternately; the table shows the medians. Each run: %s."
                   % (len(rows[0]["a_runs"]), "; ".join("%d tokens, %s store: a %s, b %s" % (
                       r["tokens"], r["store"], " / ".join("%.1f" % x for x in r["a_runs"]),
                       " / ".join("%.1f" % x for x in r["b_runs"])) for r in rows)))
    calls = ["%d tokens, %s store: %d / %d DAS, %d / %d KV" % (r["tokens"], r["store"], r["a_das"], r["floor_das"], r["a_vault"], r["floor_vault"])
             for r in rows]
    out.append("DAS and OpenBao KV calls, the collection's (a) against the floor's (b): " + "; ".join(calls) + ".")
    if uri:
        n, (per, seconds, empty) = min(uri.items())
        out.append("(c) took %.1f s for %d tokens, of which %.1f s is an empty playbook's start-up: %.0f ms per token."
                   % (seconds, args.sample, empty, 1000 * per))
    if sweep:
        out.append("")
        out.append("Concurrency (run (a), %d tokens):" % sweep[0][1])
        out.append("")
        out.append("| store | " + " | ".join("concurrency %d" % c for _k, _n, c, _s in sweep if _k == sweep[0][0]) + " |")
        out.append("|---|" + "---|" * len([1 for s in sweep if s[0] == sweep[0][0]]))
        for kind in sorted({s[0] for s in sweep}):
            out.append("| %s | " % kind + " | ".join("%.1f s" % s for k, _n, _c, s in sweep if k == kind) + " |")
    if profiles:
        out.append("")
        out.append("Where the time of run (a) went (`--profile`):")
        for (n, kind), lines in sorted(profiles.items()):
            out.append("")
            out.append("%d tokens, %s store:" % (n, kind))
            out.append("")
            out.append("```")
            out.extend(lines)
            out.append("```")
    text = "\n".join(out) + "\n"
    print(text)
    if not args.no_write:
        (REPO / "benchmarks" / "RESULTS.md").write_text(text)


if __name__ == "__main__":
    main()
