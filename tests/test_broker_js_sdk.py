"""The local Service Bus broker driven by Microsoft's JavaScript SDK (@azure/service-bus from npm), as a
CRM written in JavaScript would use it: the scripts in tests/js/ run under node against the broker."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.broker import QueueConfig, ServiceBusBroker
from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from shared.links.ledger import UNKNOWN_TENANT
from shared.links.rows import HistoryEvent
from shared.links.service import get_service
from tenants import LITWARE, LITWARE_APP, NORTHWIND, PARTNER_ID, onboarding_message

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "js"
NODE = shutil.which("node")
NODE_TIMEOUT_SECONDS = 60
LOCK_SECONDS = 30.0
EMPTY = dict(active=0, scheduled=0, locked=0, deferred=0, dead_lettered=0)

MAX_DELIVERY_COUNT = 10  # Service Bus's default

# One queue per test keeps the tests independent without purging between them.
QUEUES = [
    QueueConfig(name, lock_duration_seconds=LOCK_SECONDS, max_delivery_count=MAX_DELIVERY_COUNT)
    for name in (
        "js-single",
        "js-batch",
        "js-array",
        "js-schedule",
        "js-settle",
        "js-dead-letter",
        "js-max-delivery",
    )
]


@pytest.fixture(scope="module")
def js_broker() -> Iterator[ServiceBusBroker]:
    with ServiceBusBroker(QUEUES) as running:
        yield running


def node(connection_string: str, script: str, **arguments: Any) -> Any:
    """Runs tests/js/<script> with its JSON arguments and returns the JSON it prints (`make setup`
    installs node's packages; `npm ci` alone does too)."""
    assert NODE is not None, "node is not installed"
    completed = subprocess.run(
        [NODE, str(SCRIPTS / script), json.dumps(arguments)],
        env={**os.environ, "SERVICEBUS_CONNECTION": connection_string},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def message(n: int, prefix: str) -> dict[str, Any]:
    return {
        "body": {"n": n},
        "messageId": f"{prefix}-{n}",
        "subject": f"subject-{n}",
        "contentType": "application/json",
        "correlationId": f"corr-{n}",
        "applicationProperties": {"n": n, "source": f"crm-{n}"},
    }


def as_sent(received: dict[str, Any]) -> dict[str, Any]:
    keys = ("body", "messageId", "subject", "contentType", "correlationId", "applicationProperties")
    return {key: received[key] for key in keys}


def test_single_messages_keep_their_properties_and_are_locked(js_broker: ServiceBusBroker) -> None:
    # The SDK reads UseDevelopmentEmulator=true as plain AMQP (no TLS) on the endpoint's port.
    assert js_broker.connection_string.endswith(";UseDevelopmentEmulator=true")
    sent = [message(n, "single") for n in range(2)]
    node(js_broker.connection_string, "send.js", queue="js-single", mode="single", messages=sent)
    assert js_broker.queue_counts("js-single") == {**EMPTY, "active": 2}
    before = time.time() * 1000
    received = node(
        js_broker.connection_string,
        "receive.js",
        queue="js-single",
        count=2,
        waitMs=5000,
        settle=["complete", "complete"],
    )
    assert [as_sent(m) for m in received] == sent
    assert [(m["sequenceNumber"], m["deliveryCount"], m["state"]) for m in received] == [
        (1, 0, "active"),
        (2, 0, "active"),
    ]
    for m in received:
        assert uuid.UUID(m["lockToken"])
        assert (
            before + (LOCK_SECONDS - 5) * 1000
            < m["lockedUntilUtc"]
            <= time.time() * 1000 + LOCK_SECONDS * 1000
        )
    assert js_broker.queue_counts("js-single") == EMPTY


@pytest.mark.parametrize("mode", ["batch", "array"])
def test_a_batch_is_split_into_its_messages(js_broker: ServiceBusBroker, mode: str) -> None:
    queue = f"js-{mode}"
    sent = [message(n, mode) for n in range(3)]
    node(js_broker.connection_string, "send.js", queue=queue, mode=mode, messages=sent)
    assert js_broker.queue_counts(queue) == {**EMPTY, "active": 3}
    received = node(
        js_broker.connection_string, "receive.js", queue=queue, count=3, waitMs=5000, settle=["complete"] * 3
    )
    assert [as_sent(m) for m in received] == sent
    assert [m["sequenceNumber"] for m in received] == [1, 2, 3]
    assert js_broker.queue_counts(queue) == EMPTY


def test_a_scheduled_message_arrives_when_due_and_a_cancelled_one_never(js_broker: ServiceBusBroker) -> None:
    result = node(js_broker.connection_string, "schedule.js", queue="js-schedule", delayMs=1500, waitMs=10000)
    kept, cancelled = result["sequenceNumbers"]
    assert [(m["messageId"], m["sequenceNumber"], m["state"]) for m in result["peeked"]] == [
        ("js-kept", kept, "scheduled")
    ]
    assert abs(result["peeked"][0]["scheduledEnqueueTimeUtc"] - result["due"]) < 5
    (received,) = result["received"]
    assert (received["messageId"], received["body"], received["sequenceNumber"]) == ("js-kept", "later", kept)
    assert result["receivedAt"] >= result["due"] - 50  # within the broker's 50 ms tick
    assert cancelled != kept
    assert js_broker.queue_counts("js-schedule") == EMPTY


def test_complete_removes_and_abandon_redelivers_with_one_more_delivery(js_broker: ServiceBusBroker) -> None:
    sent = [message(n, "settle") for n in range(2)]
    node(js_broker.connection_string, "send.js", queue="js-settle", mode="single", messages=sent)
    first = node(
        js_broker.connection_string,
        "receive.js",
        queue="js-settle",
        count=2,
        waitMs=5000,
        settle=["complete", "abandon"],
    )
    assert [(m["messageId"], m["deliveryCount"]) for m in first] == [("settle-0", 0), ("settle-1", 0)]
    assert js_broker.queue_counts("js-settle") == {**EMPTY, "active": 1}
    (again,) = node(
        js_broker.connection_string,
        "receive.js",
        queue="js-settle",
        count=1,
        waitMs=5000,
        settle=["complete"],
    )
    # The SDK abandons with `modified` without `delivery-failed`: Service Bus counts it all the same.
    assert (again["messageId"], again["deliveryCount"]) == ("settle-1", 1)
    assert again["lockToken"] != first[1]["lockToken"]
    assert js_broker.queue_counts("js-settle") == EMPTY


def test_dead_letter_keeps_the_reason_and_sets_no_source(js_broker: ServiceBusBroker) -> None:
    sent = message(0, "dead")
    node(js_broker.connection_string, "send.js", queue="js-dead-letter", mode="single", messages=[sent])
    reason = {"reason": "BadPayload", "description": "tenant id missing"}
    node(
        js_broker.connection_string,
        "receive.js",
        queue="js-dead-letter",
        count=1,
        waitMs=5000,
        settle=["deadLetter"],
        **reason,
    )
    assert js_broker.queue_counts("js-dead-letter") == {**EMPTY, "dead_lettered": 1}
    (dead,) = node(
        js_broker.connection_string,
        "receive.js",
        queue="js-dead-letter",
        subQueue="deadLetter",
        count=1,
        waitMs=5000,
        settle=["complete"],
    )
    assert (dead["messageId"], dead["deadLetterReason"], dead["deadLetterErrorDescription"]) == (
        "dead-0",
        "BadPayload",
        "tenant id missing",
    )
    assert dead["applicationProperties"] == {
        **sent["applicationProperties"],
        "DeadLetterReason": "BadPayload",
        "DeadLetterErrorDescription": "tenant id missing",
    }
    # Service Bus sets DeadLetterSource only on dead letters auto-forwarded from another entity.
    assert dead["deadLetterSource"] is None
    assert js_broker.queue_counts("js-dead-letter") == EMPTY


def test_abandoned_until_the_max_delivery_count_is_dead_lettered(js_broker: ServiceBusBroker) -> None:
    node(
        js_broker.connection_string,
        "send.js",
        queue="js-max-delivery",
        mode="single",
        messages=[{"body": "always fails", "messageId": "poison"}],
    )
    result = node(
        js_broker.connection_string,
        "abandon_until_dead.js",
        queue="js-max-delivery",
        maxAbandons=12,
        waitMs=5000,
    )
    # Delivered MaxDeliveryCount times: 0 failed deliveries the first time, one more after each abandon.
    assert result["deliveries"] == list(range(MAX_DELIVERY_COUNT))
    assert result["remaining"] == []
    dead = result["deadLetter"]
    assert dead is not None, result
    assert (dead["messageId"], dead["deadLetterReason"], dead["deliveryCount"]) == (
        "poison",
        "MaxDeliveryCountExceeded",
        MAX_DELIVERY_COUNT,
    )
    assert dead["deadLetterSource"] is None
    assert js_broker.queue_counts("js-max-delivery") == EMPTY


async def final_outcomes(tenants: list[str], count: int, *, timeout: float = 30) -> dict[str, str]:
    """The final outcome of each message recorded under these tenants or under UNKNOWN_TENANT (where a
    body that cannot be read is recorded), once `count` messages have one."""
    ledger = (await get_service()).ledger
    deadline = time.monotonic() + timeout
    while True:
        newest: dict[str, HistoryEvent] = {}
        for tenant in [*tenants, UNKNOWN_TENANT]:
            for event in await ledger.history(tenant, limit=100):  # newest first
                newest.setdefault(event.message_id.split(":retry")[0], event)
        final = {
            message_id: f"{event.outcome} {event.code or ''}".strip()
            for message_id, event in newest.items()
            if event.is_final
        }
        if len(final) >= count:
            return final
        assert time.monotonic() < deadline, f"{count} final outcomes expected within {timeout} s: {final}"
        await asyncio.sleep(0.2)


async def test_a_javascript_crm_batch_links_every_customer(
    host: LocalFunctionsHost, bus_env: dict[str, str], cloud: CloudSandbox, broker: ServiceBusBroker
) -> None:
    customers = [
        (NORTHWIND, onboarding_message(NORTHWIND, correlationId="CRM-JS-1"), "crm-js-1"),
        (
            LITWARE,
            onboarding_message(
                LITWARE, LITWARE_APP, identity_type="certificate", secret_name="litware-pal-cert"
            ),
            "crm-js-2",
        ),
    ]
    batch = [
        {"body": body, "messageId": message_id, "contentType": "application/json"}
        for _, body, message_id in customers
    ]
    await asyncio.to_thread(
        node,
        bus_env["ServiceBusConnection"],
        "send.js",
        queue="customer-onboarded",
        mode="batch",
        messages=batch,
    )
    outcomes = await final_outcomes([NORTHWIND, LITWARE], len(customers))
    assert {message_id: outcome.split()[0] for message_id, outcome in outcomes.items()} == {
        "crm-js-1": "linked",
        "crm-js-2": "linked",
    }
    linked = {link["tenantId"] for link in cloud.links() if link["partnerId"] == PARTNER_ID}
    assert {NORTHWIND, LITWARE} <= linked
    assert [i.succeeded for i in host.invocations] == [True, True]
    assert broker.queue_counts("customer-onboarded")["dead_lettered"] == 0
