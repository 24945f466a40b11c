"""Styra DAS simulator: API tokens (/v1/tokens), Authz v2 role bindings and roles, systems (read-only).

Tuned to ../shared/api/das.md (sections 1.2-1.9) and the vendor OpenAPI file, never to the module.
Every behaviour the documentation leaves open (das.md 1.9 and the [INF] notes) is a switch:

    error_codes               status -> `code` string of meta.v1.ErrorResponse (q1)
    partial_put               "keep" | "reset": an update PUT that omits description/allow_path_patterns (q2)
    regenerate_grace_seconds  how long the old secret keeps working after regenerate (q3)
    list_expired              whether GET /v1/tokens lists expired tokens (q4)
    ttl_echo                  "as_sent" | "normalized" (Go Duration.String(), "24h0m0s") (q5)
    max_ttl_seconds           None or the longest accepted ttl; longer -> 400 (q5)
    refresher_can_get         whether the token-refresher roles may GET tokens in their scope (q6)
    delete_missing_status     404 | 200 for DELETE of a missing token (q7)
    update_result             "omit" | "empty": `result` of an update PUT without regenerate (1.8)
    ttl_update_resets_expires whether an update PUT without regenerate that sends ttl moves `expires` (1.4: unknown)
    path_refusal_status       403 | 401: the answer to a request outside the token's allow_path_patterns (not
                              documented; 403 like a missing role, 1.6 INF)

allow_path_patterns are enforced on every authenticated request: a token may call a path when one of its
patterns matches it (a regular-expression search, so "^/data/foo" allows every path starting with /data/foo and
".*" every path, as the create-api-token page puts it); an empty list allows every path (1.4.5).
"""

from __future__ import annotations

import copy
import hmac
import re
from decimal import Decimal

from tests.simulators.base import HttpError, Request, SimServer, rfc3339

DEFAULT_TTL = "87600h"   # "~10 years" (das.md 1.4.3)
NS_PER_SECOND = 10**9

# Go time.ParseDuration units.
_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION = re.compile(r"(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a Go duration string ("24h", "1h30m", "1.5s"); ValueError when invalid.

    Signs are rejected: a token ttl must be positive.
    """
    if not isinstance(text, str) or not _DURATION.fullmatch(text):
        raise ValueError(f"invalid duration {text!r}")
    total = Decimal(0)
    for number, unit in _DURATION_PART.findall(text):
        total += Decimal(number) * _UNIT_NS[unit]
    return int(total)


def format_go_duration(ns: int) -> str:
    """Go's time.Duration.String(): "24h0m0s", "1m30s", "1.5s", "500ms"."""
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)

    def with_fraction(value: int, digits: int) -> str:
        whole, frac = divmod(value, 10**digits)
        text = str(whole)
        if frac:
            text += "." + str(frac).rjust(digits, "0").rstrip("0")
        return text

    if ns < NS_PER_SECOND:
        if ns < 10**3:
            return f"{sign}{ns}ns"
        if ns < 10**6:
            return f"{sign}{with_fraction(ns, 3)}µs"
        return f"{sign}{with_fraction(ns, 6)}ms"
    seconds, frac_ns = divmod(ns, NS_PER_SECOND)
    text = with_fraction((seconds % 60) * NS_PER_SECOND + frac_ns, 9) + "s"
    minutes = seconds // 60
    if minutes:
        text = f"{minutes % 60}m{text}"
        if minutes // 60:
            text = f"{minutes // 60}h{text}"
    return sign + text


# Roles documented in das.md 1.5 (docs, Bankdata constants); the live list is at GET /v2/authz/roles.
ROLES: dict[str, tuple[str, str]] = {
    "WorkspaceAdministrator": ("workspace", "Full access to the workspace"),
    "WorkspaceViewer": ("workspace", "Read-only access to the workspace"),
    "WorkspaceTokenRefresher": ("workspace", "Refreshes existing tokens that do not belong to a system"),
    "WorkspaceSystemCreator": ("workspace", "Creates systems"),
    "WorkspaceRelayClient": ("workspace", "Relay client"),
    "WorkspaceRelaySetupAdmin": ("workspace", "Relay setup administrator"),
    "SystemOwner": ("system", "Full access to a system"),
    "SystemEditor": ("system", "Edits a system"),
    "SystemViewer": ("system", "Read-only access to a system"),
    "SystemPolicyEditor": ("system", "Edits a system's policies"),
    "SystemDatasources": ("system", "Manages a system's datasources"),
    "SystemOPA": ("system", "Used by OPA to download bundles and upload decisions"),
    "SystemTokenRefresher": ("system", "Refreshes existing tokens that belong to a system"),
    "LibraryViewer": ("library", "Read-only access to a library"),
}
REFRESHER_ROLES = frozenset({"WorkspaceTokenRefresher", "SystemTokenRefresher"})
# System roles that may read the system (das.md 1.5); none of them touches /v1/tokens.
SYSTEM_READ_ROLES = frozenset({"SystemOwner", "SystemEditor", "SystemViewer", "SystemPolicyEditor", "SystemDatasources", "SystemOPA"})

DEFAULT_ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict"}

SWITCH_DEFAULTS = {
    "error_codes": DEFAULT_ERROR_CODES,
    "partial_put": "keep",
    "regenerate_grace_seconds": 0,
    "list_expired": True,
    "ttl_echo": "as_sent",
    "refresher_can_get": False,
    "delete_missing_status": 404,
    "update_result": "omit",
    "max_ttl_seconds": None,
    "ttl_update_resets_expires": False,
    "path_refusal_status": 403,
}
_SWITCH_CHOICES = {"partial_put": ("keep", "reset"), "ttl_echo": ("as_sent", "normalized"),
                   "delete_missing_status": (404, 200), "update_result": ("omit", "empty"),
                   "path_refusal_status": (403, 401)}


def path_allowed(patterns, path: str) -> bool:
    """Whether a token with these allow_path_patterns may call `path` (an empty list allows every path)."""
    if not patterns:
        return True
    for pattern in patterns:
        try:
            if re.search(pattern, path):
                return True
        except re.error:   # a seeded or stored pattern Go would not have accepted: it allows nothing
            continue
    return False


def system_of(token_id: str) -> str | None:
    """The system id of a system token (`systems/<sid>/...`), else None (a workspace-level token)."""
    parts = token_id.split("/")
    return parts[1] if len(parts) >= 3 and parts[0] == "systems" and parts[1] else None


class DasSimulator(SimServer):
    name = "das"

    def __init__(self, clock=None, tls=False, state_file=None, tls_dir=None, **switches):
        super().__init__(clock=clock, tls=tls, state_file=state_file, tls_dir=tls_dir)
        unknown = set(switches) - set(SWITCH_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown DasSimulator switches: {sorted(unknown)}")
        for name, default in SWITCH_DEFAULTS.items():
            setattr(self, name, copy.deepcopy(switches.get(name, default)))
        for name, choices in _SWITCH_CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}")
        self.tokens: dict[str, dict] = {}
        self._by_secret: dict[str, dict] = {}      # every secret issued -> its token (an index; tokens decide)
        self.bindings: dict[str, dict] = {}
        self.systems: dict[str, dict] = {}

        self.route("GET", r"^/v1/tokens/?$", self._list_tokens)
        self.route("GET", r"^/v1/tokens/(?P<id>.+)$", self._get_token)
        self.route("PUT", r"^/v1/tokens/(?P<id>.+)$", self._put_token)
        self.route("DELETE", r"^/v1/tokens/(?P<id>.+)$", self._delete_token)
        self.route("GET", r"^/v1/systems/(?P<sid>[^/]+)$", self._get_system)
        self.route("GET", r"^/v2/authz/roles/?$", self._list_roles)
        self.route("GET", r"^/v2/authz/rolebindings/?$", self._list_bindings)
        self.route("POST", r"^/v2/authz/rolebindings/?$", self._post_binding)
        for method, handler in (("POST", self._set_subjects), ("PUT", self._merge_subjects), ("DELETE", self._remove_subjects)):
            self.route(method, r"^/v2/authz/rolebindings/(?P<id>.+)/subjects$", handler)
        # A binding's own routes stop short of its /subjects resource, which has no GET: the id may hold slashes
        # (pattern .*), but ".../x/subjects" is the subjects of x, as the spec's two paths say.
        binding = r"^/v2/authz/rolebindings/(?P<id>(?!.*/subjects$).+)$"
        self.route("GET", binding, self._get_binding)
        self.route("DELETE", binding, self._delete_binding)

    # ---- bodies -----------------------------------------------------------------------------

    def error_body(self, status, message):
        # meta.v1.ErrorResponse; the code strings are undocumented (das.md 1.9 q1).
        code = self.error_codes.get(status) or self.error_codes.get(str(status)) or {
            405: "method_not_allowed", 429: "too_many_requests", 500: "internal_error", 503: "unavailable"}.get(status, str(status))
        return {"code": code, "message": message, "request_id": self.request_id()}

    def _binding_bad_request(self, message: str) -> HttpError:
        # The spec types 400 of the rolebinding writes as RoleBindingsPostResponse (sic, das.md 1.6);
        # this body satisfies that schema and meta.v1.ErrorResponse at once.
        body = self.error_body(400, message)
        body["rolebinding"] = {"id": "", "resource_filter": {"kind": "", "id": ""}, "role_id": "", "subjects": [], "metadata": {}}
        return HttpError(400, message, body=body)

    def _ttl_text(self, token: dict) -> str:
        return format_go_duration(token["ttl_ns"]) if self.ttl_echo == "normalized" else token["ttl"]

    def _render_token(self, token: dict) -> dict:
        # tokens.v1.Token without the optional `token` field: the secret is only shown by PUT (das.md 1.4).
        meta = token["metadata"]
        return {
            "id": token["id"],
            "description": token["description"],
            "ttl": self._ttl_text(token),
            "expires": rfc3339(token["expires"]),
            "allow_path_patterns": list(token["allow_path_patterns"]),
            "uses": token["uses"],
            "metadata": {k: (rfc3339(v) if k.endswith("_at") else v) for k, v in meta.items()},
        }

    @staticmethod
    def _render_binding(binding: dict) -> dict:
        meta = binding["metadata"]
        return {
            "id": binding["id"],
            "resource_filter": dict(binding["resource_filter"]),
            "role_id": binding["role_id"],
            "subjects": copy.deepcopy(binding["subjects"]),
            "metadata": {k: (rfc3339(v) if k.endswith("_at") else v) for k, v in meta.items()},
        }

    def _metadata(self, who: str, created: dict | None = None) -> dict:
        now = self.clock.now()
        if created is None:
            created = {"created_at": now, "created_by": who, "created_through": "access_token"}
        return {**{k: created[k] for k in ("created_at", "created_by", "created_through")},
                "last_modified_at": now, "last_modified_by": who, "last_modified_through": "access_token"}

    # ---- authentication and authorization ---------------------------------------------------

    def _expired(self, token: dict) -> bool:
        return self.clock.now() >= token["expires"]

    def _find_by_secret(self, secret: str) -> dict | None:
        """The token this secret currently authenticates, honouring expiry and the regenerate grace."""
        now = self.clock.now()
        # The token that was given this secret, checked as the scan below checks it: a scan over every
        # token for every request made a fleet of N tokens cost N^2 (the fleet benchmark's 2000 tokens).
        token = self._by_secret.get(secret)
        if token is not None and self.tokens.get(token["id"]) is token:
            matched, found = self._secret_of(token, secret, now)
            if matched:
                return found
        for token in self.tokens.values():
            matched, found = self._secret_of(token, secret, now)
            if matched:
                return found
        return None

    def _secret_of(self, token: dict, secret: str, now: float) -> tuple[bool, dict | None]:
        """(whether secret is this token's current or previous secret, the token it authenticates or None)."""
        if hmac.compare_digest(token["secret"], secret):
            return True, (None if self._expired(token) else token)
        for old in token.get("previous", []):
            if hmac.compare_digest(old["secret"], secret):
                return True, (token if now < old["valid_until"] and not self._expired(token) else None)
        return False, None

    def _issued(self, token: dict) -> None:
        self._by_secret[token["secret"]] = token

    def _authenticate(self, req: Request) -> dict:
        header = req.header("Authorization") or ""
        scheme, _space, secret = header.partition(" ")
        token = self._find_by_secret(secret.strip()) if scheme.lower() == "bearer" and secret.strip() else None
        if token is None:
            raise HttpError(401, "invalid or expired token")
        token["uses"] += 1
        if not path_allowed(token["allow_path_patterns"], req.path):
            raise HttpError(self.path_refusal_status, f"token {token['id']!r} is not allowed to call {req.path}")
        return token

    def not_found(self, req: Request) -> tuple:
        """An API path the simulator has no route for: "all DAS APIs return 401" for a dead token (das.md 1.4 DOC), so
        the token is checked (and its path patterns) before the 404."""
        if req.path.startswith(("/v1/", "/v2/")):
            self._authenticate(req)
        return super().not_found(req)

    def _roles_of(self, token_id: str) -> list[tuple[str, str, str]]:
        return [(b["role_id"], b["resource_filter"]["kind"], b["resource_filter"]["id"])
                for b in self.bindings.values()
                if any(s.get("kind") == "token" and s.get("id") == token_id for s in b["subjects"])]

    def _refresher_scope(self, roles, target_id: str) -> bool:
        """Whether a refresher role covers this token id (workspace: non-system ids; system: systems/<sid>/...)."""
        target_system = system_of(target_id)
        for role, kind, rid in roles:
            if role == "WorkspaceTokenRefresher" and kind == "workspace" and target_system is None:
                return True
            if role == "SystemTokenRefresher" and kind == "system" and target_system == rid:
                return True
        return False

    def _authorize(self, caller: dict, action: str, target: str | None = None) -> None:
        """Raise 403 unless one of the caller's role bindings grants `action` (Authz v2: no binding, no right)."""
        roles = self._roles_of(caller["id"])
        names = {role for role, _kind, _rid in roles}
        # Workspace-level bindings: the resource id is undocumented (das.md 1.5 INF), so any id counts.
        workspace = {role for role, kind, _rid in roles if kind == "workspace"}
        if "WorkspaceAdministrator" in workspace:
            return
        is_read = action in ("tokens.list", "tokens.get", "systems.get", "authz.read")
        if is_read and "WorkspaceViewer" in workspace:
            return
        if action == "tokens.put" and names & REFRESHER_ROLES:
            # Refreshers only update existing tokens ("refreshes existing ... tokens"), and may rotate themselves.
            if target == caller["id"] or (target in self.tokens and self._refresher_scope(roles, target)):
                return
        if action == "tokens.get" and self.refresher_can_get and names & REFRESHER_ROLES:
            if target == caller["id"] or self._refresher_scope(roles, target):
                return
        if action == "systems.get":
            if any(kind == "system" and rid == target and role in SYSTEM_READ_ROLES for role, kind, rid in roles):
                return
        raise HttpError(403, f"token {caller['id']!r} is not allowed to perform {action}")

    # ---- /v1/tokens -------------------------------------------------------------------------

    def _list_tokens(self, req):
        caller = self._authenticate(req)
        self._authorize(caller, "tokens.list")
        tokens = [t for _tid, t in sorted(self.tokens.items()) if self.list_expired or not self._expired(t)]
        return 200, {"request_id": self.request_id(), "result": [self._render_token(t) for t in tokens]}, {}

    def _get_token(self, req):
        caller = self._authenticate(req)
        token_id = req.params["id"]
        self._authorize(caller, "tokens.get", token_id)
        token = self.tokens.get(token_id)
        if token is None:
            raise HttpError(404, f"token {token_id!r} not found")
        # An expired token is still returned (with `expires` in the past), das.md 1.7.
        return 200, {"request_id": self.request_id(), "result": self._render_token(token)}, {}

    def _check_ttl(self, ttl) -> int:
        try:
            ttl_ns = parse_go_duration(ttl)
        except ValueError:
            raise HttpError(400, f"invalid ttl {ttl!r}: expected a duration such as \"24h\"") from None
        if ttl_ns <= 0:
            raise HttpError(400, "ttl must be positive")
        if self.max_ttl_seconds is not None and ttl_ns > self.max_ttl_seconds * NS_PER_SECOND:
            raise HttpError(400, f"ttl {ttl!r} exceeds the maximum")
        return ttl_ns

    @staticmethod
    def _put_fields(body) -> dict:
        """The supplied tokens.v1.TokensPutRequest fields (JSON null counts as not supplied), type-checked."""
        if not isinstance(body, dict):
            raise HttpError(400, "request body must be a JSON object")
        fields = {k: body[k] for k in ("description", "allow_path_patterns", "regenerate", "ttl") if body.get(k) is not None}
        if "description" in fields and not isinstance(fields["description"], str):
            raise HttpError(400, "description must be a string")
        patterns = fields.get("allow_path_patterns")
        if patterns is not None and not (isinstance(patterns, list) and all(isinstance(p, str) for p in patterns)):
            raise HttpError(400, "allow_path_patterns must be a list of strings")
        for pattern in patterns or []:
            try:
                re.compile(pattern)
            except re.error:
                raise HttpError(400, f"allow_path_patterns: {pattern!r} is not a regular expression") from None
        if "regenerate" in fields and not isinstance(fields["regenerate"], bool):
            raise HttpError(400, "regenerate must be a boolean")
        if "ttl" in fields and not isinstance(fields["ttl"], str):
            raise HttpError(400, "ttl must be a string")
        return fields

    def _put_token(self, req):
        caller = self._authenticate(req)
        token_id = req.params["id"]
        self._authorize(caller, "tokens.put", token_id)
        fields = self._put_fields(req.json())
        ttl_ns = self._check_ttl(fields["ttl"]) if "ttl" in fields else None
        existing = self.tokens.get(token_id)
        live = existing is not None and not self._expired(existing)
        if (req.header("If-None-Match") or "").strip() == "*" and live:
            raise HttpError(409, f"token {token_id!r} already exists")
        request_id = self.request_id()
        now = self.clock.now()

        if not live:
            # Create; an expired token with this id is replaced (das.md 1.4.2). Only a brand-new id must carry
            # the spec's required fields: the documented refresher call sends {"regenerate": true, "ttl": "24h"}
            # for a token that has just expired.
            if existing is None:
                missing = [k for k in ("description", "allow_path_patterns", "regenerate") if k not in fields]
                if missing:
                    raise HttpError(400, f"missing required fields: {', '.join(missing)}")
            base = existing if existing is not None and self.partial_put == "keep" else {"description": "", "allow_path_patterns": []}
            ttl = fields.get("ttl", DEFAULT_TTL)
            if ttl_ns is None:
                ttl_ns = parse_go_duration(DEFAULT_TTL)
                if self.max_ttl_seconds is not None and ttl_ns > self.max_ttl_seconds * NS_PER_SECOND:
                    ttl_ns = int(self.max_ttl_seconds * NS_PER_SECOND)   # the default is capped, not refused
                    ttl = format_go_duration(ttl_ns)
            secret = self.new_secret()
            self.tokens[token_id] = {
                "id": token_id,
                "description": fields.get("description", base["description"]),
                "ttl": ttl,
                "ttl_ns": ttl_ns,
                "expires": now + ttl_ns / NS_PER_SECOND,
                "allow_path_patterns": list(fields.get("allow_path_patterns", base["allow_path_patterns"])),
                "uses": 0,
                "metadata": self._metadata(caller["id"]),
                "secret": secret,
                "previous": [],
            }
            self._issued(self.tokens[token_id])
            return 200, {"request_id": request_id, "result": secret}, {}

        # Update the supplied fields; omitted ones are kept or reset (das.md 1.9 q2).
        token = existing
        for name, empty in (("description", ""), ("allow_path_patterns", [])):
            if name in fields:
                token[name] = copy.deepcopy(fields[name])
            elif self.partial_put == "reset":
                token[name] = empty
        if ttl_ns is not None:
            token["ttl"], token["ttl_ns"] = fields["ttl"], ttl_ns
            if self.ttl_update_resets_expires:
                token["expires"] = now + ttl_ns / NS_PER_SECOND
        token["metadata"] = self._metadata(caller["id"], token["metadata"])
        if fields.get("regenerate"):
            secret = self.new_secret()
            token["previous"] = [p for p in token["previous"] if p["valid_until"] > now]
            token["previous"].append({"secret": token["secret"], "valid_until": now + self.regenerate_grace_seconds})
            token["secret"] = secret
            self._issued(token)
            token["expires"] = now + token["ttl_ns"] / NS_PER_SECOND
            return 200, {"request_id": request_id, "result": secret}, {}
        body = {"request_id": request_id}
        if self.update_result == "empty":
            body["result"] = ""
        return 200, body, {}

    def _delete_token(self, req):
        caller = self._authenticate(req)
        token_id = req.params["id"]
        self._authorize(caller, "tokens.delete", token_id)
        if self.tokens.pop(token_id, None) is None and self.delete_missing_status == 404:
            raise HttpError(404, f"token {token_id!r} not found")
        # Bindings naming the token are left alone: what DAS does with them is unknown.
        return 200, {"request_id": self.request_id()}, {}

    # ---- /v1/systems ------------------------------------------------------------------------

    def _get_system(self, req):
        caller = self._authenticate(req)
        sid = req.params["sid"]
        self._authorize(caller, "systems.get", sid)
        system = self.systems.get(sid)
        if system is None:
            raise HttpError(404, f"system {sid!r} not found")
        tokens = [self._render_token(t) for tid, t in sorted(self.tokens.items()) if system_of(tid) == sid]
        result = {
            # The spec's required SystemConfig fields, kept minimal, plus the read-only `tokens`.
            "id": sid,
            "name": system["name"],
            "type": system["type"],
            "policies": [],
            "authz": {},
            "metadata": {k: (rfc3339(v) if k.endswith("_at") else v) for k, v in system["metadata"].items()},
            "status": "",
            "tokens": tokens,
        }
        return 200, {"request_id": self.request_id(), "result": result}, {}

    # ---- /v2/authz --------------------------------------------------------------------------

    def _list_roles(self, req):
        caller = self._authenticate(req)
        self._authorize(caller, "authz.read")
        kind = req.arg("resource_kind")
        roles = [{"id": role, "resource_kind": rkind, "description": text, "inherit_roles": [], "metadata": {}}
                 for role, (rkind, text) in ROLES.items() if not kind or rkind == kind]
        return 200, {"request_id": self.request_id(), "roles": roles}, {}

    def _list_bindings(self, req):
        caller = self._authenticate(req)
        self._authorize(caller, "authz.read")
        if (req.arg("internal") or "").lower() == "true":
            return 200, {"request_id": self.request_id(), "rolebindings": []}, {}   # the simulator has no internal ones

        def wanted(name, value_sets):
            values = req.query.get(name)
            return not values or any(v in values for v in value_sets)

        result = [
            self._render_binding(b) for _bid, b in sorted(self.bindings.items())
            if wanted("resource_kind", [b["resource_filter"]["kind"]])
            and wanted("resource_id", [b["resource_filter"]["id"]])
            and wanted("role_id", [b["role_id"]])
            and wanted("subject_kind", [s.get("kind") for s in b["subjects"]])
            and wanted("subject_id", [s.get("id") for s in b["subjects"]])
        ]
        return 200, {"request_id": self.request_id(), "rolebindings": result}, {}

    def _check_subjects(self, subjects) -> list[dict]:
        if not isinstance(subjects, list):
            raise self._binding_bad_request("subjects must be a list")
        for subject in subjects:
            if not isinstance(subject, dict) or not isinstance(subject.get("kind"), str) or not subject["kind"]:
                raise self._binding_bad_request("each subject needs a kind")
            if "id" in subject and not isinstance(subject["id"], str):
                raise self._binding_bad_request("subject id must be a string")
            claim = subject.get("claim_config")
            if claim is not None and not (isinstance(claim, dict) and isinstance(claim.get("key"), str) and isinstance(claim.get("value"), str)):
                raise self._binding_bad_request("claim_config needs key and value")
            if subject["kind"] != "claim" and not subject.get("id"):
                raise self._binding_bad_request(f"subject of kind {subject['kind']!r} needs an id")
        return [{k: copy.deepcopy(s[k]) for k in ("kind", "id", "claim_config") if k in s} for s in subjects]

    def _subjects_body(self, req) -> list[dict]:
        try:
            body = req.json()
        except HttpError as err:
            raise self._binding_bad_request(err.message) from None
        if not isinstance(body, dict) or "subjects" not in body:
            raise self._binding_bad_request("subjects is required")
        return self._check_subjects(body["subjects"])

    def _binding_or_404(self, binding_id: str) -> dict:
        binding = self.bindings.get(binding_id)
        if binding is None:
            raise HttpError(404, f"rolebinding {binding_id!r} not found")
        return binding

    def _post_binding(self, req):
        caller = self._authenticate(req)
        self._authorize(caller, "authz.write")
        try:
            body = req.json()
        except HttpError as err:
            raise self._binding_bad_request(err.message) from None
        if not isinstance(body, dict):
            raise self._binding_bad_request("request body must be a JSON object")
        rfilter, role_id = body.get("resource_filter"), body.get("role_id")
        if not (isinstance(rfilter, dict) and isinstance(rfilter.get("kind"), str) and isinstance(rfilter.get("id"), str)
                and rfilter["kind"] and rfilter["id"]):
            raise self._binding_bad_request("resource_filter needs kind and id")
        if role_id not in ROLES:
            raise self._binding_bad_request(f"unknown role_id {role_id!r}")
        if ROLES[role_id][0] != rfilter["kind"]:
            raise self._binding_bad_request(f"role {role_id} applies to resource kind {ROLES[role_id][0]!r}, not {rfilter['kind']!r}")
        if "subjects" not in body:
            raise self._binding_bad_request("subjects is required")
        subjects = self._check_subjects(body["subjects"])
        create_only = (req.header("If-None-Match") or "").strip() == "*"
        binding_id = body.get("id")
        if binding_id is not None and not isinstance(binding_id, str):
            raise self._binding_bad_request("id must be a string")

        # With an id the request replaces that binding in full, which must exist; without one it creates a new
        # binding ("if present, implies updating existing rolebinding in its entirety, otherwise create new"),
        # even beside another binding of the same role and resource. If-None-Match: * refuses the update.
        existing = self._binding_or_404(binding_id) if binding_id else None
        if existing is not None and create_only:
            raise HttpError(409, "rolebinding already exists")
        if existing is None:
            binding_id = self.request_id()
            existing = {"id": binding_id, "metadata": self._metadata(caller["id"])}
        else:
            existing["metadata"] = self._metadata(caller["id"], existing["metadata"])
        existing.update(resource_filter={"kind": rfilter["kind"], "id": rfilter["id"]}, role_id=role_id, subjects=subjects)
        self.bindings[existing["id"]] = existing
        return 200, {"request_id": self.request_id(), "rolebinding": self._render_binding(existing)}, {}

    def _find_binding(self, kind: str, rid: str, role_id: str) -> dict | None:
        for binding in self.bindings.values():
            if binding["role_id"] == role_id and binding["resource_filter"] == {"kind": kind, "id": rid}:
                return binding
        return None

    def _get_binding(self, req):
        caller = self._authenticate(req)
        self._authorize(caller, "authz.read")
        binding = self._binding_or_404(req.params["id"])
        return 200, {"request_id": self.request_id(), "rolebinding": self._render_binding(binding)}, {}

    def _delete_binding(self, req):
        caller = self._authenticate(req)
        self._authorize(caller, "authz.write")
        binding_id = req.params["id"]
        if binding_id not in self.bindings and (req.header("If-Match") or "").strip() != "*":
            raise HttpError(404, f"rolebinding {binding_id!r} not found")
        self.bindings.pop(binding_id, None)
        return 200, {"request_id": self.request_id()}, {}

    def _change_subjects(self, req, change) -> tuple:
        caller = self._authenticate(req)
        self._authorize(caller, "authz.write")
        binding = self._binding_or_404(req.params["id"])
        subjects = self._subjects_body(req)
        binding["subjects"] = change(binding["subjects"], subjects)
        binding["metadata"] = self._metadata(caller["id"], binding["metadata"])
        return 200, {"request_id": self.request_id(), "rolebinding": self._render_binding(binding)}, {}

    def _set_subjects(self, req):
        # POST .../subjects "Update": the list replaces the current subjects (das.md 1.9 q8, inferred).
        return self._change_subjects(req, lambda current, given: _unique(given))

    def _merge_subjects(self, req):
        # PUT .../subjects "Merge": union with the current subjects.
        return self._change_subjects(req, lambda current, given: _unique(current + given))

    def _remove_subjects(self, req):
        return self._change_subjects(req, lambda current, given: [s for s in current if s not in given])

    # ---- test helpers (not HTTP) ------------------------------------------------------------

    def add_system(self, sid: str, name: str | None = None, system_type: str = "custom") -> None:
        with self.lock:
            if sid not in self.systems:
                self.systems[sid] = {"name": name or sid, "type": system_type, "metadata": self._metadata("seed")}
        self.save_state()

    def seed_token(self, token_id: str, roles=(), ttl: str = DEFAULT_TTL, description: str = "",
                   allow_path_patterns=(".*",)) -> str:
        """Create a token and its role bindings directly; returns the secret.

        roles: [(role_id, resource_kind, resource_id)], e.g. [("WorkspaceAdministrator", "workspace", "*")].
        """
        with self.lock:
            ttl_ns = parse_go_duration(ttl)
            secret = self.new_secret()
            now = self.clock.now()
            self.tokens[token_id] = {
                "id": token_id, "description": description, "ttl": ttl, "ttl_ns": ttl_ns,
                "expires": now + ttl_ns / NS_PER_SECOND, "allow_path_patterns": list(allow_path_patterns),
                "uses": 0, "metadata": self._metadata("seed"), "secret": secret, "previous": [],
            }
            self._issued(self.tokens[token_id])
            if system_of(token_id):
                self.add_system(system_of(token_id))
            for role_id, kind, rid in roles:
                if role_id not in ROLES or ROLES[role_id][0] != kind:
                    raise ValueError(f"role {role_id!r} does not apply to resource kind {kind!r}")
                if kind == "system":
                    self.add_system(rid)
                subject = {"kind": "token", "id": token_id}
                binding = self._find_binding(kind, rid, role_id)
                if binding is None:
                    binding_id = self.request_id()
                    self.bindings[binding_id] = {"id": binding_id, "resource_filter": {"kind": kind, "id": rid}, "role_id": role_id,
                                                 "subjects": [subject], "metadata": self._metadata("seed")}
                elif subject not in binding["subjects"]:
                    binding["subjects"].append(subject)
        self.save_state()
        return secret

    def token(self, token_id: str) -> dict | None:
        """A copy of the stored record (epoch floats, `secret`, `previous`), or None."""
        with self.lock:
            token = self.tokens.get(token_id)
            return copy.deepcopy(token) if token is not None else None

    def secret_works(self, secret: str) -> bool:
        with self.lock:
            return self._find_by_secret(secret) is not None

    def bindings_for(self, token_id: str) -> list[tuple[str, str, str]]:
        with self.lock:
            return sorted(self._roles_of(token_id))

    # ---- persistence ------------------------------------------------------------------------

    def dump_state(self) -> dict:
        return copy.deepcopy({"tokens": self.tokens, "bindings": self.bindings, "systems": self.systems})

    def load_state(self, state: dict) -> None:
        self.tokens = copy.deepcopy(state.get("tokens", {}))
        self._by_secret = {}
        for token in self.tokens.values():
            self._issued(token)
            for old in token.get("previous", []):
                self._by_secret[old["secret"]] = token
        self.bindings = copy.deepcopy(state.get("bindings", {}))
        self.systems = copy.deepcopy(state.get("systems", {}))


def _unique(subjects: list[dict]) -> list[dict]:
    result: list[dict] = []
    for subject in subjects:
        if subject not in result:
            result.append(subject)
    return result
