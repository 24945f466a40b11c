"""The harness's direct module runs give what ansible-playbook gives for the same task.

Most tests run a plain module task without ansible-playbook (conftest.Runner): these tests hold the two ways
side by side, so the shortcut cannot drift from what Ansible reports.
"""

import re

import pytest

from conftest import Runner, das_env, das_task
from dpa_fixtures import dpa_task
from dpa_fixtures import dpa, dpa_factory  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.integration

APP = {"description": "app", "allow_path_patterns": ["^/v1/data/.*"], "ttl": "24h"}
# Ansible's own keys; "exception" is Ansible's "(traceback unavailable)" on every failure at -vvv (the bad input
# tests hold that a module gives no real one); times differ between two runs whatever runs them.
NOT_COMPARED = {"invocation", "exception", "_task", "_status", "expires_at", "issued_at", "rotated_at"}
TIMES = re.compile(r"^(expires_at|issued_at|rotated_at): .*$", re.M)


def comparable(result):
    kept = {key: value for key, value in result.items() if key not in NOT_COMPARED and not key.startswith("_ansible")}
    if "diff" in kept:
        kept["diff"] = {key: TIMES.sub(r"\1: (time)", value) for key, value in kept["diff"].items()}
    return kept


def both_ways(tmp_path, tasks, env, check=False, diff=False):
    direct = Runner(tmp_path / "direct", direct=True)
    played = Runner(tmp_path / "played", direct=False)
    for runner in (direct, played):
        runner.tmp_path.mkdir()
    first = direct.run(tasks, env=env, check=check, diff=diff)
    second = played.run(tasks, env=env, check=check, diff=diff)
    assert type(first).__name__ == "DirectRun" and type(second).__name__ == "Run"
    return first, second


def test_check_mode_prediction_is_the_same_both_ways(tmp_path, das, file_store):
    first, second = both_ways(tmp_path, [das_task(das, file_store, id="app", **APP)], das_env(das, file_store), check=True, diff=True)
    assert first.rc == second.rc == 0
    assert first.result["action"] == "created" and first.result["diff"], first
    assert comparable(first.result) == comparable(second.result)
    assert das.sim.token("app") is None


def test_a_refusal_and_its_exit_status_are_the_same_both_ways(tmp_path, das, file_store):
    task = das_task(das, file_store, id="app", **dict(APP, ttl="30d"))
    del task["ignore_errors"]
    first, second = both_ways(tmp_path, [task, das_task(das, file_store, id="never", **APP)], das_env(das, file_store))
    assert first.rc == second.rc == 2          # the play stops at the failed task: the second never runs
    assert len(first.results) == len(second.results) == 1
    assert first.result["failed"] and "no 'd' unit" in first.result["msg"]
    assert comparable(first.result) == comparable(second.result)
    assert "exception" not in first.result and second.result["exception"] == "(traceback unavailable)"
    assert das.sim.count() == 0


def test_warnings_read_the_same_both_ways(tmp_path, dpa, file_store):
    """A warning the module gives reads the same in a direct run's result as in the result Ansible hands on."""
    Runner(tmp_path, direct=True).run([dpa_task(dpa, file_store, id="reporting", refresh_token=dpa.issue("reporting-new"))],
                                      env=dict(file_store.env))
    stale = [dpa_task(dpa, file_store, id="reporting", refresh_token=dpa.issue("reporting-old"))]
    first, second = both_ways(tmp_path, stale, dict(file_store.env))
    assert first.result["action"] == second.result["action"] == "none"
    assert first.result["warnings"] == second.result["warnings"], (first.result["warnings"], second.result["warnings"])
    assert "state present keeps the stored one" in " ".join(first.result["warnings"])
