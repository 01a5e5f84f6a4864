"""Service Bus triggers on the dead-letter queues: every dead-lettered message is recorded, then
completed, so the ledger always knows and the queue keeps only what could not be recorded."""

from __future__ import annotations

import asyncio
import logging

import azure.functions as func

from shared.spine.envelope import KIND_PROPERTY, RUN_SUMMARY, Source, onboarding_queue_source

from .core import service

bp = func.Blueprint()
logger = logging.getLogger(__name__)
_OUTAGE_WAIT_SECONDS = 10


async def _record(message: func.ServiceBusMessage, source: Source) -> None:
    from shared.spine.errors import is_unavailable

    link_service = await service()
    try:
        from shared.links.dead_letters import record_dead_letter

        await record_dead_letter(
            link_service,
            message.get_body(),
            message_id=message.message_id or "",
            delivery_count=message.delivery_count or 1,
            properties=message.application_properties or {},
            source=source,
        )
    except Exception as error:
        if is_unavailable(error):
            # Raising abandons the message and Service Bus offers it again at once: wait a little
            # first so that a ledger outage is not met with a tight loop.
            logger.warning("the ledger is unavailable; the dead-lettered message is kept for later")
            await asyncio.sleep(_OUTAGE_WAIT_SECONDS)
        raise


@bp.function_name("record_dead_lettered_onboarding")
@bp.service_bus_queue_trigger(
    arg_name="message",
    queue_name="%ONBOARDING_QUEUE%/$DeadLetterQueue",
    connection="ServiceBusConnection",
)
async def record_dead_lettered_onboarding(message: func.ServiceBusMessage) -> None:
    """A `customer-onboarded` (or `customer-offboarded`) message that Service Bus gave up on:
    recorded as `failed`."""
    await _record(message, onboarding_queue_source(message.application_properties or {}))


@bp.function_name("record_dead_lettered_verify")
@bp.service_bus_queue_trigger(
    arg_name="message",
    queue_name="%VERIFY_QUEUE%/$DeadLetterQueue",
    connection="ServiceBusConnection",
)
async def record_dead_lettered_verify(message: func.ServiceBusMessage) -> None:
    """A verify message that Service Bus gave up on: recorded as `failed` (a run's summary check,
    which concerns no link, is only logged)."""
    if (message.application_properties or {}).get(KIND_PROPERTY) == RUN_SUMMARY:
        logger.warning("a re-verification run's summary check was dead-lettered; the run stays open")
        return
    await _record(message, Source.VERIFY)
