"""The nightly path's shortcuts keep their guarantees: one ARM client serves every tenant, yet each
request carries its own tenant's token; the managed-identity assertion is fetched once, not per call."""

from __future__ import annotations

import asyncio
import base64
import contextvars
import json
import time
import uuid
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline import AsyncPipeline
from azure.core.pipeline.transport import AioHttpTransport, AsyncHttpTransport
from azure.core.rest import HttpRequest

from sandbox.cloud import CloudSandbox
from sandbox.scenario import FaultRule
from shared.links.arm_client import TENANT_AUTH, TenantAuth, TenantTokenPolicy
from shared.links.linker import Linker
from shared.spine.credentials import CredentialCache, HostAssertion
from shared.spine.identity import Identity, IdentityType
from shared.spine.outcomes import OutcomeKind
from shared.spine.settings import Settings
from shared.spine.transport import close_transport, shared_transport
from tenants import FEDERATED_APP, PARTNER_ID

SCOPE = "https://management.azure.com/.default"
INTENDED = contextvars.ContextVar[str]("intended tenant")
"""The tenant the test's link is for; each link runs in its own task, so each sees its own."""


def _tid(authorization: str) -> str:
    payload = authorization.removeprefix("Bearer ").split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["tid"])


class ArmSpy(AioHttpTransport):
    """The product's transport, noting for each ARM request the tenant it was for and the tenant of
    the token it carried."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(session=shared_transport(settings).session, session_owner=False)
        self.seen: list[tuple[str, str]] = []

    async def send(self, request: Any, **kwargs: Any) -> Any:
        if "Microsoft.ManagementPartner" in request.url:
            self.seen.append((INTENDED.get(), _tid(request.headers["Authorization"])))
        return await super().send(request, **kwargs)


async def test_concurrent_links_for_different_tenants_each_send_their_own_tenants_token(
    settings: Settings, cloud: CloudSandbox
) -> None:
    tenants = {str(uuid.uuid4()): str(uuid.uuid4()) for _ in range(8)}  # tenant -> service principal
    for n, (tenant, object_id) in enumerate(tenants.items()):
        cloud.add_tenant(tenant, f"Customer {n}")
        cloud.add_service_principal(tenant, FEDERATED_APP, object_id)
        # Every ARM reply held back, so that all eight links are in flight at once.
        cloud.add_fault(tenant, FaultRule(target="arm", kind="latency", latency_ms=100))
    spy = ArmSpy(settings)
    credentials = CredentialCache(settings, spy)
    linker = Linker(settings, credentials, spy)
    identity = Identity(IdentityType.FEDERATED, FEDERATED_APP)

    async def link(tenant: str) -> OutcomeKind:
        INTENDED.set(tenant)
        return (await linker.link(tenant, identity, PARTNER_ID)).kind

    try:
        first = await asyncio.gather(*(link(tenant) for tenant in tenants))
        client = linker._shared_client
        again = await asyncio.gather(*(link(tenant) for tenant in tenants))
    finally:
        await credentials.close()
        await close_transport(spy)

    assert first == [OutcomeKind.LINKED] * len(tenants)
    assert again == [OutcomeKind.ALREADY_LINKED] * len(tenants)
    assert linker._shared_client is client  # one SDK client for every link
    # A GET and a PUT per tenant, then a GET: each with a token of the tenant it was sent for.
    assert len(spy.seen) == 3 * len(tenants)
    assert all(intended == tid for intended, tid in spy.seen), spy.seen
    stats = cloud.stats()
    for tenant in tenants:
        assert stats["armCalls"][tenant] == {"GET": 2, "PUT": 1}
    linked = {(link["tenantId"], link["objectId"]) for link in cloud.links() if link["state"] == "Active"}
    assert set(tenants.items()) <= linked
    # One managed-identity token served as the assertion of all eight sign-ins.
    assert stats["managedIdentityRequests"] == 1


# ---- the authentication policy on its own, against a transport that answers what it is told ----


class Credential:
    """A credential that gives a numbered token each time it is asked, valid for `lifetime` seconds."""

    def __init__(self, lifetime: int = 3600) -> None:
        self.asked: list[dict[str, Any]] = []
        self.lifetime = lifetime

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.asked.append({"scopes": scopes, **kwargs})
        return AccessToken(f"token-{len(self.asked)}", int(time.time()) + self.lifetime)

    async def close(self) -> None:
        pass


class Reply:
    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}


class Answering(AsyncHttpTransport):
    """Answers each request with the next reply, noting its Authorization header and options."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send(self, request: Any, **kwargs: Any) -> Any:
        self.sent.append((request.headers.get("Authorization", ""), kwargs))
        return self.replies.pop(0)

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def __aexit__(self, *args: object) -> None:
        pass


async def _run(transport: Answering, url: str = "https://arm.example/partners", **options: Any) -> Any:
    pipeline = AsyncPipeline(transport, policies=[TenantTokenPolicy(SCOPE)])
    response = await pipeline.run(HttpRequest("GET", url), **options)
    return response.http_response


async def test_the_token_given_with_the_call_is_sent_and_the_option_stays_out_of_the_transport() -> None:
    credential = Credential()
    transport = Answering(Reply(200))
    token = AccessToken("given", int(time.time()) + 3600)
    await _run(transport, **{TENANT_AUTH: TenantAuth(credential, SCOPE, token)})
    ((authorization, options),) = transport.sent
    assert authorization == "Bearer given" and TENANT_AUTH not in options
    assert credential.asked == []  # the token link already holds is not asked for again


async def test_a_token_near_its_expiry_is_asked_of_the_credential_again() -> None:
    credential = Credential()
    transport = Answering(Reply(200))
    expiring = AccessToken("expiring", int(time.time()) + 60)
    await _run(transport, **{TENANT_AUTH: TenantAuth(credential, SCOPE, expiring)})
    assert transport.sent[0][0] == "Bearer token-1"
    assert credential.asked == [{"scopes": (SCOPE,)}]


async def test_a_claims_challenge_is_answered_with_a_token_for_those_claims_and_sent_once_more() -> None:
    claims = '{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}'
    encoded = base64.urlsafe_b64encode(claims.encode()).decode().rstrip("=")
    challenge = (
        f'Bearer authorization_uri="https://login.example", error="insufficient_claims", claims="{encoded}"'
    )
    credential = Credential()
    transport = Answering(Reply(401, {"WWW-Authenticate": challenge}), Reply(200))
    token = AccessToken("given", int(time.time()) + 3600)
    response = await _run(transport, **{TENANT_AUTH: TenantAuth(credential, SCOPE, token)})
    assert response.status_code == 200
    assert [header for header, _ in transport.sent] == ["Bearer given", "Bearer token-1"]
    assert credential.asked == [{"scopes": (SCOPE,), "claims": claims}]


async def test_a_401_without_a_claims_challenge_is_returned_as_it_is() -> None:
    credential = Credential()
    transport = Answering(Reply(401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}))
    token = AccessToken("given", int(time.time()) + 3600)
    response = await _run(transport, **{TENANT_AUTH: TenantAuth(credential, SCOPE, token)})
    assert response.status_code == 401 and len(transport.sent) == 1 and credential.asked == []


async def test_a_request_without_a_tenant_credential_is_not_sent() -> None:
    transport = Answering(Reply(200))
    with pytest.raises(ServiceRequestError, match="without a tenant credential"):
        await _run(transport)
    assert transport.sent == []


async def test_no_token_goes_over_plain_http() -> None:
    transport = Answering(Reply(200))
    token = AccessToken("given", int(time.time()) + 3600)
    with pytest.raises(ServiceRequestError, match="non-https"):
        await _run(
            transport,
            "http://arm.example/partners",
            **{TENANT_AUTH: TenantAuth(Credential(), SCOPE, token)},
        )
    assert transport.sent == []


# ---- the federated assertion ----


class Host:
    """The managed identity: counts its token requests, each valid for `lifetime` seconds."""

    def __init__(self, lifetime: int) -> None:
        self.lifetime = lifetime
        self.calls = 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        await asyncio.sleep(0.01)
        return AccessToken(f"assertion-{self.calls}", int(time.time()) + self.lifetime)

    async def close(self) -> None:
        pass


async def test_the_assertion_is_fetched_once_by_concurrent_callers_and_reused_while_valid() -> None:
    host = Host(lifetime=3600)
    assertion = HostAssertion(host, "api://AzureADTokenExchange")  # type: ignore[arg-type]
    assert set(await asyncio.gather(*(assertion.get() for _ in range(20)))) == {"assertion-1"}
    assert await assertion.get() == "assertion-1" and host.calls == 1


async def test_an_assertion_within_five_minutes_of_its_expiry_is_fetched_again() -> None:
    host = Host(lifetime=299)
    assertion = HostAssertion(host, "api://AzureADTokenExchange")  # type: ignore[arg-type]
    assert await assertion.get() == "assertion-1"
    assert await assertion.get() == "assertion-2" and host.calls == 2


async def test_every_federated_credential_shares_one_assertion(settings: Settings) -> None:
    host = Host(lifetime=3600)
    transport = shared_transport(settings)
    cache = CredentialCache(settings, transport, host_credential=host)  # type: ignore[arg-type]
    try:
        for tenant in (str(uuid.uuid4()), str(uuid.uuid4())):
            credential: Any = await cache.get(tenant, Identity(IdentityType.FEDERATED, FEDERATED_APP))
            await credential._refresh_assertion()
        assert host.calls == 1
    finally:
        await cache.close()
        await close_transport(transport)
