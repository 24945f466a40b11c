# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open Payments (GNAP) authorization server client: grants, continuation, rotation, revocation, cancel.

Every call to the authorization server is signed (RFC 9421, see http_signatures.py). Token
management sends `Authorization: GNAP <access token>`, continuation and cancel send the
continuation token; a grant request sends none. Nothing here is retried by the HTTP layer except
the GETs (the wallet address, the probe): a grant, a continuation and a rotation each mint a secret,
and a cancel or revoke that is repeated is told apart by its answer (401) instead.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import re

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover
    from urlparse import urlsplit  # type: ignore

from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils import validators

PRODUCT = "Open Payments"
URL_HINT = "the authorization server's grant endpoint (the wallet address's authServer), an http or https URL"

# openpayments.md 2.4 / auth-server.yaml access-*: actions per type.
ACTIONS = {
    "incoming-payment": ("create", "complete", "read", "read-all", "list", "list-all"),
    "outgoing-payment": ("create", "read", "read-all", "list", "list-all"),
    "quote": ("create", "read", "read-all"),
}
MAX_ACCESS_ITEMS = 3
RECEIVER_RE = re.compile(r"^(https|http)://(.+)/incoming-payments/(.+)$")
INTERVAL_RE = re.compile(r"^R(-?\d+)?/[^/]+(/[^/]+)?$")
UINT64_MAX = 2 ** 64 - 1


def validate_access(access, where="access"):
    """Check an access list as the authorization server's OpenAPI file does; return it normalised.

    Raises ValueError naming the item and the rule. Nothing is sent before this passes.
    """
    if not isinstance(access, list) or not access:
        raise ValueError("%s must list at least one access item (incoming-payment, outgoing-payment or quote)" % where)
    if len(access) > MAX_ACCESS_ITEMS:
        raise ValueError("%s lists %d items; an Open Payments grant takes at most %d (one per resource type, or split it "
                         "into several grants)" % (where, len(access), MAX_ACCESS_ITEMS))
    normalised = []
    for index, item in enumerate(access):
        at = "%s[%d]" % (where, index)
        if not isinstance(item, dict):
            raise ValueError("%s must be a dictionary with type and actions, got %s (%s)" % (at, validators.kind_of(item), validators.shown(item)))
        unknown = sorted(str(key) for key in set(item) - {"type", "actions", "identifier", "limits"})
        if unknown:
            raise ValueError("%s has unknown key(s) %s; an access item takes type, actions, identifier and limits"
                             % (at, validators.cut(", ".join(unknown))))
        kind = item.get("type")
        if not isinstance(kind, str) or kind not in ACTIONS:
            raise ValueError("%s: type must be one of %s, not %s" % (at, ", ".join(sorted(ACTIONS)), validators.shown(kind)))
        actions = item.get("actions")
        if not isinstance(actions, list) or not actions:
            raise ValueError("%s: actions must list what the client may do (for %s: %s)" % (at, kind, ", ".join(ACTIONS[kind])))
        bad = [a for a in actions if not isinstance(a, str) or a not in ACTIONS[kind]]
        if bad:
            raise ValueError("%s: %s is not an action of %s; use %s" % (at, validators.cut(", ".join(map(str, bad))), kind, ", ".join(ACTIONS[kind])))
        if len(set(actions)) != len(actions):
            raise ValueError("%s: actions must not repeat" % at)
        out = {"type": kind, "actions": list(actions)}
        identifier = item.get("identifier")
        if identifier is not None:
            out["identifier"] = validators.url(identifier, "%s: identifier" % at, what="a wallet address URL")
        elif kind == "outgoing-payment":
            raise ValueError("%s: an outgoing-payment grant needs identifier, the wallet address it pays from" % at)
        limits = item.get("limits")
        if limits is not None:
            if kind != "outgoing-payment":
                raise ValueError("%s: limits apply to outgoing-payment grants only" % at)
            out["limits"] = _validate_limits(limits, at)
        normalised.append(out)
    keys = [_canonical(i) for i in normalised]
    if len(set(keys)) != len(keys):
        raise ValueError("%s lists the same item twice" % where)
    return normalised


def _canonical(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _canonical(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_canonical(v) for v in value)
    return value


def _validate_limits(limits, at):
    if not isinstance(limits, dict):
        raise ValueError("%s: limits must be a dictionary" % at)
    unknown = sorted(str(key) for key in set(limits) - {"receiver", "interval", "debitAmount", "receiveAmount"})
    if unknown:
        raise ValueError("%s: limits has unknown key(s) %s; it takes receiver, interval, debitAmount or receiveAmount"
                         % (at, validators.cut(", ".join(unknown))))
    if "debitAmount" in limits and "receiveAmount" in limits:
        raise ValueError("%s: limits takes debitAmount or receiveAmount, not both" % at)
    out = {}
    if limits.get("receiver") is not None:
        if not isinstance(limits["receiver"], str) or not RECEIVER_RE.match(limits["receiver"]):
            raise ValueError("%s: limits.receiver must be an incoming payment URL (https://.../incoming-payments/...)" % at)
        out["receiver"] = limits["receiver"]
    if limits.get("interval") is not None:
        if not isinstance(limits["interval"], str) or not INTERVAL_RE.match(limits["interval"]):
            raise ValueError("%s: limits.interval must be an ISO 8601 repeating interval such as R12/2026-01-01T00:00:00Z/P1M" % at)
        out["interval"] = limits["interval"]
    for name in ("debitAmount", "receiveAmount"):
        amount = limits.get(name)
        if amount is None:
            continue
        if not isinstance(amount, dict) or set(amount) != {"value", "assetCode", "assetScale"}:
            raise ValueError("%s: limits.%s must have value, assetCode and assetScale" % (at, name))
        value = str(amount["value"]) if not isinstance(amount["value"], bool) else ""
        if not value.isdigit() or int(value) > UINT64_MAX:
            raise ValueError("%s: limits.%s.value must be an unsigned 64-bit integer (a string such as \"500\")" % (at, name))
        scale = amount["assetScale"]
        if isinstance(scale, bool) or not isinstance(scale, int) or not 0 <= scale <= 255:
            raise ValueError("%s: limits.%s.assetScale must be an integer from 0 to 255" % (at, name))
        if not isinstance(amount["assetCode"], str) or not amount["assetCode"]:
            raise ValueError("%s: limits.%s.assetCode must be a currency code such as USD" % (at, name))
        out[name] = {"value": value, "assetCode": amount["assetCode"], "assetScale": scale}
    return out


def needs_interaction(access):
    """Outgoing payments always need the resource owner's consent (openpayments.md 2.6)."""
    return any(item["type"] == "outgoing-payment" for item in access)


def interaction_hash(client_nonce, as_nonce, interact_ref, grant_url):
    """The hash the AS puts on the finish redirect (openpayments.md 2.4), without padding."""
    data = "\n".join((client_nonce, as_nonce, interact_ref, grant_url)).encode("utf-8")
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii").rstrip("=")


def signature_refused(exc):
    """A 400/401 about the signature or the client key, not about the token (openpayments.md 2.5)."""
    text = (exc.message or "").lower()
    return exc.status in (400, 401) and ("signature" in text or "could not determine client" in text)


def token_dead(exc):
    """401 on a manage URL: the AS has no live token there (revoked, rotated, or its grant cancelled)."""
    return exc.status == 401 and exc.code in ("invalid_client", "invalid_token", None) and not signature_refused(exc)


def grant_gone(exc):
    """401 invalid_continuation or 404 on a continuation URI: the grant is revoked or unknown."""
    return (exc.status == 404 or (exc.status == 401 and exc.code in ("invalid_continuation", "invalid_request", None))) \
        and not signature_refused(exc)


def management_id(manage_url):
    """The last path segment of a manage URL: the token's name in results (the URL holds no secret)."""
    return urlsplit(manage_url or "").path.rstrip("/").rsplit("/", 1)[-1] or None


class OpenPaymentsClient:
    """Signed calls over the shared HttpClient; each names its step for error messages."""

    def __init__(self, http, signer, secret=None):
        self.http = http
        self.signer = signer
        self.secret = secret or (lambda value: value)   # registers every secret as soon as it is seen

    def _json(self, response, step, url):
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(PRODUCT, step, response.request.method, url, status=response.status_code,
                           message="the answer is not a JSON object")
        self._register(body)
        return body

    def _register(self, body):
        token = body.get("access_token")
        if isinstance(token, dict) and token.get("value"):
            self.secret(token["value"])
        cont = body.get("continue")
        if isinstance(cont, dict) and isinstance(cont.get("access_token"), dict) and cont["access_token"].get("value"):
            self.secret(cont["access_token"]["value"])

    def request_grant(self, url, body):
        """POST the grant request. Returns the grant (access_token + continue) or the pending grant (interact + continue)."""
        step = "grant request"
        response = self.http.request(step, "POST", url, json=body, signer=self.signer, idempotent=False)
        grant = self._json(response, step, url)
        if not isinstance(grant.get("continue"), dict) or not ("access_token" in grant or "interact" in grant):
            raise ApiError(PRODUCT, step, "POST", url, status=response.status_code,
                           message="the answer has neither an access token nor interaction instructions")
        return grant

    def continue_grant(self, uri, continue_token, interact_ref=None):
        """POST the continuation: with interact_ref after the redirect, or with no body to poll."""
        step = "continue grant" if interact_ref else "poll grant"
        body = {"interact_ref": interact_ref} if interact_ref else None
        response = self.http.request(step, "POST", uri, json=body, bearer=continue_token, scheme="GNAP", signer=self.signer,
                                     idempotent=False)
        return self._json(response, step, uri)

    def cancel_grant(self, uri, continue_token):
        """DELETE the continuation URI: the grant and all its tokens die. False when it was gone already."""
        try:
            self.http.request("cancel grant", "DELETE", uri, bearer=continue_token, scheme="GNAP", signer=self.signer,
                              idempotent=False, ok=(200, 204))
        except ApiError as exc:
            if grant_gone(exc):
                return False
            raise
        return True

    def rotate_token(self, manage_url, token):
        """POST the manage URL. Returns the new access_token object (new value, new manage URL)."""
        step = "rotate token"
        response = self.http.request(step, "POST", manage_url, bearer=token, scheme="GNAP", signer=self.signer, idempotent=False)
        body = self._json(response, step, manage_url)
        new = body.get("access_token")
        if not isinstance(new, dict) or not new.get("value") or not new.get("manage"):
            raise ApiError(PRODUCT, step, "POST", manage_url, status=response.status_code,
                           message="the answer has no access_token with value and manage")
        return new

    def revoke_token(self, manage_url, token):
        """DELETE the manage URL. False when the AS answers 401 invalid_client: revoked (or rotated) already."""
        try:
            self.http.request("revoke token", "DELETE", manage_url, bearer=token, scheme="GNAP", signer=self.signer,
                              idempotent=False, ok=(200, 204))
        except ApiError as exc:
            if token_dead(exc):
                return False
            raise
        return True

    def wallet_address(self, url):
        """GET a wallet address (public, unsigned): {id, authServer, resourceServer, ...}."""
        step = "read wallet address"
        response = self.http.request(step, "GET", url, headers={"Accept": "application/json"})
        return self._json(response, step, url)

    def probe(self, url, token):
        """Status of a signed GET with the token at a resource server URL: whether the token works.

        401 means the token is dead (revoked, rotated, expired, or its grant cancelled); 403 and 404 mean it is
        alive (its access does not cover the request, or there is nothing to see)."""
        response = self.http.request("verify", "GET", url, bearer=token, scheme="GNAP", signer=self.signer,
                                     ok=(200, 201, 204, 401, 403, 404))
        return response.status_code
