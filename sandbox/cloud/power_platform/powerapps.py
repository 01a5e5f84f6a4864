"""The Power Apps admin API (api.powerapps.com, token audience https://service.powerapps.com/): an
environment's canvas apps and an app's permissions, both paged with `nextLink`.

Follows Microsoft's Terraform provider for Power Platform for the app body
(internal/services/powerapps/tests/Validate_Read/get_apps_*.json: `name` the app id,
`properties.owner`, `properties.createdBy`, `properties.displayName`, `properties.environment`) and
CLI for Microsoft 365 for permissions (src/m365/pa/commands/app/app-permission-list.spec.ts:
`properties.roleName` Owner / CanEdit / CanView, `properties.principal.{id,type,...}`,
`properties.scope`). The 404 bodies for an unknown environment or app are inferred.
"""

from __future__ import annotations

from typing import Any

from ...scenario_power_platform import DEFAULT_TIME, CanvasApp
from ..protocol import Reply, Request, json_reply
from .common import POWERAPPS_AUDIENCES, AdminApi, Caller, admin_error, not_found, paged, principal
from .owner_changes import modify_app_owner
from .world import LiveEnvironment

POWERAPPS_API_VERSIONS = frozenset({"2016-11-01", "2020-06-01", "2021-02-01", "2022-11-01"})
_ADMIN_ENVIRONMENTS = ["scopes", "admin", "environments"]


class PowerApps(AdminApi):
    target, stat = "powerapps", "powerAppsCalls"
    accepted, api_versions = POWERAPPS_AUDIENCES, POWERAPPS_API_VERSIONS

    def route(self, request: Request, caller: Caller) -> Reply:
        parts = [part.lower() for part in request.path[2:]]  # after providers/Microsoft.PowerApps
        if request.method == "POST" and len(parts) == 7 and parts[6] == "modifyappowner":
            return modify_app_owner(self._world, caller.tenant_id, parts[3], parts[5], request)
        listing = len(parts) in (5, 7) and parts[:3] == _ADMIN_ENVIRONMENTS and parts[4] == "apps"
        if not listing or (len(parts) == 7 and parts[6] != "permissions"):
            return admin_error(404, "NotFound", f"No such Power Apps resource '{'/'.join(request.path)}'.")
        if request.method != "GET":
            return admin_error(405, "MethodNotAllowed", f"The method '{request.method}' is not allowed.")
        with self._world.lock:
            env = self._world.tenant(caller.tenant_id).environments.get(parts[3])
            if env is None:
                raise not_found("Environment", request.path[5])
            if len(parts) == 5:
                return self._apps(request, env)
            app = next((app for app in env.spec.canvas_apps if app.app_id == parts[5]), None)
            if app is None:
                raise not_found("App", request.path[7])
            return self._permissions(request, env, app)

    def _apps(self, request: Request, env: LiveEnvironment) -> Reply:  # lock held
        tenant = self._world.tenant(env.tenant_id)
        page, extra = paged(request, env.spec.canvas_apps, tenant.spec.page_sizes.apps)
        return json_reply(200, {"value": [self._app_body(env, app) for app in page], **extra})

    def _app_body(self, env: LiveEnvironment, app: CanvasApp) -> dict[str, Any]:  # lock held
        env_id, tenant_id = env.env_id, env.tenant_id
        creator = principal(self._world.who(tenant_id, app.created_by), tenant_id)
        users = sum(1 for co_owner in app.co_owners if co_owner.principal_type == "User")
        return {
            "name": app.app_id,
            "id": f"/providers/Microsoft.PowerApps/scopes/admin/environments/{env_id}/apps/{app.app_id}",
            "type": "Microsoft.PowerApps/scopes/admin/apps",
            "tags": {
                "primaryDeviceWidth": "1366",
                "primaryDeviceHeight": "768",
                "primaryFormFactor": "Tablet",
            },
            "properties": {
                "appVersion": DEFAULT_TIME,
                "lifeCycleId": "Published",
                "status": "Ready",
                "owner": principal(self._world.who(tenant_id, app.owner), tenant_id),
                "createdBy": creator,
                "lastModifiedBy": creator,
                "displayName": app.display_name,
                "description": "",
                "createdTime": DEFAULT_TIME,
                "lastModifiedTime": DEFAULT_TIME,
                "sharedGroupsCount": len(app.co_owners) - users,
                "sharedUsersCount": users,
                "appOpenUri": f"https://apps.powerapps.com/play/e/{env_id}/a/{app.app_id}?tenantId={tenant_id}",
                "environment": {
                    "id": f"/providers/Microsoft.PowerApps/environments/{env_id}",
                    "name": env_id,
                    "location": env.spec.region,
                },
                "almMode": "Environment",
            },
            "appLocation": env.spec.region,
            "isAppComponentLibrary": False,
            "appType": "ClassicCanvasApp",
        }

    def _permissions(self, request: Request, env: LiveEnvironment, app: CanvasApp) -> Reply:  # lock held
        tenant_id = env.tenant_id
        entries = [("Owner", principal(self._world.who(tenant_id, app.owner), tenant_id))]
        for co_owner in app.co_owners:
            shown = {"id": co_owner.object_id, "type": co_owner.principal_type, "tenantId": tenant_id}
            if co_owner.principal_type == "User":
                shown = principal(self._world.who(tenant_id, co_owner.object_id), tenant_id)
            else:
                shown["displayName"] = co_owner.display_name
            entries.append((co_owner.role, shown))
        page, extra = paged(request, entries, self._world.tenant(tenant_id).spec.page_sizes.permissions)
        scope = f"/providers/Microsoft.PowerApps/environments/{env.env_id}/apps/{app.app_id}"
        value = [
            {
                "name": shown["id"],
                "id": f"/providers/Microsoft.PowerApps/apps/{app.app_id}/permissions/{shown['id']}",
                "type": "Microsoft.PowerApps/apps/permissions",
                "properties": {
                    "roleName": role,
                    "principal": shown,
                    "scope": scope,
                    "notifyShareTargetOption": "NotSpecified",
                    "inviteGuestToTenant": False,
                    "createdOn": DEFAULT_TIME,
                    "createdBy": app.owner,
                },
            }
            for role, shown in page
        ]
        return json_reply(200, {"value": value, **extra})
