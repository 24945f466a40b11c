"""Bad input to every module and lookup: one clear message naming the option, before any request (issue 12).

Every module runs in-process (Ansible's own patch_module_args, main(), the JSON it prints), every lookup
through Ansible's lookup loader. The product simulators run in this process; the store is a file store
whose every operation is counted and whose file must never appear, or a vault store pointing at a
loopback server that records every request. A case passes only when:

- the run failed with a message that names the option (each part of its dotted name);
- the message is not the module base's "unexpected error" (which keeps a traceback for -vvv);
- no simulator, no HttpClient and no store saw a request, and the store file does not exist;
- a long value is not echoed whole.

`test_good_input_reaches_the_products` runs each target's base arguments and proves the counters see
traffic, so a bad value that slipped through would be caught. The explicit cases hold every input of
issue 12; the hypothesis tests generate more (derandomized, a bounded number of examples, no deadline).
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import io
import json
import os
import shutil
import threading
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import yaml
from ansible.module_utils import _internal as module_internal
from ansible.module_utils._internal import _traceback
from ansible.module_utils.testing import patch_module_args

from ansible_collections.tokenops.rotation.plugins.doc_fragments import store as store_fragment
from ansible_collections.tokenops.rotation.plugins.module_utils import http_client
from ansible_collections.tokenops.rotation.plugins.module_utils import module as module_base
from ansible_collections.tokenops.rotation.plugins.module_utils import store as store_module
from tests.simulators.base import SimServer
from tests.simulators.das import DasSimulator
from tests.simulators.dpa import DpaSimulator
from tests.simulators.openpayments import OpenPaymentsSimulator
from tests.simulators.secretserver import SecretServerSimulator

MODULES = "ansible_collections.tokenops.rotation.plugins.modules."
LOOKUPS = "ansible_collections.tokenops.rotation.plugins.lookup."
ENV_PREFIXES = ("VAULT_", "STYRA_", "TSS_", "OPEN_PAYMENTS_", "DPA_URL", "TOKENOPS_", "ANSIBLE_VAULT_PASSWORD_FILE",
                "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
LONG = "x" * 10000
KEY_ID = "tokenops-test-key"

CHANGING = ("das_token", "dpa_refresh_token", "secretserver_token", "openpayments_token")
INFO = ("das_token_info", "dpa_refresh_token_info", "secretserver_token_info", "openpayments_token_info")
WITH_POLICY = ("das_token", "das_token_info", "secretserver_token", "secretserver_token_info", "openpayments_token",
               "openpayments_token_info")
LOOKUP_TARGETS = ("token", "dpa_access_token")
DELETE = object()


# ---------------------------------------------------------------- the world the runs see

class World:
    """The simulators, the store settings, and every counter of traffic."""

    def __init__(self, folder):
        self.das = DasSimulator()
        self.dpa = DpaSimulator(tls=True)
        self.ss = SecretServerSimulator()
        self.op = OpenPaymentsSimulator(wait=0)
        self.vault = SimServer()          # answers 404 to everything, and records it
        self.sims = [self.das, self.dpa, self.ss, self.op, self.vault]
        for sim in self.sims:
            sim.start()
        self.folder = folder
        # The volume exists (a missing one is refused, and that is a check of its own); the store in it must never appear.
        self.store_file = folder / "volume" / "store.vault"
        self.store_file.parent.mkdir()
        self.password_file = folder / "vault-pass"
        self.password_file.write_text("pw-bad-input\n")
        self.missing_file = str(folder / "missing.pem")
        self.a_directory = str(folder)
        self.file_store = {"backend": "file", "file_path": str(self.store_file), "vault_password_file": str(self.password_file),
                           "timeout": 2}
        self.vault_store = {"backend": "vault", "url": self.vault.base_url, "token": "s.bad-input-token", "timeout": 2}
        self._lock = threading.Lock()
        self.store_ops = []
        self.http_requests = []
        key = ed25519.Ed25519PrivateKey.generate()
        self.op_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kid": KEY_ID, "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).decode().rstrip("=")}
        self.op_client = self.op.add_wallet("client", public_name="bad input tests", keys=[jwk])

    def stop(self):
        for sim in self.sims:
            sim.stop()

    def reset(self):
        for sim in self.sims:
            sim.reset_counts()
        with self._lock:
            self.store_ops.clear()
            self.http_requests.clear()
        # A case that wrote the store has failed already; the next one starts without the file.
        shutil.rmtree(str(self.store_file.parent), ignore_errors=True)
        self.store_file.parent.mkdir()

    def record_store(self, method, path):
        with self._lock:
            self.store_ops.append((method, path))

    def record_http(self, method, path):
        with self._lock:
            self.http_requests.append((method, path))

    def traffic(self):
        """Everything any product or store saw since the last reset."""
        seen = {sim.name: [(r.method, r.path) for r in sim.requests] for sim in self.sims if sim.count()}
        if self.store_ops:
            seen["store operations"] = list(self.store_ops)
        if self.http_requests:
            seen["HttpClient requests"] = list(self.http_requests)
        if any(self.store_file.parent.iterdir()):
            seen["store files"] = sorted(p.name for p in self.store_file.parent.iterdir())
        return seen


def refresh_jwt(name="reporting"):
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    now = int(time.time())
    return "%s.%s.%s" % (part({"alg": "HS256", "typ": "JWT"}), part({"sub": name, "iat": now, "exp": now + 90 * 86400}), "c2lnbmF0dXJl")


def base_args(world, target):
    """Arguments a target accepts: with them it goes on to read the store or ask the product."""
    store = dict(world.file_store)
    if target == "das_token":
        return {"url": world.das.base_url, "api_token": "das-admin-bad-input", "id": "app", "allow_path_patterns": ["^/v1/data/.*"],
                "ttl": "24h", "store": store}
    if target == "das_token_info":
        return {"url": world.das.base_url, "api_token": "das-admin-bad-input", "store": store}
    if target == "dpa_refresh_token":
        return {"url": world.dpa.base_url, "ca_path": world.dpa.ca_path, "id": "reporting", "refresh_token": refresh_jwt(), "store": store}
    if target == "dpa_refresh_token_info":
        return {"url": world.dpa.base_url, "ca_path": world.dpa.ca_path, "store": store}
    if target == "secretserver_token":
        return {"url": world.ss.api_url, "username": "svc-automation", "password": "never-sent-password", "store": store}
    if target == "secretserver_token_info":
        return {"url": world.ss.api_url, "store": store}
    if target == "openpayments_token":
        return {"url": world.op.grant_url, "client_wallet_address": world.op_client, "key_id": KEY_ID, "private_key": world.op_key,
                "id": "app", "access": [{"type": "quote", "actions": ["create", "read"]}], "store": store}
    if target == "openpayments_token_info":
        return {"url": world.op.grant_url, "store": store}
    if target == "token":
        return {"_terms": ["das/example.styra.com/app"], "store": dict(world.vault_store)}
    if target == "dpa_access_token":
        return {"_terms": ["reporting"], "url": world.dpa.base_url, "ca_path": world.dpa.ca_path, "store": dict(world.vault_store)}
    raise AssertionError(target)


def with_option(args, path, value):
    """args with the option at a dotted path set (or removed with DELETE); a store option keeps the other store settings."""
    args = json.loads(json.dumps(args))
    *parents, leaf = path.split(".")
    holder = args
    for name in parents:
        if not isinstance(holder.get(name), dict):
            holder[name] = {}
        holder = holder[name]
    if value is DELETE:
        holder.pop(leaf, None)
    else:
        holder[leaf] = value
    return args


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        # Importing Ansible's controller side (the lookups need it) switches module_utils into controller
        # mode for the whole process (warnings go to a display, not the result). Undone when this module ends,
        # so that the module tests collected after it see what a module process sees.
        mp.setattr(module_internal, "is_controller", module_internal.is_controller)
        mp.setattr(_traceback, "_is_traceback_enabled", _traceback._is_traceback_enabled)
        for name in list(os.environ):
            if name.startswith(ENV_PREFIXES):
                mp.delenv(name)
        world = World(tmp_path_factory.mktemp("bad-input"))
        real_store_from_params = store_module.store_from_params
        real_request = http_client.HttpClient.request

        def counted_store(params, request_log=None):
            return real_store_from_params(params, request_log=world.record_store)

        def counted_request(self, step, method, path, *args, **kwargs):
            world.record_http(method, path)
            return real_request(self, step, method, path, *args, **kwargs)

        mp.setattr(module_base, "store_from_params", counted_store)
        mp.setattr(http_client.HttpClient, "request", counted_request)
        for name in LOOKUP_TARGETS:
            mp.setattr(importlib.import_module(LOOKUPS + name), "store_from_params", counted_store)
        try:
            yield world
        finally:
            world.stop()


# ---------------------------------------------------------------- running a target

class _Fragments:
    """The doc fragments the lookups extend, for their option definitions (what Ansible's plugin loader reads)."""

    @staticmethod
    def get(name):
        if name != "tokenops.rotation.store":
            return None
        return type("ModuleDocFragment", (store_fragment.ModuleDocFragment,), {"ansible_name": name})


def lookup_plugin(target):
    """The lookup as Ansible's plugin loader sets it up: its options defined from DOCUMENTATION and its doc fragments.

    (The loader itself needs the collection finder installed before this collection is first imported,
    which the unit tests import from the work tree.)
    """
    from ansible import constants as C
    from ansible.utils.plugin_docs import add_fragments

    plugin = importlib.import_module(LOOKUPS + target)
    if not C.config.has_configuration_definition("lookup", plugin.__name__):
        doc = yaml.safe_load(plugin.DOCUMENTATION)
        add_fragments(doc, plugin.__file__, fragment_loader=_Fragments(), is_module=False)
        C.config.initialize_plugin_configuration_definitions("lookup", plugin.__name__, doc["options"])
    lookup = plugin.LookupModule()
    lookup._load_name = plugin.__name__   # set by the plugin loader: the name its options are defined under
    lookup.ansible_name = "tokenops.rotation." + target
    return lookup


@contextlib.contextmanager
def process_side(controller):
    """What Ansible's module_utils see in a module process (controller=False) or in ansible-playbook (True)."""
    from ansible.utils import display   # noqa: F401  (the controller's traceback switch)
    saved = module_internal.is_controller, _traceback._is_traceback_enabled
    module_internal.is_controller = controller
    if not controller:
        _traceback._is_traceback_enabled = _traceback._is_module_traceback_enabled
    try:
        yield
    finally:
        module_internal.is_controller, _traceback._is_traceback_enabled = saved


def run_target(target, args):
    """(failed, message, result) of one in-process run of a module or lookup."""
    from ansible.errors import AnsibleError

    if target in LOOKUP_TARGETS:
        args = dict(args)
        terms = args.pop("_terms")
        with process_side(controller=True):
            lookup = lookup_plugin(target)
            try:
                values = lookup.run(terms, variables={}, **args)
            except AnsibleError as exc:
                return True, str(exc), {"msg": str(exc)}
        return False, None, {"values": values}
    out = io.StringIO()
    with process_side(controller=False), patch_module_args(args), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        importlib.import_module(MODULES + target).main()
    result = json.loads(out.getvalue())
    return bool(result.get("failed")), result.get("msg"), result


def assert_refused(world, target, args, option, value=None):
    world.reset()
    failed, msg, result = run_target(target, args)
    where = "%s, %s=%s" % (target, option, _short(value))
    assert failed, (where, result)
    assert isinstance(msg, str) and msg, (where, result)
    assert "unexpected error" not in msg and "exception" not in result, (where, msg, result.get("exception"))
    assert "Traceback" not in msg, (where, msg)
    for part in option.split("."):
        assert part.lstrip("_") in msg, (where, "the message does not name %s" % option, msg)
    assert not world.traffic(), (where, msg, world.traffic())
    for text in _long_strings(value):
        assert text not in msg, (where, "a long value is echoed whole", msg[:300])
        assert len(msg) < len(text), (where, "a long value makes the message long", len(msg))
    return msg


def _long_strings(value):
    if isinstance(value, str):
        return [value] if len(value) > 200 else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _long_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _long_strings(v)]
    return []


def _short(value):
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


# ---------------------------------------------------------------- good input reaches the products

@pytest.mark.parametrize("target", CHANGING + INFO + LOOKUP_TARGETS)
def test_good_input_reaches_the_products(world, target):
    """The counters work: with the base arguments each target reads the store or asks its product."""
    world.reset()
    run_target(target, base_args(world, target))
    assert world.traffic(), target
    world.reset()


# ---------------------------------------------------------------- every input issue 12 lists, and more

def _explicit_cases():
    """(target, option, value, store base) of every input issue 12 lists, on every target that has the option."""
    cases = []
    # das_token: items of role_bindings that are no dictionary (a traceback: 'str' object has no attribute 'get')
    for value in (["SystemOPA"], [None], [5], [{"role_id": "SystemOPA", "resource_kind": "system", "resource_id": 5, "colour": 1}]):
        cases.append(("das_token", "role_bindings", value, None))
        cases.append(("das_token", "tokens", [{"id": "app", "role_bindings": value}], None))
    cases.append(("das_token", "tokens", [["app"]], None))
    cases.append(("das_token", "tokens", [None], None))
    cases.append(("das_token", "tokens", [{"id": "app", "allow_path_patterns": [5]}], None))
    # das_token does not check url ("12345" gave MissingSchema); a bracket left open ("Invalid IPv6 URL", naming no option)
    modules = CHANGING + INFO
    for target in modules + ("dpa_access_token",):
        for value in ("12345", 12345, "http://[::1", "http://[::1]x", "http://[zz::1]:8/", "https://host:99999/", "https://host:port/",
                      "http://127.0.0.1:%d/?x=1", "http://127.0.0.1:%d/#frag", "http://user:pw@127.0.0.1:%d/", "", "   ",
                      "ftp://host/", "https://", "https://exa mple.com/", "https://a..b/", "https://" + LONG, LONG):
            if "%d" in str(value):
                value = value % 9
            cases.append((target, "url", value, None))
        # ca_path pointing at a missing file (OSError from requests); timeout -5 (ValueError from urllib3)
        cases.append((target, "ca_path", "/nonexistent/ca.pem", None))
        cases.append((target, "ca_path", "", None))
        for value in (-5, 0, "-5", "soon", float("nan"), float("inf"), 1e12, LONG):
            cases.append((target, "timeout", value, None))
        for value in (-1, 1000, "three"):
            cases.append((target, "retries", value, None))
        # the store's own settings: checked before anything is read or sent
        for value in (-1, 0, "ten", 10 ** 9):
            cases.append((target, "store.timeout", value, "file"))
            cases.append((target, "store.timeout", value, "vault"))
        for value in ("http://[::1", "http://127.0.0.1:9/?x=1", "vault.example.com:8200", LONG, 5):
            cases.append((target, "store.url", value, "vault"))
        cases.append((target, "store.ca_cert", "/nonexistent/ca.pem", "vault"))
        cases.append((target, "store.prefix", "a/../b", "file"))
        cases.append((target, "store.prefix", "a/../b", "vault"))
        cases.append((target, "store.backend", "consul", "file"))
        cases.append((target, "store.vault_password_file", "/nonexistent/pass", "file"))
        cases.append((target, "store.host", "a/b", "file"))
        cases.append((target, "store", "vault", None))
    for target in CHANGING:
        for value in ("", "soon", "-5", "101%", "-1%", "abc%", LONG):
            if target in WITH_POLICY:
                cases.append((target, "rotate_before", value, None))
                cases.append((target, "max_age", value if value != "101%" else "20%", None))
        for value in (0, -1, "many", 10 ** 6):
            cases.append((target, "concurrency", value, None))
        for value in ("", "soon", "0s", -5, LONG):
            cases.append((target, "lease", value, None))
            cases.append((target, "lock_timeout", value, None))
        cases.append((target, "return_secret", True, None))
    for target in ("das_token_info", "secretserver_token_info", "openpayments_token_info"):
        cases.append((target, "rotate_before", "", None))
        cases.append((target, "max_age", "soon", None))
    # a username of blanks was sent to Secret Server
    for value in ("   ", "\t", " svc-automation", "svc\nautomation"):
        cases.append(("secretserver_token", "username", value, None))
        cases.append(("secretserver_token", "tokens", [{"username": value, "password": "never-sent-password"}], None))
    cases.append(("secretserver_token", "domain", "  ", None))
    cases.append(("secretserver_token", "max_refreshes", -1, None))
    # a dpa_access_token term of None or 5
    for value in ([None], [5], [""], ["a b"], ["a/../b"], [["reporting"]], [{"id": "reporting"}]):
        cases.append(("dpa_access_token", "_terms", value, None))
    for value in ([None], [5], [""], ["a/../b"]):
        cases.append(("token", "_terms", value, None))
    for value in ("", "soon", -5, LONG):
        cases.append(("dpa_access_token", "renew_before", value, None))
    for name in ("validate_certs", "probe"):
        cases.append(("dpa_access_token", name, "sometimes", None))
    cases.append(("token", "allow_pending", "sometimes", None))
    cases.append(("token", "key", "", None))
    for value in ("http://[::1", "http://127.0.0.1:9/?x=1", 5):
        cases.append(("token", "store.url", value, "vault"))
    for value in (-1, "ten"):
        cases.append(("token", "store.timeout", value, "vault"))
        cases.append(("token", "store.timeout", value, "file"))
    cases.append(("token", "store.ca_cert", "/nonexistent/ca.pem", "vault"))
    cases.append(("token", "store", "vault", None))
    # long values of product options are cut in messages
    cases += [("das_token", "id", "a b" + LONG, None), ("das_token", "ttl", LONG, None), ("das_token", "grace_period", LONG, None),
              ("das_token", "allow_path_patterns", ["(" + LONG], None), ("das_token", "state", LONG, None),
              ("das_token", "overlap_id", "a b" + LONG, None), ("das_token", "store_path", "a/../" + LONG, None),
              ("das_token_info", "ids", ["a b" + LONG], None), ("das_token_info", "query", "[?" + LONG, None),
              ("dpa_refresh_token", "id", "a b" + LONG, None), ("dpa_refresh_token", "warn_before", LONG, None),
              ("dpa_refresh_token", "access_token_renew_before", LONG, None), ("dpa_refresh_token_info", "ids", ["a b" + LONG], None),
              ("secretserver_token", "state", LONG, None), ("openpayments_token", "key_id", 'bad"' + LONG, None),
              ("openpayments_token", "poll_timeout", LONG, None), ("openpayments_token", "client_wallet_address", LONG, None),
              ("openpayments_token", "finish_uri", LONG, None), ("openpayments_token", "access", [{"type": LONG, "actions": ["read"]}], None)]
    return cases


EXPLICIT = _explicit_cases()


def _prepare(world, target, option, value, store):
    args = base_args(world, target)
    if store == "vault":
        args["store"] = dict(world.vault_store)
    elif store == "file":
        args["store"] = dict(world.file_store)
    if option == "private_key_path":
        args.pop("private_key")
    if option == "tokens":
        args.pop("id", None)
    if option == "store.vault_password_file":
        args["store"].pop("vault_password", None)
    return with_option(args, option, value)


@pytest.mark.parametrize("target, option, value, store", EXPLICIT,
                         ids=["%s-%s=%s" % (t, o, _short(v)[:40]) for t, o, v, _s in EXPLICIT])
def test_bad_input_refused_before_any_request(world, target, option, value, store):
    assert_refused(world, target, _prepare(world, target, option, value, store), option, value)


def test_das_token_info_checks_the_store_before_it_reads_das(world):
    """das_token_info listed DAS's tokens before it checked the store settings."""
    args = with_option(base_args(world, "das_token_info"), "store.prefix", "a/../b")
    msg = assert_refused(world, "das_token_info", args, "store.prefix")
    assert "a/../b" in msg


def test_timeout_message_is_ours(world):
    """Not urllib3's "Attempted to set connect timeout to -5.0"."""
    for target in INFO + ("dpa_refresh_token",):
        msg = assert_refused(world, target, with_option(base_args(world, target), "timeout", -5), "timeout")
        assert "Attempted to set" not in msg and "greater than 0" in msg, msg


def test_a_check_that_crashes_is_reported_as_a_bug(world, monkeypatch):
    """The catch-all still catches a bug in a check; what the property tests forbid is any input reaching it."""
    def broken(self):
        raise KeyError("broken check")
    monkeypatch.setattr(importlib.import_module(MODULES + "das_token_info").DasTokenInfoModule, "validate", broken)
    # Tracebacks on, as ansible-playbook asks with DISPLAY_TRACEBACK (the module reads it once, from its arguments).
    monkeypatch.setattr(_traceback, "_module_tracebacks_enabled_events", None)
    world.reset()
    args = dict(base_args(world, "das_token_info"), _ansible_tracebacks_for=["error"])
    failed, msg, result = run_target("das_token_info", args)
    assert failed and "unexpected error: KeyError: 'broken check'" in msg, result
    assert "Traceback" in result.get("exception", "") and "broken check" in result["exception"], result
    assert not world.traffic()


@pytest.mark.parametrize("target", CHANGING + INFO)
@pytest.mark.parametrize("option, value", [("timeout", -5), ("retries", "many"), ("store.prefix", "a/../b")],
                         ids=["our check", "ansible's check", "a store setting"])
def test_bad_input_carries_no_traceback_with_tracebacks_on(world, monkeypatch, target, option, value):
    """ANSIBLE_DISPLAY_TRACEBACK=error is for bugs: bad input gets its clear message and no traceback in the result."""
    monkeypatch.setattr(_traceback, "_module_tracebacks_enabled_events", None)
    world.reset()
    args = dict(with_option(base_args(world, target), option, value), _ansible_tracebacks_for=["error"])
    failed, msg, result = run_target(target, args)
    assert failed and option.split(".")[-1] in msg, result
    assert "exception" not in result, (target, option, result.get("exception"))
    assert not world.traffic()


# ---------------------------------------------------------------- generated bad input

def _text(alphabet, min_size=1, max_size=12):
    return st.text(alphabet=alphabet, min_size=min_size, max_size=max_size)


NOT_STRINGS = st.one_of(st.lists(st.integers(), min_size=1, max_size=2), st.dictionaries(_text("abc"), st.integers(), min_size=1, max_size=2))
CONTROL = st.builds(lambda a, c, b: a + c + b, _text("abc", 0, 4), st.sampled_from(["\n", "\r", "\x00", "\x1b", "\t"]), _text("abc", 0, 4))
HOSTS = st.sampled_from(["127.0.0.1", "localhost", "example.com", "[::1]"])


def bad_urls(world_port=9):
    """Strings and values that are no http(s) URL of a server, as the url options must be."""
    return st.one_of(
        _text("abcdefghijklmnopqrstuvwxyz0123456789.:-/", 0, 30).filter(lambda s: "://" not in s),   # no scheme
        st.builds(lambda s, h: "%s://%s/" % (s, h), st.sampled_from(["ftp", "file", "ws", "htp", "javascript"]), HOSTS),
        st.builds(lambda h, q: "http://%s:%d/path?%s" % (h, world_port, q), HOSTS, _text("abc=&", 0, 8)),   # a query
        st.builds(lambda h, f: "http://%s:%d/#%s" % (h, world_port, f), HOSTS, _text("abc", 0, 8)),         # a fragment
        st.builds(lambda u, h: "https://%s@%s/" % (u, h), _text("abc:", 1, 8), HOSTS),                    # user info
        st.builds(lambda h, p: "https://%s:%s/" % (h, p), HOSTS,
                  st.one_of(st.integers(min_value=65536, max_value=10 ** 9).map(str), st.just("0"), _text("abcx-", 1, 5))),
        st.builds(lambda a: "http://[%s" % a, _text("0123456789abcdef:", 0, 10)),                         # bracket left open
        st.builds(lambda a: "http://[%s]/" % a, _text("ghijklmnopqrstuvwxyz.", 1, 10)),                   # no IPv6 address
        st.builds(lambda h: "https://%s/" % h, st.sampled_from(["a..b", "-a.com", "a b", "a_b!c", ".", "a" * 64 + ".com"])),
        st.builds(lambda c: "https://example.com/%s" % c, CONTROL),
        st.sampled_from(["", " ", "https://", "http:///x", "https:/example.com", "https//example.com"]),
        st.integers(), NOT_STRINGS,
    )


def bad_durations():
    return st.one_of(
        _text("abcefgijklnopqrtuvxyz !?-+", 1, 10),      # no unit letter or digit a duration has
        st.builds(lambda n, u: "%d%s" % (n, u), st.integers(max_value=-1), st.sampled_from(["", "s", "m", "h", "d"])),
        st.builds(lambda n, u: "%d %s" % (n, u), st.integers(min_value=1, max_value=99), st.sampled_from(["s", "m", "h", "d"])),
        st.builds(lambda n: "%dd" % n, st.integers(min_value=36501, max_value=10 ** 12)),
        st.sampled_from(["", " ", "1e3", "nan", "inf", "1h-5m", "h1", "1.5.5s", "5x"]),
        st.integers(max_value=-1), NOT_STRINGS,
    )


def bad_timeouts():
    return st.one_of(st.floats(max_value=0), st.floats(min_value=86400.5, allow_infinity=True), st.just(float("nan")),
                     _text("abcxyz ", 1, 8), NOT_STRINGS)


def bad_counts(minimum=0, maximum=100):
    too_big = [st.integers(min_value=maximum + 1)] if maximum is not None else []
    return st.one_of(st.integers(max_value=minimum - 1), *too_big, _text("abcxyz ", 1, 8),
                     st.floats(min_value=0.1, max_value=9.9).filter(lambda f: not f.is_integer()), NOT_STRINGS)


def bad_booleans():
    return st.one_of(st.sampled_from(["sometimes", "maybe", "2", "-1", "yes please", "truthy", ""]), st.integers(min_value=2), NOT_STRINGS)


def bad_choices(choices):
    return st.one_of(_text("abcdefghijklmnopqrstuvwxyz- ", 0, 12).filter(lambda s: s not in choices), st.integers(), NOT_STRINGS)


def bad_files(world):
    return st.sampled_from([world.missing_file, world.a_directory, "", "/nonexistent/ca.pem", "~/nonexistent/ca.pem"])


def bad_paths():
    """Store paths and prefixes: '..' and '.' segments, empty segments, blanks around a segment, control characters."""
    segment = _text("abc", 1, 4)
    return st.one_of(
        st.builds(lambda a, b, d: "%s/%s/%s" % (a, d, b), segment, segment, st.sampled_from(["..", ".", ""])),
        st.builds(lambda a: "a/ %s/b" % a, segment), st.builds(lambda a: "a/%s /b" % a, segment), CONTROL,
    )


def bad_dict_items(keys=("id",)):
    """A list with an item that is no dictionary."""
    return st.lists(st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=2), st.booleans()), min_size=1, max_size=3)


def _shared_options(world, target):
    options = [
        ("url", bad_urls(), None), ("timeout", bad_timeouts(), None), ("retries", bad_counts(), None),
        ("ca_path", bad_files(world), None), ("validate_certs", bad_booleans(), None),
        ("store.backend", bad_choices(("file", "vault")), "file"), ("store.timeout", bad_counts(1, 86400), "file"),
        ("store.timeout", bad_counts(1, 86400), "vault"),
        ("store.url", bad_urls(), "vault"), ("store.ca_cert", bad_files(world), "vault"), ("store.prefix", bad_paths(), "vault"),
        ("store.prefix", bad_paths(), "file"), ("store.mount_point", bad_paths(), "vault"),
        ("store.auth_method", bad_choices(("token", "approle")), "vault"), ("store.validate_certs", bad_booleans(), "vault"),
        ("store.vault_password_file", bad_files(world), "file"), ("store", st.one_of(_text("abc", 1, 5), st.integers()), None),
    ]
    if target in WITH_POLICY:
        options += [("rotate_before", st.one_of(bad_durations(), st.sampled_from(["101%", "-1%", "abc%", "%", "nan%"])), None),
                    ("max_age", bad_durations(), None)]
    if target in CHANGING:
        options += [("concurrency", bad_counts(1, 256), None), ("lock_timeout", st.one_of(bad_durations(), st.just("0s")), None),
                    ("lease", st.one_of(bad_durations(), st.just("0")), None), ("return_secret", st.one_of(bad_booleans(), st.just(True)), None)]
    return options


def _product_options(world, target):
    das_ids = st.one_of(st.sampled_from(["", "systems//opa", "a/../b", "a/./b", "my token", "systems/abc", "/x", "x/", "app?x"]), CONTROL)
    bindings = st.one_of(
        bad_dict_items(),
        st.builds(lambda drop: [{k: v for k, v in {"role_id": "SystemOPA", "resource_kind": "system", "resource_id": "s1"}.items() if k != drop}],
                  st.sampled_from(["role_id", "resource_kind", "resource_id"])),
        st.builds(lambda k, v: [{"role_id": "SystemOPA", "resource_kind": "system", "resource_id": "s1", k: v}], _text("xyz", 1, 4), st.integers()),
    )
    ttls = st.one_of(st.sampled_from(["30d", "", "-1h", "1h 30m", "24H", "1w", "h", "0s", "99999999999h"]), bad_durations())
    patterns = st.one_of(st.lists(st.sampled_from(["(", "[a-", "*x", "", "(?P<x", "a{2,1}"]), min_size=1, max_size=2), st.just([]))
    if target == "das_token":
        return [
            ("id", das_ids, None), ("overlap_id", das_ids, None), ("ttl", ttls, None), ("grace_period", bad_durations(), None),
            ("role_bindings", bindings, None), ("strategy", bad_choices(("regenerate", "overlap")), None),
            ("state", bad_choices(("present", "rotated", "absent")), None), ("allow_path_patterns", patterns, None),
            ("allow_all_paths", bad_booleans(), None), ("store_path", bad_paths(), None), ("api_token", CONTROL, None),
            ("tokens", st.one_of(bad_dict_items(), st.lists(st.fixed_dictionaries({"id": das_ids}), min_size=1, max_size=2),
                                 st.builds(lambda b: [{"id": "app", "role_bindings": b}], bindings),
                                 st.builds(lambda k: [{"id": "app", k: 1}], _text("xyz", 1, 4)),
                                 st.builds(lambda t: [{"id": "app", "ttl": t}], ttls)), None),
            ("refresher", st.one_of(_text("abc", 1, 4).filter(lambda s: "=" not in s), st.integers(), st.builds(lambda i: {"id": i}, das_ids),
                                    st.just({"id": "r", "self_rotate": True, "allow_all_paths": True}),
                                    st.builds(lambda t: {"id": "r", "ttl": t}, ttls)), None),
            ("verify", st.one_of(st.builds(lambda p: {"path": p}, st.sampled_from(["http://evil.example/x", "//evil/x", "v1/x", "", " "])),
                                 st.builds(lambda b: {"enabled": b}, bad_booleans())), None),
        ]
    if target == "das_token_info":
        return [("ids", st.lists(das_ids, min_size=1, max_size=2), None), ("query", st.sampled_from(["[?due", "foo[", "&&", "`", "a.[b"]), None),
                ("api_token", CONTROL, None)]
    dpa_ids = st.one_of(st.sampled_from(["", "a/b", "..", ".x", "a b", "a?b"]), CONTROL)
    if target == "dpa_refresh_token":
        return [("id", dpa_ids, None), ("warn_before", st.one_of(bad_durations().filter(lambda v: v != ""), st.just("20%")), None),
                ("fail_before", st.one_of(bad_durations().filter(lambda v: v != ""), st.just("5%")), None),
                ("access_token_renew_before", bad_durations(), None), ("store_path", bad_paths(), None),
                ("refresh_token", st.one_of(_text("abc.", 1, 20), st.just("a.b.c"), st.just("")), None),
                ("state", bad_choices(("present", "rotated", "absent")), None), ("return_access_token", bad_booleans(), None),
                ("tokens", st.one_of(bad_dict_items(), st.builds(lambda i: [{"id": i}], dpa_ids)), None)]
    if target == "dpa_refresh_token_info":
        return [("ids", st.lists(dpa_ids, min_size=1, max_size=2), None),
                ("warn_before", st.one_of(bad_durations().filter(lambda v: v != ""), st.just("20%")), None),
                ("validate", bad_booleans(), None)]
    blank_names = st.one_of(st.sampled_from(["  ", "\t", " svc", "svc "]), CONTROL)
    if target == "secretserver_token":
        return [("username", blank_names, None), ("domain", blank_names, None), ("max_refreshes", bad_counts(0, None), None),
                ("id", st.one_of(bad_paths(), st.just("  ")), None), ("store_path", bad_paths(), None),
                ("refresh", bad_booleans(), None), ("platform", bad_booleans(), None), ("verify", bad_booleans(), None),
                ("state", bad_choices(("present", "rotated", "absent")), None),
                ("tokens", st.one_of(bad_dict_items(), st.builds(lambda u: [{"username": u, "password": "never-sent-password"}], blank_names)), None)]
    if target == "secretserver_token_info":
        return [("ids", st.lists(st.one_of(bad_paths(), st.just(" ")), min_size=1, max_size=2), None), ("check", bad_booleans(), None)]
    access_items = st.one_of(
        bad_dict_items(),
        st.builds(lambda t: [{"type": t, "actions": ["read"]}], _text("abcxyz-", 1, 10)),
        st.builds(lambda a: [{"type": "quote", "actions": a}], st.lists(_text("xyz", 1, 4), min_size=1, max_size=2)),
        st.just([{"type": "outgoing-payment", "actions": ["create"]}]),
        st.builds(lambda i: [{"type": "outgoing-payment", "actions": ["create"], "identifier": i}], bad_urls()),
    )
    if target == "openpayments_token":
        return [("client_wallet_address", bad_urls(), None), ("key_id", st.one_of(st.sampled_from(['a"b', "a\\b", "é"]), CONTROL), None),
                ("private_key", st.one_of(_text("abc!", 1, 20), st.just(" ")), None), ("private_key_path", bad_files(world), None),
                ("poll_timeout", bad_durations(), None), ("finish_uri", bad_urls().filter(lambda v: not (isinstance(v, str) and "?" in v)), None),
                ("verify_url", bad_urls().filter(lambda v: not (isinstance(v, str) and "?" in v)), None), ("access", access_items, None),
                ("interaction", bad_choices(("auto", "offer", "none")), None), ("scope", bad_choices(("token", "grant")), None),
                ("store_path", bad_paths(), None), ("id", st.one_of(bad_paths(), st.just("")), None),
                ("tokens", st.one_of(bad_dict_items(), st.builds(lambda a: [{"id": "app", "access": a}], access_items)), None)]
    if target == "openpayments_token_info":
        return [("ids", st.lists(st.one_of(bad_paths(), st.just("")), min_size=1, max_size=2), None)]
    raise AssertionError(target)


def _lookup_options(world, target):
    store = [("store.url", bad_urls(), "vault"), ("store.timeout", bad_counts(1, 86400), "vault"),
             ("store.ca_cert", bad_files(world), "vault"), ("store.prefix", bad_paths(), "vault"),
             ("store.backend", bad_choices(("file", "vault")), "vault"), ("store.validate_certs", bad_booleans(), "vault"),
             ("store.vault_password_file", bad_files(world), "file")]
    bad_terms = st.lists(st.one_of(st.none(), st.integers(), st.just(""), bad_paths(), NOT_STRINGS), min_size=1, max_size=2)
    if target == "token":
        return store + [("_terms", bad_terms, None), ("allow_pending", bad_booleans(), None), ("key", st.just(""), None)]
    return store + [("_terms", st.one_of(bad_terms, st.lists(st.sampled_from(["a b", "..", "a?b"]), min_size=1, max_size=2)), None),
                    ("url", bad_urls(), None), ("ca_path", bad_files(world), None), ("timeout", bad_timeouts(), None),
                    ("retries", bad_counts(), None), ("renew_before", bad_durations(), None),
                    ("validate_certs", bad_booleans(), None), ("probe", bad_booleans(), None)]


def _cases(world, target):
    options = _lookup_options(world, target) if target in LOOKUP_TARGETS else _shared_options(world, target) + _product_options(world, target)
    return st.sampled_from(options).flatmap(lambda option: option[1].map(lambda value: (option[0], value, option[2])))


# Derandomized (the same examples every run), bounded, no deadline: never flaky on a loaded machine.
# TOKENOPS_BAD_INPUT_EXAMPLES raises the number for a deeper search by hand.
MAX_EXAMPLES = int(os.environ.get("TOKENOPS_BAD_INPUT_EXAMPLES", "60"))
PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=MAX_EXAMPLES, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])


@pytest.mark.parametrize("target", CHANGING + INFO + LOOKUP_TARGETS)
@PROPERTY
@given(data=st.data())
def test_generated_bad_input_is_refused_before_any_request(world, target, data):
    option, value, store = data.draw(_cases(world, target), label="option, value, store")
    assert_refused(world, target, _prepare(world, target, option, value, store), option, value)


@pytest.mark.parametrize("target", sorted(CHANGING))
def test_a_result_with_a_secret_is_never_spooled(world, target, tmp_path):
    """report_spool writes the results to a file for the job's report: with return_secret (or DPA's
    return_access_token) they would hold a secret, so the combination is refused before anything is sent."""
    spool = tmp_path / "spool.json"
    args = _prepare(world, target, "report_spool", str(spool), None)
    args.update(return_secret=True, _ansible_no_log=True)
    assert_refused(world, target, args, "report_spool")
    if target == "dpa_refresh_token":
        args.update(return_secret=False, return_access_token=True)
        assert_refused(world, target, args, "report_spool")
    assert not spool.exists()
