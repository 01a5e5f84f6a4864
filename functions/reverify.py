"""Nightly re-verification: the timer that fans out, and the Service Bus trigger that verifies."""

from __future__ import annotations

import azure.functions as func

from shared.spine.envelope import KIND_PROPERTY, RUN_SUMMARY, Source

from .core import handle_queue_message, service

bp = func.Blueprint()


@bp.function_name("reverify_links")
@bp.timer_trigger(schedule="%REVERIFY_SCHEDULE%", arg_name="timer", run_on_startup=False)
async def reverify_links(timer: func.TimerRequest) -> None:
    """Send one verify message per known link; a second firing the same day sends nothing new."""
    from shared.links.reverify import NightlyRun

    await NightlyRun.of(await service()).start()


@bp.function_name("verify_link")
@bp.service_bus_queue_trigger(
    arg_name="message", queue_name="%VERIFY_QUEUE%", connection="ServiceBusConnection"
)
async def verify_link(message: func.ServiceBusMessage) -> None:
    """Check one link and repair it; the same queue carries the run's summary checks."""
    properties = message.application_properties or {}
    if properties.get(KIND_PROPERTY) == RUN_SUMMARY:
        from shared.links.reverify import NightlyRun

        await NightlyRun.of(await service()).handle_summary_check(properties)
        return
    await handle_queue_message(message, Source.VERIFY)
