"""The broker's AMQP 1.0 side: a proton handler that runs on the reactor thread and turns connections,
links, transfers and outcomes into calls on the queue store.

It attaches links ($cbs, a queue's $management node, a queue or its dead-letter queue), takes sent
messages and batches in, offers available messages round robin to the receivers with credit, settles
by outcome, answers CBS and management requests, sweeps the store on a timer, and gives a closed
link's unsettled messages back at once.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

from proton import (
    Condition,
    Connection,
    DataException,
    Delivery,
    Endpoint,
    Event,
    Handler,
    Link,
    Message,
    Receiver,
    Sender,
    Terminus,
)
from proton._reactor import Acceptor
from proton.reactor import Container

from .codec import AmqpPayload, decode_sections, encode_message, enqueue, plain, split_batch
from .management import LOCK_LOST, Management, outcome
from .queues import Queue, QueueConfig, QueueStore, StoredMessage

_log = logging.getLogger(__name__)

_MGMT_SUFFIX = "/$management"
_MAX_MESSAGE_SIZE = 256 * 1024  # Standard tier, so an oversized message fails here as it would in Azure
_INBOUND_CREDIT = 1000
_TICK_SECONDS = 0.05  # resolution of lock expiry and scheduled enqueue

_T = TypeVar("_T")
_Queue = Queue[AmqpPayload]

_LINK_DISPOSITIONS: dict[int, str] = {
    Delivery.ACCEPTED: "completed",
    Delivery.REJECTED: "suspended",
    Delivery.RELEASED: "released",
}


def link_disposition(state: int, *, undeliverable_here: bool) -> str:
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


@dataclass(frozen=True)
class _LinkInfo:
    kind: str  # "cbs", "management" or "entity"
    node: str
    entity: _Queue | None


def _path(address: str | None) -> str:
    path = urlparse(address).path if address and "://" in address else address or ""
    return path.strip("/").lower()


def _event(method: Callable[[AmqpHandler, Event], None]) -> Callable[[AmqpHandler, Event], None]:
    """Runs a reactor callback under the state lock, logging a failure instead of killing the reactor."""

    @functools.wraps(method)
    def run(self: AmqpHandler, event: Event) -> None:
        with self.lock:
            try:
                method(self, event)
            except Exception:
                _log.exception("broker failed handling %s", event.type)

    return run


class AmqpHandler(Handler):
    """Runs on the reactor thread; other threads read or change `store` under `lock`."""

    def __init__(self, queues: Iterable[QueueConfig]) -> None:
        self.lock = threading.RLock()
        self.store: QueueStore[AmqpPayload] = QueueStore(queues)
        self.container: Container | None = None
        self.acceptor: Acceptor | None = None
        self._stopping = False
        self._connections: set[Connection] = set()
        self._links: dict[Link, _LinkInfo] = {}
        self._consumers: dict[_Queue, list[Sender]] = {}  # receivers of each queue, in attach order
        self._turns: dict[_Queue, int] = {}  # the round robin's position per queue
        self._replies: dict[tuple[Connection, str], Sender] = {}  # CBS and management response links
        self._outbox: dict[tuple[Connection, str], list[bytes]] = {}
        self._unsettled: dict[Sender, dict[Delivery, uuid.UUID]] = {}  # proton cannot read binary tags back
        self._partial: dict[Delivery, bytearray] = {}
        self._management = Management(self.store, self.dispatch)

    def bind(self, container: Container, acceptor: Acceptor) -> None:
        self.container, self.acceptor, self._stopping = container, acceptor, False

    # ---- delivering ------------------------------------------------------------------------------

    def dispatch(self, entity: _Queue) -> None:
        if self._stopping:
            return
        for message in self.store.available(entity):
            link = self._next_consumer(entity)
            if link is None:
                break
            self._deliver(link, entity, message)
        for link in self._consumers.get(entity, []):
            if link.drain_mode:
                link.drained()

    def _next_consumer(self, entity: _Queue) -> Sender | None:
        consumers = self._consumers.get(entity, [])
        for _ in consumers:  # round robin over the receivers that have credit
            self._turns[entity] = (self._turns.get(entity, 0) + 1) % len(consumers)
            link = consumers[self._turns[entity]]
            if link.credit > 0 and link.state & Endpoint.LOCAL_ACTIVE:
                return link
        return None

    def _deliver(self, link: Sender, entity: _Queue, message: StoredMessage[AmqpPayload]) -> None:
        presettled = link.snd_settle_mode == Link.SND_SETTLED  # receive-and-delete
        token = uuid.uuid4() if presettled else self.store.lock(entity, message, time.time())
        delivery = link.delivery(token.bytes_le)  # type: ignore[arg-type]  # the SDK reads UUID(bytes_le=tag)
        link.send(encode_message(message))
        link.advance()
        if presettled:
            delivery.settle()
            self.store.remove(entity, message)
        else:
            self._unsettled.setdefault(link, {})[delivery] = token

    # ---- reactor callbacks -----------------------------------------------------------------------

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
        self.store.sweep(time.time())
        for entity in self.store.entities.values():
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
            info = _LinkInfo("management", path, self.store.entity(path.removesuffix(_MGMT_SUFFIX)))
        else:
            info = _LinkInfo("entity", path, self.store.entity(path))
        if info.kind != "cbs" and info.entity is None:
            return self._refuse(link, "amqp:not-found", f"The messaging entity '{address}' does not exist.")
        to_dead_letter_queue = info.entity is not None and info.entity.dead_letter is None
        if info.kind == "entity" and isinstance(link, Receiver) and to_dead_letter_queue:
            return self._refuse(link, "amqp:not-allowed", "A dead-letter queue cannot be sent to.")
        self._attach(link, info)

    def _attach(self, link: Link, info: _LinkInfo) -> None:
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        if isinstance(link, Receiver):
            link.max_message_size = _MAX_MESSAGE_SIZE
        link.open()
        self._links[link] = info
        if isinstance(link, Receiver):
            link.flow(_INBOUND_CREDIT)
        elif isinstance(link, Sender) and info.kind == "entity" and info.entity is not None:
            self._consumers.setdefault(info.entity, []).append(link)
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
                for sections in split_batch(decode_sections(raw)):
                    enqueue(self.store, info.entity, sections, time.time())
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
        reason, description = _dead_letter_reason(delivery) if state == Delivery.REJECTED else ("", "")
        status = link_disposition(state, undeliverable_here=bool(remote.undeliverable))
        applied = self.store.settle(token, outcome(status), time.time(), reason, description)
        if not delivery.settled:  # rcv-settle-mode second: the SDK waits for the echo of its outcome
            if applied:
                delivery.local.failed, delivery.local.undeliverable = remote.failed, remote.undeliverable
                delivery.update(state)
            else:
                delivery.local.condition = Condition(LOCK_LOST, "The lock on the message has expired.")
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
                self.store.settle(token, "abandon", time.time())  # a failed delivery, if still locked
            if info.entity is not None and link in self._consumers.get(info.entity, []):
                self._consumers[info.entity].remove(link)
                self.dispatch(info.entity)
        key = (link.connection, info.node)
        if self._replies.get(key) == link:
            del self._replies[key]
            self._outbox.pop(key, None)

    # ---- CBS and management requests -------------------------------------------------------------

    def _answer(self, connection: Connection, info: _LinkInfo, request: Message) -> None:
        if info.kind == "cbs":  # every token is accepted: the broker does not authenticate
            status = {"status-code": 202, "status-description": "Accepted"}
            reply = Message(correlation_id=request.id, properties=status)
        else:
            operation = str(plain(request.properties or {}).get("operation", ""))
            code, description, result, condition = self._management.answer(
                operation, info.entity, plain(request.body)
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


def _dead_letter_reason(delivery: Delivery) -> tuple[str, str]:
    """The reason and description a receiver's `rejected` outcome carries in its error's info."""
    remote = delivery.remote
    error = remote.condition.info if remote.condition is not None else None
    error = error if isinstance(error, dict) else {}
    return str(error.get("DeadLetterReason") or ""), str(error.get("DeadLetterErrorDescription") or "")
