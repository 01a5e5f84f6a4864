"""The BAP admin API (api.bap.microsoft.com, token audience https://service.powerapps.com/):
environments listed with `nextLink` paging, one environment read, and `addAppUser`, which creates the
calling app's (or another app's) Dataverse application user in an environment.

Follows the environment bodies of Microsoft's Terraform provider for Power Platform
(internal/services/powerapps/tests/Validate_Read/get_environments.json): `name` the id,
`properties.displayName`, `properties.createdBy`, `properties.environmentSku`, `databaseType`, and
`properties.linkedEnvironmentMetadata.instanceUrl` only where Dataverse exists (here the Dataverse
stand-in's URL, `{sandbox}/dataverse/{envId}/`). `addAppUser` answers 200 with no body (Microsoft
Learn, "Create a Dataverse application user"); its refusals for an unknown environment, one without
Dataverse and an app with no service principal in the tenant are inferred.
"""

from __future__ import annotations

from typing import Any

from ...scenario_fields import is_guid
from ...scenario_power_platform import DEFAULT_TIME
from ..protocol import Refusal, Reply, Request, json_reply
from .common import POWERAPPS_AUDIENCES, AdminApi, Caller, admin_error, not_found, paged, principal
from .world import LiveEnvironment, PowerPlatformWorld

BAP_API_VERSIONS = frozenset({"2020-10-01", "2020-08-01", "2021-04-01"})
DATAVERSE_PREFIX = "dataverse"


def instance_url(base_url: str, env_id: str) -> str:
    """The environment's Dataverse URL (`linkedEnvironmentMetadata.instanceUrl`), with its slash."""
    return f"{base_url}/{DATAVERSE_PREFIX}/{env_id}/"


def environment_body(world: PowerPlatformWorld, env: LiveEnvironment, base_url: str) -> dict[str, Any]:
    """One environment as BAP's admin list shows it (lock held)."""
    spec = env.spec
    creator: dict[str, Any] = {"id": "SYSTEM", "displayName": "SYSTEM", "type": "NotSpecified"}
    if spec.created_by is not None:
        creator = principal(world.who(env.tenant_id, spec.created_by), env.tenant_id)
    properties: dict[str, Any] = {
        "tenantId": env.tenant_id,
        "azureRegion": spec.region,
        "displayName": spec.display_name,
        "createdTime": DEFAULT_TIME,
        "createdBy": creator,
        "provisioningState": "Succeeded",
        "creationType": "User",
        "environmentSku": spec.sku,
        "isDefault": spec.env_id.lower().startswith("default-"),
        "databaseType": "CommonDataService" if spec.dataverse else "None",
        "states": {"management": {"id": "Ready"}, "runtime": {"id": "Enabled"}},
    }
    if spec.dataverse:
        url = instance_url(base_url, spec.env_id)
        properties["linkedEnvironmentMetadata"] = {
            "resourceId": spec.env_id.lower().removeprefix("default-"),
            "friendlyName": spec.display_name,
            "uniqueName": spec.env_id,
            "domainName": spec.env_id,
            "version": "9.2.24044.00193",
            "instanceUrl": url,
            "instanceApiUrl": url.rstrip("/"),
            "baseLanguage": 1033,
            "instanceState": "Ready",
            "createdTime": DEFAULT_TIME,
            "platformSku": "Standard",
        }
    return {
        "id": f"/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments/{spec.env_id}",
        "type": "Microsoft.BusinessAppPlatform/scopes/environments",
        "location": spec.region,
        "name": spec.env_id,
        "properties": properties,
    }


class BusinessAppPlatform(AdminApi):
    target, stat = "bap", "bapCalls"
    accepted, api_versions = POWERAPPS_AUDIENCES, BAP_API_VERSIONS

    def route(self, request: Request, caller: Caller) -> Reply:
        parts = [part.lower() for part in request.path[2:]]  # after providers/Microsoft.BusinessAppPlatform
        if parts[:3] != ["scopes", "admin", "environments"] or len(parts) > 5:
            return admin_error(404, "NotFound", f"No such BAP resource '{'/'.join(request.path)}'.")
        if len(parts) == 3 and request.method == "GET":
            return self._list(request, caller)
        env_id = request.path[5] if len(parts) >= 4 else ""
        if len(parts) == 4 and request.method == "GET":
            with self._world.lock:
                env = self._environment(caller, env_id)
                return json_reply(200, environment_body(self._world, env, request.base_url))
        if parts[4:] == ["addappuser"] and request.method == "POST":
            return self._add_app_user(request, caller, env_id)
        return admin_error(405, "MethodNotAllowed", f"The method '{request.method}' is not allowed.")

    def _environment(self, caller: Caller, env_id: str) -> LiveEnvironment:  # lock held
        env = self._world.tenant(caller.tenant_id).environments.get(env_id.lower())
        if env is None:
            raise not_found("Environment", env_id)
        return env

    def _list(self, request: Request, caller: Caller) -> Reply:
        with self._world.lock:
            tenant = self._world.tenant(caller.tenant_id)
            environments = list(tenant.environments.values())
            page, extra = paged(request, environments, tenant.spec.page_sizes.environments)
            value = [environment_body(self._world, env, request.base_url) for env in page]
        return json_reply(200, {"value": value, **extra})

    def _add_app_user(self, request: Request, caller: Caller, env_id: str) -> Reply:
        try:
            app_id = request.json().get("servicePrincipalAppId")
        except ValueError:
            app_id = None
        if not is_guid(app_id):
            message = 'The request body must be {"servicePrincipalAppId": "<application (client) id>"}.'
            return admin_error(400, "InvalidRequestBody", message)
        app_id = str(app_id).lower()
        with self._world.lock:
            env = self._environment(caller, env_id)
            if not env.spec.dataverse:
                message = f"The environment '{env.env_id}' has no Dataverse database."
                raise Refusal(admin_error(400, "EnvironmentHasNoDatabase", message))
            if self._world.principal_object_id(caller.tenant_id, app_id) is None:
                message = (
                    f"No service principal for application {app_id} was found in tenant {caller.tenant_id}."
                )
                raise Refusal(admin_error(400, "ServicePrincipalNotFound", message))
            env.app_users.add(app_id)
        return Reply(200)
