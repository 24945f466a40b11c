"""The Secret Server simulator for the integration tests, and the task and checks they share.

Every secret the simulator issues, every password and client secret, is a canary of the session-wide leak scan.
"""

import datetime
import json
import os
import secrets
import subprocess
import sys

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


# ------------------------------------------------------------------ what a consumer gets, and what a killed run leaves

# The tokenops.rotation.token lookup as a consumer runs it, in a Python process of its own with the installed
# collection: one answer per term, {"secret": ...} or {"refused": the lookup's message}.
LOOKUP_SCRIPT = r"""
import json, os, sys
from ansible.errors import AnsibleError
from ansible.plugins.loader import init_plugin_loader, lookup_loader
init_plugin_loader([os.environ["ANSIBLE_COLLECTIONS_PATH"]])
request = json.load(sys.stdin)
lookup = lookup_loader.get("tokenops.rotation.token")
answers = []
for term in request["terms"]:
    try:
        answers.append({"secret": lookup.run([term], variables={}, store=request["store"])[0]})
    except AnsibleError as exc:
        answers.append({"refused": str(exc)})
json.dump(answers, sys.stdout)
"""

# Why the lookup may refuse while the module works on an entry: its intent says the token may be dead, or there is none.
REFUSALS = ("may no longer work", "no store entry", "has no secret")


def consumer_lookups(store, ss, token_ids=(USER,)):
    """What the tokenops.rotation.token lookup hands a consumer now, per token: {"secret": ...} or {"refused": why}."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "ANSIBLE_", "TSS_"))}
    env.update(store.env, ANSIBLE_COLLECTIONS_PATH=conftest.collections_path())
    request = {"terms": ["secretserver/%s/%s" % (ss.host, token_id) for token_id in token_ids], "store": store.options}
    proc = subprocess.run([sys.executable, "-c", LOOKUP_SCRIPT], input=json.dumps(request), env=env, capture_output=True,
                          text=True, timeout=180, check=False)
    conftest.OUTPUTS.append(("stderr", proc.stderr))    # the answers hold tokens on purpose; the rest must not
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def consumer_gets(store, ss, token_id=USER):
    """"works" when the lookup hands out a token Secret Server accepts, "refused" when it refuses clearly;
    a dead token handed out fails the test."""
    (answer,) = consumer_lookups(store, ss, [token_id])
    return judge(ss, answer)


def judge(ss, answer):
    if "secret" in answer:
        assert ss.sim.token_works(answer["secret"]), "the token lookup handed a consumer a dead token"
        return "works"
    assert any(why in answer["refused"] for why in REFUSALS), answer["refused"]
    return "refused"


def stale_intent(store, ss, step, token_id=USER, **data):
    """Leave an intent on the entry as a run killed on another execution node does: its lease has run out."""
    now = datetime.datetime.now(datetime.timezone.utc)
    path = "%s/secretserver/%s/%s" % (store.prefix, ss.host, token_id)
    files = store._file_store()
    entry = files.read(path)
    record = dict(entry.data or {"product": "secretserver"})
    record["pending"] = dict({"rotation_id": "killed-%s" % secrets.token_hex(4), "step": step,
                              "started_at": (now - datetime.timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "holder": "node-7.awx.example:4242",
                              "lease_expires_at": (now - datetime.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "secret_usable": False}, **data)
    files.write(path, record, entry.version)
    return record
