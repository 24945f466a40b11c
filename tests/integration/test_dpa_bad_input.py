"""Bad input gets one clear message before any request: the simulator and the store saw none.

All cases run as the tasks of one playbook (ignore_errors), so the check costs one ansible-playbook run.
"""

import base64
import json
import time

import pytest

from dpa_fixtures import MODULE
# Fixtures: pytest finds them by name in this module.
from dpa_fixtures import dpa, dpa_factory  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.integration


def _jwt(header, payload, signature="c2lnbmF0dXJl"):
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return "%s.%s.%s" % (part(header), part(payload), signature)


NOW = int(time.time())
GOOD_CLAIMS = {"sub": "reporting", "iat": NOW, "exp": NOW + 90 * 86400}

CASES = [
    ("not a JWT", dict(refresh_token="my-refresh-token"), "reporting: refresh_token is not a JWT"),
    ("two parts", dict(refresh_token="eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0"), "is not a JWT"),
    ("a space inside", dict(refresh_token="eyJhbGciOiJIUzI1NiJ9.eyJzdWIi OiJ4In0.c2ln"), "is not a JWT"),
    ("payload not JSON", dict(refresh_token="eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln"), "its payload is not base64url-encoded JSON"),
    ("payload a list", dict(refresh_token=_jwt({"alg": "HS256"}, [1, 2])), "its payload is not a JSON object"),
    ("unsigned", dict(refresh_token=_jwt({"alg": "none"}, GOOD_CLAIMS)), "is not a signed JWT"),
    ("no sub", dict(refresh_token=_jwt({"alg": "HS256"}, {"iat": NOW})), "has no sub claim"),
    ("exp not a number", dict(refresh_token=_jwt({"alg": "HS256"}, dict(GOOD_CLAIMS, exp="soon"))), "the exp claim is not a number"),
    ("expired", dict(refresh_token=_jwt({"alg": "HS256"}, dict(GOOD_CLAIMS, exp=NOW - 60))), "('reporting') expired at"),
    ("rotated without a token", dict(state="rotated"), "reporting: state rotated adopts the refresh_token given, and none was given"),
    ("a bad token in a list", dict(id=None, tokens=[{"id": "a"}, {"id": "b", "refresh_token": "nope"}]), "tokens[1] (b): refresh_token is not a JWT"),
    ("a token listed twice", dict(id=None, tokens=[{"id": "a"}, {"id": "a"}]), "token a is listed twice"),
    ("an item without id", dict(id=None, tokens=[{"store_path": "x/y"}]), "missing required arguments: id found in tokens"),
    ("refresh_token beside tokens", dict(id=None, tokens=[{"id": "a"}], refresh_token="x.y.z"), "mutually exclusive: refresh_token|tokens"),
    ("both id and tokens", dict(tokens=[{"id": "a"}]), "mutually exclusive: id|tokens"),
    ("a malformed id", dict(id="reports/2025"), "id 'reports/2025' must be one word"),
    ("warn_before a percentage", dict(warn_before="20%"), "warn_before must be a duration such as 30d"),
    ("fail_before not a duration", dict(fail_before="next week"), "fail_before: 'next week' is not a duration"),
    ("url without a scheme", dict(url="dpa.example.com:8124"), "url must be the DPA server as http(s)://host:port"),
    ("url with a query", dict(url="https://dpa.example.com:8124/?x=1"), "must not have a query"),
    ("access token without no_log", dict(return_access_token=True), "return_access_token: true puts an access token in the task result"),
    ("an unknown state", dict(state="deleted"), "value of state must be one of"),
]


def test_bad_input_refused_before_any_request(runner, dpa, file_store):
    tasks = []
    for name, options, _needle in CASES:
        args = {"url": dpa.url, "ca_path": dpa.ca_path, "store": dict(file_store.options), "id": "reporting"}
        args.update(options)
        tasks.append({"name": name, MODULE: {k: v for k, v in args.items() if v is not None}, "ignore_errors": True})
    tasks.append({"name": "missing url", MODULE: {"id": "reporting", "store": dict(file_store.options)}, "ignore_errors": True})
    tasks.append({"name": "info: a malformed id", "tokenops.rotation.dpa_refresh_token_info":
                  {"url": dpa.url, "store": dict(file_store.options), "ids": ["a/b"]}, "ignore_errors": True})
    dpa.sim.reset_counts()
    run = runner.run(tasks, env={})
    results = {r["_task"]: r for r in run.results}
    expected = [(name, needle) for name, _options, needle in CASES]
    expected += [("missing url", "missing required arguments: url"), ("info: a malformed id", "ids[0] 'a/b' must be one word")]
    for name, needle in expected:
        result = results[name]
        assert result["failed"] and needle in result["msg"], (name, result.get("msg"))
        assert result.get("exception", "(traceback unavailable)") == "(traceback unavailable)", (name, result["exception"])
    assert "Traceback (most recent call last)" not in run.output
    assert dpa.sim.count() == 0, [(r.method, r.path) for r in dpa.sim.requests]
    assert not file_store.file_path.exists()
