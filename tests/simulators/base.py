"""Shared harness for the product simulators (see docs/architecture.md, "Simulator harness").

A simulator is a small threaded HTTP(S) server on 127.0.0.1 that holds product state, reads an
injectable clock and injects faults on request. Product modules (das.py, ...) subclass
`SimServer`, register routes and implement the product's bodies and rules.

Secrets never reach the log: request lines are logged without bodies and without any
credential-bearing header, and the request records redact those headers too.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
import ssl
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

READ_METHODS = frozenset({"GET", "HEAD"})
_METHOD_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")   # RFC 9110 token: what a method name may be
FAULT_KINDS = ("status", "retry_after", "drop_after_commit", "hang_after_commit", "latency", "hang_before_commit")


class Clock:
    """Epoch seconds: real time plus an offset, or a frozen value when `frozen=True`.

    Tests freeze it so expiry checks are exact; the demo leaves it running.
    """

    def __init__(self, start: float | None = None, frozen: bool = False):
        self._lock = threading.Lock()
        self._frozen = frozen
        now = time.time()
        if frozen:
            self._value = float(start if start is not None else now)
            self._offset = 0.0
        else:
            self._value = 0.0
            self._offset = float(start - now) if start is not None else 0.0

    def now(self) -> float:
        with self._lock:
            return self._value if self._frozen else time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            if self._frozen:
                self._value += seconds
            else:
                self._offset += seconds

    def set(self, epoch: float) -> None:
        with self._lock:
            if self._frozen:
                self._value = float(epoch)
            else:
                self._offset = float(epoch) - time.time()


def rfc3339(epoch: float) -> str:
    """UTC RFC 3339 with a fraction only when there is one ("2026-11-23T06:20:00Z")."""
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0") + "Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class HttpError(Exception):
    """Raised by handlers; the server answers `status` with the product's error body
    (or `body` when the product documents a different shape for this case)."""

    def __init__(self, status: int, message: str, body: Any = None, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body
        self.headers = headers or {}


@dataclass
class Request:
    method: str
    path: str                       # percent-decoded, without the query string
    query: dict[str, list[str]]     # every parameter may repeat
    headers: Any                    # http.client.HTTPMessage: case-insensitive .get()
    body: bytes
    params: dict[str, str] = field(default_factory=dict)   # named groups of the route regex
    target: str = ""                # the request target as sent: raw path and query (signatures cover it)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def json(self, required: bool = True) -> Any:
        if not self.body.strip():
            if required:
                raise HttpError(400, "request body is required")
            return None
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, "request body is not valid JSON") from None


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, list[str]]
    status: int | None
    headers: dict[str, str]
    fault: str | None = None
    at: float = 0.0                 # the simulator's clock (may be frozen or moved)
    received_at: float = 0.0        # real time (time.time()) the request arrived: what a wait is measured with
    retry_after: str | None = None  # the Retry-After the answer carried


@dataclass
class Fault:
    method: str | None
    pattern: re.Pattern
    kind: str
    times: int | None
    status: int
    retry_after: int | float
    delay: float


class FaultInjector:
    """Faults are matched (method + regex search on the path) before routing.

    `times` counts down and the fault disappears at zero; `times=None` keeps it forever.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.committed = threading.Event()
        self.received = threading.Event()   # set by hang_before_commit
        # Any held request (latency, hang_*) sets `arrived` when it arrives; the test sets `release`
        # to let every held request go on at once, so a test holds a run at a point without a timed guess.
        self.arrived = threading.Event()
        self.release = threading.Event()

    def add(self, method, path_regex, kind, times=1, status=503, retry_after=1, delay=0.0) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        wanted = None if method in (None, "*") else method.upper()
        fault = Fault(wanted, re.compile(path_regex), kind, times, status, retry_after, delay)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method not in (None, method) or not fault.pattern.search(path):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def pending(self) -> int:
        with self._lock:
            return len(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
        for event in (self.committed, self.received, self.arrived, self.release):
            event.clear()

    def hold(self, delay: float, stopping: threading.Event) -> None:
        """Wait `delay` seconds, or until the test sets `release`, or the server stops."""
        deadline = time.monotonic() + delay
        while not (self.release.is_set() or stopping.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.release.wait(min(left, 0.05))


def make_tls_material(folder: str) -> tuple[str, str, str]:
    """Self-signed CA plus a server certificate for 127.0.0.1 and localhost.

    Returns (ca_path, cert_path, key_path); reuses the files when all three exist, so a
    restarted demo simulator keeps the CA its clients already trust.
    """
    ca_path, cert_path, key_path = (os.path.join(folder, n) for n in ("ca.pem", "server.pem", "server-key.pem"))
    if all(os.path.exists(p) for p in (ca_path, cert_path, key_path)):
        return ca_path, cert_path, key_path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    os.makedirs(folder, mode=0o700, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = now - datetime.timedelta(days=1), now + datetime.timedelta(days=825)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokenops simulator CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def write(path: str, data: bytes, mode: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    write(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    write(cert_path, server_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    write(key_path, server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), 0o600)
    return ca_path, cert_path, key_path


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, sim: "SimServer", ssl_context: ssl.SSLContext | None):
        self.sim = sim
        self.ssl_context = ssl_context
        self.open_connections: set = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self):
        conn, addr = super().get_request()
        if self.ssl_context is not None:
            # The handshake runs in the handler thread, so a slow or failing client cannot block accept().
            conn = self.ssl_context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def handle_error(self, request, client_address):
        # Handshake failures (a client that does not trust the CA) and dropped sockets are expected in tests.
        self.sim.log.debug("connection error from %s: %s", client_address[0], traceback.format_exc(limit=0).strip())


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tokenops-sim"
    sys_version = ""
    timeout = 60   # idle keep-alive connections end eventually

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle plus delayed ACK adds ~40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def finish(self):
        with self.server.connections_lock:
            self.server.open_connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_request(self, code="-", size="-"):
        pass   # SimServer logs its own line

    def log_message(self, format, *args):   # noqa: A002 - signature of the base class
        self.server.sim.log.debug("http: " + format, *args)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self):
        self.server.sim._serve(self)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _handle

    def __getattr__(self, name):
        # Any other method (OPTIONS, TRACE, ...) reaches the simulator too, which answers the product's JSON
        # error (405 where the path exists, else 404) instead of http.server's 501 HTML page.
        if name.startswith("do_") and _METHOD_TOKEN.fullmatch(name[3:]):
            return self._handle
        raise AttributeError(name)

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (a malformed request line, headers too long): the product's JSON error body,
        not an HTML page."""
        try:
            short = http.HTTPStatus(code).phrase
        except ValueError:
            short = "error"
        self.close_connection = True   # after a malformed request the stream's framing is unknown
        self.send_json(code, self.server.sim.error_body(code, message or short), {"Connection": "close"})

    def send_json(self, status: int, body: Any, headers: dict) -> None:
        payload = b"" if body is None or self.command == "HEAD" else json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, str(value))
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)
        self.wfile.flush()

    def drop(self) -> None:
        """Close the connection without writing a single response byte."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


Handler = Callable[[Request], tuple]


class SimServer:
    """Threaded HTTP(S) server on 127.0.0.1 holding one product's state.

    Subclasses set `name`, register routes with `route()`, and may override `error_body()`,
    `not_found()`, `dump_state()` and `load_state()`.
    """

    name = "sim"
    # Headers that carry credentials: redacted in request records, never logged.
    redact_headers = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"})

    def __init__(self, clock: Clock | None = None, tls: bool = False, state_file: str | None = None,
                 tls_dir: str | None = None):
        self.clock = clock or Clock()
        self.tls = tls
        self.tls_dir = tls_dir
        self.state_file = state_file
        self.ca_path: str | None = None
        self.base_url: str | None = None
        self.port: int | None = None
        self.lock = threading.RLock()           # one lock: every handler runs atomically
        self.requests: list[RequestRecord] = []
        self._records_lock = threading.Lock()
        self.issued: set[str] = set()
        self.faults = FaultInjector()
        self.log = logging.getLogger(f"simulator.{self.name}")
        self._routes: list[tuple[str, re.Pattern, Handler]] = []
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._tmp_tls: tempfile.TemporaryDirectory | None = None
        # The rate-limit switch (rate_limit()): above `_rate` requests per `_rate_window` seconds, 429 with Retry-After.
        self._rate: int | None = None
        self._rate_window = 1.0
        self._rate_retry_after: int | None = None
        self._rate_seen: list[float] = []
        self._rate_lock = threading.Lock()

    # ---- routes and hooks -------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        # DOTALL: a path parameter captures what the client sent, a percent-encoded newline included, as a router
        # that hands the rest of the path to the handler does; `.` without it would make such a path "no route".
        self._routes.append((method.upper(), re.compile(pattern, re.DOTALL), handler))

    def error_body(self, status: int, message: str) -> Any:
        """The product's error body; subclasses return their documented shape."""
        return {"code": http.HTTPStatus(status).phrase.lower().replace(" ", "_") if status in _STATUS_CODES else str(status),
                "message": message}

    def not_found(self, req: Request) -> tuple:
        """No route for the path. May raise HttpError (a product that checks the token first)."""
        return 404, self.error_body(404, f"no route for {req.method} {req.path}"), {}

    def method_not_allowed(self, req: Request, allowed: list[str]) -> tuple:
        """The path exists for other methods. May raise HttpError like not_found()."""
        return 405, self.error_body(405, f"method {req.method} not allowed on {req.path}"), {"Allow": ", ".join(allowed)}

    def new_secret(self) -> str:
        """A fresh random secret, recorded in `issued` so tests can scan output for it."""
        secret = secrets.token_urlsafe(32)
        self.issued.add(secret)
        return secret

    @staticmethod
    def request_id() -> str:
        return str(uuid.uuid4())

    # ---- state persistence ------------------------------------------------------------------

    def dump_state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass

    def save_state(self) -> None:
        """Atomically write the state file (mode 0600: it holds live secrets)."""
        if not self.state_file:
            return
        with self.lock:
            document = {"simulator": self.name, "issued": sorted(self.issued), "state": self.dump_state()}
            tmp = f"{self.state_file}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(document, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.state_file)

    def _load_state_file(self) -> bool:
        if not self.state_file or not os.path.exists(self.state_file) or os.path.getsize(self.state_file) == 0:
            return False
        with open(self.state_file) as handle:
            document = json.load(handle)
        with self.lock:
            self.issued.update(document.get("issued", []))
            self.load_state(document.get("state", {}))
        return True

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        self._load_state_file()
        context = None
        if self.tls:
            folder = self.tls_dir
            if folder is None:
                self._tmp_tls = tempfile.TemporaryDirectory(prefix=f"sim-{self.name}-tls-")
                folder = self._tmp_tls.name
            self.ca_path, cert_path, key_path = make_tls_material(folder)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert_path, key_path)
        self._server = _HttpServer(("127.0.0.1", port), _Handler, self, context)
        self.port = self._server.server_address[1]
        self.base_url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name=f"sim-{self.name}", daemon=True)
        self._thread.start()
        self.log.info("%s simulator listening on %s", self.name, self.base_url)
        return self.base_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()   # wakes handlers sleeping in hang/latency faults
        server.shutdown()
        server.server_close()
        # Close kept-alive client connections too, so a pooled connection cannot reach a stopped simulator.
        with server.connections_lock:
            connections = list(server.open_connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.log.info("%s simulator stopped", self.name)

    def __enter__(self):
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # ---- the rate-limit switch ---------------------------------------------------------------

    def rate_limit(self, requests: int | None, window: float = 1.0, retry_after: int | None = None) -> None:
        """Answer 429 Too Many Requests, with Retry-After, to any request beyond `requests` per `window` seconds
        (a sliding window of the requests it served; None switches it off). Retry-After is `retry_after` seconds, else
        the whole seconds until the window has room again (at least 1), as rate-limiting APIs such as DAS's and
        Secret Server's gateways say. The request log keeps each request's real arrival time and the Retry-After sent."""
        with self._rate_lock:
            self._rate = requests
            self._rate_window = float(window)
            self._rate_retry_after = retry_after
            self._rate_seen = []

    def _over_rate(self) -> int | None:
        """The Retry-After (seconds) when this request is over the rate, else None (and the request counts)."""
        with self._rate_lock:
            if self._rate is None:
                return None
            now = time.monotonic()
            self._rate_seen = [t for t in self._rate_seen if t > now - self._rate_window]
            if len(self._rate_seen) < self._rate:
                self._rate_seen.append(now)
                return None
            if self._rate_retry_after is not None:
                return self._rate_retry_after
            return max(1, int(-(-(self._rate_seen[0] + self._rate_window - now) // 1)))

    # ---- request log ------------------------------------------------------------------------

    def count(self, method: str | None = None, path_prefix: str | None = None, writes_only: bool = False) -> int:
        with self._records_lock:
            records = list(self.requests)
        return sum(
            1 for r in records
            if (method is None or r.method == method.upper())
            and (path_prefix is None or r.path.startswith(path_prefix))
            and (not writes_only or r.method not in READ_METHODS)
        )

    def reset_counts(self) -> None:
        with self._records_lock:
            self.requests.clear()

    def _record(self, req: Request, status: int | None, fault: str | None, retry_after: Any = None,
                received_at: float | None = None) -> None:
        headers = {k: ("<redacted>" if k.lower() in self.redact_headers else v) for k, v in req.headers.items()}
        record = RequestRecord(req.method, req.path, req.query, status, headers, fault, self.clock.now(),
                               received_at if received_at is not None else time.time(),
                               None if retry_after is None else str(retry_after))
        with self._records_lock:
            self.requests.append(record)
        # Path and status only: bodies and credential headers never reach the log.
        self.log.info("%s %s -> %s%s", req.method, req.path, status if status is not None else "dropped",
                      f" (fault {fault})" if fault else "")

    # ---- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, req: Request) -> tuple[int, Any, dict]:
        allowed = []
        for method, pattern, handler in self._routes:
            # fullmatch: `$` alone would also match before a trailing newline ("/v1/tokens/abc\n" is not "abc").
            match = pattern.fullmatch(req.path)
            if not match:
                continue
            if method != req.method:
                allowed.append(method)
                continue
            req.params = match.groupdict()
            return self._run(req, handler)
        if allowed:
            return self._run(req, lambda r: self.method_not_allowed(r, sorted(set(allowed))))
        return self._run(req, self.not_found)

    def _run(self, req: Request, handler: Handler) -> tuple[int, Any, dict]:
        with self.lock:
            try:
                result = handler(req)
            except HttpError as err:
                body = err.body if err.body is not None else self.error_body(err.status, err.message)
                return err.status, body, err.headers
            status, body, headers = (tuple(result) + ({},))[:3]
            if req.method not in READ_METHODS and status < 400:
                self.save_state()
            return status, body, headers or {}

    def _serve(self, handler: _Handler) -> None:
        body = handler._read_body()
        split = urllib.parse.urlsplit(handler.path)
        req = Request(method=handler.command, path=urllib.parse.unquote(split.path),
                      query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
                      headers=handler.headers, body=body, target=handler.path)
        received_at = time.time()
        over = self._over_rate()
        if over is not None:
            headers = {"Retry-After": over}
            self._record(req, 429, "rate_limit", over, received_at)
            handler.send_json(429, self.error_body(429, "too many requests"), headers)
            return
        fault = self.faults.take(req.method, req.path)
        kind = fault.kind if fault else None
        if kind == "latency":
            self.faults.arrived.set()
            self.faults.hold(fault.delay, self._stopping)
        if kind == "hang_before_commit":
            # The request arrived but is never carried out: the client is killed while it waits.
            self.faults.received.set()
            self.faults.arrived.set()
            self.faults.hold(fault.delay, self._stopping)
            self._record(req, None, kind)
            handler.drop()
            return
        try:
            if kind == "status":
                status, payload, headers = fault.status, self.error_body(fault.status, "injected fault"), {}
            elif kind == "retry_after":
                status, payload = 429, self.error_body(429, "too many requests")
                headers = {"Retry-After": fault.retry_after}
            else:
                status, payload, headers = self._dispatch(req)
        except Exception as exc:   # a simulator bug: answer 500, log where without the message
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            self.log.error("handler error %s at %s:%s", type(exc).__name__, os.path.basename(frame.filename), frame.lineno)
            status, payload, headers = 500, self.error_body(500, "internal simulator error"), {}
        self._record(req, status if kind != "drop_after_commit" else None, kind, (headers or {}).get("Retry-After"), received_at)
        if kind == "drop_after_commit":
            handler.drop()
            return
        if kind == "hang_after_commit":
            self.faults.committed.set()
            self.faults.arrived.set()
            self.faults.hold(fault.delay, self._stopping)
        handler.send_json(status, payload, headers)


_STATUS_CODES = {s.value for s in http.HTTPStatus}
