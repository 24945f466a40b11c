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

pytestmark = pytest.mark.integration

RUNS = 8
ROUNDS = 20
DAS_TOKENS = [
    {"id": "regen", "description": "regenerate", "allow_path_patterns": ["^/v1/tokens/.*"], "ttl": "24h"},
    {"id": "ovl", "description": "overlap", "allow_path_patterns": ["^/v1/tokens/.*"], "ttl": "24h",
     "strategy": "overlap", "grace_period": "0s"},
]


def das_args(das, store):
    return {"url": das.url, "tokens": DAS_TOKENS, "store": dict(store.options), "rotate_before": "12h", "concurrency": 2,
            "lease": "30s"}


def mints_per_token(das):
    """PUT requests that mint, per token (an overlap token mints on either of its two ids)."""
    counts = {"regen": 0, "ovl": 0}
    for record in das.sim.requests:
        if record.method != "PUT" or not record.path.startswith("/v1/tokens/"):
            continue
        token_id = record.path[len("/v1/tokens/"):]
        name = "ovl" if token_id in ("ovl", "ovl-b") else token_id
        if name in counts:
            counts[name] += 1
    return counts


def test_eight_runs_at_once_round_after_round(modules, das, file_store):
    rng = random.Random(20261129)
    env = das_env(das, file_store)
    first = modules.finish(modules.start("das_token", das_args(das, file_store), env))
    assert [r["action"] for r in first["results"]] == ["created", "created"], first
    for round_no in range(ROUNDS):
        das.sim.clock.advance(13 * 3600)          # every token now has less than rotate_before left: all are due
        das.sim.reset_counts()
        procs = []
        offsets = sorted(rng.uniform(0, 0.6) for _run in range(RUNS))
        started = time.monotonic()
        for offset in offsets:
            delay = started + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)          # a random start offset, not a wait for another run
            procs.append(modules.start("das_token", das_args(das, file_store), env))
        outputs = [modules.finish(proc) for proc in procs]
        actions = {"regen": [], "ovl": []}
        for output in outputs:
            for result in output["results"]:
                assert not result.get("failed") and result["action"] != "needs_reconcile", (round_no, result)
                if result.get("backed_off"):
                    actions[result["id"]].append("backed_off")
                    assert result["changed"] is False and result["holder"], result
                else:
                    actions[result["id"]].append(result["action"])
        for name, seen in actions.items():
            assert seen.count("rotated") == 1, (round_no, name, seen)     # due once, rotated once
            assert set(seen) <= {"rotated", "backed_off", "none"}, (round_no, name, seen)
        assert mints_per_token(das) == {"regen": 1, "ovl": 1}, round_no
        for token in ("regen", "ovl"):
            record = file_store.entry("das", das.host, token)
            assert "pending" not in record and das.sim.secret_works(record["secret"]), (round_no, token)
