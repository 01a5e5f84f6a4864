"""Service Bus trigger for `customer-onboarded` messages."""

from __future__ import annotations

import azure.functions as func

from shared.service import get_service

bp = func.Blueprint()


@bp.function_name("onboard_customer")
@bp.service_bus_queue_trigger(
    arg_name="message", queue_name="%ONBOARDING_QUEUE%", connection="ServiceBusConnection"
)
async def onboard_customer(message: func.ServiceBusMessage) -> None:
    """Link the partner ID in the onboarded customer's tenant.

    Every outcome is recorded and the message completes; a failure worth retrying has already been
    scheduled as a new message with backoff. Only when that cannot be done does this raise, so that
    Service Bus delivers the message again.
    """
    service = await get_service()
    outcome = await service.handle(
        message.get_body(),
        message_id=message.message_id or "",
        delivery_count=message.delivery_count or 1,
        properties=message.application_properties,
    )
    service.raise_for_redelivery(outcome)
