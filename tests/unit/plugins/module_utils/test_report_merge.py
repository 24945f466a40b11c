"""Reports of job slices: each carries its slice, and their merge is the report of one run over all their hosts."""

import datetime
import json

from prometheus_client.parser import text_string_to_metric_families
from test_report import NOW, at, fleet, source, token

from ansible_collections.tokenops.rotation.plugins.module_utils import report as rep

# Two hosts of one DAS tenant: each manages a token the other's audit sees as unmanaged.
AUDIT_A = {"audit": [{"id": "ci", "managed": True, "allows_all_paths": False, "never_expires": False},
                     {"id": "legacy", "managed": False, "allows_all_paths": True, "never_expires": True, "expires_at": None},
                     {"id": "b-token", "managed": False, "allows_all_paths": True, "never_expires": False}]}
AUDIT_B = {"audit": [{"id": "ci", "managed": False, "allows_all_paths": False, "never_expires": False},
                     {"id": "legacy", "managed": False, "allows_all_paths": True, "never_expires": True, "expires_at": None},
                     {"id": "b-token", "managed": True, "allows_all_paths": True, "never_expires": False}]}


def sliced_fleet():
    sources = fleet() + [source("das", "team-a", [token("ci")], url="https://t.example", audit=AUDIT_A),
                         source("das", "team-b", [token("b-token")], url="https://t.example", audit=AUDIT_B)]
    # Slices as AWX cuts them: hosts ordered by name, every third one to the same slice.
    ordered = sorted(sources, key=lambda s: s["endpoint"])
    return sources, [ordered[number::3] for number in range(3)]


def as_written(report):
    """A report as the merge reads it back: the JSON file."""
    return json.loads(rep.to_json(report))


def slice_reports(parts, now=NOW):
    return [("slice-%d.json" % n, as_written(rep.build(part, now=now, slice_name=str(7 + n)))) for n, part in enumerate(parts)]


def without_run(report):
    return {k: v for k, v in report.items() if k not in ("slice", "slices")}


def test_the_merge_of_the_slices_is_the_report_of_one_run():
    sources, parts = sliced_fleet()
    assert {s["endpoint"] for s in parts[0]} & {s["endpoint"] for s in parts[1]} == set()
    assert {"team-a", "team-b"} & {s["endpoint"] for s in parts[0]} != {"team-a", "team-b"} & {s["endpoint"] for s in parts[1]}
    merged, warnings = rep.merge(slice_reports(parts), now=NOW)
    whole = as_written(rep.build(sources, now=NOW))
    assert warnings == []
    assert without_run(as_written(merged)) == without_run(whole)
    # The tenant audit across slices: b-token is managed by team-b (another slice), so only its open paths remain.
    assert [(a["token"], a["findings"]) for a in merged["audit"]] == [
        ("b-token", ["allows_all_paths"]), ("legacy", ["unmanaged", "allows_all_paths", "never_expires"])]
    assert merged["audit"][0]["endpoint"] == "team-a, team-b"
    assert merged["slice"] == "" and [s["slice"] for s in merged["slices"]] == ["7", "8", "9"]
    assert rep.to_prometheus(merged) == rep.to_prometheus(as_written(rep.build(sources, now=NOW)))


def test_the_merge_judges_again_with_its_own_fail_on_and_time():
    _sources, parts = sliced_fleet()
    reports = slice_reports(parts)
    lenient, _warnings = rep.merge(reports, now=NOW, fail_on=[])
    assert lenient["failures"] == [] and lenient["outcome"] == "attention"
    # A grant that had waited 5 minutes when its slice ran has waited two days when the merge runs.
    later = NOW + datetime.timedelta(days=2)
    merged, _warnings = rep.merge(reports, now=later)
    grant = [r for r in merged["rows"] if r["token"] == "fresh-grant"][0]
    assert grant["conditions"] == ["consent_overdue"] and grant["fails_job"]
    assert len(grant["todo"]) == 1 and grant["todo"][0].startswith("Have the resource owner approve")
    fresh = [r for r in merged["rows"] if r["token"] == "fresh"][0]
    assert fresh["seconds_left"] == 28 * 86400


def test_a_token_in_two_reports_keeps_the_newer_row_and_says_so():
    first = as_written(rep.build([source("das", "tenant-a", [token("t", "rotated")])], now=NOW, slice_name="1"))
    again = as_written(rep.build([source("das", "tenant-a", [token("t", "none")])], now=NOW + datetime.timedelta(hours=1), slice_name="2"))
    merged, warnings = rep.merge([("new.json", again), ("old.json", first)], now=NOW + datetime.timedelta(hours=2))
    assert [(r["token"], r["action"]) for r in merged["rows"]] == [("t", "none")]
    assert len(warnings) == 1 and "old.json" in warnings[0] and "new.json" in warnings[0]


def test_a_file_that_is_not_a_report_is_refused():
    try:
        rep.merge([("x.json", {"rows": []})], now=NOW)
    except ValueError as exc:
        assert "x.json" in str(exc) and "generated_at" in str(exc)
    else:
        raise AssertionError("a document without generated_at merged")


def test_a_slice_s_metrics_carry_its_slice_and_its_set_stats_key_too():
    report = rep.build(fleet(), now=NOW, slice_name="4711")
    samples = [s for family in text_string_to_metric_families(rep.to_prometheus(report)) for s in family.samples]
    assert samples and all(s.labels.get("slice") == "4711" for s in samples)
    plain = [s for family in text_string_to_metric_families(rep.to_prometheus(rep.build(fleet(), now=NOW))) for s in family.samples]
    assert all("slice" not in s.labels for s in plain)
    assert rep.stats_key("4711") == "tokenops_rotation_report_slice_4711"
    assert rep.stats_key("eu-1.a") == "tokenops_rotation_report_slice_eu_1_a"
    assert rep.stats_key("") == "tokenops_rotation_report"
    assert rep.stats(report, {})["slice"] == "4711" and "(job slice 4711)" in rep.summary_lines(report)[0]
    assert at(days=0) == report["generated_at"]
