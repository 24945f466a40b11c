"""A store failure is told once: the product, then the store as the store names itself, then what failed.

Seen from outside: "Styra DAS: store (vault http://... mount secret): vault store (vault http://... mount secret): read ...".
"""

import socket

import pytest

import dpa_fixtures
import openpayments_fixtures
import secretserver_fixtures
from conftest import das_env, das_task

pytestmark = pytest.mark.integration
dpa, dpa_factory = dpa_fixtures.dpa, dpa_fixtures.dpa_factory                                   # the simulator fixtures
ss, ss_factory = secretserver_fixtures.ss, secretserver_fixtures.ss_factory
op, op_factory = openpayments_fixtures.op, openpayments_fixtures.op_factory


class DeadVault:
    """A vault store on a port where nothing listens: every read fails with "connection refused"."""

    def __init__(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.options = {"backend": "vault", "prefix": "t-messages", "timeout": 1}
        self.env = {"VAULT_ADDR": self.url, "VAULT_TOKEN": "not-a-real-vault-token"}


def task_for(product, request, store):
    if product == "das":
        das = request.getfixturevalue("das")
        return das_task(das, store, id="app", description="app", allow_path_patterns=["^/v1/tokens/.*"]), das_env(das, store)
    if product == "dpa":
        sim = request.getfixturevalue("dpa")
        return dpa_fixtures.dpa_task(sim, store, id="reporting", refresh_token=sim.issue("reporting")), dict(store.env)
    if product == "secretserver":
        sim = request.getfixturevalue("ss")
        return secretserver_fixtures.ss_task(sim, store), secretserver_fixtures.ss_env(sim, store)
    sim = request.getfixturevalue("op")
    return openpayments_fixtures.op_task(sim, store, id="app", access=sim.incoming), openpayments_fixtures.op_env(sim, store)


@pytest.mark.parametrize("product, name", [("das", "Styra DAS"), ("dpa", "SolarWinds DPA"),
                                           ("secretserver", "Delinea Secret Server"), ("openpayments", "Open Payments")])
def test_a_store_failure_names_the_store_once(runner, request, product, name):
    store = DeadVault()
    task, env = task_for(product, request, store)
    result = runner.run([task], env=env).result
    assert result["failed"], result
    msg = result["msg"]
    assert msg.startswith("%s: vault store (vault %s mount secret): " % (name, store.url)), msg
    assert msg.count("mount secret") == 1 and msg.count("store (") == 1 and msg.count(name) == 1, msg
    assert "connection refused" in msg, msg
