"""Delinea Secret Server simulator: OAuth2 password and refresh grants, oauth-expiration, users/current,
version, healthcheck, and the Delinea Platform host (client-credentials grant and the vault broker).

Tuned to ../shared/api/secretserver.md (1.1-1.5 and the behaviour model of 1.9), never to the module.

Server settings (what an administrator configures, 1.5):

    base_path          IIS application path of an on-premises install ("/SecretServer"; "" for cloud)
    session_timeout_s  Session Timeout for Webservices: the access-token lifetime (None: unlimited)
    refresh_enabled    Enable Refresh Tokens for Web Services
    max_refreshes      Maximum Token Refreshes Allowed (the maintainer's default: 3)

Every behaviour the documentation leaves open (1.10 and the [INF]/[UNK] notes) is a switch:

    auth_fail_status                  403 | 401 for a missing, unknown or dead token on /api/v1 (q7)
    refresh_revokes_previous_access   whether a refresh kills the access token of the refresh token's grant (q2)
    expiration_kills_refresh          whether oauth-expiration also kills the session's unused refresh token (q2)
    token_errors                      situation -> [status, `error` string] of /oauth2/token failures (q1)
    expires_in_skew                   added to the session timeout in `expires_in` (0: 1200, -1: 1199) (q3)
    unlimited_expires_in              `expires_in` when the timeout is unlimited (q3)
    refresh_token_when_disabled       "absent" | "null": the `refresh_token` key without refresh tokens (1.3)
    refresh_token_at_cap              "issued" | "omitted": a new refresh token from the refresh that reaches the cap (1.5)
    refresh_before_expiry             whether a refresh is accepted while its access token still lives (1.5 INF)
    token_type                        "bearer" | "Bearer" (1.3)
    accept_json_body                  whether /oauth2/token also takes a JSON body (q6; strict by default)
    version_anonymous                 whether GET /api/v1/version works without a token (q4)
    version_shape                     "both" | "flat" | "model": where `version` sits in its body (1.4)
    healthcheck_keys                  "both" | "lower" | "upper": `healthy` / `Healthy` (q5)
    password_change_kills_sessions    whether changing a user's password ends its tokens (not documented)
    platform_extra_fields             whether the platform's token response carries refresh_token, id_token,
                                      session_expires_in as the Go SDK models them (1.3)
"""

from __future__ import annotations

import copy
import hmac
import secrets
import urllib.parse
import uuid

from tests.simulators.base import HttpError, Request, SimServer, rfc3339

# The /oauth2/token failures and their answers. Only "Login failed." is seen in real output (1.4, 3P);
# the rest are [UNK] and switchable as a whole.
DEFAULT_TOKEN_ERRORS = {
    "login": [400, "Login failed."],
    "otp": [400, "Login failed."],
    "refresh_unknown": [400, "invalid_grant"],
    "refresh_used": [400, "invalid_grant"],
    "refresh_expired": [400, "invalid_grant"],
    "refresh_capped": [400, "invalid_grant"],
    "refresh_disabled": [400, "invalid_grant"],
    "refresh_early": [400, "invalid_grant"],
    "grant_type": [400, "unsupported_grant_type"],
    "content_type": [400, "invalid_request"],
}
AUTH_FAILED = "Authentication failed or expired token."
VERSION = "11.7.000002"
REFRESH_GRACE_S = 900          # refresh-token TTL = APISessionTimeout + 15 minutes (1.5)
PLATFORM_TOKEN_TTL_S = 3600    # 1.9.8

SWITCH_DEFAULTS = {
    "auth_fail_status": 403,
    "refresh_revokes_previous_access": False,
    "expiration_kills_refresh": True,
    "token_errors": DEFAULT_TOKEN_ERRORS,
    "expires_in_skew": 0,
    "unlimited_expires_in": 31536000,
    "refresh_token_when_disabled": "absent",
    "refresh_token_at_cap": "issued",
    "refresh_before_expiry": True,
    "token_type": "bearer",
    "accept_json_body": False,
    "version_anonymous": False,
    "version_shape": "both",
    "healthcheck_keys": "both",
    "password_change_kills_sessions": False,
    "platform_extra_fields": False,
}
_SWITCH_CHOICES = {
    "auth_fail_status": (401, 403),
    "refresh_token_when_disabled": ("absent", "null"),
    "refresh_token_at_cap": ("issued", "omitted"),
    "token_type": ("bearer", "Bearer"),
    "version_shape": ("both", "flat", "model"),
    "healthcheck_keys": ("both", "lower", "upper"),
}


class SecretServerSimulator(SimServer):
    """One Secret Server; with `platform=True` also the Delinea Platform tenant in front of it (a second port)."""

    name = "secretserver"
    redact_headers = SimServer.redact_headers | {"otp"}

    def __init__(self, clock=None, tls=False, state_file=None, tls_dir=None, base_path="/SecretServer",
                 session_timeout_s=1200, refresh_enabled=True, max_refreshes=3, platform=False, **switches):
        super().__init__(clock=clock, tls=tls, state_file=state_file, tls_dir=tls_dir)
        unknown = set(switches) - set(SWITCH_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown SecretServerSimulator switches: {sorted(unknown)}")
        for name, default in SWITCH_DEFAULTS.items():
            setattr(self, name, copy.deepcopy(switches.get(name, default)))
        for name, choices in _SWITCH_CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}")
        self.token_errors = {**copy.deepcopy(DEFAULT_TOKEN_ERRORS), **self.token_errors}
        self.base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self.session_timeout_s = session_timeout_s
        self.refresh_enabled = refresh_enabled
        self.max_refreshes = max_refreshes
        self.users: dict[str, dict] = {}             # lower-case username -> user
        self.access: dict[str, dict] = {}            # access token -> session facts
        self.refresh: dict[str, dict] = {}           # refresh token -> chain facts
        self.grants: list[dict] = []                 # every /oauth2/token answer, without secrets
        self.platform = PlatformSimulator(self, tls=tls, tls_dir=tls_dir) if platform else None

        base = self.base_path
        self.route("POST", rf"^{base}/oauth2/token$", self._token)
        self.route("GET", rf"^{base}/api/v1/healthcheck$", self._healthcheck)
        self.route("GET", rf"^{base}/api/v1/version$", self._version)
        self.route("GET", rf"^{base}/api/v1/users/current$", self._current_user)
        self.route("POST", rf"^{base}/api/v1/oauth-expiration$", self._expire)

    # ---- lifecycle: the platform host starts and stops with the server -------------------------

    def start(self, port: int = 0) -> str:
        url = super().start(port)
        if self.platform is not None:
            self.platform.start()
        return url

    def stop(self) -> None:
        if self.platform is not None:
            self.platform.stop()
        super().stop()

    @property
    def api_url(self) -> str:
        """What a client is configured with: scheme, host, port and the application path."""
        return f"{self.base_url}{self.base_path}"

    @property
    def platform_url(self) -> str | None:
        return self.platform.base_url if self.platform is not None else None

    # ---- bodies -----------------------------------------------------------------------------

    def error_body(self, status, message):
        # BadRequestResponse / AuthenticationFailedResponse / the 500 shape all carry `message` (1.4).
        return {"message": message}

    def _token_error(self, situation: str, user: str | None, grant: str) -> HttpError:
        status, error = self.token_errors[situation]
        self.grants.append({"grant": grant, "user": user, "at": self.clock.now(), "ok": False, "reason": situation})
        return HttpError(int(status), error, body={"error": error})

    def _auth_failed(self) -> HttpError:
        return HttpError(self.auth_fail_status, AUTH_FAILED)

    # ---- users ------------------------------------------------------------------------------

    def add_user(self, username: str, password: str, domain: str | None = None, otp: bool = False,
                 user_id: int | None = None) -> dict:
        """A local (or, with `domain`, an AD) user; with `otp` every login needs a code from new_otp()."""
        with self.lock:
            user = {"id": user_id or len(self.users) + 2, "username": username, "password": password, "domain": domain,
                    "otp": otp, "otp_codes": [], "display_name": username.replace(".", " ").title()}
            self.users[username.lower()] = user
        self.save_state()
        return user

    def new_otp(self, username: str, code: str | None = None) -> str:
        """A one-time code for the user (six digits unless given), accepted once.

        Six-digit codes are not canaries: such a number turns up in -vvvv output by chance. The leak test
        passes a code of its own that cannot.
        """
        code = code or "%06d" % secrets.randbelow(10**6)
        with self.lock:
            self.users[username.lower()]["otp_codes"].append(code)
        self.save_state()
        return code

    def set_password(self, username: str, password: str) -> None:
        with self.lock:
            user = self.users[username.lower()]
            user["password"] = password
            if self.password_change_kills_sessions:
                for session in list(self.access.values()) + list(self.refresh.values()):
                    if session["user"] == user["username"]:
                        session["alive"] = False
        self.save_state()

    # ---- /oauth2/token ----------------------------------------------------------------------

    def _form(self, req: Request) -> dict:
        content_type = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type == "application/x-www-form-urlencoded":
            fields = urllib.parse.parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
            return {k: v[0] for k, v in fields.items()}
        if content_type == "application/json" and self.accept_json_body:
            body = req.json()
            if isinstance(body, dict):
                return {k: str(v) for k, v in body.items() if v is not None}
        raise self._token_error("content_type", None, "unknown")

    def _token(self, req: Request):
        form = self._form(req)
        grant = form.get("grant_type")
        if grant == "password":
            return self._password_grant(req, form)
        if grant == "refresh_token":
            return self._refresh_grant(form)
        raise self._token_error("grant_type", None, grant or "missing")

    def _login(self, req: Request, form: dict) -> dict:
        username = form.get("username") or ""
        user = self.users.get(username.lower())
        domain = (form.get("domain") or "").lower() or None
        if (user is None or not hmac.compare_digest(user["password"].encode(), (form.get("password") or "").encode())
                or (user["domain"] or "").lower() != (domain or "")):
            raise self._token_error("login", username, "password")
        if user["otp"]:
            code = (req.header("OTP") or "").strip()
            if code not in user["otp_codes"]:
                raise self._token_error("otp", username, "password")
            user["otp_codes"].remove(code)   # single use
        return user

    def _refresh_possible(self, username: str) -> bool:
        """Whether the user holds a refresh token the server would accept now: the fact a client that logs in
        with the password grant instead of refreshing ignores."""
        return any(rt["user"] == username and self._refresh_refusal(rt) is None for rt in self.refresh.values())

    def _password_grant(self, req: Request, form: dict):
        user = self._login(req, form)
        now = self.clock.now()
        self.grants.append({"grant": "password", "user": user["username"], "at": now, "ok": True,
                            "refresh_possible": self._refresh_possible(user["username"])})
        return 200, self._issue(user["username"], chain=str(uuid.uuid4()), count=0), {}

    def _refresh_refusal(self, rt: dict) -> str | None:
        now = self.clock.now()
        if not self.refresh_enabled or self.session_timeout_s is None:
            return "refresh_disabled"
        if rt["used"] or not rt["alive"]:
            return "refresh_used"
        if now >= rt["expires"]:
            return "refresh_expired"
        if rt["count"] >= self.max_refreshes:
            return "refresh_capped"
        access = self.access.get(rt["access"])
        if not self.refresh_before_expiry and access is not None and now < access["expires"]:
            return "refresh_early"
        return None

    def _refresh_grant(self, form: dict):
        value = form.get("refresh_token") or ""
        rt = self.refresh.get(value)
        if rt is None:
            raise self._token_error("refresh_unknown", None, "refresh")
        refusal = self._refresh_refusal(rt)
        if refusal:
            raise self._token_error(refusal, rt["user"], "refresh")
        rt["used"] = True   # single use (1.5)
        if self.refresh_revokes_previous_access and rt["access"] in self.access:
            self.access[rt["access"]]["alive"] = False
        self.grants.append({"grant": "refresh", "user": rt["user"], "at": self.clock.now(), "ok": True, "count": rt["count"] + 1})
        return 200, self._issue(rt["user"], chain=rt["chain"], count=rt["count"] + 1), {}

    def _issue(self, username: str, chain: str, count: int) -> dict:
        now = self.clock.now()
        unlimited = self.session_timeout_s is None
        lifetime = self.unlimited_expires_in if unlimited else self.session_timeout_s + self.expires_in_skew
        access = self.new_secret()
        self.access[access] = {"user": username, "issued": now, "expires": now + (lifetime if not unlimited else 10**10),
                               "alive": True, "chain": chain, "kind": "secretserver"}
        body = {"access_token": access, "token_type": self.token_type, "expires_in": lifetime}
        if self.refresh_enabled and not unlimited:
            if count < self.max_refreshes or self.refresh_token_at_cap == "issued":
                refresh = self.new_secret()
                self.refresh[refresh] = {"user": username, "expires": now + self.session_timeout_s + REFRESH_GRACE_S,
                                         "used": False, "alive": True, "chain": chain, "count": count, "access": access}
                body["refresh_token"] = refresh
        elif self.refresh_token_when_disabled == "null":
            body["refresh_token"] = None
        return body

    # ---- /api/v1 ----------------------------------------------------------------------------

    def _session(self, req: Request) -> dict:
        scheme, _space, token = (req.header("Authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self._auth_failed()
        for known, session in self.access.items():
            if hmac.compare_digest(known, token):
                if not session["alive"] or self.clock.now() >= session["expires"]:
                    raise self._auth_failed()
                return session
        raise self._auth_failed()

    def _healthcheck(self, req: Request):
        now = self.clock.now()
        body = {"databaseHealthy": True, "serviceBusHealthy": True, "storageAccountHealthy": True,
                "scheduledForDeletion": False, "readOnlyMode": False, "now": rfc3339(now), "utcNow": rfc3339(now)}
        if self.healthcheck_keys in ("both", "lower"):
            body["healthy"] = True
        if self.healthcheck_keys in ("both", "upper"):
            body["Healthy"] = True
        return 200, body, {}

    def _version(self, req: Request):
        if not self.version_anonymous:
            self._session(req)
        body = {}
        if self.version_shape in ("both", "flat"):
            body["version"] = VERSION
        if self.version_shape in ("both", "model"):
            body["model"] = {"version": VERSION}
        return 200, body, {}

    def _current_user(self, req: Request):
        session = self._session(req)
        user = self.users.get(session["user"].lower()) or {"id": 1, "username": session["user"], "display_name": session["user"], "domain": None}
        return 200, {"id": user["id"], "userName": user["username"], "displayName": user["display_name"],
                     "emailAddress": f"{user['username']}@example.test", "domainId": -1 if not user.get("domain") else 1,
                     "permissions": [], "dateOptionId": -1, "timeOptionId": -1, "userLcid": 0, "isApplicationAccount": False}, {}

    def _expire(self, req: Request):
        session = self._session(req)
        session["alive"] = False
        if self.expiration_kills_refresh:
            for rt in self.refresh.values():
                if rt["chain"] == session["chain"] and not rt["used"]:
                    rt["alive"] = False
        return 200, True, {}

    # ---- test helpers (not HTTP) ------------------------------------------------------------

    def token_works(self, token: str | None) -> bool:
        """Whether GET users/current would accept this access token now."""
        with self.lock:
            session = self.access.get(token or "")
            return bool(session and session["alive"] and self.clock.now() < session["expires"])

    def refresh_usable(self, token: str | None) -> bool:
        with self.lock:
            rt = self.refresh.get(token or "")
            return rt is not None and self._refresh_refusal(rt) is None

    def count_grants(self, grant: str | None = None, ok: bool | None = True, user: str | None = None) -> int:
        with self.lock:
            return sum(1 for g in self.grants if (grant is None or g["grant"] == grant) and (ok is None or g["ok"] == ok)
                       and (user is None or g["user"] == user))

    def expire_all(self, username: str) -> None:
        """An administrator ends every session of a user (as after a lock-out)."""
        with self.lock:
            for session in list(self.access.values()) + list(self.refresh.values()):
                if session["user"] == username:
                    session["alive"] = False
        self.save_state()

    # ---- persistence ------------------------------------------------------------------------

    def dump_state(self) -> dict:
        state = {"users": self.users, "access": self.access, "refresh": self.refresh, "grants": self.grants[-1000:]}
        if self.platform is not None:
            state["service_users"] = self.platform.service_users
        return copy.deepcopy(state)

    def load_state(self, state: dict) -> None:
        self.users = copy.deepcopy(state.get("users", {}))
        self.access = copy.deepcopy(state.get("access", {}))
        self.refresh = copy.deepcopy(state.get("refresh", {}))
        self.grants = copy.deepcopy(state.get("grants", []))
        if self.platform is not None:
            self.platform.service_users = copy.deepcopy(state.get("service_users", {}))


class PlatformSimulator(SimServer):
    """The Delinea Platform tenant (1.9.8): client-credentials tokens that Secret Server, its vault, accepts."""

    name = "secretserver-platform"

    def __init__(self, server: SecretServerSimulator, tls=False, tls_dir=None):
        super().__init__(clock=server.clock, tls=tls, tls_dir=tls_dir)
        self.server = server
        self.lock = server.lock            # one lock: the two hosts share the sessions
        self.issued = server.issued        # one set of canaries
        self.service_users: dict[str, str] = {}   # client id -> client secret
        self.route("GET", r"^/health$", self._health)
        self.route("POST", r"^/identity/api/oauth2/token/xpmplatform$", self._token)
        self.route("GET", r"^/vaultbroker/api/vaults$", self._vaults)

    def error_body(self, status, message):
        return {"error": "invalid_request", "error_description": message}

    def add_service_user(self, client_id: str, client_secret: str) -> None:
        with self.lock:
            self.service_users[client_id] = client_secret
        self.server.save_state()

    def _health(self, req: Request):
        return 200, "Healthy", {}

    def _token(self, req: Request):
        content_type = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise HttpError(400, "form body expected", body={"error": "invalid_request"})
        form = {k: v[0] for k, v in urllib.parse.parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        if form.get("grant_type") != "client_credentials":
            raise HttpError(400, "unsupported grant", body={"error": "unsupported_grant_type"})
        if form.get("scope") != "xpmheadless":
            raise HttpError(400, "invalid scope", body={"error": "invalid_scope"})
        client_id = form.get("client_id") or ""
        known = self.service_users.get(client_id)
        server = self.server
        if known is None or not hmac.compare_digest(known.encode(), (form.get("client_secret") or "").encode()):
            server.grants.append({"grant": "client_credentials", "user": client_id, "at": self.clock.now(), "ok": False,
                                  "reason": "login"})
            raise HttpError(400, "invalid client", body={"error": "invalid_client"})
        now = self.clock.now()
        access = self.new_secret()
        server.access[access] = {"user": client_id, "issued": now, "expires": now + PLATFORM_TOKEN_TTL_S, "alive": True,
                                 "chain": str(uuid.uuid4()), "kind": "platform"}
        server.grants.append({"grant": "client_credentials", "user": client_id, "at": now, "ok": True})
        body = {"access_token": access, "token_type": "Bearer", "expires_in": PLATFORM_TOKEN_TTL_S, "scope": "xpmheadless"}
        if server.platform_extra_fields:
            body.update(refresh_token=self.new_secret(), id_token=self.new_secret(), session_expires_in=PLATFORM_TOKEN_TTL_S)
        server.save_state()
        return 200, body, {}

    def _vaults(self, req: Request):
        session = self.server._session(req)
        if session["kind"] != "platform":
            raise HttpError(401, "platform token required", body={"error": "invalid_token"})
        vaults = [
            {"vaultId": "7d0c4a53-0000-4000-8000-000000000001", "name": "Retired vault", "type": "SecretServer",
             "isDefault": False, "isGlobalDefault": False, "isActive": False,
             "connection": {"url": "https://retired.invalid/SecretServer", "oAuthProfileId": "retired"}},
            {"vaultId": "7d0c4a53-0000-4000-8000-000000000002", "name": "Secret Server", "type": "SecretServer",
             "isDefault": True, "isGlobalDefault": True, "isActive": True,
             "connection": {"url": self.server.api_url, "oAuthProfileId": "xpm"}},
        ]
        return 200, {"vaults": vaults}, {}
