"""The rotation_report module as Ansible runs it: a process given its arguments, answering JSON."""

import json
import os
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DEV_COLLECTIONS, REPO

MODULE = REPO / "plugins" / "modules" / "rotation_report.py"

SOURCES = [
    {"product": "das", "endpoint": "tenant-a", "url": "https://t.example", "check_mode": False, "configured": ["ok", "broken"],
     "removing": [], "rotate": {"failed": True, "msg": "broken: needs a person", "results": [
         {"id": "ok", "action": "rotated", "changed": True, "fingerprint": "sha256:0123456789ab", "expires_at": "2099-01-01T00:00:00Z"},
         {"id": "broken", "action": "needs_reconcile", "changed": False, "fingerprint": None,
          "reconcile_steps": ["Revoke broken-b in DAS", "Run the job again"]}]}},
]


def run_module(tmp_path, check_mode=False, **args):
    args.setdefault("sources", SOURCES)
    args.setdefault("dest", str(tmp_path / "reports"))
    args["_ansible_check_mode"] = check_mode
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=str(DEV_COLLECTIONS))
    proc = subprocess.run([sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, env=env, timeout=60, check=False)
    return json.loads(proc.stdout)


def test_writes_the_four_files_atomically(tmp_path):
    result = run_module(tmp_path)
    assert not result.get("failed") and result["changed"] is True and result["outcome"] == "failed"
    folder = tmp_path / "reports"
    # The four files, and no temporary file left behind.
    names = ["tokenops-rotation.html", "tokenops-rotation.json", "tokenops-rotation.md", "tokenops-rotation.prom"]
    assert sorted(p.name for p in folder.iterdir()) == names
    document = json.loads((folder / "tokenops-rotation.json").read_text())
    assert [r["token"] for r in document["rows"]] == ["broken", "ok"]
    assert document["failures"][0]["todo"] == ["Revoke broken-b in DAS", "Run the job again"]
    assert list(text_string_to_metric_families((folder / "tokenops-rotation.prom").read_text()))
    assert all(oct(p.stat().st_mode & 0o777) == "0o644" for p in folder.iterdir())
    assert result["files"]["json"] == str(folder / "tokenops-rotation.json")
    assert result["stats"]["outcome"] == "failed" and result["stats"]["changed"][0]["token"] == "ok"
    assert result["failure_lines"][1].startswith("Styra DAS tenant-a broken (needs_reconcile): Revoke broken-b in DAS. Run the job again.")


def test_replaces_a_previous_report(tmp_path):
    run_module(tmp_path)
    run_module(tmp_path, sources=[])
    document = json.loads((tmp_path / "reports" / "tokenops-rotation.json").read_text())
    assert document["rows"] == [] and document["outcome"] == "ok"


def test_check_mode_writes_nothing(tmp_path):
    result = run_module(tmp_path, check_mode=True)
    assert not result.get("failed") and result["rows"] and not (tmp_path / "reports").exists()


def test_a_check_runs_report_is_a_prediction_beside_the_real_one(tmp_path):
    """Every run writes its report; a check run's is marked a prediction, never replaces the last real report, and
    writes no metrics (a prediction must not feed alerts)."""
    folder = tmp_path / "reports"
    run_module(tmp_path)
    real = {p.name: p.read_text() for p in folder.iterdir()}
    checked = [dict(source, check_mode=True) for source in SOURCES]
    result = run_module(tmp_path, sources=checked)
    assert not result.get("failed") and result["prediction"] is True, result
    names = ["tokenops-rotation-check.html", "tokenops-rotation-check.json", "tokenops-rotation-check.md"]
    assert sorted(result["files"].values()) == [str(folder / n) for n in names]
    assert sorted(p.name for p in folder.iterdir()) == sorted(names + list(real))
    assert {name: (folder / name).read_text() for name in real} == real        # the last real report, metrics included
    document = json.loads((folder / "tokenops-rotation-check.json").read_text())
    assert document["prediction"] is True and document["check_mode"] is True
    assert (folder / "tokenops-rotation-check.md").read_text().startswith("# Token rotation report: prediction (check mode")
    assert "<h1>Token rotation report: prediction (check mode" in (folder / "tokenops-rotation-check.html").read_text()
    assert json.loads((folder / "tokenops-rotation.json").read_text())["prediction"] is False


def test_prometheus_path_and_formats(tmp_path):
    prom = tmp_path / "textfile" / "tokenops.prom"
    result = run_module(tmp_path, formats=["prometheus"], prometheus_path=str(prom))
    assert result["files"] == {"prometheus": str(prom)} and prom.exists() and not (tmp_path / "reports").exists()
    assert run_module(tmp_path, prometheus_path=str(tmp_path / "x.txt"))["msg"].startswith("prometheus_path must end in .prom")


def test_fail_lists_each_item_with_what_to_do_after_writing(tmp_path):
    result = run_module(tmp_path, fail=True)
    assert result["failed"] is True
    assert result["msg"].splitlines() == ["1 item(s) need a person; the job fails so that somebody acts:",
                                          "Styra DAS tenant-a broken (needs_reconcile): Revoke broken-b in DAS. Run the job again."]
    assert (tmp_path / "reports" / "tokenops-rotation.json").exists()
    assert not run_module(tmp_path, fail=True, fail_on=["failed"]).get("failed")


@pytest.mark.parametrize("args,message", [
    ({"fail_on": ["later"]}, "fail_on: unknown condition(s) later"),
    ({"consent_wait_limit": "soon"}, "consent_wait_limit"),
    ({"name": "../elsewhere"}, "name is a file name"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, args, message):
    # Tracebacks on, as ANSIBLE_DISPLAY_TRACEBACK=error asks: bad input still gets none.
    result = run_module(tmp_path, _ansible_tracebacks_for=["error"], **args)
    assert result["failed"] is True and message in result["msg"] and "Traceback" not in result["msg"]
    assert "exception" not in result, result["exception"]
    assert not (tmp_path / "reports").exists()
