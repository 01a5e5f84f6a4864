"""The dashboard's page and its static files, as shipped in the top-level `dashboard/` folder.

One HTML page, one stylesheet and the script as native ES modules (index.html loads `main.js` with
`<script type="module">`, which imports the others by their relative URLs): no build step, no
bundler and nothing from a CDN. The HTML carries the sign-in settings the script needs (authority,
tenant, client ID, scope) in `<meta>` tags, since the Content-Security-Policy allows no inline
script. Every answer carries the same strict headers; `connect-src` names the sign-in authority
besides the app itself, because the page redeems its authorization code at the authority's token
endpoint (the OAuth 2.0 code flow with PKCE).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from shared.dashboard.auth import DashboardSettings

ROOT = Path(__file__).resolve().parents[2] / "dashboard"
JAVASCRIPT = "text/javascript; charset=utf-8"
MODULES = (
    "main.js",
    "signin.js",
    "api.js",
    "errors.js",
    "status.js",
    "dom.js",
    "format.js",
    "fleet.js",
    "charts.js",
    "links.js",
    "customer.js",
    "live.js",
    "attribution.js",
    "actions.js",
)
"""The script's modules: `main.js` and every module it imports, each under dashboard/static/<name>."""
STATIC_FILES = {"dashboard.css": "text/css; charset=utf-8"} | dict.fromkeys(MODULES, JAVASCRIPT)
"""The only files served under dashboard/static/: a fixed allow-list, never a path from the request."""


def content_security_policy(authority: str) -> str:
    parts = urlsplit(authority)
    origin = f"{parts.scheme}://{parts.netloc}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' {origin}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


@dataclass
class PageResponse:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


def _secured(response: PageResponse, authority: str) -> PageResponse:
    response.headers.update(
        {
            "Content-Security-Policy": content_security_policy(authority),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Opener-Policy": "same-origin",
        }
    )
    return response


def page(settings: DashboardSettings) -> PageResponse:
    """GET /api/dashboard: the HTML, with the sign-in settings in its meta tags."""
    values = {
        "authority": settings.tenant_authority,
        "client-id": settings.client_id,
        "scope": settings.scope,
    }
    text = (ROOT / "index.html").read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", html.escape(value, quote=True))
    response = PageResponse(200, text.encode(), "text/html; charset=utf-8", {"Cache-Control": "no-store"})
    return _secured(response, settings.authority)


def static_file(name: str, settings: DashboardSettings) -> PageResponse:
    """GET /api/dashboard/static/{name}: one of the allow-listed files, else 404."""
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        response = PageResponse(404, b"not found", "text/plain; charset=utf-8")
    else:
        body = (ROOT / name).read_bytes()
        response = PageResponse(200, body, content_type, {"Cache-Control": "no-cache"})
    return _secured(response, settings.authority)


def not_configured(reason: str) -> PageResponse:
    """503 when the dashboard's settings are missing or wrong: the page cannot sign anyone in."""
    body = f"The dashboard is not configured: {reason}".encode()
    response = PageResponse(503, body, "text/plain; charset=utf-8")
    return _secured(response, "https://login.microsoftonline.com")
