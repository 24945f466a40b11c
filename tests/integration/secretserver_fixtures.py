"""The Secret Server simulator for the integration tests, and the task and checks they share.

Every secret the simulator issues, every password and client secret, is a canary of the session-wide leak scan.
"""

import secrets

import pytest

import conftest
from ansible_collections.tokenops.rotation.plugins.module_utils.store import normalize_host
from tests.simulators.secretserver import SecretServerSimulator

USER = "svc-automation"
PLATFORM_CLIENT = "svc-platform"


class SecretServer:
    def __init__(self, sim, password, platform_secret):
        self.sim = sim
        self.url = sim.api_url
        self.password = password
        self.platform_secret = platform_secret
        # The store's host segments, as the module derives them from the URLs.
        self.host = normalize_host(sim.base_url)
        self.platform_host = normalize_host(sim.platform_url)

    def add_user(self, username, **options):
        """Another API user with its own password (a canary too)."""
        password = "pw-%s-%s" % (username, secrets.token_hex(8))
        self.sim.add_user(username, password, **options)
        conftest.CANARIES.add(password)
        return password

    def works(self, record):
        return self.sim.token_works((record or {}).get("secret"))


@pytest.fixture
def ss_factory():
    started = []

    def start(**settings):
        sim = SecretServerSimulator(platform=True, **settings)
        sim.start()
        password = "pw-%s" % secrets.token_hex(12)
        platform_secret = "cs-%s" % secrets.token_hex(12)
        sim.add_user(USER, password)
        sim.platform.add_service_user(PLATFORM_CLIENT, platform_secret)
        conftest.SIMULATORS.append(sim)
        conftest.CANARIES.update({password, platform_secret})
        started.append(sim)
        return SecretServer(sim, password, platform_secret)

    yield start
    for sim in started:
        conftest.CANARIES.update(sim.issued)
        sim.stop()


@pytest.fixture
def ss(ss_factory):
    return ss_factory()


def ss_task(ss, store, state="present", name="secretserver_token", **options):
    """A secretserver_token task for the simulator's user; the password comes from TSS_PASSWORD (ss_env)."""
    args = {"url": ss.url, "state": state, "store": dict(store.options)}
    if state != "absent" and "tokens" not in options and not options.get("platform"):
        args["username"] = USER
    args.update(options)
    return {"name": name, "tokenops.rotation.secretserver_token": args, "register": "r", "ignore_errors": True}


def platform_task(ss, store, state="present", **options):
    args = dict(url=ss.sim.platform_url, platform=True, username=PLATFORM_CLIENT, password=ss.platform_secret, id="platform", **options)
    return ss_task(ss, store, state=state, name="platform", **args)


def ss_env(ss, store):
    env = dict(store.env)
    env["TSS_PASSWORD"] = ss.password
    return env


def record_of(store, ss, token_id=USER):
    return store.entry("secretserver", ss.host, token_id) or {}


def assert_working_or_recorded(store, ss, result=None, token_id=USER):
    """The invariant after any fault: a working token, or the record says why (an intent, or a login is required),
    or the run said needs_reconcile / needs_interaction."""
    record = record_of(store, ss, token_id)
    if ss.works(record):
        return "working"
    assert record.get("pending") or record.get("login_required") \
        or (result or {}).get("action") in ("needs_reconcile", "needs_interaction"), \
        "a dead token in the store with no record of why: %s" % {k: v for k, v in record.items() if k not in ("secret", "refresh_token")}
    return "recorded"
