"""End to end on one machine: the CRM's message through the local AMQP broker (real azure-servicebus
SDK), the local Functions host running function_app, the Entra/ARM sandbox and Azurite."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from palctl.cli import main as palctl
from sandbox.broker import ServiceBusBroker
from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from sandbox.scenario import FaultRule
from shared.links.ledger import UNKNOWN_TENANT
from shared.links.rows import HistoryEvent
from shared.links.service import get_service
from tenants import FEDERATED_APP, LITWARE, NORTHWIND, PARTNER_ID, TAILSPIN, WOODGROVE, onboarding_message

QUEUE = "customer-onboarded"


async def send(env: dict[str, str], *messages: tuple[dict[str, Any] | bytes, str]) -> None:
    async with ServiceBusClient.from_connection_string(env["ServiceBusConnection"]) as client:
        async with client.get_queue_sender(QUEUE) as sender:
            await sender.send_messages(
                [
                    ServiceBusMessage(
                        body if isinstance(body, bytes) else json.dumps(body), message_id=message_id
                    )
                    for body, message_id in messages
                ]
            )


async def history(tenant: str) -> list[HistoryEvent]:
    return await (await get_service()).ledger.history(tenant, limit=1000)


async def wait_for_final(tenant: str, message_id: str, *, timeout: float = 30) -> list[HistoryEvent]:
    """Events of a message and its scheduled retries (newest first), once the newest is final."""
    deadline = time.monotonic() + timeout
    while True:
        mine = [e for e in await history(tenant) if e.message_id.split(":retry")[0] == message_id]
        if mine and mine[0].is_final:
            return mine
        if time.monotonic() > deadline:
            raise AssertionError(f"no final outcome for {message_id} within {timeout} s: {mine}")
        await asyncio.sleep(0.2)


async def wait_until_idle(broker: ServiceBusBroker, host: LocalFunctionsHost, *, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while any(broker.queue_counts(QUEUE)[k] for k in ("active", "locked", "scheduled")):
        assert time.monotonic() < deadline, broker.queue_counts(QUEUE)
        await asyncio.sleep(0.2)


async def test_onboarded_customer_is_linked(
    host: LocalFunctionsHost, bus_env: dict[str, str], cloud: CloudSandbox
) -> None:
    await send(bus_env, (onboarding_message(NORTHWIND, correlationId="CRM-9"), "crm-1"))
    events = await wait_for_final(NORTHWIND, "crm-1")
    assert [e.outcome for e in events] == ["linked"]
    assert any(link["tenantId"] == NORTHWIND and link["partnerId"] == PARTNER_ID for link in cloud.links())
    assert [i.succeeded for i in host.invocations] == [True]


async def test_malformed_message_is_rejected_once_and_never_retried(
    host: LocalFunctionsHost, bus_env: dict[str, str], broker: ServiceBusBroker
) -> None:
    await send(bus_env, (b'{"schemaVersion": 1, "customerTenantId": "nope"', "crm-bad"))
    events = await wait_for_final(UNKNOWN_TENANT, "crm-bad")
    assert [(e.outcome, e.code) for e in events] == [("rejected", "not-json")]
    # Idle means completed and nothing scheduled: a retry is scheduled before completion, so none
    # can come.
    await wait_until_idle(broker, host)
    assert len(host.invocations) == 1
    assert broker.queue_counts(QUEUE)["dead_lettered"] == 0
    assert len(await history(UNKNOWN_TENANT)) == 1


async def test_throttled_call_is_retried_after_the_servers_retry_after(
    host: LocalFunctionsHost, bus_env: dict[str, str], cloud: CloudSandbox, broker: ServiceBusBroker
) -> None:
    cloud.add_fault(LITWARE, FaultRule(target="arm", kind="status", status=429, retry_after=3, count=1))
    body = onboarding_message(
        LITWARE,
        "15e6da4c-256b-441c-a9e3-585cf41b8266",
        identity_type="certificate",
        secret_name="litware-pal-cert",
    )
    await send(bus_env, (body, "crm-throttled"))
    linked, throttled = await wait_for_final(LITWARE, "crm-throttled", timeout=40)

    assert (throttled.outcome, throttled.code, throttled.attempt) == ("transient", "HTTP429", 1)
    assert throttled.retry_after_seconds == 3
    planned_delay = (throttled.next_attempt_at - throttled.event_time).total_seconds()
    assert 2.9 <= planned_delay <= 4  # Retry-After (3 s) beats the 1-2 s backoff
    assert (linked.outcome, linked.attempt, linked.message_id) == (
        "linked",
        2,
        "crm-throttled:retry2",
    )
    assert (linked.event_time - throttled.event_time).total_seconds() >= 2.9
    await wait_until_idle(broker, host)
    assert broker.queue_counts(QUEUE)["dead_lettered"] == 0


async def test_transient_failures_end_as_failed_after_the_last_attempt(
    bus_env: dict[str, str], cloud: CloudSandbox, broker: ServiceBusBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_ATTEMPTS", "3")
    cloud.add_fault(TAILSPIN, FaultRule(target="arm", kind="status", status=503))
    async with LocalFunctionsHost(settings=bus_env | {"MAX_ATTEMPTS": "3"}) as running:
        from shared.links.service import reset_service

        await reset_service()
        await send(bus_env, (onboarding_message(TAILSPIN), "crm-503"))
        events = await wait_for_final(TAILSPIN, "crm-503", timeout=40)
        assert [(e.outcome, e.attempt) for e in events] == [
            ("failed", 3),
            ("transient", 2),
            ("transient", 1),
        ]
        assert "gave up after 3 attempts" in events[0].reason
        states = await (await get_service()).ledger.link_states(TAILSPIN)
        assert (states[0].outcome, states[0].consecutive_failures) == ("failed", 3)
        await wait_until_idle(broker, running)
        await reset_service()


async def test_broken_partner_credential_alerts_once_pauses_and_recovers(
    host: LocalFunctionsHost,
    bus_env: dict[str, str],
    cloud: CloudSandbox,
    broker: ServiceBusBroker,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("CREDENTIAL_BROKEN_PAUSE_SECONDS", "5")  # read when the first message arrives
    # Our federated assertion is refused everywhere (as if the app's trust were broken) for a while.
    cloud.add_fault("*", FaultRule(target="token", kind="aadsts", aadsts=700027))
    await send(bus_env, (onboarding_message(NORTHWIND), "crm-0"))
    deadline = time.monotonic() + 10
    while not await history(NORTHWIND):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert (await history(NORTHWIND))[0].outcome == "partner-credential-broken"

    # While the breaker is open, another tenant's message is deferred without asking Entra ID.
    await send(bus_env, (onboarding_message(TAILSPIN), "crm-1"), (onboarding_message(WOODGROVE), "crm-2"))
    deadline = time.monotonic() + 10
    while not (await history(TAILSPIN) and await history(WOODGROVE)):  # both deferrals recorded
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    stats = cloud.stats()["tokenRequests"]
    assert stats.get(TAILSPIN, 0) == stats.get(WOODGROVE, 0) == 0
    # Deferred attempts are in the ledger, as such.
    (deferral,) = await history(TAILSPIN)
    assert (deferral.outcome, deferral.code) == ("partner-credential-broken", "deferred")
    deferred = {r.args[0] for r in caplog.records if "deferred" in r.msg and isinstance(r.args, tuple)}
    assert {"crm-1", "crm-2"} <= deferred
    alerts = [r for r in caplog.records if r.levelno == logging.ERROR and "ALERT" in r.getMessage()]
    assert len(alerts) == 1 and "AADSTS700027" in alerts[0].getMessage()

    cloud.clear_faults("*")  # the partner fixes the app's federated credential
    for tenant, message_id, final in ((NORTHWIND, "crm-0", "linked"), (TAILSPIN, "crm-1", "already-linked")):
        events = await wait_for_final(tenant, message_id, timeout=30)
        assert events[0].outcome == final
        assert all(e.outcome != "failed" for e in events)
    assert (await wait_for_final(WOODGROVE, "crm-2"))[0].outcome == "needs-customer-action"
    await wait_until_idle(broker, host)
    assert all(invocation.succeeded for invocation in host.invocations)


async def test_same_csv_enqueued_twice_is_processed_once(
    host: LocalFunctionsHost, bus_env: dict[str, str], broker: ServiceBusBroker, tmp_path: Path
) -> None:
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text(
        "customerTenantId,clientId,identityType,customerName\n"
        f"{NORTHWIND},{FEDERATED_APP},federated,Northwind\n"
        f"{TAILSPIN},{FEDERATED_APP},federated,Tailspin\n"
        f"{WOODGROVE},{FEDERATED_APP},federated,Woodgrove\n"
    )
    arguments = ["enqueue", "--csv", str(csv_file), "--connection-string", bus_env["ServiceBusConnection"]]
    assert await asyncio.to_thread(palctl, arguments) == 0
    assert await asyncio.to_thread(palctl, arguments) == 0
    for tenant in (NORTHWIND, TAILSPIN, WOODGROVE):
        message_id = f"onboard:{tenant}:{FEDERATED_APP}:default:{datetime.now(UTC).date().isoformat()}"
        assert len(await wait_for_final(tenant, message_id)) == 1
    await wait_until_idle(broker, host)  # completed and nothing scheduled: no further invocation
    assert len(host.invocations) == 3


async def test_host_killed_mid_handler_redelivers_and_records_once(
    bus_env: dict[str, str], cloud: CloudSandbox, broker: ServiceBusBroker, tmp_path: Path
) -> None:
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": bus_env}))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox.functions_host",
        "--settings",
        str(settings_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert process.stdout is not None
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        assert "onboard_customer" in ready["functions"]
        # ARM answers slowly, so the handler is still waiting for the PUT's reply after ARM made the link.
        cloud.add_fault(NORTHWIND, FaultRule(target="arm", kind="latency", latency_ms=4000, count=2))
        await send(bus_env, (onboarding_message(NORTHWIND), "crm-kill"))
        deadline = time.monotonic() + 20
        while not any(link["tenantId"] == NORTHWIND for link in cloud.links()):
            assert time.monotonic() < deadline, "the PUT never reached ARM"
            await asyncio.sleep(0.05)
        process.kill()  # between the ARM call and the ledger write and the message completion
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert await history(NORTHWIND) == []

    from shared.links.service import reset_service

    await reset_service()
    async with LocalFunctionsHost(settings=bus_env) as restarted:
        events = await wait_for_final(NORTHWIND, "crm-kill")
        await wait_until_idle(broker, restarted)
    # The intent recorded before the PUT tells the redelivery that this message made the link.
    assert [(e.outcome, e.delivery_count) for e in events] == [("linked", 2)]
    assert "made by an earlier attempt" in events[0].reason
    assert len(await history(NORTHWIND)) == 1
    await reset_service()
