"""A queue's $management node: the request-response operations the SDKs send (schedule and cancel
messages, renew locks, settle by lock token, peek, receive deferred messages by sequence number),
each turned into calls on the queue store and answered with Service Bus's status codes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .codec import AmqpPayload, decode_sections, encode_message, enqueue, items, ms
from .queues import Outcome, Queue, QueueStore

LOCK_LOST = "com.microsoft:message-lock-lost"
MESSAGE_NOT_FOUND = "com.microsoft:message-not-found"

Answer = tuple[int, str, Any, str | None]  # status code, description, body, error condition
_Queue = Queue[AmqpPayload]

_LOCK_LOST_ANSWER: Answer = (410, "The lock supplied is invalid or has expired.", None, LOCK_LOST)
_NOT_FOUND_ANSWER: Answer = (404, "No message has that sequence number.", None, MESSAGE_NOT_FOUND)
_OUTCOMES: dict[str, Outcome] = {
    "completed": "complete",
    "suspended": "dead-letter",
    "defered": "defer",  # sic: the SDK's spelling
    "abandoned": "abandon",
}


def outcome(status: str) -> Outcome:
    """The settlement a management disposition status names; any other status releases the message."""
    return _OUTCOMES.get(status, "release")


class Management:
    """`dispatch(queue)` offers a queue's available messages to its receivers again."""

    def __init__(self, store: QueueStore[AmqpPayload], dispatch: Callable[[_Queue], None]) -> None:
        self._store, self._dispatch = store, dispatch
        self._operations: dict[str, Callable[[_Queue, dict[Any, Any]], Answer]] = {
            "com.microsoft:schedule-message": self._schedule,
            "com.microsoft:cancel-scheduled-message": self._cancel,
            "com.microsoft:renew-lock": self._renew,
            "com.microsoft:update-disposition": self._update_disposition,
            "com.microsoft:peek-message": self._peek,
            "com.microsoft:receive-by-sequence-number": self._receive_by_sequence_number,
        }

    def answer(self, operation: str, queue: _Queue | None, body: Any) -> Answer:
        handler = self._operations.get(operation)
        if handler is None or queue is None:
            return 501, f"{operation!r} is not supported", None, "amqp:not-implemented"
        return handler(queue, body if isinstance(body, dict) else {})

    def _schedule(self, queue: _Queue, body: dict[Any, Any]) -> Answer:
        seqs = [
            enqueue(self._store, queue, decode_sections(item["message"]), time.time())
            for item in items(body.get("messages"))
        ]
        self._dispatch(queue)
        return 200, "OK", {"sequence-numbers": seqs}, None

    def _cancel(self, queue: _Queue, body: dict[Any, Any]) -> Answer:
        seqs = [int(s) for s in items(body.get("sequence-numbers"))]
        if not self._store.cancel_scheduled(queue, seqs):
            return _NOT_FOUND_ANSWER
        return 200, "OK", {}, None

    def _renew(self, queue: _Queue, body: dict[Any, Any]) -> Answer:
        expirations = self._store.renew(items(body.get("lock-tokens")), time.time())
        if expirations is None:
            return _LOCK_LOST_ANSWER
        return 200, "OK", {"expirations": [ms(expiry) for expiry in expirations]}, None

    def _update_disposition(self, queue: _Queue, body: dict[Any, Any]) -> Answer:
        settled = self._store.settle_all(
            items(body.get("lock-tokens")),
            outcome(str(body.get("disposition-status", ""))),
            time.time(),
            str(body.get("deadletter-reason", "")),
            str(body.get("deadletter-description", "")),
        )
        if not settled:
            return _LOCK_LOST_ANSWER
        self._dispatch(queue)
        return 200, "OK", {}, None

    def _peek(self, queue: _Queue, body: dict[Any, Any]) -> Answer:
        start, count = int(body.get("from-sequence-number", 0)), int(body.get("message-count", 1))
        peeked = self._store.peek(queue, start, count)
        if not peeked:
            return 204, "No messages", None, None
        return 200, "OK", {"messages": [{"message": encode_message(m)} for m in peeked]}, None

    def _receive_by_sequence_number(self, queue: _Queue, body: dict[Any, Any]) -> Answer:
        messages = self._store.deferred(queue, [int(s) for s in items(body.get("sequence-numbers"))])
        if messages is None:
            return _NOT_FOUND_ANSWER
        received: list[dict[str, Any]] = []
        for message in messages:
            if int(body.get("receiver-settle-mode", 1)) == 0:  # receive-and-delete
                received.append({"message": encode_message(message)})
                self._store.remove(queue, message)
            else:
                token = self._store.lock(queue, message, time.time())
                received.append({"message": encode_message(message), "lock-token": token})
        return 200, "OK", {"messages": received}, None
