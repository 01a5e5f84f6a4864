"""Entra ID's client-credentials token request with a client assertion, for the federated identity.

azure-identity's ClientAssertionCredential builds the same request, but each token goes through its
AadClient: a pipeline of six policies, a content-decoding pass, an MSAL token cache that indexes the
token under several keys and is searched on every `get_token`. A steady night asks one token per
tenant, so that machinery was a quarter of the CPU of a link. Here the request is posted through the
retry policy azure-identity uses (the same statuses, backoff, Retry-After and network retries,
POST included) over the service's shared transport, and each scope's token is kept in a dict.

The assertion and the tokens are never logged, put in an exception or shown in a repr.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline import AsyncPipeline
from azure.core.pipeline.policies import AsyncRetryPolicy, UserAgentPolicy
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.rest import AsyncHttpResponse, HttpRequest

_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_POST = ["POST"]
"""azure-identity retries its token POSTs (not idempotent in general, but a token request is)."""

REFRESH_MARGIN_SECONDS = 300
"""A token this close to its expiry is asked for again (azure-core's and azure-identity's margin)."""

_RETRY_DELAY_SECONDS = 30
"""After a failed refresh, a still valid token is used without asking again for this long
(azure-identity's delay)."""


def _user_agent() -> str:
    from azure.identity._internal.user_agent import USER_AGENT

    return str(UserAgentPolicy(base_user_agent=USER_AGENT).user_agent)


class TokenEndpoint:
    """`{authority}/{tenant}/oauth2/v2.0/token` for every tenant, over one pipeline: azure-core's
    retry policy, as azure-identity configures it, and the transport. Shared by every federated
    credential of the process; closing it closes the transport only when it made it."""

    def __init__(
        self, authority: str, transport: AioHttpTransport | None = None, *, retry_total: int = 3
    ) -> None:
        authority = authority.strip().rstrip("/")
        if "://" not in authority:
            authority = "https://" + authority
        if not authority.startswith("https://"):
            raise ValueError("the authority must be an https URL")
        self._authority = authority
        self._owns_transport = transport is None
        self._transport = transport or AioHttpTransport()
        self._pipeline = AsyncPipeline(self._transport, [AsyncRetryPolicy(retry_total=retry_total)])
        self._headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "User-Agent": _user_agent(),
        }

    def __repr__(self) -> str:
        return f"TokenEndpoint({self._authority!r})"

    async def request(self, tenant_id: str, form: dict[str, str]) -> AccessTokenInfo:
        """POST the form to the tenant's token endpoint: the token, or ClientAuthenticationError
        carrying Entra's error and description and the HTTP response (its Retry-After, its status).
        Network errors that outlast the retries propagate as azure-core raises them."""
        request = HttpRequest(
            "POST",
            f"{self._authority}/{tenant_id}/oauth2/v2.0/token",
            headers=dict(self._headers),
            content=urlencode(form).encode("ascii"),
        )
        request_time = int(time.time())
        pipeline_response = await self._pipeline.run(request, retry_on_methods=_POST)
        return _token_from(pipeline_response.http_response, request_time)

    async def close(self) -> None:
        if self._owns_transport:
            await self._transport.close()


def _token_from(response: AsyncHttpResponse, request_time: int) -> AccessTokenInfo:
    try:
        content = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        content = None
    if not isinstance(content, dict):
        raise ClientAuthenticationError(
            message=f"Microsoft Entra ID answered HTTP {response.status_code} without a token response",
            response=response,
        )
    has_token = "access_token" in content
    if "error" in content:
        description = content.get("error_description")
        detail = f"({content['error']}) {description}" if description else str(content["error"])
        raise ClientAuthenticationError(
            message=f"Microsoft Entra ID error '{detail}'",
            response=None if has_token else response,  # the error's str() shows the body
        )
    try:
        token = content["access_token"]
        if "expires_on" in content:
            expires_on = int(content["expires_on"])
        else:
            expires_on = request_time + int(content["expires_in"])
        refresh_in = content.get("refresh_in")
        refresh_on = request_time + int(refresh_in) if refresh_in is not None else None
    except (KeyError, TypeError, ValueError):
        token = None
    if not isinstance(token, str) or not token:
        # No response attached: its body may hold a token.
        raise ClientAuthenticationError(
            message="Unexpected response from Microsoft Entra ID: no token or expiry"
        )
    return AccessTokenInfo(
        token, expires_on, token_type=content.get("token_type", "Bearer"), refresh_on=refresh_on
    )


def _merged_claims(claims: str | None, enable_cae: bool) -> str | None:
    """The claims to request: a claims challenge's, plus the CAE capability when asked (as
    azure-identity merges them)."""
    if not enable_cae:
        return claims
    merged = json.loads(claims) if claims else {}
    merged.setdefault("access_token", {}).update(xms_cc={"values": ["CP1"]})
    return json.dumps(merged)


class AssertionTokenCredential:
    """An AsyncTokenCredential for one (tenant, app): the client-credentials grant with a client
    assertion that `assertion()` gives (fetched only when a token is requested), each scope's token
    kept until five minutes before it expires (or Entra's `refresh_in`). One request per tenant and
    scope at a time; a claims challenge always asks Entra ID."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        assertion: Callable[[], Awaitable[str]],
        endpoint: TokenEndpoint,
        *,
        owns_endpoint: bool = False,
    ) -> None:
        self._tenant_id = tenant_id
        self._client_id = client_id
        self._assertion = assertion
        self._endpoint = endpoint
        self._owns_endpoint = owns_endpoint
        self._tokens: dict[tuple[str, bool], AccessTokenInfo] = {}
        self._last_request = 0.0
        self._lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"AssertionTokenCredential(tenant={self._tenant_id!r}, client={self._client_id!r})"

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        info = await self._get(scopes, claims, tenant_id, enable_cae)
        return AccessToken(info.token, info.expires_on)

    async def get_token_info(
        self, *scopes: str, options: TokenRequestOptions | None = None
    ) -> AccessTokenInfo:
        options = options or {}
        return await self._get(
            scopes, options.get("claims"), options.get("tenant_id"), bool(options.get("enable_cae", False))
        )

    def _cached(self, key: tuple[str, bool], now: float) -> tuple[AccessTokenInfo | None, bool]:
        """The cached token still valid (if any), and whether it is fresh enough to use as it is."""
        token = self._tokens.get(key)
        if token is None or token.expires_on <= now:
            return None, False
        stale = token.expires_on - now < REFRESH_MARGIN_SECONDS or (
            token.refresh_on is not None and token.refresh_on <= now
        )
        return token, not stale or now - self._last_request < _RETRY_DELAY_SECONDS

    async def _get(
        self, scopes: tuple[str, ...], claims: str | None, tenant_id: str | None, enable_cae: bool
    ) -> AccessTokenInfo:
        if not scopes:
            raise ValueError("a token request needs at least one scope")
        if tenant_id and tenant_id.lower() != self._tenant_id.lower():
            raise ClientAuthenticationError(
                message="this credential signs in to its own tenant only; another tenant was asked"
            )
        key = (" ".join(scopes), enable_cae)
        if not claims:
            token, usable = self._cached(key, time.time())
            if token is not None and usable:
                return token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            token = None
            if not claims:
                token, usable = self._cached(key, time.time())  # another caller may have refreshed it
                if token is not None and usable:
                    return token
            try:
                fresh = await self._request(key[0], _merged_claims(claims, enable_cae))
            except Exception:
                if token is not None:  # a refresh failed while the token is still valid: use it
                    return token
                raise
            self._tokens[key] = fresh
            return fresh

    async def _request(self, scope: str, claims: str | None) -> AccessTokenInfo:
        form = {
            "client_id": self._client_id,
            "scope": scope,
            "grant_type": "client_credentials",
            "client_assertion_type": _ASSERTION_TYPE,
            "client_assertion": await self._assertion(),
        }
        if claims:
            form["claims"] = claims
        self._last_request = time.time()
        return await self._endpoint.request(self._tenant_id, form)

    async def close(self) -> None:
        self._tokens.clear()
        if self._owns_endpoint:
            await self._endpoint.close()

    async def __aenter__(self) -> AssertionTokenCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()
