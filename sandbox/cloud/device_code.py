"""Entra ID's device authorization grant (RFC 8628) on the v2 endpoints, for user accounts.

`POST /{tenant}/oauth2/v2.0/devicecode` starts a sign-in (device_code, user_code, verification_uri,
expires_in, interval, message); the token endpoint, polled with
`grant_type=urn:ietf:params:oauth:grant-type:device_code`, answers `authorization_pending` until the
code is completed, `slow_down` when polled sooner than the interval, `expired_token` after its
lifetime, then a user's tokens (`oid`, `upn`, an ID token and client_info, no refresh token). No
person is needed: `complete(user_code, user)` (the admin API's hook) signs the code in as a user of
its tenant.
"""

from __future__ import annotations

import base64
import json
import secrets
import string
import threading
import time
from dataclasses import dataclass
from typing import NoReturn

from ..scenario import UserAccount
from .oauth import oauth_error, oauth_reply
from .protocol import Refusal, Reply, json_reply
from .state import CloudState
from .tokens import TokenIssuer

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
VERIFICATION_URI = "https://microsoft.com/devicelogin"
_OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
_USER_CODE_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class Issuer:
    """The tenant's v2 issuer (the ID token's `iss`) and the resources Entra issues tokens for."""

    url: str
    accepted: frozenset[str]


@dataclass
class _Pending:
    tenant_id: str
    client_id: str
    scope: str
    user_code: str
    expires_at: float
    interval: int
    last_poll: float = 0.0
    user: UserAccount | None = None


class DeviceCodes:
    """The pending device codes, by device code; `interval` and `lifetime` are the sandbox's settings
    (Entra's are 5 s and 900 s; the sandbox polls every second by default, so tests stay fast)."""

    def __init__(self, state: CloudState, tokens: TokenIssuer) -> None:
        self._state, self._tokens = state, tokens
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self.interval, self.lifetime = 1, 900

    def set_timing(self, *, interval: int, lifetime: int) -> None:
        """Seconds between polls and a code's lifetime, for the codes issued from now on."""
        if interval < 0 or lifetime <= 0:
            raise ValueError("interval: 0 or more seconds; lifetime: more than 0 seconds")
        self.interval, self.lifetime = interval, lifetime

    def start(self, tenant_id: str, form: dict[str, str], context: dict[str, str]) -> Reply:
        """The device authorization request: a new code for the tenant's users to complete."""
        for parameter in ("client_id", "scope"):
            if not form.get(parameter):
                _refuse(self._state, 900144, {**context, "parameter": parameter})
        with self._state.lock:
            known = tenant_id in self._state.tenants
        if not known:
            _refuse(self._state, 90002, context)
        device_code = secrets.token_urlsafe(48)
        user_code = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(9))
        pending = _Pending(
            tenant_id, form["client_id"], form["scope"], user_code, time.time() + self.lifetime, self.interval
        )
        with self._lock:
            self._pending[device_code] = pending
        message = (
            f"To sign in, use a web browser to open the page {VERIFICATION_URI} and enter the code "
            f"{user_code} to authenticate."
        )
        return json_reply(
            200,
            {
                "user_code": user_code,
                "device_code": device_code,
                "verification_uri": VERIFICATION_URI,
                "expires_in": self.lifetime,
                "interval": pending.interval,
                "message": message,
            },
        )

    def complete(self, tenant_id: str, user_code: str, who: str) -> UserAccount:
        """Sign the pending code in as the tenant's user `who` (object ID or UPN): the test's hook."""
        user = self._state.find_user(tenant_id, who)
        with self._lock:
            pending = next(
                (p for p in self._pending.values() if p.user_code == user_code.strip().upper()), None
            )
            if pending is None or pending.tenant_id != tenant_id.lower():
                raise ValueError(f"no pending device code {user_code} in tenant {tenant_id}")
            if pending.expires_at <= time.time():
                raise ValueError(f"device code {user_code} has expired")
            pending.user = user
        return user

    def pending_codes(self) -> list[str]:
        """The user codes waiting to be completed (not expired), oldest first."""
        now = time.time()
        with self._lock:
            return [p.user_code for p in self._pending.values() if p.user is None and p.expires_at > now]

    def poll(self, tenant_id: str, form: dict[str, str], context: dict[str, str], issuer: Issuer) -> Reply:
        """The token endpoint's answer to a device-code poll; `issuer` is the tenant's v2 issuer and
        the resources Entra issues tokens for."""
        if not form.get("device_code"):
            _refuse(self._state, 900144, {**context, "parameter": "device_code"})
        now = time.time()
        with self._lock:
            pending = self._pending.get(form["device_code"])
            if pending is None or pending.tenant_id != tenant_id:
                _refuse(self._state, 70000, context)
            if pending.expires_at <= now:
                del self._pending[form["device_code"]]
                _refuse(self._state, 70020, context)
            too_soon = now - pending.last_poll < pending.interval
            pending.last_poll = now
            if pending.user is None:
                if too_soon and pending.interval:
                    pending.interval += 5  # RFC 8628 3.5: slow down by five seconds
                    raise Refusal(_slow_down(self._state, context))
                _refuse(self._state, 70016, context)
            del self._pending[form["device_code"]]  # a code is redeemed once
        return self._tokens_for(pending, pending.user, form, context, issuer)

    def _tokens_for(
        self,
        pending: _Pending,
        user: UserAccount,
        form: dict[str, str],
        context: dict[str, str],
        issuer: Issuer,
    ) -> Reply:
        """The user's access token for the one `.default` resource asked, an ID token and client_info."""
        resources = [scope for scope in pending.scope.split() if scope not in _OIDC_SCOPES]
        if len(resources) != 1 or not resources[0].endswith("/.default"):
            _refuse(self._state, 70011, {**context, "scope": pending.scope})
        resource = resources[0].removesuffix("/.default")
        if resource not in issuer.accepted:
            _refuse(self._state, 500011, {**context, "resource": resource})
        with self._state.lock:
            lifetime = self._state.scenario.token_lifetime_seconds
        tenant_id, client_id = pending.tenant_id, pending.client_id
        person = {"upn": user.user_principal_name, "unique_name": user.user_principal_name}
        access, _ = self._tokens.access_token(
            tenant_id,
            user.object_id,
            resource,
            client_id,
            lifetime,
            extra={"idtyp": "user", "appidacr": "0", "scp": "user_impersonation", "name": user.display_name}
            | person,
        )
        identity, _ = self._tokens.access_token(
            tenant_id,
            user.object_id,
            client_id,
            client_id,
            lifetime,
            issuer=issuer.url,
            extra={"ver": "2.0", "preferred_username": user.user_principal_name, "name": user.display_name},
        )
        body = {
            "token_type": "Bearer",
            "scope": f"{resources[0]} openid profile",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access,
            "id_token": identity,
        }
        if form.get("client_info") == "1":
            info = json.dumps({"uid": user.object_id, "utid": tenant_id}).encode()
            body["client_info"] = base64.urlsafe_b64encode(info).decode().rstrip("=")
        return json_reply(200, body, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})


def _refuse(state: CloudState, code: int, context: dict[str, str]) -> NoReturn:
    raise Refusal(oauth_error(state, code, context))


def _slow_down(state: CloudState, context: dict[str, str]) -> Reply:
    """RFC 8628's slow_down (Entra words no AADSTS code for it)."""
    text = "The client is polling too quickly; wait the interval (now five seconds longer) between polls."
    return oauth_reply(state, 400, "slow_down", text, [], context, {})
