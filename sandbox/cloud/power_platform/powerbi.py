"""The Power BI admin API (api.powerbi.com, token audience https://analysis.windows.net/powerbi/api):
`GET /v1.0/myorg/admin/datasets` (`$top` / `$skip`) and `GET /v1.0/myorg/admin/groups` (`$top`
required, at most 5000, `$skip`, `$expand=datasets`); a workspace's imports, datasets and reports
(`/v1.0/myorg/groups/{groupId}/...`) are `powerbi_imports.py`'s.

A service principal gets in only when the tenant setting "Service principals can access read-only
admin APIs" covers it (the scenario's `powerBiApps`), else 401 PowerBINotAuthorizedException, the body
recorded in MicrosoftDocs/powerbi-docs#3234. Limits per tenant: datasets 5 a minute and 50 an hour,
groups 15 a minute and 50 an hour (Microsoft Learn, the two operations' pages), 429 with Retry-After.
Dataset fields follow Learn's GetDatasetsAsAdmin example (`id`, `name`, `configuredBy`,
`workspaceId`, ...); `configuredBy` is the owner's user principal name, a service principal's client
ID (inferred). The 400 wording for bad paging parameters and the 429 body are inferred.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

from ...scenario_power_platform import DEFAULT_TIME, Dataset, Workspace
from ..faults import Faults
from ..protocol import Refusal, Reply, Request, json_reply
from ..state import CloudState
from ..tokens import TokenIssuer
from .common import POWER_BI_AUDIENCES, Caller, admin_error, bearer_caller
from .powerbi_imports import PowerBiImports, settle
from .throttle import SlidingWindows
from .world import LiveTenant, PowerPlatformWorld

MAX_TOP = 5000
_NOT_AUTHORIZED = {
    "error": {
        "code": "PowerBINotAuthorizedException",
        "pbi.error": {
            "code": "PowerBINotAuthorizedException",
            "parameters": {},
            "details": [],
            "exceptionCulprit": 1,
        },
    }
}
_TOO_MANY = (
    "You have exceeded the amount of requests allowed in the current time frame and further requests "
    "will fail. Retry in {wait} seconds."
)


def _number(request: Request, name: str, low: int, high: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not re.fullmatch(r"\d+", raw) or int(raw) < low or (high is not None and int(raw) > high):
        bound = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise Refusal(admin_error(400, "InvalidRequest", f"{name} must be a whole number {bound}."))
    return int(raw)


class PowerBi:
    def __init__(
        self, state: CloudState, tokens: TokenIssuer, faults: Faults, world: PowerPlatformWorld
    ) -> None:
        self._state, self._tokens, self._faults, self._world = state, tokens, faults, world
        self.limits = SlidingWindows()
        self._imports = PowerBiImports(world)

    def audiences(self, base_url: str) -> Iterable[str]:
        return POWER_BI_AUDIENCES

    def handle(self, request: Request) -> Reply:
        try:
            caller = bearer_caller(self._tokens, request, POWER_BI_AUDIENCES)
            self._state.count("powerBiCalls", caller.tenant_id, request.method)
            fault = self._faults.apply(request, caller.tenant_id, "powerbi", admin_error)
            return fault if fault is not None else self._serve(request, caller)
        except Refusal as refusal:
            return refusal.reply

    def _serve(self, request: Request, caller: Caller) -> Reply:
        parts = [part.lower() for part in request.path]
        if parts[:3] == ["v1.0", "myorg", "groups"]:
            return self._imports.route(request, caller, parts[2:])
        return self._admin(request, caller, parts)

    def _admin(self, request: Request, caller: Caller, parts: list[str]) -> Reply:
        if (
            parts[:3] != ["v1.0", "myorg", "admin"]
            or len(parts) != 4
            or parts[3] not in ("datasets", "groups")
        ):
            return admin_error(404, "NotFound", f"No such Power BI resource '{'/'.join(request.path)}'.")
        if request.method != "GET":
            return admin_error(405, "MethodNotAllowed", f"The method '{request.method}' is not allowed.")
        with self._world.lock:
            tenant = self._world.tenant(caller.tenant_id)
            allowed = caller.app_id in tenant.power_bi
            settle(tenant, time.monotonic())
        if not allowed:
            return json_reply(401, _NOT_AUTHORIZED)
        self._throttle(tenant, parts[3])
        for name in request.query:
            if name.startswith("$") and name not in ("$top", "$skip", "$expand"):
                return admin_error(400, "InvalidRequest", f"The sandbox's Power BI does not take {name}.")
        if parts[3] == "datasets":
            return self._datasets(request, tenant)
        return self._groups(request, tenant)

    def _throttle(self, tenant: LiveTenant, kind: str) -> None:
        limits = tenant.spec.limits
        per_minute, per_hour = {
            "datasets": (limits.power_bi_datasets_per_minute, limits.power_bi_datasets_per_hour),
            "groups": (limits.power_bi_groups_per_minute, limits.power_bi_groups_per_hour),
        }[kind]
        wait, _ = self.limits.take(
            (tenant.tenant_id, kind), [(per_minute, 60.0), (per_hour, 3600.0)], time.monotonic()
        )
        if wait:
            message = _TOO_MANY.format(wait=wait)
            raise Refusal(admin_error(429, "TooManyRequests", message, {"Retry-After": str(wait)}))

    def _window(self, request: Request, items: list[Any], top: int | None) -> list[Any]:
        skip = _number(request, "$skip", 0) or 0
        return items[skip : skip + top] if top is not None else items[skip:]

    def _datasets(self, request: Request, tenant: LiveTenant) -> Reply:
        if "$expand" in request.query:
            return admin_error(400, "InvalidRequest", "admin/datasets takes no $expand.")
        top = _number(request, "$top", 1)
        with self._world.lock:
            pairs = [(w, d) for w in tenant.spec.workspaces for d in w.datasets]
            value = [self._dataset(tenant, w, d) for w, d in self._window(request, pairs, top)]
        context = f"{request.base_url}/v1.0/myorg/admin/$metadata#datasets"
        return json_reply(200, {"@odata.context": context, "value": value})

    def _groups(self, request: Request, tenant: LiveTenant) -> Reply:
        top = _number(request, "$top", 1, MAX_TOP)
        if top is None:
            return admin_error(400, "InvalidRequest", "admin/groups needs $top (1 to 5000).")
        expand = [name.strip() for name in request.query.get("$expand", "").split(",") if name.strip()]
        if any(name != "datasets" for name in expand):
            return admin_error(400, "InvalidRequest", "The sandbox's admin/groups expands datasets only.")
        value = []
        with self._world.lock:
            for workspace in self._window(request, list(tenant.spec.workspaces), top):
                group: dict[str, Any] = {
                    "id": workspace.workspace_id,
                    "isReadOnly": False,
                    "isOnDedicatedCapacity": False,
                    "type": "Workspace",
                    "state": "Active",
                    "name": workspace.name,
                }
                if expand:
                    group["datasets"] = [self._dataset(tenant, workspace, d) for d in workspace.datasets]
                value.append(group)
        context = f"{request.base_url}/v1.0/myorg/admin/$metadata#groups"
        return json_reply(200, {"@odata.context": context, "value": value})

    def _dataset(
        self, tenant: LiveTenant, workspace: Workspace, dataset: Dataset
    ) -> dict[str, Any]:  # lock held
        who = self._world.who(tenant.tenant_id, dataset.configured_by)
        configured_by = who.user_principal_name if who.kind == "User" else who.client_id or who.object_id
        return {
            "id": dataset.dataset_id,
            "name": dataset.name,
            "addRowsAPIEnabled": False,
            "configuredBy": configured_by,
            "isRefreshable": True,
            "isEffectiveIdentityRequired": False,
            "isEffectiveIdentityRolesRequired": False,
            "isOnPremGatewayRequired": False,
            "targetStorageMode": "Abf",
            "createdDate": DEFAULT_TIME,
            "contentProviderType": "PbixInImportMode",
            "workspaceId": workspace.workspace_id,
        }
