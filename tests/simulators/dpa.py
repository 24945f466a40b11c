"""SolarWinds DPA simulator: refresh tokens, the OAuth token exchange and the monitor-information endpoints.

Tuned to ../shared/api/dpa.md (sections 2.3-2.8), never to the module. Refresh tokens are made in
DPA's web interface, so no HTTP route creates or deletes them: tests call `issue_refresh_token()`
and `delete_refresh_token()` as an administrator would click. `reboot()` kills every access token.

Every behaviour section 2.9 leaves open is a switch:

    bad_refresh_status  400 | 401: the answer to a bad, expired or deleted refresh token (q1)
    bad_access_status   401 | 403: the answer to an unknown, expired or revoked access token (q1)
    error_style         "oauth2" ({"error", "error_description"}) | "spring" (Spring Boot's
                        {"timestamp", "status", "error", "message", "path"}) (q1)
    token_response      "full" (with id, userType, jti, as the PSDPA fixture) | "minimal"
                        (access_token, token_type and expires_in only) (q4)
    access_lifetime     seconds an access token lives on the server (docs 900, fixture 365) (q4, q6)
    expires_in_field    "seconds" | "absent": whether the exchange says how long the access token lives (q4)
    token_type          "bearer" (the fixture) | "Bearer" (q4)
    monitor_access      "allowed" | "forbidden": whether the access token may read monitor information (q5)

Refresh-token claims (q3) are per token: `issue_refresh_token(iat=False)` leaves `iat` out, and
`lifetime=None` leaves `exp` out (a token that never expires).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import http
import json
import secrets
import urllib.parse
import uuid

from tests.simulators.base import HttpError, SimServer, rfc3339

API = "/iwc/api"
DEFAULT_REFRESH_LIFETIME = 90 * 86400      # API_REFRESH_TOKEN_EXPIRATION default (dpa.md 2.5)

SWITCH_DEFAULTS = {
    "bad_refresh_status": 400,
    "bad_access_status": 401,
    "error_style": "oauth2",
    "token_response": "full",
    "access_lifetime": 900,
    "expires_in_field": "seconds",
    "token_type": "bearer",
    "monitor_access": "allowed",
}
_SWITCH_CHOICES = {"bad_refresh_status": (400, 401), "bad_access_status": (401, 403), "error_style": ("oauth2", "spring"),
                   "token_response": ("full", "minimal"), "expires_in_field": ("seconds", "absent"),
                   "token_type": ("bearer", "Bearer"), "monitor_access": ("allowed", "forbidden")}

# Monitor objects with the fields of the PSDPA fixtures (dpa.md 2.4).
MONITORS = [
    {"dbId": 1, "name": "PAYMENTS-SQL01", "ip": "10.0.0.11", "jdbcUrlProperties": "", "connectionProperties": "",
     "databaseType": "SQL Server", "databaseVersion": "15.0.4153.1", "databaseEdition": "Enterprise Edition",
     "monitoringUser": "dpa_monitor", "defaultDbLicenseCategory": "DPACAT2", "assignedDbLicenseCategory": "DPACAT2",
     "assignedVmLicenseCategory": None, "monitorState": "Monitor Running", "oldestMonitoringDate": "2024-01-02T00:00:00Z",
     "latestMonitoringDate": "2024-06-30T12:00:00Z", "agListenerName": None, "agClusterName": None, "agName": None,
     "racInfo": None, "rac": False, "linkedToVirtualMachine": False, "rds": False, "pdb": False, "ebusiness": False},
    {"dbId": 2, "name": "ORDERS-ORA", "ip": "10.0.0.12", "jdbcUrlProperties": "", "connectionProperties": "",
     "databaseType": "Oracle", "databaseVersion": "19.0.0.0", "databaseEdition": "Enterprise Edition",
     "monitoringUser": "DPA_MON", "defaultDbLicenseCategory": "DPACAT1", "assignedDbLicenseCategory": "DPACAT1",
     "assignedVmLicenseCategory": None, "monitorState": "Monitor Stopped", "oldestMonitoringDate": "2024-02-01T00:00:00Z",
     "latestMonitoringDate": "2024-05-01T00:00:00Z", "agListenerName": None, "agClusterName": None, "agName": None,
     "racInfo": None, "rac": False, "linkedToVirtualMachine": True, "rds": False, "pdb": False, "ebusiness": False},
]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_jwt(header: dict, payload: dict, key: bytes) -> str:
    """An HS256 JWT: base64url(header).base64url(payload).base64url(HMAC-SHA256)."""
    signing_input = b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        b64url(json.dumps(payload, separators=(",", ":")).encode())
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def verify_jwt(token: str, key: bytes) -> dict | None:
    """The payload of an HS256 JWT signed with key, or None (malformed or forged)."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        return None
    expected = hmac.new(key, (parts[0] + "." + parts[1]).encode("ascii", "replace"), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(expected, b64url_decode(parts[2])):
            return None
        header = json.loads(b64url_decode(parts[0]))
        payload = json.loads(b64url_decode(parts[1]))
    except (ValueError, TypeError):
        return None
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(payload, dict):
        return None
    return payload


class DpaSimulator(SimServer):
    name = "dpa"

    def __init__(self, clock=None, tls=False, state_file=None, tls_dir=None, **switches):
        super().__init__(clock=clock, tls=tls, state_file=state_file, tls_dir=tls_dir)
        unknown = set(switches) - set(SWITCH_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown DpaSimulator switches: {sorted(unknown)}")
        for name, default in SWITCH_DEFAULTS.items():
            setattr(self, name, copy.deepcopy(switches.get(name, default)))
        for name, choices in _SWITCH_CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}")
        if not isinstance(self.access_lifetime, int) or self.access_lifetime <= 0:
            raise ValueError("access_lifetime must be a positive number of seconds")
        self.signing_key = secrets.token_bytes(32)
        self.refresh_tokens: dict[str, dict] = {}     # jti -> {"token", "name", "iat", "exp", "deleted"}
        self.access_tokens: dict[str, dict] = {}      # access token -> {"refresh", "expires"}; a restart loses them
        self.route("POST", rf"^{API}/security/oauth/token$", self._exchange)
        self.route("GET", rf"^{API}/databases/monitor-information$", self._monitors)
        self.route("GET", rf"^{API}/databases/(?P<db>[^/]+)/monitor-information$", self._monitor)

    # ---- bodies -----------------------------------------------------------------------------

    def _error(self, status: int, code: str, message: str, path: str = "") -> HttpError:
        if self.error_style == "spring":
            body = {"timestamp": rfc3339(self.clock.now()), "status": status, "error": http.HTTPStatus(status).phrase,
                    "message": message, "path": path}
        else:
            body = {"error": code, "error_description": message}
        return HttpError(status, message, body=body)

    def error_body(self, status, message):
        return self._error(status, http.HTTPStatus(status).phrase.lower().replace(" ", "_"), message).body

    def not_found(self, req):
        # Spring Boot's whitelabel answer for a path no controller serves: there is no refresh-token API (dpa.md 2.3).
        return 404, {"timestamp": rfc3339(self.clock.now()), "status": 404, "error": "Not Found", "message": "No message available",
                     "path": req.path}, {}

    # ---- POST /security/oauth/token ---------------------------------------------------------

    def _live_refresh(self, token: str) -> dict | None:
        payload = verify_jwt(token, self.signing_key)
        record = self.refresh_tokens.get((payload or {}).get("jti"))
        if record is None or not hmac.compare_digest(record["token"], token) or record["deleted"]:
            return None
        if record["exp"] is not None and self.clock.now() >= record["exp"]:
            return None
        return record

    def _exchange(self, req):
        content_type = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        form = urllib.parse.parse_qs(req.body.decode("utf-8", "replace")) if content_type == "application/x-www-form-urlencoded" else {}
        grant_type = (form.get("grant_type") or [None])[0]
        if grant_type is None:
            raise self._error(400, "invalid_request", "Missing grant type", req.path)
        if grant_type != "refresh_token":
            raise self._error(400, "unsupported_grant_type", f"Unsupported grant type: {grant_type}", req.path)
        record = self._live_refresh((form.get("refresh_token") or [""])[0])
        if record is None:
            # One answer for bad, expired and deleted tokens: the server does not say which (dpa.md 2.6 INF).
            raise self._error(self.bad_refresh_status, "invalid_grant", "Invalid refresh token", req.path)
        now = self.clock.now()
        jti = str(uuid.uuid4())
        expires = now + self.access_lifetime
        access = sign_jwt({"alg": "HS256", "typ": "JWT"},
                          {"user_name": record["name"], "scope": [], "id": -1, "exp": int(expires), "jti": jti}, self.signing_key)
        self.issued.add(access)
        self.access_tokens[access] = {"refresh": record["jti"], "expires": expires}
        body = {"access_token": access, "token_type": self.token_type}
        if self.expires_in_field == "seconds":
            body["expires_in"] = self.access_lifetime
        if self.token_response == "full":
            body.update(id=-1, userType="repo", jti=jti)
        return 200, body, {}

    # ---- resources --------------------------------------------------------------------------

    def _authenticate(self, req) -> dict:
        scheme, _space, token = (req.header("Authorization") or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self._error(401, "unauthorized", "Full authentication is required to access this resource", req.path)
        access = self.access_tokens.get(token)
        if access is None or self.clock.now() >= access["expires"]:
            raise self._error(self.bad_access_status, "invalid_token", "Invalid access token", req.path)
        # An access token dies with its refresh token: deleted or expired (dpa.md 2.5).
        refresh = self.refresh_tokens.get(access["refresh"])
        if refresh is None or refresh["deleted"] or (refresh["exp"] is not None and self.clock.now() >= refresh["exp"]):
            raise self._error(self.bad_access_status, "invalid_token", "Invalid access token", req.path)
        if self.monitor_access == "forbidden":
            raise self._error(403, "access_denied", "Access is denied", req.path)
        return access

    def _monitors(self, req):
        self._authenticate(req)
        return 200, {"data": copy.deepcopy(MONITORS)}, {}

    def _monitor(self, req):
        self._authenticate(req)
        for monitor in MONITORS:
            if str(monitor["dbId"]) == req.params["db"]:
                return 200, {"data": copy.deepcopy(monitor)}, {}
        # PSDPA treats 422 as "no such database" (dpa.md 2.3).
        raise self._error(422, "unprocessable_entity", f"Database {req.params['db']} not found", req.path)

    # ---- what an administrator does in the web interface (not HTTP) -------------------------

    def issue_refresh_token(self, name: str, lifetime: float | None = DEFAULT_REFRESH_LIFETIME, expires_at: float | None = None,
                            iat: bool = True) -> str:
        """Options > Refresh Token Management > Create token. Returns the token string (shown once).

        lifetime: seconds from now, or None for a token that never expires; expires_at overrides it.
        """
        with self.lock:
            now = int(self.clock.now())
            exp = int(expires_at) if expires_at is not None else (now + int(lifetime) if lifetime is not None else None)
            jti = str(uuid.uuid4())
            payload = {"sub": name}
            if iat:
                payload["iat"] = now
            if exp is not None:
                payload["exp"] = exp
            payload["jti"] = jti
            token = sign_jwt({"alg": "HS256"}, payload, self.signing_key)
            self.refresh_tokens[jti] = {"jti": jti, "token": token, "name": name, "iat": now if iat else None, "exp": exp,
                                        "deleted": False}
            self.issued.add(token)
        self.save_state()
        return token

    def delete_refresh_token(self, token: str) -> None:
        """Options > Refresh Token Management > Delete: its access tokens die with it."""
        with self.lock:
            payload = verify_jwt(token, self.signing_key) or {}
            self.refresh_tokens[payload["jti"]]["deleted"] = True
        self.save_state()

    def reboot(self) -> None:
        """A DPA server restart: every access token is invalid afterwards (dpa.md 2.5)."""
        with self.lock:
            self.access_tokens.clear()

    def refresh_token_works(self, token: str) -> bool:
        with self.lock:
            return self._live_refresh(token) is not None

    def access_token_works(self, token: str) -> bool:
        with self.lock:
            access = self.access_tokens.get(token)
            if access is None or self.clock.now() >= access["expires"]:
                return False
            refresh = self.refresh_tokens.get(access["refresh"])
            return bool(refresh) and not refresh["deleted"] and (refresh["exp"] is None or self.clock.now() < refresh["exp"])

    def live_refresh_token(self, name: str) -> str | None:
        """The newest working refresh token with this name, or None."""
        with self.lock:
            found = [r for r in self.refresh_tokens.values() if r["name"] == name and self._live_refresh(r["token"])]
            return max(found, key=lambda r: r["iat"] or 0)["token"] if found else None

    # ---- persistence: refresh tokens survive a restart, access tokens do not (a restart is a reboot) ----

    def dump_state(self) -> dict:
        return {"signing_key": self.signing_key.hex(), "refresh_tokens": copy.deepcopy(self.refresh_tokens)}

    def load_state(self, state: dict) -> None:
        if state.get("signing_key"):
            self.signing_key = bytes.fromhex(state["signing_key"])
        self.refresh_tokens = copy.deepcopy(state.get("refresh_tokens", {}))
        self.access_tokens = {}
