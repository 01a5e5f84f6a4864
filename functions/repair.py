"""Repair, opt-in (shared/repair): plan, apply an approved plan, undo, and read an apply."""

from __future__ import annotations

import azure.functions as func

from shared.spine.problem import method_not_allowed

from .answers import ALL_METHODS, reply
from .core import repair_api

bp = func.Blueprint()


@bp.function_name("repair_plan")
@bp.route(route="repairs/{customerTenantId}/plan", methods=ALL_METHODS, auth_level=func.AuthLevel.FUNCTION)
async def repair_plan(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/repairs/{customerTenantId}/plan: what can be repaired and how; nothing changed."""
    if req.method != "POST":
        return reply(method_not_allowed(req.method, ["POST"]))
    return reply(await (await repair_api()).plan(req.route_params["customerTenantId"], dict(req.params)))


@bp.function_name("repair_apply")
@bp.route(route="repairs/{customerTenantId}/apply", methods=ALL_METHODS, auth_level=func.AuthLevel.FUNCTION)
async def repair_apply(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/repairs/{customerTenantId}/apply (body: the approved plan)."""
    if req.method != "POST":
        return reply(method_not_allowed(req.method, ["POST"]))
    return reply(await (await repair_api()).apply(req.route_params["customerTenantId"], req.get_body()))


@bp.function_name("repair_undo")
@bp.route(route="repairs/{customerTenantId}/undo", methods=ALL_METHODS, auth_level=func.AuthLevel.FUNCTION)
async def repair_undo(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/repairs/{customerTenantId}/undo (body: {"applyId"} or {"planId"})."""
    if req.method != "POST":
        return reply(method_not_allowed(req.method, ["POST"]))
    return reply(await (await repair_api()).undo(req.route_params["customerTenantId"], req.get_body()))


@bp.function_name("repair_status")
@bp.route(
    route="repairs/{customerTenantId}/{applyId}", methods=ALL_METHODS, auth_level=func.AuthLevel.FUNCTION
)
async def repair_status(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/repairs/{customerTenantId}/{applyId}: an apply, change by change."""
    if req.method != "GET":
        return reply(method_not_allowed(req.method, ["GET"]))
    api = await repair_api()
    return reply(await api.status(req.route_params["customerTenantId"], req.route_params["applyId"]))
