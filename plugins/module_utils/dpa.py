# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SolarWinds DPA client: the refresh-token exchange, the access-token probe, JWT claims and the
access-token cache kept in a store record. Shared by the modules and the dpa_access_token lookup.

DPA has no API that creates, lists or deletes refresh tokens (dpa.md 2.3): an administrator makes
them in the web interface. What an automation can do is read their claims, exchange them
(POST /iwc/api/security/oauth/token) and probe the access tokens they issue.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import datetime
import json
import re

try:
    from urllib.parse import urlsplit, urlunsplit
except ImportError:  # pragma: no cover
    from urlparse import urlsplit, urlunsplit  # type: ignore

from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError, default_error_parser
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import Policy, iso, parse_time, utcnow
from ansible_collections.tokenops.rotation.plugins.module_utils import validators

PRODUCT = "SolarWinds DPA"
API_PATH = "/iwc/api"
TOKEN_PATH = "/security/oauth/token"
PROBE_PATH = "/databases/monitor-information"
# API_ACCESS_TOKEN_EXPIRATION's documented default, assumed when the exchange does not say (dpa.md 2.4, 2.9 q4).
DEFAULT_ACCESS_LIFETIME = 900
MANAGEMENT_PAGE = "Options > Users & Contacts > Refresh Token Management"
URL_HINT = "the DPA server as http(s)://host:port, for example https://dpa.example.com:8124"

TOKEN_ID_RE = re.compile(r"^[A-Za-z0-9_~-][A-Za-z0-9._~-]*$")
_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]+$")


# ---------------------------------------------------------------- input

def api_url(url):
    """The API base (https://host:8124/iwc/api) of a DPA server URL; ValueError when it is no http(s) URL.

    The message does not repeat the URL: it may carry user info.
    """
    parts = urlsplit(validators.url(url, "url", what=URL_HINT))
    path = parts.path.rstrip("/")
    if not path.endswith(API_PATH):
        path += API_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def validate_token_id(token_id, where="id"):
    """The name of a managed refresh token in the store: one path segment."""
    if not isinstance(token_id, str) or not TOKEN_ID_RE.match(token_id):
        raise ValueError("%s %s must be one word of letters, digits, '.', '_', '~' and '-', for example reporting"
                         % (where, validators.shown(token_id)))


class Claims:
    """What the payload of a refresh token says: its name (`sub`), when it was made and when it expires."""

    def __init__(self, name, issued_at=None, expires_at=None):
        self.name = name
        self.issued_at = issued_at
        self.expires_at = expires_at

    @property
    def never_expires(self):
        return self.expires_at is None


def read_claims(token, what="refresh_token"):
    """Claims of a refresh JWT, read without checking its signature (only DPA holds the key).

    Raises ValueError with a message naming `what`, never the token.
    """
    if not isinstance(token, str) or not token.strip():
        raise ValueError("%s is empty" % what)
    parts = token.strip().split(".")
    if len(parts) != 3 or not all(_B64URL_RE.match(part) for part in parts):
        raise ValueError("%s is not a JWT: DPA's refresh tokens are three base64url parts separated by dots (eyJhbGciOiJIUzI1NiJ9....), "
                         "copied from %s" % (what, MANAGEMENT_PAGE))
    header = _json_part(parts[0], what, "header")
    payload = _json_part(parts[1], what, "payload")
    if header.get("alg") in (None, "none"):
        raise ValueError("%s is not a signed JWT (its header has no algorithm); DPA signs refresh tokens with HS256" % what)
    name = payload.get("sub")
    if not isinstance(name, str) or not name:
        raise ValueError("%s has no sub claim, which holds the token's name in DPA" % what)
    return Claims(name, _time_claim(payload, "iat", what), _time_claim(payload, "exp", what))


def _json_part(part, what, label):
    try:
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode("utf-8"))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValueError("%s is not a JWT: its %s is not base64url-encoded JSON" % (what, label))
    if not isinstance(value, dict):
        raise ValueError("%s is not a JWT: its %s is not a JSON object" % (what, label))
    return value


def _time_claim(payload, claim, what):
    value = payload.get(claim)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("%s: the %s claim is not a number of seconds since 1970" % (what, claim))
    try:
        return datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise ValueError("%s: the %s claim is out of range" % (what, claim))


def threshold_seconds(value, name):
    """warn_before / fail_before: a duration (30d, 72h) or empty for none."""
    if value in (None, ""):
        return None
    if str(value).strip().endswith("%"):
        raise ValueError("%s must be a duration such as 30d or 72h; a refresh token's lifetime is not always known" % name)
    return validators.duration(value, name)


# ---------------------------------------------------------------- expiry

class Expiry:
    """Where a refresh token stands against warn_before and fail_before.

    status: "never" (no exp claim), "ok", "warn", "fail" or "expired"; text says it in words.
    """

    def __init__(self, claims, now, warn_before=None, fail_before=None, label=None):
        label = label or "SolarWinds DPA refresh token '%s'" % claims.name
        advice = ("create a new refresh token in DPA (%s) and adopt it with state: rotated" % MANAGEMENT_PAGE)
        if claims.never_expires:
            self.status, self.days_left, self.text = "never", None, "%s never expires" % label
            return
        left = (claims.expires_at - now).total_seconds()
        self.days_left = int(left // 86400)
        when = iso(claims.expires_at)
        # The one due decision of the collection, with the threshold as its rotate_before.
        if left <= 0:
            self.status, self.text = "expired", "%s expired at %s; %s" % (label, when, advice)
        elif fail_before and Policy(rotate_before=fail_before).due(now, claims.issued_at, claims.expires_at)[0]:
            self.status = "fail"
            self.text = "%s expires at %s, in %s (fail_before: %s): %s" % (label, when, _days(left), _days(fail_before), advice)
        elif warn_before and Policy(rotate_before=warn_before).due(now, claims.issued_at, claims.expires_at)[0]:
            self.status = "warn"
            self.text = "%s expires at %s, in %s (warn_before: %s): %s" % (label, when, _days(left), _days(warn_before), advice)
        else:
            self.status, self.text = "ok", "%s expires at %s, in %s" % (label, when, _days(left))


def _days(seconds):
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count = int(seconds // size)
        if count >= 1 or unit == "second":
            return "%d %s%s" % (count, unit, "" if count == 1 else "s")


# ---------------------------------------------------------------- the API

class AccessToken:
    """An access token from the exchange; `value` is a secret."""

    def __init__(self, value, token_type, expires_at):
        self.value = value
        self.token_type = token_type
        self.expires_at = expires_at


class Probe:
    """What GET /databases/monitor-information said to an access token."""

    def __init__(self, status, works, authorized, monitor_count=None):
        self.status = status
        self.works = works              # the token authenticates
        self.authorized = authorized    # ... and may read monitor information (403: it may not)
        self.monitor_count = monitor_count


def rejected(exc):
    """Whether an ApiError of the exchange means the refresh token itself is bad, expired or deleted.

    DPA's answer is undocumented: Spring Security OAuth2 gives 400 or 401 invalid_grant (dpa.md 2.6).
    """
    return isinstance(exc, ApiError) and exc.status in (400, 401)


class DpaClient:
    """The two calls of the refresh-token life, over the shared HttpClient; each names its step."""

    def __init__(self, http, now=utcnow):
        self.http = http
        self.now = now

    def exchange(self, refresh_token, step):
        """POST the refresh grant; returns an AccessToken. ApiError (see rejected()) when refused.

        A repeated exchange only issues one more access token, so the HTTP layer may retry it. It
        changes nothing in DPA: the refresh token stays as it was (dpa.md), so it needs no intent.
        """
        self.http.redactor.add(refresh_token)
        response = self.http.request(step, "POST", TOKEN_PATH, data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                                     headers={"Accept": "application/json"}, idempotent=True, changes=False)
        try:
            body = response.json()
        except ValueError:
            body = None
        value = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise ApiError(PRODUCT, step, "POST", self.http.url(TOKEN_PATH), status=response.status_code,
                           message="the answer has no access_token")
        self.http.redactor.add(value)
        token_type = body.get("token_type") if isinstance(body.get("token_type"), str) and body.get("token_type") else "bearer"
        return AccessToken(value, token_type, self.now() + datetime.timedelta(seconds=_lifetime(body.get("expires_in"))))

    def probe(self, access, step="probe access token"):
        """GET /databases/monitor-information with the access token (dpa.md 2.3's "token works" probe)."""
        response = self.http.request(step, "GET", PROBE_PATH, bearer=access.value, scheme=access.token_type,
                                     headers={"Accept": "application/json"}, ok=(200, 401, 403))
        if response.status_code == 200:
            try:
                data = response.json().get("data")
            except (ValueError, AttributeError):
                data = None
            return Probe(200, True, True, len(data) if isinstance(data, list) else None)
        code, _message = default_error_parser(response)
        # 401, or a 403 that says invalid_token (dpa.md 2.9 q1): the token is dead. Another 403: alive, not allowed.
        dead = response.status_code == 401 or code == "invalid_token"
        return Probe(response.status_code, not dead, False)


def _lifetime(expires_in):
    if isinstance(expires_in, bool):
        return DEFAULT_ACCESS_LIFETIME
    try:
        seconds = float(expires_in)
    except (TypeError, ValueError):
        return DEFAULT_ACCESS_LIFETIME
    return seconds if seconds > 0 else DEFAULT_ACCESS_LIFETIME


# ---------------------------------------------------------------- the access-token cache in the store record

def cached_access_token(record):
    """The access token cached in a store record, or None."""
    record = record or {}
    expires_at = parse_time(record.get("access_expires_at"))
    if not record.get("access_token") or expires_at is None:
        return None
    return AccessToken(record["access_token"], record.get("access_token_type") or "bearer", expires_at)


def cache_fields(access):
    """The record fields that cache an access token with its expiry."""
    return {"access_token": access.value, "access_token_type": access.token_type, "access_expires_at": iso(access.expires_at)}


class AccessTokens:
    """The access token of a stored refresh token: the cached one while it is fresh and the probe accepts
    it, else a new exchange. The caller writes cache_fields() when `renewed`, with check-and-set."""

    def __init__(self, client, renew_before=60.0, probe=True):
        self.client = client
        self.renew_before = renew_before
        self.probe = probe

    def current(self, record, step):
        """(AccessToken, renewed, how, probe): how is "probe" (cached and accepted; probe is its Probe),
        "cache" (cached, not probed) or "exchange". ApiError when the exchange fails."""
        cached = cached_access_token(record)
        if cached is not None:
            self.client.http.redactor.add(cached.value)
            left = (cached.expires_at - self.client.now()).total_seconds()
            # A server reboot kills access tokens before their time: the probe finds out (401).
            if left > self.renew_before:
                if not self.probe:
                    return cached, False, "cache", None
                probe = self.client.probe(cached)
                if probe.works:
                    return cached, False, "probe", probe
        return self.client.exchange(record["secret"], step), True, "exchange", None
