"""`make demo`: start the simulators, rotate their tokens twice with the embedded file store,
print a table of what happened. The second run must change nothing.

The simulators keep their state in .build/demo, so `make demo` run again changes nothing either.
"""

import importlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / ".build" / "demo"
BIN = Path(sys.executable).parent


def start_simulator(product, extra=()):
    info = DEMO / ("%s.json" % product)
    if info.exists():
        info.unlink()
    log = open(DEMO / ("%s-simulator.log" % product), "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.simulators", product, "--port", "0",
         "--state-file", str(DEMO / ("%s-state.json" % product)), "--info-file", str(info)] + list(extra),
        cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while not info.exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            sys.exit("the %s simulator did not start; see %s" % (product, log.name))
        time.sleep(0.1)
    time.sleep(0.1)
    return proc, json.loads(info.read_text())


def products():
    """The demo modules of hacking/demo_products, in the order of ORDER."""
    sys.path.insert(0, str(REPO / "hacking"))
    import demo_products
    found = []
    for name in demo_products.ORDER:
        if (REPO / "hacking" / "demo_products" / ("%s.py" % name)).exists():
            found.append(importlib.import_module("demo_products.%s" % name))
    return found


def store_settings():
    password_file = DEMO / "vault-pass"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(24) + "\n")
        password_file.chmod(0o600)
    # DEMO exists (main makes it): the file store refuses a missing folder unless create_folder is set.
    return {"backend": "file", "file_path": str(DEMO / "store.vault"), "vault_password_file": str(password_file)}


def write_inventory(groups):
    inventory = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                         "children": groups}}
    path = DEMO / "inventory.json"
    path.write_text(json.dumps(inventory, indent=2))
    return path


def run_playbook(inventory, env, label):
    log = DEMO / ("%s.log" % label)
    with open(log, "wb") as out:
        code = subprocess.call([str(BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / "playbooks" / "demo.yml")],
                               cwd=str(REPO), env=env, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        sys.stdout.write(log.read_text())
        sys.exit("%s failed (exit %d); the output is above and in %s" % (label, code, log))
    rows = []
    for report in sorted(DEMO.glob("report-*.json")):
        rows.extend(json.loads(report.read_text()))
        report.unlink()
    return rows


def table(runs):
    header = ("host", "token", "run 1", "run 2", "live id", "fingerprint", "expires at")
    first, second = runs
    by_key = {(r["host"], r["id"]): r for r in second}
    lines = []
    for row in first:
        other = by_key.get((row["host"], row["id"]), {})
        lines.append((row["host"], row["id"], row["action"], other.get("action", "-"), other.get("token_id") or "",
                      other.get("fingerprint") or "", other.get("expires_at") or ""))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join("%%-%ds" % w for w in widths)
    print(fmt % header)
    print(fmt % tuple("-" * w for w in widths))
    for line in lines:
        print(fmt % line)


def main():
    DEMO.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        store = store_settings()
        groups = {}
        env = dict(os.environ)
        env.setdefault("ANSIBLE_FORCE_COLOR", "0")
        for product in products():
            proc, info = start_simulator(product.PRODUCT, product.SIMULATOR_ARGS)
            procs.append(proc)
            host = dict(product.host_vars(info, store))
            host["%s_report_file" % product.GROUP] = str(DEMO / ("report-%s.json" % product.GROUP))
            groups[product.GROUP] = {"hosts": {"%s-demo" % product.GROUP: host}}
            env.update(product.environment(info))   # credentials through the environment, never the command line
        inventory = write_inventory(groups)
        runs = [run_playbook(inventory, env, "run-1"), run_playbook(inventory, env, "run-2")]
        print()
        print("tokenops.rotation demo: each token rotated against its simulator, secrets in %s" % (DEMO / "store.vault"))
        print()
        table(runs)
        print()
        changed = [r for r in runs[1] if r.get("changed")]
        if changed:
            sys.exit("the second run changed %s; it should have changed nothing" % ", ".join(r["id"] for r in changed))
        entries = sorted(str(path.relative_to(REPO)) for path in (DEMO / "store.vault").rglob("*.vault"))
        print("The second run changed nothing. The store is a folder with one ansible-vault file per token; open them with:")
        print("  .venv/bin/ansible-vault view --vault-password-file %s %s" % ((DEMO / "vault-pass").relative_to(REPO), " ".join(entries)))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
