"""Job benchmark: what the scheduled job (playbooks/rotate.yml over all four products) costs against its modules.

    .venv/bin/python benchmarks/job.py [--tokens 500,2000,10000] [--tenants 4] [--stores file,vault]
                                       [--latency 0.02] [--forks 8] [--catalog files|inventory] [--no-write]

For every token count and store, a fleet across all four products (DAS tenants hold most tokens,
one DPA server, one Secret Server and one Open Payments authorization server the rest; each its own
simulator, OpenBao started here on loopback) goes through rotate.yml three times:

  create    the first run: every token is made (the simulators' clocks stand 22 hours back, so
            that what is made is due a day later, when the clocks move to now)
  rotate    the clocks move forward 22 hours: every DAS token is due; Secret Server sessions and Open
            Payments access tokens, whose lifetimes are relative (expires_in), are rotated with state
            rotated; DPA refresh tokens have no rotation API: they are validated
  idle      nothing is due

Per run: the CPU of the whole ansible-playbook process tree per token against the CPU of the
product modules' own processes (das_token, dpa_refresh_token, secretserver_token,
openpayments_token, measured inside them by profile_hook/sitecustomize.py) and of the other module
processes (the *_info reads, the report, file copies), wall time, the peak RSS and PSS of the
process tree (sampled from /proc), product calls and store reads and writes per token, bytes of
output at default verbosity, report file sizes, rows in the JSON report (one per token), entries
the idle run changed, and a scan of output and reports for every secret the simulators issued.

Ratios measured side by side in one run on one machine mean something; absolute seconds do not.
Not part of `make test`.
"""

import argparse
import base64
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / ".build" / "collections")]

import tests.conftest  # noqa: E402,F401  pylint: disable=unused-import
from tests.fixtures.openbao import OpenBaoServer  # noqa: E402
from tests.simulators.base import Clock  # noqa: E402
from tests.simulators.das import DasSimulator  # noqa: E402
from tests.simulators.dpa import DpaSimulator  # noqa: E402
from tests.simulators.openpayments import OpenPaymentsSimulator  # noqa: E402
from tests.simulators.secretserver import SecretServerSimulator  # noqa: E402

BIN = Path(sys.executable).parent
HOOK = Path(__file__).resolve().parent / "profile_hook"
HOURS = 3600
BACK = 22 * HOURS          # the clocks' lag while tokens are made; a day's lifetime leaves 2 hours: due
LIFETIME = 24 * HOURS
PRODUCT_MODULES = ("das_token", "dpa_refresh_token", "secretserver_token", "openpayments_token")
# Shares of the fleet: DAS tenants hold most tokens, as in the fleet the issue measured.
SHARES = {"das": 0.85, "dpa": 0.05, "secretserver": 0.05, "openpayments": 0.05}
# Secret Server and Open Payments give lifetimes relative to the answer (expires_in), so a simulator's clock
# cannot make them due: the rotating run rotates them with state rotated. DPA has no rotation API.
ROTATE_NOW = {"secretserver": {"secretserver_state": "rotated"}, "openpayments": {"openpayments_state": "rotated"}}
SECRET_RUN = re.compile(r"[A-Za-z0-9_\-]{43,}")


def log(text):
    sys.stderr.write("[job %s] %s\n" % (time.strftime("%H:%M:%S"), text))
    sys.stderr.flush()


def split(n, tenants):
    das = int(n * SHARES["das"])
    rest = n - das
    counts = {"dpa": rest // 3, "secretserver": rest // 3}
    counts["openpayments"] = rest - counts["dpa"] - counts["secretserver"]
    per = [das // tenants + (1 if i < das % tenants else 0) for i in range(tenants)]
    return per, counts


def new_key():
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"kid": "bench-key", "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    return pem, jwk


class Fleet:
    """The simulators and the inventory of one token count and store."""

    def __init__(self, work, n, tenants, store, latency):
        self.work, self.n, self.store = work, n, store
        start = time.time() - BACK
        per_tenant, counts = split(n, tenants)
        self.sims = []
        self.hosts = {"das": {}, "dpa": {}, "secretserver": {}, "openpayments": {}}
        self.secrets = set()   # what the inventory itself carries (passwords, DPA refresh tokens)
        self.admins = {}
        for index, count in enumerate(per_tenant):
            sim = DasSimulator(clock=Clock(start=start))
            url = sim.start()
            if latency:
                sim.faults.add("*", r".*", "latency", times=None, delay=latency)
            admin = sim.seed_token("bench-admin", roles=[("WorkspaceAdministrator", "workspace", "*")])
            self.sims.append(("das", sim))
            tokens = [{"id": "t%05d" % i, "description": "bench", "allow_path_patterns": ["^/v1/systems/t%05d/.*" % i], "ttl": "24h"}
                      for i in range(count)]
            self.hosts["das"]["tenant-%d" % index] = {"das_url": url, "das_api_token": admin, "das_store": store,
                                                      "das_rotate_before": "6h", "das_tokens": tokens}
            self.admins[url] = admin
        dpa = DpaSimulator(clock=Clock(start=start), tls=True)
        dpa.start()
        self.sims.append(("dpa", dpa))
        self.hosts["dpa"]["dpa-1"] = {"dpa_url": dpa.base_url, "dpa_ca_path": dpa.ca_path, "dpa_store": store, "dpa_tokens": [
            {"id": "r%05d" % i, "refresh_token": dpa.issue_refresh_token("r%05d" % i, lifetime=90 * 24 * HOURS)}
            for i in range(counts["dpa"])]}
        ss = SecretServerSimulator(clock=Clock(start=start), session_timeout_s=LIFETIME)
        ss.start()
        self.sims.append(("secretserver", ss))
        users = []
        for i in range(counts["secretserver"]):
            password = "pw-u%05d-%s" % (i, base64.urlsafe_b64encode(os.urandom(9)).decode())
            ss.add_user("u%05d" % i, password)
            self.secrets.add(password)
            users.append({"id": "u%05d" % i, "username": "u%05d" % i, "password": password})
        self.hosts["secretserver"]["pam-1"] = {"secretserver_url": ss.api_url, "secretserver_store": store, "secretserver_tokens": users,
                                               "secretserver_rotate_before": "6h"}
        op = OpenPaymentsSimulator(clock=Clock(start=start), wait=0, access_token_expiry=LIFETIME)
        op.start()
        self.sims.append(("openpayments", op))
        self.pem, jwk = new_key()
        client = op.add_wallet("client", public_name="bench", keys=[jwk])
        shop = op.add_wallet("shop", public_name="Shop")
        access = [{"type": "incoming-payment", "actions": ["create", "read", "list"], "identifier": shop}]
        self.hosts["openpayments"]["as-1"] = {
            "openpayments_url": op.grant_url, "openpayments_client_wallet_address": client, "openpayments_key_id": "bench-key",
            "openpayments_store": store, "openpayments_rotate_before": "6h",
            "openpayments_tokens": [{"id": "g%05d" % i, "access": access} for i in range(counts["openpayments"])]}

    def inventory(self, reports, overrides=None, catalog="files"):
        """The job's inventory; with catalog "files" each host's token list is in a tokens file (<product>_tokens_file)
        that its module reads, as README "Large fleets" advises, and the inventory holds only the hosts."""
        overrides = overrides or {}
        hosts_of = self.hosts if catalog == "inventory" else self.catalog_files()
        children = {group: {"hosts": {name: dict(host, **overrides.get(group, {})) for name, host in hosts.items()}}
                    for group, hosts in hosts_of.items()}
        doc = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                "tokenops_report_dir": str(reports)}, "children": children}}
        path = self.work / "inventory.yml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def catalog_files(self):
        if getattr(self, "_catalog", None) is None:
            folder = self.work / ("catalog-%d-%s" % (self.n, time.monotonic_ns()))
            folder.mkdir(mode=0o700)
            self._catalog = {}
            for group, hosts in self.hosts.items():
                for name, host in hosts.items():
                    host = dict(host)
                    path = folder / ("%s-%s.json" % (group, name))
                    path.write_text(json.dumps(host.pop("%s_tokens" % group)))
                    path.chmod(0o600)   # DPA refresh tokens and Secret Server passwords: the job's user only
                    host["%s_tokens_file" % group] = str(path)
                    self._catalog.setdefault(group, {})[name] = host
        return self._catalog

    def advance(self, seconds):
        # Not DPA's: nothing of it rotates by time, and a jump would kill the access tokens the modules
        # cached (900 s), which a night between runs does too, but with no second request (the cache is not probed).
        for product, sim in self.sims:
            if product != "dpa":
                sim.clock.advance(seconds)

    def calls(self):
        return {product: sum(len(sim.requests) for p, sim in self.sims if p == product) for product in SHARES}

    def issued(self):
        found = set(self.secrets)
        for _product, sim in self.sims:
            found |= set(sim.issued)
        return found

    def stop(self):
        for _product, sim in self.sims:
            sim.stop()


class TreeSampler(threading.Thread):
    """Peak RSS and PSS (summed over the process tree of one pid), sampled from /proc."""

    def __init__(self, pid, interval=0.25):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = self.peak_procs = 0
        self.stopping = threading.Event()

    @staticmethod
    def children():
        parents = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                parents.setdefault(int(fields[1]), []).append(int(entry))
            except (OSError, IndexError):
                continue
        return parents

    def tree(self):
        parents = self.children()
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(parents.get(pid, []))
        return found

    @staticmethod
    def memory(pid):
        rss = pss = 0
        try:
            with open("/proc/%d/smaps_rollup" % pid) as handle:
                for line in handle:
                    if line.startswith("Rss:"):
                        rss = int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss = int(line.split()[1]) * 1024
        except OSError:
            pass
        return rss, pss

    @staticmethod
    def process_name(pid):
        """What a process of the tree is: the module an AnsiballZ payload runs, a worker of ansible-playbook, ..."""
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                argv = [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
        except OSError:
            return "?"
        text = " ".join(argv)
        module = re.search(r"AnsiballZ_(\w+)\.py", text)
        if module:
            return ("sh " if os.path.basename(argv[0]) == "sh" else "") + module.group(1)
        if "ansible-playbook" in text:
            return "ansible-playbook"
        if "-c" in argv[1:4]:
            return "python -c (helper)"   # the file store's key-derivation helper (python -I -S -c ...)
        return os.path.basename(argv[0]) if argv else "?"

    def run(self):
        self.peak_by = {}
        while not self.stopping.is_set():
            pids = self.tree()
            rss = pss = 0
            by = {}
            for pid in pids:
                r, p = self.memory(pid)
                rss, pss = rss + r, pss + p
                entry = by.setdefault(self.process_name(pid), [0, 0])
                entry[0] += 1
                entry[1] += r
            if rss > self.peak_rss:
                self.peak_by = by
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(pids))
            self.stopping.wait(self.interval)


def leaked(secrets, texts):
    """The issued secrets found in any of the texts (words of the urlsafe alphabet, and the rest by substring)."""
    plain = {s for s in secrets if SECRET_RUN.fullmatch(s) and len(s) == 43}
    other = secrets - plain
    found = set()
    for text in texts:
        for match in SECRET_RUN.finditer(text):
            word = match.group(0)
            for i in range(len(word) - 42):
                if word[i:i + 43] in plain:
                    found.add(word[i:i + 43])
        found |= {s for s in other if s in text}
    return found


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="tokenops-job-"))
        self.bao = OpenBaoServer(audit=False)
        self.bao.start()
        (self.work / "vault-pass").write_text("job-benchmark-password\n")

    def close(self):
        self.bao.stop()
        if self.args.keep:
            log("kept the runs' files in %s" % self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)   # stores of 10,000 entries, reports, spool: gigabytes per run

    def store(self, kind, n):
        if kind == "vault":
            return {"backend": "vault", "prefix": "job-%d" % n}
        folder = self.work / ("file-%d" % n)
        folder.mkdir(exist_ok=True, mode=0o700)
        return {"backend": "file", "prefix": "job-%d" % n, "file_path": str(folder / "store.vault"),
                "vault_password_file": str(self.work / "vault-pass")}

    def run(self, fleet, kind, label, verbose=False, overrides=None):
        work = self.work / ("%s-%d-%s" % (kind, fleet.n, label))
        work.mkdir()
        reports = work / "reports"
        inventory = fleet.inventory(reports, overrides, self.args.catalog)
        profile_file = work / "profile.jsonl"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "STYRA_", "ANSIBLE_", "TOKENOPS_", "TSS_", "OPEN_PAYMENTS_"))}
        env.update(VAULT_ADDR=self.bao.url, VAULT_TOKEN=self.bao.root_token, OPEN_PAYMENTS_PRIVATE_KEY=fleet.pem,
                   ANSIBLE_LOCAL_TEMP=str(work / "tmp"), ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_HOME=str(work / "home"), HOME=str(work / "home"), ANSIBLE_FORKS=str(self.args.forks),
                   ANSIBLE_COLLECTIONS_PATH=os.environ.get("TOKENOPS_COLLECTIONS_PATH", str(REPO / ".build" / "installed")),
                   PYTHONPATH=str(HOOK), TOKENOPS_BENCH_PROFILE=str(profile_file))
        if self.args.ansible_cfg:
            env["ANSIBLE_CONFIG"] = self.args.ansible_cfg
        cmd = [str(BIN / "ansible-playbook"), "-i", str(inventory), self.args.playbook]
        if verbose:
            cmd.append("-v")
        calls_before = fleet.calls()
        started = time.time()
        with open(work / "stdout", "wb") as out, open(work / "stderr", "wb") as err:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
            sampler = TreeSampler(proc.pid)
            sampler.start()
            _pid, status, usage = os.wait4(proc.pid, 0)
            sampler.stopping.set()
            sampler.join()
        wall = time.time() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        calls = {p: c - calls_before[p] for p, c in fleet.calls().items()}
        records = [json.loads(line) for line in profile_file.read_text().splitlines() if line.strip()] if profile_file.exists() else []
        modules = {}
        store_ops = {"read": 0, "write": 0, "delete": 0}
        main_cpu = sum(r["cpu"] for r in records if r["argv0"] == "ansible-playbook" and r["pid"] == proc.pid)
        for record in records:
            if "AnsibleModule ready" not in record["marks"]:
                continue   # ansible-playbook itself, or a Python that ran no module
            name = re.sub(r"^AnsiballZ_|\.py$", "", record["argv0"])
            entry = modules.setdefault(name, [0, 0.0])
            entry[0] += 1
            entry[1] += record["cpu"]
            for op in store_ops:
                store_ops[op] += record["stats"].get("store %s" % op, [0])[0]
        output = (work / "stdout").read_text(errors="replace") + (work / "stderr").read_text(errors="replace")
        files = {p.name: p.stat().st_size for p in sorted(reports.glob("*")) if p.is_file()} if reports.exists() else {}
        rows, actions = None, {}
        report_json = reports / "tokenops-rotation.json"
        if report_json.exists():
            document = json.loads(report_json.read_text())
            rows, actions = len(document["rows"]), document["counts"]["by_action"]
        texts = [output] + [p.read_text(errors="replace") for p in reports.glob("*") if p.is_file()]
        secret_hits = leaked(fleet.issued(), texts)
        return {
            "label": label, "rc": proc.returncode, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "module_cpu": sum(c for m, (_k, c) in modules.items() if m in PRODUCT_MODULES),
            "modules": modules, "main_cpu": main_cpu, "peak_rss": sampler.peak_rss, "peak_by": sampler.peak_by,
            "peak_pss": sampler.peak_pss, "procs": sampler.peak_procs,
            "maxrss_single": usage.ru_maxrss * 1024, "calls": calls, "store_ops": store_ops, "actions": actions, "output": len(output.encode()),
            "files": files, "rows": rows, "leaks": len(secret_hits), "work": str(work),
        }


def inventory_floor(bench, fleet, forks):
    """ansible-playbook with the fleet's inventory and one trivial task per host (`sleep 10`, strategy free, the same
    forks): Ansible's own cost of an inventory as large as the fleet, which no collection changes. Its CPU, and the
    peak RSS and PSS of its process tree (each fork maps the main process's memory: RSS counts it once per process)."""
    work = bench.work / ("floor-%d" % fleet.n)
    work.mkdir(exist_ok=True)
    playbook = work / "floor.yml"
    playbook.write_text("- name: Floor\n  hosts: all\n  gather_facts: false\n  strategy: free\n  tasks:\n"
                        "    - name: Wait\n      ansible.builtin.command: sleep 10\n      changed_when: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "TOKENOPS_"))}
    env.update(ANSIBLE_LOCAL_TEMP=str(work / "tmp"), ANSIBLE_HOME=str(work / "home"), HOME=str(work / "home"), ANSIBLE_FORKS=str(forks))
    proc = subprocess.Popen([str(BIN / "ansible-playbook"), "-i", str(fleet.inventory(work, catalog=bench.args.catalog)), str(playbook)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    _pid, _status, usage = os.wait4(proc.pid, 0)
    sampler.stopping.set()
    sampler.join()
    return dict(label="floor", tokens=fleet.n, cpu=usage.ru_utime + usage.ru_stime, peak_rss=sampler.peak_rss, peak_pss=sampler.peak_pss,
                procs=sampler.peak_procs)


def store_snapshot(bench, kind, n):
    """Every entry's version (vault) or inode and mtime (file): what a run that changes nothing leaves alone."""
    if kind == "file":
        folder = bench.work / ("file-%d" % n)
        state = {}
        for root, dirs, names in os.walk(folder):
            dirs[:] = [d for d in dirs if d != ".locks"]
            for name in names:
                if name.endswith(".vault"):
                    info = os.stat(os.path.join(root, name))
                    state[os.path.join(root, name)] = (info.st_ino, info.st_mtime_ns)
        return state
    state = {}
    session = bench.bao._session

    def walk(path):
        answer = session.request("LIST", "%s/v1/secret/metadata/%s" % (bench.bao.url, path), headers={"X-Vault-Token": bench.bao.root_token})
        if answer.status_code != 200:
            return
        for key in answer.json()["data"]["keys"]:
            if key.endswith("/"):
                walk(path + key)
            else:
                meta = session.get("%s/v1/secret/metadata/%s%s" % (bench.bao.url, path, key), headers={"X-Vault-Token": bench.bao.root_token})
                state[path + key] = meta.json()["data"]["current_version"]
    walk("job-%d/" % n)
    return state


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="500,2000,10000", help="fleet sizes, comma separated")
    parser.add_argument("--tenants", type=int, default=4, help="DAS tenants (each its own simulator)")
    parser.add_argument("--stores", default="file,vault")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds each DAS simulator waits before every answer")
    parser.add_argument("--forks", type=int, default=8)
    parser.add_argument("--ansible-cfg", default=str(REPO / "extensions" / "awx" / "project" / "ansible.cfg"),
                        help="the job's ansible.cfg (ANSIBLE_CONFIG): by default the one README advises for an AWX project; '' for none")
    parser.add_argument("--catalog", choices=["files", "inventory"], default="files",
                        help="where each host's token list is: a tokens file its module reads (the default), or the inventory")
    parser.add_argument("--runs", default="create,rotate,idle", help="which runs (create always runs)")
    parser.add_argument("--floor", action="store_true", help="only measure ansible-playbook with each fleet's inventory and an empty play")
    parser.add_argument("--playbook", default=str(REPO / "playbooks" / "rotate.yml"), help="the job's playbook")
    parser.add_argument("--no-write", action="store_true", help="print only; leave benchmarks/RESULTS-job.md alone")
    parser.add_argument("--keep", action="store_true", help="keep the runs' files (stores, inventories, reports, output) in the temporary folder")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "RESULTS-job.md"))
    parser.add_argument("--render", default="", help="only render the results of earlier runs (their --out + .json files, comma separated)")
    args = parser.parse_args()
    if args.render:
        results, loads = [], []
        for path in args.render.split(","):
            saved = json.loads(Path(path).read_text())
            results += saved["results"]
            loads.append(saved["load"])
        args.tokens = ",".join(str(n) for n in sorted({r["tokens"] for r in results}))
        args.stores = ",".join(sorted({r["store"] for r in results}))
        args.catalog = ",".join(sorted({r.get("catalog", "inventory") for r in results if r["label"] != "floor"}))
        report(args, results, (max(load[0][0] for load in loads),), (max(load[1][0] for load in loads),))
        return
    counts = [int(x) for x in args.tokens.split(",") if x.strip()]
    stores = [x.strip() for x in args.stores.split(",") if x.strip()]
    wanted = [x.strip() for x in args.runs.split(",") if x.strip()]
    load_before = os.getloadavg()
    bench = Bench(args)
    results = []
    try:
        for n in counts:
            for kind in stores:
                log("%d tokens, %s store: starting the simulators" % (n, kind))
                fleet = Fleet(bench.work, n, args.tenants, bench.store(kind, n), args.latency)
                try:
                    if args.floor:
                        log("%d tokens: ansible-playbook with this inventory and nothing to do" % n)
                        floor = dict(inventory_floor(bench, fleet, args.forks), store=kind)
                        results.append(floor)
                        log("  %.1f s CPU, peak RSS %.0f MB, PSS %.0f MB" % (floor["cpu"], floor["peak_rss"] / 2**20, floor["peak_pss"] / 2**20))
                        continue
                    for label in ("create", "rotate", "idle"):
                        if label != "create" and label not in wanted:
                            continue
                        if label == "rotate":
                            fleet.advance(BACK)
                        before = store_snapshot(bench, kind, n) if label == "idle" else None
                        log("%d tokens, %s store: %s run" % (n, kind, label))
                        result = bench.run(fleet, kind, label, overrides=ROTATE_NOW if label == "rotate" else None)
                        if before is not None:
                            after = store_snapshot(bench, kind, n)
                            result["changed_entries"] = sum(1 for k in set(before) | set(after) if before.get(k) != after.get(k))
                        result.update(tokens=n, store=kind, catalog=args.catalog)
                        results.append(result)
                        log("  rc %d, %.1f s wall, %.1f s CPU (modules %.1f s), peak RSS %.0f MB, output %d bytes, rows %s, leaks %d"
                            % (result["rc"], result["wall"], result["cpu"], result["module_cpu"], result["peak_rss"] / 2**20,
                               result["output"], result["rows"], result["leaks"]))
                finally:
                    fleet.stop()
    finally:
        bench.close()
    load_after = os.getloadavg()
    Path(args.out + ".json").write_text(json.dumps({"results": results, "load": [load_before, load_after]}))
    report(args, results, load_before, load_after)


def report(args, results, load_before, load_after):
    import ansible
    out = ["# Job benchmark results", ""]
    out.append("`benchmarks/job.py --tokens %s --tenants %d --stores %s --latency %s --forks %d --catalog %s --ansible-cfg %s` on %s: "
               "%d cores, %s, Python %s, ansible-core %s; load average %.1f before and %.1f after."
               % (args.tokens, args.tenants, args.stores, args.latency, args.forks, args.catalog,
                  os.path.relpath(args.ansible_cfg, REPO) if args.ansible_cfg else "''", datetime.date.today().isoformat(), os.cpu_count(),
                  platform.machine(), platform.python_version(), ansible.__version__, load_before[0], load_after[0]))
    out.append("Fleet: %d DAS tenants hold %d%% of the tokens, one DPA server, one Secret Server and one Open Payments "
               "authorization server share the rest; DAS answers after %d ms. CPU is of the whole ansible-playbook process tree "
               "(rusage); the modules' own CPU is that of the product modules' processes (%s)."
               % (args.tenants, SHARES["das"] * 100, args.latency * 1000, ", ".join(PRODUCT_MODULES)))
    floors = dict((r["tokens"], r) for r in results if r["label"] == "floor")
    results = [r for r in results if r["label"] != "floor"]
    out.append("")
    out.append("| tokens | store | token lists | run | rc | wall | wall per token | job CPU per token | modules' CPU per token | job / modules "
               "| other modules' CPU | peak RSS / PSS (procs) | product calls per token | store reads / writes per token "
               "| output | report files | rows | idle run changed | secrets in output |")
    out.append("|" + "---|" * 19)
    for r in results:
        n = r["tokens"]
        other = sum(c for m, (_k, c) in r["modules"].items() if m not in ("das_token", "dpa_refresh_token", "secretserver_token", "openpayments_token"))
        out.append("| %d | %s | %s | %s | %d | %.1f s | %.1f ms | %.1f ms | %.1f ms | %.2f | %.1f s | %.0f / %.0f MB (%d) | %.2f | %.2f / %.2f "
                   "| %.0f KB | %s | %s | %s | %d |" % (
                       n, r["store"], r.get("catalog", "inventory"), r["label"], r["rc"], r["wall"], 1000 * r["wall"] / n, 1000 * r["cpu"] / n,
                       1000 * r["module_cpu"] / n,
                       r["cpu"] / r["module_cpu"] if r["module_cpu"] else 0, other, r["peak_rss"] / 2**20, r["peak_pss"] / 2**20,
                       r["procs"], sum(r["calls"].values()) / n, r["store_ops"]["read"] / n, (r["store_ops"]["write"] + r["store_ops"]["delete"]) / n,
                       r["output"] / 1024, ", ".join("%s %.0f KB" % (k.rsplit(".", 1)[-1], v / 1024) for k, v in r["files"].items()),
                       r["rows"], r.get("changed_entries", "-"), r["leaks"]))
    out.append("")
    out.append("Per run, module processes (count, CPU) and product calls by product:")
    out.append("")
    for r in results:
        out.append("- %d tokens, %s store, %s: %s; calls %s; actions %s" % (
            r["tokens"], r["store"], r["label"], ", ".join("%s %d x %.1f s" % (m, k, c) for m, (k, c) in sorted(r["modules"].items())),
            ", ".join("%s %d" % kv for kv in r["calls"].items()), ", ".join("%s %d" % kv for kv in sorted(r["actions"].items()))))
    out.append("")
    out.append("Where the job's CPU went besides the product modules (per token): the ansible-playbook main process (inventory, "
               "strategy, results), its forked workers (templating, module payloads, result parsing) and the other modules:")
    out.append("")
    for r in results:
        if r.get("main_cpu") is None:
            continue
        n = r["tokens"]
        other = sum(c for m, (_k, c) in r["modules"].items() if m not in PRODUCT_MODULES)
        workers = r["cpu"] - r["module_cpu"] - other - r["main_cpu"]
        line = "- %d tokens, %s store, %s: main process %.1f ms, workers %.1f ms, other modules %.1f ms, product modules %.1f ms" % (
            n, r["store"], r["label"], 1000 * r["main_cpu"] / n, 1000 * workers / n, 1000 * other / n, 1000 * r["module_cpu"] / n)
        if n in floors:
            line += ("; Ansible's floor with this inventory: %.1f ms, so the job less the floor is %.2f x its modules"
                     % (1000 * floors[n]["cpu"] / n, (r["cpu"] - floors[n]["cpu"]) / r["module_cpu"]))
        out.append(line)
    if floors:
        out.append("- Ansible's floor: ansible-playbook with the fleet's inventory and one `sleep 10` task per host (strategy free, "
                   "the same forks): %s" % "; ".join("%d tokens: %.1f s CPU, peak RSS %.0f MB, PSS %.0f MB (%d processes)" % (
                       n, floors[n]["cpu"], floors[n]["peak_rss"] / 2**20, floors[n]["peak_pss"] / 2**20, floors[n]["procs"])
                       for n in sorted(floors)))
    out.append("")
    out.append("What the process tree held at its peak RSS (processes, MB):")
    out.append("")
    for r in results:
        if r.get("peak_by"):
            out.append("- %d tokens, %s store, %s, %s: %s" % (r["tokens"], r["store"], r.get("catalog", "inventory"), r["label"], ", ".join(
                "%s %d x %.0f" % (name, count, rss / 2**20) for name, (count, rss) in sorted(r["peak_by"].items(), key=lambda kv: -kv[1][1]))))
    by = {(r["tokens"], r["store"], r.get("catalog", "inventory"), r["label"]): r for r in results}
    counts = sorted({r["tokens"] for r in results})
    out.append("")
    out.append("Growth (wall time per token and job CPU per token, against the previous size; 1.00 is linear):")
    out.append("")
    for kind, catalog in sorted({(r["store"], r.get("catalog", "inventory")) for r in results}):
        for label in ("create", "rotate", "idle"):
            parts = []
            sizes = [n for n in counts if (n, kind, catalog, label) in by]
            for small, big in zip(sizes, sizes[1:]):
                a, b = by[(small, kind, catalog, label)], by[(big, kind, catalog, label)]
                # The marginal cost: what the extra tokens cost the job against what they cost the modules.
                extra = (b["cpu"] - a["cpu"]) / max(b["module_cpu"] - a["module_cpu"], 1e-9)
                parts.append("%d -> %d: wall %.2f x, CPU %.2f x, peak RSS %.2f x for %.1f x the tokens; the extra tokens cost the job "
                             "%.2f x what they cost the modules" % (
                                 small, big, (b["wall"] / big) / (a["wall"] / small), (b["cpu"] / big) / (a["cpu"] / small),
                                 b["peak_rss"] / max(a["peak_rss"], 1), big / small, extra))
            if parts:
                out.append("- %s store, token lists in %s, %s: %s" % (kind, catalog, label, "; ".join(parts)))
    text = "\n".join(out) + "\n"
    print(text)
    if not args.no_write:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
