"""secretserver_token and secretserver_token_info against the Secret Server simulator, with the file store and OpenBao.

`max_age: 0s` makes the stored token due without waiting: the run must then refresh (or, when the rules say so,
log in), which is how the refresh chain is walked here in a few playbook runs. The long schedule with the
simulator's clock is in tests/unit/plugins/module_utils/test_secretserver_rotation.py.
"""

import pytest

import secretserver_fixtures
from secretserver_fixtures import USER, platform_task, record_of, ss_env, ss_task

pytestmark = pytest.mark.integration
ss, ss_factory = secretserver_fixtures.ss, secretserver_fixtures.ss_factory   # the simulator fixtures


def run_ss(runner, ss, store, check=False, diff=False, **options):
    run = runner.run([ss_task(ss, store, **options)], env=ss_env(ss, store), check=check, diff=diff)
    assert run.results, run
    return run.result


def run_tasks(runner, ss, store, tasks, **kwargs):
    run = runner.run(tasks, env=ss_env(ss, store), **kwargs)
    return [r for r in run.results if r.get("_task") in ("secretserver_token", "platform", "info")]


def assert_idempotent(runner, ss, store, **options):
    """A run with nothing due: changed false, one read of users/current, no write to Secret Server or the store."""
    ss.sim.reset_counts()
    writes = store.writes()
    result = run_ss(runner, ss, store, **options)
    assert result["changed"] is False and result["action"] == "none" and result["method"] == "reuse", result
    assert ss.sim.count(writes_only=True) == 0 and ss.sim.count("GET", "/SecretServer/api/v1/users/current") == 1
    assert store.writes() == writes
    return result


def test_login_reuse_refresh_then_nothing(runner, ss, store):
    created = run_ss(runner, ss, store)
    assert created["action"] == "created" and created["method"] == "password" and created["changed"], created
    record = record_of(store, ss)
    assert ss.works(record) and ss.sim.refresh_usable(record["refresh_token"]) and "pending" not in record
    assert record["fingerprint"] == created["fingerprint"] and "secret" not in created and created["refreshes_remaining"] == 3
    assert_idempotent(runner, ss, store)
    refreshed = run_ss(runner, ss, store, max_age="0s")
    new = record_of(store, ss)
    assert refreshed["action"] == "rotated" and refreshed["method"] == "refresh" and refreshed["refreshes_remaining"] == 2, refreshed
    assert ss.works(new) and not ss.sim.refresh_usable(record["refresh_token"]) and ss.sim.refresh_usable(new["refresh_token"])
    assert new["refresh_fingerprint"] != record["refresh_fingerprint"] and new["rotation_count"] == 1
    assert_idempotent(runner, ss, store)


def test_refresh_chain_with_a_cap_of_3(runner, ss_factory, file_store):
    """Each run finds the token due: three refreshes, then the cap makes the fourth replacement a password login."""
    ss = ss_factory(max_refreshes=3)
    tasks = [ss_task(ss, file_store)] + [ss_task(ss, file_store, max_age="0s") for _run in range(5)]
    results = run_tasks(runner, ss, file_store, tasks)
    assert [r["method"] for r in results] == ["password", "refresh", "refresh", "refresh", "password", "refresh"], results
    assert [r["refreshes_remaining"] for r in results] == [3, 2, 1, 0, 3, 2]
    assert ss.sim.count_grants("password") == 2 and ss.sim.count_grants("refresh") == 4
    assert ss.sim.count_grants("refresh", ok=False) == 0        # no refresh sent that the cap refuses
    assert not [g for g in ss.sim.grants if g["grant"] == "password" and g.get("refresh_possible")]
    assert ss.works(record_of(file_store, ss))


@pytest.mark.playbook   # reads what Ansible prints
def test_check_mode_predicts_and_diff_shows_fingerprints(runner, ss, file_store):
    ss.sim.reset_counts()
    predicted = run_ss(runner, ss, file_store, check=True, diff=True)
    assert predicted["action"] == "created" and predicted["method"] == "password" and predicted["changed"], predicted
    assert ss.sim.count() == 0 and record_of(file_store, ss) == {}
    run = runner.run([ss_task(ss, file_store)], env=ss_env(ss, file_store), diff=True)
    record = record_of(file_store, ss)
    assert "+fingerprint: %s" % record["fingerprint"] in run.stdout and "+refreshes_remaining: 3" in run.stdout
    assert record["secret"] not in run.stdout and record["refresh_token"] not in run.stdout
    writes = file_store.writes()
    ss.sim.reset_counts()
    run = runner.run([ss_task(ss, file_store, max_age="0s")], env=ss_env(ss, file_store), check=True, diff=True)
    assert run.result["action"] == "rotated" and run.result["method"] == "refresh", run.result
    assert "-refreshes_remaining: 3" in run.stdout and "+refresh_fingerprint: (new token)" in run.stdout
    assert ss.sim.count("POST") == 0 and file_store.writes() == writes
    real = run_ss(runner, ss, file_store, max_age="0s")
    assert (real["action"], real["method"]) == ("rotated", "refresh")


def test_rotated_then_absent(runner, ss, store):
    results = run_tasks(runner, ss, store, [ss_task(ss, store), ss_task(ss, store, state="rotated")])
    old = results[0]
    assert results[1]["action"] == "rotated" and results[1]["method"] == "password" and results[1]["previous_expired"] is True
    assert results[1]["fingerprint"] != old["fingerprint"]
    token = record_of(store, ss)["secret"]
    absent = run_ss(runner, ss, store, state="absent", id=USER)
    assert absent["action"] == "revoked" and absent["expired_on_server"] is True and absent["changed"], absent
    assert not ss.sim.token_works(token) and record_of(store, ss) == {}
    ss.sim.reset_counts()
    writes = store.writes()
    again = run_ss(runner, ss, store, state="absent", id=USER)
    assert again["action"] == "none" and again["changed"] is False and ss.sim.count() == 0 and store.writes() == writes


def test_many_users_in_one_task(runner, ss, file_store):
    store = file_store
    reports = ss.add_user("svc-reports", domain="CORP")
    deploy = ss.add_user("svc-deploy")
    tokens = [{"username": USER}, {"id": "reports", "username": "svc-reports", "domain": "CORP", "password": reports},
              {"username": "svc-deploy", "password": deploy}]
    result = run_ss(runner, ss, store, tokens=tokens, concurrency=2)
    assert [r["action"] for r in result["results"]] == ["created"] * 3, result
    for token_id in (USER, "reports", "svc-deploy"):
        assert ss.works(record_of(store, ss, token_id))
    assert record_of(store, ss, "reports")["domain"] == "CORP"
    ss.sim.reset_counts()
    writes = store.writes()
    again = run_ss(runner, ss, store, tokens=tokens, concurrency=2)
    assert again["changed"] is False and {r["action"] for r in again["results"]} == {"none"}
    assert ss.sim.count(writes_only=True) == 0 and store.writes() == writes


def test_return_secret_only_with_no_log(runner, ss, file_store):
    task = ss_task(ss, file_store, return_secret=True)
    run = runner.run([task], env=ss_env(ss, file_store))
    assert run.result["failed"] and "no_log" in run.result["msg"] and ss.sim.count() == 0
    task["no_log"] = True
    check = {"name": "check", "ansible.builtin.assert": {"that": ["r.secret | length > 20"]}}
    run = runner.run([task, check], env=ss_env(ss, file_store))
    assert run.rc == 0 and ss.works(record_of(file_store, ss))


def test_otp_user_logs_in_once_then_refreshes(runner, ss, file_store):
    password = ss.add_user("alice", otp=True)
    code = ss.sim.new_otp("alice")
    options = dict(username="alice", password=password)
    tasks = [ss_task(ss, file_store, **options),
             ss_task(ss, file_store, otp=code, **options),
             ss_task(ss, file_store, max_age="0s", otp=code, **options),
             ss_task(ss, file_store, max_age="0s", refresh=False, otp=code, **options)]
    first, created, refreshed, asked = run_tasks(runner, ss, file_store, tasks)
    assert first["failed"] and "otp" in first["msg"], first
    assert created["action"] == "created" and refreshed["method"] == "refresh"      # the code is not needed while the chain lasts
    assert asked["action"] == "needs_interaction" and "already used" in asked["msg"], asked
    assert ss.sim.count_grants("password", user="alice") == 1
    fresh = run_ss(runner, ss, file_store, max_age="0s", refresh=False, otp=ss.sim.new_otp("alice"), **options)
    assert fresh["action"] == "rotated" and fresh["method"] == "password", fresh


def test_the_one_time_code_comes_from_the_environment(runner, ss, file_store):
    """TSS_OTP, like TSS_PASSWORD, is read by the module: a code given that way is never a module argument."""
    env = dict(ss_env(ss, file_store), TSS_PASSWORD=ss.add_user("bob", otp=True))
    refused = runner.run([ss_task(ss, file_store, username="bob")], env=env)
    assert refused.result["failed"] and "otp" in refused.result["msg"], refused.result
    run = runner.run([ss_task(ss, file_store, username="bob")], env=dict(env, TSS_OTP=ss.sim.new_otp("bob")))
    assert run.result["action"] == "created", run.result
    assert ss.sim.count_grants("password", user="bob") == 1


def test_platform_token_and_info(runner, ss, file_store):
    info = {"name": "info", "tokenops.rotation.secretserver_token_info": {"url": ss.url, "store": file_store.options}, "register": "i"}
    results = run_tasks(runner, ss, file_store, [ss_task(ss, file_store), platform_task(ss, file_store), platform_task(ss, file_store), info])
    created, platform, again, described = results
    assert platform["action"] == "created" and platform["method"] == "platform" and again["action"] == "none", platform
    stored = file_store.entry("secretserver", ss.platform_host, "platform")
    assert stored["vault_url"] == ss.url and ss.works(stored) and "refresh_token" not in stored
    (token,) = described["tokens"]
    assert token["id"] == USER and token["works"] is True and token["refreshes_remaining"] == 3 and not token["due"], token
    assert token["user"]["username"] == USER and token["fingerprint"] == created["fingerprint"] and "secret" not in token
    ss.sim.expire_all(USER)
    ss.sim.reset_counts()
    writes = file_store.writes()
    (described,) = run_tasks(runner, ss, file_store, [info])
    (token,) = described["tokens"]
    assert token["works"] is False and token["status"] == 403 and token["due"] and "no longer works" in token["due_reason"]
    assert ss.sim.count(writes_only=True) == 0 and file_store.writes() == writes


def test_lookup_gives_consumers_the_current_token(runner, ss, file_store):
    run_ss(runner, ss, file_store)
    lookup = "{{ lookup('tokenops.rotation.token', 'secretserver/%s/%s', store=%r) }}" % (ss.host, USER, file_store.options)
    uri = {"url": ss.url + "/api/v1/users/current", "status_code": [200], "headers": {"Authorization": "Bearer " + lookup}}
    run = runner.run([{"name": "use", "ansible.builtin.uri": uri, "no_log": True}], env=ss_env(ss, file_store))
    assert run.rc == 0, run
