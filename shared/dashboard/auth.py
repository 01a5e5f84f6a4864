"""Who is calling the dashboard: an Entra ID access token, checked here by the app itself.

The operators sign in to the partner's own tenant (`DASHBOARD_TENANT_ID`) and the page sends the
access token it got for the partner's app registration (`DASHBOARD_CLIENT_ID`, or its Application ID
URI `DASHBOARD_AUDIENCE`). A token is accepted when it is signed by one of the tenant's keys (the
JWKS named by the authority's OpenID metadata, fetched once and cached; fetched again, at most once
a minute, when a token names a key it does not hold: Entra rolls its keys), its issuer is the one
the metadata names, its audience is the app, its tenant is the partner's and it has not expired. Its
`roles` claim says what the caller may do: `PalAutopilot.Reader` sees, `PalAutopilot.Operator` also
acts. A token is never logged nor echoed; a refusal says why in words only.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import jwt

from shared.spine.identifiers import is_guid
from shared.spine.problem import ApiResponse, problem
from shared.spine.settings import SettingsError, _Reader

logger = logging.getLogger(__name__)

READER_ROLE = "PalAutopilot.Reader"
OPERATOR_ROLE = "PalAutopilot.Operator"
_LEEWAY_SECONDS = 60
_METADATA_TTL_SECONDS = 24 * 3600
_REFETCH_AFTER_SECONDS = 60
_MAX_TOKEN_CHARS = 16 * 1024


class Role(Enum):
    READER = READER_ROLE
    OPERATOR = OPERATOR_ROLE


@dataclass(frozen=True)
class DashboardSettings:
    """DASHBOARD_TENANT_ID, DASHBOARD_CLIENT_ID, DASHBOARD_AUDIENCE and the sign-in cloud's authority
    (AZURE_AUTHORITY_HOST, checked as for the service; PAL_CA_BUNDLE for a local stand-in)."""

    tenant_id: str
    client_id: str
    audience: str
    authority: str
    ca_bundle: str | None

    @property
    def audiences(self) -> frozenset[str]:
        """Entra's v2 tokens carry the app's client ID as `aud`, v1 tokens its Application ID URI."""
        return frozenset({self.client_id, self.audience})

    @property
    def tenant_authority(self) -> str:
        return f"{self.authority}/{self.tenant_id}"

    @property
    def metadata_url(self) -> str:
        return f"{self.tenant_authority}/v2.0/.well-known/openid-configuration"

    @property
    def scope(self) -> str:
        """What the page asks for: the app's own roles (`.default`), and who signed in."""
        return f"{self.audience}/.default openid profile"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DashboardSettings:
        return _DashboardReader(env).dashboard()


class _DashboardReader(_Reader):
    """The service's settings reader (its checks and messages), for the dashboard's settings; the
    configuration contract test discovers the settings from these calls as from the service's."""

    def dashboard(self) -> DashboardSettings:
        tenant = (self._get("DASHBOARD_TENANT_ID") or "").lower()
        client = (self._get("DASHBOARD_CLIENT_ID") or "").lower()
        if not is_guid(tenant):
            raise SettingsError("setting DASHBOARD_TENANT_ID must be a GUID (the partner's own tenant)")
        if not is_guid(client):
            raise SettingsError(
                "setting DASHBOARD_CLIENT_ID must be a GUID (the app registration operators sign in to)"
            )
        # Empty (the default): api://{DASHBOARD_CLIENT_ID}, Entra's default Application ID URI.
        audience = (self._get("DASHBOARD_AUDIENCE", "") or "").rstrip("/") or f"api://{client}"
        if not audience.isprintable() or " " in audience or len(audience) > 256:
            raise SettingsError("setting DASHBOARD_AUDIENCE must be an Application ID URI")
        cloud = self.sign_in_cloud()
        return DashboardSettings(tenant, client, audience, cloud.authority, cloud.ca_bundle)


@dataclass(frozen=True)
class Operator:
    """The signed-in caller: object ID, name and roles (from a validated token only)."""

    object_id: str
    name: str
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def can_act(self) -> bool:
        return OPERATOR_ROLE in self.roles

    @property
    def can_see(self) -> bool:
        return self.can_act or READER_ROLE in self.roles

    def view(self) -> dict[str, Any]:
        return {
            "objectId": self.object_id,
            "name": self.name,
            "roles": sorted(self.roles),
            "canAct": self.can_act,
        }


class Refused(Exception):
    """The request is refused: `response` is the 401 or 403 to send."""

    def __init__(self, response: ApiResponse) -> None:
        super().__init__(response.status)
        self.response = response


def unauthorized(reason: str | None) -> Refused:
    """401 with RFC 6750's challenge: no error code when no token was sent, else `invalid_token`."""
    detail = reason or "sign in: send an Entra ID access token for the dashboard as a Bearer token"
    response = problem(401, "unauthorized", "Sign-in required", detail)
    challenge = 'Bearer realm="pal-autopilot"'
    if reason is not None:
        challenge += f', error="invalid_token", error_description="{reason}"'
    response.headers["WWW-Authenticate"] = challenge
    return Refused(response)


def forbidden(detail: str) -> Refused:
    return Refused(problem(403, "forbidden", "Not allowed", detail))


Fetch = Callable[[str], Awaitable[dict[str, Any]]]


class TokenValidator:
    """Checks bearer tokens against the tenant's OpenID metadata and keys (cached)."""

    def __init__(
        self, settings: DashboardSettings, fetch: Fetch | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self._fetch = fetch or _https_fetch(settings.ca_bundle)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._issuer: str | None = None
        self._jwks_uri: str | None = None
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0

    async def operator(self, authorization: str | None, role: Role = Role.READER) -> Operator:
        """The caller behind the Authorization header, if it holds `role`; raises Refused otherwise."""
        token = _bearer(authorization)
        claims = await self._claims(token)
        object_id = str(claims.get("oid", "")).lower()
        if not is_guid(object_id):
            raise unauthorized("the token names no user (oid)")
        raw_roles = claims.get("roles", [])
        roles = (
            frozenset(r for r in raw_roles if isinstance(r, str))
            if isinstance(raw_roles, list)
            else frozenset()
        )
        name = _display_name(claims.get("name") or claims.get("preferred_username"))
        caller = Operator(object_id, name, roles & {READER_ROLE, OPERATOR_ROLE})
        if not caller.can_see:
            raise forbidden(f"this account has neither app role {READER_ROLE} nor {OPERATOR_ROLE}")
        if role is Role.OPERATOR and not caller.can_act:
            raise forbidden(f"this action needs the app role {OPERATOR_ROLE}; this account may only read")
        return caller

    async def _claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthorized("the token is not a JWT") from None
        if header.get("alg") != "RS256":
            raise unauthorized("the token is not signed with RS256")
        key = await self._key(str(header.get("kid", "")))
        if key is None:
            raise unauthorized("the token is signed with a key the tenant does not publish")
        assert self._issuer is not None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=sorted(self.settings.audiences),
                issuer=self._issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "oid", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise unauthorized("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise unauthorized("the token is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise unauthorized("the token's signature does not verify") from None
        except jwt.PyJWTError as error:
            raise unauthorized(f"the token is not valid ({type(error).__name__})") from None
        if str(claims.get("tid", "")).lower() != self.settings.tenant_id:
            raise unauthorized("the token is from another tenant")
        return claims

    async def _key(self, kid: str) -> Any:
        """The tenant's signing key `kid`; the metadata and keys are fetched when stale, and the keys
        again (at most once a minute) for a kid not held."""
        async with self._lock:
            now = self._clock()
            stale = now - self._fetched_at > _METADATA_TTL_SECONDS
            unknown = kid not in self._keys and now - self._fetched_at > _REFETCH_AFTER_SECONDS
            if self._issuer is None or stale or unknown:
                try:
                    await self._refresh()
                except Exception as error:  # the authority unreachable: answered 503 by the caller
                    logger.warning("dashboard: the authority's signing keys could not be read (%s)", error)
                    if self._issuer is None:
                        raise KeysUnavailable from None
            return self._keys.get(kid)

    async def _refresh(self) -> None:
        metadata = await self._fetch(self.settings.metadata_url)
        issuer, jwks_uri = metadata.get("issuer"), metadata.get("jwks_uri")
        if not isinstance(issuer, str) or not isinstance(jwks_uri, str):
            raise ValueError("the OpenID metadata names no issuer or jwks_uri")
        if not jwks_uri.startswith(self.settings.authority + "/"):
            raise ValueError("the OpenID metadata's jwks_uri is not on the authority")
        jwks = await self._fetch(jwks_uri)
        keys = {}
        for entry in jwks.get("keys", []):
            if isinstance(entry, dict) and entry.get("kty") == "RSA" and entry.get("kid"):
                keys[str(entry["kid"])] = jwt.algorithms.RSAAlgorithm.from_jwk(entry)
        self._issuer, self._jwks_uri, self._keys = issuer, jwks_uri, keys
        self._fetched_at = self._clock()


class KeysUnavailable(Exception):
    """The authority's metadata or keys could not be read and none are cached."""


def _display_name(value: object) -> str:
    """The caller's name as recorded: printable characters only, at most 128 of them."""
    text = value if isinstance(value, str) else ""
    return "".join(ch for ch in text if ch.isprintable()).strip()[:128]


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise unauthorized(None)
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("send the token as: Authorization: Bearer <token>")
    if len(token) > _MAX_TOKEN_CHARS or not token.isascii():
        raise unauthorized("the token is not a JWT")
    return token


def _https_fetch(ca_bundle: str | None) -> Fetch:
    """A GET of a JSON document over HTTPS, trusting the system store and the extra CA bundle."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)

    async def fetch(url: str) -> dict[str, Any]:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=15)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, ssl=context) as response,
        ):
            response.raise_for_status()
            document = await response.json(content_type=None)
        if not isinstance(document, dict):
            raise ValueError(f"{url}: not a JSON object")
        return document

    return fetch
