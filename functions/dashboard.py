"""HTTP triggers of the operators' dashboard: the page, its static files and its JSON data.

Anonymous at the host (people sign in with Entra ID, not with function keys): every data call checks
the caller's Entra ID access token itself (shared.dashboard), the page and its files are public.
"""

from __future__ import annotations

import azure.functions as func

from shared.spine.problem import ApiResponse, method_not_allowed, problem

from .answers import ALL_METHODS as _ALL_METHODS
from .answers import reply as _reply
from .core import dashboard_api, dashboard_page

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


async def _answer(req: func.HttpRequest, method: str, what: str) -> func.HttpResponse:
    if req.method != method:
        return _reply(method_not_allowed(req.method, [method]))
    api = await dashboard_api()
    if isinstance(api, str):
        return _not_configured(api)
    auth, params = _authorization(req), req.route_params
    answer: ApiResponse
    if what == "me":
        answer = await api.me(auth)
    elif what == "summary":
        answer = await api.summary(auth)
    elif what == "links":
        answer = await api.links(auth, dict(req.params))
    elif what == "customer":
        answer = await api.customer(auth, params["customerTenantId"])
    else:
        answer = await api.relink(auth, params["customerTenantId"], req.get_body())
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
