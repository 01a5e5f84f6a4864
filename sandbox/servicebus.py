"""A local Service Bus broker speaking AMQP 1.0 on loopback, for the unmodified azure-servicebus SDK."""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlparse

from proton import (
    Array,
    Condition,
    Connection,
    Data,
    DataException,
    Delivery,
    Described,
    Endpoint,
    Event,
    Handler,
    Link,
    Message,
    Receiver,
    Sender,
    Terminus,
    symbol,
    timestamp,
    uint,
    ulong,
)
from proton._reactor import Acceptor
from proton.reactor import ApplicationEvent, Container, EventInjector

__all__ = ["DEFAULT_CONFIG", "QueueConfig", "ServiceBusBroker", "load_queue_config", "main"]

_log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).with_name("servicebus_queues.json")

# AMQP 1.0 message sections, by descriptor code.
_HEADER, _DELIVERY_ANNOTATIONS, _ANNOTATIONS, _PROPERTIES, _APP_PROPERTIES = range(0x70, 0x75)
_DATA, _SEQUENCE, _VALUE, _FOOTER = range(0x75, 0x79)
_BODY = (_DATA, _SEQUENCE, _VALUE)
_ACTIVE, _DEFERRED, _SCHEDULED = 0, 1, 2  # x-opt-message-state
_BROKER_ANNOTATIONS = {
    "x-opt-sequence-number",
    "x-opt-enqueued-time",
    "x-opt-locked-until",
    "x-opt-lock-token",
    "x-opt-message-state",
    "x-opt-deadletter-source",
}
_DLQ_SUFFIX = "/$deadletterqueue"
_MGMT_SUFFIX = "/$management"
_LOCK_LOST = "com.microsoft:message-lock-lost"
_MESSAGE_NOT_FOUND = "com.microsoft:message-not-found"
_MAX_MESSAGE_SIZE = 256 * 1024  # Standard tier, so an oversized message fails here as it would in Azure
_INBOUND_CREDIT = 1000
_TICK_SECONDS = 0.05  # resolution of lock expiry and scheduled enqueue
_DEV_KEY = "SAS_KEY_VALUE"  # any key works: the broker accepts every CBS token

_T = TypeVar("_T")
_Reply = tuple[int, str, Any, str | None]  # status code, description, body, error condition


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


@dataclass(frozen=True)
class _Section:
    code: int
    value: Any
    raw: bytes


def _plain(value: Any) -> Any:
    """Copies the memoryviews proton returns for binaries: they point into buffers proton reuses."""
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _sections(raw: bytes) -> list[_Section]:
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
        if not _HEADER <= code <= _FOOTER:
            raise ValueError(f"not an AMQP message section: {code:#x}")
        sections.append(_Section(code, _plain(value.value), raw[position : position + size]))
        position += size
    return sections


def _well_formed(sections: list[_Section]) -> bool:
    """Sections in AMQP's order, each at most once but for a body of several data or sequence sections,
    and a body of one kind."""
    codes = [s.code for s in sections]
    ordered = all(a < b or (a == b and a in (_DATA, _SEQUENCE)) for a, b in itertools.pairwise(codes))
    return ordered and len({code for code in codes if code in _BODY}) == 1


def _split_batch(sections: list[_Section]) -> list[list[_Section]]:
    """The messages one transfer carries. A batch (message format 0x80013700) is an envelope whose body is
    data sections, each a whole encoded message; Service Bus enqueues each of those with its own
    properties and ignores the envelope's (the SDKs copy the first message's header, annotations,
    properties and application properties onto it). Proton does not expose the message format, so a batch
    is recognised by its shape: a body of data sections only, each one a well-formed message."""
    body = [s for s in sections if s.code in _BODY]
    if not body or any(s.code != _DATA for s in body):
        return [sections]
    try:
        messages = [_sections(s.value) for s in body]
    except ValueError:
        return [sections]
    return messages if all(_well_formed(m) for m in messages) else [sections]


def _encode(*values: Any) -> bytes:
    data = Data()
    for value in values:
        data.put_object(value)
    return data.encode()


def _items(value: Any) -> list[Any]:
    return list(value.elements) if isinstance(value, Array) else list(value or [])


def _ms(seconds: float) -> timestamp:
    return timestamp(int(seconds * 1000))


def _after_failed_delivery(delivery_count: int, max_delivery_count: int) -> tuple[int, bool]:
    """A failed delivery (abandoned, lock expired, receiver gone) counts one more; once the count reaches
    the queue's MaxDeliveryCount the message is dead-lettered (MaxDeliveryCountExceeded) instead of being
    offered again, so it is delivered at most MaxDeliveryCount times. Returns the count and whether."""
    count = delivery_count + 1
    return count, count >= max_delivery_count


_LINK_DISPOSITIONS: dict[int, str] = {
    Delivery.ACCEPTED: "completed",
    Delivery.REJECTED: "suspended",
    Delivery.RELEASED: "released",
}


def _link_disposition(state: int, *, undeliverable_here: bool) -> str:
    """The management link's status name for an outcome a receiver sends on its link. Service Bus takes
    `modified` as abandon, a failed delivery, whether `delivery-failed` is set (the Python SDK) or not
    (the JavaScript SDK), and `modified` with `undeliverable-here` as defer. `released` hands back a
    message the application never saw: AMQP leaves its delivery count as it was."""
    if state == Delivery.MODIFIED:
        return "defered" if undeliverable_here else "abandoned"
    return _LINK_DISPOSITIONS[state]


def _present(value: _T | None) -> _T:
    if value is None:
        raise ValueError("event without the endpoint it is about")
    return value


@dataclass(eq=False)
class _Message:
    seq: int
    message_id: str | None
    header: list[Any]
    annotations: dict[Any, Any]
    sections: list[_Section]  # properties, application properties, body and footer as the sender encoded them
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

    @property
    def body(self) -> Any:
        parts = [s.value for s in self.sections if s.code == _DATA]
        if parts:
            return b"".join(parts)
        values = [s.value for s in self.sections if s.code in _BODY]
        return values[0] if len(values) == 1 else values

    def encode(self) -> bytes:
        durable, priority, ttl = (list(self.header) + [None] * 3)[:3]
        header = [durable, priority, ttl, self.delivery_count == 0, uint(self.delivery_count)]
        state = _SCHEDULED if self.scheduled_at is not None else _DEFERRED if self.deferred else _ACTIVE
        annotations = {
            **self.annotations,
            symbol("x-opt-sequence-number"): self.seq,
            symbol("x-opt-enqueued-time"): _ms(self.enqueued_at),
            symbol("x-opt-message-state"): state,
        }
        if self.lock_token is not None:
            annotations[symbol("x-opt-locked-until")] = _ms(self.locked_until)
        parts = [_encode(Described(ulong(_HEADER), header), Described(ulong(_ANNOTATIONS), annotations))]
        parts += [s.raw for s in self.sections if s.code == _PROPERTIES]
        app = next((s for s in self.sections if s.code == _APP_PROPERTIES), None)
        if self.dead_letter is not None:
            reason, description = self.dead_letter
            app_properties: dict[Any, Any] = dict(app.value) if app else {}
            app_properties.update(DeadLetterReason=reason, DeadLetterErrorDescription=description)
            parts.append(_encode(Described(ulong(_APP_PROPERTIES), app_properties)))
        elif app is not None:
            parts.append(app.raw)
        parts += [s.raw for s in self.sections if s.code not in (_PROPERTIES, _APP_PROPERTIES)]
        return b"".join(parts)


@dataclass(eq=False)
class _Entity:
    """A queue, or the dead-letter sub-queue of one (then `dead_letter` is None)."""

    config: QueueConfig
    dead_letter: _Entity | None
    messages: dict[int, _Message] = field(default_factory=dict)
    consumers: list[Sender] = field(default_factory=list)
    seen_ids: dict[str, float] = field(default_factory=dict)  # message id -> end of its duplicate window
    dropped: set[int] = field(default_factory=set)  # sequence numbers handed out for dropped duplicates
    last_seq: int = 0
    turn: int = 0


@dataclass(frozen=True)
class _LinkInfo:
    kind: str  # "cbs", "management" or "entity"
    node: str
    entity: _Entity | None


def _path(address: str | None) -> str:
    path = urlparse(address).path if address and "://" in address else address or ""
    return path.strip("/").lower()


def _event(method: Callable[[_Core, Event], None]) -> Callable[[_Core, Event], None]:
    """Runs a reactor callback under the state lock, logging a failure instead of killing the reactor."""

    @functools.wraps(method)
    def run(self: _Core, event: Event) -> None:
        with self.lock:
            try:
                method(self, event)
            except Exception:
                _log.exception("broker failed handling %s", event.type)

    return run


class _Core(Handler):
    """Broker state and AMQP event handling: runs on the reactor thread; others inspect it under `lock`."""

    def __init__(self, queues: Iterable[QueueConfig]) -> None:
        self.lock = threading.RLock()
        self.entities: dict[str, _Entity] = {}
        for config in queues:
            key = config.name.lower()
            if key in self.entities:
                raise ValueError(f"queue {config.name!r} is configured twice")
            dead_letter = _Entity(config, None)
            self.entities[key] = _Entity(config, dead_letter)
            self.entities[key + _DLQ_SUFFIX] = dead_letter
        self.container: Container | None = None
        self.acceptor: Acceptor | None = None
        self._stopping = False
        self._connections: set[Connection] = set()
        self._links: dict[Link, _LinkInfo] = {}
        self._replies: dict[tuple[Connection, str], Sender] = {}  # CBS and management response links
        self._outbox: dict[tuple[Connection, str], list[bytes]] = {}
        self._locks: dict[uuid.UUID, tuple[_Entity, int]] = {}
        self._unsettled: dict[Sender, dict[Delivery, uuid.UUID]] = {}  # proton cannot read binary tags back
        self._partial: dict[Delivery, bytearray] = {}
        self._management: dict[str, Callable[[_Entity, dict[Any, Any]], _Reply]] = {
            "com.microsoft:schedule-message": self._schedule,
            "com.microsoft:cancel-scheduled-message": self._cancel,
            "com.microsoft:renew-lock": self._renew,
            "com.microsoft:update-disposition": self._update_disposition,
            "com.microsoft:peek-message": self._peek,
            "com.microsoft:receive-by-sequence-number": self._receive_by_sequence_number,
        }

    def bind(self, container: Container, acceptor: Acceptor) -> None:
        self.container, self.acceptor, self._stopping = container, acceptor, False

    def queue(self, name: str) -> tuple[_Entity, _Entity]:
        entity = self.entities.get(name.lower())
        if entity is None or entity.dead_letter is None:
            raise KeyError(f"no queue named {name!r}")
        return entity, entity.dead_letter

    # --- state changes (under self.lock) ---

    def purge(self, name: str) -> None:
        for entity in self.queue(name):
            for message in entity.messages.values():
                if message.lock_token is not None:
                    self._locks.pop(message.lock_token, None)
            entity.messages.clear()
            entity.seen_ids.clear()
            entity.dropped.clear()

    def enqueue(self, entity: _Entity, sections: list[_Section]) -> int:
        now = time.time()
        header = next((_items(s.value) for s in sections if s.code == _HEADER), [])
        annotations = next((dict(s.value or {}) for s in sections if s.code == _ANNOTATIONS), {})
        annotations = {k: v for k, v in annotations.items() if str(k) not in _BROKER_ANNOTATIONS}
        properties = next((_items(s.value) for s in sections if s.code == _PROPERTIES), [])
        message_id = None if not properties or properties[0] is None else str(properties[0])
        entity.last_seq += 1
        seq, config = entity.last_seq, entity.config
        if config.requires_duplicate_detection and message_id is not None:
            if entity.seen_ids.get(message_id, 0.0) > now:
                entity.dropped.add(seq)  # accepted, then silently dropped, as Service Bus does
                return seq
            entity.seen_ids[message_id] = now + config.duplicate_detection_window_seconds
        scheduled = annotations.get("x-opt-scheduled-enqueue-time")
        due = int(scheduled) / 1000 if isinstance(scheduled, int) else 0.0
        kept = [s for s in sections if s.code in (_PROPERTIES, _APP_PROPERTIES, _FOOTER, *_BODY)]
        entity.messages[seq] = _Message(
            seq, message_id, header, annotations, kept, max(now, due), due if due > now else None
        )
        return seq

    def locked(self, token: uuid.UUID) -> tuple[_Entity, _Message] | None:
        entity, seq = self._locks.get(token, (None, 0))
        message = entity.messages.get(seq) if entity is not None else None
        if entity is None or message is None or message.lock_token != token:
            return None
        return (entity, message) if message.locked_until > time.time() else None

    def lock_message(self, entity: _Entity, message: _Message) -> uuid.UUID:
        token = uuid.uuid4()
        message.lock_token, message.locked_until = token, time.time() + entity.config.lock_duration_seconds
        self._locks[token] = (entity, message.seq)
        return token

    def unlock(self, entity: _Entity, message: _Message, *, failed: bool) -> None:
        if message.lock_token is not None:
            self._locks.pop(message.lock_token, None)
        message.lock_token = None
        if failed:
            limit = entity.config.max_delivery_count
            message.delivery_count, exceeded = _after_failed_delivery(message.delivery_count, limit)
            if exceeded and entity.dead_letter is not None:  # a dead letter stays in the dead-letter queue
                description = f"Message could not be consumed after {limit} delivery attempts."
                self.dead_letter(entity, message, "MaxDeliveryCountExceeded", description)

    def dead_letter(self, entity: _Entity, message: _Message, reason: str, description: str) -> None:
        self.unlock(entity, message, failed=False)
        del entity.messages[message.seq]
        # No x-opt-deadletter-source: Service Bus sets it only on a dead letter auto-forwarded elsewhere.
        message.deferred, message.dead_letter = False, (reason, description)
        (entity.dead_letter or entity).messages[message.seq] = message

    def settle(self, token: uuid.UUID, status: str, reason: str = "", description: str = "") -> bool:
        """Settles by lock token, with the management link's status names; False when the lock is gone."""
        found = self.locked(token)
        if found is None:
            return False
        entity, message = found
        if status == "completed":
            self.unlock(entity, message, failed=False)
            del entity.messages[message.seq]
        elif status == "suspended":
            self.dead_letter(entity, message, reason, description)
        elif status == "defered":  # sic: the SDK's spelling
            message.deferred = True
            self.unlock(entity, message, failed=False)
        else:  # "abandoned" is a failed delivery; "released" (never handed to the application) is not
            self.unlock(entity, message, failed=status == "abandoned")
        return True

    def sweep(self) -> None:
        now = time.time()
        for entity in self.entities.values():
            for message in list(entity.messages.values()):
                if message.lock_token is not None and message.locked_until <= now:
                    self.unlock(entity, message, failed=True)
                elif message.scheduled_at is not None and message.scheduled_at <= now:
                    message.scheduled_at = None
            entity.seen_ids = {k: until for k, until in entity.seen_ids.items() if until > now}

    def dispatch(self, entity: _Entity) -> None:
        if self._stopping:
            return
        for message in list(entity.messages.values()):
            if not message.available:
                continue
            link = self._next_consumer(entity)
            if link is None:
                break
            self._deliver(link, entity, message)
        for link in entity.consumers:
            if link.drain_mode:
                link.drained()

    def _next_consumer(self, entity: _Entity) -> Sender | None:
        for _ in entity.consumers:  # round robin over the receivers that have credit
            entity.turn = (entity.turn + 1) % len(entity.consumers)
            link = entity.consumers[entity.turn]
            if link.credit > 0 and link.state & Endpoint.LOCAL_ACTIVE:
                return link
        return None

    def _deliver(self, link: Sender, entity: _Entity, message: _Message) -> None:
        presettled = link.snd_settle_mode == Link.SND_SETTLED  # receive-and-delete
        token = uuid.uuid4() if presettled else self.lock_message(entity, message)
        delivery = link.delivery(token.bytes_le)  # type: ignore[arg-type]  # the SDK reads UUID(bytes_le=tag)
        link.send(message.encode())
        link.advance()
        if presettled:
            delivery.settle()
            del entity.messages[message.seq]
        else:
            self._unsettled.setdefault(link, {})[delivery] = token

    # --- reactor callbacks ---

    @_event
    def on_reactor_init(self, event: Event) -> None:
        event.container.schedule(_TICK_SECONDS, self)

    @_event
    def on_timer_task(self, event: Event) -> None:
        if self._stopping:
            for connection in self._connections:  # clients that did not answer the close: drop their sockets
                if connection.transport is not None:
                    connection.transport.close_tail()
                    connection.transport.close_head()
            event.container.stop()
            return
        self.sweep()
        for entity in self.entities.values():
            self.dispatch(entity)
        event.container.schedule(_TICK_SECONDS, self)

    @_event
    def on_broker_stop(self, event: Event) -> None:
        self._stopping = True  # from here on nothing is dispatched, so closing links return their messages
        _present(self.acceptor).close()
        for link in list(self._links):
            self._forget(link)
        for connection in self._connections:
            if not connection.state & Endpoint.LOCAL_CLOSED:
                connection.close()
        _present(self.container).schedule(0.1 if self._connections else 0, self)  # let close frames go out

    @_event
    def on_connection_remote_open(self, event: Event) -> None:
        connection = _present(event.connection)
        self._connections.add(connection)
        if connection.state & Endpoint.LOCAL_UNINIT:
            connection.open()

    @_event
    def on_session_remote_open(self, event: Event) -> None:
        session = _present(event.session)
        if session.state & Endpoint.LOCAL_UNINIT:
            session.open()

    @_event
    def on_link_remote_open(self, event: Event) -> None:
        link = _present(event.link)
        if not link.state & Endpoint.LOCAL_UNINIT:
            return
        address = link.remote_source.address if isinstance(link, Sender) else link.remote_target.address
        path = _path(address)
        link.snd_settle_mode, link.rcv_settle_mode = link.remote_snd_settle_mode, link.remote_rcv_settle_mode
        if path == "$cbs":
            info = _LinkInfo("cbs", path, None)
        elif path.endswith(_MGMT_SUFFIX):
            info = _LinkInfo("management", path, self.entities.get(path.removesuffix(_MGMT_SUFFIX)))
        else:
            info = _LinkInfo("entity", path, self.entities.get(path))
        if info.kind != "cbs" and info.entity is None:
            return self._refuse(link, "amqp:not-found", f"The messaging entity '{address}' does not exist.")
        to_dead_letter_queue = info.entity is not None and info.entity.dead_letter is None
        if info.kind == "entity" and isinstance(link, Receiver) and to_dead_letter_queue:
            return self._refuse(link, "amqp:not-allowed", "A dead-letter queue cannot be sent to.")
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        if isinstance(link, Receiver):
            link.max_message_size = _MAX_MESSAGE_SIZE
        link.open()
        self._links[link] = info
        if isinstance(link, Receiver):
            link.flow(_INBOUND_CREDIT)
        elif isinstance(link, Sender) and info.kind == "entity" and info.entity is not None:
            info.entity.consumers.append(link)
        elif isinstance(link, Sender):
            self._replies[(link.connection, info.node)] = link

    def _refuse(self, link: Link, condition: str, description: str) -> None:
        # AMQP refuses a link by attaching without a terminus, then detaching with the error.
        link.source.type = link.target.type = Terminus.UNSPECIFIED
        link.open()
        link.condition = Condition(condition, description)
        link.close()

    @_event
    def on_link_flow(self, event: Event) -> None:
        link = _present(event.link)
        info = self._links.get(link)
        if info is None or not isinstance(link, Sender):
            return
        if info.kind == "entity" and info.entity is not None:
            self.dispatch(info.entity)
        else:
            self._flush(link.connection, info.node)

    @_event
    def on_delivery(self, event: Event) -> None:
        link, delivery = _present(event.link), _present(event.delivery)
        info = self._links.get(link)
        if isinstance(link, Receiver):
            buffer = self._partial.setdefault(delivery, bytearray())
            buffer += link.recv(delivery.pending) or b""
            if delivery.partial:
                return
            del self._partial[delivery]
            link.advance()
            self._on_incoming(link, delivery, info, bytes(buffer))
            if link.credit < _INBOUND_CREDIT // 2:
                link.flow(_INBOUND_CREDIT - link.credit)
        elif isinstance(link, Sender) and info is not None and info.kind == "entity":
            if delivery.updated or delivery.settled:
                self._on_outcome(link, info, delivery)
        elif delivery.settled:
            delivery.settle()

    def _on_incoming(self, link: Receiver, delivery: Delivery, info: _LinkInfo | None, raw: bytes) -> None:
        try:
            if info is None:
                raise ValueError("a transfer on an unknown link")
            if info.kind == "entity" and info.entity is not None:
                for sections in _split_batch(_sections(raw)):
                    self.enqueue(info.entity, sections)
                self.dispatch(info.entity)
            else:
                request = Message()
                request.decode(raw)
                self._answer(link.connection, info, request)
            delivery.update(Delivery.ACCEPTED)
        except (ValueError, DataException) as error:
            delivery.local.condition = Condition("amqp:decode-error", str(error))
            delivery.update(Delivery.REJECTED)
        delivery.settle()

    def _on_outcome(self, link: Sender, info: _LinkInfo, delivery: Delivery) -> None:
        state, remote = delivery.remote_state, delivery.remote
        if state not in (Delivery.ACCEPTED, Delivery.REJECTED, Delivery.RELEASED, Delivery.MODIFIED):
            if not delivery.settled:
                return
            state = Delivery.RELEASED  # settled without an outcome
        token = self._unsettled.get(link, {}).pop(delivery, None)
        if token is None:
            delivery.settle()
            return
        reason, description = "", ""
        if state == Delivery.REJECTED:
            error = remote.condition.info if remote.condition is not None else None
            error = error if isinstance(error, dict) else {}
            reason = str(error.get("DeadLetterReason") or "")
            description = str(error.get("DeadLetterErrorDescription") or "")
        status = _link_disposition(state, undeliverable_here=bool(remote.undeliverable))
        applied = self.settle(token, status, reason, description)
        if not delivery.settled:  # rcv-settle-mode second: the SDK waits for the echo of its outcome
            if applied:
                delivery.local.failed, delivery.local.undeliverable = remote.failed, remote.undeliverable
                delivery.update(state)
            else:
                delivery.local.condition = Condition(_LOCK_LOST, "The lock on the message has expired.")
                delivery.update(Delivery.REJECTED)
        delivery.settle()
        for entity in (info.entity, info.entity and info.entity.dead_letter):
            if entity is not None:
                self.dispatch(entity)

    @_event
    def on_link_remote_close(self, event: Event) -> None:
        link = _present(event.link)
        self._forget(link)
        if not link.state & Endpoint.LOCAL_CLOSED:
            link.close()

    @_event
    def on_session_remote_close(self, event: Event) -> None:
        session = _present(event.session)
        if not session.state & Endpoint.LOCAL_CLOSED:
            session.close()

    @_event
    def on_connection_remote_close(self, event: Event) -> None:
        connection = _present(event.connection)
        self._drop_connection(connection)
        if not connection.state & Endpoint.LOCAL_CLOSED:
            connection.close()

    @_event
    def on_transport_closed(self, event: Event) -> None:
        if event.connection is not None:  # also when a client went away without closing
            self._drop_connection(event.connection)
            self._connections.discard(event.connection)

    def _drop_connection(self, connection: Connection) -> None:
        for link in [link for link in self._links if link.connection == connection]:
            self._forget(link)

    def _forget(self, link: Link) -> None:
        # A closed link's unsettled messages return to the queue at once (delivery count +1); Service Bus
        # would keep them locked until the lock expires. Quicker redelivery suits local runs and tests.
        info = self._links.pop(link, None)
        if info is None:
            return
        self._partial = {d: b for d, b in self._partial.items() if d.link != link}
        if isinstance(link, Sender):
            for token in self._unsettled.pop(link, {}).values():
                found = self.locked(token)
                if found is not None:
                    self.unlock(*found, failed=True)
            if info.entity is not None and link in info.entity.consumers:
                info.entity.consumers.remove(link)
                self.dispatch(info.entity)
        key = (link.connection, info.node)
        if self._replies.get(key) == link:
            del self._replies[key]
            self._outbox.pop(key, None)

    # --- CBS and management requests ---

    def _answer(self, connection: Connection, info: _LinkInfo, request: Message) -> None:
        if info.kind == "cbs":  # every token is accepted: the broker does not authenticate
            status = {"status-code": 202, "status-description": "Accepted"}
            reply = Message(correlation_id=request.id, properties=status)
        else:
            operation = str(_plain(request.properties or {}).get("operation", ""))
            body = _plain(request.body)
            handler = self._management.get(operation)
            unsupported: _Reply = (501, f"{operation!r} is not supported", None, "amqp:not-implemented")
            code, description, result, condition = (
                handler(info.entity, body if isinstance(body, dict) else {})
                if handler is not None and info.entity is not None
                else unsupported
            )
            properties: dict[str, Any] = {"statusCode": code, "statusDescription": description}
            if condition is not None:
                properties["errorCondition"] = condition
            reply = Message(body=result, correlation_id=request.id, properties=properties)
        self._outbox.setdefault((connection, info.node), []).append(reply.encode())
        self._flush(connection, info.node)

    def _flush(self, connection: Connection, node: str) -> None:
        link, pending = self._replies.get((connection, node)), self._outbox.get((connection, node))
        while link is not None and pending and link.credit > 0:
            delivery = link.delivery(uuid.uuid4().hex)
            link.send(pending.pop(0))
            link.advance()
            delivery.settle()

    _LOCK_LOST_REPLY: _Reply = (410, "The lock supplied is invalid or has expired.", None, _LOCK_LOST)
    _NOT_FOUND_REPLY: _Reply = (404, "No message has that sequence number.", None, _MESSAGE_NOT_FOUND)

    def _schedule(self, entity: _Entity, body: dict[Any, Any]) -> _Reply:
        seqs = [self.enqueue(entity, _sections(item["message"])) for item in _items(body.get("messages"))]
        self.dispatch(entity)
        return 200, "OK", {"sequence-numbers": seqs}, None

    def _cancel(self, entity: _Entity, body: dict[Any, Any]) -> _Reply:
        seqs = [int(s) for s in _items(body.get("sequence-numbers"))]
        scheduled = [s for s in seqs if s in entity.messages and entity.messages[s].scheduled_at is not None]
        if any(s not in scheduled and s not in entity.dropped for s in seqs):
            return self._NOT_FOUND_REPLY
        for seq in scheduled:
            del entity.messages[seq]
        return 200, "OK", {}, None

    def _renew(self, entity: _Entity, body: dict[Any, Any]) -> _Reply:
        found = [self.locked(token) for token in _items(body.get("lock-tokens"))]
        if any(f is None for f in found):
            return self._LOCK_LOST_REPLY
        expirations = []
        for owner, message in filter(None, found):
            message.locked_until = time.time() + owner.config.lock_duration_seconds
            expirations.append(_ms(message.locked_until))
        return 200, "OK", {"expirations": expirations}, None

    def _update_disposition(self, entity: _Entity, body: dict[Any, Any]) -> _Reply:
        tokens = _items(body.get("lock-tokens"))
        if any(self.locked(token) is None for token in tokens):
            return self._LOCK_LOST_REPLY
        status = str(body.get("disposition-status", ""))
        reason, description = (
            str(body.get("deadletter-reason", "")),
            str(body.get("deadletter-description", "")),
        )
        for token in tokens:
            self.settle(token, status, reason, description)
        self.dispatch(entity)
        return 200, "OK", {}, None

    def _peek(self, entity: _Entity, body: dict[Any, Any]) -> _Reply:
        start, count = int(body.get("from-sequence-number", 0)), int(body.get("message-count", 1))
        peeked = sorted((m for m in entity.messages.values() if m.seq >= start), key=lambda m: m.seq)[:count]
        if not peeked:
            return 204, "No messages", None, None
        return 200, "OK", {"messages": [{"message": m.encode()} for m in peeked]}, None

    def _receive_by_sequence_number(self, entity: _Entity, body: dict[Any, Any]) -> _Reply:
        messages = [entity.messages.get(int(s)) for s in _items(body.get("sequence-numbers"))]
        if not all(m is not None and m.deferred and m.lock_token is None for m in messages):
            return self._NOT_FOUND_REPLY
        received: list[dict[str, Any]] = []
        for message in filter(None, messages):
            if int(body.get("receiver-settle-mode", 1)) == 0:  # receive-and-delete
                received.append({"message": message.encode()})
                del entity.messages[message.seq]
            else:
                token = self.lock_message(entity, message)
                received.append({"message": message.encode(), "lock-token": token})
        return 200, "OK", {"messages": received}, None


class ServiceBusBroker:
    """Runs the broker on a background thread; `port=0` picks a free port, kept across stop/start.

    Queues only (no topics, sessions or message expiry), state in memory. Unlike Service Bus, a receiver
    that disconnects (or a broker that stops) returns its unsettled messages at once, delivery count +1,
    instead of holding them until their locks expire.
    """

    load_queue_config = staticmethod(load_queue_config)

    def __init__(
        self, queues: list[QueueConfig] | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.host = host
        self.port = port
        self._core = _Core(load_queue_config(DEFAULT_CONFIG) if queues is None else queues)
        self._thread: threading.Thread | None = None
        self._injector: EventInjector | None = None

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://{self.host}:{self.port};SharedAccessKeyName=RootManageSharedAccessKey;"
            f"SharedAccessKey={_DEV_KEY};UseDevelopmentEmulator=true"
        )

    def start(self) -> ServiceBusBroker:
        if self._thread is not None:
            raise RuntimeError("the broker is already running")
        container = Container(self._core)
        acceptor = container.listen(f"{self.host}:{self.port}")  # binds now, so a busy port fails here
        self.port = int(acceptor._selectable.getsockname()[1])  # proton has no public accessor for port 0
        self._core.bind(container, acceptor)
        self._injector = EventInjector()  # the one thread-safe way into the reactor
        container.selectable(self._injector)
        self._thread = threading.Thread(
            target=container.run, name=f"servicebus-broker-{self.port}", daemon=True
        )
        self._thread.start()
        _log.info("Service Bus broker listening on %s:%s", self.host, self.port)
        return self

    def stop(self) -> None:
        if self._thread is None or self._injector is None:
            return
        self._injector.trigger(ApplicationEvent("broker_stop"))
        self._thread.join(timeout=10)
        for fd in self._injector.pipe:
            os.close(fd)
        self._thread, self._injector = None, None

    def __enter__(self) -> ServiceBusBroker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def queue_counts(self, name: str) -> dict[str, int]:
        with self._core.lock:
            self._core.sweep()
            queue, dead_letter = self._core.queue(name)
            messages = list(queue.messages.values())
            return {
                "active": sum(m.available for m in messages),
                "scheduled": sum(m.scheduled_at is not None for m in messages),
                "locked": sum(m.lock_token is not None for m in messages),
                "deferred": sum(m.deferred and m.lock_token is None for m in messages),
                "dead_lettered": len(dead_letter.messages),
            }

    def dead_letters(self, name: str) -> list[dict[str, Any]]:
        with self._core.lock:
            _, dead_letter = self._core.queue(name)
            return [
                {
                    "message_id": m.message_id,
                    "reason": m.dead_letter[0] if m.dead_letter else None,
                    "description": m.dead_letter[1] if m.dead_letter else None,
                    "body": m.body,
                }
                for m in dead_letter.messages.values()
            ]

    def purge(self, name: str) -> None:
        """Empties the queue, its dead-letter queue and its duplicate-detection history."""
        with self._core.lock:
            self._core.purge(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.servicebus", description=__doc__)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="JSON list of queues")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The SDK closes its socket without waiting for the broker's close frame; proton logs that as an error.
    logging.getLogger("proton").setLevel(logging.CRITICAL)
    stopped = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stopped.set())
    with ServiceBusBroker(load_queue_config(args.config), host=args.host, port=args.port) as broker:
        print(json.dumps({"connectionString": broker.connection_string, "port": broker.port}), flush=True)
        while not stopped.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
