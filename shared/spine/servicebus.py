"""Service Bus for the product and its tools: one client factory, one batch send, one sender per queue.

`service_bus_client` and `send_in_batches` are used by the product, `palctl` and the sandbox's
programs alike; `QueueSender` is the product's long-lived sender per queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential

from shared.spine.settings import Settings

__all__ = [
    "OutgoingMessage",
    "QueueSender",
    "ServiceBusNotConfigured",
    "send_in_batches",
    "service_bus_client",
]


class ServiceBusNotConfigured(RuntimeError):
    """Neither a connection string nor a namespace (with a credential) was given."""


@dataclass(frozen=True)
class OutgoingMessage:
    """A JSON message to send: its body, MessageId and application properties."""

    body: bytes
    message_id: str
    properties: Mapping[str, str | int | float | bool]
    correlation_id: str | None = None

    def to_service_bus(self) -> Any:
        """The SDK's message (imported on first use: the SDK is slow to import)."""
        from azure.servicebus import ServiceBusMessage

        return ServiceBusMessage(
            self.body,
            message_id=self.message_id,
            content_type="application/json",
            correlation_id=self.correlation_id,
            application_properties={str(key): value for key, value in self.properties.items()},
        )


def service_bus_client(
    *,
    connection_string: str | None = None,
    namespace: str | None = None,
    credential: AsyncTokenCredential | None = None,
) -> Any:
    """An async `ServiceBusClient` from a connection string, or from a namespace and a credential."""
    from azure.servicebus.aio import ServiceBusClient

    if connection_string:
        return ServiceBusClient.from_connection_string(connection_string)
    if namespace and credential is not None:
        return ServiceBusClient(namespace, credential)
    raise ServiceBusNotConfigured(
        "Service Bus is not configured: set ServiceBusConnection__fullyQualifiedNamespace "
        "(or ServiceBusConnection for a connection string)"
    )


async def send_in_batches(
    sender: Any, messages: Iterable[OutgoingMessage], *, on_sent: Callable[[int], None] | None = None
) -> int:
    """Send on an open sender in as few batches as the size limit allows; returns how many were sent.

    `on_sent` is called with the number of messages in each batch once that batch is sent.
    """
    batch = await sender.create_message_batch()
    sent = 0
    for outgoing in messages:
        message = outgoing.to_service_bus()
        try:
            batch.add_message(message)
        except ValueError:  # full: send it and start the next one
            await _send(sender, batch, on_sent)
            sent += len(batch)
            batch = await sender.create_message_batch()
            batch.add_message(message)
    if len(batch):
        await _send(sender, batch, on_sent)
        sent += len(batch)
    return sent


async def _send(sender: Any, batch: Any, on_sent: Callable[[int], None] | None) -> None:
    await sender.send_messages(batch)
    if on_sent is not None:
        on_sent(len(batch))


class QueueSender:
    """One sender per queue, opened once and kept (opening a link costs about half a second).

    The SDK's sender is not safe for concurrent use by coroutines: its management link (used by
    `schedule_messages`) is opened lazily by the first call, and concurrent calls fail inside the
    SDK. Every use of a sender therefore holds that queue's lock; a send takes a few milliseconds,
    so 32 invocations scheduling their retries at once wait briefly instead of failing.
    """

    def __init__(self, settings: Settings, *, credential: AsyncTokenCredential | None = None) -> None:
        self._settings = settings
        self._credential = credential
        self._client: Any = None
        self._senders: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._queue_locks: dict[str, asyncio.Lock] = {}

    def _make_client(self) -> Any:
        return service_bus_client(
            connection_string=self._settings.service_bus_connection_string,
            namespace=self._settings.service_bus_namespace,
            credential=self._credential,
        )

    async def _sender(self, queue: str) -> Any:
        async with self._lock:
            sender = self._senders.get(queue)
            if sender is None:
                if self._client is None:
                    self._client = self._make_client()
                sender = self._client.get_queue_sender(queue)
                # Opened here, under the lock: concurrent first sends on an unopened sender race
                # inside the SDK.
                await sender.__aenter__()
                self._senders[queue] = sender
            return sender

    @contextlib.asynccontextmanager
    async def _using(self, queue: str) -> AsyncIterator[Any]:
        """The queue's sender, held by this coroutine alone until the block ends."""
        sender = await self._sender(queue)
        lock = self._queue_locks.setdefault(queue, asyncio.Lock())
        async with lock:
            yield sender

    async def schedule(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str,
        at: datetime,
        properties: Mapping[str, str | int | float | bool],
        correlation_id: str | None = None,
    ) -> None:
        message = OutgoingMessage(body, message_id, properties, correlation_id).to_service_bus()
        async with self._using(queue) as sender:
            await sender.schedule_messages(message, at)

    async def send_batch(self, queue: str, messages: Sequence[OutgoingMessage]) -> int:
        """Send in as few batches as the size limit allows; returns how many were sent."""
        async with self._using(queue) as sender:
            return await send_in_batches(sender, messages)

    async def close(self) -> None:
        for sender in self._senders.values():
            await sender.close()
        self._senders.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None
