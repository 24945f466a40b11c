"""playbooks/awx_credential_types.yml, from the installed collection, against a stand-in for AWX's credential_types API.

The stand-in takes what AWX's API takes (GET with name and kind filters, POST, PATCH, basic or
bearer auth) and refuses a type AWX would refuse (tests/fixtures/awx.py).
"""

import base64
import json
import secrets
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

import conftest
from tests.fixtures import awx

pytestmark = pytest.mark.integration

PREFIX = "/api/v2/credential_types/"


class FakeAwx:
    def __init__(self, username="admin", password=None, token=None):
        self.password = password
        self.token = token
        self.username = username
        self.types = {}     # id -> type
        self.calls = []
        self.managed = {1: {"id": 1, "name": "Machine", "kind": "ssh", "managed": True, "inputs": {}, "injectors": {}}}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def writes(self):
        return [c for c in self.calls if c[0] != "GET"]

    def _authorized(self, header):
        if self.token:
            return header == "Bearer " + self.token
        expected = "Basic " + base64.b64encode(("%s:%s" % (self.username, self.password)).encode()).decode()
        return header == expected

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                if self.headers.get("Content-Type") != "application/json":
                    return None
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

            def _common(self, method):
                fake.calls.append((method, self.path))
                if not fake._authorized(self.headers.get("Authorization", "")):
                    self._send(401, {"detail": "Authentication credentials were not provided."})
                    return None
                return urlsplit(self.path)

            def do_GET(self):
                url = self._common("GET")
                if url is None:
                    return
                query = parse_qs(url.query)
                found = [t for t in list(fake.managed.values()) + list(fake.types.values())
                         if t["name"] in query.get("name", [t["name"]]) and t["kind"] in query.get("kind", [t["kind"]])
                         and t["name"].startswith(query.get("name__startswith", [""])[0])]
                self._send(200, {"count": len(found), "results": found})

            def do_POST(self):
                url = self._common("POST")
                if url is None:
                    return
                body = self._body()
                problems = awx.problems(body) if isinstance(body, dict) else ["not JSON"]
                if any(t["name"] == body.get("name") and t["kind"] == body.get("kind") for t in fake.types.values()):
                    problems.append("Credential type with this Name and Kind already exists.")
                if url.path != PREFIX or problems:
                    self._send(400, {"detail": problems})
                    return
                new = dict(body, id=max(list(fake.types) + [1]) + 1, managed=False)
                fake.types[new["id"]] = new
                self._send(201, new)

            def do_PATCH(self):
                url = self._common("PATCH")
                if url is None:
                    return
                type_id = int(url.path[len(PREFIX):].strip("/"))
                merged = dict(fake.types[type_id], **self._body())
                problems = awx.problems({k: v for k, v in merged.items() if k not in ("id", "managed")})
                if problems:
                    self._send(400, {"detail": problems})
                    return
                fake.types[type_id] = merged
                self._send(200, merged)

        return Handler


def install(runner, env):
    full_env = {k: v for k, v in runner.env().items() if not k.startswith("CONTROLLER_")}
    full_env.update(env)
    cmd = [str(conftest.BIN / "ansible-playbook"), "-vvvv", "tokenops.rotation.awx_credential_types"]
    proc = subprocess.run(cmd, env=full_env, cwd=str(runner.tmp_path), capture_output=True, text=True, timeout=300, check=False)
    conftest.OUTPUTS.append(("stdout", proc.stdout))
    conftest.OUTPUTS.append(("stderr", proc.stderr))
    return proc


def recap(proc):
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("localhost")][-1]
    return {k: int(v) for k, v in (part.split("=") for part in line.split(":", 1)[1].split())}


def test_installs_then_changes_nothing_then_updates_what_differs(runner):
    password = "awx-pw-%s" % secrets.token_hex(8)
    conftest.CANARIES.add(password)
    with FakeAwx(password=password) as fake:
        env = {"CONTROLLER_HOST": fake.url, "CONTROLLER_USERNAME": "admin", "CONTROLLER_PASSWORD": password}
        first = install(runner, env)
        assert first.returncode == 0, first.stdout[-3000:]
        shipped = awx.load_types()
        assert sorted(t["name"] for t in fake.types.values()) == sorted(t["name"] for t in shipped.values())
        for stored in fake.types.values():   # sent as shipped, the injectors' Jinja untouched
            assert {k: stored[k] for k in awx.TYPE_KEYS} == next(t for t in shipped.values() if t["name"] == stored["name"])
        assert [c[0] for c in fake.writes()] == ["POST"] * len(shipped)

        fake.calls.clear()
        second = install(runner, env)
        assert second.returncode == 0 and recap(second)["changed"] == 0, second.stdout[-3000:]
        assert fake.writes() == [] and len(fake.calls) == 1     # one look-up, nothing else

        # Someone edited one type in the UI: only that one is put back.
        edited = next(t for t in fake.types.values() if t["name"] == shipped["dpa"]["name"])
        edited["injectors"] = {"env": {"DPA_REFRESH_TOKEN": "{{ refresh_token }}", "OTHER": "x"}}
        fake.calls.clear()
        third = install(runner, env)
        assert third.returncode == 0 and recap(third)["changed"] == 1, third.stdout[-3000:]
        assert fake.writes() == [("PATCH", "%s%d/" % (PREFIX, edited["id"]))]
        assert fake.types[edited["id"]]["injectors"] == shipped["dpa"]["injectors"]
    assert password not in first.stdout + second.stdout + third.stdout


def test_bearer_token_and_missing_settings(runner):
    token = "awx-token-%s" % secrets.token_hex(8)
    conftest.CANARIES.add(token)
    with FakeAwx(token=token) as fake:
        run = install(runner, {"CONTROLLER_HOST": fake.url, "CONTROLLER_OAUTH_TOKEN": token})
        assert run.returncode == 0 and len(fake.types) == len(awx.load_types()), run.stdout[-3000:]
        assert token not in run.stdout + run.stderr

    # No settings: refused before any request.
    bare = install(runner, {})
    assert bare.returncode != 0 and "Set CONTROLLER_HOST" in bare.stdout
