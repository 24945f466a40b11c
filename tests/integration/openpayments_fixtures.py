"""The Open Payments simulator and a client identity for the integration tests (imported by test_openpayments_*.py)."""

import base64
import hashlib
import urllib.parse

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import conftest
from ansible_collections.tokenops.rotation.plugins.module_utils.store import normalize_host
from tests.simulators.openpayments import OpenPaymentsSimulator

KEY_ID = "tokenops-test-key"

INCOMING = [{"type": "incoming-payment", "actions": ["create", "read", "list"]},
            {"type": "quote", "actions": ["create", "read"]}]


def new_key():
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"kid": KEY_ID, "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    return key, pem, jwk


def pem_canary(pem):
    """The base64 body of a PEM: what a leak of the key would show."""
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


class Op:
    def __init__(self, sim, pem, jwk):
        self.sim = sim
        self.url = sim.grant_url
        self.pem = pem
        self.jwk = jwk
        self.client = sim.add_wallet("client", public_name="tokenops tests", keys=[jwk])
        self.alice = sim.add_wallet("alice", public_name="Alice")
        self.shop = sim.add_wallet("shop", public_name="Shop")
        self.host = normalize_host(self.url)
        # A call the resource server answers for the `incoming` grant below: list the shop's incoming payments.
        self.rs = sim.resource_server + "/incoming-payments?wallet-address=" + urllib.parse.quote(self.shop, safe="")

    @property
    def outgoing(self):
        return [{"type": "outgoing-payment", "actions": ["create", "read"], "identifier": self.alice,
                 "limits": {"interval": "R12/2026-01-01T00:00:00Z/P1M", "debitAmount": {"value": "500", "assetCode": "USD", "assetScale": 2}}}]

    @property
    def incoming(self):
        return [dict(INCOMING[0], identifier=self.shop), INCOMING[1]]

    def canaries(self):
        return set(self.sim.issued) | {pem_canary(self.pem)}


@pytest.fixture
def op_factory():
    started = []

    def start(**switches):
        switches.setdefault("wait", 0)
        sim = OpenPaymentsSimulator(**switches)
        sim.start()
        _key, pem, jwk = new_key()
        op = Op(sim, pem, jwk)
        conftest.SIMULATORS.append(sim)
        started.append(op)
        return op

    yield start
    for op in started:
        conftest.CANARIES.update(op.canaries())
        op.sim.stop()


@pytest.fixture
def op(op_factory):
    return op_factory()


def op_task(op, store, state="present", **options):
    """An openpayments_token task: the simulator's grant URL, the client identity, the store and the given options."""
    args = {"url": op.url, "client_wallet_address": op.client, "key_id": KEY_ID, "state": state, "store": dict(store.options)}
    args.update(options)
    return {"name": "openpayments_token", "tokenops.rotation.openpayments_token": args, "register": "r", "ignore_errors": True}


def op_env(op, store):
    env = dict(store.env)
    env["OPEN_PAYMENTS_PRIVATE_KEY"] = op.pem    # credentials through the environment, never the command line
    return env


def run_op(runner, op, store, check=False, diff=False, env=None, **options):
    run = runner.run([op_task(op, store, **options)], env=env if env is not None else op_env(op, store), check=check, diff=diff)
    assert run.results, run
    return run.result


def record_of(store, op, grant_id="app"):
    return store.entry("openpayments", op.host, grant_id) or {}


def assert_idempotent(runner, op, store, **options):
    """A second run: changed false, and neither the simulator nor the store saw a write."""
    op.sim.reset_counts()
    writes = store.writes()
    result = run_op(runner, op, store, **options)
    assert result["changed"] is False, result
    actions = [result["action"]] if "action" in result else [r["action"] for r in result["results"]]
    assert set(actions) == {"none"}, result
    assert op.sim.count(writes_only=True) == 0, [(r.method, r.path) for r in op.sim.requests]
    assert store.writes() == writes
    return result


def lookup(runner, op, store, grant_id="app"):
    """What a consumer's playbook gets from the tokenops.rotation.token lookup: ("token", value) or ("refused", msg).

    The playbook only shows the token's SHA-256 (the token itself would be a leak); it is matched among the tokens the
    simulator issued.
    """
    term = "openpayments/%s/%s" % (op.host, grant_id)
    task = {"name": "consumer", "ignore_errors": True, "ansible.builtin.set_fact": {
        "seen": "{{ lookup('tokenops.rotation.token', %r, store=%r) | hash('sha256') }}" % (term, dict(store.options))}}
    run = runner.run([task], env=dict(store.env))
    assert run.results, run
    result = run.result
    if result.get("failed"):
        return ("refused", result.get("msg", ""))
    digest = result["ansible_facts"]["seen"]
    found = [value for value in set(op.sim.issued) if hashlib.sha256(value.encode()).hexdigest() == digest]
    assert found, "the lookup returned a value the simulator never issued"
    return ("token", found[0])
