# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Styra DAS API client: tokens (/v1/tokens) and Authz v2 role bindings (/v2/authz/rolebindings)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover
    from urllib import quote  # type: ignore

from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils.rotation import iso, parse_time
from ansible_collections.tokenops.rotation.plugins.module_utils.validators import kind_of, shown

PRODUCT = "Styra DAS"

# Go time.ParseDuration syntax, which DAS ttl values follow (das.md 1.4: "24h", "720h").
TTL_RE = re.compile(r"^(\d+(\.\d+)?(ns|us|\u00b5s|ms|s|m|h))+$")
# Workspace ids ("application-token", "alice/test") and system ids ("systems/<sid>/<name>").
TOKEN_ID_RE = re.compile(r"^[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*$")
SYSTEM_ID_RE = re.compile(r"^systems/([^/]+)/.+$")
GO_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


# The longest duration Go's time.ParseDuration takes (int64 nanoseconds).
MAX_TTL_SECONDS = (2 ** 63 - 1) / 1e9


def validate_token_id(token_id, name="id"):
    if token_id is None or token_id == "":
        raise ValueError("%s: a DAS token id is required" % name)
    if not isinstance(token_id, str):
        raise ValueError("%s must be a DAS token id (a string), got %s (%s)" % (name, kind_of(token_id), shown(token_id)))
    if not TOKEN_ID_RE.match(token_id) or set(token_id.split("/")) & {".", ".."}:
        raise ValueError("%s: DAS token id %s is malformed: use letters, digits, '.', '_', '~' and '-' and '/' between non-empty parts, "
                         "for example application-token or systems/<system id>/<name>" % (name, shown(token_id)))
    if token_id.startswith("systems/") and not SYSTEM_ID_RE.match(token_id):
        raise ValueError("%s: DAS system token id %s must be systems/<system id>/<name>" % (name, shown(token_id)))


def validate_ttl(ttl, name="ttl"):
    if ttl is None:
        return
    if not isinstance(ttl, str) or not TTL_RE.match(ttl):
        raise ValueError("%s: DAS ttl %s is not a Go duration such as 24h, 720h or 90m (DAS has no 'd' unit)" % (name, shown(ttl)))
    seconds = ttl_seconds(ttl)
    if seconds <= 0:
        raise ValueError("%s: DAS ttl %s must be longer than 0" % (name, shown(ttl)))
    if seconds > MAX_TTL_SECONDS:
        raise ValueError("%s: DAS ttl %s is longer than DAS takes (about 292 years)" % (name, shown(ttl)))


def ttl_seconds(ttl):
    total = 0.0
    for amount, _frac, unit in re.findall(r"(\d+(\.\d+)?)(ns|us|\u00b5s|ms|s|m|h)", ttl):
        total += float(amount) * GO_UNITS[unit]
    return total


def system_of(token_id):
    match = SYSTEM_ID_RE.match(token_id)
    return match.group(1) if match else None


class DasClient:
    """Thin calls over the shared HttpClient; each names its step for error messages."""

    def __init__(self, http):
        self.http = http

    def _path(self, token_id):
        # DAS takes the slashes of a system token id raw (das.md 1.2): do not percent-encode them.
        return "/v1/tokens/" + token_id

    def get_token(self, token_id, bearer):
        """The token's metadata, or None when absent (404)."""
        try:
            response = self.http.request("read token %s" % token_id, "GET", self._path(token_id), bearer=bearer)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return response.json().get("result")

    def list_tokens(self, bearer):
        response = self.http.request("list tokens", "GET", "/v1/tokens", bearer=bearer)
        return response.json().get("result") or []

    def put_token(self, token_id, body, bearer, step, update=False):
        """PUT the full body. Returns the new secret (None when DAS returned none).

        Only an update of an existing token without regenerate (update=True) is safe to repeat:
        a create or a regenerate issues a secret, and a repeat would make the first one unobtainable.
        """
        idempotent = bool(update) and not body.get("regenerate")
        response = self.http.request(step, "PUT", self._path(token_id), json=body, bearer=bearer,
                                     idempotent=idempotent)
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        secret = payload.get("result") or None
        if secret is not None and not isinstance(secret, str):
            secret = None
        return secret

    def delete_token(self, token_id, bearer):
        """True when deleted, False when it was already gone (404, das.md 1.6 INF)."""
        try:
            self.http.request("revoke token %s" % token_id, "DELETE", self._path(token_id), bearer=bearer, idempotent=True)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def probe(self, path, bearer, method="GET"):
        """Status of a request made with `bearer`: verifies a secret without trusting it."""
        response = self.http.request("verify", method, path, bearer=bearer, ok=(200, 204, 401, 403, 404))
        return response.status_code

    # -- role bindings (Authz v2)

    def bindings_of(self, token_id, bearer):
        response = self.http.request("list role bindings of %s" % token_id, "GET",
                                     "/v2/authz/rolebindings?subject_kind=token&subject_id=%s" % quote(token_id, safe=""),
                                     bearer=bearer)
        return [b for b in response.json().get("rolebindings") or []
                if any(s.get("kind") == "token" and s.get("id") == token_id for s in b.get("subjects") or [])]

    def find_binding(self, role_id, kind, resource_id, bearer):
        response = self.http.request(
            "find role binding %s on %s %s" % (role_id, kind, resource_id), "GET",
            "/v2/authz/rolebindings?role_id=%s&resource_kind=%s&resource_id=%s" % (_quote(role_id), _quote(kind), _quote(resource_id)),
            bearer=bearer)
        for binding in response.json().get("rolebindings") or []:
            rf = binding.get("resource_filter") or {}
            if binding.get("role_id") == role_id and rf.get("kind") == kind and rf.get("id") == resource_id:
                return binding
        return None

    def add_binding(self, token_id, role_id, kind, resource_id, bearer):
        subject = {"kind": "token", "id": token_id}
        existing = self.find_binding(role_id, kind, resource_id, bearer)
        step = "bind role %s on %s %s to %s" % (role_id, kind, resource_id, token_id)
        if existing:
            # PUT .../subjects merges (das.md 1.9 q8): other subjects of the binding stay.
            self.http.request(step, "PUT", "/v2/authz/rolebindings/%s/subjects" % existing["id"],
                              json={"subjects": [subject]}, bearer=bearer, idempotent=True)
        else:
            body = {"resource_filter": {"kind": kind, "id": resource_id}, "role_id": role_id, "subjects": [subject]}
            self.http.request(step, "POST", "/v2/authz/rolebindings", json=body, bearer=bearer,
                              headers={"If-None-Match": "*"})

    def remove_binding(self, token_id, binding, bearer):
        subjects = binding.get("subjects") or []
        others = [s for s in subjects if not (s.get("kind") == "token" and s.get("id") == token_id)]
        step = "unbind role %s from %s" % (binding.get("role_id"), token_id)
        if others:
            self.http.request(step, "DELETE", "/v2/authz/rolebindings/%s/subjects" % binding["id"],
                              json={"subjects": [{"kind": "token", "id": token_id}]}, bearer=bearer, idempotent=True)
        else:
            self.http.request(step, "DELETE", "/v2/authz/rolebindings/%s" % binding["id"], bearer=bearer,
                              headers={"If-Match": "*"}, idempotent=True)


def binding_key(binding):
    rf = binding.get("resource_filter") or {}
    return (binding.get("role_id"), rf.get("kind"), rf.get("id"))


def _quote(value):
    return quote(str(value), safe="")


# Patterns that let a token call any path, as an empty list does (das.md 1.4.5).
MATCH_EVERYTHING = frozenset((".*", "^.*", "^.*$", ".*$", "/.*", "^/.*", "^/.*$", "^/", "^"))


def audit_findings(remote, managed, max_lifetime, now):
    """The tenant audit: each listed token (GET /v1/tokens) that nobody manages, allows every path or practically never
    expires, by id, with its findings. `managed` is the set of ids the inventory host keeps; max_lifetime in seconds."""
    found = []
    for token_id in sorted(remote):
        token = remote[token_id]
        expires = parse_time(token.get("expires"))
        patterns = token.get("allow_path_patterns") or []
        allows_all = not patterns or any(str(p).strip() in MATCH_EVERYTHING for p in patterns)
        never = expires is None or (expires - now).total_seconds() > max_lifetime
        is_managed = token_id in managed
        findings = [name for name, hit in (("unmanaged", not is_managed), ("allows_all_paths", allows_all), ("never_expires", never)) if hit]
        if findings:
            found.append(dict(id=token.get("id"), description=token.get("description"), expires_at=iso(expires), managed=is_managed,
                              allows_all_paths=allows_all, never_expires=never, findings=findings))
    return found
