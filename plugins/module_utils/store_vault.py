# -*- coding: utf-8 -*-
# Copyright (c) tokenops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""HashiCorp Vault / OpenBao KV version 2 store over requests.

Auth: a token (X-Vault-Token) or AppRole (POST /v1/auth/<approle_mount>/login, lazily, once).
Every write carries options.cas; delete goes through the metadata endpoint so that every version
is removed. Reads (GET, LIST) are retried twice on connection errors and 502/503/504; writes and
deletes are not, except after a 429, which says the request was not carried out: any request is
sent again after its Retry-After (the HTTP layer holds the endpoint's other requests meanwhile).
A write whose answer was lost raises StoreOutcomeUnknown, for the caller to read back; a slow or
throttled store raises StoreBusy. Error messages name the operation, the path, the HTTP status and Vault's
`errors`; token, secret_id and written values are redacted from them.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time
import traceback

from urllib.parse import quote, urlsplit

try:
    import requests
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - depends on the environment
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.tokenops.rotation.plugins.module_utils import backpressure
from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import Transport, backoff_delay, parse_retry_after
from ansible_collections.tokenops.rotation.plugins.module_utils.store import (
    Entry,
    Store,
    StoreConfigError,
    StoreBusy,
    StoreConflict,
    StoreDenied,
    StoreError,
    StoreOutcomeUnknown,
    StoreUnavailable,
    check_path,
    check_prefix,
)

RETRY_STATUSES = (502, 503, 504)
READ_RETRIES = 2
RETRY_BACKOFF = (0.2, 0.5)
CAS_MISMATCH = 'check-and-set parameter did not match'
MAX_ERROR_TEXT = 300
POOL_SIZE = 64
MAX_RETRY_AFTER = 60.0       # a longer Retry-After is reported, not waited for
MAX_THROTTLE_WAIT = 120.0    # the most one request waits in all for its 429s
MAX_THROTTLED = 100
WRITES = ('POST', 'PUT', 'DELETE')


def _strip_url(url):
    """The URL without user info, query or trailing '/' (for messages and the base URL)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit('@', 1)[-1]
    path = parts.path.rstrip('/')
    return '%s://%s%s' % (parts.scheme, netloc, path)


def _secret_strings(value, out):
    """Collect the string leaves of value (to redact them from error messages)."""
    if isinstance(value, dict):
        for item in value.values():
            _secret_strings(item, out)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _secret_strings(item, out)
    elif isinstance(value, str) and len(value) >= 4:
        out.add(value)
    return out


class VaultStore(Store):
    kind = 'vault'

    def __init__(self, url, token=None, auth_method='token', role_id=None, secret_id=None, approle_mount='approle',
                 namespace=None, mount_point='secret', ca_cert=None, validate_certs=True, timeout=10, request_log=None):
        if not HAS_REQUESTS:
            raise StoreConfigError('the vault store needs the Python library requests on the host that runs the module')
        if not url or not str(url).strip():
            raise StoreConfigError('store.url (or VAULT_ADDR) is required for the vault store')
        url = str(url).strip()
        parts = urlsplit(url)
        if parts.scheme not in ('http', 'https') or not parts.netloc:
            raise StoreConfigError('store.url (or VAULT_ADDR) must be an http:// or https:// URL')
        self.url = _strip_url(url)
        auth_method = auth_method or 'token'
        if auth_method == 'token':
            if not token:
                raise StoreConfigError('store.token (or VAULT_TOKEN) is required for the vault store with auth_method token')
        elif auth_method == 'approle':
            missing = [name for name, value in (('role_id', role_id), ('secret_id', secret_id)) if not value]
            if missing:
                raise StoreConfigError('store.%s (or VAULT_%s) is required for the vault store with auth_method approle'
                                       % (' and store.'.join(missing), ' and VAULT_'.join(m.upper() for m in missing)))
            approle_mount = check_path(approle_mount or 'approle', 'store.approle_mount')
        else:
            raise StoreConfigError('store.auth_method must be token or approle, got %r' % (auth_method,))
        self.auth_method = auth_method
        self.mount = check_path(mount_point or 'secret', 'store.mount_point')
        self.namespace = check_prefix(namespace, 'store.namespace') or None
        try:
            timeout = float(timeout if timeout is not None else 10)
        except (TypeError, ValueError):
            raise StoreConfigError('store.timeout must be a number of seconds')
        if timeout <= 0:
            raise StoreConfigError('store.timeout must be greater than 0')
        self.timeout = timeout
        if ca_cert:
            ca_cert = os.path.expanduser(str(ca_cert))
            if not os.path.exists(ca_cert):
                raise StoreConfigError('store.ca_cert %s does not exist' % ca_cert)
            self.verify = ca_cert
        else:
            self.verify = bool(validate_certs)
        self.approle_mount = approle_mount
        self._role_id = role_id
        self._secret_id = secret_id
        self._token = token if auth_method == 'token' else None
        self._request_log = request_log
        self._transport = None
        self._redact = set()
        for value in (token, secret_id):
            if value:
                self._redact.add(str(value))

    @classmethod
    def from_params(cls, params, request_log=None):
        return cls(
            url=params.get('url'), token=params.get('token'), auth_method=params.get('auth_method'),
            role_id=params.get('role_id'), secret_id=params.get('secret_id'), approle_mount=params.get('approle_mount'),
            namespace=params.get('namespace'), mount_point=params.get('mount_point'), ca_cert=params.get('ca_cert'),
            validate_certs=params.get('validate_certs', True), timeout=params.get('timeout'), request_log=request_log,
        )

    # -- helpers -----------------------------------------------------------------------------

    def describe(self):
        text = 'vault %s mount %s' % (self.url, self.mount)
        if self.namespace:
            text += ' namespace %s' % self.namespace
        return text

    def note_wait(self, seconds):
        limit = backpressure.limit_for(self.url)
        limit.note_wait(seconds)
        limit.note_retry()

    def note_read_back(self):
        backpressure.limit_for(self.url).note_read_back()

    def close(self):
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def _scrub(self, text, extra=None):
        text = str(text)
        secrets = set(self._redact)
        if extra:
            secrets |= extra
        for secret in sorted(secrets, key=len, reverse=True):
            if secret and secret in text:
                text = text.replace(secret, '***')
        return text

    def _fail(self, cls, op, path, detail, extra=None):
        raise cls(self._scrub('vault store (%s): %s %s failed: %s' % (self.describe(), op, path, detail), extra))

    def _get_transport(self):
        if self._transport is None:
            # as many kept-alive connections as a module's threads use at once, or they are closed and opened again
            self._transport = Transport(self.verify, POOL_SIZE, pool_connections=4)
        return self._transport

    @staticmethod
    def _errors(response):
        try:
            body = response.json()
        except ValueError:
            body = None
        errors = body.get('errors') if isinstance(body, dict) else None
        if isinstance(errors, list):
            text = '; '.join(str(e) for e in errors if e)
        else:
            text = (response.text or '').strip()
        if len(text) > MAX_ERROR_TEXT:
            text = text[:MAX_ERROR_TEXT] + '...'
        return body, text

    def _api_path(self, kind, path):
        api = '/v1/%s/%s' % (self.mount, kind)
        if path:
            api += '/' + quote(path, safe='/')
        return api

    def _send(self, method, api_path, op, path, body=None, token=None, extra=None):
        """One request with read retries; returns the response (any status) or raises StoreUnavailable.

        A 429 is waited out and sent again, whatever the method (it was not carried out); a time-out
        raises StoreBusy for a read and StoreOutcomeUnknown for a write (the caller reads back).
        """
        transport = self._get_transport()
        headers = {}
        if token:
            headers['X-Vault-Token'] = token
        if self.namespace:
            headers['X-Vault-Namespace'] = self.namespace
        retries = READ_RETRIES if method in ('GET', 'LIST') else 0
        attempt = 0
        throttled = 0
        throttle_waited = 0.0
        paused = False
        url = self.url + api_path
        while True:
            if self._request_log is not None:
                self._request_log(method, api_path)
            try:
                response = transport.send(method, url, json=body, headers=headers, timeout=self.timeout,
                                          allow_redirects=False, paused=paused)
                paused = False
            except requests.exceptions.SSLError as exc:
                self._fail(StoreUnavailable, op, path, 'TLS error talking to %s (check store.ca_cert / validate_certs): %s'
                           % (self.url, exc.__class__.__name__), extra)
            except requests.exceptions.ConnectionError as exc:
                # includes ConnectTimeout: nothing reached the server, safe to retry reads
                if attempt < retries:
                    transport.limit(url).note_retry()
                    time.sleep(RETRY_BACKOFF[min(attempt, len(RETRY_BACKOFF) - 1)])
                    attempt += 1
                    continue
                reason = self._reason(exc)
                if isinstance(exc, requests.exceptions.ConnectTimeout):
                    # not accepted in time: a busy store (nothing was sent)
                    self._fail(StoreBusy, op, path, 'cannot connect to %s (connect timeout)' % self.url, extra)
                sent = method in WRITES and reason not in ('connection refused', 'unknown host')
                self._fail(StoreOutcomeUnknown if sent else StoreUnavailable, op, path, 'cannot connect to %s (%s)%s'
                           % (self.url, reason, self._maybe_applied(method) if sent else ''), extra)
            except requests.exceptions.Timeout:
                # a read timeout: the server is slow or stuck; the caller decides how long to wait it out
                self._fail(StoreOutcomeUnknown if method in WRITES else StoreBusy, op, path, 'no answer from %s within %ss%s'
                           % (self.url, self._fmt_timeout(), self._maybe_applied(method)), extra)
            except requests.exceptions.RequestException as exc:
                self._fail(StoreUnavailable, op, path, 'request to %s failed (%s)' % (self.url, exc.__class__.__name__), extra)
            if response.status_code == 429 and throttled < MAX_THROTTLED:
                retry_after = parse_retry_after(response.headers.get('Retry-After'))
                if not retry_after:
                    # none, or Vault's "0" (it rounds down): a short jittered wait, longer with each 429 in a row
                    retry_after = max(0.02, backoff_delay(throttled, 0.1, 1.0))
                if retry_after <= MAX_RETRY_AFTER and throttle_waited + retry_after <= MAX_THROTTLE_WAIT:
                    limit = transport.limit(url)
                    limit.note_retry()
                    limit.note_wait(retry_after)
                    time.sleep(retry_after)
                    throttle_waited += retry_after
                    throttled += 1
                    paused = True
                    continue
            if response.status_code in RETRY_STATUSES and attempt < retries:
                transport.limit(url).note_retry()
                time.sleep(RETRY_BACKOFF[min(attempt, len(RETRY_BACKOFF) - 1)])
                attempt += 1
                continue
            return response

    def _fmt_timeout(self):
        return ('%g' % self.timeout)

    @staticmethod
    def _maybe_applied(method):
        if method in ('POST', 'PUT', 'DELETE'):
            return '; the change may or may not have been applied'
        return ''

    @staticmethod
    def _reason(exc):
        text = str(exc).lower()
        for needle, reason in (('refused', 'connection refused'), ('timed out', 'connect timeout'),
                               ('name or service not known', 'unknown host'), ('nodename nor servname', 'unknown host'),
                               ('temporary failure in name resolution', 'unknown host'), ('reset', 'connection reset'),
                               ('remotedisconnected', 'connection closed'), ('aborted', 'connection aborted')):
            if needle in text:
                return reason
        return exc.__class__.__name__

    def _check(self, response, op, path, ok=(200, 204), extra=None):
        """Map a non-OK response to a StoreError; returns the parsed body for OK ones."""
        status = response.status_code
        body, errors = self._errors(response)
        if status in ok:
            return body
        detail = 'HTTP %d%s' % (status, (': ' + errors) if errors else '')
        if status in (401, 403):
            self._fail(StoreDenied, op, path, detail + ' (check the token or AppRole and its policy)', extra)
        if status == 400 and CAS_MISMATCH in errors:
            self._fail(StoreConflict, op, path, detail, extra)
        if status == 503 and 'sealed' in errors.lower():
            self._fail(StoreUnavailable, op, path, detail + ' (Vault is sealed)', extra)
        if status in (502, 504) and op == 'write':
            # a gateway's error may hide a write that landed behind it
            self._fail(StoreOutcomeUnknown, op, path, detail + '; the change may or may not have been applied', extra)
        if status in RETRY_STATUSES or status == 429:
            self._fail(StoreBusy, op, path, detail, extra)
        if status >= 500:
            self._fail(StoreUnavailable, op, path, detail, extra)
        if status == 404 and ('no handler for route' in errors or 'namespace not found' in errors):
            self._fail(StoreConfigError, op, path, detail + ' (is store.mount_point a KV v2 mount%s?)'
                       % (' in store.namespace' if self.namespace else ''), extra)
        self._fail(StoreError, op, path, detail, extra)

    def _auth_token(self):
        if self._token:
            return self._token
        # AppRole login, once per store object
        api_path = '/v1/auth/%s/login' % quote(self.approle_mount, safe='/')
        response = self._send('POST', api_path, 'approle login', 'auth/%s' % self.approle_mount,
                              body={'role_id': self._role_id, 'secret_id': self._secret_id})
        if response.status_code == 400 and 'invalid' in self._errors(response)[1].lower():
            # Vault answers 400 "invalid role or secret ID" for bad credentials
            self._fail(StoreDenied, 'approle login', 'auth/%s' % self.approle_mount, 'HTTP 400: %s' % self._errors(response)[1])
        body = self._check(response, 'approle login', 'auth/%s' % self.approle_mount)
        token = ((body or {}).get('auth') or {}).get('client_token')
        if not token:
            self._fail(StoreError, 'approle login', 'auth/%s' % self.approle_mount, 'no client_token in the answer')
        self._redact.add(token)
        self._token = token
        return token

    # -- the interface -----------------------------------------------------------------------

    def read(self, path):
        path = check_path(path)
        response = self._send('GET', self._api_path('data', path), 'read', path, token=self._auth_token())
        if response.status_code == 404:
            body, errors = self._errors(response)
            metadata = ((body or {}).get('data') or {}).get('metadata') if isinstance(body, dict) else None
            if isinstance(metadata, dict) and metadata.get('version'):
                # the latest version is soft-deleted or destroyed: absent, but writes need its version as cas
                return Entry(None, int(metadata['version']))
            if errors:
                self._check(response, 'read', path, ok=())
            return Entry(None, 0)
        body = self._check(response, 'read', path, ok=(200,))
        data = (body or {}).get('data') or {}
        metadata = data.get('metadata') or {}
        version = int(metadata.get('version') or 0)
        if metadata.get('deletion_time') or metadata.get('destroyed') or data.get('data') is None:
            return Entry(None, version)
        return Entry(data.get('data'), version)

    def write(self, path, data, cas):
        path = check_path(path)
        if not isinstance(data, dict):
            raise StoreConfigError('vault store: write %s: data must be a dict' % path)
        if isinstance(cas, bool) or not isinstance(cas, int) or cas < 0:
            raise StoreConfigError('vault store: write %s: cas must be an integer >= 0' % path)
        extra = _secret_strings(data, set())
        response = self._send('POST', self._api_path('data', path), 'write', path, token=self._auth_token(),
                              body={'data': data, 'options': {'cas': cas}}, extra=extra)
        if response.status_code == 400 and CAS_MISMATCH in self._errors(response)[1]:
            self._fail(StoreConflict, 'write', path, 'the entry changed since it was read (expected version %d)' % cas, extra)
        body = self._check(response, 'write', path, extra=extra)
        version = ((body or {}).get('data') or {}).get('version')
        if version is None:
            self._fail(StoreError, 'write', path, 'no version in the answer', extra)
        return int(version)

    def delete(self, path):
        path = check_path(path)
        entry = self.read(path)
        if entry.version == 0 and entry.data is None:
            return False
        response = self._send('DELETE', self._api_path('metadata', path), 'delete', path, token=self._auth_token())
        if response.status_code != 404:
            self._check(response, 'delete', path)
        return entry.data is not None

    def list(self, prefix):
        prefix = check_prefix(prefix)
        found = []
        pending = [prefix]
        token = self._auth_token()
        while pending:
            folder = pending.pop()
            response = self._send('LIST', self._api_path('metadata', folder + '/' if folder else ''), 'list', folder or '/',
                                  token=token)
            if response.status_code == 404:
                _body, errors = self._errors(response)
                if errors:
                    self._check(response, 'list', folder or '/', ok=())
                continue
            body = self._check(response, 'list', folder or '/', ok=(200,))
            for key in ((body or {}).get('data') or {}).get('keys') or []:
                full = (folder + '/' + key) if folder else key
                if key.endswith('/'):
                    pending.append(full.rstrip('/'))
                else:
                    found.append(full)
        return sorted(found)
