"""Open Payments simulator: a wallet-address server, the GNAP authorization server and a toy resource server.

Tuned to ../shared/api/openpayments.md (2.1-2.9, mirroring Rafiki's `packages/auth`) and the vendor
OpenAPI files, never to the module. One loopback server holds all three:

    GET  /{wallet}                      wallet address {id, publicName, assetCode, assetScale, authServer, resourceServer}
    GET  /{wallet}/jwks.json            the wallet's public keys (the client's keys live here)
    POST /auth/{tenant}                 grant request (signed; key from the body's `client`)
    POST /auth/continue/{id}            continuation: {"interact_ref": ...}, or no body to poll
    DELETE /auth/continue/{id}          cancel the grant and all its tokens
    POST /auth/token/{managementId}     rotate: the old token and manage URL die at once
    DELETE /auth/token/{managementId}   revoke
    GET  /auth/interact/{id}/{nonce}    where the redirect sends the resource owner
    POST /_sim/approve/{interactionId}  test-only: the resource owner approves (or {"deny": true}) the interaction
    ANY  /rs/...                        toy resource server: 200 for a live token with a valid signature, else 401

Signatures are verified as Rafiki does (section 2.3): label sig1, lower-case components, @method,
@target-uri, authorization iff the request has one, content-digest verified over the compact
re-serialised JSON, pure Ed25519, no freshness check. The switches (sections 2.3, 2.6, 2.10):

    strict                        RFC 9635 behaviour: `created` within max_skew_seconds, content-digest required
                                  with any body, and the Authorization token must be the managed token
    max_skew_seconds              the freshness window of `strict`
    access_token_expiry           seconds a token lives (Rafiki ACCESS_TOKEN_EXPIRY_SECONDS, 600)
    wait                          continuation wait seconds (Rafiki WAIT_SECONDS, 5)
    incoming_payment_interaction  incoming-payment grants need interaction (Rafiki INCOMING_PAYMENT_INTERACTION)
    quote_interaction             quote grants need interaction (QUOTE_INTERACTION)
    list_all_interaction          list-all needs interaction (LIST_ALL_ACCESS_INTERACTION)
    rotate_expired                whether an expired token may be rotated (Rafiki: yes; other servers: q1, unknown)
    finish_hash_padding           the interaction hash in padded base64 (Rafiki) or without padding (the docs, q4)
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import secrets
import urllib.parse
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.simulators.base import HttpError, Request, SimServer

DEFAULT_TENANT = "op"
RESERVED = ("auth", "rs", "_sim")

SWITCH_DEFAULTS = {
    "strict": False,
    "max_skew_seconds": 60,
    "access_token_expiry": 600,
    "wait": 5,
    "incoming_payment_interaction": False,
    "quote_interaction": False,
    "list_all_interaction": True,
    "rotate_expired": True,
    "finish_hash_padding": True,
}

ACTIONS = {
    "incoming-payment": ("create", "complete", "read", "read-all", "list", "list-all"),
    "outgoing-payment": ("create", "read", "read-all", "list", "list-all"),
    "quote": ("create", "read", "read-all"),
}
RECEIVER_RE = re.compile(r"^(https|http)://(.+)/incoming-payments/(.+)$")


def gnap_error(status: int, code: str | None, description: str) -> HttpError:
    """GNAP error body {"error": {"code", "description"}}; request-validation errors carry no code (2.5)."""
    error = {"description": description}
    if code:
        error["code"] = code
    return HttpError(status, description, body={"error": error})


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwk_public_key(jwk: dict) -> ed25519.Ed25519PublicKey:
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not jwk.get("x"):
        raise ValueError("not an Ed25519 JWK")
    return ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))


# ---- signature verification, as Rafiki's middleware and http-signature-utils' validation.ts do it ----

def sig_input_components(sig_input: str) -> list[str] | None:
    """Text after `sig1=` up to the first `;`, split on spaces, quotes and parentheses stripped."""
    if "sig1=" not in sig_input:
        return None
    inner = sig_input.split("sig1=", 1)[1].split(";", 1)[0]
    return [re.sub(r'[()"]', "", part) for part in inner.split(" ")]


def sig_param(sig_input: str, name: str) -> str | None:
    for part in sig_input.split(";")[1:]:
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            return value.strip().strip('"')
    return None


def reserialised(body: bytes) -> bytes:
    """JSON.stringify(JSON.parse(body)): what Rafiki digests."""
    return json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def verify_content_digest(body: bytes, header: str) -> bool:
    """Every digest in the header must match; sha-256 and sha-512 are known (httpbis-digest-headers)."""
    algorithms = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
    found = False
    for member in header.split(","):
        name, sep, value = member.strip().partition("=")
        if not sep or name not in algorithms or not (value.startswith(":") and value.endswith(":") and len(value) > 2):
            return False
        if base64.b64encode(algorithms[name](body).digest()).decode() != value[1:-1]:
            return False
        found = True
    return found


def signature_headers_valid(method: str, headers: dict, body: bytes, strict: bool) -> bool:
    """validateSignatureHeaders: the component rules, and the digest when content-digest is covered."""
    sig, sig_input = headers.get("signature"), headers.get("signature-input")
    if not sig or not sig_input:
        return False
    components = sig_input_components(sig_input)
    if not components or any(c != c.lower() for c in components):
        return False
    if "@method" not in components or "@target-uri" not in components:
        return False
    if headers.get("authorization") and "authorization" not in components:
        return False
    if "content-digest" in components:
        if not (headers.get("content-digest") and headers.get("content-length") and headers.get("content-type") and body):
            return False
        try:
            if not verify_content_digest(reserialised(body), headers["content-digest"]):
                return False
        except ValueError:
            return False
    elif strict and body:
        return False        # RFC 9635 / the OP spec: a body must be covered by content-digest
    return True


def signature_base(method: str, url: str, headers: dict, sig_input: str) -> str | None:
    lines = []
    for component in sig_input_components(sig_input) or []:
        if component == "@method":
            lines.append(f'"@method": {method}')
        elif component == "@target-uri":
            lines.append(f'"@target-uri": {url}')
        else:
            lines.append(f'"{component}": {headers.get(component)}')
    lines.append('"@signature-params": ' + sig_input.replace("sig1=", "", 1))
    return "\n".join(lines)


def signature_valid(jwk: dict, method: str, url: str, headers: dict) -> bool:
    sig = headers.get("signature", "")
    raw = sig.replace("sig1=", "", 1).strip(":")
    try:
        signature = base64.b64decode(raw, validate=False)
        jwk_public_key(jwk).verify(signature, signature_base(method, url, headers, headers["signature-input"]).encode("utf-8"))
    except (InvalidSignature, ValueError, KeyError):
        return False
    return True


class OpenPaymentsSimulator(SimServer):
    name = "openpayments"

    def __init__(self, clock=None, tls=False, state_file=None, tls_dir=None, tenant=DEFAULT_TENANT, **switches):
        super().__init__(clock=clock, tls=tls, state_file=state_file, tls_dir=tls_dir)
        unknown = set(switches) - set(SWITCH_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown OpenPaymentsSimulator switches: {sorted(unknown)}")
        for name, default in SWITCH_DEFAULTS.items():
            setattr(self, name, copy.deepcopy(switches.get(name, default)))
        self.tenant = tenant
        self.wallets: dict[str, dict] = {}
        self.grants: dict[str, dict] = {}
        self.interactions: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}          # managementId -> token
        self.demo_client: dict = {}                # the CLI's demo client identity (key pair), kept across restarts
        self.rejections: list[str] = []            # why signed requests were refused, newest last

        self.route("POST", r"^/_sim/approve/(?P<id>[^/]+)$", self._approve)
        self.route("GET", r"^/auth/interact/(?P<id>[^/]+)/(?P<nonce>[^/]+)$", self._interact)
        self.route("POST", r"^/auth/continue/(?P<id>[^/]+)$", self._continue)
        self.route("DELETE", r"^/auth/continue/(?P<id>[^/]+)$", self._cancel)
        self.route("POST", r"^/auth/token/(?P<id>[^/]+)$", self._rotate)
        self.route("DELETE", r"^/auth/token/(?P<id>[^/]+)$", self._revoke)
        self.route("POST", r"^/auth/(?P<tenant>[^/]+)$", self._grant)
        for method in ("GET", "POST"):
            self.route(method, r"^/rs(?P<rest>/.*)?$", self._resource)
        self.route("GET", r"^/(?P<wallet>[^/]+)/jwks\.json$", self._jwks)
        self.route("GET", r"^/(?P<wallet>[^/]+)$", self._wallet)

    # ---- addresses -----------------------------------------------------------------------------

    @property
    def auth_server(self) -> str:
        return f"{self.base_url}/auth"

    @property
    def grant_url(self) -> str:
        """The `authServer` of every wallet address here: {AS}/{tenant}."""
        return f"{self.auth_server}/{self.tenant}"

    def wallet_url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    # ---- seeding and inspection (tests and the CLI) --------------------------------------------

    def add_wallet(self, name: str, public_name: str | None = None, keys: list[dict] | None = None,
                   asset_code: str = "USD", asset_scale: int = 2) -> str:
        if name in RESERVED or "/" in name:
            raise ValueError(f"wallet name {name!r} is reserved")
        with self.lock:
            self.wallets[name] = {"publicName": public_name, "assetCode": asset_code, "assetScale": asset_scale,
                                  "keys": copy.deepcopy(keys or [])}
            self.save_state()
        return self.wallet_url(name)

    def token_by_value(self, value: str) -> dict | None:
        with self.lock:
            return next((t for t in self.tokens.values() if t["value"] == value), None)

    def token_works(self, value: str) -> bool:
        """Whether the resource server would accept this token now."""
        with self.lock:
            token = self.token_by_value(value)
            return bool(token) and self._token_live(token)

    def grant_of(self, continue_uri: str) -> dict | None:
        continue_id = continue_uri.rstrip("/").rsplit("/", 1)[-1]
        with self.lock:
            return next((copy.deepcopy(g) for g in self.grants.values() if g["continue_id"] == continue_id), None)

    def live_tokens(self) -> list[dict]:
        with self.lock:
            return [copy.deepcopy(t) for t in self.tokens.values() if self._token_live(t)]

    def approve(self, interaction_id: str, deny: bool = False) -> dict:
        """What the test-only approval endpoint does; returns {"interact_ref", "hash"?, "redirect"?}."""
        with self.lock:
            return self._do_approve(interaction_id, deny)

    # ---- state ---------------------------------------------------------------------------------

    def dump_state(self) -> dict:
        return {"wallets": self.wallets, "grants": self.grants, "interactions": self.interactions, "tokens": self.tokens,
                "demo_client": self.demo_client}

    def load_state(self, state: dict) -> None:
        self.wallets = state.get("wallets", {})
        self.grants = state.get("grants", {})
        self.interactions = state.get("interactions", {})
        self.tokens = state.get("tokens", {})
        self.demo_client = state.get("demo_client", {})

    def error_body(self, status, message):
        codes = {401: "invalid_client", 404: "invalid_request", 429: "too_fast"}
        return {"error": {"code": codes.get(status, "request_denied" if status >= 500 else "invalid_request"),
                          "description": message}}

    def _secret(self) -> str:
        # Rafiki: 10 random bytes as 20 upper-case hex characters.
        value = secrets.token_hex(10).upper()
        self.issued.add(value)
        return value

    # ---- the signature middleware ---------------------------------------------------------------

    def _url(self, req: Request) -> str:
        # Koa's ctx.href: protocol, the Host header, the raw request target.
        return f"{'https' if self.tls else 'http'}://{req.header('Host', '')}{req.target}"

    def _lower_headers(self, req: Request) -> dict:
        return {k.lower(): v for k, v in req.headers.items()}

    def _refuse(self, status: int, code: str, description: str, why: str) -> HttpError:
        self.rejections.append(why)
        return gnap_error(status, code, description)

    def _verify(self, req: Request, key_for) -> None:
        """Rafiki's order: headers, keyid, key lookup, signature; plus the strict checks."""
        headers = self._lower_headers(req)
        if not signature_headers_valid(req.method, headers, req.body, self.strict):
            raise self._refuse(401, "invalid_client", "invalid signature headers", "signature headers")
        sig_input = headers["signature-input"]
        key_id = sig_param(sig_input, "keyid")
        if not key_id:
            raise self._refuse(401, "invalid_client", "invalid signature input", "no keyid")
        if self.strict:
            created = sig_param(sig_input, "created")
            if not created or not created.isdigit() or abs(int(created) - self.clock.now()) > self.max_skew_seconds:
                raise self._refuse(401, "invalid_client", "invalid signature input", "created outside the window")
        jwk = key_for(key_id)
        if jwk is None:
            raise self._refuse(400, "invalid_client", "could not determine client", "unknown key")
        if not signature_valid(jwk, req.method, self._url(req), headers):
            raise self._refuse(401, "invalid_client", "invalid signature", "signature")

    def _wallet_key(self, wallet_address: str, key_id: str) -> dict | None:
        wallet = self._wallet_named(wallet_address)
        if wallet is None:
            return None
        return next((k for k in wallet["keys"] if k.get("kid") == key_id), None)

    def _wallet_named(self, wallet_address: str) -> dict | None:
        if not isinstance(wallet_address, str) or not wallet_address.startswith(self.base_url + "/"):
            return None
        return self.wallets.get(wallet_address[len(self.base_url) + 1:])

    def _grant_key(self, grant: dict):
        def lookup(key_id):
            if grant.get("jwk"):
                return grant["jwk"] if grant["jwk"].get("kid") == key_id else None
            return self._wallet_key(grant["client"], key_id)
        return lookup

    # ---- wallet-address server -----------------------------------------------------------------

    def _wallet(self, req: Request):
        name = req.params["wallet"]
        wallet = self.wallets.get(name)
        if wallet is None:
            raise HttpError(404, "wallet address not found", body={"error": {"description": "Not Found"}})
        body = {"id": self.wallet_url(name), "assetCode": wallet["assetCode"], "assetScale": wallet["assetScale"],
                "authServer": self.grant_url, "resourceServer": f"{self.base_url}/rs"}
        if wallet.get("publicName"):
            body["publicName"] = wallet["publicName"]
        return 200, body

    def _jwks(self, req: Request):
        wallet = self.wallets.get(req.params["wallet"])
        if wallet is None:
            raise HttpError(404, "wallet address not found", body={"error": {"description": "Not Found"}})
        return 200, {"keys": copy.deepcopy(wallet["keys"])}

    # ---- grants --------------------------------------------------------------------------------

    def _validate_access(self, access) -> None:
        """The OpenAPI request validation: errors without a `code` (section 2.5)."""
        if not isinstance(access, list) or not access:
            raise gnap_error(400, None, "access_token.access must be a non-empty array")
        if len(access) > 3:
            raise gnap_error(400, None, "access_token.access must NOT have more than 3 items")
        if len({json.dumps(a, sort_keys=True) for a in access}) != len(access):
            raise gnap_error(400, None, "access_token.access must NOT have duplicate items")
        for index, item in enumerate(access):
            where = f"access_token.access[{index}]"
            if not isinstance(item, dict) or item.get("type") not in ACTIONS:
                raise gnap_error(400, None, f"{where}.type must be one of {sorted(ACTIONS)}")
            allowed = {"type", "actions", "identifier"} | ({"limits"} if item["type"] == "outgoing-payment" else set())
            if set(item) - allowed:
                raise gnap_error(400, None, f"{where} must NOT have additional properties {sorted(set(item) - allowed)}")
            actions = item.get("actions")
            if not isinstance(actions, list) or len(set(actions)) != len(actions) or \
                    any(a not in ACTIONS[item["type"]] for a in actions):
                raise gnap_error(400, None, f"{where}.actions must be unique values of {list(ACTIONS[item['type']])}")
            if "identifier" in item and not isinstance(item["identifier"], str):
                raise gnap_error(400, None, f"{where}.identifier must be a string")
            if item["type"] == "outgoing-payment":
                if not item.get("identifier"):
                    raise gnap_error(400, None, f"{where} must have required property 'identifier'")
                self._validate_limits(item.get("limits"), where)

    def _validate_limits(self, limits, where: str) -> None:
        if limits is None:
            return
        if not isinstance(limits, dict) or set(limits) - {"receiver", "interval", "debitAmount", "receiveAmount"}:
            raise gnap_error(400, None, f"{where}.limits has unknown properties")
        if "debitAmount" in limits and "receiveAmount" in limits:
            raise gnap_error(400, None, f"{where}.limits may have debitAmount or receiveAmount, not both")
        if "receiver" in limits and not (isinstance(limits["receiver"], str) and RECEIVER_RE.match(limits["receiver"])):
            raise gnap_error(400, None, f"{where}.limits.receiver must be an incoming payment URL")
        for name in ("debitAmount", "receiveAmount"):
            amount = limits.get(name)
            if amount is None:
                continue
            if not isinstance(amount, dict) or not isinstance(amount.get("value"), str) or not amount["value"].isdigit() \
                    or not isinstance(amount.get("assetCode"), str) or not isinstance(amount.get("assetScale"), int) \
                    or not 0 <= amount["assetScale"] <= 255:
                raise gnap_error(400, None, f"{where}.limits.{name} must be {{value (uint64 string), assetCode, assetScale 0-255}}")

    def _needs_interaction(self, access: list) -> bool:
        """Rafiki's canSkipInteraction, inverted (section 2.6)."""
        for item in access:
            if item["type"] == "outgoing-payment":
                return True
            if item["type"] == "incoming-payment" and self.incoming_payment_interaction:
                return True
            if item["type"] == "quote" and self.quote_interaction:
                return True
            if self.list_all_interaction and "list-all" in item.get("actions", []):
                return True
        return False

    def _grant(self, req: Request):
        if req.params["tenant"] != self.tenant:
            raise gnap_error(404, "invalid_request", "Not Found")
        body = req.json()
        if not isinstance(body, dict):
            raise gnap_error(400, None, "request body must be an object")
        client = body.get("client")
        wallet_address, jwk = None, None
        if isinstance(client, str):
            wallet_address = client
        elif isinstance(client, dict) and isinstance(client.get("walletAddress"), str):
            wallet_address = client["walletAddress"]
        elif isinstance(client, dict) and isinstance(client.get("jwk"), dict):
            jwk = client["jwk"]
        else:
            raise gnap_error(400, "invalid_request", "invalid client field")

        def key_for(key_id):
            if jwk is not None:
                return jwk if jwk.get("kid") == key_id else None
            return self._wallet_key(wallet_address, key_id)

        self._verify(req, key_for)
        access_token = body.get("access_token")
        if not isinstance(access_token, dict):
            raise gnap_error(400, "invalid_request", "access_token is required (subject requests are not simulated)")
        access = access_token.get("access")
        self._validate_access(access)
        interactive = self._needs_interaction(access)
        interact = body.get("interact")
        if interactive:
            if not isinstance(interact, dict):
                raise gnap_error(400, "invalid_request", "missing required request field 'interact'")
            if "redirect" not in (interact.get("start") or []):
                raise gnap_error(400, "invalid_request", "interact.start must include redirect")
            if jwk is not None:
                raise gnap_error(400, "invalid_client", "directed identity cannot be used with interaction")
            wallet = self._wallet_named(wallet_address)
            if not wallet or not wallet.get("publicName"):
                raise gnap_error(400, "invalid_client", "missing required request field 'client'")
        finish = interact.get("finish") if isinstance(interact, dict) else None
        if finish is not None and not (isinstance(finish, dict) and finish.get("method") == "redirect"
                                       and isinstance(finish.get("uri"), str) and isinstance(finish.get("nonce"), str)):
            raise gnap_error(400, None, "interact.finish must have method redirect, uri and nonce")
        now = self.clock.now()
        grant = {"id": str(uuid.uuid4()), "tenant": self.tenant, "state": "pending" if interactive else "approved",
                 "finalization": None, "client": wallet_address, "jwk": jwk, "access": copy.deepcopy(access),
                 "continue_id": str(uuid.uuid4()), "continue_token": self._secret(),
                 "finish": copy.deepcopy(finish) if interactive else None, "last_continued_at": now, "interaction_id": None}
        self.grants[grant["id"]] = grant
        if not interactive:
            token = self._new_token(grant)
            grant["state"], grant["finalization"] = "finalized", "issued"
            return 200, {"access_token": self._render_token(token), "continue": self._render_continue(grant, wait=False)}
        interaction = {"id": str(uuid.uuid4()), "nonce": secrets.token_hex(8), "ref": str(uuid.uuid4()),
                       "state": "pending", "grant_id": grant["id"]}
        self.interactions[interaction["id"]] = interaction
        grant["interaction_id"] = interaction["id"]
        wallet = self._wallet_named(wallet_address)
        query = urllib.parse.urlencode({"clientName": wallet.get("publicName"), "clientUri": wallet_address})
        return 200, {"interact": {"redirect": f"{self.auth_server}/interact/{interaction['id']}/{interaction['nonce']}?{query}",
                                  "finish": interaction["nonce"]},
                     "continue": self._render_continue(grant, wait=True)}

    def _render_continue(self, grant: dict, wait: bool) -> dict:
        body = {"access_token": {"value": grant["continue_token"]}, "uri": f"{self.auth_server}/continue/{grant['continue_id']}"}
        if wait:
            body["wait"] = self.wait
        return body

    def _new_token(self, grant: dict) -> dict:
        token = {"value": self._secret(), "management_id": str(uuid.uuid4()), "grant_id": grant["id"],
                 "created_at": self.clock.now(), "expires_in": self.access_token_expiry, "revoked_at": None}
        self.tokens[token["management_id"]] = token
        return token

    def _render_token(self, token: dict) -> dict:
        grant = self.grants[token["grant_id"]]
        return {"value": token["value"], "manage": f"{self.auth_server}/token/{token['management_id']}",
                "expires_in": token["expires_in"], "access": copy.deepcopy(grant["access"])}

    def _token_live(self, token: dict) -> bool:
        grant = self.grants.get(token["grant_id"]) or {}
        return (token["revoked_at"] is None and grant.get("finalization") != "revoked"
                and self.clock.now() < token["created_at"] + token["expires_in"])

    # ---- interaction ---------------------------------------------------------------------------

    def _interact(self, req: Request):
        interaction = self.interactions.get(req.params["id"])
        if interaction is None or interaction["nonce"] != req.params["nonce"]:
            raise gnap_error(404, "unknown_interaction", "unknown interaction")
        grant = self.grants[interaction["grant_id"]]
        return 200, {"interaction": interaction["id"], "state": interaction["state"], "access": grant["access"],
                     "clientUri": grant["client"]}

    def _approve(self, req: Request):
        body = req.json(required=False) or {}
        return 200, self._do_approve(req.params["id"], bool(body.get("deny")))

    def _do_approve(self, interaction_id: str, deny: bool) -> dict:
        interaction = self.interactions.get(interaction_id)
        if interaction is None or interaction["state"] != "pending":
            raise gnap_error(404, "unknown_interaction", "unknown or finished interaction")
        grant = self.grants[interaction["grant_id"]]
        interaction["state"] = "denied" if deny else "approved"
        if deny:
            grant["state"], grant["finalization"] = "finalized", "rejected"
        else:
            grant["state"] = "approved"
        self.save_state()
        out = {"interact_ref": interaction["ref"]}
        finish = grant.get("finish")
        if finish:
            out["hash"] = self.interaction_hash(finish["nonce"], interaction["nonce"], interaction["ref"])
            query = urllib.parse.urlencode({"hash": out["hash"], "interact_ref": interaction["ref"]})
            out["redirect"] = finish["uri"] + ("&" if "?" in finish["uri"] else "?") + query
        return out

    def interaction_hash(self, client_nonce: str, as_nonce: str, interact_ref: str) -> str:
        """base64(SHA-256(client nonce \\n AS nonce \\n interact_ref \\n grant endpoint URL)), section 2.4."""
        data = f"{client_nonce}\n{as_nonce}\n{interact_ref}\n{self.grant_url}".encode()
        text = base64.b64encode(hashlib.sha256(data).digest()).decode()
        return text if self.finish_hash_padding else text.rstrip("=")

    # ---- continuation and cancel ---------------------------------------------------------------

    def _continued_grant(self, req: Request) -> dict:
        """The signature middleware's grant lookup: continue id and token must match a grant not revoked."""
        token = (req.header("Authorization") or "").split("GNAP ", 1)[-1] if req.header("Authorization") else None
        grant = next((g for g in self.grants.values() if g["continue_id"] == req.params["id"]), None)
        if grant is None or token != grant["continue_token"] or grant["finalization"] == "revoked":
            # Still signed: verify against the client the request names, so an unsigned probe learns nothing.
            raise gnap_error(401, "invalid_continuation", "invalid grant")
        self._verify(req, self._grant_key(grant))
        return grant

    def _continue(self, req: Request):
        grant = self._continued_grant(req)
        try:
            return self._do_continue(req, grant)
        finally:
            grant["last_continued_at"] = self.clock.now()   # grantLastContinueAttemptMiddleware, after every attempt

    def _do_continue(self, req: Request, grant: dict):
        body = req.json(required=False)
        too_fast = self.clock.now() < grant["last_continued_at"] + self.wait
        if not body:
            if too_fast:
                raise gnap_error(400, "too_fast", 'polled grant faster than "wait" period')
            if grant.get("finish"):
                raise gnap_error(401, "request_denied", "grant cannot be polled")
            if grant["state"] == "pending":
                return 200, {"continue": self._render_continue(grant, wait=True)}
            if grant["state"] != "approved":
                raise gnap_error(401, "request_denied", "grant cannot be continued")
            return 200, self._issue(grant)
        if not isinstance(body, dict) or not body.get("interact_ref"):
            raise gnap_error(401, "invalid_request", "missing interaction reference")
        interaction = next((i for i in self.interactions.values() if i["ref"] == body["interact_ref"]), None)
        if interaction is None or interaction["grant_id"] != grant["id"] or grant["finalization"] in ("rejected", "revoked"):
            raise gnap_error(404, "invalid_continuation", "grant not found")
        if too_fast:
            raise gnap_error(400, "too_fast", 'continued grant faster than "wait" period')
        if grant["state"] != "approved":
            raise gnap_error(401, "request_denied", "grant interaction not approved")
        return 200, self._issue(grant)

    def _issue(self, grant: dict) -> dict:
        token = self._new_token(grant)
        grant["state"], grant["finalization"] = "finalized", "issued"
        return {"access_token": self._render_token(token), "continue": self._render_continue(grant, wait=False)}

    def _cancel(self, req: Request):
        grant = self._continued_grant(req)
        grant["state"], grant["finalization"] = "finalized", "revoked"
        now = self.clock.now()
        for token in self.tokens.values():
            if token["grant_id"] == grant["id"] and token["revoked_at"] is None:
                token["revoked_at"] = now
        return 204, None

    # ---- token management ----------------------------------------------------------------------

    def _managed_token(self, req: Request) -> dict:
        token = self.tokens.get(req.params["id"])
        grant = self.grants.get(token["grant_id"]) if token else None
        if token is None or token["revoked_at"] is not None or grant is None or grant["finalization"] == "revoked":
            # Rafiki's middleware finds no unrevoked token: nor can it find a key to check the signature with.
            raise self._refuse(401, "invalid_client", "invalid access token", "no such live token")
        self._verify(req, self._grant_key(grant))
        if self.strict:
            presented = (req.header("Authorization") or "")
            if presented != "GNAP " + token["value"]:
                raise self._refuse(401, "invalid_client", "invalid access token", "authorization is not the managed token")
        return token

    def _rotate(self, req: Request):
        token = self._managed_token(req)
        if not self.rotate_expired and self.clock.now() >= token["created_at"] + token["expires_in"]:
            raise self._refuse(401, "invalid_client", "invalid access token", "expired token")
        token["revoked_at"] = self.clock.now()
        new = self._new_token(self.grants[token["grant_id"]])
        return 200, {"access_token": self._render_token(new)}

    def _revoke(self, req: Request):
        token = self._managed_token(req)
        token["revoked_at"] = self.clock.now()
        return 204, None

    # ---- the toy resource server ---------------------------------------------------------------

    def _resource(self, req: Request):
        auth = req.header("Authorization") or ""
        if not auth.startswith("GNAP "):
            raise gnap_error(401, "invalid_token", "GNAP access token required")
        token = self.token_by_value(auth[5:])
        if token is None or not self._token_live(token):
            raise gnap_error(401, "invalid_token", "invalid or expired access token")
        self._verify(req, self._grant_key(self.grants[token["grant_id"]]))
        return 200, {"ok": True, "access": copy.deepcopy(self.grants[token["grant_id"]]["access"])}


def demo_client(sim: OpenPaymentsSimulator, key_id: str = "tokenops-demo-key") -> dict:
    """A client identity for `make demo`: a key pair whose public half is at the client's wallet address.

    Returns the info-file fields: the grant URL, the client's wallet address, its key id and private key
    (PEM), and the wallet addresses of two resource owners.
    """
    from cryptography.hazmat.primitives import serialization

    with sim.lock:
        if not sim.demo_client:
            key = ed25519.Ed25519PrivateKey.generate()
            raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            jwk = {"kid": key_id, "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519", "use": "sig",
                   "x": base64.urlsafe_b64encode(raw).decode().rstrip("=")}
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
            sim.demo_client = {"key_id": key_id, "private_key": pem}
            sim.add_wallet("tokenops-client", public_name="tokenops demo client", keys=[jwk])
            sim.add_wallet("alice", public_name="Alice")
            sim.add_wallet("shop", public_name="Demo shop")
        return {"url": sim.grant_url, "client_wallet_address": sim.wallet_url("tokenops-client"),
                "key_id": sim.demo_client["key_id"], "private_key": sim.demo_client["private_key"],
                "alice": sim.wallet_url("alice"), "shop": sim.wallet_url("shop")}
