"""The local Service Bus broker, driven only through the real azure-servicebus SDK (sync and aio)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import (
    AutoLockRenewer,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageState,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusReceiver,
    ServiceBusSender,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import MessageLockLostError, MessagingEntityNotFoundError
from proton import Data, Delivery, Described, Message, ulong

from sandbox.broker import DEFAULT_CONFIG, QueueConfig, ServiceBusBroker, load_queue_config
from sandbox.broker.amqp import link_disposition as _link_disposition
from sandbox.broker.codec import decode_sections as _sections
from sandbox.broker.codec import split_batch as _split_batch
from sandbox.broker.queues import after_failed_delivery as _after_failed_delivery

ROOT = Path(__file__).resolve().parents[1]
SHORT_LOCK = 1.0
EMPTY = dict(active=0, scheduled=0, locked=0, deferred=0, dead_lettered=0)


def _queue(name: str, **options: Any) -> QueueConfig:
    return QueueConfig(name, **{"lock_duration_seconds": 30.0, **options})


# One queue per test keeps the tests independent without purging between them.
QUEUES = [
    _queue("props"),
    _queue("batch"),
    _queue("large"),
    _queue("abandon"),
    _queue("dead-letter"),
    _queue("max-delivery", max_delivery_count=2),
    _queue("expiry", lock_duration_seconds=SHORT_LOCK),
    _queue("renew", lock_duration_seconds=SHORT_LOCK),
    _queue("auto-renew", lock_duration_seconds=SHORT_LOCK),
    _queue("scheduled", requires_duplicate_detection=True),
    _queue("peek"),
    _queue("dedup", requires_duplicate_detection=True, duplicate_detection_window_seconds=1.0),
    _queue("delete-mode"),
    _queue("empty"),
    _queue("credit"),
    _queue("concurrent"),
    _queue("disconnect"),
    _queue("deferred"),
    _queue("aio"),
    _queue("purge"),
]


class Bus:
    """One sender per queue and receivers closed together at the end: the SDK spends about half a second
    opening a link and another half closing one (it joins a keep-alive thread that sleeps a second)."""

    def __init__(self, client: ServiceBusClient) -> None:
        self.client = client
        self.senders: dict[str, ServiceBusSender] = {}
        self.receivers: list[ServiceBusReceiver] = []

    def send(self, queue: str, *messages: ServiceBusMessage) -> None:
        if queue not in self.senders:
            self.senders[queue] = self.client.get_queue_sender(queue)
        self.senders[queue].send_messages(list(messages))

    def receiver(self, queue: str, **options: Any) -> ServiceBusReceiver:
        self.receivers.append(self.client.get_queue_receiver(queue, **options))
        return self.receivers[-1]

    def close(self) -> None:
        handlers = [*self.senders.values(), *self.receivers]
        with ThreadPoolExecutor(max_workers=len(handlers) or 1) as pool:
            list(pool.map(lambda handler: handler.close(), handlers))


@pytest.fixture(scope="module")
def broker() -> Iterator[ServiceBusBroker]:
    with ServiceBusBroker(QUEUES) as running:
        yield running


@pytest.fixture(scope="module")
def bus(broker: ServiceBusBroker) -> Iterator[Bus]:
    with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        opened = Bus(client)
        yield opened
        opened.close()


def body(message: ServiceBusReceivedMessage) -> bytes:
    return b"".join(message.body)


def test_message_properties_round_trip(bus: Bus, broker: ServiceBusBroker) -> None:
    before = datetime.now(UTC)
    properties = {"attempt": 2, "source": "test"}
    bus.send(
        "props",
        ServiceBusMessage(
            b'{"tenant": 1}',
            message_id="m-1",
            correlation_id="corr-1",
            subject="customer.onboarded",
            content_type="application/json",
            application_properties=properties,
        ),
    )
    receiver = bus.receiver("props")
    (message,) = receiver.receive_messages(max_wait_time=5)
    assert (message.message_id, message.correlation_id, message.subject) == (
        "m-1",
        "corr-1",
        "customer.onboarded",
    )
    assert (message.content_type, body(message)) == ("application/json", b'{"tenant": 1}')
    assert message.application_properties == {b"attempt": 2, b"source": b"test"}
    assert (message.sequence_number, message.delivery_count) == (1, 0)
    assert isinstance(message.lock_token, uuid.UUID)
    assert message.enqueued_time_utc is not None and message.locked_until_utc is not None
    assert before - timedelta(seconds=1) <= message.enqueued_time_utc <= datetime.now(UTC)
    assert timedelta(seconds=25) < message.locked_until_utc - datetime.now(UTC) <= timedelta(seconds=30)
    assert broker.queue_counts("props")["locked"] == 1
    receiver.complete_message(message)
    assert broker.queue_counts("props") == EMPTY


def test_batch_send_delivers_each_message(bus: Bus, broker: ServiceBusBroker) -> None:
    bus.send("batch", ServiceBusMessage(b"warm-up", message_id="b-warm"))
    sender = bus.senders["batch"]
    batch = sender.create_message_batch()
    for n in range(3):
        batch.add_message(
            ServiceBusMessage(f"body-{n}", message_id=f"b-{n}", application_properties={"n": n})
        )
    sender.send_messages(batch)
    assert broker.queue_counts("batch")["active"] == 4
    receiver = bus.receiver("batch")
    messages = receiver.receive_messages(max_message_count=4, max_wait_time=5)
    assert [m.message_id for m in messages] == ["b-warm", "b-0", "b-1", "b-2"]
    assert [body(m) for m in messages[1:]] == [b"body-0", b"body-1", b"body-2"]
    assert [m.application_properties for m in messages[1:]] == [{b"n": n} for n in range(3)]
    assert [m.sequence_number for m in messages] == [1, 2, 3, 4]
    for message in messages:
        receiver.complete_message(message)
    assert broker.queue_counts("batch") == EMPTY


def test_a_large_message_spans_several_frames(bus: Bus, broker: ServiceBusBroker) -> None:
    payload = bytes(range(256)) * 800  # 200 KiB: several 64 KiB AMQP frames each way
    bus.send("large", ServiceBusMessage(payload, message_id="big"))
    receiver = bus.receiver("large")
    (message,) = receiver.receive_messages(max_wait_time=5)
    assert (message.message_id, body(message)) == ("big", payload)
    receiver.complete_message(message)
    assert broker.queue_counts("large") == EMPTY


def test_abandon_redelivers_at_once_with_delivery_count_plus_one(bus: Bus) -> None:
    bus.send("abandon", ServiceBusMessage(b"retry me", message_id="a-1"))
    receiver = bus.receiver("abandon")
    (first,) = receiver.receive_messages(max_wait_time=5)
    receiver.abandon_message(first)
    started = time.monotonic()
    (second,) = receiver.receive_messages(max_wait_time=5)
    assert time.monotonic() - started < 1.0
    assert (second.message_id, second.delivery_count) == ("a-1", 1)
    assert second.lock_token != first.lock_token
    receiver.complete_message(second)


def test_dead_letter_with_reason_then_complete_from_the_sub_queue(bus: Bus, broker: ServiceBusBroker) -> None:
    bus.send("dead-letter", ServiceBusMessage(b"poison", message_id="d-1"))
    receiver = bus.receiver("dead-letter")
    (message,) = receiver.receive_messages(max_wait_time=5)
    receiver.dead_letter_message(message, reason="BadPayload", error_description="tenant id missing")
    assert broker.dead_letters("dead-letter") == [
        {"message_id": "d-1", "reason": "BadPayload", "description": "tenant id missing", "body": b"poison"}
    ]
    dead_letter_queue = bus.receiver("dead-letter", sub_queue=ServiceBusSubQueue.DEAD_LETTER)
    (dead,) = dead_letter_queue.receive_messages(max_wait_time=5)
    assert (dead.message_id, dead.dead_letter_reason) == ("d-1", "BadPayload")
    assert dead.dead_letter_error_description == "tenant id missing"
    assert dead.dead_letter_source is None  # Service Bus sets it only on dead letters forwarded elsewhere
    dead_letter_queue.complete_message(dead)
    assert broker.queue_counts("dead-letter") == EMPTY


def test_max_delivery_count_dead_letters_automatically(bus: Bus, broker: ServiceBusBroker) -> None:
    bus.send("max-delivery", ServiceBusMessage(b"always fails", message_id="x-1"))
    receiver = bus.receiver("max-delivery")
    for attempt in range(2):
        (message,) = receiver.receive_messages(max_wait_time=5)
        assert message.delivery_count == attempt
        receiver.abandon_message(message)
    assert receiver.receive_messages(max_wait_time=0.3) == []
    (dead,) = broker.dead_letters("max-delivery")
    assert (dead["message_id"], dead["reason"]) == ("x-1", "MaxDeliveryCountExceeded")
    (peeked,) = bus.receiver("max-delivery", sub_queue=ServiceBusSubQueue.DEAD_LETTER).peek_messages()
    assert (peeked.dead_letter_reason, peeked.delivery_count) == ("MaxDeliveryCountExceeded", 2)


def test_expired_lock_makes_the_message_available_again(bus: Bus, broker: ServiceBusBroker) -> None:
    bus.send("expiry", ServiceBusMessage(b"slow", message_id="e-1"))
    receiver = bus.receiver("expiry")
    (first,) = receiver.receive_messages(max_wait_time=5)
    assert receiver.receive_messages(max_wait_time=0.2) == []  # locked: not delivered twice
    assert broker.queue_counts("expiry")["locked"] == 1
    time.sleep(SHORT_LOCK)
    (peeked,) = receiver.peek_messages(sequence_number=first.sequence_number)
    assert (peeked.message_id, peeked.delivery_count) == ("e-1", 1)  # the expired lock used up one delivery
    (second,) = receiver.receive_messages(max_wait_time=5)
    assert (second.message_id, second.delivery_count) == ("e-1", 1)
    with pytest.raises(MessageLockLostError):
        receiver.complete_message(first)
    receiver.complete_message(second)
    assert broker.queue_counts("expiry") == EMPTY


def test_renew_message_lock_extends_the_lock(bus: Bus, broker: ServiceBusBroker) -> None:
    bus.send("renew", ServiceBusMessage(b"long work", message_id="r-1"))
    receiver = bus.receiver("renew")
    (message,) = receiver.receive_messages(max_wait_time=5)
    original = message.locked_until_utc
    assert original is not None
    time.sleep(0.6)
    assert receiver.renew_message_lock(message) > original
    time.sleep(0.6)  # past the original lock, inside the renewed one
    receiver.complete_message(message)
    assert broker.queue_counts("renew") == EMPTY


def test_auto_lock_renewer_keeps_the_lock(bus: Bus, broker: ServiceBusBroker) -> None:
    bus.send("auto-renew", ServiceBusMessage(b"long work", message_id="ar-1"))
    with AutoLockRenewer(max_lock_renewal_duration=10) as renewer:
        receiver = bus.receiver("auto-renew", auto_lock_renewer=renewer)
        (message,) = receiver.receive_messages(max_wait_time=5)
        time.sleep(1.5 * SHORT_LOCK)
        assert broker.queue_counts("auto-renew")["locked"] == 1
        receiver.complete_message(message)
    assert broker.queue_counts("auto-renew") == EMPTY


def test_scheduled_messages_are_invisible_until_due_and_cancellable(
    bus: Bus, broker: ServiceBusBroker
) -> None:
    receiver = bus.receiver("scheduled")
    assert receiver.peek_messages() == []  # opens the links before the clock starts
    bus.send("scheduled", ServiceBusMessage(b"now", message_id="s-0"))
    due = datetime.now(UTC) + timedelta(seconds=1.5)
    sender = bus.senders["scheduled"]
    (kept,) = sender.schedule_messages(ServiceBusMessage(b"later", message_id="s-1"), due)
    (cancelled,) = sender.schedule_messages(ServiceBusMessage(b"never", message_id="s-2"), due)
    sender.send_messages(ServiceBusMessage(b"also later", message_id="s-3", scheduled_enqueue_time_utc=due))
    assert broker.queue_counts("scheduled")["scheduled"] == 3
    sender.cancel_scheduled_messages(cancelled)
    assert broker.queue_counts("scheduled") == {**EMPTY, "active": 1, "scheduled": 2}
    peeked = receiver.peek_messages(max_message_count=5)
    assert [(m.message_id, m.state) for m in peeked] == [
        ("s-0", ServiceBusMessageState.ACTIVE),
        ("s-1", ServiceBusMessageState.SCHEDULED),
        ("s-3", ServiceBusMessageState.SCHEDULED),
    ]
    assert peeked[1].scheduled_enqueue_time_utc is not None
    assert abs(peeked[1].scheduled_enqueue_time_utc - due) < timedelta(milliseconds=5)
    (now,) = receiver.receive_messages(max_message_count=5, max_wait_time=0.3)
    assert now.message_id == "s-0"
    later = receiver.receive_messages(max_message_count=5, max_wait_time=5)
    assert datetime.now(UTC) >= due - timedelta(milliseconds=50)  # within the broker's 50 ms tick
    assert [(m.message_id, m.sequence_number) for m in later] == [("s-1", kept), ("s-3", kept + 2)]
    for message in (now, *later):
        receiver.complete_message(message)


def test_peek_reads_without_locking(bus: Bus, broker: ServiceBusBroker) -> None:
    bus.send("peek", *[ServiceBusMessage(f"p{n}", message_id=f"p-{n}") for n in range(3)])
    receiver = bus.receiver("peek")
    assert [(m.message_id, m.sequence_number) for m in receiver.peek_messages(max_message_count=2)] == [
        ("p-0", 1),
        ("p-1", 2),
    ]
    (third,) = receiver.peek_messages(max_message_count=5)  # continues after the last peeked
    assert (third.message_id, third.sequence_number, third.lock_token) == ("p-2", 3, None)
    assert receiver.peek_messages(sequence_number=4) == []
    assert broker.queue_counts("peek") == {**EMPTY, "active": 3}
    messages = receiver.receive_messages(max_message_count=3, max_wait_time=5)
    assert [(m.message_id, m.delivery_count) for m in messages] == [(f"p-{n}", 0) for n in range(3)]
    for message in messages:
        receiver.complete_message(message)


def test_duplicate_message_id_is_dropped_within_the_window(bus: Bus, broker: ServiceBusBroker) -> None:
    bus.send("dedup", ServiceBusMessage(b"first", message_id="same"))
    bus.send("dedup", ServiceBusMessage(b"copy", message_id="same"))  # accepted, then silently dropped
    bus.send("dedup", ServiceBusMessage(b"retry", message_id="same:retry1"))
    assert broker.queue_counts("dedup")["active"] == 2
    time.sleep(1.1)  # the queue's window is one second
    bus.send("dedup", ServiceBusMessage(b"after the window", message_id="same"))
    receiver = bus.receiver("dedup", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE)
    messages = receiver.receive_messages(max_message_count=5, max_wait_time=2)
    assert [body(m) for m in messages] == [b"first", b"retry", b"after the window"]


def test_receive_and_delete_removes_on_delivery(bus: Bus, broker: ServiceBusBroker) -> None:
    bus.send("delete-mode", ServiceBusMessage(b"once", message_id="rd-1"))
    receiver = bus.receiver("delete-mode", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE)
    (message,) = receiver.receive_messages(max_wait_time=5)
    assert (message.message_id, message.lock_token) == ("rd-1", None)
    assert broker.queue_counts("delete-mode") == EMPTY
    assert receiver.peek_messages(sequence_number=1) == []


def test_receive_on_an_empty_queue_returns_when_max_wait_time_is_up(bus: Bus) -> None:
    receiver = bus.receiver("empty")
    assert receiver.peek_messages() == []  # opens the links: max_wait_time bounds the opening too
    started = time.monotonic()
    assert receiver.receive_messages(max_message_count=10, max_wait_time=0.5) == []
    assert 0.4 <= time.monotonic() - started < 1.5


def test_credit_limits_what_a_receiver_gets(bus: Bus, broker: ServiceBusBroker) -> None:
    bus.send("credit", *[ServiceBusMessage(f"c{n}", message_id=f"c-{n}") for n in range(5)])
    receiver = bus.receiver("credit", prefetch_count=0)
    messages = receiver.receive_messages(max_message_count=2, max_wait_time=5)
    assert [m.message_id for m in messages] == ["c-0", "c-1"]
    assert broker.queue_counts("credit") == {**EMPTY, "active": 3, "locked": 2}
    rest = receiver.receive_messages(max_message_count=10, max_wait_time=2)
    assert [m.message_id for m in rest] == ["c-2", "c-3", "c-4"]
    for message in messages + rest:
        receiver.complete_message(message)
    assert broker.queue_counts("credit") == EMPTY


async def test_concurrent_receivers_each_get_distinct_messages(bus: Bus, broker: ServiceBusBroker) -> None:
    seen: set[str] = set()

    async def drain(client: AsyncServiceBusClient) -> list[str]:
        received = []
        async with client.get_queue_receiver("concurrent") as receiver:
            while len(seen) < 10:
                for message in await receiver.receive_messages(max_message_count=3, max_wait_time=0.5):
                    received.append(str(message.message_id))
                    seen.add(str(message.message_id))
                    await asyncio.sleep(0.05)  # hold the lock while the other receiver works
                    await receiver.complete_message(message)
        return received

    bus.send("concurrent", *[ServiceBusMessage(f"n{n}", message_id=f"n-{n}") for n in range(10)])
    async with AsyncServiceBusClient.from_connection_string(broker.connection_string) as client:
        first, second = await asyncio.wait_for(asyncio.gather(drain(client), drain(client)), timeout=20)
    assert sorted(first + second) == sorted(f"n-{n}" for n in range(10))  # each message exactly once
    assert first and second
    assert broker.queue_counts("concurrent") == EMPTY


def test_a_disconnected_client_returns_its_unsettled_messages(bus: Bus, broker: ServiceBusBroker) -> None:
    bus.send("disconnect", ServiceBusMessage(b"orphan", message_id="o-1"))
    with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        (message,) = client.get_queue_receiver("disconnect").receive_messages(max_wait_time=5)
        assert broker.queue_counts("disconnect")["locked"] == 1
    # Gone without settling: the message is available again at once, with one delivery used up.
    assert broker.queue_counts("disconnect") == {**EMPTY, "active": 1}
    receiver = bus.receiver("disconnect")
    (again,) = receiver.receive_messages(max_wait_time=5)
    assert (again.message_id, again.delivery_count) == (message.message_id, 1)
    receiver.complete_message(again)


def test_deferred_messages_are_received_by_sequence_number(bus: Bus, broker: ServiceBusBroker) -> None:
    bus.send("deferred", *[ServiceBusMessage(f"d{n}", message_id=f"df-{n}") for n in range(2)])
    receiver = bus.receiver("deferred")
    messages = receiver.receive_messages(max_message_count=2, max_wait_time=5)
    for message in messages:
        receiver.defer_message(message)
    assert broker.queue_counts("deferred") == {**EMPTY, "deferred": 2}
    assert receiver.receive_messages(max_wait_time=0.2) == []
    kept, dead = receiver.receive_deferred_messages([m.sequence_number for m in messages])
    assert (kept.message_id, kept.state) == ("df-0", ServiceBusMessageState.DEFERRED)
    receiver.complete_message(kept)  # deferred messages settle through the management link
    receiver.dead_letter_message(dead, reason="Unwanted", error_description="deferred, then rejected")
    assert broker.queue_counts("deferred") == {**EMPTY, "dead_lettered": 1}
    assert broker.dead_letters("deferred")[0]["reason"] == "Unwanted"


async def test_aio_client_sends_receives_and_settles(broker: ServiceBusBroker) -> None:
    async with AsyncServiceBusClient.from_connection_string(broker.connection_string) as client:
        async with client.get_queue_sender("aio") as sender:
            batch = await sender.create_message_batch()
            batch.add_message(ServiceBusMessage(b"ok", message_id="aio-1"))
            batch.add_message(ServiceBusMessage(b"bad", message_id="aio-2"))
            await sender.send_messages(batch)
        async with client.get_queue_receiver("aio") as receiver:
            ok, bad = await receiver.receive_messages(max_message_count=2, max_wait_time=5)
            original = ok.locked_until_utc
            assert original is not None and await receiver.renew_message_lock(ok) >= original
            await receiver.complete_message(ok)
            await receiver.abandon_message(bad)
            (again,) = await receiver.receive_messages(max_wait_time=5)
            assert (again.message_id, again.delivery_count) == ("aio-2", 1)
            await receiver.dead_letter_message(again, reason="Invalid", error_description="bad body")
    assert broker.dead_letters("aio") == [
        {"message_id": "aio-2", "reason": "Invalid", "description": "bad body", "body": b"bad"}
    ]


def test_purge_empties_the_queue_and_its_dead_letters(bus: Bus, broker: ServiceBusBroker) -> None:
    bus.send("purge", ServiceBusMessage(b"a", message_id="pu-1"), ServiceBusMessage(b"b", message_id="pu-2"))
    receiver = bus.receiver("purge")
    (message, _) = receiver.receive_messages(max_message_count=2, max_wait_time=5)
    receiver.dead_letter_message(message, reason="r")
    broker.purge("purge")
    assert broker.queue_counts("purge") == EMPTY
    assert receiver.peek_messages(sequence_number=1) == []
    bus.send("purge", ServiceBusMessage(b"a again", message_id="pu-1"))  # duplicate history is gone too
    assert broker.queue_counts("purge")["active"] == 1


def test_messages_survive_a_restart_on_the_same_port() -> None:
    broker = ServiceBusBroker([_queue("restart")]).start()
    port = broker.port
    try:
        fast_retry = {"retry_backoff_factor": 0.05}
        with ServiceBusClient.from_connection_string(broker.connection_string, **fast_retry) as client:
            with client.get_queue_sender("restart") as sender:
                sender.send_messages(ServiceBusMessage(b"before", message_id="k-1"))
                broker.stop()
                broker.start()
                sender.send_messages(ServiceBusMessage(b"after", message_id="k-2"))  # the SDK reconnects
            with client.get_queue_receiver("restart") as receiver:
                messages = receiver.receive_messages(max_message_count=2, max_wait_time=5)
                assert [m.message_id for m in messages] == ["k-1", "k-2"]
    finally:
        broker.stop()
    assert broker.port == port


def test_an_unknown_queue_is_refused(bus: Bus) -> None:
    with pytest.raises(MessagingEntityNotFoundError):
        with bus.client.get_queue_sender("no-such-queue") as sender:
            sender.send_messages(ServiceBusMessage(b"lost"))
    with pytest.raises(MessagingEntityNotFoundError):
        bus.receiver("no-such-queue").receive_messages(max_wait_time=1)


def test_the_shipped_config_served_from_the_command_line() -> None:
    configs = {q.name: q for q in load_queue_config(DEFAULT_CONFIG)}
    assert set(configs) == {"customer-onboarded", "link-verify", "attribution-audit", "solution-delivery"}
    onboarded = configs["customer-onboarded"]
    assert (onboarded.lock_duration_seconds, onboarded.max_delivery_count) == (60, 10)
    # One day: the CSV backfill and the nightly run are de-duplicated per day.
    assert (onboarded.duplicate_detection_window_seconds, onboarded.requires_duplicate_detection) == (
        86400,
        True,
    )
    command = [sys.executable, "-m", "sandbox.broker", "--config", str(DEFAULT_CONFIG)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert ready["connectionString"] == (
            f"Endpoint=sb://127.0.0.1:{ready['port']};SharedAccessKeyName=RootManageSharedAccessKey;"
            "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
        )
        with ServiceBusClient.from_connection_string(ready["connectionString"]) as client:
            with client.get_queue_sender("customer-onboarded") as sender:
                sender.send_messages(ServiceBusMessage(b"hello", message_id="cli-1"))
            with client.get_queue_receiver("Customer-Onboarded") as receiver:  # entity names ignore case
                (message,) = receiver.receive_messages(max_wait_time=5)
                assert message.message_id == "cli-1"
                receiver.complete_message(message)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


# --- the broker's pure queue rules ---


@pytest.mark.parametrize(
    ("count", "limit", "after"),
    [(0, 10, (1, False)), (8, 10, (9, False)), (9, 10, (10, True)), (0, 1, (1, True))],
)
def test_a_failed_delivery_counts_and_dead_letters_at_the_max_delivery_count(
    count: int, limit: int, after: tuple[int, bool]
) -> None:
    assert _after_failed_delivery(count, limit) == after


@pytest.mark.parametrize(
    ("state", "undeliverable_here", "status"),
    [
        (Delivery.ACCEPTED, False, "completed"),
        (Delivery.REJECTED, False, "suspended"),
        (Delivery.RELEASED, False, "released"),
        (Delivery.MODIFIED, False, "abandoned"),  # with or without delivery-failed
        (Delivery.MODIFIED, True, "defered"),
    ],
)
def test_link_outcomes_settle_as_service_bus_does(state: int, undeliverable_here: bool, status: str) -> None:
    assert _link_disposition(state, undeliverable_here=undeliverable_here) == status


def _section(code: int, value: Any) -> bytes:
    data = Data()
    data.put_object(Described(ulong(code), value))
    return data.encode()


def _message_ids(raw: bytes) -> list[str]:
    ids = []
    for message in _split_batch(_sections(raw)):
        decoded = Message()
        decoded.decode(b"".join(section.raw for section in message))
        ids.append(str(decoded.id))
    return ids


def test_a_batch_envelope_is_split_whatever_sections_it_carries() -> None:
    inner = [
        Message(id=f"m-{n}", body=f'{{"n": {n}}}'.encode(), properties={"n": n}, inferred=True).encode()
        for n in range(2)
    ]
    header, annotations, properties, application = (
        _section(0x70, [True]),
        _section(0x72, {}),
        _section(0x73, ["m-0"]),
        _section(0x74, {"n": 0}),
    )
    envelope = header + annotations + properties + application + b"".join(_section(0x75, m) for m in inner)
    assert _message_ids(envelope) == ["m-0", "m-1"]
    (second,) = [m for m in _split_batch(_sections(envelope)) if any(s.value == ["m-1"] for s in m)]
    assert [s.value for s in second if s.code == 0x74] == [{"n": 1}]


@pytest.mark.parametrize(
    "body",
    [
        b'{"n": 1}',
        bytes.fromhex("005377739cfbb1d3b9c93a470b0c8099559eeeb52c6f3e77fa35"),  # proton fails on its char
        _section(0x75, b"data") + _section(0x73, ["late properties"]),  # sections out of order
        _section(0x73, ["no body"]),
    ],
)
def test_a_data_body_that_is_not_a_message_is_kept_whole(body: bytes) -> None:
    raw = _section(0x73, ["single"]) + _section(0x75, body)
    assert _message_ids(raw) == ["single"]
