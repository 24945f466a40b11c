"""No access token, continuation token or private key in any output: the playbooks run at -vvvv, failing runs included.

Canaries: every access and continuation token the simulator issued, the client's private key (the base64
body of its PEM), the OpenBao root token and the file store's password. Searched: stdout and stderr of
every run, the task results Ansible handed to callbacks, the simulator's own log, and the file store on disk.
"""

import pytest

import conftest
from openpayments_fixtures import op, op_env, op_factory, op_task, pem_canary  # noqa: F401 pylint: disable=unused-import

pytestmark = [pytest.mark.integration, pytest.mark.playbook]   # the -vvvv output of Ansible is what is searched


def scenario(runner, op, store):
    env = op_env(op, store)
    incoming = dict(id="app", access=op.incoming, verify_url=op.rs)
    payout = dict(id="payout", access=op.outgoing, finish_uri="https://client.example/return")
    runs = [runner.run([op_task(op, store, **incoming), op_task(op, store, state="rotated", **incoming), op_task(op, store, **payout),
                        op_task(op, store, tokens=[{"id": "q1"}, {"id": "q2"}], access=[{"type": "quote", "actions": ["create"]}]),
                        op_task(op, store, state="rotated", return_secret=True, **incoming),                  # refused: no no_log
                        dict(op_task(op, store, state="rotated", return_secret=True, **incoming), no_log=True),
                        op_task(op, store, id="bad", access=[{"type": "quote", "actions": ["nope"]}])],       # bad input
                       env=env, diff=True)]
    approval = op.sim.approve(runs[0].results[2]["redirect"].split("/interact/")[1].split("/")[0])
    runs.append(runner.run([op_task(op, store, interact_ref=approval["interact_ref"], interact_hash="forged", **payout),
                            op_task(op, store, interact_ref=approval["interact_ref"], **payout)], env=env, diff=True))
    runs.append(runner.run([op_task(op, store, state="rotated", **incoming), op_task(op, store, id="app", state="absent")],
                           env=env, check=True, diff=True))
    # Failures with tokens in flight: a refused rotation, a lost one (interactive: needs_reconcile), a wrong key.
    op.sim.faults.add("POST", r"^/auth/token/", "status", status=503)
    runs.append(runner.run([op_task(op, store, state="rotated", **incoming)], env=env))
    op.sim.faults.add("POST", r"^/auth/token/", "drop_after_commit")
    runs.append(runner.run([op_task(op, store, state="rotated", **payout), op_task(op, store, **payout)], env=env))
    other_key = dict(env, OPEN_PAYMENTS_PRIVATE_KEY=conftest_other_key())
    runs.append(runner.run([op_task(op, store, state="rotated", **incoming)], env=other_key))
    runs.append(runner.run([op_task(op, store, id="app", state="absent"), op_task(op, store, id="payout", state="absent", scope="grant")],
                           env=env, diff=True))
    return runs, other_key["OPEN_PAYMENTS_PRIVATE_KEY"]


def conftest_other_key():
    from openpayments_fixtures import new_key
    return new_key()[1]


def test_no_token_continuation_token_or_key_in_any_output(runner, op, store):
    first_output = len(conftest.OUTPUTS)
    runs, other_pem = scenario(runner, op, store)
    results = [r for run in runs for result in run.results for r in [result] + list(result.get("results") or [])]
    assert any(r.get("failed") for r in results) and any(r.get("action") == "needs_reconcile" for r in results)
    assert sum(1 for r in results if r.get("action") in ("created", "rotated")) >= 6
    canaries = op.canaries() | {pem_canary(other_pem)}
    continuation_tokens = {g["continue_token"] for g in op.sim.grants.values()}
    assert continuation_tokens and continuation_tokens <= canaries and len(op.sim.issued) >= 10
    conftest.assert_no_leaks(first_output, canaries, store)
    conftest.CANARIES.add(pem_canary(other_pem))
