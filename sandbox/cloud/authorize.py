"""Entra ID's authorization code flow with PKCE (RFC 7636) for a browser app: a person signs in.

`GET /{tenant}/oauth2/v2.0/authorize` (response_type=code, client_id one of the scenario's apps,
redirect_uri on the loopback or https, code_challenge with S256, state, nonce) signs in the tenant's
user named by `login_hint` (object ID or UPN) at once, without a password, and redirects to
redirect_uri with a one-time code and the state; without a login_hint it answers a page listing the
tenant's users, each a link that signs that user in (a person at the local dashboard clicks one).
Each sign-in also sets a session cookie (`sandbox-session`, for that tenant's path, Secure, HttpOnly,
SameSite=None), as Entra keeps its own session: with `prompt=none` (a silent sign-in, which a page
does when its access token has expired) the user of that session is signed in again at once, without
a page; with no session the answer is the error `login_required`, and when the request's
`login_hint` names another user than the session's, `interaction_required` (both sent to the
redirect_uri with the state, as Entra does).
The token endpoint redeems the code (`grant_type=authorization_code`, the same client_id and
redirect_uri, the code_verifier whose S256 is the challenge) once, within ten minutes, for a v2
access token for the one resource asked (`{app}/.default`, `api://{app}/.default`: `aud` is the
app's client ID and `roles` the user's app roles from the scenario) and an ID token carrying the
nonce. The answer allows the browser page's origin (CORS), as Entra does for a single-page app.

`SignIn` wraps the `EntraId` stand-in: everything else goes to it unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlencode, urlsplit

from ..scenario import UserAccount
from .entra import EntraId
from .oauth import oauth_error
from .protocol import Refusal, Reply, Request, json_reply
from .state import CloudState
from .tokens import TokenIssuer

AUTHORIZE = "oauth2/v2.0/authorize"
TOKEN = "oauth2/v2.0/token"
CODE_LIFETIME_SECONDS = 600
SESSION_COOKIE = "sandbox-session"
_OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})


@dataclass(frozen=True)
class _Grant:
    tenant_id: str
    client_id: str
    redirect_uri: str
    scope: str
    challenge: str
    nonce: str
    user: UserAccount
    expires_at: float


class SignIn:
    """The authorize endpoint and the authorization_code grant, in front of `EntraId`."""

    def __init__(
        self,
        entra: EntraId,
        state: CloudState,
        tokens: TokenIssuer,
        accepted: Callable[[str], frozenset[str]],
    ) -> None:
        self._entra, self._state, self._tokens, self._accepted = entra, state, tokens, accepted
        self._lock = threading.Lock()
        self._grants: dict[str, _Grant] = {}
        self._sessions: dict[str, tuple[str, str]] = {}  # cookie value -> (tenant ID, user object ID)

    def audiences(self, base_url: str) -> Iterable[str]:
        """Entra's own, and the scenario's app registrations' Application ID URIs (the dashboard's)."""
        with self._state.lock:
            apps = list(self._state.apps)
        return [*self._entra.audiences(base_url), *(f"api://{client}" for client in apps)]

    def handle(self, request: Request) -> Reply:
        if len(request.path) > 1:
            tenant_id, rest = request.path[0].lower(), "/".join(request.path[1:])
            if request.method == "GET" and rest == AUTHORIZE:
                return self._authorize(tenant_id, request)
            if request.method == "POST" and rest == TOKEN:
                form = _form(request)
                if form.get("grant_type") == "authorization_code":
                    return self._redeem(tenant_id, form, request)
        return self._entra.handle(request)

    # ---- the authorize endpoint ------------------------------------------------------------------

    def _authorize(self, tenant_id: str, request: Request) -> Reply:
        query = request.query
        refused = self._refused(tenant_id, query)
        if refused is not None:
            return refused
        redirect_uri = query["redirect_uri"]
        problem = _request_problem(query)
        if problem is not None:
            return _redirect(
                redirect_uri, {"error": "invalid_request", "error_description": problem, **_state(query)}
            )
        hint = query.get("login_hint", "").strip()
        user = None
        if hint:
            try:
                user = self._state.find_user(tenant_id, hint)
            except ValueError:
                user = None
        if query.get("prompt") == "none":  # silent: the session's user, or an error; never a page
            silent = self._silent(tenant_id, request, hint, user)
            if isinstance(silent, Reply):
                return silent
            user = silent
        if user is None:
            return self._chooser(tenant_id, request, hint)
        return self._signed_in(tenant_id, query, user)

    def _refused(self, tenant_id: str, query: dict[str, str]) -> Reply | None:
        """Entra's error page for a request it cannot even answer at the redirect_uri, or None."""
        with self._state.lock:
            tenant = self._state.tenants.get(tenant_id)
            known_app = query.get("client_id", "").lower() in self._state.apps
        if tenant is None:
            return _page(400, "AADSTS90002: Tenant not found.")
        if not known_app:
            return _page(400, "AADSTS700016: Application not found in the directory.")
        if not _redirect_allowed(query.get("redirect_uri", "")):
            return _page(400, "AADSTS50011: The redirect URI does not match the application's.")
        return None

    def _silent(
        self, tenant_id: str, request: Request, hint: str, hinted: UserAccount | None
    ) -> UserAccount | Reply:
        """prompt=none: the session's user, or the error sent back when there is none to sign in."""
        signed_in = self._session_user(tenant_id, request)
        if signed_in is None:
            error = "login_required"
            description = "AADSTS50058: A silent sign-in request was sent but no user is signed in."
        elif hint and (hinted is None or hinted.object_id != signed_in.object_id):
            error = "interaction_required"
            description = "AADSTS16000: The signed-in user is not the one the login_hint names."
        else:
            return signed_in
        return _redirect(
            request.query["redirect_uri"],
            {"error": error, "error_description": description, **_state(request.query)},
        )

    def _signed_in(self, tenant_id: str, query: dict[str, str], user: UserAccount) -> Reply:
        """A one-time code for the user, and the browser's session with this tenant (its cookie)."""
        code = secrets.token_urlsafe(32)
        grant = _Grant(
            tenant_id,
            query["client_id"].lower(),
            query["redirect_uri"],
            query.get("scope", ""),
            query["code_challenge"],
            query.get("nonce", ""),
            user,
            time.time() + CODE_LIFETIME_SECONDS,
        )
        session = secrets.token_urlsafe(32)
        with self._lock:
            self._grants[code] = grant
            self._sessions[session] = (tenant_id, user.object_id)
        reply = _redirect(query["redirect_uri"], {"code": code, **_state(query)})
        reply.headers["Set-Cookie"] = (
            f"{SESSION_COOKIE}={session}; Path=/{tenant_id}/; Secure; HttpOnly; SameSite=None"
        )
        return reply

    def _session_user(self, tenant_id: str, request: Request) -> UserAccount | None:
        """The user this browser signed in to the tenant before (its session cookie), if any."""
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(request.header("Cookie") or "")
        except CookieError:
            return None
        morsel = cookies.get(SESSION_COOKIE)
        with self._lock:
            session = self._sessions.get(morsel.value) if morsel is not None else None
        if session is None or session[0] != tenant_id:
            return None
        try:
            return self._state.find_user(tenant_id, session[1])
        except ValueError:
            return None

    def _chooser(self, tenant_id: str, request: Request, hint: str) -> Reply:
        """The sign-in page: one link per user of the tenant (no password in the sandbox)."""
        with self._state.lock:
            users = sorted(self._state.tenants[tenant_id].users.values(), key=lambda u: u.user_principal_name)
        query = dict(request.query)
        items = []
        for user in users:
            url = f"{request.base_url}/{tenant_id}/{AUTHORIZE}?" + urlencode(
                query | {"login_hint": user.user_principal_name}
            )
            roles = ", ".join(user.roles) or "no app role"
            items.append(
                f'<li><a href="{html.escape(url)}">{html.escape(user.display_name)}</a> '
                f"({html.escape(user.user_principal_name)}; {html.escape(roles)})</li>"
            )
        note = f"<p>No user {html.escape(hint)} in this tenant.</p>" if hint else ""
        body = (
            "<!doctype html><html lang=en><meta charset=utf-8><title>Sign in (sandbox)</title>"
            f"<h1>Sign in to the sandbox tenant</h1>{note}<ul>{''.join(items)}</ul></html>"
        )
        return Reply(
            200, body.encode(), {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}
        )

    # ---- the token endpoint: authorization_code --------------------------------------------------

    def _redeem(self, tenant_id: str, form: dict[str, str], request: Request) -> Reply:
        context = {"tenant": tenant_id, "correlation_id": request.header("client-request-id")}
        cors = _cors(request)
        self._state.count("tokenRequests", tenant_id)
        for parameter in ("client_id", "code", "redirect_uri", "code_verifier"):
            if not form.get(parameter):
                self._refuse(900144, {**context, "parameter": parameter}, cors)
        with self._lock:
            grant = self._grants.pop(form["code"], None)  # a code is redeemed once
        if grant is None or grant.tenant_id != tenant_id or grant.expires_at <= time.time():
            self._refuse(70000, context, cors, "The provided authorization code is invalid, used or expired.")
        if grant.client_id != form["client_id"].lower() or grant.redirect_uri != form["redirect_uri"]:
            self._refuse(70000, context, cors, "The code was issued to another client or redirect URI.")
        digest = base64.urlsafe_b64encode(hashlib.sha256(form["code_verifier"].encode()).digest()).rstrip(
            b"="
        )
        if not hmac.compare_digest(digest, grant.challenge.encode()):
            self._refuse(70000, context, cors, "The code_verifier does not match the code_challenge (PKCE).")
        scope = form.get("scope") or grant.scope
        resources = [item for item in scope.split() if item not in _OIDC_SCOPES]
        if len(resources) != 1 or not resources[0].endswith("/.default"):
            self._refuse(70011, {**context, "scope": scope}, cors)
        return self._tokens_for(grant, resources[0].removesuffix("/.default"), request, context, cors)

    def _tokens_for(
        self, grant: _Grant, resource: str, request: Request, context: dict[str, str], cors: dict[str, str]
    ) -> Reply:
        with self._state.lock:
            apps = set(self._state.apps)
            lifetime = self._state.scenario.token_lifetime_seconds
        app = resource.removeprefix("api://").lower()
        issuer = f"{request.base_url}/{grant.tenant_id}/v2.0"
        user = grant.user
        claims: dict[str, Any] = {
            "ver": "2.0",
            "idtyp": "user",
            "azp": grant.client_id,
            "name": user.display_name,
            "preferred_username": user.user_principal_name,
            "scp": "user_impersonation",
        }
        if app in apps:  # an app registration of the scenario: a v2 token, aud = its client ID
            audience = app
            if user.roles:
                claims["roles"] = list(user.roles)
        elif resource in self._accepted(request.base_url):
            audience = resource
        else:
            self._refuse(500011, {**context, "resource": resource}, cors)
        access, _ = self._tokens.access_token(
            grant.tenant_id, user.object_id, audience, grant.client_id, lifetime, issuer=issuer, extra=claims
        )
        identity_claims = {
            "ver": "2.0",
            "name": user.display_name,
            "preferred_username": user.user_principal_name,
            **({"nonce": grant.nonce} if grant.nonce else {}),
        }
        identity, _ = self._tokens.access_token(
            grant.tenant_id,
            user.object_id,
            grant.client_id,
            grant.client_id,
            lifetime,
            issuer=issuer,
            extra=identity_claims,
        )
        body = {
            "token_type": "Bearer",
            "scope": f"{resource}/.default openid profile",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access,
            "id_token": identity,
        }
        return json_reply(200, body, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache", **cors})

    def _refuse(
        self, code: int, context: dict[str, str], cors: dict[str, str], description: str | None = None
    ) -> NoReturn:
        raise Refusal(oauth_error(self._state, code, context, description=description, headers=cors))


def _form(request: Request) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(request.body.decode("utf-8", "replace")).items()}


def _state(query: dict[str, str]) -> dict[str, str]:
    return {"state": query["state"]} if query.get("state") else {}


def _request_problem(query: dict[str, str]) -> str | None:
    """What is wrong with an authorization request for a browser app, or None."""
    if query.get("response_type") != "code":
        return "AADSTS700054: response_type must be 'code' for this app."
    if not query.get("code_challenge"):
        return (
            "AADSTS9002325: Proof Key for Code Exchange is required for cross-origin authorization code "
            "redemption."
        )
    if query.get("code_challenge_method", "plain") != "S256":
        return "AADSTS501491: code_challenge_method must be S256."
    if not query.get("scope"):
        return "AADSTS900144: The request body must contain the following parameter: 'scope'."
    return None


def _redirect_allowed(uri: str) -> bool:
    """https anywhere, or plain http on the loopback only (as Entra allows for local development)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    if parts.fragment or not parts.netloc:
        return False
    return parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")
    )


def _redirect(uri: str, parameters: dict[str, str]) -> Reply:
    separator = "&" if urlsplit(uri).query else "?"
    return Reply(302, b"", {"Location": uri + separator + urlencode(parameters), "Cache-Control": "no-store"})


def _cors(request: Request) -> dict[str, str]:
    origin = request.header("Origin")
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin else {}


def _page(status: int, text: str) -> Reply:
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Sign-in error</title>"
        f"<p>{html.escape(text)}</p>"
    )
    return Reply(status, body.encode(), {"Content-Type": "text/html; charset=utf-8"})
