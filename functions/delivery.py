"""Delivery as the linked identity: the delivery queue and the operators' HTTP calls
(shared/delivery). The body of a POST is the file, or JSON naming a blob already uploaded."""

from __future__ import annotations

import asyncio
import logging

import azure.functions as func

from shared.spine.problem import method_not_allowed

from .answers import ALL_METHODS, reply
from .core import delivery_api, delivery_service

bp = func.Blueprint()
logger = logging.getLogger(__name__)
_OUTAGE_WAIT_SECONDS = 10


@bp.function_name("deliver")
@bp.service_bus_queue_trigger(
    arg_name="message", queue_name="%DELIVERY_QUEUE%", connection="ServiceBusConnection"
)
async def deliver(message: func.ServiceBusMessage) -> None:
    """One step of a delivery: import (or publish) as the linked service principal, poll, audit."""
    service = await delivery_service()
    result = await service.handle(
        message.get_body(),
        message_id=message.message_id or "",
        properties=dict(message.application_properties or {}),
    )
    logger.info("delivery message: %s", result)


@bp.function_name("record_dead_lettered_delivery")
@bp.service_bus_queue_trigger(
    arg_name="message", queue_name="%DELIVERY_QUEUE%/$DeadLetterQueue", connection="ServiceBusConnection"
)
async def record_dead_lettered_delivery(message: func.ServiceBusMessage) -> None:
    """A delivery message that Service Bus gave up on: its delivery is recorded as failed
    (`dead-lettered`), so that its status ends; a ledger outage keeps the message for later."""
    from shared.delivery.dead_letter import record_dead_letter
    from shared.spine.errors import is_unavailable

    service = await delivery_service()
    try:
        result = await record_dead_letter(
            service.ledger,
            message.get_body(),
            message_id=message.message_id or "",
            delivery_count=message.delivery_count or 1,
            max_file_bytes=service.delivery.max_file_bytes,
        )
    except Exception as error:
        if is_unavailable(error):
            # Raising abandons the message and Service Bus offers it again at once: wait a little first.
            logger.warning("the ledger is unavailable; the dead-lettered delivery message is kept for later")
            await asyncio.sleep(_OUTAGE_WAIT_SECONDS)
        raise
    logger.info("dead-lettered delivery message: %s", result)


@bp.function_name("deliver_solution")
@bp.route(
    route="deliveries/{customerTenantId}/solutions", methods=ALL_METHODS, auth_level=func.AuthLevel.FUNCTION
)
async def deliver_solution(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/deliveries/{customerTenantId}/solutions?environment=E: 202 with the delivery."""
    if req.method != "POST":
        return reply(method_not_allowed(req.method, ["POST"]))
    api = await delivery_api()
    tenant = req.route_params["customerTenantId"]
    content_type = req.headers.get("Content-Type") or ""
    return reply(await api.solution(tenant, dict(req.params), req.get_body(), content_type))


@bp.function_name("deliver_report")
@bp.route(
    route="deliveries/{customerTenantId}/reports", methods=ALL_METHODS, auth_level=func.AuthLevel.FUNCTION
)
async def deliver_report(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/deliveries/{customerTenantId}/reports?workspace=W&datasetName=N: 202 with the delivery."""
    if req.method != "POST":
        return reply(method_not_allowed(req.method, ["POST"]))
    api = await delivery_api()
    tenant = req.route_params["customerTenantId"]
    content_type = req.headers.get("Content-Type") or ""
    return reply(await api.report(tenant, dict(req.params), req.get_body(), content_type))


@bp.function_name("delivery_status")
@bp.route(
    route="deliveries/{customerTenantId}/{deliveryId}",
    methods=ALL_METHODS,
    auth_level=func.AuthLevel.FUNCTION,
)
async def delivery_status(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/deliveries/{customerTenantId}/{deliveryId}: the delivery's status."""
    if req.method != "GET":
        return reply(method_not_allowed(req.method, ["GET"]))
    api = await delivery_api()
    return reply(await api.status(req.route_params["customerTenantId"], req.route_params["deliveryId"]))
