"""dpa_refresh_token, dpa_refresh_token_info and the dpa_access_token lookup against the DPA simulator,
with the file store and with OpenBao."""

import hashlib
import time

import pytest

from dpa_fixtures import DAY, assert_idempotent, dpa_task, record_of, run_dpa, write_record
# Fixtures: pytest finds them by name in this module.
from dpa_fixtures import dpa, dpa_factory  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.integration


def test_validate_store_then_nothing(runner, dpa, store):
    token = dpa.issue("reporting", days=90)
    dpa.sim.reset_counts()
    result = run_dpa(runner, dpa, store, id="reporting", refresh_token=token)
    assert result["action"] == "created" and result["changed"] is True, result
    assert dpa.posts() == 1                                  # validated by an exchange before it was stored
    record = record_of(store, dpa)
    assert record["secret"] == token and record["token_id"] == "reporting" and record["never_expires"] is False
    assert record["fingerprint"] == result["fingerprint"] and "secret" not in result and "pending" not in record
    assert record["expires_at"] == result["expires_at"] and result["days_left"] in (89, 90) and result["expiry_status"] == "ok"
    assert dpa.sim.access_token_works(record["access_token"])  # the access token of the exchange is cached with its expiry
    assert result["token_id"] == "reporting" and result["store_path"].endswith("/dpa/%s/reporting" % dpa.host)
    # The same task again, and once more without the token: the stored one is validated by the cached access token.
    second = assert_idempotent(runner, dpa, store, id="reporting", refresh_token=token)
    assert second["validated_by"] == "probe" and dpa.sim.count("GET", "/iwc/api/databases/monitor-information") == 1
    assert assert_idempotent(runner, dpa, store, id="reporting")["fingerprint"] == record["fingerprint"]


def test_stale_token_in_inventory_does_not_replace_the_stored_one(runner, dpa, file_store):
    current = dpa.issue("reporting-new")
    run_dpa(runner, dpa, file_store, id="reporting", refresh_token=current)
    result = run_dpa(runner, dpa, file_store, id="reporting", refresh_token=dpa.issue("reporting-old"))
    assert result["action"] == "none" and not result["changed"], result
    assert "state present keeps the stored one" in " ".join(result["warnings"])
    assert record_of(file_store, dpa)["secret"] == current


def test_adopt_verifies_before_promoting_and_keeps_previous(runner, dpa, store):
    old = dpa.issue("reporting-2025q1", days=20)
    new = dpa.issue("reporting-2025q2", days=90)
    run_dpa(runner, dpa, store, id="reporting", refresh_token=old, warn_before="", fail_before="")
    dpa.sim.reset_counts()
    result = run_dpa(runner, dpa, store, id="reporting", refresh_token=new, state="rotated")
    assert result["action"] == "rotated" and result["changed"], result
    assert dpa.posts() == 1                                  # the new token was exchanged before it was promoted
    record = record_of(store, dpa)
    assert record["secret"] == new and record["token_id"] == "reporting-2025q2" and record["rotation_count"] == 1
    assert record["previous"]["secret"] == old and record["previous"]["token_id"] == "reporting-2025q1"
    assert "pending" not in record and dpa.sim.access_token_works(record["access_token"])
    # The name and expiry of both, and the step only a person can take.
    assert result["token_id"] == "reporting-2025q2" and result["previous"]["token_id"] == "reporting-2025q1"
    assert result["previous"]["expires_at"] != result["expires_at"] and result["previous"]["expires_at"]
    assert "Refresh Token Management" in result["manual_step"] and "reporting-2025q1" in result["manual_step"]
    assert dpa.sim.refresh_token_works(old)                  # DPA keeps the old one until a person deletes it
    # The same adoption again changes nothing.
    assert_idempotent(runner, dpa, store, id="reporting", refresh_token=new, state="rotated")


def test_absent_removes_the_entry_and_says_deletion_is_done_in_dpa(runner, dpa, store):
    token = dpa.issue("reporting")
    run_dpa(runner, dpa, store, id="reporting", refresh_token=token)
    dpa.sim.reset_counts()
    result = run_dpa(runner, dpa, store, id="reporting", state="absent")
    assert result["action"] == "removed" and result["changed"], result
    assert "Options > Users & Contacts > Refresh Token Management" in result["msg"] and "revokes its access tokens" in result["msg"]
    assert result["names_in_dpa"] == ["reporting"] and any("still works in DPA" in w for w in result["warnings"])
    assert record_of(store, dpa) == {} and dpa.sim.count() == 0   # nothing is asked of DPA: it has no delete API
    assert dpa.sim.refresh_token_works(token)
    assert_idempotent(runner, dpa, store, id="reporting", state="absent")


def test_expiry_thresholds_warn_fail_and_never(runner, dpa, store):
    """Tokens whose exp sits at real distances from now cross each threshold for real."""
    tokens = [{"id": "far", "refresh_token": dpa.issue("far", days=40)},
              {"id": "soon", "refresh_token": dpa.issue("soon", days=10)},
              {"id": "very-soon", "refresh_token": dpa.issue("very-soon", days=3)},
              {"id": "forever", "refresh_token": dpa.issue("forever", never=True)},
              {"id": "no-iat", "refresh_token": dpa.issue("no-iat", days=10, iat=False), "warn_before": "5d"}]
    result = run_dpa(runner, dpa, store, tokens=tokens, warn_before="14d", fail_before="7d")
    by_id = {r["id"]: r for r in result["results"]}
    statuses = {i: r["expiry_status"] for i, r in by_id.items()}
    assert statuses == {"far": "ok", "soon": "warn", "very-soon": "fail", "forever": "never", "no-iat": "ok"}
    assert result["failed"] and "very-soon" in result["msg"] and "fail_before: 7 days" in result["msg"], result
    assert by_id["very-soon"]["failed"] and by_id["very-soon"]["action"] == "created"   # stored all the same: it works
    assert record_of(store, dpa, "very-soon")["secret"] == tokens[2]["refresh_token"]
    warnings = " ".join(result["warnings"])
    assert "soon: refresh token 'soon' expires at" in warnings and "warn_before: 14 days" in warnings
    assert "far" not in warnings and "forever" not in warnings
    assert by_id["forever"]["never_expires"] is True and by_id["forever"]["expires_at"] is None and by_id["forever"]["days_left"] is None
    assert by_id["no-iat"]["issued_at"] is None and by_id["no-iat"]["days_left"] in (9, 10)   # 10 days, at one-second resolution
    # Nothing stored changes on the next run, and the thresholds still speak.
    again = run_dpa(runner, dpa, store, tokens=[{"id": t["id"]} for t in tokens], warn_before="14d", fail_before="7d")
    assert not again["changed"] and again["failed"] and {r["action"] for r in again["results"]} == {"none"}


def test_expiry_crossed_on_the_server_and_on_the_controller(runner, dpa, store):
    """DPA's clock passes a stored token's exp (the server decides), then the controller's does (the module decides)."""
    short = dpa.issue("short", days=5)
    run_dpa(runner, dpa, store, id="short", refresh_token=short, warn_before="", fail_before="")
    dpa.sim.clock.advance(6 * DAY)                            # DPA's clock: the refresh token and its access tokens are dead
    result = run_dpa(runner, dpa, store, id="short", warn_before="", fail_before="")
    assert result["failed"] and result["action"] == "needs_reconcile", result
    assert "no longer works" in result["msg"] and "state: rotated" in result["msg"] and "HTTP 400" in result["msg"]
    assert record_of(store, dpa, "short")["secret"] == short   # the store is left as it was
    dpa.sim.clock.set(time.time())
    # The controller's clock has passed the exp of the stored token (written as a run stored it a while ago): the
    # module decides without asking DPA.
    lapsed = dpa.sim.issue_refresh_token("lapsed", expires_at=time.time() - 60)
    stored = record_of(store, dpa, "short")
    stored.update(secret=lapsed, fingerprint="sha256:" + hashlib.sha256(lapsed.encode()).hexdigest()[:12], token_id="lapsed")
    write_record(store, dpa, stored, "lapsed")
    dpa.sim.reset_counts()
    result = run_dpa(runner, dpa, store, id="lapsed", warn_before="", fail_before="")
    assert result["failed"] and result["action"] == "needs_reconcile" and "expired at" in result["msg"], result
    assert result["expiry_status"] == "expired" and any("state: rotated" in s for s in result["reconcile_steps"]), result
    assert dpa.sim.count() == 0                              # the module's own clock decided: no request


def test_access_token_cache_and_renewal_after_a_reboot(runner, dpa, store):
    run_dpa(runner, dpa, store, id="reporting", refresh_token=dpa.issue("reporting"))
    probe = {"url": dpa.url + "/iwc/api/databases/monitor-information", "ca_path": dpa.ca_path, "status_code": [200],
             "headers": {"Authorization": "Bearer {{ r.access_token }}"}}

    def use(**options):
        """Ask for an access token, call the API with it, and show only its hash."""
        task = dpa_task(dpa, store, id="reporting", return_access_token=True, **options)
        task["no_log"] = True
        tasks = [task,
                 {"name": "use", "ansible.builtin.uri": probe, "no_log": True},
                 {"name": "show", "ansible.builtin.debug": {"msg": "{{ r.access_token_renewed }} {{ r.access_token | hash('sha256') }} "
                                                                   "{{ r.changed }}"}}]
        dpa.sim.reset_counts()
        writes = store.writes()
        run = runner.run(tasks, env=dict(store.env))
        assert run.rc == 0, run
        renewed, digest, changed = run.results[-1]["msg"].split()
        cached = record_of(store, dpa)["access_token"]
        assert digest == hashlib.sha256(cached.encode()).hexdigest()     # what was returned is what is cached
        wrote = store.writes() != writes
        assert changed == str(wrote)                                      # changed exactly when the store was written
        return renewed == "True", dpa.posts(), wrote

    assert use() == (False, 0, False)                        # the access token of the first exchange, still fresh
    dpa.sim.reboot()
    assert use() == (True, 1, True)                          # the probe got 401: exchanged again, cached with check-and-set
    assert use() == (False, 0, False)
    dpa.sim.clock.advance(901)                               # DPA says the access token expired
    assert use() == (True, 1, True)
    assert use(access_token_renew_before="1000s") == (True, 1, True)     # near its expiry by the controller's clock


def test_lookup_gives_an_access_token_and_never_the_refresh_token(runner, dpa, file_store):
    store = file_store
    run_dpa(runner, dpa, store, id="reporting", refresh_token=dpa.issue("reporting"))
    lookup = "{{ lookup('tokenops.rotation.dpa_access_token', '%s', url='%s', ca_path='%s', store=%r) }}"

    def call(term="reporting", check=False):
        uri = {"url": dpa.url + "/iwc/api/databases/monitor-information", "ca_path": dpa.ca_path, "status_code": [200],
               "headers": {"Authorization": "Bearer " + lookup % (term, dpa.url, dpa.ca_path, store.options)}}
        dpa.sim.reset_counts()
        return runner.run([{"name": "use", "ansible.builtin.uri": uri, "no_log": True}], env=dict(store.env), check=check)

    assert call().rc == 0 and dpa.posts() == 0               # the cached access token, accepted by the probe
    before = record_of(store, dpa)["access_token"]
    dpa.sim.reboot()
    assert call(check=True).rc == 0 and dpa.posts() == 1     # check mode: a fresh token, but the cache is left alone
    assert record_of(store, dpa)["access_token"] == before
    assert call().rc == 0 and dpa.posts() == 1
    renewed = record_of(store, dpa)["access_token"]
    assert renewed != before and dpa.sim.access_token_works(renewed)
    assert call().rc == 0 and dpa.posts() == 0               # and reused
    missing = call("nothing-here")
    assert missing.rc != 0 and "no refresh token is stored at %s/dpa/%s/nothing-here" % (store.prefix, dpa.host) in missing.stdout
    dpa.sim.delete_refresh_token(record_of(store, dpa)["secret"])
    dead = call()
    assert dead.rc != 0 and "state: rotated" in dead.stdout and "HTTP 400" in dead.stdout


def test_check_mode_predicts_exactly_and_writes_nothing(runner, dpa, file_store):
    store = file_store
    first = dpa.issue("first")
    predicted = run_dpa(runner, dpa, store, id="reporting", refresh_token=first, check=True, diff=True)
    assert predicted["action"] == "created" and predicted["changed"], predicted
    assert record_of(store, dpa) == {}
    real = run_dpa(runner, dpa, store, id="reporting", refresh_token=first)
    assert (real["action"], real["fingerprint"], real["expires_at"]) == (predicted["action"], predicted["fingerprint"], predicted["expires_at"])
    second = dpa.issue("second")
    for options, action, failed in ((dict(refresh_token=second, state="rotated"), "rotated", False),
                                    (dict(refresh_token=dpa.forged("bad"), state="rotated"), "failed", True),
                                    (dict(state="absent"), "removed", False),
                                    (dict(), "none", False)):
        writes = store.writes()
        dpa.sim.reset_counts()
        result = run_dpa(runner, dpa, store, id="reporting", check=True, diff=True, **options)
        assert result["action"] == action and bool(result["failed"]) is failed, result
        assert store.writes() == writes and dpa.sim.count("GET") + dpa.posts() == dpa.sim.count()
    assert record_of(store, dpa)["secret"] == first and "pending" not in record_of(store, dpa)


def test_self_signed_certificate_needs_its_ca_or_validate_certs_off(runner, dpa, file_store):
    token = dpa.issue("reporting")
    without_ca = dpa_task(dpa, file_store, id="reporting", refresh_token=token, name="without ca")
    del without_ca["tokenops.rotation.dpa_refresh_token"]["ca_path"]
    unchecked = dpa_task(dpa, file_store, id="reporting", refresh_token=token, name="unchecked", validate_certs=False)
    del unchecked["tokenops.rotation.dpa_refresh_token"]["ca_path"]
    run = runner.run([without_ca, unchecked], env={})
    refused, stored = run.results
    assert refused["failed"] and "validate refresh token 'reporting' failed: POST /iwc/api/security/oauth/token" in refused["msg"], refused
    assert "TLS error" in refused["msg"] and "Traceback" not in run.output
    assert stored["action"] == "created" and record_of(file_store, dpa)["secret"] == token


@pytest.mark.playbook   # reads what Ansible prints
def test_diff_shows_names_and_fingerprints_never_tokens(runner, dpa, file_store):
    old, new = dpa.issue("old"), dpa.issue("new")
    runner.run([dpa_task(dpa, file_store, id="reporting", refresh_token=old)], env={})
    run = runner.run([dpa_task(dpa, file_store, id="reporting", refresh_token=new, state="rotated")], env={}, diff=True)
    record = record_of(file_store, dpa)
    assert "+fingerprint: %s" % record["fingerprint"] in run.stdout and "+previous.token_id: old" in run.stdout
    assert "-token_id: old" in run.stdout and "+token_id: new" in run.stdout
    assert old not in run.stdout and new not in run.stdout and record["access_token"] not in run.stdout


def test_info_reports_expiry_and_whether_tokens_work(runner, dpa, file_store):
    tokens = [{"id": "alive", "refresh_token": dpa.issue("alive", days=10)},
              {"id": "deleted", "refresh_token": dpa.issue("deleted", days=60)},
              {"id": "forever", "refresh_token": dpa.issue("forever", never=True)}]
    run_dpa(runner, dpa, file_store, tokens=tokens, warn_before="", fail_before="")
    dpa.sim.delete_refresh_token(tokens[1]["refresh_token"])
    info = {"url": dpa.url, "ca_path": dpa.ca_path, "store": file_store.options, "warn_before": "14d"}
    dpa.sim.reset_counts()
    writes = file_store.writes()
    run = runner.run([{"name": "info", "tokenops.rotation.dpa_refresh_token_info": info, "register": "r"},
                      {"name": "offline", "tokenops.rotation.dpa_refresh_token_info": dict(info, validate=False, ids=["alive"])}], env={})
    by_id = {t["id"]: t for t in run.results[0]["tokens"]}
    assert sorted(by_id) == ["alive", "deleted", "forever"]
    assert by_id["alive"]["valid"] and by_id["alive"]["access_token_works"] and by_id["alive"]["monitor_count"] == 2
    assert by_id["alive"]["expiry_status"] == "warn" and by_id["alive"]["days_left"] in (9, 10) and by_id["alive"]["age_days"] == 0
    assert by_id["alive"]["validated_by"] == "probe"
    assert by_id["deleted"]["valid"] is False and by_id["deleted"]["access_token_works"] is False
    assert "invalid_grant" in by_id["deleted"]["error"]
    assert by_id["forever"]["never_expires"] and by_id["forever"]["expiry_status"] == "never" and by_id["forever"]["valid"]
    assert all("secret" not in t and "access_token" not in t for t in by_id.values())
    offline = run.results[1]["tokens"]
    assert [t["id"] for t in offline] == ["alive"] and offline[0]["valid"] is None and offline[0]["name"] == "alive"
    # One probe per cached access token; the dead one's exchange is refused. Nothing else, and nothing written.
    assert dpa.sim.count("GET") == 3 and dpa.posts() == 1 and dpa.sim.count() == 4
    assert file_store.writes() == writes and run.results[0]["changed"] is False


def test_the_refresh_token_comes_from_the_environment_not_an_argument(runner, dpa, file_store):
    """DPA_REFRESH_TOKEN for a single token; refresh_token_env names the variable of an item of tokens."""
    single, listed, other = dpa.issue("reporting"), dpa.issue("capacity"), dpa.issue("elsewhere")
    run = runner.run([dpa_task(dpa, file_store, id="reporting")], env=dict(file_store.env, DPA_REFRESH_TOKEN=single))
    assert run.result["action"] == "created", run.result
    assert record_of(file_store, dpa)["secret"] == single
    # Items read only the variable they name: DPA_REFRESH_TOKEN does not go to every item.
    tokens = [{"id": "capacity", "refresh_token_env": "CAPACITY_REFRESH_TOKEN"}, {"id": "reporting"}]
    run = runner.run([dpa_task(dpa, file_store, tokens=tokens)],
                     env=dict(file_store.env, CAPACITY_REFRESH_TOKEN=listed, DPA_REFRESH_TOKEN=other))
    assert {r["id"]: r["action"] for r in run.result["results"]} == {"capacity": "created", "reporting": "none"}, run.result
    assert record_of(file_store, dpa, "capacity")["secret"] == listed and record_of(file_store, dpa)["secret"] == single
    assert not run.result.get("warnings"), run.result    # no stale token offered to reporting
    bad = runner.run([dpa_task(dpa, file_store, tokens=[{"id": "x", "refresh_token_env": "NOT A NAME"}])], env=dict(file_store.env))
    assert bad.result["failed"] and "refresh_token_env must be the name of an environment variable" in bad.result["msg"]
