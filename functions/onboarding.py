"""Service Bus trigger of the onboarding queue: `customer-onboarded` messages, and `customer-offboarded`
ones (told apart by the application property palKind)."""

from __future__ import annotations

import azure.functions as func

from shared.spine.envelope import onboarding_queue_source

from .core import handle_queue_message

bp = func.Blueprint()


@bp.function_name("onboard_customer")
@bp.service_bus_queue_trigger(
    arg_name="message", queue_name="%ONBOARDING_QUEUE%", connection="ServiceBusConnection"
)
async def onboard_customer(message: func.ServiceBusMessage) -> None:
    """Link the partner ID in the onboarded customer's tenant, or remove the link of an offboarded
    one (see `handle_queue_message`)."""
    await handle_queue_message(message, onboarding_queue_source(message.application_properties or {}))
