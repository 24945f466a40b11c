"""Open Payments simulator: a wallet-address server, the GNAP authorization server and a resource server.

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
    GET  /{wallet}/did.json             200 with a DID document or 500 "not yet implemented" (switch did_document)
    /rs/incoming-payments, /rs/incoming-payments/{id}[/complete], /rs/quotes[/{id}], /rs/outgoing-payments[/{id}]
                                        the resource server of openpayments-resource-server.yaml (201 on create,
                                        list pagination with `result`), which enforces each token's access: a live
                                        token signed by its grant's client (else 401 with WWW-Authenticate), an access
                                        item of the resource's type whose identifier (if any) is the wallet address
                                        and whose actions cover the request (else 403); `read`/`list` see only what the
                                        grant's client created, `read-all`/`list-all` everything; outgoing payments
                                        are paid at once and held to the grant's limits

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
    did_document                  "unimplemented" (500, what the spec says of today's servers) | "document" (200)
"""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import json
import re
import secrets
import urllib.parse
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.simulators.base import HttpError, Request, SimServer, rfc3339

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
    "did_document": "unimplemented",
}
_SWITCH_CHOICES = {"did_document": ("unimplemented", "document")}
QUOTE_LIFESPAN = 300   # seconds a quote stays usable (Rafiki QUOTE_LIFESPAN, 5 minutes)

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
        for name, choices in _SWITCH_CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}")
        self.tenant = tenant
        self.wallets: dict[str, dict] = {}
        self.grants: dict[str, dict] = {}
        self.interactions: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}          # managementId -> token
        self.demo_client: dict = {}                # the CLI's demo client identity (key pair), kept across restarts
        self.rejections: list[str] = []            # why signed requests were refused, newest last
        self.incoming: dict[str, dict] = {}        # the resource server's incoming payments, quotes and outgoing payments
        self.quotes: dict[str, dict] = {}
        self.outgoing: dict[str, dict] = {}
        self._rs_seq = 0

        self.route("POST", r"^/_sim/approve/(?P<id>[^/]+)$", self._approve)
        self.route("GET", r"^/auth/interact/(?P<id>[^/]+)/(?P<nonce>[^/]+)$", self._interact)
        self.route("POST", r"^/auth/continue/(?P<id>[^/]+)$", self._continue)
        self.route("DELETE", r"^/auth/continue/(?P<id>[^/]+)$", self._cancel)
        self.route("POST", r"^/auth/token/(?P<id>[^/]+)$", self._rotate)
        self.route("DELETE", r"^/auth/token/(?P<id>[^/]+)$", self._revoke)
        self.route("POST", r"^/auth/(?P<tenant>[^/]+)$", self._grant)
        uid = r"(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
        self.route("POST", r"^/rs/incoming-payments$", self._create_incoming)
        self.route("GET", r"^/rs/incoming-payments$", self._list_incoming)
        self.route("GET", rf"^/rs/incoming-payments/{uid}$", self._get_incoming)
        self.route("POST", rf"^/rs/incoming-payments/{uid}/complete$", self._complete_incoming)
        self.route("POST", r"^/rs/quotes$", self._create_quote)
        self.route("GET", rf"^/rs/quotes/{uid}$", self._get_quote)
        self.route("POST", r"^/rs/outgoing-payments$", self._create_outgoing)
        self.route("GET", r"^/rs/outgoing-payments$", self._list_outgoing)
        self.route("GET", rf"^/rs/outgoing-payments/{uid}$", self._get_outgoing)
        self.route("GET", r"^/(?P<wallet>[^/]+)/jwks\.json$", self._jwks)
        self.route("GET", r"^/(?P<wallet>[^/]+)/did\.json$", self._did)
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
                "demo_client": self.demo_client, "incoming": self.incoming, "quotes": self.quotes, "outgoing": self.outgoing}

    def load_state(self, state: dict) -> None:
        self.wallets = state.get("wallets", {})
        self.grants = state.get("grants", {})
        self.interactions = state.get("interactions", {})
        self.tokens = state.get("tokens", {})
        self.demo_client = state.get("demo_client", {})
        self.incoming = state.get("incoming", {})
        self.quotes = state.get("quotes", {})
        self.outgoing = state.get("outgoing", {})
        self._rs_seq = max([r["seq"] for store in (self.incoming, self.quotes, self.outgoing) for r in store.values()] + [0])

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

    def _did(self, req: Request):
        """GET {wallet}/did.json: 200 with a DID document, or 500 "DID Document not yet implemented" (the spec's two
        answers; which one a server gives is the switch did_document)."""
        wallet = self.wallets.get(req.params["wallet"])
        if wallet is None:
            raise HttpError(404, "wallet address not found", body={"error": {"description": "Not Found"}})
        if self.did_document == "unimplemented":
            raise HttpError(500, "DID Document not yet implemented",
                            body={"error": {"code": "internal_server_error", "description": "DID Document not yet implemented"}})
        did = "did:web:" + urllib.parse.quote(self.wallet_url(req.params["wallet"]).split("://", 1)[1], safe="/").replace("/", ":")
        methods = [{"id": f"{did}#{k.get('kid')}", "type": "JsonWebKey2020", "controller": did, "publicKeyJwk": copy.deepcopy(k)}
                   for k in wallet["keys"]]
        return 200, {"@context": ["https://www.w3.org/ns/did/v1"], "id": did, "verificationMethod": methods,
                     "assertionMethod": [m["id"] for m in methods]}

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

    # ---- the resource server (openpayments-resource-server.yaml) -------------------------------

    @property
    def resource_server(self) -> str:
        return f"{self.base_url}/rs"

    def _rs_error(self, status: int, code: str, description: str) -> HttpError:
        # error-response: code and description are both required on the resource server.
        headers = {"WWW-Authenticate": f"GNAP as_uri={self.grant_url}"} if status == 401 else {}
        return HttpError(status, description, body={"error": {"code": code, "description": description}}, headers=headers)

    def _rs_token(self, req: Request) -> tuple[dict, dict]:
        """The presented token and its grant: a live GNAP token with a valid signature by the grant's client, else 401."""
        auth = req.header("Authorization") or ""
        if not auth.startswith("GNAP "):
            raise self._rs_error(401, "unauthorized", "GNAP access token required")
        token = self.token_by_value(auth[5:])
        if token is None or not self._token_live(token):
            raise self._rs_error(401, "invalid_token", "invalid or expired access token")
        grant = self.grants[token["grant_id"]]
        try:
            self._verify(req, self._grant_key(grant))
        except HttpError as err:
            raise self._rs_error(401, "invalid_signature", err.message) from None
        return token, grant

    def _covering_access(self, grant: dict, kind: str, action: str, wallet_url: str) -> str:
        """The action the grant allows here ("read" or "read-all", ...), or 403: as Rafiki's RS checks a token's access,
        the item's type must match, its identifier (when it has one) must be this wallet address, and its actions
        must include the action (or its -all form for read and list)."""
        for item in grant["access"]:
            if item["type"] != kind or (item.get("identifier") and item["identifier"] != wallet_url):
                continue
            actions = item.get("actions", [])
            if action in ("read", "list") and f"{action}-all" in actions:
                return f"{action}-all"
            if action in actions:
                return action
        raise self._rs_error(403, "insufficient_grant", f"the access token does not allow {kind} {action} on {wallet_url}")

    @staticmethod
    def _client_of(grant: dict) -> str:
        return grant["client"] or (grant.get("jwk") or {}).get("kid", "")

    def _rs_wallet(self, wallet_url, where: str) -> dict:
        if not isinstance(wallet_url, str) or self._wallet_named(wallet_url) is None:
            raise self._rs_error(400, "invalid_request", f"{where} is not a wallet address of this server")
        return self._wallet_named(wallet_url)

    def _rs_body(self, req: Request) -> dict:
        try:
            body = req.json()
        except HttpError as err:
            raise self._rs_error(400, "invalid_request", err.message) from None
        if not isinstance(body, dict):
            raise self._rs_error(400, "invalid_request", "request body must be an object")
        return body

    def _amount(self, value, where: str, wallet: dict | None = None) -> dict:
        if not (isinstance(value, dict) and set(value) == {"value", "assetCode", "assetScale"}
                and isinstance(value["value"], str) and value["value"].isdigit() and int(value["value"]) < 2**64
                and isinstance(value["assetCode"], str) and isinstance(value["assetScale"], int) and 0 <= value["assetScale"] <= 255):
            raise self._rs_error(400, "invalid_request", f"{where} must be an amount {{value, assetCode, assetScale}}")
        if wallet is not None and (value["assetCode"], value["assetScale"]) != (wallet["assetCode"], wallet["assetScale"]):
            raise self._rs_error(400, "invalid_request", f"{where} must use the wallet address's asset")
        return {"value": value["value"], "assetCode": value["assetCode"], "assetScale": value["assetScale"]}

    @staticmethod
    def _zero(wallet: dict) -> dict:
        return {"value": "0", "assetCode": wallet["assetCode"], "assetScale": wallet["assetScale"]}

    def _resource_url(self, kind: str, rid: str) -> str:
        return f"{self.resource_server}/{kind}/{rid}"

    def _render_incoming(self, payment: dict, methods: bool) -> dict:
        body = {"id": self._resource_url("incoming-payments", payment["id"]), "walletAddress": payment["wallet"],
                "completed": payment["completed"], "receivedAmount": dict(payment["received"]),
                "createdAt": rfc3339(payment["created_at"])}
        for key, name in (("incoming", "incomingAmount"), ("metadata", "metadata")):
            if payment.get(key) is not None:
                body[name] = copy.deepcopy(payment[key])
        if payment.get("expires_at") is not None:
            body["expiresAt"] = rfc3339(payment["expires_at"])
        if methods:
            body["methods"] = [] if payment["completed"] else [
                {"type": "ilp", "ilpAddress": f"test.tokenops.{payment['id']}", "sharedSecret": payment["shared_secret"]}]
        return body

    def _render_quote(self, quote: dict) -> dict:
        return {"id": self._resource_url("quotes", quote["id"]), "walletAddress": quote["wallet"], "receiver": quote["receiver"],
                "receiveAmount": dict(quote["receive"]), "debitAmount": dict(quote["debit"]), "method": "ilp",
                "createdAt": rfc3339(quote["created_at"]), "expiresAt": rfc3339(quote["expires_at"])}

    def _render_outgoing(self, payment: dict, spent: dict | None = None) -> dict:
        body = {"id": self._resource_url("outgoing-payments", payment["id"]), "walletAddress": payment["wallet"],
                "failed": False, "receiver": payment["receiver"], "receiveAmount": dict(payment["receive"]),
                "debitAmount": dict(payment["debit"]), "sentAmount": dict(payment["sent"]),
                "createdAt": rfc3339(payment["created_at"])}
        if payment.get("quote_id"):
            body["quoteId"] = self._resource_url("quotes", payment["quote_id"])
        if payment.get("metadata") is not None:
            body["metadata"] = copy.deepcopy(payment["metadata"])
        if spent is not None:
            body.update(spent)
        return body

    def _page(self, req: Request, items: list[dict], render) -> dict:
        """Cursor pagination (page-info): `first` items after `cursor`, or `last` items before it; default 20."""
        bounds = {}
        for name in ("first", "last"):
            raw = req.arg(name)
            if raw is None:
                continue
            if not raw.isdigit() or not 1 <= int(raw) <= 100:
                raise self._rs_error(400, "invalid_request", f"{name} must be an integer from 1 to 100")
            bounds[name] = int(raw)
        cursor = req.arg("cursor")
        ids = [item["id"] for item in items]
        if cursor is not None and cursor not in ids:
            raise self._rs_error(400, "invalid_request", "unknown cursor")
        if "last" in bounds and cursor is not None:
            end = ids.index(cursor)
            page = items[max(end - bounds["last"], 0):end]
        else:
            start = ids.index(cursor) + 1 if cursor is not None else 0
            page = items[start:start + bounds.get("first", 20)]
        info = {"hasPreviousPage": bool(page) and ids.index(page[0]["id"]) > 0,
                "hasNextPage": bool(page) and ids.index(page[-1]["id"]) < len(ids) - 1}
        if page:
            info.update(startCursor=page[0]["id"], endCursor=page[-1]["id"])
        return {"pagination": info, "result": [render(item) for item in page]}

    def _listed(self, req: Request, kind: str, store: dict) -> dict:
        _token, grant = self._rs_token(req)
        wallet_url = req.arg("wallet-address")
        if not wallet_url:
            raise self._rs_error(400, "invalid_request", "the wallet-address query parameter is required")
        self._rs_wallet(wallet_url, "wallet-address")
        action = self._covering_access(grant, kind, "list", wallet_url)
        mine = self._client_of(grant)
        items = [p for p in sorted(store.values(), key=lambda p: (p["created_at"], p["seq"]))
                 if p["wallet"] == wallet_url and (action == "list-all" or p["client"] == mine)]
        return items

    def _owned(self, req: Request, kind: str, store: dict, action: str = "read") -> tuple[dict, dict]:
        """The resource named by the path, if the token may `action` it (read: only what its client created)."""
        _token, grant = self._rs_token(req)
        item = store.get(req.params["id"])
        if item is None:
            raise self._rs_error(404, "not_found", f"{kind} not found")
        allowed = self._covering_access(grant, kind, action, item["wallet"])
        if allowed != "read-all" and item["client"] != self._client_of(grant):
            raise self._rs_error(404, "not_found", f"{kind} not found")    # another client's: not even its existence
        return item, grant

    def _new_resource(self, grant: dict, wallet_url: str) -> dict:
        self._rs_seq += 1
        return {"id": str(uuid.uuid4()), "wallet": wallet_url, "client": self._client_of(grant),
                "grant_id": grant["id"], "created_at": self.clock.now(), "seq": self._rs_seq}

    # incoming payments

    def _create_incoming(self, req: Request):
        _token, grant = self._rs_token(req)
        body = self._rs_body(req)
        unknown = set(body) - {"walletAddress", "incomingAmount", "expiresAt", "metadata"}
        if unknown:
            raise self._rs_error(400, "invalid_request", f"unknown properties {sorted(unknown)}")
        wallet = self._rs_wallet(body.get("walletAddress"), "walletAddress")
        self._covering_access(grant, "incoming-payment", "create", body["walletAddress"])
        payment = self._new_resource(grant, body["walletAddress"])
        payment.update(completed=False, received=self._zero(wallet), metadata=None, expires_at=None, incoming=None,
                       shared_secret=self._payment_secret())
        if "incomingAmount" in body:
            payment["incoming"] = self._amount(body["incomingAmount"], "incomingAmount", wallet)
        if "metadata" in body:
            if not isinstance(body["metadata"], dict):
                raise self._rs_error(400, "invalid_request", "metadata must be an object")
            payment["metadata"] = copy.deepcopy(body["metadata"])
        if "expiresAt" in body:
            payment["expires_at"] = self._parse_time(body["expiresAt"], "expiresAt")
        self.incoming[payment["id"]] = payment
        return 201, self._render_incoming(payment, methods=True)

    def _list_incoming(self, req: Request):
        items = self._listed(req, "incoming-payment", self.incoming)
        return 200, self._page(req, items, lambda p: self._render_incoming(p, methods=False))

    def _get_incoming(self, req: Request):
        if not req.header("Authorization"):
            # Without a token: the public view (public-incoming-payment), as the spec's optional signature allows.
            payment = self.incoming.get(req.params["id"])
            if payment is None:
                raise self._rs_error(404, "not_found", "incoming-payment not found")
            return 200, {"receivedAmount": dict(payment["received"]), "authServer": self.grant_url}
        payment, _grant = self._owned(req, "incoming-payment", self.incoming)
        return 200, self._render_incoming(payment, methods=True)

    def _complete_incoming(self, req: Request):
        payment, _grant = self._owned(req, "incoming-payment", self.incoming, action="complete")
        payment["completed"] = True
        return 200, self._render_incoming(payment, methods=False)

    # quotes

    def _incoming_at(self, url) -> dict:
        prefix = self._resource_url("incoming-payments", "")
        payment = self.incoming.get(url[len(prefix):]) if isinstance(url, str) and url.startswith(prefix) else None
        if payment is None or payment["completed"]:
            raise self._rs_error(400, "invalid_receiver", "receiver is not an open incoming payment of this server")
        return payment

    def _create_quote(self, req: Request):
        _token, grant = self._rs_token(req)
        body = self._rs_body(req)
        unknown = set(body) - {"walletAddress", "receiver", "method", "debitAmount", "receiveAmount"}
        if unknown or body.get("method") != "ilp" or ("debitAmount" in body and "receiveAmount" in body):
            raise self._rs_error(400, "invalid_request", "a quote needs walletAddress, receiver, method ilp and at most one amount")
        wallet = self._rs_wallet(body.get("walletAddress"), "walletAddress")
        self._covering_access(grant, "quote", "create", body["walletAddress"])
        receiver = self._incoming_at(body.get("receiver"))
        receiver_wallet = self._wallet_named(receiver["wallet"])
        if "debitAmount" in body:
            debit = self._amount(body["debitAmount"], "debitAmount", wallet)
            receive = {**self._zero(receiver_wallet), "value": debit["value"]}
        else:
            if "receiveAmount" in body:
                receive = self._amount(body["receiveAmount"], "receiveAmount", receiver_wallet)
            elif receiver.get("incoming"):
                left = int(receiver["incoming"]["value"]) - int(receiver["received"]["value"])
                receive = {**self._zero(receiver_wallet), "value": str(max(left, 0))}
            else:
                raise self._rs_error(400, "invalid_request", "No amount was provided and no amount could be inferred from the receiver")
            debit = {**self._zero(wallet), "value": receive["value"]}     # one to one: the simulator quotes no fees
        quote = self._new_resource(grant, body["walletAddress"])
        quote.update(receiver=body["receiver"], debit=debit, receive=receive, expires_at=self.clock.now() + QUOTE_LIFESPAN)
        self.quotes[quote["id"]] = quote
        return 201, self._render_quote(quote)

    def _get_quote(self, req: Request):
        quote, _grant = self._owned(req, "quote", self.quotes)
        return 200, self._render_quote(quote)

    # outgoing payments

    def _create_outgoing(self, req: Request):
        _token, grant = self._rs_token(req)
        body = self._rs_body(req)
        wallet_url = body.get("walletAddress")
        by_quote = set(body) <= {"walletAddress", "quoteId", "metadata"} and "quoteId" in body
        direct = set(body) <= {"walletAddress", "incomingPayment", "debitAmount", "metadata"} and "incomingPayment" in body \
            and "debitAmount" in body
        if not (by_quote or direct):
            raise self._rs_error(400, "invalid_request", "give quoteId, or incomingPayment and debitAmount")
        wallet = self._rs_wallet(wallet_url, "walletAddress")
        self._covering_access(grant, "outgoing-payment", "create", wallet_url)
        if by_quote:
            prefix = self._resource_url("quotes", "")
            quote_id = body["quoteId"][len(prefix):] if isinstance(body["quoteId"], str) and body["quoteId"].startswith(prefix) else None
            quote = self.quotes.get(quote_id)
            if quote is None or quote["wallet"] != wallet_url or self.clock.now() >= quote["expires_at"] or quote.get("used"):
                raise self._rs_error(400, "invalid_quote", "quoteId is not a live quote of this wallet address")
            receiver, debit, receive = quote["receiver"], dict(quote["debit"]), dict(quote["receive"])
        else:
            receiver_payment = self._incoming_at(body["incomingPayment"])
            debit = self._amount(body["debitAmount"], "debitAmount", wallet)
            receiver, receive = body["incomingPayment"], {**self._zero(self._wallet_named(receiver_payment["wallet"])), "value": debit["value"]}
            quote_id = None
        spent = self._check_limits(grant, wallet_url, receiver, debit, receive)
        payment = self._new_resource(grant, wallet_url)
        payment.update(receiver=receiver, debit=debit, receive=receive, sent=dict(debit), quote_id=quote_id,
                       metadata=copy.deepcopy(body.get("metadata")) if isinstance(body.get("metadata"), dict) else None)
        if quote_id:
            self.quotes[quote_id]["used"] = True
        # Paid at once: the receiver's incoming payment receives the amount.
        target = self._incoming_at(receiver)
        target["received"]["value"] = str(int(target["received"]["value"]) + int(receive["value"]))
        if target.get("incoming") and int(target["received"]["value"]) >= int(target["incoming"]["value"]):
            target["completed"] = True
        self.outgoing[payment["id"]] = payment
        return 201, self._render_outgoing(payment, spent)

    def _check_limits(self, grant: dict, wallet_url: str, receiver: str, debit: dict, receive: dict) -> dict:
        """The grant's outgoing-payment limits (receiver, debitAmount, receiveAmount) over all its payments; 403 beyond."""
        item = next(i for i in grant["access"] if i["type"] == "outgoing-payment"
                    and (not i.get("identifier") or i["identifier"] == wallet_url))
        limits = item.get("limits") or {}
        if limits.get("receiver") and limits["receiver"] != receiver:
            raise self._rs_error(403, "insufficient_grant", "the grant limits the receiver")
        earlier = [p for p in self.outgoing.values() if p["grant_id"] == grant["id"]]
        spent_debit = sum(int(p["debit"]["value"]) for p in earlier) + int(debit["value"])
        spent_receive = sum(int(p["receive"]["value"]) for p in earlier) + int(receive["value"])
        for name, spent in (("debitAmount", spent_debit), ("receiveAmount", spent_receive)):
            if limits.get(name) and spent > int(limits[name]["value"]):
                raise self._rs_error(403, "insufficient_grant", f"the payment exceeds the grant's {name} limit")
        return {"grantSpentDebitAmount": {**debit, "value": str(spent_debit)},
                "grantSpentReceiveAmount": {**receive, "value": str(spent_receive)}}

    def _list_outgoing(self, req: Request):
        items = self._listed(req, "outgoing-payment", self.outgoing)
        return 200, self._page(req, items, self._render_outgoing)

    def _get_outgoing(self, req: Request):
        payment, _grant = self._owned(req, "outgoing-payment", self.outgoing)
        return 200, self._render_outgoing(payment)

    def _payment_secret(self) -> str:
        # The STREAM shared secret of an incoming payment's ilp method: a secret, so a canary like every other.
        value = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        self.issued.add(value)
        return value

    def _parse_time(self, text, where: str) -> float:
        try:
            moment = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
        except ValueError:
            raise self._rs_error(400, "invalid_request", f"{where} must be a date-time") from None
        if moment.tzinfo is None:
            raise self._rs_error(400, "invalid_request", f"{where} must carry a time zone")
        return moment.timestamp()

    def not_found(self, req: Request):
        if req.path.startswith("/rs/") or req.path == "/rs":
            return 404, {"error": {"code": "not_found", "description": f"no resource at {req.path}"}}, {}
        return super().not_found(req)


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
