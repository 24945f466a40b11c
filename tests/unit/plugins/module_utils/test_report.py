"""The report across products: rows, conditions, urgency, the audit, and the four renderings."""

import datetime
import json
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ansible_collections.tokenops.rotation.plugins.module_utils import report as rep

NOW = datetime.datetime(2027, 1, 15, 8, 0, 0, tzinfo=datetime.timezone.utc)
SECRET = "s3cr3t-VALUE-that-must-never-show"


def at(**delta):
    return (NOW + datetime.timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def token(token_id, action="none", **extra):
    result = {"id": token_id, "action": action, "changed": action not in ("none", "needs_reconcile", "needs_interaction"),
              "token_id": token_id, "fingerprint": "sha256:0123456789ab", "expires_at": at(days=30), "rotated_at": at(days=-1),
              "store_path": "tokenops/x/%s" % token_id}
    result.update(extra)
    return result


def source(product, endpoint, results, **extra):
    ids = [r["id"] for r in results]
    src = {"product": product, "endpoint": endpoint, "url": "https://%s.example" % endpoint, "check_mode": False,
           "configured": ids, "removing": [], "rotate": {"changed": False, "results": results}}
    src.update(extra)
    return src


def fleet():
    """One of everything across the four products."""
    return [
        source("das", "tenant-a", [
            token("fresh"),
            token("due", "rotated", expires_at=at(days=1)),
            token("broken", "needs_reconcile", fingerprint=None,
                  reconcile_steps=["Revoke token broken-b in DAS", "Run the job again with das_state: rotated"]),
            token("held", backed_off=True, fingerprint=None, holder="awx-7:123", lease_expires_at=at(seconds=40),
                  msg="another run holds it"),
        ]),
        source("dpa", "dpa-1", [
            token("warned", expiry_status="warn", days_left=20, expires_at=at(days=20)),
            token("dying", failed=True, expiry_status="fail", days_left=3, expires_at=at(days=3), msg="expires in 3 days"),
        ]),
        source("secretserver", "pam-1", [
            token("otp-user", "needs_interaction", failed=True, msg="a fresh one-time code is needed: run with otp"),
            token("down", "failed", failed=True, fingerprint=None, expires_at=None, msg="Secret Server: connection refused"),
        ]),
        source("openpayments", "as-1", [
            token("payout", "needs_interaction", fingerprint=None, expires_at=None, redirect="https://as.example/interact/1",
                  grant_requested_at=at(days=-2)),
            token("fresh-grant", "needs_interaction", fingerprint=None, expires_at=None, redirect="https://as.example/interact/2",
                  grant_requested_at=at(minutes=-5)),
            token("stale-hold", backed_off=True, fingerprint=None, holder="node-2:99", lease_expires_at=at(minutes=-10),
                  backed_off_at=at(minutes=-11), holder_state="stopped", holder_checked_at=at(minutes=-9)),
        ]),
    ]


def by_token(report):
    return {(r["product"], r["token"]): r for r in report["rows"]}


def test_conditions_and_what_fails_the_job():
    report = rep.build(fleet(), now=NOW)
    rows = by_token(report)
    assert rows[("das", "broken")]["conditions"] == ["needs_reconcile"]
    assert rows[("das", "broken")]["todo"] == ["Revoke token broken-b in DAS", "Run the job again with das_state: rotated"]
    assert rows[("das", "held")]["conditions"] == ["backed_off"] and not rows[("das", "held")]["fails_job"]
    assert rows[("openpayments", "stale-hold")]["conditions"] == ["backed_off_stale"]
    assert rows[("dpa", "dying")]["conditions"] == ["dpa_fail_before"] and "before %s" % at(days=3) in rows[("dpa", "dying")]["todo"][0]
    assert rows[("dpa", "warned")]["conditions"] == ["dpa_warn_before"] and not rows[("dpa", "warned")]["fails_job"]
    assert rows[("secretserver", "otp-user")]["conditions"] == ["needs_interaction"]
    assert rows[("secretserver", "down")]["conditions"] == ["failed"]
    assert rows[("openpayments", "payout")]["conditions"] == ["consent_overdue"]
    assert "https://as.example/interact/1" in rows[("openpayments", "payout")]["todo"][0]
    assert rows[("openpayments", "fresh-grant")]["conditions"] == ["consent_waiting"]
    assert not rows[("openpayments", "fresh-grant")]["fails_job"] and rows[("openpayments", "fresh-grant")]["needs_person"]
    assert rows[("das", "fresh")]["conditions"] == [] and not rows[("das", "fresh")]["needs_person"]
    failing = {(f["product"], f["token"]) for f in report["failures"]}
    assert failing == {("das", "broken"), ("dpa", "dying"), ("secretserver", "otp-user"), ("secretserver", "down"),
                       ("openpayments", "payout"), ("openpayments", "stale-hold")}
    assert report["outcome"] == "failed" and report["counts"]["fails_job"] == 6 and report["counts"]["tokens"] == 11


def test_rows_most_urgent_first():
    rows = rep.build(fleet(), now=NOW)["rows"]
    ranks = [rep._rank(r) for r in rows]
    assert ranks == sorted(ranks)
    # Within what fails the job, the token that expires first comes first; unknown expiry last.
    failing = [r for r in rows if r["fails_job"]]
    assert failing[0]["token"] == "dying"
    assert [r["token"] for r in rows if rep._rank(r) == 1] == ["warned", "fresh-grant"]
    assert [r["token"] for r in rows if rep._rank(r) == 2] == ["due"]
    assert rows[-1]["token"] == "fresh"


def test_fail_on_decides():
    strict = rep.build(fleet(), now=NOW, fail_on=["dpa_warn_before", "consent_waiting"])
    assert {f["token"] for f in strict["failures"]} == {"warned", "fresh-grant"}
    lenient = rep.build(fleet(), now=NOW, fail_on=[])
    assert lenient["failures"] == [] and lenient["outcome"] == "attention"
    longer = rep.build(fleet(), now=NOW, consent_wait_limit="3d")
    assert by_token(longer)[("openpayments", "payout")]["conditions"] == ["consent_waiting"]
    with pytest.raises(ValueError, match="unknown condition"):
        rep.build(fleet(), now=NOW, fail_on=["sometimes"])


def test_a_task_that_failed_as_a_whole_still_gives_each_token_a_row():
    read = {"tokens": [{"id": "reporting", "expires_at": at(days=5), "fingerprint": "sha256:aaaaaaaaaaaa", "expiry_status": "fail"}]}
    src = {"product": "dpa", "endpoint": "dpa-1", "configured": ["reporting", "archive"], "removing": ["old"], "read": read,
           "rotate": {"failed": True, "msg": "SolarWinds DPA: store (vault): connection refused"},
           "cleanup": {"failed": True, "msg": "SolarWinds DPA: store (vault): connection refused"}}
    rows = by_token(rep.build([src], now=NOW))
    assert set(rows) == {("dpa", "reporting"), ("dpa", "archive"), ("dpa", "old")}
    assert all(r["fails_job"] and "connection refused" in r["todo"][0] for r in rows.values())
    # What the store knew before the run is kept: when the token dies.
    assert rows[("dpa", "reporting")]["expires_at"] == at(days=5) and rows[("dpa", "reporting")]["time_left"] == "5d 0h"
    assert rows[("dpa", "old")]["stage"] == "cleanup"


def test_the_ids_of_a_tokens_file_each_get_a_row(tmp_path):
    """A role given <product>_tokens_file records the file, not the ids: the report reads them from it, so a token the
    task never reached still gets its row (Secret Server items may be named by username)."""
    catalog = tmp_path / "pam.yml"
    catalog.write_text("tokens:\n  - {id: reports, username: svc-reports}\n  - {username: svc-backup}\n  - {id: audit}\n")
    src = source("secretserver", "pam-1", [token("reports")], configured=[], configured_file=str(catalog))
    rows = by_token(rep.build([src], now=NOW))
    assert set(rows) == {("secretserver", "reports"), ("secretserver", "svc-backup"), ("secretserver", "audit")}, rows
    assert not rows[("secretserver", "reports")]["fails_job"]
    assert rows[("secretserver", "audit")]["fails_job"] and "did not reach" in rows[("secretserver", "audit")]["todo"][0]


def test_a_tokens_file_that_cannot_be_read_is_a_failed_row(tmp_path):
    missing = tmp_path / "gone.yml"
    src = {"product": "das", "endpoint": "tenant-a", "configured": [], "configured_file": str(missing), "removing": [],
           "rotate": {"failed": True, "msg": "tokens_file: cannot read %s: No such file or directory" % missing}}
    report = rep.build([src], now=NOW)
    assert [(r["token"], r["conditions"]) for r in report["rows"]] == [("", ["failed"])], report["rows"]
    assert str(missing) in report["rows"][0]["msg"] and "Fix the tokens file of tenant-a" in report["rows"][0]["todo"][0]


def test_a_role_that_failed_before_any_token():
    src = {"product": "das", "endpoint": "tenant-z", "error": "Validation of arguments failed: das_url is required"}
    report = rep.build([src], now=NOW)
    assert [(r["token"], r["conditions"]) for r in report["rows"]] == [("", ["failed"])]
    assert "das_url is required" in rep.failure_lines(report)[1]
    assert report["errors"] == [{"product": "das", "endpoint": "tenant-z", "stage": "role",
                                 "msg": "Validation of arguments failed: das_url is required"}]


def test_a_refresher_that_backed_off_holds_every_token_of_its_task():
    src = source("das", "tenant-a", [])
    src["configured"] = ["app-a", "app-b"]
    src["rotate"] = {"changed": False, "backed_off": True, "msg": "the refresher is being renewed by another run",
                     "refresher": token("token-refresher", backed_off=True, fingerprint=None, lease_expires_at=at(seconds=30))}
    rows = rep.build([src], now=NOW)["rows"]
    expected = {"token-refresher": ["backed_off"], "app-a": ["backed_off"], "app-b": ["backed_off"]}
    assert {r["token"]: r["conditions"] for r in rows} == expected


def test_a_holder_is_judged_by_what_the_run_saw_not_by_when_the_report_is_written():
    """Two runs held tokens this run backed off from; the report is written long after both leases ended.
    Only the holder the run found stopped (its intent still there after its lease) pages a person."""
    lease_end = at(minutes=-30)
    seen = dict(backed_off=True, fingerprint=None, lease_expires_at=lease_end, backed_off_at=at(minutes=-31))
    src = source("das", "tenant-a", [
        token("finished-normally", holder="node-a:11", holder_state="finished", holder_checked_at=at(minutes=-29), **seen),
        token("still-working", holder="node-b:12", holder_state="working", holder_checked_at=at(minutes=-31), **seen),
        token("holder-died", holder="node-c:13", holder_state="stopped", holder_checked_at=at(minutes=-29), **seen),
        token("not-rechecked", holder="node-d:14", **seen),
    ])
    rows = by_token(rep.build([src], now=NOW))
    assert rows[("das", "finished-normally")]["conditions"] == ["backed_off"] and not rows[("das", "finished-normally")]["fails_job"]
    assert rows[("das", "still-working")]["conditions"] == ["backed_off"]
    assert rows[("das", "not-rechecked")]["conditions"] == ["backed_off"]
    assert rows[("das", "holder-died")]["conditions"] == ["backed_off_stale"] and rows[("das", "holder-died")]["fails_job"]
    assert "node-c:13" in rows[("das", "holder-died")]["todo"][0]
    # Without a re-read, a lease that had already run out when the run backed off still counts as a dead holder.
    late = source("das", "tenant-b", [token("seen-dead", holder="node-e:15", backed_off=True, fingerprint=None,
                                            lease_expires_at=at(minutes=-40), backed_off_at=at(minutes=-31))])
    assert by_token(rep.build([late], now=NOW))[("das", "seen-dead")]["conditions"] == ["backed_off_stale"]


def test_a_token_left_without_a_secret_is_a_failure_outside_check_mode():
    src = source("das", "tenant-a", [token("ghost", fingerprint=None)])
    assert by_token(rep.build([src], now=NOW))[("das", "ghost")]["conditions"] == ["failed"]
    src["check_mode"] = True
    assert by_token(rep.build([src], now=NOW))[("das", "ghost")]["conditions"] == []


def test_consent_wait_from_the_read_when_the_result_does_not_say():
    src = source("openpayments", "as-1", [token("payout", "needs_interaction", fingerprint=None, redirect="https://as.example/i")])
    src["read"] = {"grants": [{"id": "payout", "grant_requested_at": at(days=-3)}]}
    row = by_token(rep.build([src], now=NOW))[("openpayments", "payout")]
    assert row["conditions"] == ["consent_overdue"] and row["grant_requested_at"] == at(days=-3)


def test_the_audit_of_a_tenant_shared_by_two_hosts():
    audit_a = {"audit": [{"id": "ci", "managed": True, "allows_all_paths": False, "never_expires": False},
                         {"id": "legacy", "managed": False, "allows_all_paths": True, "never_expires": True, "expires_at": None},
                         {"id": "b-token", "managed": False, "allows_all_paths": False, "never_expires": False}]}
    audit_b = {"audit": [{"id": "ci", "managed": False, "allows_all_paths": False, "never_expires": False},
                         {"id": "legacy", "managed": False, "allows_all_paths": True, "never_expires": True, "expires_at": None},
                         {"id": "b-token", "managed": True, "allows_all_paths": False, "never_expires": False}]}
    sources = [source("das", "team-a", [], url="https://t.example", audit=audit_a),
               source("das", "team-b", [], url="https://t.example", audit=audit_b)]
    report = rep.build(sources, now=NOW)
    assert [(a["token"], a["findings"]) for a in report["audit"]] == [("legacy", ["unmanaged", "allows_all_paths", "never_expires"])]
    assert report["audit"][0]["endpoint"] == "team-a, team-b" and not report["audit"][0]["fails_job"]
    assert report["outcome"] == "attention"
    assert rep.build(sources, now=NOW, fail_on=["das_unmanaged"])["outcome"] == "failed"


def test_no_field_a_report_does_not_name_reaches_it():
    leaky = token("leaky", "rotated", secret=SECRET, previous={"secret": SECRET}, access_token=SECRET, extra={"v": SECRET})
    report = rep.build([source("das", "tenant-a", [leaky])], now=NOW)
    for render in (rep.to_json, rep.to_markdown, rep.to_html, rep.to_prometheus):
        assert SECRET not in render(report)
    assert SECRET not in json.dumps(rep.stats(report, {}))


def test_markdown_and_html_escape_what_they_show():
    hostile = token("x|y", "failed", failed=True, msg="<script>alert(1)</script> | broken\nsecond line")
    report = rep.build([source("das", "tenant-a", [hostile]), source("openpayments", "as-1", [
        token("payout", "needs_interaction", fingerprint=None, redirect="https://as.example/interact/1?a=1&b=2",
              grant_requested_at=at(minutes=-1))])], now=NOW)
    markdown = rep.to_markdown(report)
    table = [ln for ln in markdown.splitlines() if ln.startswith("| FAIL")]
    assert len(table) == 1 and "x\\|y" in table[0] and "\\| broken<br>second line" in table[0]
    page = rep.to_html(report)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; | broken" in page
    assert '<a href="https://as.example/interact/1?a=1&amp;b=2" rel="noreferrer">https://as.example/interact/1?a=1&amp;b=2</a>, then' in page
    # Self-contained: nothing is loaded from anywhere; the only URLs are the links a person follows. The page's own
    # script is inline, and its data is JSON in which no value can end the script element.
    assert not re.search(r"<(link|img|iframe)\b|src=|@import|url\(", page)
    assert page.count("<script") == 2 and "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in page


def test_prometheus_text_format():
    report = rep.build(fleet(), now=NOW)
    families = {f.name: f for f in text_string_to_metric_families(rep.to_prometheus(report))}
    expiry = {s.labels["token"]: s.value for s in families["tokenops_rotation_token_expiry_timestamp_seconds"].samples}
    assert expiry["due"] == (NOW + datetime.timedelta(days=1)).timestamp()
    assert "payout" not in expiry   # no expiry known: no sample
    rotated = {s.labels["token"]: s.value for s in families["tokenops_rotation_token_last_rotation_timestamp_seconds"].samples}
    assert rotated["fresh"] == (NOW - datetime.timedelta(days=1)).timestamp()
    needs = {s.labels["token"]: s.value for s in families["tokenops_rotation_token_needs_person"].samples}
    assert needs["broken"] == 1 and needs["fresh"] == 0 and needs["fresh-grant"] == 0
    assert [s.value for s in families["tokenops_rotation_run_success"].samples] == [0]
    assert [s.value for s in families["tokenops_rotation_run_timestamp_seconds"].samples] == [NOW.timestamp()]
    by_action = {s.labels["action"]: s.value for s in families["tokenops_rotation_run_tokens"].samples}
    assert by_action["rotated"] == 1 and sum(by_action.values()) == 11
    assert all(f.type == "gauge" for f in families.values())
    assert "\ntokenops_rotation_run_success 0\n" in rep.to_prometheus(report)   # no empty braces on a metric without labels
    # A token this run created, whose result gives no time: its last rotation is now.
    created = rep.build([source("das", "tenant-a", [token("new", "created", rotated_at=None)])], now=NOW)
    samples = {f.name: f.samples for f in text_string_to_metric_families(rep.to_prometheus(created))}
    assert [s.value for s in samples["tokenops_rotation_token_last_rotation_timestamp_seconds"]] == [NOW.timestamp()]


def test_prometheus_label_values_are_escaped():
    report = rep.build([source("das", 'ten"ant\\a', [token("sys/with\nnewline")])], now=NOW)
    families = {f.name: f for f in text_string_to_metric_families(rep.to_prometheus(report))}
    sample = families["tokenops_rotation_token_expiry_timestamp_seconds"].samples[0]
    assert sample.labels == {"product": "das", "endpoint": 'ten"ant\\a', "token": "sys/with\nnewline"}


@pytest.mark.parametrize("seconds,text", [(None, ""), (0, "0s"), (59, "59s"), (61, "1m"), (3 * 3600 + 120, "3h 2m"),
                                          (30 * 86400 - 1, "29d 23h"), (-2 * 3600, "expired 2h 0m ago")])
def test_time_left(seconds, text):
    assert rep.time_left(seconds) == text


def test_never_expiring_dpa_token():
    row = by_token(rep.build([source("dpa", "dpa-1", [token("archive", expires_at=None, never_expires=True,
                                                            expiry_status="never")])], now=NOW))[("dpa", "archive")]
    assert row["time_left"] == "never" and row["conditions"] == []


def test_prometheus_failed_tokens_and_last_success():
    report = rep.build(fleet(), now=NOW)      # has failures
    families = {f.name: f for f in text_string_to_metric_families(rep.to_prometheus(report))}
    failed = {s.labels["token"]: s.value for s in families["tokenops_rotation_token_failed"].samples}
    assert failed["down"] == 1 and failed["broken"] == 0 and failed["fresh"] == 0     # needs_reconcile is not a failure
    # A failed run has no success of its own: it keeps the earlier one, or has none.
    assert not families["tokenops_rotation_last_success_timestamp_seconds"].samples
    kept = {f.name: f for f in text_string_to_metric_families(rep.to_prometheus(report, last_success=1234))}
    assert [s.value for s in kept["tokenops_rotation_last_success_timestamp_seconds"].samples] == [1234]
    good = rep.build([source("das", "tenant-a", [token("fresh")])], now=NOW)
    samples = {f.name: f.samples for f in text_string_to_metric_families(rep.to_prometheus(good, last_success=1234))}
    assert [s.value for s in samples["tokenops_rotation_last_success_timestamp_seconds"]] == [NOW.timestamp()]
    # Check mode predicts: it succeeds at nothing.
    predicted = rep.build([source("das", "tenant-a", [token("fresh")], check_mode=True)], now=NOW)
    assert rep.last_success_of(predicted, 99) == 99
