"""das_token and das_token_info against the DAS simulator, with the file store and with OpenBao."""

import calendar
import time

import pytest
import requests

from conftest import das_env, das_task

pytestmark = pytest.mark.integration

APP = {"description": "payments OPA", "allow_path_patterns": ["^/v1/systems/pay/.*"], "ttl": "24h"}


def run_das(runner, das, store, check=False, diff=False, admin=True, **options):
    run = runner.run([das_task(das, store, **options)], env=das_env(das, store, admin), check=check, diff=diff)
    assert run.results, run
    return run.result


def assert_idempotent(runner, das, store, **options):
    """A second run: changed false, and neither the simulator nor the store saw a write."""
    das.sim.reset_counts()
    writes = store.writes()
    result = run_das(runner, das, store, **options)
    assert result["changed"] is False, result
    assert result.get("action", "none") == "none" or all(r["action"] == "none" for r in result.get("results", [])), result
    assert das.sim.count(writes_only=True) == 0
    assert store.writes() == writes
    return result


def test_create_bind_persist_then_nothing(runner, das, store):
    opts = dict(id="systems/pay/opa", role_bindings=[{"role_id": "SystemOPA", "resource_kind": "system", "resource_id": "pay"}], **APP)
    result = run_das(runner, das, store, **opts)
    assert result["action"] == "created" and result["changed"] is True, result
    record = store.entry("das", das.host, "systems/pay/opa")
    assert das.sim.secret_works(record["secret"])
    assert record["fingerprint"] == result["fingerprint"] and "pending" not in record
    assert "secret" not in result
    assert das.sim.bindings_for("systems/pay/opa") == [("SystemOPA", "system", "pay")]
    assert das.sim.token("systems/pay/opa")["allow_path_patterns"] == APP["allow_path_patterns"]
    # /v1/tokens/{id} is outside its patterns: the probe goes to /v1/systems/pay/, which the token may call.
    assert result["verified"] == "authorized", result
    assert_idempotent(runner, das, store, **opts)


def test_fields_and_bindings_updated_without_rotation(runner, das, store):
    opts = dict(id="ci", role_bindings=[{"role_id": "WorkspaceViewer", "resource_kind": "workspace", "resource_id": "*"}], **APP)
    run_das(runner, das, store, **opts)
    secret = store.entry("das", das.host, "ci")["secret"]
    opts.update(description="changed", role_bindings=[{"role_id": "SystemOPA", "resource_kind": "system", "resource_id": "s9"}])
    # The update comes later than the proof of the secret: DAS's last_modified_at moves past verified_at, and the run
    # after it must still know the change was its own (no probe, no write: assert_idempotent).
    das.sim.clock.advance(2)
    result = run_das(runner, das, store, **opts)
    assert result["action"] == "updated", result
    assert das.sim.token("ci")["description"] == "changed"
    assert das.sim.bindings_for("ci") == [("SystemOPA", "system", "s9")]
    assert store.entry("das", das.host, "ci")["secret"] == secret and das.sim.secret_works(secret)
    assert_idempotent(runner, das, store, **opts)


def test_state_rotated_kills_old_secret_and_stores_new(runner, das, store):
    run_das(runner, das, store, id="app", **APP)
    old = store.entry("das", das.host, "app")
    result = run_das(runner, das, store, id="app", state="rotated", **APP)
    new = store.entry("das", das.host, "app")
    assert result["action"] == "rotated" and new["secret"] != old["secret"]
    assert das.sim.secret_works(new["secret"]) and not das.sim.secret_works(old["secret"])
    assert new["rotation_count"] == old.get("rotation_count", 0) + 1
    assert result["fingerprint"] == new["fingerprint"] != old["fingerprint"]


def test_due_by_expiry_then_not_due(runner, das, store):
    # The token is made 23 h ago on the simulator's clock, so DAS reports 1 h left.
    das.sim.clock.set(time.time() - 23 * 3600)
    run_das(runner, das, store, id="app", **APP)
    das.sim.clock.set(time.time())
    first = store.entry("das", das.host, "app")["secret"]
    result = run_das(runner, das, store, id="app", rotate_before="2h", **APP)
    assert result["action"] == "rotated" and "rotate_before" in result["msg"], result
    assert not das.sim.secret_works(first)
    assert_idempotent(runner, das, store, id="app", rotate_before="2h", **APP)


def test_due_by_max_age(runner, das, file_store):
    run_das(runner, das, file_store, id="app", **APP)
    time.sleep(1.2)
    result = run_das(runner, das, file_store, id="app", max_age="1s", **APP)
    assert result["action"] == "rotated" and "max_age" in result["msg"]
    assert_idempotent(runner, das, file_store, id="app", max_age="1h", **APP)


def test_stored_secret_rejected_means_due(runner, das, file_store):
    """DAS's documented signal: a 401 with the stored secret means renew."""
    run_das(runner, das, file_store, id="app", **APP)
    stored = file_store.entry("das", das.host, "app")["secret"]
    # Someone regenerates it outside the collection, later than the mint (DAS's last_modified_at, which tells the
    # module to probe a secret proven less than verify.every ago, is kept to the second): the stored secret is dead.
    das.sim.clock.advance(2)
    requests.put(das.url + "/v1/tokens/app", json=dict(APP, regenerate=True), headers={"Authorization": "Bearer " + das.admin},
                 timeout=10).raise_for_status()
    assert not das.sim.secret_works(stored)
    result = run_das(runner, das, file_store, id="app", **APP)
    assert result["action"] == "rotated" and "401" in result["msg"], result
    new = file_store.entry("das", das.host, "app")["secret"]
    assert new != stored and das.sim.secret_works(new)


def end_grace_period(store, das, token_id):
    """The grace period is over: the previous id's revoke_after moved into the past (no waiting for the clock)."""
    def ended(record):
        record["previous"]["revoke_after"] = "2000-01-01T00:00:00Z"
        return record
    store.rewrite("%s/das/%s/%s" % (store.prefix, das.host, token_id), ended)


def test_overlap_keeps_old_secret_alive_until_grace_ends(runner, das, store):
    opts = dict(id="deployer", strategy="overlap", grace_period="1h",
                role_bindings=[{"role_id": "WorkspaceViewer", "resource_kind": "workspace", "resource_id": "*"}], **APP)
    run_das(runner, das, store, **opts)
    old = store.entry("das", das.host, "deployer")
    result = run_das(runner, das, store, state="rotated", **opts)
    new = store.entry("das", das.host, "deployer")
    assert result["action"] == "rotated" and result["token_id"] == "deployer-b", result
    assert new["token_id"] == "deployer-b" and new["previous"]["token_id"] == "deployer"
    assert das.sim.secret_works(new["secret"]) and das.sim.secret_works(old["secret"])   # both live: the overlap
    assert das.sim.bindings_for("deployer-b") == das.sim.bindings_for("deployer") == [("WorkspaceViewer", "workspace", "*")]
    assert result["verified"] == "authorized"
    assert_idempotent(runner, das, store, **opts)   # still in the grace period
    end_grace_period(store, das, "deployer")
    result = run_das(runner, das, store, **opts)
    assert result["action"] == "revoked" and result["revoked_token_id"] == "deployer", result
    assert das.sim.token("deployer") is None and not das.sim.secret_works(old["secret"])
    assert das.sim.secret_works(new["secret"]) and "previous" not in store.entry("das", das.host, "deployer")
    # The next rotation goes back to the first id.
    result = run_das(runner, das, store, state="rotated", **opts)
    assert result["token_id"] == "deployer"


def test_absent_revokes_and_deletes_entry(runner, das, store):
    run_das(runner, das, store, id="systems/s1/opa", **APP)
    secret = store.entry("das", das.host, "systems/s1/opa")["secret"]
    result = run_das(runner, das, store, id="systems/s1/opa", state="absent")
    assert result["action"] == "revoked" and result["changed"], result
    assert das.sim.token("systems/s1/opa") is None and not das.sim.secret_works(secret)
    assert store.entry("das", das.host, "systems/s1/opa") is None
    assert_idempotent(runner, das, store, id="systems/s1/opa", state="absent")


def test_refresher_rotates_app_and_itself(runner, das, store):
    refresher_secret = das.sim.seed_token("token-refresher", roles=[("WorkspaceTokenRefresher", "workspace", "*")])
    run_das(runner, das, store, id="application-token", **APP)   # the administrator made the app token once
    app_before = store.entry("das", das.host, "application-token")["secret"]
    refresher = {"id": "token-refresher", "initial_secret": refresher_secret, "self_rotate": True, "ttl": "720h",
                 "allow_path_patterns": ["^/v1/tokens/.*"]}
    time.sleep(1.1)
    result = run_das(runner, das, store, admin=False, id="application-token", state="rotated", refresher=refresher,
                     max_age="1s", **APP)
    assert result["action"] == "rotated", result
    # The refresher was stored, then renewed itself (older than max_age), and its new secret was used.
    stored_refresher = store.entry("das", das.host, "token-refresher")
    assert result["refresher"]["action"] in ("created", "rotated")
    app_after = store.entry("das", das.host, "application-token")["secret"]
    assert das.sim.secret_works(app_after) and not das.sim.secret_works(app_before)
    assert das.sim.secret_works(stored_refresher["secret"])
    time.sleep(1.1)
    result = run_das(runner, das, store, admin=False, id="application-token", refresher=refresher, max_age="1s", **APP)
    renewed = store.entry("das", das.host, "token-refresher")
    assert result["refresher"]["action"] == "rotated", result
    assert renewed["secret"] != stored_refresher["secret"]
    assert das.sim.secret_works(renewed["secret"]) and not das.sim.secret_works(stored_refresher["secret"])
    assert das.sim.token("token-refresher")["secret"] == renewed["secret"]
    assert_idempotent(runner, das, store, admin=False, id="application-token", refresher=refresher, max_age="1h", **APP)


REFRESHER_ROLES = [("WorkspaceTokenRefresher", "workspace", "*")]


def _iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@pytest.mark.parametrize("learns_from", ["expires_at", "das", "renewal"])
def test_adopted_refresher_learns_its_expiry_and_renews_itself_within_rotate_before(runner, das, store, learns_from):
    """The seed's rotation guide: a refresher made in DAS's UI with 2h left, adopted through initial_secret, keeps
    itself and the tokens it renews alive. Its expiry comes from refresher.expires_at, from DAS (administrator token),
    or, when neither is there, from a renewal with its ttl."""
    refresher_secret = das.sim.seed_token("token-refresher", roles=REFRESHER_ROLES, ttl="2h",
                                          allow_path_patterns=["^/v1/tokens/.*"])
    real_expiry = das.sim.token("token-refresher")["expires"]
    run_das(runner, das, store, id="application-token", **APP)   # the administrator made the app token once
    app = store.entry("das", das.host, "application-token")["secret"]
    refresher = {"id": "token-refresher", "initial_secret": refresher_secret, "self_rotate": True, "ttl": "720h",
                 "allow_path_patterns": ["^/v1/tokens/.*"]}
    if learns_from == "expires_at":
        refresher["expires_at"] = _iso(real_expiry)
    admin = learns_from == "das"
    result = run_das(runner, das, store, admin=admin, id="application-token", refresher=refresher, rotate_before="3h", **APP)
    assert result["refresher"]["action"] == "rotated", result       # 2h left < rotate_before (or unknown): renewed
    stored = store.entry("das", das.host, "token-refresher")
    assert stored["secret"] != refresher_secret and das.sim.secret_works(stored["secret"])
    assert not das.sim.secret_works(refresher_secret)
    renewed_expiry = das.sim.token("token-refresher")["expires"]
    assert renewed_expiry > real_expiry + 700 * 3600
    assert abs(calendar.timegm(time.strptime(stored["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - renewed_expiry) < 120
    # The application token it renews still works, and a second run has nothing to do.
    assert das.sim.secret_works(app)
    again = run_das(runner, das, store, admin=admin, id="application-token", refresher=refresher, rotate_before="3h", **APP)
    assert again["refresher"]["action"] == "none" and again["action"] == "none", again
    rotated = run_das(runner, das, store, admin=False, id="application-token", state="rotated", refresher=refresher,
                      rotate_before="3h", **APP)
    assert rotated["action"] == "rotated" and rotated["refresher"]["action"] == "none", rotated
    assert das.sim.secret_works(store.entry("das", das.host, "application-token")["secret"]) and not das.sim.secret_works(app)


@pytest.mark.playbook   # reads what Ansible prints
def test_a_refresher_that_cannot_renew_warns_before_it_expires(runner, das, file_store):
    refresher_secret = das.sim.seed_token("token-refresher", roles=REFRESHER_ROLES, ttl="2h")
    refresher = {"id": "token-refresher", "initial_secret": refresher_secret,
                 "expires_at": _iso(das.sim.token("token-refresher")["expires"])}
    run_das(runner, das, file_store, id="application-token", **APP)
    run = runner.run([das_task(das, file_store, id="application-token", refresher=refresher, rotate_before="3h", **APP)],
                     env=das_env(das, file_store, admin=False))
    assert run.result["refresher"]["action"] == "created", run.result
    output = " ".join((run.stdout + run.stderr).split())    # Ansible wraps warnings to the terminal's width (stderr)
    assert "self_rotate is off" in output and "token-refresher" in output, run.result.get("warnings")
    assert das.sim.secret_works(refresher_secret)


def test_refresher_cannot_create(runner, das, file_store):
    refresher_secret = das.sim.seed_token("token-refresher", roles=[("WorkspaceTokenRefresher", "workspace", "*")])
    result = run_das(runner, das, file_store, admin=False, id="never-made", refresher={"id": "token-refresher", "initial_secret": refresher_secret},
                     **APP)
    assert result["failed"] and "cannot create tokens" in result["msg"], result
    assert das.sim.count(writes_only=True) == 0


def test_check_mode_predicts_and_touches_nothing(runner, das, store):
    opts = dict(id="app", **APP)
    das.sim.reset_counts()
    predicted = run_das(runner, das, store, check=True, diff=True, **opts)
    assert predicted["action"] == "created" and predicted["changed"] is True, predicted
    assert das.sim.count(writes_only=True) == 0 and store.entry("das", das.host, "app") is None
    real = run_das(runner, das, store, **opts)
    assert real["action"] == predicted["action"]
    for state, expected in (("rotated", "rotated"), ("absent", "revoked"), ("present", "none")):
        writes = store.writes()
        das.sim.reset_counts()
        predicted = run_das(runner, das, store, check=True, diff=True, state=state, **opts) if state != "absent" else \
            run_das(runner, das, store, check=True, diff=True, state=state, id="app")
        assert predicted["action"] == expected, predicted
        assert das.sim.count(writes_only=True) == 0 and store.writes() == writes


@pytest.mark.playbook   # reads what Ansible prints
def test_diff_shows_fingerprints_never_secrets(runner, das, file_store):
    run = runner.run([das_task(das, file_store, id="app", **APP)], env=das_env(das, file_store), diff=True)
    record = file_store.entry("das", das.host, "app")
    assert "+fingerprint: %s" % record["fingerprint"] in run.stdout
    assert record["secret"] not in run.stdout


def diff_of(result):
    diffs = result.get("diff") or []
    diffs = diffs if isinstance(diffs, list) else [diffs]
    return "".join(d.get("before", "") for d in diffs), "".join(d.get("after", "") for d in diffs)


def test_every_update_shows_its_diff(runner, das, file_store):
    """A description, a path pattern or a role binding changed in DAS: changed, and --diff says what, in both modes."""
    opts = dict(id="systems/pay/opa", role_bindings=[{"role_id": "SystemOPA", "resource_kind": "system", "resource_id": "pay"}], **APP)
    assert run_das(runner, das, file_store, **opts)["action"] == "created"
    changes = [
        ({"description": "payments OPA, EU"}, "das.description: 'payments OPA'", "das.description: 'payments OPA, EU'"),
        ({"allow_path_patterns": ["^/v1/systems/pay/bundles/.*"]},
         "das.allow_path_patterns: ^/v1/systems/pay/.*", "das.allow_path_patterns: ^/v1/systems/pay/bundles/.*"),
        ({"role_bindings": [{"role_id": "SystemViewer", "resource_kind": "system", "resource_id": "pay"}]},
         "das.role_bindings: SystemOPA system pay", "das.role_bindings: SystemViewer system pay"),
    ]
    current = dict(opts)
    for change, before_line, after_line in changes:
        current.update(change)
        for check in (True, False):
            result = run_das(runner, das, file_store, check=check, diff=True, **current)
            assert result["action"] == "updated" and result["changed"] is True, result
            before, after = diff_of(result)
            assert before_line in before.splitlines() and after_line in after.splitlines(), (check, result.get("diff"))
    assert das.sim.token("systems/pay/opa")["description"] == "payments OPA, EU"
    assert_idempotent(runner, das, file_store, **current)


def test_many_tokens_in_one_task(runner, das, store):
    tokens = [{"id": "systems/s%d/opa" % i, "allow_path_patterns": ["^/v1/systems/s%d/.*" % i]} for i in range(6)] + ["plain-id"]
    result = run_das(runner, das, store, tokens=tokens, ttl="24h", concurrency=3, allow_path_patterns=["^/v1/x$"])
    assert result["changed"] and len(result["results"]) == 7, result
    assert {r["action"] for r in result["results"]} == {"created"}
    for item in result["results"]:
        assert das.sim.secret_works(store.entry("das", das.host, item["id"])["secret"])
    assert das.sim.token("plain-id")["allow_path_patterns"] == ["^/v1/x$"]
    assert_idempotent(runner, das, store, tokens=tokens, ttl="24h", concurrency=3, allow_path_patterns=["^/v1/x$"])


def test_return_secret_only_with_no_log(runner, das, file_store):
    task = das_task(das, file_store, id="app", return_secret=True, **APP)
    run = runner.run([task], env=das_env(das, file_store))
    assert run.result["failed"] and "no_log" in run.result["msg"]
    assert das.sim.count() == 0
    task["no_log"] = True
    runner.run([task, {"name": "check", "ansible.builtin.assert": {"that": ["r.secret | length > 20"]}}], env=das_env(das, file_store))
    assert file_store.entry("das", das.host, "app")["secret"]
    assert das.sim.count(writes_only=True) == 1


def test_existing_token_without_store_record_is_not_regenerated_silently(runner, das, file_store):
    das.sim.seed_token("made-in-ui", roles=[])
    result = run_das(runner, das, file_store, id="made-in-ui", **APP)
    assert result["failed"] and "state: rotated" in result["msg"], result
    assert das.sim.count(writes_only=True) == 0
    result = run_das(runner, das, file_store, id="made-in-ui", state="rotated", **APP)
    assert result["action"] == "rotated" and das.sim.secret_works(file_store.entry("das", das.host, "made-in-ui")["secret"])


def test_info_reports_expiry_due_and_query(runner, das, file_store):
    run_das(runner, das, file_store, id="a", **APP)
    run_das(runner, das, file_store, id="b", **{**APP, "ttl": "720h"})
    info = {"url": das.url, "store": file_store.options, "rotate_before": "48h", "query": "[?due].id"}
    task = {"name": "info", "tokenops.rotation.das_token_info": info, "register": "r"}
    run = runner.run([task], env=das_env(das, file_store))
    result = run.result
    by_id = {t["id"]: t for t in result["tokens"]}
    assert result["query_result"] == ["a"], result
    assert by_id["a"]["due"] and not by_id["b"]["due"] and by_id["a"]["in_store"] and by_id["b"]["days_left"] in (29, 30)  # 720h, at one-second resolution
    assert by_id["tokenops-admin"]["in_store"] is False
    assert all("secret" not in t for t in result["tokens"])
    das.sim.reset_counts()
    writes = file_store.writes()
    runner.run([task], env=das_env(das, file_store))
    assert das.sim.count() > 0 and das.sim.count(writes_only=True) == 0 and file_store.writes() == writes


def test_lookup_gives_consumers_the_current_secret(runner, das, file_store):
    viewer = [{"role_id": "WorkspaceViewer", "resource_kind": "workspace", "resource_id": "*"}]
    run_das(runner, das, file_store, id="app", role_bindings=viewer, **APP)
    run_das(runner, das, file_store, id="app", role_bindings=viewer, state="rotated", **APP)

    def use(path):
        lookup = "{{ lookup('tokenops.rotation.token', '%s', store=%r) }}" % (path, file_store.options)
        # A path the token's patterns allow, which DAS does not route: 404 once DAS has authenticated the token, 401
        # for a dead one (das.md: every API answers 401 to a token it does not know).
        uri = {"url": das.url + "/v1/systems/pay/consumer-probe", "status_code": [404], "headers": {"Authorization": "Bearer " + lookup}}
        task = {"name": "use", "ansible.builtin.uri": uri, "no_log": True}
        return runner.run([task], env=das_env(das, file_store))

    assert use("das/%s/app" % das.host).rc == 0
    # the API's host:port form names the same entry, and so does the module's store_path
    assert use("das/%s/app" % das.url.split("://", 1)[1]).rc == 0
    assert use("%s/das/%s/app" % (file_store.prefix, das.host)).rc == 0
    missing = use("das/%s/nothing-here" % das.host)
    assert missing.rc != 0 and "no store entry at %s/das/%s/nothing-here" % (file_store.prefix, das.host) in missing.stdout


def test_bindings_changed_with_a_rotation_are_applied_in_the_same_run(runner, das, file_store):
    viewer = [{"role_id": "WorkspaceViewer", "resource_kind": "workspace", "resource_id": "*"}]
    opa = [{"role_id": "SystemOPA", "resource_kind": "system", "resource_id": "s1"}]
    run_das(runner, das, file_store, id="app", role_bindings=viewer, **APP)
    result = run_das(runner, das, file_store, id="app", role_bindings=opa, state="rotated", **APP)
    assert result["action"] == "rotated", result
    assert das.sim.bindings_for("app") == [("SystemOPA", "system", "s1")]
    assert_idempotent(runner, das, file_store, id="app", role_bindings=opa, **APP)


def test_info_audits_the_tenant(runner, das, file_store):
    """audit: every token nobody here manages, that allows every path, or that lives longer than audit_max_lifetime."""
    das.sim.seed_token("wide", ttl="24h", allow_path_patterns=["^/"])
    das.sim.seed_token("nothing-allowed-listed", ttl="24h", allow_path_patterns=[])
    das.sim.seed_token("forever", ttl="87600h", allow_path_patterns=["^/v1/data/.*"])
    das.sim.seed_token("deployer-b", ttl="24h", allow_path_patterns=["^/v1/policies/.*"])
    das.sim.seed_token("app", ttl="24h", allow_path_patterns=["^/v1/data/app/.*"])
    info = {"url": das.url, "store": file_store.options, "ids": ["app"], "managed": ["deployer-b", "forever"], "audit": True}
    run = runner.run([{"name": "audit", "tokenops.rotation.das_token_info": info, "register": "r"}], env=das_env(das, file_store))
    result = run.result
    assert [t["id"] for t in result["tokens"]] == ["app"]
    assert {a["id"]: a["findings"] for a in result["audit"]} == {
        "wide": ["unmanaged", "allows_all_paths"], "nothing-allowed-listed": ["unmanaged", "allows_all_paths"],
        "forever": ["never_expires"], "tokenops-admin": ["unmanaged", "allows_all_paths", "never_expires"]}
    assert all(a["managed"] == (a["id"] == "forever") for a in result["audit"])
    assert das.sim.count(writes_only=True) == 0
