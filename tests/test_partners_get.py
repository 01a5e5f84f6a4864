"""The linker reads an identity's link with its own `partners.get` (no SDK model deserializer): it
answers as the SDK's generated operation does, the same link for a 200 and the same error for any
other status."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import DeserializationError, HttpResponseError

from sandbox.cloud import CloudSandbox
from sandbox.scenario import FaultRule
from shared.links.arm_client import TENANT_AUTH, partner_of
from shared.links.linker import Linker
from shared.spine.credentials import CredentialCache
from shared.spine.identity import Identity, IdentityType
from shared.spine.settings import Settings
from shared.spine.transport import close_transport, shared_transport
from tenants import FEDERATED_APP, NORTHWIND, TAILSPIN

FIELDS = ("partner_id", "partner_name", "object_id", "version", "created_time", "updated_time", "state")


@pytest.fixture
async def linker(settings: Settings) -> AsyncIterator[Linker]:
    transport = shared_transport(settings)
    credentials = CredentialCache(settings, transport)
    yield Linker(settings, credentials, transport)
    await credentials.close()
    await close_transport(transport)


async def both(linker: Linker, tenant: str = TAILSPIN) -> tuple[Any, Any]:
    """What the light `get` and the SDK's `get` answer for the tenant's federated identity: the
    value, or the error's type, status and ARM error code."""
    client = await linker._signed_in(tenant, Identity(IdentityType.FEDERATED, FEDERATED_APP))
    option = {TENANT_AUTH: client.partners._option[TENANT_AUTH]}

    async def answer(get: Any) -> Any:
        try:
            found = await get()
        except HttpResponseError as error:
            return type(error), error.status_code, getattr(error.error, "code", None)
        return tuple(getattr(found, name) for name in FIELDS)

    return await answer(client.partners.get), await answer(
        lambda: linker._shared_client.partners.get(**option)
    )


async def test_a_link_reads_as_the_sdk_reads_it(linker: Linker, cloud: CloudSandbox) -> None:
    light, sdk = await both(linker)  # Tailspin's identity is linked already
    assert light == sdk and light[0] is not None and isinstance(light[4], datetime)
    light, sdk = await both(linker, NORTHWIND)  # Northwind's is not: 404
    assert light == sdk and light[1] == 404


@pytest.mark.parametrize("status", [403, 404, 409, 400, 401])
async def test_an_error_is_the_sdks_error(linker: Linker, cloud: CloudSandbox, status: int) -> None:
    cloud.add_fault(TAILSPIN, FaultRule(target="arm", kind="status", status=status))
    light, sdk = await both(linker)
    assert light == sdk and light[1] == status


def test_a_body_that_is_not_a_partner_is_refused_as_the_sdk_refuses_it() -> None:
    properties = {
        "partnerId": "1234567",
        "objectId": "x",
        "version": 2,
        "createdTime": "2026-01-02T03:04:05.1234567Z",
    }
    found = partner_of({"properties": properties})
    assert (found.partner_id, found.version, found.state) == ("1234567", 2, None)
    assert found.created_time == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    for bad in (
        None,
        [],
        {"properties": None},
        {"properties": {**properties, "version": "2"}},
        {"properties": {**properties, "version": True}},
        {"properties": {**properties, "partnerId": 1234567}},
        {"properties": {**properties, "createdTime": "yesterday"}},
        {"properties": {**properties, "updatedTime": 5}},
    ):
        with pytest.raises(DeserializationError):
            partner_of(bad)
