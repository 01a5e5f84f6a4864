"""The broker's queue rules alone (sandbox/broker/queues.py): no AMQP, no sockets, no clock."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from sandbox.broker.queues import (
    DLQ_SUFFIX,
    Queue,
    QueueConfig,
    QueueStore,
    StoredMessage,
    after_failed_delivery,
    load_queue_config,
)

T0 = 1_700_000_000.0  # any epoch: the store never reads a clock
LOCK = 30.0


def store(**options: Any) -> QueueStore[str]:
    return QueueStore([QueueConfig("q", lock_duration_seconds=LOCK, **options)])


def queue_of(s: QueueStore[str]) -> Queue[str]:
    return s.queue("q")[0]


def send(
    s: QueueStore[str], payload: str, *, message_id: str | None = None, now: float = T0, at: float = 0.0
) -> int:
    return s.enqueue(queue_of(s), payload, message_id=message_id, scheduled_for=at, now=now)


def receive(s: QueueStore[str], now: float = T0) -> tuple[StoredMessage[str], uuid.UUID]:
    """Peek-lock the first available message, as a receiver with credit would get it."""
    q = queue_of(s)
    message = s.available(q)[0]
    return message, s.lock(q, message, now)


def payloads(messages: list[StoredMessage[str]]) -> list[str]:
    return [m.payload for m in messages]


def dead_letters(s: QueueStore[str]) -> list[StoredMessage[str]]:
    return list(s.queue("q")[1].messages.values())


# ---- configuration ---------------------------------------------------------------------------------


def test_queue_config_refuses_what_service_bus_would() -> None:
    for bad in (
        dict(name=""),
        dict(name="a/b"),
        dict(name="q", lock_duration_seconds=0),
        dict(name="q", max_delivery_count=0),
        dict(name="q", duplicate_detection_window_seconds=0),
    ):
        with pytest.raises(ValueError):
            QueueConfig(**bad)  # type: ignore[arg-type]


def test_queue_config_from_json_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "queues.json"
    path.write_text(
        json.dumps(
            [
                {"name": "a"},
                {
                    "name": "b",
                    "lockDurationSeconds": 5,
                    "maxDeliveryCount": 3,
                    "duplicateDetectionWindowSeconds": 60,
                    "requiresDuplicateDetection": True,
                },
            ]
        )
    )
    a, b = load_queue_config(path)
    assert a == QueueConfig("a", 60.0, 10, 600.0, False)
    assert b == QueueConfig("b", 5.0, 3, 60.0, True)
    path.write_text("{}")
    with pytest.raises(ValueError, match="expected a JSON list"):
        load_queue_config(path)


def test_each_queue_has_a_dead_letter_queue_and_names_ignore_case() -> None:
    s: QueueStore[str] = QueueStore([QueueConfig("Orders")])
    q, dlq = s.queue("ORDERS")
    assert s.entity("orders") is q and s.entity("Orders" + DLQ_SUFFIX) is dlq
    assert q.dead_letter is dlq and dlq.dead_letter is None
    assert s.entity("nope") is None
    with pytest.raises(KeyError):
        s.queue("nope")
    with pytest.raises(KeyError):
        s.queue("orders" + DLQ_SUFFIX)  # a dead-letter queue is not a queue of its own name
    with pytest.raises(ValueError, match="configured twice"):
        QueueStore([QueueConfig("a"), QueueConfig("A")])


# ---- sending, FIFO, peek-lock ----------------------------------------------------------------------


def test_sequence_numbers_grow_per_queue_and_messages_come_out_in_order() -> None:
    s: QueueStore[str] = QueueStore([QueueConfig("a"), QueueConfig("b")])
    a, b = s.queue("a")[0], s.queue("b")[0]
    assert [s.enqueue(a, p, message_id=None, now=T0) for p in ("1", "2", "3")] == [1, 2, 3]
    assert s.enqueue(b, "x", message_id=None, now=T0) == 1
    assert payloads(s.available(a)) == ["1", "2", "3"]
    assert s.available(a)[0].enqueued_at == T0 and s.available(a)[0].delivery_count == 0


def test_a_locked_message_is_not_available_until_completed_which_removes_it() -> None:
    s = store()
    send(s, "a")
    send(s, "b")
    message, token = receive(s)
    assert message.payload == "a" and message.lock_token == token and message.locked_until == T0 + LOCK
    assert payloads(s.available(queue_of(s))) == ["b"]
    assert s.counts("q") == dict(active=1, scheduled=0, locked=1, deferred=0, dead_lettered=0)
    assert s.settle(token, "complete", T0 + 1)
    assert payloads(list(queue_of(s).messages.values())) == ["b"]
    assert not s.settle(token, "complete", T0 + 1)  # the lock went with the message
    assert s.locked(token, T0 + 1) is None


def test_abandon_counts_a_failed_delivery_and_offers_the_message_again() -> None:
    s = store()
    send(s, "a")
    message, token = receive(s)
    assert s.settle(token, "abandon", T0)
    assert message.delivery_count == 1 and message.lock_token is None
    assert s.available(queue_of(s)) == [message]


def test_release_gives_the_message_back_without_counting() -> None:
    s = store()
    send(s, "a")
    message, token = receive(s)
    assert s.settle(token, "release", T0)
    assert message.delivery_count == 0 and s.available(queue_of(s)) == [message]


@pytest.mark.parametrize(
    ("count", "limit", "after"),
    [(0, 10, (1, False)), (8, 10, (9, False)), (9, 10, (10, True)), (0, 1, (1, True))],
)
def test_a_failed_delivery_counts_and_dead_letters_at_the_max_delivery_count(
    count: int, limit: int, after: tuple[int, bool]
) -> None:
    assert after_failed_delivery(count, limit) == after


def test_the_max_delivery_count_dead_letters_with_its_reason() -> None:
    s = store(max_delivery_count=3)
    seq = send(s, "a")
    for attempt in range(1, 4):
        message, token = receive(s)
        assert s.settle(token, "abandon", T0)
        assert message.delivery_count == attempt
    assert s.available(queue_of(s)) == [] and queue_of(s).messages == {}
    (dead,) = dead_letters(s)
    assert dead.seq == seq and dead.payload == "a"
    assert dead.dead_letter == (
        "MaxDeliveryCountExceeded",
        "Message could not be consumed after 3 delivery attempts.",
    )
    assert s.counts("q")["dead_lettered"] == 1


def test_dead_letter_with_a_reason_and_description() -> None:
    s = store()
    send(s, "a")
    message, token = receive(s)
    assert s.settle(token, "dead-letter", T0, "BadBody", "not JSON")
    assert dead_letters(s) == [message]
    assert message.dead_letter == ("BadBody", "not JSON") and message.lock_token is None
    assert message.delivery_count == 0  # dead-lettering is not a failed delivery


def test_the_dead_letter_queue_is_a_queue_that_keeps_its_dead_letters() -> None:
    s = store(max_delivery_count=1)
    send(s, "a")
    _, token = receive(s)
    s.settle(token, "dead-letter", T0, "First", "one")
    dlq = s.queue("q")[1]
    (message,) = s.available(dlq)
    token = s.lock(dlq, message, T0)
    assert s.settle(token, "abandon", T0)  # past the max delivery count, and still there
    assert message.delivery_count == 1 and s.available(dlq) == [message]
    token = s.lock(dlq, message, T0)
    assert s.settle(token, "dead-letter", T0, "Second", "two")  # dead-lettered again: stays, new reason
    assert s.available(dlq) == [message] and message.dead_letter == ("Second", "two")
    token = s.lock(dlq, message, T0)
    assert s.settle(token, "complete", T0) and dlq.messages == {}


# ---- lock expiry and renewal -----------------------------------------------------------------------


def test_an_expired_lock_returns_the_message_as_a_failed_delivery() -> None:
    s = store()
    send(s, "a")
    message, token = receive(s)
    s.sweep(T0 + LOCK - 0.001)
    assert s.locked(token, T0 + LOCK - 0.001) is not None and message.lock_token == token
    assert s.locked(token, T0 + LOCK) is None  # expired, though not yet swept
    assert not s.settle(token, "complete", T0 + LOCK)
    s.sweep(T0 + LOCK)
    assert message.lock_token is None and message.delivery_count == 1
    assert s.available(queue_of(s)) == [message]


def test_lock_expiry_at_the_max_delivery_count_dead_letters() -> None:
    s = store(max_delivery_count=1)
    send(s, "a")
    receive(s)
    s.sweep(T0 + LOCK)
    (dead,) = dead_letters(s)
    assert dead.dead_letter is not None and dead.dead_letter[0] == "MaxDeliveryCountExceeded"


def test_renewing_extends_every_lock_or_none() -> None:
    s = store()
    send(s, "a")
    send(s, "b")
    first, one = receive(s)
    second, two = receive(s)
    assert s.renew([one, two], T0 + 10) == [T0 + 10 + LOCK] * 2
    assert first.locked_until == second.locked_until == T0 + 10 + LOCK
    s.sweep(T0 + LOCK + 1)
    assert first.lock_token == one  # the renewal kept it
    assert s.renew([one, uuid.uuid4()], T0 + 11) is None
    assert first.locked_until == T0 + 10 + LOCK  # nothing renewed
    assert s.renew([one], T0 + 10 + LOCK) is None  # too late


def test_settle_all_settles_every_lock_or_none() -> None:
    s = store()
    send(s, "a")
    send(s, "b")
    _, one = receive(s)
    _, two = receive(s)
    assert not s.settle_all([one, uuid.uuid4()], "complete", T0)
    assert len(queue_of(s).messages) == 2
    assert s.settle_all([one, two], "complete", T0)
    assert queue_of(s).messages == {}


# ---- scheduled messages ----------------------------------------------------------------------------


def test_a_scheduled_message_becomes_visible_at_its_time() -> None:
    s = store()
    seq = send(s, "later", at=T0 + 60)
    send(s, "now")
    message = queue_of(s).messages[seq]
    assert message.scheduled_at == T0 + 60 and message.enqueued_at == T0 + 60
    assert payloads(s.available(queue_of(s))) == ["now"]
    assert s.counts("q")["scheduled"] == 1
    s.sweep(T0 + 59.9)
    assert message.scheduled_at is not None
    s.sweep(T0 + 60)
    assert message.scheduled_at is None
    assert payloads(s.available(queue_of(s))) == ["later", "now"]  # by sequence number


def test_a_time_in_the_past_is_not_scheduled() -> None:
    s = store()
    seq = send(s, "a", at=T0 - 5)
    message = queue_of(s).messages[seq]
    assert message.scheduled_at is None and message.enqueued_at == T0


def test_cancelling_scheduled_messages_is_all_or_nothing() -> None:
    s = store()
    one, two = send(s, "a", at=T0 + 60), send(s, "b", at=T0 + 60)
    plain = send(s, "c")
    assert not s.cancel_scheduled(queue_of(s), [one, plain])  # c is not scheduled
    assert not s.cancel_scheduled(queue_of(s), [one, 99])
    assert len(queue_of(s).messages) == 3
    assert s.cancel_scheduled(queue_of(s), [one, two])
    assert list(queue_of(s).messages) == [plain]
    assert not s.cancel_scheduled(queue_of(s), [one])  # already cancelled


# ---- duplicate detection ---------------------------------------------------------------------------


def test_a_duplicate_within_the_window_gets_a_sequence_number_and_is_dropped() -> None:
    s = store(requires_duplicate_detection=True, duplicate_detection_window_seconds=10)
    assert send(s, "a", message_id="m-1") == 1
    assert send(s, "a again", message_id="m-1", now=T0 + 9.9) == 2
    assert payloads(s.available(queue_of(s))) == ["a"]
    assert queue_of(s).dropped == {2}
    assert s.cancel_scheduled(queue_of(s), [2])  # a dropped duplicate's number cancels quietly
    assert send(s, "a later", message_id="m-1", now=T0 + 10) == 3  # the window is over
    assert payloads(s.available(queue_of(s))) == ["a", "a later"]
    assert send(s, "other", message_id="m-2", now=T0 + 10) == 4


def test_duplicate_detection_needs_the_queue_option_and_a_message_id() -> None:
    s = store()
    send(s, "a", message_id="m-1")
    send(s, "b", message_id="m-1")
    assert payloads(s.available(queue_of(s))) == ["a", "b"]
    s = store(requires_duplicate_detection=True)
    send(s, "a")
    send(s, "b")
    assert payloads(s.available(queue_of(s))) == ["a", "b"]


def test_a_completed_message_still_counts_as_seen_and_the_sweep_forgets_ended_windows() -> None:
    s = store(requires_duplicate_detection=True, duplicate_detection_window_seconds=10)
    send(s, "a", message_id="m-1")
    _, token = receive(s)
    s.settle(token, "complete", T0)
    send(s, "a again", message_id="m-1", now=T0 + 1)
    assert s.available(queue_of(s)) == []
    s.sweep(T0 + 9)
    assert "m-1" in queue_of(s).seen_ids
    s.sweep(T0 + 10)
    assert queue_of(s).seen_ids == {}


# ---- deferral --------------------------------------------------------------------------------------


def test_a_deferred_message_leaves_the_queue_until_received_by_sequence_number() -> None:
    s = store()
    seq = send(s, "a")
    message, token = receive(s)
    assert s.settle(token, "defer", T0)
    assert message.deferred and message.lock_token is None and message.delivery_count == 0
    assert s.available(queue_of(s)) == []
    assert s.counts("q") == dict(active=0, scheduled=0, locked=0, deferred=1, dead_lettered=0)
    (found,) = s.deferred(queue_of(s), [seq]) or []
    token = s.lock(queue_of(s), found, T0 + 1)
    assert found.deferred and found.lock_token == token  # still deferred while locked
    assert s.counts("q")["deferred"] == 0 and s.counts("q")["locked"] == 1
    assert s.deferred(queue_of(s), [seq]) is None  # locked: not to be received twice
    assert s.settle(token, "complete", T0 + 1) and queue_of(s).messages == {}


def test_receiving_deferred_messages_is_all_or_nothing_and_may_delete() -> None:
    s = store()
    deferred, plain = send(s, "a"), send(s, "b")
    message, token = receive(s)
    s.settle(token, "defer", T0)
    assert s.deferred(queue_of(s), [deferred, plain]) is None  # b is not deferred
    assert s.deferred(queue_of(s), [deferred, 42]) is None
    assert s.deferred(queue_of(s), [deferred]) == [message]
    s.remove(queue_of(s), message)  # receive-and-delete
    assert list(queue_of(s).messages) == [plain]


def test_abandoning_a_deferred_message_keeps_it_deferred() -> None:
    s = store()
    seq = send(s, "a")
    _, token = receive(s)
    s.settle(token, "defer", T0)
    (message,) = s.deferred(queue_of(s), [seq]) or []
    token = s.lock(queue_of(s), message, T0)
    assert s.settle(token, "abandon", T0)
    assert message.deferred and message.delivery_count == 1 and s.available(queue_of(s)) == []


def test_dead_lettering_a_deferred_message_clears_its_deferral() -> None:
    s = store()
    seq = send(s, "a")
    _, token = receive(s)
    s.settle(token, "defer", T0)
    (message,) = s.deferred(queue_of(s), [seq]) or []
    s.settle(s.lock(queue_of(s), message, T0), "dead-letter", T0, "Gone", "")
    assert not message.deferred and dead_letters(s) == [message]


# ---- peek, receive-and-delete, purge ---------------------------------------------------------------


def test_peek_shows_every_state_from_a_sequence_number_without_locking() -> None:
    s = store()
    send(s, "active")
    send(s, "scheduled", at=T0 + 60)
    send(s, "locked")
    send(s, "deferred")
    s.lock(queue_of(s), queue_of(s).messages[3], T0)
    s.settle(s.lock(queue_of(s), queue_of(s).messages[4], T0), "defer", T0)
    assert payloads(s.peek(queue_of(s), 0, 10)) == ["active", "scheduled", "locked", "deferred"]
    assert payloads(s.peek(queue_of(s), 2, 2)) == ["scheduled", "locked"]
    assert s.peek(queue_of(s), 5, 10) == []
    assert queue_of(s).messages[1].lock_token is None


def test_receive_and_delete_removes_the_message_as_it_is_handed_out() -> None:
    s = store()
    send(s, "a")
    (message,) = s.available(queue_of(s))
    s.remove(queue_of(s), message)
    assert queue_of(s).messages == {} and message.delivery_count == 0


def test_purge_empties_the_queue_its_dead_letters_locks_and_duplicate_history() -> None:
    s = store(requires_duplicate_detection=True)
    send(s, "a", message_id="m-1")
    send(s, "b", message_id="m-2")
    send(s, "a", message_id="m-1")  # dropped
    _, token = receive(s)
    _, doomed = receive(s)
    s.settle(doomed, "dead-letter", T0, "x", "y")
    s.purge("Q")
    assert s.counts("q") == dict(active=0, scheduled=0, locked=0, deferred=0, dead_lettered=0)
    assert s.locked(token, T0) is None and queue_of(s).seen_ids == {} and queue_of(s).dropped == set()
    assert send(s, "a again", message_id="m-1") == 4  # numbers go on; the duplicate history is gone
    assert payloads(s.available(queue_of(s))) == ["a again"]
