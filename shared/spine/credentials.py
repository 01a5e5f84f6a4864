"""Credentials for the partner's identity in each customer tenant, one per (tenant, client), reused.

A credential caches its tokens, so reusing it is what makes a fleet run ask Entra ID for one token
per tenant instead of one per call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any, Protocol

from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.transport import AioHttpTransport

from shared.spine.errors import KeyVaultNotConfigured
from shared.spine.identity import Identity, IdentityType
from shared.spine.settings import Settings
from shared.spine.token_request import AssertionTokenCredential, TokenEndpoint
from shared.spine.transport import IdentityPolicies
from shared.spine.vault_secret import (
    CertificateNotPem,
    SecretDisabled,
    SecretMissing,
    SecretUse,
    check_attributes,
    check_binding,
    check_value,
)

logger = logging.getLogger(__name__)

# The scope of ARM tokens and the audience of the federated assertion depend on the cloud:
# Settings.arm_scope and Settings.federated_token_audience derive them from the configured endpoints.


_ASSERTION_MARGIN_SECONDS = 300
"""An assertion this close to its expiry is fetched again: Entra ID must still accept it when the
token request that carries it arrives."""


class HostAssertion:
    """The Function App's managed-identity token for the federated exchange, shared by every
    federated credential and fetched again only when it is about to expire.

    Before, each federated `get_token` asked the managed identity for it (a cache hit in
    azure-identity, but a whole token lookup per call, twice per link). One refresh runs at a time;
    the others wait for it without blocking the loop.
    """

    def __init__(self, host: AsyncTokenCredential, audience: str) -> None:
        self._host = host
        self._scope = f"{audience}/.default"
        self._token: AccessToken | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> str | None:
        token = self._token
        if token is not None and token.expires_on - time.time() > _ASSERTION_MARGIN_SECONDS:
            return token.token
        return None

    async def get(self) -> str:
        """A managed-identity token valid for at least five more minutes."""
        fresh = self._fresh()
        if fresh is not None:
            return fresh
        async with self._lock:
            fresh = self._fresh()  # another caller may have refreshed it while this one waited
            if fresh is None:
                self._token = await self._host.get_token(self._scope)
                fresh = self._token.token
            return fresh


class _FederatedCredential(AssertionTokenCredential):
    """The app's credential in a customer tenant, signed in with a federated assertion: the Function
    App's managed-identity token (`HostAssertion`, fetched asynchronously and only when a token is
    requested), posted by the lean token request (`shared/spine/token_request.py`) instead of
    azure-identity's ClientAssertionCredential."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        host: AsyncTokenCredential,
        audience: str,
        *,
        assertion: HostAssertion | None = None,
        endpoint: TokenEndpoint | None = None,
        authority: str | None = None,
        transport: AioHttpTransport | None = None,
        retry_total: int = 3,
        **kwargs: Any,
    ) -> None:
        self._source = assertion or HostAssertion(host, audience)
        owns = endpoint is None
        if endpoint is None:
            if authority is None:
                from azure.identity._internal.utils import get_default_authority

                authority = get_default_authority()
            endpoint = TokenEndpoint(authority, transport, retry_total=retry_total)
        super().__init__(tenant_id, client_id, self._source.get, endpoint, owns_endpoint=owns)

    async def _refresh_assertion(self) -> str:
        return await self._source.get()


CredentialKey = tuple[str, str, IdentityType, str | None]


class InteractiveSignInRequired(Exception):
    """A credential was asked for a user account: only a person can sign in as one (palctl)."""


class CredentialSource(Protocol):
    """Where the linker gets an identity's credential: the service's cache of unattended
    credentials, or palctl's one interactive sign-in."""

    async def get(self, tenant_id: str, identity: Identity) -> AsyncTokenCredential: ...

    async def forget(self, tenant_id: str, identity: Identity) -> None: ...


class CredentialCache:
    """Builds credentials for (customer tenant, identity) on first use and keeps them.

    Key Vault errors propagate to the caller (the linker classifies them), and so does a secret that
    is not bound to the customer or not usable for the identity (`shared/vault_secret.py`); a
    credential whose secret turned out to be wrong can be dropped with `forget` so the next attempt
    reads Key Vault again.
    """

    def __init__(
        self,
        settings: Settings,
        transport: AioHttpTransport,
        *,
        host_credential: AsyncTokenCredential | None = None,
        max_entries: int | None = None,
    ) -> None:
        self._settings = settings
        self._transport = transport
        self._host = host_credential
        # Each credential holds its own token cache and pipeline (tens of KB): a nightly run visits
        # every tenant once, so the least recently used can go without costing a second token.
        self._max_entries = max_entries or settings.credential_cache_size
        self._entries: OrderedDict[CredentialKey, asyncio.Future[AsyncTokenCredential]] = OrderedDict()
        self._secret_client: Any = None
        self._assertion: HostAssertion | None = None
        self._endpoint: TokenEndpoint | None = None
        self._policies = IdentityPolicies(settings)

    @property
    def host_credential(self) -> AsyncTokenCredential:
        """The Function App's own identity (user-assigned managed identity in Azure)."""
        if self._host is None:
            if self._settings.host_credential == "default":
                from azure.identity.aio import DefaultAzureCredential

                self._host = DefaultAzureCredential(
                    managed_identity_client_id=self._settings.managed_identity_client_id
                )
            else:
                from azure.identity.aio import ManagedIdentityCredential

                self._host = ManagedIdentityCredential(
                    client_id=self._settings.managed_identity_client_id,
                    transport=self._transport,
                    retry_total=self._settings.sdk_retry_total,
                )
        return self._host

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "authority": self._settings.authority_host,
            "transport": self._transport,
            "retry_total": self._settings.sdk_retry_total,
            "policies": self._policies(),
        }

    async def get(self, tenant_id: str, identity: Identity) -> AsyncTokenCredential:
        key: CredentialKey = (tenant_id, identity.client_id, identity.type, identity.key_vault_secret_name)
        future = self._entries.get(key)
        if future is not None:
            self._entries.move_to_end(key)
            return await asyncio.shield(future)
        future = asyncio.get_running_loop().create_future()
        self._entries[key] = future
        try:
            credential = await self._build(tenant_id, identity)
        except BaseException as err:
            del self._entries[key]
            future.set_exception(err)
            future.exception()  # waiters re-raise it; mark it retrieved
            raise
        future.set_result(credential)
        await self._evict()
        return credential

    async def forget(self, tenant_id: str, identity: Identity) -> None:
        key: CredentialKey = (tenant_id, identity.client_id, identity.type, identity.key_vault_secret_name)
        future = self._entries.pop(key, None)
        if future is not None and future.done() and not future.exception():
            await future.result().close()

    async def _evict(self) -> None:
        while len(self._entries) > self._max_entries:
            _, future = self._entries.popitem(last=False)
            if future.done() and not future.exception():
                await future.result().close()

    async def _build(self, tenant_id: str, identity: Identity) -> AsyncTokenCredential:
        if not identity.type.unattended:
            raise InteractiveSignInRequired("a user account signs in interactively (palctl), never here")
        if identity.type is IdentityType.FEDERATED:
            if self._assertion is None:
                self._assertion = HostAssertion(self.host_credential, self._settings.federated_token_audience)
            if self._endpoint is None:
                self._endpoint = TokenEndpoint(
                    self._settings.authority_host, self._transport, retry_total=self._settings.sdk_retry_total
                )
            return _FederatedCredential(
                tenant_id,
                identity.client_id,
                self.host_credential,
                self._settings.federated_token_audience,
                assertion=self._assertion,
                endpoint=self._endpoint,
            )
        assert identity.key_vault_secret_name is not None
        use = SecretUse(identity.key_vault_secret_name, tenant_id, identity.client_id, identity.type)
        value = await self.read_secret(use)
        if identity.type is IdentityType.SECRET:
            from azure.identity.aio import ClientSecretCredential

            return ClientSecretCredential(tenant_id, identity.client_id, value, **self._client_kwargs())
        from azure.identity.aio import CertificateCredential

        try:
            return CertificateCredential(
                tenant_id, identity.client_id, certificate_data=value.encode("utf-8"), **self._client_kwargs()
            )
        except (ValueError, TypeError):
            # read_secret checked the PEM; anything azure-identity still cannot load is the PEM's too.
            raise CertificateNotPem(use, "azure-identity could not load it") from None

    async def read_secret(self, use: SecretUse) -> str:
        """The secret's value, once its tags bind it to this customer and app and it fits the identity.

        The tags are checked before the value is used. The value goes only into a credential,
        nowhere else: no exception raised here carries it.
        """
        secret = await self._get_secret(use)
        check_binding(use, secret.properties.tags)
        check_attributes(use, enabled=secret.properties.enabled, expires_on=secret.properties.expires_on)
        return check_value(use, secret.value)

    async def _get_secret(self, use: SecretUse) -> Any:
        if self._settings.key_vault_url is None:
            raise KeyVaultNotConfigured("KEY_VAULT_URL is not set")
        if self._secret_client is None:
            from azure.keyvault.secrets.aio import SecretClient

            self._secret_client = SecretClient(
                self._settings.key_vault_url,
                self.host_credential,
                transport=self._transport,
                retry_total=self._settings.sdk_retry_total,
                verify_challenge_resource=self._settings.key_vault_verify_challenge_resource,
            )
        try:
            return await self._secret_client.get_secret(use.name)
        except ResourceNotFoundError:
            raise SecretMissing(use) from None
        except HttpResponseError as error:
            inner = getattr(getattr(error, "error", None), "innererror", None) or {}
            if inner.get("code") == "SecretDisabled":  # Key Vault's 403 for a disabled version
                raise SecretDisabled(use) from None
            raise

    async def close(self) -> None:
        entries, self._entries = list(self._entries.values()), OrderedDict()
        for future in entries:
            if future.done() and not future.exception():
                await future.result().close()
        if self._secret_client is not None:
            await self._secret_client.close()
        if self._host is not None:
            await self._host.close()
