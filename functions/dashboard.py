"""HTTP triggers of the operators' dashboard: the page, its static files and its JSON data.

Anonymous at the host (people sign in with Entra ID, not with function keys): every data call checks
the caller's Entra ID access token itself (shared.dashboard), the page and its files are public.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import azure.functions as func

from shared.spine.problem import ApiResponse, method_not_allowed, problem

from .answers import ALL_METHODS as _ALL_METHODS
from .answers import reply as _reply
from .core import dashboard_full_api as dashboard_api
from .core import dashboard_page

if TYPE_CHECKING:
    from shared.dashboard.api import DashboardApi

bp = func.Blueprint()
_ANONYMOUS = func.AuthLevel.ANONYMOUS


def _page_reply(name: str | None) -> func.HttpResponse:
    page = dashboard_page(name)
    return func.HttpResponse(
        body=page.body,
        status_code=page.status,
        headers=page.headers,
        mimetype=page.content_type.split(";")[0],
        charset="utf-8",
    )


def _not_configured(reason: str) -> func.HttpResponse:
    return _reply(problem(503, "dashboard-not-configured", "Dashboard not configured", reason))


def _authorization(req: func.HttpRequest) -> str | None:
    value = req.headers.get("Authorization")
    return str(value) if value is not None else None


@bp.function_name("dashboard_page")
@bp.route(route="dashboard", methods=_ALL_METHODS, auth_level=_ANONYMOUS)
async def dashboard_page_function(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/dashboard: the dashboard's HTML."""
    if req.method != "GET":
        return _reply(method_not_allowed(req.method, ["GET"]))
    return _page_reply(None)


@bp.function_name("dashboard_static")
@bp.route(route="dashboard/static/{name}", methods=_ALL_METHODS, auth_level=_ANONYMOUS)
async def dashboard_static(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/dashboard/static/{name}: the stylesheet or the script (a fixed allow-list)."""
    if req.method != "GET":
        return _reply(method_not_allowed(req.method, ["GET"]))
    return _page_reply(req.route_params["name"])


_Call = Callable[["DashboardApi", str | None, func.HttpRequest], Awaitable[ApiResponse]]
_CALLS: dict[str, _Call] = {
    "me": lambda api, auth, req: api.me(auth),
    "summary": lambda api, auth, req: api.summary(auth),
    "trends": lambda api, auth, req: api.trends(auth),
    "attribution-fleet": lambda api, auth, req: api.attribution_coverage(auth),
    "links": lambda api, auth, req: api.links(auth, dict(req.params)),
    "customer": lambda api, auth, req: api.customer(auth, req.route_params["customerTenantId"]),
    "live": lambda api, auth, req: api.live(auth, req.route_params["customerTenantId"]),
    "attribution": lambda api, auth, req: api.attribution(
        auth, req.route_params["customerTenantId"], dict(req.params)
    ),
    "audit": lambda api, auth, req: api.audit(auth, req.route_params["customerTenantId"]),
    "offboard": lambda api, auth, req: api.offboard(
        auth, req.route_params["customerTenantId"], req.get_body()
    ),
    "relink": lambda api, auth, req: api.relink(auth, req.route_params["customerTenantId"], req.get_body()),
}


async def _answer(req: func.HttpRequest, method: str, what: str) -> func.HttpResponse:
    if req.method != method:
        return _reply(method_not_allowed(req.method, [method]))
    api = await dashboard_api()
    if isinstance(api, str):
        return _not_configured(api)
    answer = await _CALLS[what](api, _authorization(req), req)
    answer.headers.setdefault("Cache-Control", "no-store")
    return _reply(answer)


@bp.function_name("dashboard_me")
@bp.route(route="dashboard/data/me", methods=_ALL_METHODS, auth_level=_ANONYMOUS)
async def dashboard_me(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/dashboard/data/me: who is signed in, and whether they may act."""
    return await _answer(req, "GET", "me")


@bp.function_name("dashboard_summary")
@bp.route(route="dashboard/data/summary", methods=_ALL_METHODS, auth_level=_ANONYMOUS)
async def dashboard_summary(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/dashboard/data/summary: links by outcome now."""
    return await _answer(req, "GET", "summary")


@bp.function_name("dashboard_links")
@bp.route(route="dashboard/data/links", methods=_ALL_METHODS, auth_level=_ANONYMOUS)
async def dashboard_links(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/dashboard/data/links?outcome=&top=&continuationToken=&tenant=: link states, paged."""
    return await _answer(req, "GET", "links")


@bp.function_name("dashboard_customer")
@bp.route(route="dashboard/data/customers/{customerTenantId}", methods=_ALL_METHODS, auth_level=_ANONYMOUS)
async def dashboard_customer(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/dashboard/data/customers/{customerTenantId}: links, history and coverage."""
    return await _answer(req, "GET", "customer")


@bp.function_name("dashboard_relink")
@bp.route(
    route="dashboard/data/customers/{customerTenantId}/relink", methods=_ALL_METHODS, auth_level=_ANONYMOUS
)
async def dashboard_relink(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/dashboard/data/customers/{customerTenantId}/relink: relink now (operators only)."""
    return await _answer(req, "POST", "relink")


@bp.function_name("dashboard_trends")
@bp.route(route="dashboard/data/trends", methods=_ALL_METHODS, auth_level=_ANONYMOUS)
async def dashboard_trends(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/dashboard/data/trends: links by outcome over the nightly runs, and what changed."""
    return await _answer(req, "GET", "trends")


@bp.function_name("dashboard_attribution_fleet")
@bp.route(route="dashboard/data/attribution", methods=_ALL_METHODS, auth_level=_ANONYMOUS)
async def dashboard_attribution_fleet(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/dashboard/data/attribution: attribution coverage per customer, drops first."""
    return await _answer(req, "GET", "attribution-fleet")


@bp.function_name("dashboard_live")
@bp.route(
    route="dashboard/data/customers/{customerTenantId}/live", methods=_ALL_METHODS, auth_level=_ANONYMOUS
)
async def dashboard_live(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/dashboard/data/customers/{customerTenantId}/live: the links read from Azure now."""
    return await _answer(req, "GET", "live")


@bp.function_name("dashboard_attribution")
@bp.route(
    route="dashboard/data/customers/{customerTenantId}/attribution",
    methods=_ALL_METHODS,
    auth_level=_ANONYMOUS,
)
async def dashboard_attribution(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/dashboard/data/customers/{customerTenantId}/attribution: the latest audit's findings."""
    return await _answer(req, "GET", "attribution")


@bp.function_name("dashboard_audit")
@bp.route(
    route="dashboard/data/customers/{customerTenantId}/audit", methods=_ALL_METHODS, auth_level=_ANONYMOUS
)
async def dashboard_audit(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/dashboard/data/customers/{customerTenantId}/audit: audit now (operators only)."""
    return await _answer(req, "POST", "audit")


@bp.function_name("dashboard_offboard")
@bp.route(
    route="dashboard/data/customers/{customerTenantId}/offboard", methods=_ALL_METHODS, auth_level=_ANONYMOUS
)
async def dashboard_offboard(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/dashboard/data/customers/{customerTenantId}/offboard: offboard now (operators only)."""
    return await _answer(req, "POST", "offboard")
