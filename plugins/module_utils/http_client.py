# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one HTTP layer every product client uses.

One requests session per module run, timeouts, TLS settings, retries for safe requests only,
one error type (ApiError) and redaction of every secret the run has seen.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import email.utils
import json as _json
import os
import random
import re
import threading
import time

try:
    import requests
    from requests.adapters import HTTPAdapter
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module base
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = exc

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover - Python 2 is not supported, keeps sanity's compile test quiet
    from urlparse import urlsplit  # type: ignore

from ansible_collections.tokenops.rotation.plugins.module_utils import backpressure

RETRY_STATUSES = (429, 502, 503, 504)
MAX_THROTTLED = 100   # 429s one request may get, whatever their Retry-After
REDACTED = "<redacted>"


class EnvironmentSettings:
    """What requests would read from the environment on every request, read once per host.

    With trust_env, requests walks os.environ for proxies and NO_PROXY, reads ~/.netrc (whose
    entry would replace our Authorization header) and REQUESTS_CA_BUNDLE on each request: about a
    fifth of a request's CPU with an environment as big as Ansible's. A session made with
    trust_env off gets the proxies of each host and the CA bundle from here instead.
    """

    def __init__(self, verify):
        if verify is True:
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self.verify = verify
        self._proxies = {}
        self._lock = threading.Lock()

    def proxies(self, url):
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        with self._lock:
            found = self._proxies.get(key)
            if found is None:
                found = self._proxies[key] = requests.utils.get_environ_proxies(url)
        return found


class Transport:
    """One requests connection pool; each request is prepared and handed to it directly.

    Session.request merges the session's headers, cookies, hooks, auth and environment into every
    request and walks its settings through runtime Protocol checks: measured with 16 threads on a
    2-core controller, about a sixth of a request's CPU, paid 3 to 6 times per token (see
    benchmarks/). This keeps what a session does for us: its default headers and User-Agent, its
    cookie jar (a load balancer's affinity cookie), redirects when asked for, the body read so the
    connection goes back to the pool; proxies and the CA bundle come from EnvironmentSettings.

    Every request first takes a slot of its endpoint's adaptive limit (backpressure.py) and gives
    it back with what the answer said about the endpoint's load: a 429 pauses the endpoint for its
    Retry-After, a 429, 502, 503, 504, a time-out or an answer slower than half the timeout lowers
    the limit, a good answer raises it again.
    """

    def __init__(self, verify, pool_size, pool_connections=None, user_agent=None):
        self.session = requests.Session()
        self.session.trust_env = False   # read once by EnvironmentSettings instead
        adapter = HTTPAdapter(pool_connections=pool_connections or pool_size, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        if user_agent:
            self.session.headers["User-Agent"] = user_agent
        self.environment = EnvironmentSettings(verify)
        # Passed on every request: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        self.verify = self.environment.verify

    def send(self, method, url, data=None, json=None, headers=None, timeout=None, allow_redirects=True, paused=False):
        """`paused`: the caller has just waited out the endpoint's pause (its own 429's Retry-After) itself."""
        limit = backpressure.limit_for(url)
        ticket = limit.acquire(skip_pause=paused)
        outcome = backpressure.NEUTRAL
        try:
            response = self._send(method, url, data, json, headers, timeout, allow_redirects)
            status = response.status_code
            if status == 429:
                outcome = backpressure.THROTTLED
                limit.pause(parse_retry_after(response.headers.get("Retry-After")))
            elif status in (502, 503, 504):
                outcome = backpressure.OVERLOADED
            else:
                outcome = backpressure.OK
            return response
        except requests.exceptions.Timeout:
            outcome = backpressure.TIMEOUT
            raise
        finally:
            limit.release(ticket, outcome, slow_after=timeout / 2.0 if isinstance(timeout, (int, float)) else None)

    @staticmethod
    def limit(url):
        """The adaptive limit of the URL's endpoint (for the callers' wait and retry counts)."""
        return backpressure.limit_for(url)

    def _send(self, method, url, data, json, headers, timeout, allow_redirects):
        session = self.session
        merged = requests.structures.CaseInsensitiveDict(session.headers)
        if headers:
            merged.update(headers)
        prepared = requests.PreparedRequest()
        prepared.prepare(method=method, url=url, headers=merged, data=data, json=json, cookies=session.cookies)
        options = dict(timeout=timeout, verify=self.verify, cert=None, proxies=self.environment.proxies(url), stream=False)
        response = session.get_adapter(url).send(prepared, **options)
        requests.cookies.extract_cookies_to_jar(session.cookies, prepared, response.raw)
        if allow_redirects and response.is_redirect:
            history = [response] + list(session.resolve_redirects(response, prepared, **options))
            response = history.pop()
            response.history = history
        response.content   # pylint: disable=pointless-statement  # read now: the connection returns to the pool
        return response

    def close(self):
        self.session.close()


class SecretMask:
    """Masks every occurrence of any of many secrets, in one pass over each text.

    Replacing secret by secret costs len(text) x secrets; a result over thousands of tokens holds
    thousands of strings and the run has seen as many secrets. Indexed by their first m characters
    (m: the shortest secret's length), a text is scanned once, one dictionary lookup per position.
    Every character inside an occurrence of any secret is masked, and overlapping or adjacent
    occurrences become one marker, so no part of a secret is left.
    """

    def __init__(self, secrets, marker=REDACTED, exact_marker=None):
        secrets = set(value for value in secrets if value)
        self.marker = marker
        self.exact_marker = exact_marker      # a text that is exactly a secret (as Ansible marks a no_log value)
        self._exact = secrets
        self._width = min(len(value) for value in secrets) if secrets else 0
        self._index = {}
        for value in secrets:
            self._index.setdefault(value[:self._width], []).append(value)

    def text(self, text):
        width = self._width
        if not width or len(text) < width:
            return text
        if self.exact_marker is not None and text in self._exact:
            return self.exact_marker
        index = self._index
        spans = []
        for start in range(len(text) - width + 1):
            candidates = index.get(text[start:start + width])
            if candidates:
                end = max((start + len(value) for value in candidates if text.startswith(value, start)), default=None)
                if end is not None:
                    if spans and start <= spans[-1][1]:
                        spans[-1][1] = max(spans[-1][1], end)
                    else:
                        spans.append([start, end])
        if not spans:
            return text
        parts = []
        at = 0
        for start, end in spans:
            parts.append(text[at:start])
            parts.append(self.marker)
            at = end
        parts.append(text[at:])
        return "".join(parts)

    def value(self, value):
        """A copy of value (dicts, lists, tuples of strings and scalars) with every string masked."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return dict((key, self.value(item)) for key, item in value.items())
        if isinstance(value, (list, tuple)):
            return [self.value(item) for item in value]
        return value


class Redactor:
    """Every secret a run has seen; `scrub` replaces them in any text.

    The module base also adds each secret to AnsibleModule.no_log_values, and masks the module's
    result with them in one pass (SecretMask) before Ansible sees it; this class covers the
    strings we build ourselves (error messages, warnings).
    """

    def __init__(self):
        self._secrets = set()
        self._lock = threading.Lock()
        self._mask = None
        self.on_add = None

    def add(self, value):
        if not value or not isinstance(value, str) or len(value) < 4:
            return
        with self._lock:
            if value not in self._secrets:
                self._secrets.add(value)
                self._mask = None
        if self.on_add is not None:
            self.on_add(value)

    def scrub(self, text):
        if text is None:
            return text
        with self._lock:
            if self._mask is None:
                self._mask = SecretMask(self._secrets)
            mask = self._mask
        return mask.text(str(text))


class ApiError(Exception):
    """A product API call that failed. Carries what a person needs, never a secret.

    `outcome_unknown` is true when the request may have been carried out by the server although
    no answer arrived (connection dropped after sending, read timeout): the rotation flow treats
    such a mint as possibly committed.
    """

    def __init__(self, product, step, method, url, status=None, code=None, message=None,
                 retry_after=None, outcome_unknown=False):
        self.product = product
        self.step = step
        self.method = method
        self.url = url
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown
        super(ApiError, self).__init__(self.describe())

    def describe(self):
        path = urlsplit(self.url).path if self.url else ""
        text = "%s: %s failed: %s %s" % (self.product, self.step, self.method, path)
        if self.status is not None:
            text += " returned HTTP %s" % self.status
        if self.code:
            text += " (error code %s)" % self.code
        if self.message:
            text += ": %s" % self.message
        return text

    def to_dict(self):
        return dict(product=self.product, step=self.step, method=self.method, status=self.status,
                    code=self.code, outcome_unknown=self.outcome_unknown)


def parse_retry_after(value, now=None):
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def backoff_delay(attempt, base, cap):
    """Full-jitter exponential backoff, as the AWS architecture blog recommends."""
    return random.uniform(0, min(cap, base * (2 ** attempt)))


class HttpClient:
    """A product's connection: base URL, TLS, timeouts and the retry policy.

    `idempotent` on request() says whether repeating the request is safe; GET and HEAD always
    are. Idempotent requests are retried on 502, 503, 504 and on connection errors (`retries`
    times). A 429 is different: it says the request was not carried out, so any request answered
    429, a change too, is sent again after the Retry-After it asked for (at most max_retry_after
    each, max_throttle_wait in all). A request that may have minted a secret is never sent twice by
    this layer.

    `changes` on request() says whether the request changes anything in the product (every
    method but GET and HEAD, unless the client says otherwise). Before such a request is sent,
    `change_guard.before_change(step)` is called: the rotation driver refuses it unless the
    token's intent is recorded in the store. A definite refusal of a change is reported back
    (`change_guard.refused()`): it changed nothing.
    """

    def __init__(self, product, base_url, validate_certs=True, ca_path=None, timeout=30, retries=3,
                 backoff_base=0.5, backoff_cap=8.0, max_retry_after=60.0, max_throttle_wait=300.0, redactor=None,
                 pool_size=10, user_agent="tokenops.rotation", sleep=time.sleep, error_parser=None, change_guard=None,
                 verbosity=0):
        if not HAS_REQUESTS:
            raise RuntimeError("the Python library requests is required: %s" % REQUESTS_IMPORT_ERROR)
        self.product = product
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self.max_throttle_wait = max_throttle_wait
        self.redactor = redactor or Redactor()
        self.sleep = sleep
        self.error_parser = error_parser or default_error_parser
        self.change_guard = change_guard
        self.request_count = 0
        self.ca_path = ca_path
        # At -vvv (3) and above a transport error keeps the library's own text after the plain message.
        self.verbosity = verbosity or 0
        self.transport = Transport(ca_path if ca_path else bool(validate_certs), pool_size, user_agent=user_agent)
        self.verify = self.transport.verify
        self._count_lock = threading.Lock()

    def url(self, path):
        if path.startswith("http://") or path.startswith("https://"):
            return path
        return self.base_url + "/" + path.lstrip("/")

    def request(self, step, method, path, json=None, data=None, headers=None, bearer=None, scheme="Bearer",
                idempotent=None, ok=(200,), timeout=None, signer=None, changes=None):
        """Send one request; return the response when its status is in `ok`, else raise ApiError.

        `bearer` is sent as `Authorization: <scheme> <bearer>` (GNAP uses scheme "GNAP").
        `signer(method, url, headers, body)` returns headers to add, computed over the exact
        bytes sent; it is called again for each attempt (signatures carry a creation time).
        """
        method = method.upper()
        url = self.url(path)
        if idempotent is None:
            idempotent = method in ("GET", "HEAD")
        if changes is None:
            changes = method not in ("GET", "HEAD")
        if changes and self.change_guard is not None:
            self.change_guard.before_change("%s (%s %s)" % (step, method, urlsplit(url).path))
        try:
            return self._send(step, method, url, json, data, headers, bearer, scheme, idempotent, ok, timeout, signer)
        except ApiError as exc:
            if changes and self.change_guard is not None and not exc.outcome_unknown:
                self.change_guard.refused()
            raise

    def _send(self, step, method, url, json, data, headers, bearer, scheme, idempotent, ok, timeout, signer):
        headers = dict(headers or {})
        if bearer:
            self.redactor.add(bearer)
            headers["Authorization"] = "%s %s" % (scheme, bearer)
        if json is not None:
            # Serialised here, compactly and as UTF-8 (not \u escapes, as JSON.stringify does), so that
            # what is signed is byte for byte what is sent and what a server that re-serialises digests.
            data = _json.dumps(json, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        attempt = 0
        throttled = 0
        throttle_waited = 0.0
        waited_out = False
        while True:
            try:
                with self._count_lock:
                    self.request_count += 1
                sent = dict(headers)
                if signer is not None:
                    sent.update(signer(method, url, sent, data if isinstance(data, bytes) else None))
                response = self.transport.send(method, url, data=data, headers=sent, timeout=timeout or self.timeout,
                                               paused=waited_out)
                waited_out = False
            except requests.exceptions.RequestException as exc:
                # A connection that was refused never reached the server; anything later may have.
                unknown = not isinstance(exc, requests.exceptions.ConnectTimeout) and not _refused(exc)
                if idempotent and attempt < self.retries and not _tls_setup(exc):
                    delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap)
                    self.transport.limit(url).note_retry()
                    self.sleep(delay)
                    attempt += 1
                    continue
                raise ApiError(self.product, step, method, url, message=self._transport_text(exc, url, timeout or self.timeout),
                               outcome_unknown=unknown and method not in ("GET", "HEAD"))
            except (IOError, OSError) as exc:
                # requests checks the CA bundle's path itself, before it connects: nothing was sent.
                raise ApiError(self.product, step, method, url, message=self._transport_text(exc, url, timeout or self.timeout))
            if response.status_code in ok:
                return response
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if response.status_code == 429 and (retry_after is None or retry_after <= self.max_retry_after):
                # A 429 says the request was not carried out: any request, a change too, may be sent again
                # once the wait it asked for is over (the endpoint's other requests wait too: Transport).
                delay = retry_after if retry_after is not None else backoff_delay(throttled, self.backoff_base, self.backoff_cap)
                if throttle_waited + delay <= self.max_throttle_wait and throttled < MAX_THROTTLED:
                    limit = self.transport.limit(url)
                    limit.note_retry()
                    limit.note_wait(delay)
                    self.sleep(delay)
                    throttle_waited += delay
                    throttled += 1
                    waited_out = True
                    continue
            if idempotent and response.status_code in RETRY_STATUSES and attempt < self.retries:
                if retry_after is not None:
                    if retry_after > self.max_retry_after:
                        raise self._error(step, method, url, response, retry_after)
                    delay = retry_after
                else:
                    delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap)
                self.transport.limit(url).note_retry()
                self.sleep(delay)
                attempt += 1
                continue
            raise self._error(step, method, url, response, retry_after)

    def _error(self, step, method, url, response, retry_after):
        code, message = self.error_parser(response)
        # A gateway error on a write may hide a commit; a definite 4xx did not commit.
        unknown = method not in ("GET", "HEAD") and response.status_code in (502, 504)
        # Scrub first, then cut: a cut through a secret would leave its first part readable.
        return ApiError(self.product, step, method, url, status=response.status_code,
                        code=_cut(self.redactor.scrub(code), 100), message=_cut(self.redactor.scrub(message), 200),
                        retry_after=retry_after, outcome_unknown=unknown)

    def _transport_text(self, exc, url, timeout):
        """A plain message naming the option to check; the library's own text only at -vvv."""
        text = _exc_text(exc, url, timeout, self.ca_path)
        if self.verbosity >= 3:
            text += " [%s: %s]" % (exc.__class__.__name__, _last_reason(exc))
        return self.redactor.scrub(text)

    def close(self):
        self.transport.close()


def default_error_parser(response):
    """(code, message) from a JSON error body in the common shapes; plain text is cut short."""
    try:
        body = response.json()
    except ValueError:
        text = (response.text or "").strip()
        return None, text or None
    if isinstance(body, dict):
        code = body.get("code") or body.get("error")
        message = body.get("message") or body.get("error_description")
        if isinstance(body.get("error"), dict):  # GNAP: {"error": {"code": ..., "description": ...}}
            code = body["error"].get("code")
            message = body["error"].get("description")
        if code is not None and not isinstance(code, str):
            code = str(code)
        if message is not None and not isinstance(message, str):
            message = str(message)
        return code, message
    return None, None


def _cut(text, limit):
    if text is None or len(text) <= limit:
        return text
    return text[:limit - 3] + "..."


def _refused(exc):
    text = str(exc).lower()
    return "connection refused" in text or "failed to establish a new connection" in text or "name or service not known" in text


_DNS = ("name or service not known", "nodename nor servname", "temporary failure in name resolution", "getaddrinfo failed",
        "no address associated with hostname", "name resolution")
_CA_FILE = ("no_certificate_or_crl_found", "pem lib", "ca certificate bundle", "no such file", "x509 lib", "not enough data")
_NO_TLS_SERVER = ("wrong version number", "unknown protocol", "record layer failure", "packet length too long", "http request")
_CLOSED = ("reset", "aborted", "remotedisconnected", "remote end closed", "connection closed", "broken pipe", "eof occurred")


def _tls_setup(exc):
    """A TLS error that a retry cannot cure (an untrusted certificate, a bad CA file)."""
    if _ca_file_error(exc):
        return True
    return isinstance(exc, requests.exceptions.SSLError) and "verify failed" in str(exc).lower()


def _ca_file_error(exc):
    text = str(exc).lower()
    return any(needle in text for needle in _CA_FILE) and "verify failed" not in text


def _exc_text(exc, url=None, timeout=None, ca_path=None):
    """A plain reason for a transport error that names the option to check (url, ca_path, validate_certs, timeout).

    Never the library's text (urllib3's "NewConnectionError(<...>: [Errno 111] ...)"), nor the URL's path or query.
    """
    where = (urlsplit(url).netloc if url else "") or "the server"
    low = str(exc).lower()
    seconds = " within %gs" % timeout if isinstance(timeout, (int, float)) else ""
    if not isinstance(exc, requests.exceptions.RequestException) or _ca_file_error(exc):
        if ca_path:
            return "TLS error: ca_path %s is not a CA certificate file (PEM): check ca_path" % ca_path
        return ("TLS error: the CA bundle (REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE in the environment) cannot be used: "
                "fix it, or give the server's CA in ca_path")
    if isinstance(exc, requests.exceptions.SSLError):
        if "mismatch" in low or "doesn't match" in low or "not valid for" in low:
            return ("TLS error: the certificate of %s is not issued for that name: check url (use the host name the "
                    "certificate names)" % where)
        if "verify failed" in low:
            found = re.search(r"verify failed: ([a-z0-9 ,-]+)", low)
            why = " (%s)" % found.group(1).strip() if found else ""
            return ("TLS error: the certificate of %s is not trusted%s: give the CA that signed it in ca_path, or set "
                    "validate_certs: false for a test server only" % (where, why))
        if any(needle in low for needle in _NO_TLS_SERVER):
            return "TLS error: no TLS server answers at %s: check url (http:// or https://, and the port)" % where
        return "TLS error: the TLS handshake with %s failed: check url, ca_path and validate_certs" % where
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return ("connection error: no connection to %s%s: check url (host and port; a firewall or a proxy may drop it), "
                "or raise timeout" % (where, seconds))
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out: %s sent no answer%s: raise timeout if the server is slow" % (where, seconds)
    if isinstance(exc, requests.exceptions.ConnectionError):
        if any(needle in low for needle in _DNS):
            return "connection error: the host name of %s cannot be resolved (DNS): check url" % where
        if _refused(exc):
            return "connection error: %s refused the connection: check url (host and port) and that the server runs" % where
        if any(needle in low for needle in _CLOSED):
            return ("connection error: %s closed the connection without an answer: check url (http:// or https://, and "
                    "the port)" % where)
        return "connection error: cannot connect to %s: check url" % where
    return "request error: the request to %s failed (%s): check url" % (where, exc.__class__.__name__)


def _last_reason(exc):
    text = str(exc)
    if "(Caused by" in text:
        text = text.split("(Caused by", 1)[1].rstrip(")")
    return text.strip()[:200]
