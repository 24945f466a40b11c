"""The SolarWinds DPA simulator for the integration tests, and helpers to run dpa_refresh_token tasks.

Every secret the simulator issues (refresh and access tokens) is registered in conftest.CANARIES at
teardown, so the session-wide scan fails if one shows up in any output.
"""

import base64
import json
import time

import pytest

import conftest
from ansible_collections.tokenops.rotation.plugins.module_utils.store import normalize_host
from tests.simulators.dpa import DpaSimulator

DAY = 86400
MODULE = "tokenops.rotation.dpa_refresh_token"


class Dpa:
    def __init__(self, sim):
        self.sim = sim
        self.url = sim.base_url
        self.ca_path = sim.ca_path
        # The store's host segment: the URL's host and port, as the module derives it.
        self.host = normalize_host(self.url)
        self.extra_canaries = set()

    def issue(self, name, days=90, never=False, seconds=None, iat=True):
        """A refresh token as an administrator makes it in DPA's web interface."""
        lifetime = None if never else (seconds if seconds is not None else days * DAY)
        return self.sim.issue_refresh_token(name, lifetime=lifetime, iat=iat)

    def forged(self, name="forged", days=90):
        """A well-formed JWT that DPA never issued (signed with another key): bad, but not bad input."""
        def part(obj):
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
        now = int(time.time())
        token = "%s.%s.%s" % (part({"alg": "HS256"}), part({"sub": name, "iat": now, "exp": now + days * DAY}),
                              base64.urlsafe_b64encode(b"x" * 32).rstrip(b"=").decode())
        self.extra_canaries.add(token)
        return token

    def posts(self):
        """Exchanges seen since the last reset_counts()."""
        return self.sim.count("POST", "/iwc/api/security/oauth/token")


@pytest.fixture
def dpa_factory():
    started = []

    def start(**switches):
        sim = DpaSimulator(tls=True, **switches)
        sim.start()
        conftest.SIMULATORS.append(sim)
        dpa = Dpa(sim)
        started.append(dpa)
        return dpa

    yield start
    for dpa in started:
        conftest.CANARIES.update(dpa.sim.issued)
        conftest.CANARIES.update(dpa.extra_canaries)
        dpa.sim.stop()


@pytest.fixture
def dpa(dpa_factory):
    return dpa_factory()


def dpa_task(dpa, store, state="present", name="dpa", **options):
    """A dpa_refresh_token task against the simulator (its CA trusted) with the given store."""
    args = {"url": dpa.url, "ca_path": dpa.ca_path, "state": state, "store": dict(store.options)}
    args.update(options)
    return {"name": name, MODULE: args, "register": "r", "ignore_errors": True}


def run_dpa(runner, dpa, store, check=False, diff=False, **options):
    run = runner.run([dpa_task(dpa, store, **options)], env=dict(store.env), check=check, diff=diff)
    assert run.results, run
    return run.result


def record_of(store, dpa, token_id="reporting"):
    return store.entry("dpa", dpa.host, token_id) or {}


def assert_idempotent(runner, dpa, store, **options):
    """A run with nothing to do: changed false, no exchange, no write to the simulator or the store."""
    dpa.sim.reset_counts()
    writes = store.writes()
    result = run_dpa(runner, dpa, store, **options)
    assert result["changed"] is False and not result["failed"], result
    actions = [r["action"] for r in result["results"]] if "results" in result else [result["action"]]
    assert set(actions) == {"none"}, result
    assert dpa.sim.count(writes_only=True) == 0, [(r.method, r.path) for r in dpa.sim.requests]
    assert store.writes() == writes
    return result


def raw_store(store):
    """The collection's own store client on the test's store, for writing records as another run left them."""
    from ansible_collections.tokenops.rotation.plugins.module_utils.store import resolve_store_params, store_from_params
    options = dict(store.options)
    if store.backend == "vault":
        options.update(url=store.bao.url, token=store.bao.token)
    return store_from_params(resolve_store_params(options))


def write_record(store, dpa, record, token_id="reporting"):
    """Put a record into the store directly (check-and-set on what is there), the way a killed run leaves it."""
    raw = raw_store(store)
    path = "%s/dpa/%s/%s" % (store.prefix, dpa.host, token_id)
    return raw.write(path, record, raw.read(path).version)


# The options of the lookups with their documented defaults, for running them in process.
LOOKUP_DEFAULTS = {
    "token": {"key": "secret", "allow_pending": False},
    "dpa_access_token": {"validate_certs": True, "ca_path": None, "timeout": 30, "retries": 3, "renew_before": "60s", "probe": True},
}


def lookup(name, terms, store, **options):
    """Run the collection's lookup `name` in process, as a consumer's task would; AnsibleLookupError when it refuses.

    Ansible's option plumbing needs the plugin loader, so the options are handed over as resolved values.
    """
    import importlib
    plugin = importlib.import_module("ansible_collections.tokenops.rotation.plugins.lookup.%s" % name).LookupModule
    store_options = dict(store.options)
    if store.backend == "vault":
        store_options.update(url=store.bao.url, token=store.bao.token)
    values = dict(LOOKUP_DEFAULTS[name], store=store_options, **options)

    class InProcess(plugin):
        def set_options(self, task_keys=None, var_options=None, direct=None):
            pass

        def get_option(self, option, hostvars=None):
            return values[option]

    return InProcess().run(terms, variables={})
