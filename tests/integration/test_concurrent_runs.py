"""Eight runs at once on the same tokens, round after round, with random start offsets.

Every product that mints is in it: DAS (a regenerate token and an overlap token), Secret Server (a refresh chain) and
Open Payments (a grant's token). At the start of each round every token is due. Whatever the interleaving: each token
is minted at most once per round, every run that did not rotate a token either found it done or backed off (never
needs_reconcile, never a failure), and every stored secret works afterwards.

The runs are the modules run as Ansible runs them on a host (see ModuleProcess): eight ansible-playbook processes a
round for twenty rounds would cost minutes of CPU; the module processes hold the store and the products just the same.
"""

import datetime
import random
import time

import pytest

from conftest import das_env
from openpayments_fixtures import op, op_env, op_factory, op_task  # noqa: F401 pylint: disable=unused-import
from secretserver_fixtures import USER, ss, ss_env, ss_factory, ss_task  # noqa: F401 pylint: disable=unused-import

pytestmark = pytest.mark.integration

RUNS = 8
ROUNDS = 20
DAS_TOKENS = [
    {"id": "regen", "description": "regenerate", "allow_path_patterns": ["^/v1/tokens/.*"], "ttl": "24h"},
    {"id": "ovl", "description": "overlap", "allow_path_patterns": ["^/v1/tokens/.*"], "ttl": "24h",
     "strategy": "overlap", "grace_period": "0s"},
]
OP_GRANTS = ["pay-in", "pay-in-2"]


def stamp(when):
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class DueByStore:
    """Makes every token due the way time would: another process (this test) moves the stored times back, so the
    runs of a round find it due, and the run that rotates it writes fresh times, so the others find it done."""

    def make_due(self):
        now = datetime.datetime.now(datetime.timezone.utc)

        def due(record):
            record.update(self.due_fields(now))
            return record
        for token in self.tokens:
            self.store.rewrite("%s/%s/%s/%s" % (self.store.prefix, self.product, self.host, token), due)


class Das(DueByStore):
    """Two DAS tokens (regenerate in place, overlap). DAS reports their expiry itself, so they are made due by age:
    rotated two hours ago, max_age one hour."""
    module = "das_token"
    product = "das"
    tokens = ("regen", "ovl")

    def __init__(self, das, store):
        self.das, self.store, self.host = das, store, das.host
        self.env = das_env(das, store)
        self.args = {"url": das.url, "tokens": DAS_TOKENS, "store": dict(store.options), "max_age": "1h",
                     "concurrency": 2, "lease": "30s"}

    @staticmethod
    def due_fields(now):
        return {"issued_at": stamp(now - datetime.timedelta(hours=2)), "rotated_at": stamp(now - datetime.timedelta(hours=2))}

    def reset(self):
        self.das.sim.reset_counts()

    def mints(self):
        """PUT requests that mint, per token (an overlap token mints on either of its two ids)."""
        counts = dict.fromkeys(self.tokens, 0)
        for record in self.das.sim.requests:
            if record.method != "PUT" or not record.path.startswith("/v1/tokens/"):
                continue
            token_id = record.path[len("/v1/tokens/"):]
            name = "ovl" if token_id in ("ovl", "ovl-b") else token_id
            if name in counts:
                counts[name] += 1
        return counts

    def record(self, token):
        return self.store.entry("das", self.host, token)

    def works(self, token):
        return self.das.sim.secret_works(self.record(token)["secret"])


class ExpiryInStore(DueByStore):
    """Products whose module learns a token's expiry when it mints it: due when the stored expiry is a minute away,
    well inside the default rotate_before (20% of the lifetime)."""

    @staticmethod
    def due_fields(now):
        return {"issued_at": stamp(now - datetime.timedelta(hours=1)), "expires_at": stamp(now + datetime.timedelta(minutes=1))}


class SecretServer(ExpiryInStore):
    """One Secret Server token: a rotation refreshes it (the single-use refresh token is spent), or logs in again with
    the password once the refresh chain has run out; either mints a token."""
    module = "secretserver_token"
    product = "secretserver"
    tokens = (USER,)

    def __init__(self, ss, store):
        self.ss, self.store, self.host = ss, store, ss.host
        self.env = ss_env(ss, store)
        self.args = dict(ss_task(ss, store)["tokenops.rotation.secretserver_token"], lease="30s")

    def reset(self):
        self.ss.sim.reset_counts()
        self.grants = self.ss.sim.count_grants(user=USER)

    def mints(self):
        return {USER: self.ss.sim.count_grants(user=USER) - self.grants}

    def record(self, token):
        return self.store.entry("secretserver", self.host, token)

    def works(self, token):
        return self.ss.works(self.record(token))


class OpenPayments(ExpiryInStore):
    """Two Open Payments grants: a rotation rotates the grant's access token."""
    module = "openpayments_token"
    product = "openpayments"
    tokens = tuple(OP_GRANTS)

    def __init__(self, op, store):
        self.op, self.store, self.host = op, store, op.host
        self.env = op_env(op, store)
        self.args = dict(op_task(op, store, tokens=[{"id": grant} for grant in OP_GRANTS], access=op.incoming,
                                 concurrency=2)["tokenops.rotation.openpayments_token"], lease="30s")

    def reset(self):
        self.op.sim.reset_counts()
        # A grant's first rotation this round goes to the token management URL stored at the round's start.
        self.manage = {grant: self.record(grant)["manage"] for grant in self.tokens}

    def mints(self):
        """Rotations per grant (a successful POST to its token management URL) and new grants (a grant request)."""
        sent = [(r.path, r.status) for r in self.op.sim.requests if r.method == "POST"]
        counts = {grant: sum(1 for path, status in sent if url.endswith(path) and status == 200)
                  for grant, url in self.manage.items()}
        rotations = sum(1 for path, status in sent if path.startswith("/auth/token/") and status == 200)
        counts["other rotations"] = rotations - sum(counts.values())
        counts["new grants"] = sum(1 for path, _status in sent if path.split("/")[2:3] == ["op"])
        return counts

    def record(self, token):
        return self.store.entry("openpayments", self.host, token)

    def works(self, token):
        record = self.record(token)
        return self.op.sim.token_works(record.get("secret", ""))


@pytest.fixture(params=["das", "secretserver", "openpayments"])
def product(request, file_store):
    if request.param == "das":
        return Das(request.getfixturevalue("das"), file_store)
    if request.param == "secretserver":
        return SecretServer(request.getfixturevalue("ss"), file_store)
    return OpenPayments(request.getfixturevalue("op"), file_store)


def results_of(output):
    """Per-token results: a module given a `tokens` list returns `results`; one given a single token is that result."""
    return output["results"] if "results" in output else [output]


def expected_mints(product):
    counts = dict.fromkeys(product.tokens, 1)
    if isinstance(product, OpenPayments):
        counts.update({"other rotations": 0, "new grants": 0})
    return counts


def test_eight_runs_at_once_round_after_round(modules, product):
    rng = random.Random(20261129)
    first = modules.finish(modules.start(product.module, product.args, product.env))
    assert [r["action"] for r in results_of(first)] == ["created"] * len(product.tokens), first
    for round_no in range(ROUNDS):
        product.make_due()
        product.reset()
        procs = []
        offsets = sorted(rng.uniform(0, 0.6) for _run in range(RUNS))
        started = time.monotonic()
        for offset in offsets:
            delay = started + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)          # a random start offset, not a wait for another run
            procs.append(modules.start(product.module, product.args, product.env))
        outputs = [modules.finish(proc) for proc in procs]
        actions = {token: [] for token in product.tokens}
        for output in outputs:
            for result in results_of(output):
                assert not result.get("failed") and result["action"] != "needs_reconcile", (round_no, result)
                if result.get("backed_off"):
                    actions[result["id"]].append("backed_off")
                    # It names the holder, unless that run had finished when this one looked (no intent left to name).
                    assert result["changed"] is False and (result.get("holder") or result.get("step") is None), result
                else:
                    actions[result["id"]].append(result["action"])
        for name, seen in actions.items():
            assert seen.count("rotated") == 1, (round_no, name, seen)     # due once, rotated once
            assert set(seen) <= {"rotated", "backed_off", "none"}, (round_no, name, seen)
        assert product.mints() == expected_mints(product), round_no
        for token in product.tokens:
            assert "pending" not in product.record(token) and product.works(token), (round_no, token)
