# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared HTTP layer (plugins/module_utils/http_client.py) against real loopback servers.

Retries, Retry-After, the never-retry rule for writes, error parsing, `outcome_unknown`,
redaction and TLS are checked against the simulator harness (tests/simulators/base.py) or a
tiny raw HTTP server where the harness cannot answer plain text. No mocks of `requests`.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import json
import socket
import threading
import time

import pytest

from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import (
    REDACTED,
    ApiError,
    HttpClient,
    EnvironmentSettings,
    Redactor,
    SecretMask,
    default_error_parser,
    parse_retry_after,
    Transport,
)
from tests.simulators.base import HttpError, SimServer

PRODUCT = "Acme API"
BEARER = "bearer-canary-4f9c2a7d1e3b"
OTHER_SECRET = "minted-canary-8d2e6b0a5c7f"

ENV_THAT_CHANGES_TRANSPORT = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                              "http_proxy", "https_proxy", "all_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch):
    """A CA bundle or proxy from the environment must not decide what these tests see."""
    for name in ENV_THAT_CHANGES_TRANSPORT:
        monkeypatch.delenv(name, raising=False)


# ---- servers ----------------------------------------------------------------------------------

def _echo_auth(req):
    # An API that echoes the credential it was given in its error body.
    raise HttpError(401, "token %s is not valid" % (req.header("Authorization") or ""))


def _echo_body(req):
    body = req.json()
    return 400, {"code": "bad_%s" % body.get("value"), "message": "rejected value %s" % body.get("value")}


ERROR_SHAPES = {
    "plain": (409, {"code": "conflict", "message": "token already exists"}),
    "oauth": (400, {"error": "invalid_grant", "error_description": "the refresh token has expired"}),
    "gnap": (400, {"error": {"code": "invalid_rotation", "description": "the token was already rotated"}}),
    "numeric": (422, {"code": 4221, "message": "ttl too long"}),
}


def _shape(req):
    return ERROR_SHAPES[req.params["shape"]]


def _make_sim(tls=False):
    sim = SimServer(tls=tls)
    for method in ("GET", "HEAD", "PUT", "POST", "DELETE"):
        sim.route(method, r"^/thing$", lambda req: (200, {"ok": True}))
    sim.route("GET", r"^/echo-auth$", _echo_auth)
    sim.route("POST", r"^/echo-body$", _echo_body)
    sim.route("GET", r"^/shape/(?P<shape>\w+)$", _shape)
    sim.route("POST", r"^/shape/(?P<shape>\w+)$", _shape)
    sim.start()
    return sim


@pytest.fixture
def sim():
    server = _make_sim()
    yield server
    server.stop()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def client(sim, sleeps):
    made = HttpClient(PRODUCT, sim.base_url, retries=3, timeout=5, sleep=sleeps.append)
    yield made
    made.close()


class _RawHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        status, content_type, body = self.server.answers[self.path.split("?", 1)[0]]
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        payload = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, format, *args):  # noqa: A002
        pass


def _serve(handler, **attributes):
    """(server, base URL) of a loopback server with handler, until the generator is closed."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    for name, value in attributes.items():
        setattr(server, name, value)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server, "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def raw_server():
    """A loopback server answering fixed (status, content type, text) per path: for non-JSON bodies."""
    yield from _serve(_RawHandler, answers={})


def _closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


# ---- parse_retry_after ------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [("5", 5.0), (" 12 ", 12.0), ("0", 0.0), ("120", 120.0)])
def test_parse_retry_after_delta_seconds(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date_relative_to_now():
    now = 1_800_000_000.0
    header = email.utils.formatdate(now + 42, usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(42.0)


def test_parse_retry_after_date_in_the_past_is_zero():
    now = 1_800_000_000.0
    assert parse_retry_after(email.utils.formatdate(now - 300, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5x"])
def test_parse_retry_after_absent_or_garbage_is_none(value):
    assert parse_retry_after(value) is None


# ---- retries of safe requests -----------------------------------------------------------------

@pytest.mark.parametrize("status", [502, 503, 504])
def test_get_is_retried_on_gateway_statuses(sim, client, sleeps, status):
    sim.faults.add("GET", r"^/thing$", "status", times=2, status=status)
    response = client.request("read thing", "GET", "/thing")
    assert response.status_code == 200
    assert sim.count("GET", "/thing") == 3
    assert len(sleeps) == 2
    assert client.request_count == 3


def test_get_gives_up_after_retries(sim, sleeps):
    http = HttpClient(PRODUCT, sim.base_url, retries=2, timeout=5, sleep=sleeps.append)
    sim.faults.add("GET", r"^/thing$", "status", times=None, status=503)
    with pytest.raises(ApiError) as caught:
        http.request("read thing", "GET", "/thing")
    assert caught.value.status == 503
    assert sim.count("GET", "/thing") == 3   # the first try and `retries` more
    assert len(sleeps) == 2
    assert all(0 <= delay <= http.backoff_cap for delay in sleeps)
    http.close()


def test_retries_zero_sends_once(sim, sleeps):
    http = HttpClient(PRODUCT, sim.base_url, retries=0, timeout=5, sleep=sleeps.append)
    sim.faults.add("GET", r"^/thing$", "status", times=None, status=503)
    with pytest.raises(ApiError):
        http.request("read thing", "GET", "/thing")
    assert sim.count("GET", "/thing") == 1
    assert sleeps == []
    http.close()


@pytest.mark.parametrize("status", [500, 404, 401])
def test_get_is_not_retried_on_other_errors(sim, client, sleeps, status):
    sim.faults.add("GET", r"^/thing$", "status", times=None, status=status)
    with pytest.raises(ApiError) as caught:
        client.request("read thing", "GET", "/thing")
    assert caught.value.status == status
    assert sim.count("GET", "/thing") == 1
    assert sleeps == []


def test_get_is_retried_on_a_dropped_connection(sim, client, sleeps):
    sim.faults.add("GET", r"^/thing$", "drop_after_commit", times=2)
    assert client.request("read thing", "GET", "/thing").status_code == 200
    assert sim.count("GET", "/thing") == 3
    assert len(sleeps) == 2


def test_get_dropped_every_time_fails_without_unknown_outcome(sim, sleeps):
    http = HttpClient(PRODUCT, sim.base_url, retries=1, timeout=5, sleep=sleeps.append)
    sim.faults.add("GET", r"^/thing$", "drop_after_commit", times=None)
    with pytest.raises(ApiError) as caught:
        http.request("read thing", "GET", "/thing")
    assert sim.count("GET", "/thing") == 2
    assert caught.value.status is None
    assert caught.value.outcome_unknown is False   # a read changes nothing
    assert "connection error" in caught.value.message
    http.close()


def test_get_read_timeout_is_retried(sim, sleeps):
    http = HttpClient(PRODUCT, sim.base_url, retries=1, timeout=0.3, sleep=sleeps.append)
    sim.faults.add("GET", r"^/thing$", "latency", times=1, delay=2.0)
    assert http.request("read thing", "GET", "/thing").status_code == 200
    # the simulator records a delayed request only after its delay, so count the client's attempts
    assert http.request_count == 2
    assert len(sleeps) == 1
    http.close()


def test_429_waits_exactly_retry_after_seconds(sim, client, sleeps):
    sim.faults.add("GET", r"^/thing$", "retry_after", times=1, retry_after=7)
    assert client.request("read thing", "GET", "/thing").status_code == 200
    assert sleeps == [7.0]
    assert sim.count("GET", "/thing") == 2


def test_429_waits_until_retry_after_http_date(sim, client, sleeps):
    target = int(time.time()) + 30
    sim.faults.add("GET", r"^/thing$", "retry_after", times=1, retry_after=email.utils.formatdate(target, usegmt=True))
    before = time.time()
    assert client.request("read thing", "GET", "/thing").status_code == 200
    after = time.time()
    assert len(sleeps) == 1
    # the wait is the time left until the date, measured when the answer arrived
    assert target - after - 0.01 <= sleeps[0] <= target - before + 0.01
    assert sim.count("GET", "/thing") == 2


def test_retry_after_above_the_limit_is_raised_not_waited(sim, sleeps):
    http = HttpClient(PRODUCT, sim.base_url, retries=3, timeout=5, max_retry_after=60, sleep=sleeps.append)
    sim.faults.add("GET", r"^/thing$", "retry_after", times=None, retry_after=120)
    with pytest.raises(ApiError) as caught:
        http.request("read thing", "GET", "/thing")
    assert caught.value.status == 429
    assert caught.value.retry_after == 120.0
    assert sleeps == []
    assert sim.count("GET", "/thing") == 1
    http.close()


def test_retry_after_on_503_is_honoured(sim, client, sleeps):
    answers = iter([(503, {"code": "busy"}, {"Retry-After": "3"}), (503, {"code": "busy"}, {"Retry-After": "4"})])
    sim.route("GET", r"^/busy$", lambda req: next(answers, (200, {"ok": True})))
    assert client.request("read", "GET", "/busy").status_code == 200
    assert sleeps == [3.0, 4.0]
    assert sim.count("GET", "/busy") == 3


# ---- writes are never repeated unless declared idempotent -------------------------------------

@pytest.mark.parametrize("kind, extra", [("status", {"status": 503}), ("status", {"status": 502}), ("drop_after_commit", {})])
def test_post_is_never_retried(sim, client, sleeps, kind, extra):
    sim.faults.add("POST", r"^/thing$", kind, times=None, **extra)
    with pytest.raises(ApiError):
        client.request("mint", "POST", "/thing", json={"a": 1})
    assert sim.count("POST", "/thing") == 1
    assert sleeps == []


def test_post_answered_429_is_sent_again_after_its_retry_after(sim, client, sleeps):
    # A 429 says the request was not carried out, so even a change is sent again, after the wait it asked for.
    sim.faults.add("POST", r"^/thing$", "retry_after", times=2, retry_after=0)
    assert client.request("mint", "POST", "/thing", json={"a": 1}).status_code == 200
    assert sim.count("POST", "/thing") == 3
    assert sleeps == [0.0, 0.0]


def test_429_gives_up_after_max_throttle_wait(sim, sleeps):
    http = HttpClient(PRODUCT, sim.base_url, retries=3, timeout=5, sleep=sleeps.append, max_throttle_wait=2.5)
    sim.faults.add("POST", r"^/thing$", "retry_after", times=None, retry_after=1)
    with pytest.raises(ApiError) as caught:
        http.request("mint", "POST", "/thing", json={"a": 1})
    http.close()
    assert caught.value.status == 429 and not caught.value.outcome_unknown
    assert sleeps == [1.0, 1.0]
    assert sim.count("POST", "/thing") == 3


def test_post_not_retried_even_with_many_retries_configured(sim, sleeps):
    http = HttpClient(PRODUCT, sim.base_url, retries=10, timeout=5, sleep=sleeps.append)
    sim.faults.add("POST", r"^/thing$", "status", times=1, status=503)
    with pytest.raises(ApiError) as caught:
        http.request("mint", "POST", "/thing", json={})
    assert caught.value.status == 503
    assert sim.count("POST", "/thing") == 1
    http.close()


def test_put_is_not_retried_by_default(sim, client, sleeps):
    sim.faults.add("PUT", r"^/thing$", "status", times=1, status=503)
    with pytest.raises(ApiError) as caught:
        client.request("update", "PUT", "/thing", json={})
    assert caught.value.status == 503
    assert sim.count("PUT", "/thing") == 1
    assert sleeps == []


def test_put_is_retried_when_idempotent(sim, client, sleeps):
    sim.faults.add("PUT", r"^/thing$", "status", times=1, status=503)
    assert client.request("update", "PUT", "/thing", json={}, idempotent=True).status_code == 200
    assert sim.count("PUT", "/thing") == 2
    assert len(sleeps) == 1


def test_idempotent_delete_is_retried_on_a_dropped_connection(sim, client):
    sim.faults.add("DELETE", r"^/thing$", "drop_after_commit", times=1)
    assert client.request("delete", "DELETE", "/thing", idempotent=True).status_code == 200
    assert sim.count("DELETE", "/thing") == 2


def test_get_declared_not_idempotent_is_not_retried(sim, client):
    sim.faults.add("GET", r"^/thing$", "status", times=1, status=503)
    with pytest.raises(ApiError):
        client.request("read", "GET", "/thing", idempotent=False)
    assert sim.count("GET", "/thing") == 1


def test_ok_statuses_are_returned_not_raised(sim, client):
    sim.faults.add("GET", r"^/thing$", "status", times=1, status=404)
    assert client.request("read", "GET", "/thing", ok=(200, 404)).status_code == 404


# ---- ApiError contents ------------------------------------------------------------------------

@pytest.mark.parametrize("shape, status, code, message", [
    ("plain", 409, "conflict", "token already exists"),
    ("oauth", 400, "invalid_grant", "the refresh token has expired"),
    ("gnap", 400, "invalid_rotation", "the token was already rotated"),
    ("numeric", 422, "4221", "ttl too long"),
])
def test_api_error_carries_the_parsed_error(client, shape, status, code, message):
    with pytest.raises(ApiError) as caught:
        client.request("create token app", "POST", "/shape/%s" % shape, json={})
    error = caught.value
    assert (error.product, error.step, error.method, error.status, error.code, error.message) == (
        PRODUCT, "create token app", "POST", status, code, message)
    assert error.to_dict() == dict(product=PRODUCT, step="create token app", method="POST", status=status,
                                   code=code, outcome_unknown=False)
    text = str(error)
    for part in (PRODUCT, "create token app", "POST /shape/%s" % shape, "HTTP %d" % status, code, message):
        assert part in text


def test_api_error_names_the_path_but_not_the_query(client):
    with pytest.raises(ApiError) as caught:
        client.request("read", "GET", "/shape/plain?api_key=query-canary-77aa")
    assert "/shape/plain" in str(caught.value)
    assert "query-canary-77aa" not in str(caught.value)


def test_plain_text_error_body_is_cut_short(raw_server, sleeps):
    server, url = raw_server
    server.answers["/text"] = (500, "text/plain", "upstream exploded " + "x" * 5000)
    http = HttpClient(PRODUCT, url, sleep=sleeps.append)
    with pytest.raises(ApiError) as caught:
        http.request("read", "GET", "/text")
    assert caught.value.status == 500
    assert caught.value.code is None
    assert caught.value.message.startswith("upstream exploded x")
    assert len(caught.value.message) <= 200
    assert len(str(caught.value)) < 400
    http.close()


def test_html_error_body_is_plain_text(raw_server):
    server, url = raw_server
    server.answers["/html"] = (502, "text/html", "<html><body>Bad Gateway</body></html>")
    http = HttpClient(PRODUCT, url, retries=0)
    with pytest.raises(ApiError) as caught:
        http.request("read", "GET", "/html")
    assert caught.value.status == 502
    assert caught.value.message == "<html><body>Bad Gateway</body></html>"
    http.close()


def test_default_error_parser_ignores_non_object_json(raw_server):
    server, url = raw_server
    server.answers["/list"] = (400, "application/json", json.dumps(["nope"]))
    http = HttpClient(PRODUCT, url)
    with pytest.raises(ApiError) as caught:
        http.request("read", "GET", "/list")
    assert (caught.value.code, caught.value.message) == (None, None)
    assert default_error_parser is http.error_parser
    http.close()


# ---- outcome_unknown --------------------------------------------------------------------------

def test_post_dropped_after_sending_has_unknown_outcome(sim, client):
    sim.faults.add("POST", r"^/thing$", "drop_after_commit", times=1)
    with pytest.raises(ApiError) as caught:
        client.request("mint", "POST", "/thing", json={})
    assert caught.value.outcome_unknown is True
    assert caught.value.status is None
    assert caught.value.to_dict()["outcome_unknown"] is True


def test_put_dropped_after_sending_has_unknown_outcome(sim, client):
    sim.faults.add("PUT", r"^/thing$", "drop_after_commit", times=1)
    with pytest.raises(ApiError) as caught:
        client.request("regenerate", "PUT", "/thing", json={})
    assert caught.value.outcome_unknown is True
    assert sim.count("PUT", "/thing") == 1


def test_post_read_timeout_has_unknown_outcome(sim, sleeps):
    http = HttpClient(PRODUCT, sim.base_url, retries=3, timeout=0.3, sleep=sleeps.append)
    sim.faults.add("POST", r"^/thing$", "latency", times=1, delay=2.0)
    with pytest.raises(ApiError) as caught:
        http.request("mint", "POST", "/thing", json={})
    assert caught.value.outcome_unknown is True
    assert caught.value.message.startswith("timed out: ") and "raise timeout" in caught.value.message
    assert http.request_count == 1
    assert sleeps == []
    http.close()


@pytest.mark.parametrize("status", [502, 504])
def test_post_gateway_error_has_unknown_outcome(sim, client, status):
    sim.faults.add("POST", r"^/thing$", "status", times=1, status=status)
    with pytest.raises(ApiError) as caught:
        client.request("mint", "POST", "/thing", json={})
    assert caught.value.outcome_unknown is True


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_refused_connection_has_known_outcome(method, sleeps):
    http = HttpClient(PRODUCT, "http://127.0.0.1:%d" % _closed_port(), timeout=5, sleep=sleeps.append)
    with pytest.raises(ApiError) as caught:
        http.request("mint", method, "/thing", json={})
    assert caught.value.outcome_unknown is False
    assert caught.value.status is None
    assert "connection error" in caught.value.message
    assert sleeps == []   # a write is not retried, even when it never left
    http.close()


def test_refused_get_is_retried_and_known(sleeps):
    http = HttpClient(PRODUCT, "http://127.0.0.1:%d" % _closed_port(), retries=2, timeout=5, sleep=sleeps.append)
    with pytest.raises(ApiError) as caught:
        http.request("read", "GET", "/thing")
    assert caught.value.outcome_unknown is False
    assert len(sleeps) == 2
    assert http.request_count == 3
    http.close()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 503])
def test_definite_answer_to_a_write_has_known_outcome(sim, client, status):
    sim.faults.add("POST", r"^/thing$", "status", times=1, status=status)
    with pytest.raises(ApiError) as caught:
        client.request("mint", "POST", "/thing", json={})
    assert caught.value.status == status
    assert caught.value.outcome_unknown is False


# ---- redaction --------------------------------------------------------------------------------

def _all_text(error):
    return " ".join([str(error), repr(error), repr(error.args), error.describe(), json.dumps(error.to_dict()),
                     str(error.message), str(error.code)])


def test_bearer_echoed_by_the_server_is_redacted(sim, client):
    with pytest.raises(ApiError) as caught:
        client.request("read", "GET", "/echo-auth", bearer=BEARER)
    assert caught.value.status == 401
    assert BEARER not in _all_text(caught.value)
    assert REDACTED in caught.value.message   # the server did echo it: the test saw something to scrub


def test_bearer_is_sent_as_authorization(sim, client):
    # the echo proves the header left the client; the error is scrubbed, so read the raw server view
    seen = []
    sim.route("GET", r"^/capture$", lambda req: (seen.append(req.header("Authorization")) or (200, {})))
    client.request("read", "GET", "/capture", bearer=BEARER)
    assert seen == ["Bearer %s" % BEARER]
    assert client.redactor.scrub("x %s y" % BEARER) == "x %s y" % REDACTED


def test_registered_secret_echoed_in_message_and_code_is_redacted(sim, client):
    client.redactor.add(OTHER_SECRET)
    with pytest.raises(ApiError) as caught:
        client.request("store", "POST", "/echo-body", json={"value": OTHER_SECRET}, bearer=BEARER)
    assert caught.value.status == 400
    assert OTHER_SECRET not in _all_text(caught.value)
    assert BEARER not in _all_text(caught.value)
    assert caught.value.code == "bad_%s" % REDACTED
    assert caught.value.message == "rejected value %s" % REDACTED


def test_secret_in_plain_text_body_is_redacted(raw_server):
    server, url = raw_server
    server.answers["/text"] = (401, "text/plain", "bad credential %s, go away" % BEARER)
    http = HttpClient(PRODUCT, url)
    with pytest.raises(ApiError) as caught:
        http.request("read", "GET", "/text", bearer=BEARER)
    assert BEARER not in _all_text(caught.value)
    assert caught.value.message == "bad credential %s, go away" % REDACTED
    http.close()


def test_secret_straddling_the_plain_text_cut_does_not_leak(raw_server):
    server, url = raw_server
    secret = hashlib.sha256(b"straddle").hexdigest()   # 64 characters
    server.answers["/text"] = (401, "text/plain", "e" * 180 + secret)   # the cut falls 20 characters into it
    http = HttpClient(PRODUCT, url)
    with pytest.raises(ApiError) as caught:
        http.request("read", "GET", "/text", bearer=secret)
    assert secret[:16] not in _all_text(caught.value)
    http.close()


def test_redactor_replaces_longest_secret_first():
    redactor = Redactor()
    redactor.add("abcd")
    redactor.add("abcdefghij")
    assert redactor.scrub("a abcdefghij b abcd c") == "a %s b %s c" % (REDACTED, REDACTED)


def test_environment_is_read_once_per_host_with_proxies_no_proxy_and_the_ca_bundle(monkeypatch, tmp_path):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "direct.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    settings = EnvironmentSettings(True)
    assert settings.verify == str(tmp_path / "ca.pem")                  # as requests would use it
    assert EnvironmentSettings("/explicit/ca.pem").verify == "/explicit/ca.pem"
    assert EnvironmentSettings(False).verify is False
    assert settings.proxies("https://das.example/v1/tokens")["https"] == "http://proxy.example:3128"
    assert settings.proxies("https://direct.example/v1/tokens") == {}
    monkeypatch.setenv("HTTPS_PROXY", "http://changed.example:1")
    assert settings.proxies("https://das.example/other")["https"] == "http://proxy.example:3128"   # once per host


def test_a_netrc_entry_does_not_replace_the_bearer(sim, monkeypatch, tmp_path):
    """requests with trust_env lets ~/.netrc replace an Authorization header; the client reads the environment itself."""
    host = sim.base_url.split("://", 1)[1].split(":", 1)[0]
    (tmp_path / ".netrc").write_text("machine %s login someone password netrc-password-123\n" % host)
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    http = HttpClient(PRODUCT, sim.base_url)
    with pytest.raises(ApiError) as caught:
        http.request("read", "GET", "/echo-auth", bearer=BEARER)
    # the server echoed what it got: our bearer (scrubbed), not netrc's Basic credentials
    assert "token Bearer %s" % REDACTED in caught.value.message and "Basic" not in caught.value.message
    http.close()


def test_secret_mask_leaves_no_part_of_any_secret():
    mask = SecretMask(["abcdefgh", "efghijkl", "zzzz1234"], marker="***", exact_marker="NOLOG")
    # overlapping occurrences of two secrets become one marker: neither's head nor tail is left
    assert mask.text("x abcdefghijkl y") == "x *** y"
    assert mask.text("zzzz1234zzzz1234.") == "***."
    assert mask.text("zzzz1234") == "NOLOG"
    assert mask.text("short") == "short" and mask.text("no secret in this text at all") == "no secret in this text at all"
    result = {"results": [{"id": "a", "msg": "saw abcdefgh", "n": 3, "ok": True, "none": None}], "list": ("efghijkl",)}
    assert mask.value(result) == {"results": [{"id": "a", "msg": "saw ***", "n": 3, "ok": True, "none": None}], "list": ["NOLOG"]}


def test_secret_mask_is_linear_in_the_result_not_results_times_secrets():
    """A result over 2000 tokens against 2000 secrets: one pass per string (Ansible's masking took seconds)."""
    many = ["secret-%06d-%s" % (n, "x" * 30) for n in range(2000)]
    mask = SecretMask(many, marker="********")
    results = [{"id": "t%d" % n, "msg": "rotated; the old one was %s" % many[n] if n % 100 == 0 else "rotated, nothing to hide here at all"}
               for n in range(2000)]
    started = time.monotonic()
    masked = mask.value(results)
    assert time.monotonic() - started < 2.0
    assert masked[0]["msg"] == "rotated; the old one was ********" and masked[1] == results[1]
    assert not [r for r in masked if any(secret in r["msg"] for secret in many[:200:100])]


def test_redactor_ignores_short_and_non_string_values():
    redactor = Redactor()
    for value in ("", None, "abc", 12345):
        redactor.add(value)
    assert redactor.scrub("abc 12345") == "abc 12345"
    assert redactor.scrub(None) is None


def test_redactor_reports_additions():
    redactor = Redactor()
    added = []
    redactor.on_add = added.append
    redactor.add("abc")
    redactor.add(OTHER_SECRET)
    assert added == [OTHER_SECRET]


def test_client_shares_a_given_redactor(sim, sleeps):
    redactor = Redactor()
    http = HttpClient(PRODUCT, sim.base_url, redactor=redactor, sleep=sleeps.append)
    with pytest.raises(ApiError):
        http.request("read", "GET", "/echo-auth", bearer=BEARER)
    assert redactor.scrub(BEARER) == REDACTED
    http.close()


# ---- TLS --------------------------------------------------------------------------------------

@pytest.fixture
def tls_sim():
    server = _make_sim(tls=True)
    yield server
    server.stop()


def test_tls_with_the_servers_ca(tls_sim):
    assert tls_sim.base_url.startswith("https://")
    http = HttpClient(PRODUCT, tls_sim.base_url, ca_path=tls_sim.ca_path, retries=0)
    assert http.request("read", "GET", "/thing").status_code == 200
    http.close()


def test_tls_untrusted_certificate_is_refused(tls_sim, sleeps):
    http = HttpClient(PRODUCT, tls_sim.base_url, validate_certs=True, retries=0, sleep=sleeps.append)
    with pytest.raises(ApiError) as caught:
        http.request("read", "GET", "/thing")
    assert caught.value.status is None
    assert caught.value.message.startswith("TLS error")
    assert tls_sim.count("GET", "/thing") == 0   # the request never reached the handler
    http.close()


def test_tls_without_validation(tls_sim):
    http = HttpClient(PRODUCT, tls_sim.base_url, validate_certs=False, retries=0)
    with pytest.warns(Warning):   # urllib3 warns about the unverified request
        assert http.request("read", "GET", "/thing").status_code == 200
    http.close()


def test_tls_ca_path_wins_over_a_ca_bundle_in_the_environment(tls_sim, monkeypatch):
    import certifi
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    http = HttpClient(PRODUCT, tls_sim.base_url, ca_path=tls_sim.ca_path, retries=0)
    try:
        assert http.request("read", "GET", "/thing").status_code == 200
    finally:
        http.close()


def test_tls_validate_certs_false_wins_over_a_ca_bundle_in_the_environment(tls_sim, monkeypatch):
    import certifi
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    http = HttpClient(PRODUCT, tls_sim.base_url, validate_certs=False, retries=0)
    try:
        with pytest.warns(Warning, match="Unverified HTTPS request"):  # urllib3 says so, as it should
            assert http.request("read", "GET", "/thing").status_code == 200
    finally:
        http.close()


# ---- small things -----------------------------------------------------------------------------

def test_url_joins_base_and_path():
    http = HttpClient(PRODUCT, "https://api.example.com/base/")
    assert http.url("/v1/x") == "https://api.example.com/base/v1/x"
    assert http.url("v1/x") == "https://api.example.com/base/v1/x"
    assert http.url("https://other.example.com/y") == "https://other.example.com/y"
    http.close()


# ---- the signing hook (Open Payments signs every request over the exact bytes sent) -----------

def test_signer_sees_exactly_the_bytes_the_server_receives(sleeps):
    received = []

    def record(req):
        received.append((req.body, dict(req.headers)))
        return 200, {"ok": True}

    server = SimServer()
    server.route("POST", r"^/signed$", record)
    server.start()
    signed = []

    def signer(method, url, headers, body):
        signed.append((method, url, body, headers.get("Authorization")))
        return {"Signature": "sig1=:%s:" % hashlib.sha256(body).hexdigest()}

    try:
        client = HttpClient(PRODUCT, server.base_url, sleep=sleeps.append)
        client.request("sign", "POST", "/signed", json={"b": [1, 2], "a": "x"}, bearer="tok-123", scheme="GNAP", signer=signer)
    finally:
        server.stop()
    body, headers = received[0]
    assert body == b'{"b":[1,2],"a":"x"}'                      # compact JSON, as signed
    assert signed == [("POST", server.base_url + "/signed", body, "GNAP tok-123")]
    assert headers["Signature"] == "sig1=:%s:" % hashlib.sha256(body).hexdigest()
    assert headers["Content-Type"] == "application/json"


def test_signer_is_called_again_for_each_retry(sim, sleeps):
    sim.faults.add("GET", r"^/thing$", "status", status=503)
    calls = []
    client = HttpClient(PRODUCT, sim.base_url, sleep=sleeps.append)
    client.request("sign", "GET", "/thing", signer=lambda m, u, h, b: calls.append(b) or {"Signature": "s%d" % len(calls)})
    assert calls == [None, None]
    assert [r.headers.get("Signature") for r in sim.requests] == ["s1", "s2"]


def test_json_body_is_utf8_as_a_reserialising_server_digests_it(sleeps):
    """Open Payments servers digest JSON.stringify(JSON.parse(body)): non-ASCII must travel as UTF-8, not \\u escapes."""
    received = []

    def record(req):
        received.append((req.body, req.target))
        return 200, {"ok": True}

    server = SimServer()
    server.route("POST", r"^/signed$", record)
    server.start()
    try:
        client = HttpClient(PRODUCT, server.base_url, sleep=sleeps.append)
        client.request("sign", "POST", "/signed?x=1&y=%C3%A9", json={"name": "Zoë", "n": 1})
    finally:
        server.stop()
    body, target = received[0]
    assert body == '{"name":"Zoë","n":1}'.encode("utf-8")
    assert body == json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert target == "/signed?x=1&y=%C3%A9"          # the harness keeps the raw request target for signature checks


# ---- Transport: prepared requests straight to the pool, keeping what a session did for us --------

class _SessionHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append({"path": self.path, "method": self.command, "port": self.client_address[1],
                                 "cookie": self.headers.get("Cookie"), "agent": self.headers.get("User-Agent"),
                                 "auth": self.headers.get("Authorization"), "body": body})
        extra = []
        if self.path == "/login":
            extra.append(("Set-Cookie", "AWSALB=node-2; Path=/"))
        if self.path == "/moved":
            self.send_response(307)
            self.send_header("Location", "/moved-here")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format, *args):  # noqa: A002
        pass


@pytest.fixture
def session_server():
    """A loopback server that records what each request carried: cookie, agent, client port."""
    yield from _serve(_SessionHandler, seen=[])


def test_transport_keeps_cookies_the_user_agent_and_one_kept_alive_connection(session_server):
    server, url = session_server
    transport = Transport(True, 4, user_agent="tokenops.rotation")
    transport.send("POST", url + "/login", json={"a": 1}, timeout=5)
    for _read in range(3):
        assert transport.send("GET", url + "/read", headers={"Authorization": "Bearer x"}, timeout=5).json() == {"path": "/read"}
    transport.close()
    login, reads = server.seen[0], server.seen[1:]
    assert login["body"] == b'{"a": 1}' and login["agent"] == "tokenops.rotation"
    assert [r["cookie"] for r in reads] == ["AWSALB=node-2"] * 3          # a load balancer's affinity cookie goes back
    assert {r["auth"] for r in reads} == {"Bearer x"}
    assert len({r["port"] for r in server.seen}) == 1                      # the body was read: the connection was reused


def test_transport_follows_a_redirect_only_when_asked(session_server):
    server, url = session_server
    transport = Transport(True, 4)
    followed = transport.send("GET", url + "/moved", timeout=5)
    assert followed.status_code == 200 and followed.json() == {"path": "/moved-here"}
    assert [r.status_code for r in followed.history] == [307]
    kept = transport.send("GET", url + "/moved", timeout=5, allow_redirects=False)
    assert kept.status_code == 307 and kept.headers["Location"] == "/moved-here"
    transport.close()
    assert [r["path"] for r in server.seen] == ["/moved", "/moved-here", "/moved"]


# ---- transport errors in plain words, naming the option to check (issue 21 item 12) ------------

LIBRARY_TEXT = ("Errno", "NewConnectionError", "HTTPConnectionPool", "HTTPSConnectionPool", "urllib3", "SSLError(", "X509",
                "Max retries", "object at 0x", "_ssl.c")


def _plain(message, option):
    assert option in message, message
    for text in LIBRARY_TEXT:
        assert text not in message, (text, message)


def _failure(http, path="/thing", method="GET"):
    with pytest.raises(ApiError) as caught:
        http.request("read", method, path)
    http.close()
    return caught.value.message


def test_refused_connection_names_url(sleeps):
    port = _closed_port()
    message = _failure(HttpClient(PRODUCT, "http://127.0.0.1:%d" % port, retries=0, sleep=sleeps.append))
    _plain(message, "url")
    assert "127.0.0.1:%d refused the connection" % port in message


def test_unknown_host_names_url(sleeps):
    message = _failure(HttpClient(PRODUCT, "https://no-such-host.invalid", retries=0, timeout=5, sleep=sleeps.append))
    _plain(message, "url")
    assert "no-such-host.invalid" in message and "cannot be resolved" in message


def test_untrusted_certificate_names_ca_path_and_validate_certs(tls_sim, sleeps):
    message = _failure(HttpClient(PRODUCT, tls_sim.base_url, retries=2, sleep=sleeps.append))
    _plain(message, "ca_path")
    assert "validate_certs" in message and "not trusted" in message
    assert sleeps == []    # an untrusted certificate stays untrusted: no retry


def test_a_ca_file_that_holds_no_certificate_names_ca_path(tls_sim, tmp_path, sleeps):
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("this is not a certificate\n")
    message = _failure(HttpClient(PRODUCT, tls_sim.base_url, ca_path=str(not_pem), retries=2, sleep=sleeps.append))
    _plain(message, "ca_path")
    assert str(not_pem) in message and sleeps == []


def test_https_to_a_plain_http_server_names_url(sim, sleeps):
    message = _failure(HttpClient(PRODUCT, sim.base_url.replace("http://", "https://"), retries=0, sleep=sleeps.append))
    _plain(message, "url")
    assert "TLS" in message


def test_the_library_text_only_at_vvv(sleeps):
    url = "http://127.0.0.1:%d" % _closed_port()
    quiet = _failure(HttpClient(PRODUCT, url, retries=0, sleep=sleeps.append, verbosity=2))
    loud = _failure(HttpClient(PRODUCT, url, retries=0, sleep=sleeps.append, verbosity=3))
    assert "Errno" not in quiet and loud.startswith(quiet), (quiet, loud)
    assert "ConnectionError" in loud[len(quiet):] and "refused" in loud[len(quiet):].lower(), loud
