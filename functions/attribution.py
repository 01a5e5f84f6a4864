"""The attribution audit's triggers: the weekly timer, the audit queue, and the operators' HTTP calls."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.spine.problem import method_not_allowed

from .answers import ALL_METHODS, reply
from .core import attribution_api, attribution_audit

bp = func.Blueprint()
logger = logging.getLogger(__name__)


@bp.function_name("audit_attribution")
@bp.timer_trigger(schedule="%AUDIT_SCHEDULE%", arg_name="timer", run_on_startup=False)
async def audit_attribution(timer: func.TimerRequest) -> None:
    """Send one audit message per customer with a healthy link (weekly by default)."""
    audit = await attribution_audit()
    run_id, sent = await audit.start_week()
    logger.info("attribution audit %s: %d customers", run_id, sent)


@bp.function_name("audit_customer")
@bp.service_bus_queue_trigger(
    arg_name="message", queue_name="%AUDIT_QUEUE%", connection="ServiceBusConnection"
)
async def audit_customer(message: func.ServiceBusMessage) -> None:
    """A customer's audit (list its environments) or one environment's (record its findings)."""
    audit = await attribution_audit()
    result = await audit.handle(
        message.get_body(),
        message_id=message.message_id or "",
        properties=dict(message.application_properties or {}),
    )
    logger.info("attribution audit message: %s", result)


@bp.function_name("attribution_rules")
@bp.route(route="attribution/rules", methods=ALL_METHODS, auth_level=func.AuthLevel.FUNCTION)
async def attribution_rules(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/attribution/rules: who counts, the owner tables, the service principal's routes."""
    if req.method != "GET":
        return reply(method_not_allowed(req.method, ["GET"]))
    return reply((await attribution_api()).rules())


@bp.function_name("attribution_below")
@bp.route(route="attribution", methods=ALL_METHODS, auth_level=func.AuthLevel.FUNCTION)
async def attribution_below(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/attribution?coverageBelow=0.8: customers below a coverage."""
    if req.method != "GET":
        return reply(method_not_allowed(req.method, ["GET"]))
    return reply(await (await attribution_api()).below(dict(req.params)))


@bp.function_name("attribution_of_customer")
@bp.route(route="attribution/{customerTenantId}", methods=ALL_METHODS, auth_level=func.AuthLevel.FUNCTION)
async def attribution_of_customer(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/attribution/{customerTenantId}: the latest run and the findings."""
    if req.method != "GET":
        return reply(method_not_allowed(req.method, ["GET"]))
    api = await attribution_api()
    return reply(await api.tenant(req.route_params["customerTenantId"], dict(req.params)))


@bp.function_name("audit_now")
@bp.route(
    route="attribution/{customerTenantId}/audit", methods=ALL_METHODS, auth_level=func.AuthLevel.FUNCTION
)
async def audit_now(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/attribution/{customerTenantId}/audit: audit the customer now (202 with the run)."""
    if req.method != "POST":
        return reply(method_not_allowed(req.method, ["POST"]))
    return reply(await (await attribution_api()).audit_now(req.route_params["customerTenantId"]))


@bp.function_name("record_dead_lettered_audit")
@bp.service_bus_queue_trigger(
    arg_name="message", queue_name="%AUDIT_QUEUE%/$DeadLetterQueue", connection="ServiceBusConnection"
)
async def record_dead_lettered_audit(message: func.ServiceBusMessage) -> None:
    """An audit message Service Bus gave up on: its unit is finished with that noted, so the run
    completes and its summary says what was not read."""
    audit = await attribution_audit()
    result = await audit.dead_lettered(message.get_body())
    logger.warning("a dead-lettered attribution audit message: %s", result)
