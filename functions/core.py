"""The door from the trigger adapters to the core, opened on first use.

The Functions host imports `function_app` on every cold start to index the triggers; the core (the
Azure SDKs, aiohttp, cryptography) is imported only when the first invocation arrives, so indexing
stays cheap. The adapters import only this module, `azure.functions` and `shared.spine.envelope`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import azure.functions as func

from shared.spine.envelope import Source

if TYPE_CHECKING:
    from shared.links.api import LinksApi
    from shared.links.service import LinkService


async def service() -> LinkService:
    from shared.links.service import get_service

    return await get_service()


async def links_api() -> LinksApi:
    from shared.links.api import LinksApi

    return LinksApi.of(await service())


async def handle_queue_message(message: func.ServiceBusMessage, source: Source) -> None:
    """One queue message through the service. Every outcome is recorded and the message completes;
    a failure worth retrying has already been scheduled as a new message with backoff. Only when
    that cannot be done does this raise, so that Service Bus delivers the message again."""
    link_service = await service()
    outcome = await link_service.handle(
        message.get_body(),
        message_id=message.message_id or "",
        delivery_count=message.delivery_count or 1,
        properties=message.application_properties or {},
        source=source,
    )
    link_service.raise_for_redelivery(outcome)
