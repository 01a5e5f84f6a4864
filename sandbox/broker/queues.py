"""The Service Bus queue rules, with no AMQP, sockets, threads or clock.

A `QueueStore` holds each configured queue and its dead-letter queue (a queue of its own, which
cannot be sent to). Its rules: sequence numbers per queue; FIFO delivery (no sessions); peek-lock with
lock tokens, renewal and expiry; complete, abandon (a failed delivery: delivery count + 1), release (a
message never handed to the application: count unchanged), defer and dead-letter with a reason and a
description; MaxDeliveryCount reached -> dead-lettered as MaxDeliveryCountExceeded (a dead letter stays
in the dead-letter queue); scheduled messages becoming visible at their time, and their cancellation;
duplicate detection by message ID within a window; deferred messages taken by sequence number;
peek; receive-and-delete; purge. Every method whose rule depends on time takes `now` (epoch seconds);
the caller serialises access. A message's payload is opaque here (`P`: the AMQP layer's sections).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

DLQ_SUFFIX = "/$deadletterqueue"

P = TypeVar("P")
# How a locked message is settled: the management link's dispositions, in plain words.
Outcome = Literal["complete", "abandon", "release", "defer", "dead-letter"]


@dataclass(frozen=True)
class QueueConfig:
    name: str
    lock_duration_seconds: float = 60.0
    max_delivery_count: int = 10
    duplicate_detection_window_seconds: float = 600.0
    requires_duplicate_detection: bool = False

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"invalid queue name {self.name!r}")
        if self.lock_duration_seconds <= 0 or self.max_delivery_count < 1:
            raise ValueError(f"queue {self.name!r}: lock duration and max delivery count must be positive")
        if self.duplicate_detection_window_seconds <= 0:
            raise ValueError(f"queue {self.name!r}: the duplicate detection window must be positive")

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> QueueConfig:
        return cls(
            name=str(item["name"]),
            lock_duration_seconds=float(item.get("lockDurationSeconds", 60)),
            max_delivery_count=int(item.get("maxDeliveryCount", 10)),
            duplicate_detection_window_seconds=float(item.get("duplicateDetectionWindowSeconds", 600)),
            requires_duplicate_detection=bool(item.get("requiresDuplicateDetection", False)),
        )


def load_queue_config(path: str | Path) -> list[QueueConfig]:
    items = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a JSON list of queues")
    return [QueueConfig.from_json(item) for item in items]


def after_failed_delivery(delivery_count: int, max_delivery_count: int) -> tuple[int, bool]:
    """A failed delivery (abandoned, lock expired, receiver gone) counts one more; once the count reaches
    the queue's MaxDeliveryCount the message is dead-lettered (MaxDeliveryCountExceeded) instead of being
    offered again, so it is delivered at most MaxDeliveryCount times. Returns the count and whether."""
    count = delivery_count + 1
    return count, count >= max_delivery_count


@dataclass(eq=False)
class StoredMessage(Generic[P]):
    seq: int
    message_id: str | None
    payload: P
    enqueued_at: float
    scheduled_at: float | None = None
    # Failed deliveries so far: AMQP's header value, which the Python SDK shows as is (.NET adds one).
    delivery_count: int = 0
    deferred: bool = False
    lock_token: uuid.UUID | None = None
    locked_until: float = 0.0
    dead_letter: tuple[str, str] | None = None  # reason, description

    @property
    def available(self) -> bool:
        return self.lock_token is None and self.scheduled_at is None and not self.deferred


@dataclass(eq=False)
class Queue(Generic[P]):
    """A queue, or the dead-letter queue of one (then `dead_letter` is None)."""

    config: QueueConfig
    dead_letter: Queue[P] | None
    messages: dict[int, StoredMessage[P]] = field(default_factory=dict)  # by sequence number
    seen_ids: dict[str, float] = field(default_factory=dict)  # message id -> end of its duplicate window
    dropped: set[int] = field(default_factory=set)  # sequence numbers handed out for dropped duplicates
    last_seq: int = 0


class QueueStore(Generic[P]):
    def __init__(self, queues: Iterable[QueueConfig]) -> None:
        self.entities: dict[str, Queue[P]] = {}  # by lower-cased path: "name" or "name/$deadletterqueue"
        self._locks: dict[uuid.UUID, tuple[Queue[P], int]] = {}
        for config in queues:
            key = config.name.lower()
            if key in self.entities:
                raise ValueError(f"queue {config.name!r} is configured twice")
            dead_letter: Queue[P] = Queue(config, None)
            self.entities[key] = Queue(config, dead_letter)
            self.entities[key + DLQ_SUFFIX] = dead_letter

    def entity(self, path: str) -> Queue[P] | None:
        """A queue or a dead-letter queue by its path, in any case."""
        return self.entities.get(path.lower())

    def queue(self, name: str) -> tuple[Queue[P], Queue[P]]:
        """The queue named `name` (any case) and its dead-letter queue; KeyError when there is none."""
        entity = self.entities.get(name.lower())
        if entity is None or entity.dead_letter is None:
            raise KeyError(f"no queue named {name!r}")
        return entity, entity.dead_letter

    # ---- sending ---------------------------------------------------------------------------------

    def enqueue(
        self, queue: Queue[P], payload: P, *, message_id: str | None, scheduled_for: float = 0.0, now: float
    ) -> int:
        """The new message's sequence number. A duplicate (same message ID within the window, on a queue
        that requires duplicate detection) gets one too and is dropped. A message scheduled for later
        (`scheduled_for`, epoch seconds) stays invisible until `sweep` reaches its time."""
        queue.last_seq += 1
        seq, config = queue.last_seq, queue.config
        if config.requires_duplicate_detection and message_id is not None:
            if queue.seen_ids.get(message_id, 0.0) > now:
                queue.dropped.add(seq)  # accepted, then silently dropped, as Service Bus does
                return seq
            queue.seen_ids[message_id] = now + config.duplicate_detection_window_seconds
        scheduled = scheduled_for if scheduled_for > now else None
        queue.messages[seq] = StoredMessage(seq, message_id, payload, max(now, scheduled_for), scheduled)
        return seq

    def cancel_scheduled(self, queue: Queue[P], seqs: list[int]) -> bool:
        """Removes those scheduled messages; False (and nothing removed) when one of them is not a
        scheduled message (a dropped duplicate's sequence number counts as one)."""
        scheduled = [s for s in seqs if s in queue.messages and queue.messages[s].scheduled_at is not None]
        if any(s not in scheduled and s not in queue.dropped for s in seqs):
            return False
        for seq in scheduled:
            del queue.messages[seq]
        return True

    # ---- receiving -------------------------------------------------------------------------------

    def available(self, queue: Queue[P]) -> list[StoredMessage[P]]:
        """The messages a receiver may get now, in order."""
        return [message for message in queue.messages.values() if message.available]

    def lock(self, queue: Queue[P], message: StoredMessage[P], now: float) -> uuid.UUID:
        """Peek-lock: the message is the lock holder's until `locked_until`; returns the lock token."""
        token = uuid.uuid4()
        message.lock_token, message.locked_until = token, now + queue.config.lock_duration_seconds
        self._locks[token] = (queue, message.seq)
        return token

    def remove(self, queue: Queue[P], message: StoredMessage[P]) -> None:
        """Receive-and-delete: the message leaves the queue as it is handed out."""
        del queue.messages[message.seq]

    def peek(self, queue: Queue[P], from_seq: int, count: int) -> list[StoredMessage[P]]:
        """Up to `count` messages from sequence number `from_seq` on, whatever their state, unlocked."""
        return sorted((m for m in queue.messages.values() if m.seq >= from_seq), key=lambda m: m.seq)[:count]

    def deferred(self, queue: Queue[P], seqs: list[int]) -> list[StoredMessage[P]] | None:
        """Deferred messages by sequence number, to `lock` (they stay deferred) or `remove`; None when
        one is not a deferred, unlocked message of the queue."""
        messages = [queue.messages.get(seq) for seq in seqs]
        if not all(m is not None and m.deferred and m.lock_token is None for m in messages):
            return None
        return [message for message in messages if message is not None]

    # ---- settling --------------------------------------------------------------------------------

    def locked(self, token: uuid.UUID, now: float) -> tuple[Queue[P], StoredMessage[P]] | None:
        """The queue and message that `token` still locks; None once the lock is gone or expired."""
        queue, seq = self._locks.get(token, (None, 0))
        message = queue.messages.get(seq) if queue is not None else None
        if queue is None or message is None or message.lock_token != token:
            return None
        return (queue, message) if message.locked_until > now else None

    def renew(self, tokens: list[uuid.UUID], now: float) -> list[float] | None:
        """New lock expiries for all those locks; None (and nothing renewed) when one is gone."""
        found = [self.locked(token, now) for token in tokens]
        if any(f is None for f in found):
            return None
        expirations = []
        for queue, message in filter(None, found):
            message.locked_until = now + queue.config.lock_duration_seconds
            expirations.append(message.locked_until)
        return expirations

    def settle(
        self, token: uuid.UUID, outcome: Outcome, now: float, reason: str = "", description: str = ""
    ) -> bool:
        """Settles the message `token` locks; False when the lock is gone."""
        found = self.locked(token, now)
        if found is None:
            return False
        queue, message = found
        if outcome == "complete":
            self._unlock(queue, message, failed=False)
            self.remove(queue, message)
        elif outcome == "dead-letter":
            self._dead_letter(queue, message, reason, description)
        elif outcome == "defer":
            message.deferred = True
            self._unlock(queue, message, failed=False)
        else:  # abandon is a failed delivery; release (never handed to the application) is not
            self._unlock(queue, message, failed=outcome == "abandon")
        return True

    def settle_all(
        self, tokens: list[uuid.UUID], outcome: Outcome, now: float, reason: str = "", description: str = ""
    ) -> bool:
        """Settles every message those tokens lock; False (and nothing settled) when one lock is gone."""
        if any(self.locked(token, now) is None for token in tokens):
            return False
        for token in tokens:
            self.settle(token, outcome, now, reason, description)
        return True

    def sweep(self, now: float) -> None:
        """Time passes: expired locks fail their delivery, due scheduled messages become visible, and
        duplicate-detection windows that have ended are forgotten."""
        for queue in self.entities.values():
            for message in list(queue.messages.values()):
                if message.lock_token is not None and message.locked_until <= now:
                    self._unlock(queue, message, failed=True)
                elif message.scheduled_at is not None and message.scheduled_at <= now:
                    message.scheduled_at = None
            queue.seen_ids = {k: until for k, until in queue.seen_ids.items() if until > now}

    def _unlock(self, queue: Queue[P], message: StoredMessage[P], *, failed: bool) -> None:
        if message.lock_token is not None:
            self._locks.pop(message.lock_token, None)
        message.lock_token = None
        if failed:
            limit = queue.config.max_delivery_count
            message.delivery_count, exceeded = after_failed_delivery(message.delivery_count, limit)
            if exceeded and queue.dead_letter is not None:  # a dead letter stays in the dead-letter queue
                description = f"Message could not be consumed after {limit} delivery attempts."
                self._dead_letter(queue, message, "MaxDeliveryCountExceeded", description)

    def _dead_letter(self, queue: Queue[P], message: StoredMessage[P], reason: str, description: str) -> None:
        self._unlock(queue, message, failed=False)
        del queue.messages[message.seq]
        message.deferred, message.dead_letter = False, (reason, description)
        (queue.dead_letter or queue).messages[message.seq] = message

    # ---- inspection ------------------------------------------------------------------------------

    def counts(self, name: str) -> dict[str, int]:
        queue, dead_letter = self.queue(name)
        messages = list(queue.messages.values())
        return {
            "active": sum(m.available for m in messages),
            "scheduled": sum(m.scheduled_at is not None for m in messages),
            "locked": sum(m.lock_token is not None for m in messages),
            "deferred": sum(m.deferred and m.lock_token is None for m in messages),
            "dead_lettered": len(dead_letter.messages),
        }

    def purge(self, name: str) -> None:
        """Empties the queue, its dead-letter queue and its duplicate-detection history."""
        for queue in self.queue(name):
            for message in queue.messages.values():
                if message.lock_token is not None:
                    self._locks.pop(message.lock_token, None)
            queue.messages.clear()
            queue.seen_ids.clear()
            queue.dropped.clear()
