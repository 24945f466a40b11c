"""Back-pressure: a slow or rate-limiting store or product slows the job down; it does not fail tokens.

- OpenBao under a `sys/quotas/rate-limit` quota: rotate.yml over 500 tokens rotates every one, fails none, and every
  secret DAS holds is the one stored.
- Store answers held past the client's timeout (a loopback proxy in front of OpenBao): every write whose answer was
  lost is resolved by reading the entry back; nothing fails.
- A store too slow to record the intent: the token backs off, nothing reaches the product.
- A DAS that answers 429 with Retry-After above a request rate: the run completes, and the request log shows that no
  request for a token came back before the wait it was told.

The quota is on a dedicated OpenBao (its own server, so the session's OpenBao and the tests sharing it are not slowed).
"""

import json
import os
import time

import pytest
import yaml

import conftest
from conftest import REPO
from tests.fixtures.openbao import OpenBaoServer
from tests.fixtures.store_proxy import StoreProxy
from ansible_collections.tokenops.rotation.plugins.module_utils.backpressure import endpoint_of as backpressure_endpoint

pytestmark = pytest.mark.integration

ROTATE = yaml.safe_load((REPO / "playbooks" / "rotate.yml").read_text())
MOUNT = "rl"
RATE = int(os.environ.get("TOKENOPS_TEST_RATE", "100"))


@pytest.fixture(scope="module")
def limited_bao():
    """An OpenBao of this module's own, with a KV v2 mount the rate-limit quota goes on."""
    with OpenBaoServer() as server:
        server.enable_kv2(MOUNT)
        yield server


def das_tokens(count, prefix="app"):
    return [{"id": "%s-%03d" % (prefix, n), "allow_path_patterns": ["^/v1/data/.*"], "ttl": "720h"} for n in range(count)]


def vault_options(prefix, timeout=2, mount=MOUNT):
    return {"backend": "vault", "prefix": prefix, "mount_point": mount, "timeout": timeout}


def create_all(runner, das, url, token, tokens, store):
    task = {"name": "das_token", "tokenops.rotation.das_token": {"url": das.url, "state": "present", "tokens": tokens, "store": store},
            "register": "r"}
    run = runner.run([task], env={"VAULT_ADDR": url, "VAULT_TOKEN": token, "STYRA_DAS_TOKEN": das.admin}, timeout=600)
    assert run.rc == 0, run
    assert {r["action"] for r in run.result["results"]} == {"created"}


def stored_secret_is_the_live_one(bao, das, prefix, tokens, host="tenant-a", mount=MOUNT):
    """Every token's secret in DAS is the one stored: nothing was minted without being stored."""
    missing = []
    for token in tokens:
        record = bao.kv_read("%s/das/%s/%s" % (prefix, host, token["id"]), mount=mount) or {}
        live = das.sim.tokens[token["id"]]["secret"]
        if record.get("secret") != live or record.get("pending"):
            missing.append(token["id"])
    return missing


def run_rotate(runner, tmp_path, das, bao_url, bao_token, host_vars):
    reports = tmp_path / "reports"
    host = {"das_url": das.url, "das_audit": False}
    host.update(host_vars)
    doc = {"all": {"vars": {"ansible_connection": "local", "tokenops_report_dir": str(reports)},
                   "children": {"das": {"hosts": {"tenant-a": host}}}}}
    inventory = tmp_path / ("inventory-%d.yml" % time.monotonic_ns())
    inventory.write_text(yaml.safe_dump(doc))
    env = {"VAULT_ADDR": bao_url, "VAULT_TOKEN": bao_token, "STYRA_DAS_TOKEN": das.admin}
    run = runner.finish(*runner.start(env=env, inventory=str(inventory), playbook=ROTATE), timeout=900)
    report = json.loads((reports / "tokenops-rotation.json").read_text())
    return run, report


# ------------------------------------------------------------------ OpenBao under a rate-limit quota

@pytest.mark.slow
@pytest.mark.playbook
def test_rotate_yml_over_500_tokens_under_an_openbao_rate_limit(limited_bao, das, runner, tmp_path):
    tokens = das_tokens(500)
    prefix = "rl%d" % time.monotonic_ns()
    store = vault_options(prefix)
    create_all(runner, das, limited_bao.url, limited_bao.root_token, tokens, dict(store, host="tenant-a"))
    regenerations_before = das.sim.count("PUT", "/v1/tokens/")

    # RATE requests a second on the mount: the job would send more than that. Before back-pressure, 184 of the 500
    # tokens failed at 100/s on a loaded 2-core machine (store 429 -> failed token).
    limited_bao.api("POST", "sys/quotas/rate-limit/tokenops-test", json={"path": MOUNT + "/", "rate": RATE, "interval": "1s"})
    try:
        started = time.monotonic()
        run, report = run_rotate(runner, tmp_path, das, limited_bao.url, limited_bao.root_token,
                                 {"das_tokens": tokens, "das_state": "rotated", "das_store": store})
        print("rotate.yml under the quota in %.1f s" % (time.monotonic() - started), report["counts"]["by_action"],
              report.get("backpressure"))
    finally:
        limited_bao.api("DELETE", "sys/quotas/rate-limit/tokenops-test")

    actions = {}
    for row in report["rows"]:
        actions[row["action"]] = actions.get(row["action"], 0) + 1
    assert actions == {"rotated": 500}, (actions, [r["msg"] for r in report["rows"] if r["action"] != "rotated"][:5])
    assert report["failures"] == [] and run.rc == 0, run
    # One regeneration per token (none sent twice), and each one's secret stored.
    assert das.sim.count("PUT", "/v1/tokens/") - regenerations_before == 500
    assert stored_secret_is_the_live_one(limited_bao, das, prefix, tokens) == []
    # The quota was felt, and the report says so: per endpoint, the waits, the retries and the lowest concurrency.
    store_endpoint = [e for e in report["backpressure"] if e["endpoint"] == limited_bao.url]
    assert store_endpoint and store_endpoint[0]["throttled"] > 0 and store_endpoint[0]["retries"] > 0, report["backpressure"]
    assert store_endpoint[0]["lowest_concurrency"] < 16
    summary = [r for r in run.results if r.get("_task", "").startswith("Report | One row per token")][0]["summary"]
    assert any(line.startswith("Slowed down by %s: waited" % limited_bao.url) for line in summary), summary


# ------------------------------------------------------------------ store answers lost past the client's timeout

@pytest.fixture
def proxy(bao):
    with StoreProxy(bao.url) as made:
        yield made


def das_run(runner, das, proxy, bao, tokens, prefix, **options):
    args = {"url": das.url, "state": "present", "tokens": tokens, "store": vault_options(prefix, timeout=1, mount="secret")}
    args.update(options)
    task = {"name": "das_token", "tokenops.rotation.das_token": args, "register": "r", "ignore_errors": True}
    return runner.run([task], env={"VAULT_ADDR": proxy.url, "VAULT_TOKEN": bao.token, "STYRA_DAS_TOKEN": das.admin}, timeout=600)


def test_lost_store_answers_are_resolved_by_reading_back(bao, das, proxy, runner):
    tokens = das_tokens(40, "lost")
    prefix = "lost%d" % time.monotonic_ns()
    # A stretch of the run: the next 12 writes get no answer within the store's 1 s timeout; half of them were applied.
    proxy.lose_writes(12)
    run = das_run(runner, das, proxy, bao, tokens, prefix)
    assert run.rc == 0, run
    results = run.result["results"]
    assert {r["action"] for r in results} == {"created"}, [r.get("msg") for r in results if r["action"] != "created"]
    assert proxy.landed == 6 and proxy.dropped == 6
    figures = run.result["backpressure"][proxy.url]
    assert figures["resolved_by_read_back"] == 12, figures     # every lost answer settled by reading the entry back
    assert figures["timeouts"] >= 12
    assert figures["lowest_concurrency"] < 16                  # the time-outs shrank the store's limit
    # One mint per token, each one stored; no intent left behind.
    assert das.sim.count("PUT", "/v1/tokens/lost-") == 40
    assert stored_secret_is_the_live_one(bao.server, das, prefix, tokens, host=das.host, mount="secret") == []


def test_a_store_too_slow_to_record_the_intent_backs_the_token_off(bao, das, proxy, runner):
    tokens = das_tokens(3, "slow")
    prefix = "slow%d" % time.monotonic_ns()
    proxy.lose_writes(None, landed=False)     # no write gets through, for the whole lease
    run = das_run(runner, das, proxy, bao, tokens, prefix, lease="3s")
    proxy.stop_losing()
    assert run.rc == 0, run                   # not a failure of the job
    for result in run.result["results"]:
        assert result["backed_off"] and result["backed_off_reason"] == "store_busy" and not result.get("failed"), result
        assert "nothing was sent to the product" in result["msg"]
    assert das.sim.count("PUT", "/v1/tokens/slow-") == 0       # nothing reached DAS
    assert proxy.dropped >= 3


# ------------------------------------------------------------------ a product that rate-limits

def test_a_rate_limiting_product_is_waited_out_as_told(das, bao, runner, tmp_path):
    store = conftest.StoreUnderTest("vault", tmp_path, bao)
    tokens = das_tokens(48, "paced")
    # DAS answers 429 with Retry-After: 1 above 15 requests a second (the module sends several times that).
    das.sim.rate_limit(15, window=1.0, retry_after=1)
    task = conftest.das_task(das, store, tokens=tokens)
    run = runner.run([task], env=conftest.das_env(das, store), timeout=600)
    das.sim.rate_limit(None)
    assert run.rc == 0, run
    assert {r["action"] for r in run.result["results"]} == {"created"}, [r.get("msg") for r in run.result["results"]][:5]

    log = [r for r in das.sim.requests if r.path.startswith("/v1/tokens/paced-")]
    throttled = [r for r in log if r.status == 429]
    assert len(throttled) >= 10, len(throttled)
    # Each token's requests are sent one after another: after a 429, that token's next request to the same URL came
    # no sooner than the Retry-After it was told.
    for answer in throttled:
        following = [r for r in log if (r.method, r.path) == (answer.method, answer.path) and r.received_at > answer.received_at]
        assert following, "a throttled request was never sent again: %s %s" % (answer.method, answer.path)
        waited = min(r.received_at for r in following) - answer.received_at
        assert waited >= float(answer.retry_after), (answer.method, answer.path, waited)
    figures = run.result["backpressure"][backpressure_endpoint(das.url)]
    assert figures["throttled"] == len([r for r in das.sim.requests if r.status == 429])
    assert figures["waited_s"] >= figures["throttled"] * 1.0
