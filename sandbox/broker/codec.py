"""AMQP 1.0 messages as the broker stores and forwards them.

An encoded message split into its sections (each kept as the sender encoded it), a batch envelope
split into its messages, the `AmqpPayload` the queue store keeps for a message, and the encoding of a
stored message with the broker's header and annotations (sequence number, enqueued time, state, lock,
delivery count, dead-letter reason).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from proton import Array, Data, DataException, Described, symbol, timestamp, uint, ulong

from .queues import Queue, QueueStore, StoredMessage

# AMQP 1.0 message sections, by descriptor code.
HEADER, DELIVERY_ANNOTATIONS, ANNOTATIONS, PROPERTIES, APP_PROPERTIES = range(0x70, 0x75)
DATA, SEQUENCE, VALUE, FOOTER = range(0x75, 0x79)
BODY = (DATA, SEQUENCE, VALUE)
_ACTIVE, _DEFERRED, _SCHEDULED = 0, 1, 2  # x-opt-message-state
_BROKER_ANNOTATIONS = {
    "x-opt-sequence-number",
    "x-opt-enqueued-time",
    "x-opt-locked-until",
    "x-opt-lock-token",
    "x-opt-message-state",
    "x-opt-deadletter-source",
}


@dataclass(frozen=True)
class Section:
    code: int
    value: Any
    raw: bytes


def plain(value: Any) -> Any:
    """Copies the memoryviews proton returns for binaries: they point into buffers proton reuses."""
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def decode_sections(raw: bytes) -> list[Section]:
    """Splits an encoded AMQP message into its sections, keeping each one's bytes to forward unchanged."""
    sections, position = [], 0
    while position < len(raw):
        data = Data()
        try:
            size = data.decode(raw[position:])
            data.rewind()
            data.next()
            value = data.get_object()
        except (DataException, OverflowError) as error:  # proton cannot convert an out-of-range char
            raise ValueError(f"not an AMQP message: {error}") from error
        if not (isinstance(value, Described) and isinstance(code := value.descriptor, int)) or size <= 0:
            raise ValueError("not an AMQP message")
        if not HEADER <= code <= FOOTER:
            raise ValueError(f"not an AMQP message section: {code:#x}")
        sections.append(Section(code, plain(value.value), raw[position : position + size]))
        position += size
    return sections


def _well_formed(sections: list[Section]) -> bool:
    """Sections in AMQP's order, each at most once but for a body of several data or sequence sections,
    and a body of one kind."""
    codes = [s.code for s in sections]
    ordered = all(a < b or (a == b and a in (DATA, SEQUENCE)) for a, b in itertools.pairwise(codes))
    return ordered and len({code for code in codes if code in BODY}) == 1


def split_batch(sections: list[Section]) -> list[list[Section]]:
    """The messages one transfer carries. A batch (message format 0x80013700) is an envelope whose body is
    data sections, each a whole encoded message; Service Bus enqueues each of those with its own
    properties and ignores the envelope's (the SDKs copy the first message's header, annotations,
    properties and application properties onto it). Proton does not expose the message format, so a batch
    is recognised by its shape: a body of data sections only, each one a well-formed message."""
    body = [s for s in sections if s.code in BODY]
    if not body or any(s.code != DATA for s in body):
        return [sections]
    try:
        messages = [decode_sections(s.value) for s in body]
    except ValueError:
        return [sections]
    return messages if all(_well_formed(m) for m in messages) else [sections]


def encode(*values: Any) -> bytes:
    data = Data()
    for value in values:
        data.put_object(value)
    return data.encode()


def items(value: Any) -> list[Any]:
    return list(value.elements) if isinstance(value, Array) else list(value or [])


def ms(seconds: float) -> timestamp:
    return timestamp(int(seconds * 1000))


@dataclass(frozen=True)
class AmqpPayload:
    """What the broker keeps of a sent message: its header, its annotations but the broker's own, and
    its properties, application properties, body and footer sections as the sender encoded them."""

    header: list[Any]
    annotations: dict[Any, Any]
    sections: list[Section]

    @property
    def body(self) -> Any:
        parts = [s.value for s in self.sections if s.code == DATA]
        if parts:
            return b"".join(parts)
        values = [s.value for s in self.sections if s.code in BODY]
        return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class Incoming:
    """A sent message as the queue store takes it."""

    payload: AmqpPayload
    message_id: str | None
    scheduled_for: float  # x-opt-scheduled-enqueue-time in epoch seconds, 0.0 when not scheduled


def incoming(sections: list[Section]) -> Incoming:
    header = next((items(s.value) for s in sections if s.code == HEADER), [])
    annotations = next((dict(s.value or {}) for s in sections if s.code == ANNOTATIONS), {})
    annotations = {k: v for k, v in annotations.items() if str(k) not in _BROKER_ANNOTATIONS}
    properties = next((items(s.value) for s in sections if s.code == PROPERTIES), [])
    message_id = None if not properties or properties[0] is None else str(properties[0])
    scheduled = annotations.get("x-opt-scheduled-enqueue-time")
    due = int(scheduled) / 1000 if isinstance(scheduled, int) else 0.0
    kept = [s for s in sections if s.code in (PROPERTIES, APP_PROPERTIES, FOOTER, *BODY)]
    return Incoming(AmqpPayload(header, annotations, kept), message_id, due)


def encode_message(message: StoredMessage[AmqpPayload]) -> bytes:
    """The message as the broker delivers, peeks or receives it by sequence number."""
    payload = message.payload
    durable, priority, ttl = (list(payload.header) + [None] * 3)[:3]
    header = [durable, priority, ttl, message.delivery_count == 0, uint(message.delivery_count)]
    state = _SCHEDULED if message.scheduled_at is not None else _DEFERRED if message.deferred else _ACTIVE
    annotations = {
        **payload.annotations,
        symbol("x-opt-sequence-number"): message.seq,
        symbol("x-opt-enqueued-time"): ms(message.enqueued_at),
        symbol("x-opt-message-state"): state,
    }
    if message.lock_token is not None:
        annotations[symbol("x-opt-locked-until")] = ms(message.locked_until)
    parts = [encode(Described(ulong(HEADER), header), Described(ulong(ANNOTATIONS), annotations))]
    parts += [s.raw for s in payload.sections if s.code == PROPERTIES]
    app = next((s for s in payload.sections if s.code == APP_PROPERTIES), None)
    # No x-opt-deadletter-source: Service Bus sets it only on a dead letter auto-forwarded elsewhere.
    if message.dead_letter is not None:
        reason, description = message.dead_letter
        app_properties: dict[Any, Any] = dict(app.value) if app else {}
        app_properties.update(DeadLetterReason=reason, DeadLetterErrorDescription=description)
        parts.append(encode(Described(ulong(APP_PROPERTIES), app_properties)))
    elif app is not None:
        parts.append(app.raw)
    parts += [s.raw for s in payload.sections if s.code not in (PROPERTIES, APP_PROPERTIES)]
    return b"".join(parts)


def enqueue(
    store: QueueStore[AmqpPayload], queue: Queue[AmqpPayload], sections: list[Section], now: float
) -> int:
    """Stores one sent message (its sections) in `queue`; its sequence number."""
    message = incoming(sections)
    return store.enqueue(
        queue, message.payload, message_id=message.message_id, scheduled_for=message.scheduled_for, now=now
    )
