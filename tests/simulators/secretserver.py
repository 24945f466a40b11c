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
    mislabelled_form_body             "form" | "refuse": what /oauth2/token does with a form-encoded body sent with
                                      Content-Type: application/json, as the vendor's PowerShell sample on the
                                      refresh-token page does (1.2). "form" (the default) reads it as the form it
                                      is: the vendor publishes that sample for real servers. "refuse" is the
                                      strict reading of the label

A minimal secrets API sits behind the same token checks, so the people who use a token can be simulated too
(python-tss-sdk, community.general.tss): secrets by id and by path (`secretPath`), one field's value, search
(`/secrets`, `/secrets/search-total`), folders by id and by path (`folderPath`) and the folder lookup, with the
field and template names of the 11.7 REST API (SecretModel, RestSecretItem, PagingOf...). Seed them with
add_folder() and add_secret(). Every /api/v1 path but healthcheck checks the token first: an unknown route
answers auth_fail_status before 404, as every operation of the vendor's OpenAPI lists 403.
"""

from __future__ import annotations

import copy
import datetime
import hmac
import json
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

# Secret templates of a fresh install (name, field id base, fields as (fieldName, slug, kind)); the slug is the
# lower-case field name with dashes, as the API describes it.
PASSWORD_TEMPLATE = 2
SECRET_TEMPLATES = {
    PASSWORD_TEMPLATE: {"name": "Password", "field_ids": 7, "fields": (
        ("Resource", "resource", "text"), ("Username", "username", "text"), ("Password", "password", "password"),
        ("Notes", "notes", "notes"))},
    6003: {"name": "Windows Account", "field_ids": 108, "fields": (
        ("Machine", "machine", "text"), ("Username", "username", "text"), ("Password", "password", "password"),
        ("Notes", "notes", "notes"))},
}

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
    "mislabelled_form_body": "form",
}
_SWITCH_CHOICES = {
    "auth_fail_status": (401, 403),
    "refresh_token_when_disabled": ("absent", "null"),
    "refresh_token_at_cap": ("issued", "omitted"),
    "token_type": ("bearer", "Bearer"),
    "version_shape": ("both", "flat", "model"),
    "healthcheck_keys": ("both", "lower", "upper"),
    "mislabelled_form_body": ("form", "refuse"),
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
        self.folders: dict[int, dict] = {}           # folder id -> {id, name, parent}
        self.secrets: dict[int, dict] = {}           # secret id -> {id, name, folder, template, values}
        self.platform = PlatformSimulator(self, tls=tls, tls_dir=tls_dir) if platform else None

        base = self.base_path
        self.route("POST", rf"^{base}/oauth2/token$", self._token)
        self.route("GET", rf"^{base}/api/v1/healthcheck$", self._healthcheck)
        self.route("GET", rf"^{base}/api/v1/version$", self._version)
        self.route("GET", rf"^{base}/api/v1/users/current$", self._current_user)
        self.route("POST", rf"^{base}/api/v1/oauth-expiration$", self._expire)
        self.route("GET", rf"^{base}/api/v1/secrets$", self._search_secrets)
        self.route("GET", rf"^{base}/api/v1/secrets/search-total$", self._search_total)
        self.route("GET", rf"^{base}/api/v1/secrets/(?P<id>-?\d+)$", self._get_secret)
        self.route("GET", rf"^{base}/api/v1/secrets/(?P<id>-?\d+)/fields/(?P<slug>[^/]+)$", self._get_field)
        self.route("GET", rf"^{base}/api/v1/folders/lookup$", self._lookup_folders)
        self.route("GET", rf"^{base}/api/v1/folders/(?P<id>-?\d+)$", self._get_folder)

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
        if content_type == "application/json":
            try:
                body = json.loads(req.body) if req.body.strip() else None
            except (ValueError, UnicodeDecodeError):
                body = None
                if self.mislabelled_form_body == "form":
                    # The body is read as a form whatever the label says (PowerShell's Invoke-RestMethod sample).
                    fields = urllib.parse.parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
                    return {k: v[0] for k, v in fields.items()}
            if isinstance(body, dict) and self.accept_json_body:
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

    # ---- /api/v1: unknown routes check the token first ------------------------------------------

    def _api_path(self, req: Request) -> bool:
        prefix = f"{self.base_path}/api/v1/"
        return req.path.startswith(prefix) and req.path != f"{prefix}healthcheck"

    def not_found(self, req: Request):
        if self._api_path(req):
            self._session(req)   # a dead token answers auth_fail_status, not 404: the route is not looked up first
        return 404, {"message": f"No HTTP resource was found that matches the request URI '{req.path}'."}, {}

    def method_not_allowed(self, req: Request, allowed: list[str]):
        if self._api_path(req):
            self._session(req)
        return 405, {"message": f"The requested resource does not support http method '{req.method}'."}, {"Allow": ", ".join(allowed)}

    # ---- /api/v1/secrets and /api/v1/folders -------------------------------------------------

    def _access_denied(self) -> HttpError:
        # Secret Server does not tell a missing secret from one the user may not see [INF]: 400 API_AccessDenied.
        return HttpError(400, "Access Denied", body={"errorCode": "API_AccessDenied", "message": "Access Denied"})

    @staticmethod
    def _int_arg(req: Request, name: str, default: int | None = None) -> int | None:
        value = req.arg(name)
        if value in (None, ""):
            return default
        try:
            return int(value)
        except ValueError:
            raise HttpError(400, f"The value '{value}' is not valid for {name}.",
                            body={"message": "The request is invalid.", "messageDetail": f"{name} must be an integer",
                                  "errorCode": "API_InvalidRequest", "modelState": {name: [f"The value '{value}' is not valid."]}}) from None

    @staticmethod
    def _bool_arg(req: Request, name: str) -> bool:
        return (req.arg(name) or "").lower() == "true"

    def folder_path(self, folder_id: int | None) -> str:
        """`\\Parent\\Child` as the API writes it; "\\" for the root (-1 or None)."""
        names = []
        while folder_id not in (None, -1) and folder_id in self.folders:
            names.append(self.folders[folder_id]["name"])
            folder_id = self.folders[folder_id]["parent"]
        return "\\" + "\\".join(reversed(names))

    @staticmethod
    def _path_key(path: str) -> str:
        # Paths are compared as the SDK sends them: one leading backslash, either slash, case-insensitive.
        return "\\" + "\\".join(part for part in path.replace("/", "\\").split("\\") if part).lower()

    def _secret_by_id_or_path(self, req: Request) -> dict:
        secret_id = int(req.params["id"])
        if secret_id == 0 and req.arg("secretPath"):
            wanted = self._path_key(req.arg("secretPath"))
            found = [s for s in self.secrets.values()
                     if self._path_key(self.folder_path(s["folder"]) + "\\" + s["name"]) == wanted]
            if not found:
                raise self._access_denied()
            return found[0]
        secret = self.secrets.get(secret_id)
        if secret is None or not secret["active"]:
            raise self._access_denied()
        return secret

    @staticmethod
    def _clock_text(epoch: float) -> str:
        # The server's local time without an offset, as Secret Server writes its DateTimes (python-tss-sdk parses
        # lastHeartBeatCheck with "%Y-%m-%dT%H:%M:%S").
        return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")

    def _render_secret(self, secret: dict) -> dict:
        """SecretModel with its RestSecretItem list."""
        template = SECRET_TEMPLATES[secret["template"]]
        items = []
        for index, (field_name, slug, kind) in enumerate(template["fields"]):
            items.append({"itemId": secret["id"] * 100 + index + 1, "fieldId": template["field_ids"] + index,
                          "fileAttachmentId": None, "fieldName": field_name, "slug": slug,
                          "fieldDescription": f"The {field_name.lower()} of the secret.", "filename": None,
                          "itemValue": secret["values"].get(slug, ""), "isFile": False, "isNotes": kind == "notes",
                          "isPassword": kind == "password", "isList": False, "listType": "None"})
        changed = self._clock_text(secret["created"])
        return {
            "id": secret["id"], "name": secret["name"], "secretTemplateId": secret["template"],
            "secretTemplateName": template["name"], "folderId": secret["folder"], "siteId": 1, "active": secret["active"],
            "items": items, "launcherConnectAsSecretId": -1, "checkOutMinutesRemaining": 0, "checkedOut": False,
            "checkOutUserDisplayName": "", "checkOutUserId": -1, "isRestricted": False, "isOutOfSync": False,
            "outOfSyncReason": "", "autoChangeEnabled": False, "autoChangeNextPassword": None,
            "requiresApprovalForAccess": False, "requiresComment": False, "checkOutEnabled": False,
            "checkOutIntervalMinutes": -1, "checkOutChangePasswordEnabled": False, "accessRequestWorkflowMapId": -1,
            "proxyEnabled": False, "sessionRecordingEnabled": False, "restrictSshCommands": False, "jumpboxRouteId": None,
            "allowOwnersUnrestrictedSshCommands": False, "isDoubleLock": False, "doubleLockId": -1,
            "enableInheritPermissions": True, "passwordTypeWebScriptId": -1, "enableInheritSecretPolicy": True,
            "secretPolicyId": -1, "lastHeartBeatStatus": "Pending", "lastHeartBeatCheck": changed,
            "failedPasswordChangeAttempts": 0, "lastPasswordChangeAttempt": changed, "responseCodes": [],
            "webLauncherRequiresIncognitoMode": False,
        }

    def _render_summary(self, secret: dict) -> dict:
        """SecretSummary, a record of the search."""
        return {"id": secret["id"], "name": secret["name"], "secretTemplateId": secret["template"],
                "secretTemplateName": SECRET_TEMPLATES[secret["template"]]["name"], "folderId": secret["folder"],
                "folderPath": self.folder_path(secret["folder"]), "siteId": 1, "active": secret["active"],
                "checkedOut": False, "isRestricted": False, "isOutOfSync": False, "outOfSyncReason": "",
                "lastHeartBeatStatus": "Pending", "lastPasswordChangeAttempt": None, "responseCodes": [],
                "lastAccessed": None, "extendedFields": None, "checkOutEnabled": False, "autoChangeEnabled": False,
                "doubleLockEnabled": False, "requiresApproval": False, "requiresComment": False,
                "inheritsPermissions": True, "hidePassword": False, "createDate": self._clock_text(secret["created"]),
                "daysUntilExpiration": None, "hasLauncher": False, "checkOutUserId": -1, "checkOutUserName": ""}

    @staticmethod
    def _page(records: list, skip: int, take: int, total: int) -> dict:
        """The PagingOf... envelope every list of the API shares."""
        return {"records": records, "total": total, "skip": skip, "take": take, "hasNext": skip + len(records) < total,
                "hasPrev": skip > 0, "nextSkip": skip + len(records), "prevSkip": max(skip - take, 0),
                "pageCount": (total + take - 1) // take if take else 0, "currentPage": skip // take if take else 0,
                "batchCount": (total + take - 1) // take if take else 0, "sortBy": [], "success": True, "severity": "None"}

    def _matching_secrets(self, req: Request) -> list[dict]:
        text = (req.arg("filter.searchText") or "").lower()
        folder = self._int_arg(req, "filter.folderId")
        include_sub = self._bool_arg(req, "filter.includeSubFolders")
        include_inactive = self._bool_arg(req, "filter.includeInactive")
        template = self._int_arg(req, "filter.secretTemplateId")

        def in_folder(folder_id):
            if folder is None:
                return True
            while folder_id not in (None, -1):
                if folder_id == folder:
                    return True
                if not include_sub:
                    return False
                folder_id = self.folders.get(folder_id, {}).get("parent")
            return False

        return [s for _sid, s in sorted(self.secrets.items())
                if (s["active"] or include_inactive) and in_folder(s["folder"]) and (template is None or s["template"] == template)
                and (not text or text in s["name"].lower())]

    def _search_secrets(self, req: Request):
        self._session(req)
        found = self._matching_secrets(req)
        skip, take = self._int_arg(req, "skip", 0), self._int_arg(req, "take", 10)
        return 200, self._page([self._render_summary(s) for s in found[skip:skip + take]], skip, take, len(found)), {}

    def _search_total(self, req: Request):
        self._session(req)
        return 200, len(self._matching_secrets(req)), {}

    def _get_secret(self, req: Request):
        self._session(req)
        return 200, self._render_secret(self._secret_by_id_or_path(req)), {}

    def _get_field(self, req: Request):
        self._session(req)
        secret = self._secret_by_id_or_path(req)
        slugs = [slug for _name, slug, _kind in SECRET_TEMPLATES[secret["template"]]["fields"]]
        if req.params["slug"] not in slugs:
            raise HttpError(400, "Field not found", body={"errorCode": "API_FieldNotFound", "message": "Field not found"})
        return 200, secret["values"].get(req.params["slug"], ""), {}

    def _render_folder(self, folder_id: int, children: bool) -> dict:
        folder = self.folders[folder_id]
        body = {"id": folder_id, "folderName": folder["name"], "folderPath": self.folder_path(folder_id),
                "parentFolderId": folder["parent"], "folderTypeId": 1, "secretPolicyId": -1, "inheritSecretPolicy": True,
                "inheritPermissions": True, "childFolders": None, "secretTemplates": None}
        if children:
            body["childFolders"] = [self._render_folder(fid, True) for fid in sorted(self.folders) if self.folders[fid]["parent"] == folder_id]
            body["secretTemplates"] = [{"id": tid, "name": t["name"]} for tid, t in sorted(SECRET_TEMPLATES.items())]
        return body

    def _get_folder(self, req: Request):
        self._session(req)
        folder_id = int(req.params["id"])
        if folder_id == 0 and req.arg("folderPath"):
            wanted = self._path_key(req.arg("folderPath"))
            folder_id = next((fid for fid in self.folders if self._path_key(self.folder_path(fid)) == wanted), None)
        if folder_id not in self.folders:
            raise self._access_denied()
        return 200, self._render_folder(folder_id, self._bool_arg(req, "getAllChildren")), {}

    def _lookup_folders(self, req: Request):
        """PagingOfFolderLookup: {id, value} records."""
        self._session(req)
        text = (req.arg("filter.searchText") or "").lower()
        parent = self._int_arg(req, "filter.parentFolderId")
        direct = self._bool_arg(req, "filter.limitToDirectDescendents")

        def under(folder_id):
            current = self.folders[folder_id]["parent"]
            if parent is None:
                return True
            if direct:
                return current == parent
            while current not in (None, -1):
                if current == parent:
                    return True
                current = self.folders.get(current, {}).get("parent")
            return False

        found = [fid for fid in sorted(self.folders) if under(fid) and (not text or text in self.folders[fid]["name"].lower())]
        skip, take = self._int_arg(req, "skip", 0), self._int_arg(req, "take", 10)
        records = [{"id": fid, "value": self.folders[fid]["name"]} for fid in found[skip:skip + take]]
        return 200, self._page(records, skip, take, len(found)), {}

    def add_folder(self, name: str, parent: int = -1) -> int:
        """A folder (under the root, -1, unless `parent`); returns its id."""
        with self.lock:
            folder_id = max(list(self.folders) + [0]) + 1
            self.folders[folder_id] = {"name": name, "parent": parent}
        self.save_state()
        return folder_id

    def add_secret(self, name: str, folder: int = -1, template: int = PASSWORD_TEMPLATE, **values) -> int:
        """A secret of a template in SECRET_TEMPLATES; `values` by field slug (username=..., password=...)."""
        slugs = {slug for _name, slug, _kind in SECRET_TEMPLATES[template]["fields"]}
        if set(values) - slugs:
            raise ValueError(f"template {template} has no fields {sorted(set(values) - slugs)}")
        with self.lock:
            secret_id = max(list(self.secrets) + [0]) + 1
            self.secrets[secret_id] = {"id": secret_id, "name": name, "folder": folder, "template": template,
                                       "values": dict(values), "active": True, "created": self.clock.now()}
        self.save_state()
        return secret_id

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
        state = {"users": self.users, "access": self.access, "refresh": self.refresh, "grants": self.grants[-1000:],
                 "folders": {str(k): v for k, v in self.folders.items()}, "secrets": {str(k): v for k, v in self.secrets.items()}}
        if self.platform is not None:
            state["service_users"] = self.platform.service_users
        return copy.deepcopy(state)

    def load_state(self, state: dict) -> None:
        self.users = copy.deepcopy(state.get("users", {}))
        self.access = copy.deepcopy(state.get("access", {}))
        self.refresh = copy.deepcopy(state.get("refresh", {}))
        self.grants = copy.deepcopy(state.get("grants", []))
        self.folders = {int(k): copy.deepcopy(v) for k, v in state.get("folders", {}).items()}
        self.secrets = {int(k): copy.deepcopy(v) for k, v in state.get("secrets", {}).items()}
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
