"""Run a product simulator as a process (used by `make demo`).

    python -m tests.simulators das --port 0 --state-file F --info-file I [--tls] [--switch NAME=VALUE ...]

The info file (mode 0600) is JSON: {"product", "url", "admin_token", "ca_path", "pid"}. It is written once the
server listens, so its appearance means "ready". With --state-file the simulator keeps its tokens across
restarts, and the bootstrap administrator is seeded only on first start.

A product adds itself with `register()`: a builder (args -> simulator) and a bootstrap (simulator -> info fields).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Callable


@dataclass
class Product:
    name: str
    help: str
    build: Callable[[argparse.Namespace, dict], object]      # (args, switches) -> SimServer, not started
    bootstrap: Callable[[object], dict]                       # started simulator -> extra info fields


PRODUCTS: dict[str, Product] = {}


def register(product: Product) -> None:
    PRODUCTS[product.name] = product


# ---- DAS -----------------------------------------------------------------------------------

DAS_ADMIN_ID = "tokenops-admin"


def _build_das(args, switches):
    from tests.simulators.das import DasSimulator
    return DasSimulator(tls=args.tls, state_file=args.state_file, tls_dir=_tls_dir(args), **switches)


def _bootstrap_das(sim) -> dict:
    # Seed the administrator once; later starts reuse the (possibly rotated) secret kept in the state file.
    token = sim.token(DAS_ADMIN_ID)
    if token is None or sim.clock.now() >= token["expires"]:
        sim.seed_token(DAS_ADMIN_ID, roles=[("WorkspaceAdministrator", "workspace", "*")], description="tokenops demo administrator")
        token = sim.token(DAS_ADMIN_ID)
    return {"admin_token": token["secret"]}


register(Product("das", "Styra DAS API tokens and Authz v2 role bindings", _build_das, _bootstrap_das))


# ---- Open Payments -------------------------------------------------------------------------

def _build_openpayments(args, switches):
    from tests.simulators.openpayments import OpenPaymentsSimulator
    return OpenPaymentsSimulator(tls=args.tls, state_file=args.state_file, tls_dir=_tls_dir(args), **switches)


def _bootstrap_openpayments(sim) -> dict:
    # The demo client's key pair is made once and its public key published at its wallet address's jwks.json;
    # later starts reuse both from the state file.
    from tests.simulators.openpayments import demo_client
    return demo_client(sim)


register(Product("openpayments", "Open Payments wallet addresses, GNAP authorization server and a resource server",
                 _build_openpayments, _bootstrap_openpayments))


# ---- Delinea Secret Server -----------------------------------------------------------------

SECRETSERVER_USERS = (("svc-automation", None), ("svc-reports", "CORP"))
SECRETSERVER_PLATFORM_CLIENT = "svc-platform"


def _build_secretserver(args, switches):
    from tests.simulators.secretserver import SecretServerSimulator
    return SecretServerSimulator(tls=args.tls, state_file=args.state_file, tls_dir=_tls_dir(args), platform=True, **switches)


def _bootstrap_secretserver(sim) -> dict:
    # The API users and the platform's service user are seeded once; later starts keep them (and their sessions).
    import secrets as _secrets
    first = sim.users.get(SECRETSERVER_USERS[0][0])
    password = first["password"] if first else _secrets.token_urlsafe(18)
    for username, domain in SECRETSERVER_USERS:
        if username not in sim.users:
            sim.add_user(username, password, domain=domain)
    client_secret = sim.platform.service_users.get(SECRETSERVER_PLATFORM_CLIENT)
    if client_secret is None:
        client_secret = _secrets.token_urlsafe(24)
        sim.platform.add_service_user(SECRETSERVER_PLATFORM_CLIENT, client_secret)
    return {"url": sim.api_url, "platform_url": sim.platform_url, "password": password,
            "users": [{"username": u, "domain": d} for u, d in SECRETSERVER_USERS],
            "platform_client_id": SECRETSERVER_PLATFORM_CLIENT, "platform_client_secret": client_secret}


register(Product("secretserver", "Delinea Secret Server OAuth2 tokens, with the Delinea Platform host", _build_secretserver,
                 _bootstrap_secretserver))


# ---- DPA -----------------------------------------------------------------------------------

# The demo's refresh tokens, as an administrator would create them in DPA's web interface.
DPA_DEMO_TOKENS = (("reporting", 90 * 86400), ("archive", None))


def _build_dpa(args, switches):
    from tests.simulators.dpa import DpaSimulator
    return DpaSimulator(tls=args.tls, state_file=args.state_file, tls_dir=_tls_dir(args), **switches)


def _bootstrap_dpa(sim) -> dict:
    # Made once; later starts hand out the same (still working) tokens kept in the state file.
    tokens = {}
    for name, lifetime in DPA_DEMO_TOKENS:
        tokens[name] = sim.live_refresh_token(name) or sim.issue_refresh_token(name, lifetime=lifetime)
    return {"refresh_tokens": tokens}


register(Product("dpa", "SolarWinds DPA refresh tokens and the OAuth token exchange", _build_dpa, _bootstrap_dpa))


# ---- command line --------------------------------------------------------------------------

def _tls_dir(args) -> str | None:
    if args.tls_dir:
        return args.tls_dir
    # Beside the state file, so a restarted simulator keeps the CA its clients trust.
    return f"{args.state_file}.tls" if args.state_file else None


def _parse_switches(items: list[str]) -> dict:
    switches = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--switch expects NAME=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw   # plain strings need no JSON quotes: --switch partial_put=reset
        if isinstance(value, dict):   # JSON object keys are strings; status maps need ints
            value = {int(k) if str(k).isdigit() else k: v for k, v in value.items()}
        switches[name] = value
    return switches


def _write_private_json(path: str, document: dict) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.simulators", description="Run a product simulator.")
    products = parser.add_subparsers(dest="product", required=True, metavar="PRODUCT")
    for product in PRODUCTS.values():
        sub = products.add_parser(product.name, help=product.help)
        sub.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
        sub.add_argument("--state-file", help="JSON state file kept across restarts (holds secrets; mode 0600)")
        sub.add_argument("--info-file", required=True, help="where to write url, admin token and CA path (mode 0600)")
        sub.add_argument("--tls", action="store_true", help="serve HTTPS with a generated self-signed CA")
        sub.add_argument("--tls-dir", help="folder for the CA and server certificate (default: <state-file>.tls)")
        sub.add_argument("--switch", action="append", default=[], metavar="NAME=VALUE",
                         help="set a simulator switch; VALUE is JSON or a plain string")
        sub.add_argument("--log-level", default="WARNING", help="log level of the simulator's request log (stderr)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    product = PRODUCTS[args.product]
    sim = product.build(args, _parse_switches(args.switch))

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    url = sim.start(port=args.port)
    try:
        info = {"product": product.name, "url": url, "ca_path": sim.ca_path, "pid": os.getpid(), **product.bootstrap(sim)}
        _write_private_json(args.info_file, info)
        print(f"{product.name} simulator listening on {url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
