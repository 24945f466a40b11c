"""extensions/prometheus: the alert rules pass promtool, each alert fires and clears on series like the collection's,
a broken expression fails those tests, and the rules and the Grafana dashboard use only metrics the collection emits.

promtool comes from the distribution's `prometheus` package (tests/system-packages.txt); these tests skip,
saying so, where it is missing.
"""

import copy
import datetime
import json
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ansible_collections.tokenops.rotation.plugins.module_utils import report as rep
from tests.conftest import REPO

FOLDER = REPO / "extensions" / "prometheus"
RULES = FOLDER / "tokenops-rotation.rules.yml"
TESTS = FOLDER / "tokenops-rotation.rules.test.yml"
DASHBOARD = FOLDER / "grafana-dashboard.json"
# Labels a scrape adds: the Pushgateway's grouping key (job, slice) and the target's instance.
GROUPING = {"job", "slice", "instance"}
ALERTS = ["TokenopsTokenExpiresSoon", "TokenopsTokenExpired", "TokenopsTokenRotationFailed", "TokenopsTokenNeedsPerson",
          "TokenopsRotationTasksForAPerson", "TokenopsRotationNotSucceeded", "TokenopsRotationMetricsMissing"]

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian package prometheus; "
                                                             "`make system-packages` installs it where root has apt-get)")


def rules():
    return yaml.safe_load(RULES.read_text())


def alert_rules(document=None):
    return {rule["alert"]: rule for group in (document or rules())["groups"] for rule in group["rules"] if "alert" in rule}


def promtool(*args, cwd=None):
    return subprocess.run([PROMTOOL] + list(args), capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


# ------------------------------------------------------------------ what the collection emits

NOW = datetime.datetime(2027, 1, 15, 8, 0, 0, tzinfo=datetime.timezone.utc)


def at(**delta):
    return (NOW + datetime.timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def emitted():
    """{metric name: label names} of a report over a fleet with one of everything, as rotation_report writes it."""
    def result(token_id, action="none", **extra):
        return dict({"id": token_id, "action": action, "changed": action in ("rotated", "created"), "fingerprint": "sha256:0123456789ab",
                     "expires_at": at(days=30), "rotated_at": at(days=-1)}, **extra)

    def source(product, endpoint, results):
        return {"product": product, "endpoint": endpoint, "url": "https://%s.example" % endpoint, "check_mode": False,
                "configured": [r["id"] for r in results], "removing": [], "rotate": {"results": results}}

    sources = [source("das", "tenant-a", [result("fresh"), result("due", "rotated", expires_at=at(days=1)),
                                          result("broken", "needs_reconcile", fingerprint=None, reconcile_steps=["Revoke it"])]),
               source("secretserver", "pam-1", [result("down", "failed", failed=True, fingerprint=None, msg="connection refused")]),
               source("dpa", "dpa-1", [result("warned", expiry_status="warn", days_left=20, expires_at=at(days=20))])]
    report = rep.build(sources, now=NOW)
    text = rep.to_prometheus(report, last_success=int(NOW.timestamp()) - 86400)   # a failed run keeps the last success
    names = {}
    for family in text_string_to_metric_families(text):
        assert family.samples, "%s has no sample in the fleet's report" % family.name
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}


def metric_names(expr):
    """The metric names a PromQL expression selects (not functions, keywords, labels or strings)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b\d+(?:ms|[smhdwy])\b", "", expr)      # durations (offset 1h)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end():].lstrip().startswith("(") or match.group(0) in KEYWORDS:
            continue
        names.add(match.group(0))
    return names


def test_metric_names_of_an_expression():
    assert metric_names('sum by (action) (a_b{x=~"$job",y="c d"}) or vector(0) unless on() b[5m] offset 1h') == {"a_b", "b"}


def dashboard_expressions():
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(re.match(r"label_values\((.*),\s*\w+\)$", variable["query"]["query"]).group(1))
    return exprs


def test_rules_and_dashboard_use_only_metrics_the_collection_emits():
    names = emitted()
    used_by_rules = set().union(*(metric_names(rule["expr"]) for rule in alert_rules().values()))
    used_by_dashboard = set().union(*(metric_names(expr) for expr in dashboard_expressions()))
    assert used_by_rules <= set(names), used_by_rules - set(names)
    assert used_by_dashboard <= set(names), used_by_dashboard - set(names)
    # They use what a person needs, not one metric each.
    assert len(used_by_rules) >= 7 and len(used_by_dashboard) >= 8
    assert sorted(alert_rules()) == sorted(ALERTS)


def test_the_promtool_tests_use_series_like_the_collections():
    """Each input series is a metric the report emits, with its labels, plus only what a scrape adds."""
    names = emitted()
    tests = yaml.safe_load(TESTS.read_text())
    seen = set()
    for group in tests["tests"]:
        for series in group["input_series"]:
            match = re.match(r"^([a-z_:]+)\{(.*)\}$", series["series"])
            name, labels = match.group(1), set(re.findall(r'(\w+)="', match.group(2)))
            assert name in names, name
            assert labels - GROUPING == names[name] and labels & GROUPING, series["series"]
            seen.add(name)
    assert len(seen) >= 7


# ------------------------------------------------------------------ promtool

@needs_promtool
def test_promtool_check_rules():
    run = promtool("check", "rules", str(RULES))
    assert run.returncode == 0 and "SUCCESS: %d rules found" % len(ALERTS) in run.stdout, run.stdout + run.stderr


@needs_promtool
def test_each_alert_fires_and_clears():
    run = promtool("test", "rules", TESTS.name, cwd=str(FOLDER))
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr
    # Every alert is shown, in one test group, quiet, then firing, then quiet again.
    shown = set()
    for group in yaml.safe_load(TESTS.read_text())["tests"]:
        timelines = {}
        for check in group.get("alert_rule_test", []):
            timelines.setdefault(check["alertname"], []).append((parse_duration(check["eval_time"]), bool(check["exp_alerts"])))
        for alert, timeline in timelines.items():
            states = [firing for _t, firing in sorted(timeline)]
            if any(not states[i] and True in states[i:] and False in states[i + states[i:].index(True):] for i in range(len(states))):
                shown.add(alert)
    assert shown == set(ALERTS), set(ALERTS) - shown


def parse_duration(text):
    return sum(int(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+)([dhms])", text))


def never_fires(expr):
    return "(%s) unless on() vector(1)" % expr.strip()


def thresholds_times_four(expr):
    return re.sub(r"(?<![\w.])(\d+)(?![\w.])", lambda m: str(int(m.group(1)) * 4), expr)


def without_its_filter(expr):
    """The expression without what follows its last `unless` or `or`: the filter, or the second case."""
    parts = re.split(r"\s(?:unless|or)\s", expr)
    return parts[0] if len(parts) > 1 else expr


MUTATIONS = {"never fires": never_fires, "thresholds x4": thresholds_times_four, "without its filter": without_its_filter}


def mutants():
    found = []
    for alert, rule in sorted(alert_rules().items()):
        for name, mutate in MUTATIONS.items():
            if mutate(rule["expr"]) != rule["expr"]:
                found.append(pytest.param(alert, name, id="%s-%s" % (alert, name.replace(" ", "-"))))
    return found


@needs_promtool
@pytest.mark.parametrize("alert, mutation", mutants())
def test_a_broken_expression_fails_the_alert_tests(tmp_path, alert, mutation):
    """promtool test rules fails, for the mutated alert, when its expression loses its condition, threshold or filter."""
    document = copy.deepcopy(rules())
    rule = alert_rules(document)[alert]
    rule["expr"] = MUTATIONS[mutation](rule["expr"])
    (tmp_path / RULES.name).write_text(yaml.safe_dump(document, sort_keys=False))
    assert promtool("check", "rules", str(tmp_path / RULES.name)).returncode == 0, rule["expr"]   # still valid PromQL
    shutil.copy(str(TESTS), str(tmp_path / TESTS.name))
    run = promtool("test", "rules", TESTS.name, cwd=str(tmp_path))
    assert run.returncode != 0 and "alertname: %s," % alert in run.stdout + run.stderr, run.stdout + run.stderr


def test_every_alert_is_in_the_mutation_tests():
    assert {p.values[0] for p in mutants()} == set(ALERTS)
    assert {p.values[0] for p in mutants() if p.values[1] == "never fires"} == set(ALERTS)
