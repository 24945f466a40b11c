# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Delinea Secret Server API client: OAuth2 grants (/oauth2/token), oauth-expiration, users/current,
and the Delinea Platform's client-credentials grant and vault broker.

References are to secretserver.md (../shared/api/). Every grant is form-encoded, as every official
client sends it (1.2). No grant is ever repeated here: a refresh token and a one-time password are
single-use, and the HTTP layer retries only idempotent requests.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.tokenops.rotation.plugins.module_utils.http_client import ApiError
from ansible_collections.tokenops.rotation.plugins.module_utils import validators

PRODUCT = "Delinea Secret Server"
TOKEN_PATH = "/oauth2/token"
API_PATH = "/api/v1"
PLATFORM_TOKEN_PATH = "/identity/api/oauth2/token/xpmplatform"
VAULTS_PATH = "/vaultbroker/api/vaults"
# Refresh-token time to live = API session timeout + 15 minutes (1.5, DOC).
REFRESH_GRACE_SECONDS = 900
# Statuses of a dead, expired or unknown token on /api/v1 (1.4: 403 documented, 401 handled by the SDKs).
DEAD_TOKEN_STATUSES = (401, 403)


class Grant:
    """A token response: the access token, its lifetime, and the refresh token when the server sent one."""

    def __init__(self, access_token, expires_in, refresh_token=None, token_type=None):
        self.access_token = access_token
        self.expires_in = expires_in
        self.refresh_token = refresh_token
        self.token_type = token_type


URL_HINT = "an http or https URL such as https://host/SecretServer"


def validate_url(url, what="url"):
    return validators.url(url, what, what=URL_HINT)


def error_parser(response):
    """(code, message) of a Secret Server error: `error` of the token endpoint (1.4), `errorCode` and
    `message` of the API's BadRequestResponse, `message` of AuthenticationFailedResponse."""
    content_type = (response.headers.get("Content-Type") or "").lower()
    try:
        body = response.json()
    except ValueError:
        if "html" in content_type:
            return None, "an HTML page instead of JSON"
        text = (response.text or "").strip()
        return None, text[:200] or None
    if not isinstance(body, dict):
        return None, None
    code = body.get("errorCode")
    message = body.get("message") or body.get("messageDetail") or body.get("error_description")
    error = body.get("error")
    if isinstance(error, str):
        # OAuth codes ("invalid_grant") are codes; Secret Server's own ("Login failed.") are sentences.
        if " " in error.strip() or error.strip().endswith("."):
            message = message or error
        else:
            code = code or error
    return (str(code) if code is not None else None), (str(message) if message is not None else None)


class SecretServerClient:
    """Calls over the shared HttpClient; `register` is called with every secret as soon as it is read."""

    def __init__(self, http, register):
        self.http = http
        self.register = register

    def api(self, base, path):
        return base.rstrip("/") + API_PATH + path

    # -- grants: never repeated (idempotent=False is the HTTP layer's default for POST)

    def _grant(self, step, url, form, headers=None):
        response = self.http.request(step, "POST", url, data=form, headers=headers)
        try:
            body = response.json()
        except ValueError:
            # "TSS returns a 200 (OK) containing HTML for some error conditions" (1.4, python-tss-sdk).
            raise ApiError(PRODUCT, step, "POST", url, status=response.status_code,
                           message="answered without a token (the body is not JSON; Secret Server does this for some errors)")
        if not isinstance(body, dict):
            raise ApiError(PRODUCT, step, "POST", url, status=response.status_code, message="answered without a token")
        for key in ("access_token", "refresh_token", "id_token"):
            if isinstance(body.get(key), str):
                self.register(body[key])
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise ApiError(PRODUCT, step, "POST", url, status=response.status_code, message="answered without an access_token")
        try:
            expires_in = int(body.get("expires_in"))
        except (TypeError, ValueError):
            raise ApiError(PRODUCT, step, "POST", url, status=response.status_code, message="answered without a numeric expires_in")
        refresh = body.get("refresh_token")
        # Absent or null when refresh tokens are off (1.3 UNK): both mean none.
        refresh = refresh if isinstance(refresh, str) and refresh else None
        return Grant(access, expires_in, refresh, body.get("token_type"))

    def password_grant(self, base, username, password, domain=None, otp=None):
        form = {"username": username, "password": password, "grant_type": "password"}
        if domain:
            form["domain"] = domain
        headers = {"OTP": otp} if otp else None
        return self._grant("password grant for %s" % username, base.rstrip("/") + TOKEN_PATH, form, headers)

    def refresh_grant(self, base, refresh_token, username):
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self._grant("refresh grant for %s" % username, base.rstrip("/") + TOKEN_PATH, form)

    def platform_grant(self, platform_url, client_id, client_secret):
        form = {"client_id": client_id, "client_secret": client_secret, "grant_type": "client_credentials", "scope": "xpmheadless"}
        return self._grant("platform client-credentials grant for %s" % client_id, platform_url.rstrip("/") + PLATFORM_TOKEN_PATH, form)

    def vault_url(self, platform_url, platform_token, vault_name=None):
        """The Secret Server URL of the platform's vault: the named one, else the active default (as the SDKs pick it)."""
        response = self.http.request("find the vault", "GET", platform_url.rstrip("/") + VAULTS_PATH, bearer=platform_token)
        vaults = (response.json() or {}).get("vaults") or []
        if vault_name:
            chosen = [v for v in vaults if v.get("name") == vault_name and v.get("isActive")]
        else:
            chosen = [v for v in vaults if v.get("isDefault") and v.get("isActive")]
        url = ((chosen[0].get("connection") or {}).get("url")) if chosen else None
        if not url:
            names = ", ".join(sorted("%s%s" % (v.get("name"), "" if v.get("isActive") else " (inactive)") for v in vaults)) or "none"
            raise ApiError(PRODUCT, "find the vault", "GET", platform_url.rstrip("/") + VAULTS_PATH, status=response.status_code,
                           message="no active %s among the platform's vaults (%s)" % ("vault named %s" % vault_name if vault_name else "default vault", names))
        validate_url(url, "the vault's connection.url")
        return url

    # -- the API

    def check(self, base, token):
        """(status, user) of GET users/current with `token`: 200 works, 401 or 403 means dead (1.4).

        `user` is the user's id and names when it works, else None.
        """
        response = self.http.request("check the token", "GET", self.api(base, "/users/current"), bearer=token,
                                     ok=(200,) + DEAD_TOKEN_STATUSES)
        if response.status_code != 200:
            return response.status_code, None
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        return 200, {"id": body.get("id"), "username": body.get("userName"), "display_name": body.get("displayName")}

    def expire(self, base, token):
        """POST oauth-expiration with the token. True when Secret Server expired it, False when it was already dead.

        Repeating it is harmless (a dead token gets 401/403), so the HTTP layer may retry it.
        """
        url = self.api(base, "/oauth-expiration")
        response = self.http.request("expire the token", "POST", url, bearer=token, idempotent=True, ok=(200,) + DEAD_TOKEN_STATUSES)
        if response.status_code != 200:
            return False
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if answer is not True:
            raise ApiError(PRODUCT, "expire the token", "POST", url, status=200, message="answered %r instead of true" % (answer,))
        return True
