"""The ARM client of the linker, shared by every tenant: each request carries its own tenant's token
(`TenantAuth`, put in the request by `TenantTokenPolicy`), never one cached in the client, and the
link's GET is read without the SDK's model deserializer (`partner_of`)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    DeserializationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
    ServiceRequestError,
    map_error,
)
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import AsyncBearerTokenCredentialPolicy, ContentDecodePolicy
from azure.core.rest import AsyncHttpResponse, HttpRequest
from azure.mgmt.core.exceptions import ARMErrorFormat

TENANT_AUTH = "pal_tenant_auth"
"""The per-call option, then request-context key, that carries a request's `TenantAuth`."""

_TOKEN_MARGIN_SECONDS = 300
"""A token this close to its expiry is asked of the credential again (as azure-core's policy does)."""


class TenantAuth:
    """One link's credential for its customer tenant, and the ARM token it last gave."""

    __slots__ = ("credential", "scope", "token")

    def __init__(self, credential: AsyncTokenCredential, scope: str, token: AccessToken | None) -> None:
        self.credential = credential
        self.scope = scope
        self.token = token

    async def bearer(self, **kwargs: Any) -> str:
        """The Authorization header's value; a new token when it nears expiry or for a claims challenge
        (`claims=` in kwargs: the credential then asks Entra ID, bypassing its cache)."""
        token = self.token
        if kwargs or token is None or token.expires_on - time.time() < _TOKEN_MARGIN_SECONDS:
            token = self.token = await self.credential.get_token(self.scope, **kwargs)
        return f"Bearer {token.token}"


def _tenant_auth(request: PipelineRequest[HttpRequest]) -> TenantAuth:
    """The request's `TenantAuth`: moved from the call's options into the request context on the
    first try, so retries and the claims-challenge resend find it too (and the transport never sees it)."""
    auth = request.context.options.pop(TENANT_AUTH, None)
    if auth is None:
        auth = request.context.get(TENANT_AUTH)
        if auth is None:
            raise ServiceRequestError("ARM request without a tenant credential: refused to send it")
    else:
        request.context[TENANT_AUTH] = auth
    if not request.http_request.url.lower().startswith("https"):
        raise ServiceRequestError("Bearer token authentication is not permitted for non-https URLs.")
    return auth  # type: ignore[no-any-return]


class TenantTokenPolicy(AsyncBearerTokenCredentialPolicy[HttpRequest, AsyncHttpResponse]):
    """ARM's authentication policy for a client shared by every tenant: the token is the request's
    own (`TenantAuth`), never one cached in the policy, which is what the SDK's
    AsyncARMChallengeAuthenticationPolicy does and why its client could serve one tenant only.

    Kept from that policy (its `send` runs unchanged): https only; a 401 whose WWW-Authenticate is a
    CAE claims challenge (`insufficient_claims`) gets a token with those claims from the request's
    credential and is sent once more; any other 401 is returned. Claims challenges are rare (ARM sends
    them only to clients that asked for CAE tokens, which we do not), but cost nothing to keep.
    """

    def __init__(self, scope: str) -> None:
        super().__init__(NoSharedCredential(), scope)

    async def on_request(self, request: PipelineRequest[HttpRequest]) -> None:
        request.http_request.headers["Authorization"] = await _tenant_auth(request).bearer()

    async def authorize_request(
        self, request: PipelineRequest[HttpRequest], *scopes: str, **kwargs: Any
    ) -> None:
        request.http_request.headers["Authorization"] = await _tenant_auth(request).bearer(**kwargs)


class NoSharedCredential:
    """The shared client's own credential: there is none; asking it for a token is a bug."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise ServiceRequestError("the shared ARM client has no credential of its own")

    async def close(self) -> None:
        """Nothing to close."""

    async def __aenter__(self) -> NoSharedCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        """Nothing to close."""


class TenantClient:
    """The shared ARM client's `partners` and `partner` operations, every call carrying one tenant's
    `TenantAuth`. Closing it leaves the shared client open."""

    def __init__(self, client: Any, auth: TenantAuth) -> None:
        option = {TENANT_AUTH: auth}
        self.partners = _PartnersGet(client.partners, option)
        self.partner = _TenantOperations(client.partner, option)

    async def close(self) -> None:
        """Nothing to close: the shared client serves the next link."""

    async def __aenter__(self) -> TenantClient:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()


_PARTNERS_ERRORS = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
    409: ResourceExistsError,
    304: ResourceNotModifiedError,
}
"""The generated `partners.get`'s error map."""


@dataclass(frozen=True)
class _Partner:
    """The attributes of the SDK's PartnerResponse the linker reads."""

    partner_id: str | None = None
    partner_name: str | None = None
    object_id: str | None = None
    version: int | None = None
    created_time: datetime | None = None
    updated_time: datetime | None = None
    state: str | None = None


class _PartnersGet:
    """`partners.get` as the SDK's generated operation sends it, through the shared client's
    pipeline (authentication, retries, redirects) and with the same errors for any status but 200
    (the ARM error model); a 200's body is read into `_Partner` here, without the SDK's model
    deserializer, which cost as much CPU as the request: the nightly run sends one per link."""

    def __init__(self, operations: Any, option: dict[str, TenantAuth]) -> None:
        self._operations = operations
        self._option = option

    async def get(self) -> _Partner:
        operations = self._operations
        client, api_version = operations._client, operations._config.api_version
        request = HttpRequest(
            "GET",
            client.format_url("/providers/Microsoft.ManagementPartner/partners"),
            params={"api-version": api_version},
            headers={"Accept": "application/json"},
        )
        pipeline_response = await client._pipeline.run(request, stream=False, **self._option)
        response = pipeline_response.http_response
        if response.status_code != 200:
            map_error(status_code=response.status_code, response=response, error_map=_PARTNERS_ERRORS)
            error = operations._deserialize.failsafe_deserialize("Error", pipeline_response)
            raise HttpResponseError(response=response, model=error, error_format=ARMErrorFormat)
        document = pipeline_response.context.get(ContentDecodePolicy.CONTEXT_NAME)
        if document is None:  # a pipeline without ContentDecodePolicy
            document = ContentDecodePolicy.deserialize_from_http_generics(response)
        return partner_of(document)


def partner_of(document: Any) -> _Partner:
    """A partner response's properties, typed as the SDK types them; DeserializationError (as the
    SDK raises) for a body that is not one."""
    properties = document.get("properties") if isinstance(document, dict) else None
    if not isinstance(properties, dict):
        raise DeserializationError("the partner response has no properties")
    texts = {
        name: properties.get(key)
        for name, key in (
            ("partner_id", "partnerId"),
            ("partner_name", "partnerName"),
            ("object_id", "objectId"),
            ("state", "state"),
        )
    }
    version = properties.get("version")
    if any(value is not None and not isinstance(value, str) for value in texts.values()) or not (
        version is None or (isinstance(version, int) and not isinstance(version, bool))
    ):
        raise DeserializationError("the partner response has a field of the wrong type")
    return _Partner(
        **texts,
        version=version,
        created_time=_moment(properties.get("createdTime")),
        updated_time=_moment(properties.get("updatedTime")),
    )


def _moment(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None:
        raise DeserializationError("the partner response has a time that is not ISO 8601")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class _TenantOperations:
    """One operation group of the shared client; each method gets the tenant's option."""

    def __init__(self, operations: Any, option: dict[str, TenantAuth]) -> None:
        self._operations = operations
        self._option = option

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return functools.partial(getattr(self._operations, name), **self._option)
