"""Sends and schedules messages on Service Bus queues, reusing one sender per queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential

from shared.spine.settings import Settings


@dataclass(frozen=True)
class OutgoingMessage:
    body: bytes
    message_id: str
    properties: Mapping[str, str | int | float | bool]


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
        from azure.servicebus.aio import ServiceBusClient

        if self._settings.service_bus_connection_string:
            return ServiceBusClient.from_connection_string(self._settings.service_bus_connection_string)
        if self._settings.service_bus_namespace and self._credential is not None:
            return ServiceBusClient(self._settings.service_bus_namespace, self._credential)
        raise RuntimeError(
            "Service Bus is not configured: set ServiceBusConnection__fullyQualifiedNamespace "
            "(or ServiceBusConnection for a connection string)"
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
        from azure.servicebus import ServiceBusMessage

        message = ServiceBusMessage(
            body,
            message_id=message_id,
            content_type="application/json",
            correlation_id=correlation_id,
            application_properties={str(key): value for key, value in properties.items()},
        )
        async with self._using(queue) as sender:
            await sender.schedule_messages(message, at)

    async def send_batch(self, queue: str, messages: Sequence[OutgoingMessage]) -> int:
        """Send in as few batches as the size limit allows; returns how many were sent."""
        from azure.servicebus import ServiceBusMessage

        async with self._using(queue) as sender:
            batch = await sender.create_message_batch()
            for outgoing in messages:
                message = ServiceBusMessage(
                    outgoing.body,
                    message_id=outgoing.message_id,
                    content_type="application/json",
                    application_properties={str(key): value for key, value in outgoing.properties.items()},
                )
                try:
                    batch.add_message(message)
                except ValueError:  # full: send it and start the next one
                    await sender.send_messages(batch)
                    batch = await sender.create_message_batch()
                    batch.add_message(message)
            if len(batch):
                await sender.send_messages(batch)
        return len(messages)

    async def close(self) -> None:
        for sender in self._senders.values():
            await sender.close()
        self._senders.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None
