"""HTTP triggers of the operators' API (function-level keys); the behaviour is in shared.links.api."""

from __future__ import annotations

import azure.functions as func

from shared.spine.problem import method_not_allowed

from .answers import ALL_METHODS as _ALL_METHODS
from .answers import reply as _reply
from .core import coverage_api, evidence_api, links_api, live_api, user_links_api

bp = func.Blueprint()


@bp.function_name("relink_customer")
@bp.route(route="links/{customerTenantId}/relink", methods=_ALL_METHODS, auth_level=func.AuthLevel.FUNCTION)
async def relink_customer(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/links/{customerTenantId}/relink: link now and return the outcome."""
    if req.method != "POST":
        return _reply(method_not_allowed(req.method, ["POST"]))
    api = await links_api()
    return _reply(await api.relink(req.route_params["customerTenantId"], req.get_body()))


@bp.function_name("offboard_customer")
@bp.route(route="links/{customerTenantId}/offboard", methods=_ALL_METHODS, auth_level=func.AuthLevel.FUNCTION)
async def offboard_customer(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/links/{customerTenantId}/offboard: remove the link now and stop checking it."""
    if req.method != "POST":
        return _reply(method_not_allowed(req.method, ["POST"]))
    api = await links_api()
    return _reply(await api.offboard(req.route_params["customerTenantId"], req.get_body()))


@bp.function_name("list_links")
@bp.route(route="links", methods=_ALL_METHODS, auth_level=func.AuthLevel.FUNCTION)
async def list_links(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/links?outcome=&top=&continuationToken=: link states, paged."""
    if req.method != "GET":
        return _reply(method_not_allowed(req.method, ["GET"]))
    api = await links_api()
    return _reply(await api.list_links(dict(req.params)))


@bp.function_name("get_link")
@bp.route(route="links/{customerTenantId}", methods=_ALL_METHODS, auth_level=func.AuthLevel.FUNCTION)
async def get_link(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/links/{customerTenantId}: the tenant's link states and recent history."""
    if req.method != "GET":
        return _reply(method_not_allowed(req.method, ["GET"]))
    api = await links_api()
    return _reply(await api.get_link(req.route_params["customerTenantId"]))


@bp.function_name("link_evidence")
@bp.route(route="links/{customerTenantId}/evidence", methods=_ALL_METHODS, auth_level=func.AuthLevel.FUNCTION)
async def link_evidence(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/links/{customerTenantId}/evidence: each link's evidence record (attestation fields,
    the verified interval, the Azure roles and scopes it earns through)."""
    if req.method != "GET":
        return _reply(method_not_allowed(req.method, ["GET"]))
    api = await evidence_api()
    return _reply(await api.get(req.route_params["customerTenantId"]))


@bp.function_name("link_coverage")
@bp.route(route="links/{customerTenantId}/coverage", methods=_ALL_METHODS, auth_level=func.AuthLevel.FUNCTION)
async def link_coverage(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/links/{customerTenantId}/coverage?from=&to=: per identity, linked throughout the
    period, or the intervals linked to one of our partner IDs and the gaps with their reasons."""
    if req.method != "GET":
        return _reply(method_not_allowed(req.method, ["GET"]))
    api = await coverage_api()
    return _reply(await api.get(req.route_params["customerTenantId"], dict(req.params)))


@bp.function_name("link_live")
@bp.route(route="links/{customerTenantId}/live", methods=_ALL_METHODS, auth_level=func.AuthLevel.FUNCTION)
async def link_live(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/links/{customerTenantId}/live?clientId=: each identity's link read from ARM now, signed
    in as it, beside the ledger's state (read-only)."""
    if req.method != "GET":
        return _reply(method_not_allowed(req.method, ["GET"]))
    api = await live_api()
    return _reply(await api.get(req.route_params["customerTenantId"], dict(req.params)))


@bp.function_name("retire_identity")
@bp.route(
    route="links/{customerTenantId}/identities/{clientId}",
    methods=_ALL_METHODS,
    auth_level=func.AuthLevel.FUNCTION,
)
async def retire_identity(req: func.HttpRequest) -> func.HttpResponse:
    """DELETE /api/links/{customerTenantId}/identities/{clientId}: retire an identity's record."""
    if req.method != "DELETE":
        return _reply(method_not_allowed(req.method, ["DELETE"]))
    api = await links_api()
    params = req.route_params
    return _reply(await api.retire(params["customerTenantId"], params["clientId"], req.get_body()))


@bp.function_name("record_user_link")
@bp.route(
    route="links/{customerTenantId}/users/{objectId}",
    methods=_ALL_METHODS,
    auth_level=func.AuthLevel.FUNCTION,
)
async def record_user_link(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/links/{customerTenantId}/users/{objectId}: record what palctl did as a user account."""
    if req.method != "POST":
        return _reply(method_not_allowed(req.method, ["POST"]))
    api = await user_links_api()
    params = req.route_params
    return _reply(await api.record(params["customerTenantId"], params["objectId"], req.get_body()))


@bp.function_name("partner_ids")
@bp.route(route="partner", methods=_ALL_METHODS, auth_level=func.AuthLevel.FUNCTION)
async def partner_ids(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/partner: our partner IDs (palctl checks a user's link against them before sign-in)."""
    if req.method != "GET":
        return _reply(method_not_allowed(req.method, ["GET"]))
    api = await user_links_api()
    return _reply(api.partner())
