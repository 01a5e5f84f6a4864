"""What the Power Platform admin stand-ins (BAP, Power Apps, Flow) share: the caller read from a
bearer token, their error body, the api-version check, the registration check and `nextLink` paging.

Error bodies are `{"error": {"code", "message"}}`. The 403 for an app not registered with Power
Platform follows the one recorded in public issues (MicrosoftDocs/power-platform#1260,
microsoft/terraform-provider-power-platform#665): "The service principal with id '{oid}' for
application {appId} does not have permission to access the path '{url}' in tenant {tenant}." The
token errors (401 with WWW-Authenticate) are ARM's front door's, which these APIs sit behind
(inferred). `nextLink` is an absolute URL carrying `$skiptoken`; page sizes are the scenario's.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from ..faults import Faults
from ..protocol import Refusal, Reply, Request, json_reply
from ..state import CloudState
from ..tokens import TokenIssuer
from .world import PowerPlatformWorld, Who

T = TypeVar("T")
POWERAPPS_AUDIENCES = frozenset({"https://service.powerapps.com", "https://service.powerapps.com/"})
FLOW_AUDIENCES = frozenset({"https://service.flow.microsoft.com", "https://service.flow.microsoft.com/"})
POWER_BI_AUDIENCES = frozenset(
    {"https://analysis.windows.net/powerbi/api", "https://analysis.windows.net/powerbi/api/"}
)


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    object_id: str
    app_id: str


def admin_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return json_reply(status, {"error": {"code": code, "message": message}}, headers)


def request_url(request: Request) -> str:
    """The URL as the client sent it (query names lower-cased, as the server parsed them)."""
    query = urlencode(request.query, quote_via=quote, safe="$,'()")
    return f"{request.base_url}/{'/'.join(quote(part) for part in request.path)}" + (
        f"?{query}" if query else ""
    )


def bearer_caller(tokens: TokenIssuer, request: Request, accepted: Iterable[str]) -> Caller:
    """The caller of a token for one of `accepted`; refuses (401) a missing, bad, expired or foreign one."""
    claims, problem = tokens.bearer(request.header("Authorization"))
    challenge = {"WWW-Authenticate": f'Bearer authorization_uri="{request.base_url}/", error="invalid_token"'}
    if problem == "missing":
        message = "Authentication failed. The 'Authorization' header is missing."
        raise Refusal(admin_error(401, "AuthenticationFailed", message, challenge))
    if problem == "expired":
        raise Refusal(
            admin_error(401, "ExpiredAuthenticationToken", "The access token has expired.", challenge)
        )
    if problem is not None or claims is None:
        raise Refusal(
            admin_error(401, "InvalidAuthenticationToken", "The access token is invalid.", challenge)
        )
    if claims["aud"] not in accepted:
        allowed = ",".join(f"'{audience}'" for audience in sorted(accepted))
        message = (
            f"The access token has been obtained from wrong audience or resource '{claims['aud']}'. "
            f"It should exactly match with one of the allowed audiences {allowed}."
        )
        raise Refusal(admin_error(401, "InvalidAuthenticationTokenAudience", message, challenge))
    return Caller(
        str(claims["tid"]).lower(), str(claims["oid"]).lower(), str(claims.get("appid", "")).lower()
    )


def skip_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def read_skip_token(request: Request) -> int:
    """Where the page starts: 0, or the offset a `nextLink` carries; refuses (400) a made-up token."""
    token = request.query.get("$skiptoken")
    if token is None:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        offset = None
    if not isinstance(offset, int) or offset < 0:
        raise Refusal(admin_error(400, "InvalidSkipToken", f"The skip token '{token}' is not valid."))
    return offset


def paged(request: Request, items: Sequence[T], size: int) -> tuple[list[T], dict[str, Any]]:
    """This request's page of `items` and the body's paging part: `nextLink` when more follow."""
    offset = read_skip_token(request)
    page = list(items[offset : offset + size])
    extra: dict[str, Any] = {}
    if offset + size < len(items):
        query = {key: value for key, value in request.query.items() if key != "$skiptoken"}
        query["$skiptoken"] = skip_token(offset + size)
        path = "/".join(quote(part) for part in request.path)
        extra["nextLink"] = f"{request.base_url}/{path}?{urlencode(query, quote_via=quote, safe='$')}"
    return page, extra


class AdminApi:
    """One of the admin APIs on api.bap / api.powerapps / api.flow: a token for `accepted`, a known
    api-version, and the app registered with Power Platform; `route` answers the rest."""

    target = ""  # the fault target and the stats key's stem
    stat = ""
    accepted: frozenset[str] = frozenset()
    api_versions: frozenset[str] = frozenset()

    def __init__(
        self, state: CloudState, tokens: TokenIssuer, faults: Faults, world: PowerPlatformWorld
    ) -> None:
        self._state, self._tokens, self._faults, self._world = state, tokens, faults, world

    def audiences(self, base_url: str) -> Iterable[str]:
        return self.accepted

    def handle(self, request: Request) -> Reply:
        try:
            caller = bearer_caller(self._tokens, request, self.accepted)
            self._state.count(self.stat, caller.tenant_id, request.method)
            fault = self._faults.apply(request, caller.tenant_id, self.target, admin_error)
            if fault is not None:
                return fault
            self._check_api_version(request)
            self._check_registered(request, caller)
            return self.route(request, caller)
        except Refusal as refusal:
            return refusal.reply

    def route(self, request: Request, caller: Caller) -> Reply:
        raise NotImplementedError

    def _check_api_version(self, request: Request) -> None:
        version = request.query.get("api-version")
        if not version:
            message = "The api-version query parameter (?api-version=) is required for all requests."
            raise Refusal(admin_error(400, "MissingApiVersionParameter", message))
        if version not in self.api_versions:
            supported = "', '".join(sorted(self.api_versions))
            message = f"The api-version '{version}' is invalid. The supported versions are '{supported}'."
            raise Refusal(admin_error(400, "InvalidApiVersionParameter", message))

    def _check_registered(self, request: Request, caller: Caller) -> None:
        with self._world.lock:
            registered = caller.app_id in self._world.tenant(caller.tenant_id).registered
        if not registered:
            message = (
                f"The service principal with id '{caller.object_id}' for application {caller.app_id} "
                f"does not have permission to access the path '{request_url(request)}' "
                f"in tenant {caller.tenant_id}."
            )
            raise Refusal(admin_error(403, "Forbidden", message))


def not_found(what: str, name: str) -> Refusal:
    return Refusal(admin_error(404, f"{what}NotFound", f"The {what.lower()} '{name}' could not be found."))


def principal(who: Who, tenant_id: str) -> dict[str, Any]:
    """A principal as Power Apps and BAP show it; a deleted one keeps only its id and type (inferred)."""
    shown: dict[str, Any] = {"id": who.object_id, "type": who.kind, "tenantId": tenant_id}
    if not who.deleted:
        shown["displayName"] = who.display_name
        if who.kind == "User":
            shown.update(email=who.user_principal_name, userPrincipalName=who.user_principal_name)
    return shown
