"""No message ends in a dead-letter queue without the ledger knowing: the dead-letter triggers record
each one as a final `failed` (under its tenant when the body parses) and complete it."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from sandbox.broker import ServiceBusBroker
from sandbox.functions_host import LocalFunctionsHost
from shared.links.dead_letters import DeadLetter, broker_reason, dead_letter_attempt
from shared.links.ledger import UNKNOWN_TENANT
from shared.links.service import get_service, reset_service
from shared.spine.outcomes import OutcomeKind
from tenants import FEDERATED_APP, NORTHWIND, TAILSPIN, onboarding_message

QUEUE = "customer-onboarded"
PLANTED = "Zq78Q~PLANTEDdeadLetterSecret0123456789abcd"


async def dead_letter(
    connection: str,
    body: bytes,
    message_id: str,
    reason: str,
    description: str,
    properties: dict[str | bytes, Any] | None = None,
) -> None:
    """Send a message and dead-letter it as a client holding its lock can (no host is running)."""
    async with ServiceBusClient.from_connection_string(connection) as client:
        async with client.get_queue_sender(QUEUE) as sender:
            await sender.send_messages(
                ServiceBusMessage(body, message_id=message_id, application_properties=properties)
            )
        async with client.get_queue_receiver(QUEUE) as receiver:
            (message,) = await receiver.receive_messages(max_message_count=1, max_wait_time=5)
            await receiver.dead_letter_message(message, reason=reason, error_description=description)


async def wait_for_empty_dead_letter_queue(broker: ServiceBusBroker, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while broker.queue_counts(QUEUE)["dead_lettered"] or broker.queue_counts(QUEUE)["locked"]:
        assert time.monotonic() < deadline, broker.queue_counts(QUEUE)
        await asyncio.sleep(0.1)


async def everything_stored(tenants: list[str]) -> str:
    ledger = (await get_service()).ledger
    texts = []
    for tenant in tenants:
        texts += [repr(e) for e in await ledger.history(tenant, limit=100)]
        texts += [repr(s) for s in await ledger.link_states(tenant)]
    return "\n".join(texts)


async def test_dead_lettered_messages_are_recorded_as_failed_and_completed(
    bus_env: dict[str, str], broker: ServiceBusBroker
) -> None:
    connection = bus_env["ServiceBusConnection"]
    body = json.dumps(onboarding_message(NORTHWIND)).encode()
    await dead_letter(connection, body, "crm-dlq-1", "MaxDeliveryCountExceeded", "10 deliveries")
    hostile = f"\x1b[2J\nALERT partner credential broken {PLANTED}"
    await dead_letter(connection, b"not json at all", "crm-dlq-2", hostile, hostile)
    assert broker.queue_counts(QUEUE)["dead_lettered"] == 2

    await reset_service()
    async with LocalFunctionsHost(settings=bus_env):
        await wait_for_empty_dead_letter_queue(broker)
        ledger = (await get_service()).ledger
        (event,) = await ledger.history(NORTHWIND)
        (state,) = await ledger.link_states(NORTHWIND)
        (unparsed,) = await ledger.history(UNKNOWN_TENANT, limit=100)
        stored = await everything_stored([NORTHWIND, UNKNOWN_TENANT])
    await reset_service()

    assert (event.outcome, event.code, event.message_id) == ("failed", "dead-lettered", "crm-dlq-1")
    assert "MaxDeliveryCountExceeded" in event.reason
    assert (state.outcome, state.consecutive_failures) == ("failed", 1)
    assert (unparsed.outcome, unparsed.message_id) == ("failed", "crm-dlq-2")
    assert "unrecognised-reason" in unparsed.reason
    assert PLANTED not in stored and "\x1b" not in stored and "ALERT" not in stored


async def test_dead_lettered_copy_of_a_finished_message_adds_nothing(
    host: LocalFunctionsHost, bus_env: dict[str, str], broker: ServiceBusBroker
) -> None:
    connection = bus_env["ServiceBusConnection"]
    async with ServiceBusClient.from_connection_string(connection) as client:
        async with client.get_queue_sender(QUEUE) as sender:
            await sender.send_messages(
                ServiceBusMessage(json.dumps(onboarding_message(TAILSPIN)), message_id="crm-done")
            )
    ledger = (await get_service()).ledger
    deadline = time.monotonic() + 20
    while not await ledger.history(TAILSPIN):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    await host.stop(grace_seconds=5)
    await reset_service()

    # A late retry copy of the same message (say, one scheduled twice) is dead-lettered.
    body = json.dumps(onboarding_message(TAILSPIN)).encode()
    copy = {"palOriginalMessageId": "crm-done", "palAttempt": 2}
    await dead_letter(connection, body, "crm-done:retry2", "MaxDeliveryCountExceeded", "late", copy)
    async with LocalFunctionsHost(settings=bus_env):
        await wait_for_empty_dead_letter_queue(broker)
        events = await (await get_service()).ledger.history(TAILSPIN)
    await reset_service()
    assert [e.outcome for e in events] == ["already-linked"]


def letter(body: bytes, **changes: Any) -> DeadLetter:
    fields: dict[str, Any] = {
        "body": body,
        "message_id": "m-1",
        "original_id": "m-1",
        "delivery_count": 10,
        "reason": "MaxDeliveryCountExceeded",
        "attempt": 1,
    }
    return DeadLetter(**(fields | changes))


def test_the_broker_reason_is_kept_only_when_it_is_a_plain_name() -> None:
    assert broker_reason({"DeadLetterReason": "MaxDeliveryCountExceeded"}) == "MaxDeliveryCountExceeded"
    assert broker_reason({"DeadLetterReason": b"TTLExpiredException"}) == "TTLExpiredException"
    assert broker_reason({}) == "unspecified"
    for hostile in ("a\nb", "x" * 65, PLANTED, "password=hunter2", 42):
        assert broker_reason({"DeadLetterReason": hostile}) == "unrecognised-reason"


def test_a_dead_letter_is_filed_under_its_tenant_when_the_body_parses() -> None:
    body = json.dumps(onboarding_message(NORTHWIND, customerName="Northwind")).encode()
    attempt, outcome = dead_letter_attempt(
        letter(body), source="onboarding", default_partner_id="1234567", max_bytes=65536
    )
    assert (attempt.customer_tenant_id, attempt.client_id, attempt.customer_name) == (
        NORTHWIND,
        onboarding_message(NORTHWIND)["identity"]["clientId"],
        "Northwind",
    )
    assert outcome.kind is OutcomeKind.FAILED and outcome.code == "dead-lettered"

    attempt, _ = dead_letter_attempt(
        letter(json.dumps({"schemaVersion": 1, "customerTenantId": NORTHWIND}).encode()),
        source="onboarding",
        default_partner_id="1234567",
        max_bytes=65536,
    )
    assert (attempt.customer_tenant_id, attempt.client_id) == (NORTHWIND, None)


def test_a_dead_lettered_offboarding_is_filed_under_its_tenant_and_says_offboard_again() -> None:
    body = json.dumps({"schemaVersion": 1, "customerTenantId": NORTHWIND, "clientId": FEDERATED_APP}).encode()
    attempt, outcome = dead_letter_attempt(
        letter(body), source="offboarding", default_partner_id="1234567", max_bytes=65536
    )
    # Under its tenant, with no identity: the offboarded state is left as the last attempt left it.
    assert (attempt.customer_tenant_id, attempt.client_id, attempt.source) == (NORTHWIND, None, "offboarding")
    assert (outcome.kind, outcome.code) == (OutcomeKind.FAILED, "dead-lettered")
    assert outcome.remediation is not None and "Offboard the customer again" in outcome.remediation
    assert "Relink" not in outcome.remediation
