"""`make demo`: the scheduled job (playbooks/rotate.yml) over all four products, against their simulators.

1. The simulators start with their clocks standing back (20 hours for DAS and DPA, 25 minutes for Secret
   Server, 15 minutes for Open Payments), and the first run creates every token as of that time.
2. The clocks move forward to now: tokens come due, and the second run rotates them for real. Its report
   across products (one row per token, most urgent first, with what a person must do) is printed.
3. A third run finds nothing due and changes nothing.

The simulators run in this process, so the demo can move their clocks; everything starts afresh in
.build/demo each time.
"""

import argparse
import importlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / ".build" / "demo"
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "hacking"))

from tests.simulators.__main__ import PRODUCTS  # noqa: E402  (the simulators' own builders and bootstraps)
from tests.simulators.base import Clock  # noqa: E402


def products():
    """The demo modules of hacking/demo_products, in the order of ORDER."""
    import demo_products
    return [importlib.import_module("demo_products.%s" % name) for name in demo_products.ORDER]


def start_simulator(product):
    """The product's simulator on a clock that stands ADVANCE seconds back; returns (sim, info)."""
    spec = PRODUCTS[product.PRODUCT]
    args = argparse.Namespace(tls=True, state_file=None, tls_dir=str(DEMO / ("%s-tls" % product.PRODUCT)))
    sim = spec.build(args, dict(product.SWITCHES, clock=Clock(start=time.time() - product.ADVANCE)))
    url = sim.start()
    info = {"product": product.PRODUCT, "url": url, "base_url": sim.base_url, "ca_path": sim.ca_path}
    info.update(spec.bootstrap(sim))
    if hasattr(product, "prepare"):
        product.prepare(sim, info)
    return sim, info


def store_settings():
    password_file = DEMO / "vault-pass"
    password_file.write_text(secrets.token_urlsafe(24) + "\n")
    password_file.chmod(0o600)
    # A new store: the file store creates its folder only when asked (a missing folder is otherwise refused).
    return {"backend": "file", "file_path": str(DEMO / "store.vault"), "vault_password_file": str(password_file),
            "create_folder": True}


def write_inventory(groups):
    inventory = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                  "tokenops_report_dir": str(DEMO / "reports")},
                         "children": groups}}
    path = DEMO / "inventory.json"
    path.write_text(json.dumps(inventory, indent=2))
    return path


def run_job(inventory, env, label):
    """One run of the scheduled job; returns its report (the JSON the job wrote)."""
    log = DEMO / ("%s.log" % label)
    report_file = DEMO / "reports" / "tokenops-rotation.json"
    if report_file.exists():
        report_file.unlink()
    started = time.time()
    with open(log, "wb") as out:
        code = subprocess.call([str(BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / "playbooks" / "rotate.yml")],
                               cwd=str(DEMO), env=env, stdout=out, stderr=subprocess.STDOUT)
    if code != 0 or not report_file.exists():
        sys.stdout.write(log.read_text())
        sys.exit("%s failed (exit %d); the output is above and in %s" % (label, code, log))
    report = json.loads(report_file.read_text())
    print("  %s: %d tokens, %s in %.0f s (log: %s)" % (
        label, report["counts"]["tokens"], ", ".join("%d %s" % (n, a) for a, n in sorted(report["counts"]["by_action"].items())),
        time.time() - started, log.relative_to(REPO)))
    return report


MARK = {True: "FAIL", False: ""}


def print_report(report):
    """The report's rows as a table, then what needs a person in full."""
    header = ("", "product", "endpoint", "token", "action", "expires at", "time left")
    lines = []
    for row in report["rows"]:
        mark = "FAIL" if row["fails_job"] else ("TODO" if row["needs_person"] else ("*" if row["changed"] else ""))
        lines.append((mark, row["product_name"], row["endpoint"], row["token"], row["action"], row["expires_at"] or "",
                      row["time_left"]))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join("%%-%ds" % w for w in widths)
    print(fmt % header)
    print(fmt % tuple("-" * w for w in widths))
    for line in lines:
        print(fmt % line)
    items = report["needs_person"]
    if items:
        print()
        print("What needs a person (%d):" % len(items))
        for item in items:
            print("  - %s %s %s (%s)" % (item["product"], item["endpoint"], item["token"], ", ".join(item["conditions"])))
            for todo in item["todo"]:
                print(textwrap.fill(todo, width=110, initial_indent="      ", subsequent_indent="      ",
                                    break_long_words=False, break_on_hyphens=False))


def main():
    started = time.time()
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir(parents=True)
    sims = []
    try:
        store = store_settings()
        groups = {}
        env = dict(os.environ)
        env.setdefault("ANSIBLE_FORCE_COLOR", "0")
        for product in products():
            sim, info = start_simulator(product)
            sims.append((product, sim))
            groups[product.GROUP] = {"hosts": {"%s-demo" % product.GROUP: product.host_vars(info, store)}}
            env.update(product.environment(info))   # credentials through the environment, never the command line
        inventory = write_inventory(groups)

        print("tokenops.rotation demo: the scheduled job, playbooks/rotate.yml, over four simulated products")
        print()
        print("Run 1, with each simulator's clock standing back (DAS and DPA 20 h, Secret Server 25 min, Open Payments 15 min):")
        run_job(inventory, env, "run-1")
        for product, sim in sims:
            sim.clock.advance(product.ADVANCE)
        print("The clocks move forward to now, and tokens come due.")
        print("Run 2:")
        second = run_job(inventory, env, "run-2")
        print("Run 3, right after:")
        third = run_job(inventory, env, "run-3")
        print()
        print("The report of run 2, across products, most urgent first (* changed, TODO a person's task, FAIL fails the job):")
        print()
        print_report(second)
        print()
        changed = [r["token"] for r in third["rows"] if r["changed"]]
        if changed:
            sys.exit("the third run changed %s; it should have changed nothing" % ", ".join(changed))
        rotated = [r for r in second["rows"] if r["action"] in ("rotated", "updated")]
        if not rotated:
            sys.exit("the second run rotated nothing; the clocks did not bring any token due")
        print("Run 3 changed nothing (outcome: %s). Reports: %s/tokenops-rotation.{json,md,html,prom}" % (
            third["outcome"], (DEMO / "reports").relative_to(REPO)))
        entries = sorted(str(path.relative_to(REPO)) for path in (DEMO / "store.vault").rglob("*.vault"))
        print("The store is a folder with one ansible-vault file per token; open one with:")
        print("  .venv/bin/ansible-vault view --vault-password-file %s %s" % ((DEMO / "vault-pass").relative_to(REPO), entries[0]))
        print("(%.0f s)" % (time.time() - started))
    finally:
        for _product, sim in sims:
            sim.stop()


if __name__ == "__main__":
    main()
