"""rotation_report under job slicing: a slice's files carry its slice, and `merge` makes one report of the slices'."""

import json
import os
import subprocess
import sys

from test_rotation_report import MODULE, SOURCES

from tests.conftest import DEV_COLLECTIONS

OTHER = [{"product": "dpa", "endpoint": "dpa-1", "url": "https://dpa.example", "check_mode": False, "configured": ["reporting"],
          "removing": [], "rotate": {"results": [
              {"id": "reporting", "action": "none", "changed": False, "fingerprint": "sha256:0123456789ab",
               "expires_at": "2099-01-01T00:00:00Z"}]}}]


def run_module(tmp_path, **args):
    """The module with these arguments; sources=None leaves sources out, as a task without it does."""
    args.setdefault("sources", SOURCES)
    args.setdefault("dest", str(tmp_path / "reports"))
    args = {k: v for k, v in args.items() if v is not None}
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=str(DEV_COLLECTIONS))
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def test_a_slice_writes_files_and_a_stats_key_of_its_own(tmp_path):
    result = run_module(tmp_path, slice="4711", prometheus_path=str(tmp_path / "collector" / "tokenops.prom"))
    assert not result.get("failed"), result
    assert result["stats_key"] == "tokenops_rotation_report_slice_4711" and result["slice"] == "4711"
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
        "tokenops-rotation.slice-4711.html", "tokenops-rotation.slice-4711.json", "tokenops-rotation.slice-4711.md"]
    assert result["files"]["prometheus"] == str(tmp_path / "collector" / "tokenops.slice-4711.prom")
    assert 'slice="4711"' in (tmp_path / "collector" / "tokenops.slice-4711.prom").read_text()
    (tmp_path / "unsliced").mkdir()
    unsliced = run_module(tmp_path / "unsliced")
    assert unsliced["stats_key"] == "tokenops_rotation_report" and unsliced["slice"] == ""


def test_merge_makes_one_report_of_the_slices_reports(tmp_path):
    volume = tmp_path / "volume"
    for number, sources in ((1, SOURCES), (2, OTHER)):
        (tmp_path / str(number)).mkdir()
        assert not run_module(tmp_path / str(number), sources=sources, slice=str(number), dest=str(volume), formats=["json"]).get("failed")
    (tmp_path / "m").mkdir()
    merged = run_module(tmp_path / "m", sources=None, merge=[str(volume / "tokenops-rotation.slice-*.json")], dest=str(tmp_path / "out"))
    assert not merged.get("failed"), merged
    assert sorted((r["product"], r["token"]) for r in merged["rows"]) == [("das", "broken"), ("das", "ok"), ("dpa", "reporting")]
    assert merged["stats_key"] == "tokenops_rotation_report" and [s["slice"] for s in merged["slices"]] == ["1", "2"]
    assert merged["outcome"] == "failed" and merged["counts"]["endpoints"] == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "tokenops-rotation.html", "tokenops-rotation.json", "tokenops-rotation.md", "tokenops-rotation.prom"]
    assert json.loads((tmp_path / "out" / "tokenops-rotation.json").read_text())["rows"] == merged["rows"]


def test_merge_refuses_what_it_cannot_read_before_writing(tmp_path):
    missing = run_module(tmp_path, sources=None, merge=[str(tmp_path / "none-*.json")])
    assert missing["failed"] and "no report matches" in missing["msg"] and not (tmp_path / "reports").exists()
    (tmp_path / "notes.json").write_text('{"rows": []}')
    wrong = run_module(tmp_path, sources=None, merge=[str(tmp_path / "notes.json")])
    assert wrong["failed"] and "is not a JSON report" in wrong["msg"] and not (tmp_path / "reports").exists()
    (tmp_path / "broken.json").write_text("{")
    broken = run_module(tmp_path, sources=None, merge=[str(tmp_path / "broken.json")])
    assert broken["failed"] and "cannot read the JSON report" in broken["msg"]


def test_bad_slice_and_option_combinations_fail_clearly(tmp_path):
    bad = run_module(tmp_path, slice="../etc")
    assert bad["failed"] and "slice must be" in bad["msg"] and not (tmp_path / "reports").exists()
    both = run_module(tmp_path, merge=[str(tmp_path / "a.json")])
    assert both["failed"] and "mutually exclusive" in both["msg"]
    neither = run_module(tmp_path, sources=None)
    assert neither["failed"] and "one of the following is required" in neither["msg"]


def test_set_stats_hands_the_outcome_and_every_tokens_result_to_the_workflow(tmp_path):
    # A task result's ansible_stats is what Ansible keeps as the run's custom stats (ansible.builtin.set_stats returns
    # the same); playbook tokenops.rotation.rotate relies on it instead of a set_stats task (test_awx_job checks the artifacts).
    result = run_module(tmp_path, slice="4711", set_stats=True)
    assert not result.get("failed"), result
    assert result["ansible_stats"]["per_host"] is False and result["ansible_stats"]["aggregate"] is True
    data = result["ansible_stats"]["data"]
    assert sorted(data) == ["tokenops_rotation_report_slice_4711", "tokenops_rotation_tokens_slice_4711"]
    assert data["tokenops_rotation_report_slice_4711"] == result["stats"]
    assert data["tokenops_rotation_tokens_slice_4711"] == result["tokens"]
    assert sorted(r["id"] for r in data["tokenops_rotation_tokens_slice_4711"]["das"]["tenant-a"]) == ["broken", "ok"]
    (tmp_path / "plain").mkdir()
    assert "ansible_stats" not in run_module(tmp_path / "plain")       # only when asked: a role's check hands nothing on


def test_return_rows_false_leaves_what_grows_with_the_tokens_in_the_files(tmp_path):
    full = run_module(tmp_path)
    (tmp_path / "lean").mkdir()
    lean = run_module(tmp_path / "lean", return_rows=False, set_stats=True, dest=str(tmp_path / "reports"))   # the same files
    assert not lean.get("failed"), lean
    assert {"rows", "tokens", "scope"} <= set(full) and not {"rows", "tokens", "scope"} & set(lean)
    for kept in ("summary", "counts", "needs_person", "failures", "failure_lines", "outcome", "stats", "stats_key"):
        assert lean[kept] == full[kept] or kept == "stats" and dict(lean[kept], generated_at=None) == dict(full[kept], generated_at=None), kept
    assert lean["failures"]                                                # what needs a person stays in the result
    written = json.loads((tmp_path / "reports" / "tokenops-rotation.json").read_text())
    assert [r["token"] for r in written["rows"]] == [r["token"] for r in full["rows"]] and written["scope"] == full["scope"]
    assert lean["ansible_stats"]["data"]["tokenops_rotation_tokens"] == full["tokens"]


def test_spool_dir_is_removed_once_read_and_only_what_the_sources_name(tmp_path):
    spool = tmp_path / "tokenops-spool-x"
    spool.mkdir()
    (spool / "das-tenant-a-rotate.json").write_text(json.dumps({"results": SOURCES[0]["rotate"]["results"]}))
    sources = [dict(SOURCES[0], rotate={"report_spool": str(spool / "das-tenant-a-rotate.json"), "results_spooled": 2})]
    (tmp_path / "c").mkdir()
    check = run_module(tmp_path / "c", sources=sources, spool_dir=str(spool), _ansible_check_mode=True)
    assert [r["token"] for r in check["rows"]] == ["broken", "ok"] and (spool / "das-tenant-a-rotate.json").exists()
    (spool / "stray.json").write_text("{}")
    kept = run_module(tmp_path, sources=sources, spool_dir=str(spool))
    assert [r["token"] for r in kept["rows"]] == ["broken", "ok"], kept                 # read first
    assert sorted(p.name for p in spool.iterdir()) == ["stray.json"] and "stray.json" in json.dumps(kept["warnings"])
    (spool / "stray.json").unlink()
    (spool / "das-tenant-a-rotate.json").write_text(json.dumps({"results": SOURCES[0]["rotate"]["results"]}))
    (tmp_path / "again").mkdir()
    gone = run_module(tmp_path / "again", sources=sources, spool_dir=str(spool))
    assert not gone.get("failed") and not gone.get("warnings") and not spool.exists(), gone
    not_a_folder = tmp_path / "not-a-folder"
    not_a_folder.write_text("x")
    (tmp_path / "odd").mkdir()
    odd = run_module(tmp_path / "odd", sources=SOURCES, spool_dir=str(not_a_folder))   # a warning, never a traceback
    assert not odd.get("failed") and "is left as it is" in json.dumps(odd["warnings"]) and not_a_folder.exists(), odd
