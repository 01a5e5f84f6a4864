"""Nightly re-verification: the timer that fans out, and the Service Bus trigger that verifies."""

from __future__ import annotations

import azure.functions as func

from shared.reverify import KIND_PROPERTY, RUN_SUMMARY, handle_summary_check, start_run
from shared.service import Source, get_service

bp = func.Blueprint()


@bp.function_name("reverify_links")
@bp.timer_trigger(schedule="%REVERIFY_SCHEDULE%", arg_name="timer", run_on_startup=False)
async def reverify_links(timer: func.TimerRequest) -> None:
    """Send one verify message per known link; a second firing the same day sends nothing new."""
    await start_run(await get_service())


@bp.function_name("verify_link")
@bp.service_bus_queue_trigger(
    arg_name="message", queue_name="%VERIFY_QUEUE%", connection="ServiceBusConnection"
)
async def verify_link(message: func.ServiceBusMessage) -> None:
    """Check one link and repair it; the same queue carries the run's summary checks."""
    service = await get_service()
    properties = message.application_properties or {}
    if properties.get(KIND_PROPERTY) == RUN_SUMMARY:
        await handle_summary_check(service, properties)
        return
    outcome = await service.handle(
        message.get_body(),
        message_id=message.message_id or "",
        delivery_count=message.delivery_count or 1,
        properties=properties,
        source=Source.VERIFY,
    )
    service.raise_for_redelivery(outcome)
