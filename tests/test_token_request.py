"""The federated identity's lean token request, against the sandbox's Entra ID stand-in."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import AioHttpTransport
from azure.identity.aio import ManagedIdentityCredential

from sandbox.cloud import AADSTS, CloudSandbox
from sandbox.scenario import FaultRule, load_scenario
from shared.spine.errors import _status, aadsts_code, retry_after_seconds
from shared.spine.token_request import AssertionTokenCredential, TokenEndpoint
from tests.test_sandbox_cloud import (
    ARM_SCOPE,
    DEMO,
    EXCHANGE_SCOPE,
    FABRIKAM,
    FEDERATED_APP,
    MI_CLIENT,
    NORTHWIND,
    NORTHWIND_OID,
    SECRET_APP,
    WOODGROVE,
    claims_of,
)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudSandbox]:
    with CloudSandbox(load_scenario(DEMO), state_dir=tmp_path_factory.mktemp("cloud")) as running:
        yield running


@pytest.fixture(autouse=True)
def _restore(cloud: CloudSandbox) -> Iterator[None]:
    yield
    cloud.clear_faults()


@pytest.fixture
async def assertion(cloud: CloudSandbox, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("IDENTITY_ENDPOINT", cloud.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", cloud.identity_header)
    monkeypatch.delenv("IDENTITY_SERVER_THUMBPRINT", raising=False)
    async with ManagedIdentityCredential(client_id=MI_CLIENT, connection_verify=str(cloud.ca_path)) as host:
        return str((await host.get_token(EXCHANGE_SCOPE)).token)


@pytest.fixture
async def endpoint(cloud: CloudSandbox) -> AsyncIterator[TokenEndpoint]:
    transport = AioHttpTransport(connection_verify=str(cloud.ca_path))
    yield TokenEndpoint(cloud.authority, transport, retry_total=2)
    await transport.close()


def federated_tenant(cloud: CloudSandbox) -> str:
    """A tenant of its own where the federated app has a service principal."""
    tenant_id = str(uuid.uuid4())
    cloud.add_tenant(tenant_id, f"Test tenant {tenant_id[:8]}")
    cloud.add_service_principal(tenant_id, FEDERATED_APP, str(uuid.uuid4()))
    return tenant_id


def credential(
    tenant_id: str, client_id: str, value: str, endpoint: TokenEndpoint
) -> AssertionTokenCredential:
    async def give() -> str:
        return value

    return AssertionTokenCredential(tenant_id, client_id, give, endpoint)


def requests(cloud: CloudSandbox, tenant_id: str) -> int:
    return int(cloud.stats()["tokenRequests"].get(tenant_id, 0))


async def refusal(lean: AssertionTokenCredential) -> ClientAuthenticationError:
    with pytest.raises(ClientAuthenticationError) as refused:
        await lean.get_token(ARM_SCOPE)
    return refused.value


async def test_a_token_for_the_tenant_asked_once_per_scope(
    cloud: CloudSandbox, assertion: str, endpoint: TokenEndpoint
) -> None:
    before = requests(cloud, NORTHWIND)
    async with credential(NORTHWIND, FEDERATED_APP, assertion, endpoint) as lean:
        token = await lean.get_token(ARM_SCOPE)
        again = await asyncio.gather(*(lean.get_token(ARM_SCOPE) for _ in range(5)))
        info = await lean.get_token_info(ARM_SCOPE)
    claims = claims_of(cloud, token.token, NORTHWIND)
    assert (claims["tid"], claims["oid"], claims["appid"]) == (NORTHWIND, NORTHWIND_OID, FEDERATED_APP)
    assert token.expires_on > time.time() + 600
    assert {t.token for t in again} == {token.token} and info.token == token.token
    assert info.token_type == "Bearer"
    assert requests(cloud, NORTHWIND) == before + 1


async def test_concurrent_first_requests_share_one_token(
    cloud: CloudSandbox, assertion: str, endpoint: TokenEndpoint
) -> None:
    tenant_id = federated_tenant(cloud)
    lean = credential(tenant_id, FEDERATED_APP, assertion, endpoint)
    tokens = await asyncio.gather(*(lean.get_token(ARM_SCOPE) for _ in range(8)))
    assert len({t.token for t in tokens}) == 1 and requests(cloud, tenant_id) == 1


async def test_a_token_near_its_expiry_or_a_claims_challenge_asks_again(
    cloud: CloudSandbox, assertion: str, endpoint: TokenEndpoint
) -> None:
    tenant_id = federated_tenant(cloud)
    lean = credential(tenant_id, FEDERATED_APP, assertion, endpoint)
    first = await lean.get_token_info(ARM_SCOPE)
    key = next(iter(lean._tokens))
    lean._tokens[key] = type(first)(first.token, int(time.time()) + 200)  # inside the 5-minute margin
    await lean.get_token(ARM_SCOPE)
    assert requests(cloud, tenant_id) == 1  # asked less than 30 s ago: used as it is (azure-identity's delay)
    lean._last_request = 0.0
    await lean.get_token(ARM_SCOPE)
    assert requests(cloud, tenant_id) == 2
    await lean.get_token(ARM_SCOPE, claims='{"access_token": {"nbf": {"essential": true}}}')
    assert requests(cloud, tenant_id) == 3
    await lean.get_token(ARM_SCOPE)
    assert requests(cloud, tenant_id) == 3
    # Entra's refresh_in: the token is asked for again once it has passed.
    key = next(iter(lean._tokens))
    lean._tokens[key] = type(first)(first.token, int(time.time()) + 3600, refresh_on=int(time.time()) - 1)
    lean._last_request = 0.0
    await lean.get_token(ARM_SCOPE)
    assert requests(cloud, tenant_id) == 4


async def test_a_failed_refresh_keeps_the_valid_token(
    cloud: CloudSandbox, assertion: str, endpoint: TokenEndpoint
) -> None:
    tenant_id = federated_tenant(cloud)
    lean = credential(tenant_id, FEDERATED_APP, assertion, endpoint)
    first = await lean.get_token_info(ARM_SCOPE)
    key = next(iter(lean._tokens))
    lean._tokens[key] = type(first)(first.token, int(time.time()) + 200)
    lean._last_request = 0.0
    cloud.add_fault(tenant_id, FaultRule(target="token", kind="aadsts", aadsts=700016, count=1))
    assert (await lean.get_token(ARM_SCOPE)).token == first.token


@pytest.mark.parametrize(
    ("case", "code"),
    [("never consented", 700016), ("no federated identity", 70021), ("forged", 700027), ("expired", 700024)],
)
async def test_each_refusal_carries_its_aadsts_code_and_response(
    cloud: CloudSandbox, assertion: str, endpoint: TokenEndpoint, case: str, code: int
) -> None:
    tenant_id, client_id, value = NORTHWIND, FEDERATED_APP, assertion
    if case == "never consented":
        tenant_id = WOODGROVE
    elif case == "no federated identity":
        tenant_id, client_id = FABRIKAM, SECRET_APP
    elif case == "forged":
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        value = jwt.encode(jwt.decode(assertion, options={"verify_signature": False}), key, algorithm="RS256")
    else:
        claims = jwt.decode(assertion, options={"verify_signature": False})
        value = cloud.issue_token(
            claims["tid"], claims["sub"], claims["aud"], lifetime_seconds=-600, issuer=claims["iss"]
        )
    error = await refusal(credential(tenant_id, client_id, value, endpoint))
    assert aadsts_code(error) == code
    assert _status(error) == AADSTS[code][0] and error.response is not None
    assert f"({AADSTS[code][1]}) AADSTS{code}:" in error.message
    assert value not in str(error) and value not in repr(error)


@pytest.mark.parametrize("code", sorted(AADSTS))
async def test_every_injected_aadsts_refusal_is_read(
    cloud: CloudSandbox, assertion: str, endpoint: TokenEndpoint, code: int
) -> None:
    tenant_id = federated_tenant(cloud)
    cloud.add_fault(tenant_id, FaultRule(target="token", kind="aadsts", aadsts=code, retry_after=3, count=9))
    lean = credential(
        tenant_id,
        FEDERATED_APP,
        assertion,
        TokenEndpoint(cloud.authority, endpoint._transport, retry_total=0),
    )
    error = await refusal(lean)
    assert aadsts_code(error) == code and _status(error) == AADSTS[code][0]
    assert retry_after_seconds(error) == 3


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_throttling_and_server_errors_are_retried(
    cloud: CloudSandbox, assertion: str, endpoint: TokenEndpoint, status: int
) -> None:
    tenant_id = federated_tenant(cloud)
    cloud.add_fault(
        tenant_id, FaultRule(target="token", kind="status", status=status, retry_after=0, count=1)
    )
    token = await credential(tenant_id, FEDERATED_APP, assertion, endpoint).get_token(ARM_SCOPE)
    assert token.token and requests(cloud, tenant_id) == 2


async def test_a_status_that_outlasts_the_retries_reaches_the_caller(
    cloud: CloudSandbox, assertion: str, endpoint: TokenEndpoint
) -> None:
    tenant_id = federated_tenant(cloud)
    cloud.add_fault(tenant_id, FaultRule(target="token", kind="status", status=429, retry_after=7, count=1))
    once = TokenEndpoint(cloud.authority, endpoint._transport, retry_total=0)
    error = await refusal(credential(tenant_id, FEDERATED_APP, assertion, once))
    assert _status(error) == 429 and retry_after_seconds(error) == 7
    assert assertion not in str(error)


async def test_a_network_error_is_retried_then_reaches_the_caller(
    cloud: CloudSandbox, assertion: str, endpoint: TokenEndpoint
) -> None:
    tenant_id = federated_tenant(cloud)
    cloud.add_fault(tenant_id, FaultRule(target="token", kind="drop", count=1))
    assert (await credential(tenant_id, FEDERATED_APP, assertion, endpoint).get_token(ARM_SCOPE)).token
    cloud.add_fault(tenant_id, FaultRule(target="token", kind="drop", count=1))
    once = TokenEndpoint(cloud.authority, endpoint._transport, retry_total=0)
    with pytest.raises((ServiceRequestError, ServiceResponseError)) as failed:
        await credential(tenant_id, FEDERATED_APP, assertion, once).get_token(ARM_SCOPE)
    assert assertion not in str(failed.value)


async def test_nothing_secret_in_a_repr_or_another_tenant(
    cloud: CloudSandbox, assertion: str, endpoint: TokenEndpoint
) -> None:
    lean = credential(NORTHWIND, FEDERATED_APP, assertion, endpoint)
    token = await lean.get_token(ARM_SCOPE)
    shown: list[Any] = [repr(lean), str(lean), repr(endpoint), repr(lean.__dict__.keys())]
    assert not any(assertion in text or token.token in text for text in shown)
    with pytest.raises(ClientAuthenticationError):
        await lean.get_token(ARM_SCOPE, tenant_id=WOODGROVE)
    with pytest.raises(ValueError):
        await lean.get_token()
