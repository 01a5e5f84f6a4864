"""Retries under load: many invocations scheduling their retry at the same moment on a cold host,
through the local broker, the local host and the sandbox; nothing escapes, nothing is lost."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from sandbox.azurite import Azurite
from sandbox.broker import ServiceBusBroker
from sandbox.cloud import CloudSandbox
from sandbox.fleet import APP, MI_CLIENT, fleet_scenario, fleet_tenants
from sandbox.functions_host import LocalFunctionsHost
from sandbox.local_env import local_settings
from sandbox.scenario import FaultRule, Scenario
from shared.links.service import get_service, reset_service
from tenants import NORTHWIND, onboarding_message

QUEUE = "customer-onboarded"
FLEET = fleet_tenants(32, series=7)


@pytest.fixture
def fleet_cloud(tmp_path: Path) -> Iterator[CloudSandbox]:
    scenario = Scenario.from_dict(fleet_scenario(FLEET, linked=False))
    with CloudSandbox(scenario, state_dir=tmp_path / "cloud") as running:
        yield running


@pytest.fixture
async def fleet_host(
    fleet_cloud: CloudSandbox, azurite: Azurite, broker: ServiceBusBroker, tmp_path: Path
) -> AsyncIterator[LocalFunctionsHost]:
    env = local_settings(
        fleet_cloud,
        azurite.connection_string,
        managed_identity_client_id=MI_CLIENT,
        service_bus_connection_string=broker.connection_string,
        ledger_table="Retry" + tmp_path.name[-12:].replace("_", "").replace("-", ""),
    )
    env |= {"RETRY_BASE_SECONDS": "1", "RETRY_MAX_SECONDS": "2", "SDK_RETRY_TOTAL": "0"}
    await reset_service()
    host = await LocalFunctionsHost(settings=env).start()
    yield host
    await host.stop(grace_seconds=5)
    await reset_service()


async def _send_fleet(connection: str) -> None:
    async with (
        ServiceBusClient.from_connection_string(connection) as client,
        client.get_queue_sender(QUEUE) as sender,
    ):
        body: dict[str, Any] = {"schemaVersion": 1, "identity": {"type": "federated", "clientId": APP}}
        await sender.send_messages(
            [
                ServiceBusMessage(json.dumps(body | {"customerTenantId": tenant}), message_id=f"cold-{n}")
                for n, tenant in enumerate(FLEET)
            ]
        )


async def _final_outcomes(timeout: float) -> dict[str, list[str]]:
    """Outcomes per tenant, oldest first, once every tenant has a final one."""
    ledger = (await get_service()).ledger
    deadline = time.monotonic() + timeout
    while True:
        outcomes = {}
        for tenant in FLEET:
            events = await ledger.history(tenant, limit=100)
            outcomes[tenant] = [e.outcome for e in reversed(events)]
        if all(o and o[-1] == "linked" for o in outcomes.values()) or time.monotonic() > deadline:
            return outcomes
        await asyncio.sleep(0.3)


async def test_concurrent_first_retries_on_a_cold_host_escape_nothing(
    fleet_host: LocalFunctionsHost, fleet_cloud: CloudSandbox, broker: ServiceBusBroker
) -> None:
    # Every tenant's first ARM call fails: all 32 first attempts schedule their retry through the one
    # shared sender at about the same moment, before any link to the broker is open. One fault per
    # tenant (not 32 shared by all): on a loaded machine an early retry could otherwise take a fault
    # meant for a first attempt that had not reached ARM yet.
    for tenant in FLEET:
        fleet_cloud.add_fault(tenant, FaultRule(target="arm", kind="status", status=503, count=1))
    await _send_fleet(broker.connection_string)

    outcomes = await _final_outcomes(timeout=60)

    failed = [i for i in fleet_host.invocations if not i.succeeded]
    assert failed == [], f"{len(failed)} invocations raised: {[i.error for i in failed][:3]}"
    assert all(o == ["transient", "linked"] for o in outcomes.values()), outcomes
    assert broker.dead_letters(QUEUE) == []


async def test_a_partner_credential_broken_for_too_long_ends_as_failed(
    bus_env: dict[str, str], cloud: CloudSandbox, broker: ServiceBusBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    capped = {"CREDENTIAL_BROKEN_PAUSE_SECONDS": "1", "CREDENTIAL_BROKEN_MAX_SECONDS": "3"}
    for name, value in capped.items():
        monkeypatch.setenv(name, value)
    # A mistyped federated trust: every sign-in fails, for good.
    cloud.add_fault("*", FaultRule(target="token", kind="aadsts", aadsts=700027))
    await reset_service()
    async with LocalFunctionsHost(settings=bus_env | capped):
        async with (
            ServiceBusClient.from_connection_string(bus_env["ServiceBusConnection"]) as client,
            client.get_queue_sender(QUEUE) as sender,
        ):
            await sender.send_messages(
                ServiceBusMessage(json.dumps(onboarding_message(NORTHWIND)), message_id="m")
            )
        ledger = (await get_service()).ledger
        deadline = time.monotonic() + 30
        while not (events := await ledger.history(NORTHWIND, limit=100)) or events[0].outcome != "failed":
            assert time.monotonic() < deadline, [e.outcome for e in events]
            await asyncio.sleep(0.2)
    await reset_service()

    assert events[0].code == "partner-credential-broken-too-long"
    assert not events[0].next_attempt_at
    earlier = {e.outcome for e in events[1:]}
    assert earlier == {"partner-credential-broken"}  # every pause is in the history
    assert len(events) >= 3
