"""No secret in any output: the playbooks run at -vvvv, failing runs included.

Canaries: every token the simulator issued (access, refresh, platform tokens), the users' passwords, the
platform's client secret, a one-time password, the OpenBao root token or the file store's password. Searched:
stdout and stderr of every run, the task results Ansible handed to callbacks, the simulator's own log, and the
file store on disk.
"""

import pytest

import conftest
import secretserver_fixtures
from secretserver_fixtures import USER, platform_task, ss_env, ss_task

pytestmark = [pytest.mark.integration, pytest.mark.playbook]   # the -vvvv output of Ansible is what is searched
ss, ss_factory = secretserver_fixtures.ss, secretserver_fixtures.ss_factory   # the simulator fixtures

TOKEN = r"^/SecretServer/oauth2/token$"


def test_no_secret_in_any_output(runner, ss, store, tmp_path):
    first_output = len(conftest.OUTPUTS)
    alice = ss.add_user("alice", otp=True)
    otp = "otp-%s" % tmp_path.name[-6:] + "-7Kq2"      # a code that cannot turn up in -vvvv output by chance
    ss.sim.new_otp("alice", otp)
    env = ss_env(ss, store)
    steps = [   # one playbook: every task ignores its own failure
        [ss_task(ss, store), ss_task(ss, store), ss_task(ss, store, max_age="0s")],
        [ss_task(ss, store, state="rotated")],
        [ss_task(ss, store, username="alice", password=alice, otp=otp, id="alice"),
         ss_task(ss, store, username="alice", password=alice, otp=otp, id="alice", max_age="0s", refresh=False)],   # needs_interaction
        [platform_task(ss, store), platform_task(ss, store, state="absent")],
        [ss_task(ss, store, return_secret=True)],                                                      # refused: no no_log
        [dict(ss_task(ss, store, return_secret=True), no_log=True)],
        [ss_task(ss, store, password="a wrong password", state="rotated")],                           # refused login
        [ss_task(ss, store, max_refreshes=-1)],                                                        # bad input
        [{"name": "info", "tokenops.rotation.secretserver_token_info": {"url": ss.url, "store": store.options}}],
    ]
    runs = [runner.run([task for tasks in steps for task in tasks], env=env, diff=True)]
    runs.append(runner.run([ss_task(ss, store, max_age="0s")], env=env, check=True, diff=True))
    # A lost refresh answer, then a server error with the password in flight.
    ss.sim.faults.add("POST", TOKEN, "drop_after_commit")
    runs.append(runner.run([ss_task(ss, store, max_age="0s")], env=env, diff=True))
    ss.sim.faults.add("POST", TOKEN, "status", status=503, times=2)
    runs.append(runner.run([ss_task(ss, store, state="rotated")], env=env))
    runs.append(runner.run([ss_task(ss, store, state="absent", id=USER)], env=env, diff=True))

    assert any(r.get("failed") for run in runs for r in run.results)                  # failures were exercised
    assert any(r.get("action") == "needs_interaction" for run in runs for r in run.results)
    assert sum(1 for run in runs for r in run.results if r.get("method") == "refresh") >= 1
    canaries = set(ss.sim.issued) | {ss.password, alice, otp, ss.platform_secret}
    assert len(ss.sim.issued) >= 12
    conftest.assert_no_leaks(first_output, canaries, store)
