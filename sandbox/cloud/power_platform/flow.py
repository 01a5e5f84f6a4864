"""The Flow admin API (api.flow.microsoft.com, token audience https://service.flow.microsoft.com/): an
environment's cloud flows, paged with `nextLink`, solution-aware ones included.

Follows CLI for Microsoft 365 (src/m365/flow/commands/flow-list.spec.ts, its admin response): `name`
the flow id, `type` Microsoft.ProcessSimple/environments/flows, `properties.displayName`, `state`,
`properties.creator.{tenantId,objectId,userId,userType}`, `isManaged`; and its docs for an unknown
environment ("Access to the environment 'xyz' is denied."). `workflowEntityId` on solution-aware flows
(their Dataverse workflowid) and the creator of a service principal's flow are inferred.
"""

from __future__ import annotations

from typing import Any

from ...scenario_power_platform import DEFAULT_TIME, CloudFlow
from ..protocol import Reply, Request, json_reply
from .common import FLOW_AUDIENCES, AdminApi, Caller, admin_error, paged
from .owner_changes import flow_detail
from .world import LiveEnvironment

FLOW_API_VERSIONS = frozenset({"2016-11-01"})
_ONE_FLOW = ["scopes", "admin", "environments", "flows"]


def flow_body(env: LiveEnvironment, flow: CloudFlow) -> dict[str, Any]:
    env_id = env.env_id
    environment = {
        "name": env_id,
        "type": "Microsoft.ProcessSimple/environments",
        "id": f"/providers/Microsoft.ProcessSimple/environments/{env_id}",
    }
    properties: dict[str, Any] = {
        "apiId": "/providers/Microsoft.PowerApps/apis/shared_logicflows",
        "displayName": flow.display_name,
        "state": flow.state,
        "createdTime": DEFAULT_TIME,
        "lastModifiedTime": DEFAULT_TIME,
        "flowSuspensionReason": "None",
        "environment": environment,
        "definitionSummary": {"triggers": [], "actions": []},
        "creator": {
            "tenantId": env.tenant_id,
            "objectId": flow.creator,
            "userId": flow.creator,
            "userType": "ActiveDirectory",
        },
        "flowFailureAlertSubscribed": False,
        "isManaged": flow.managed,
    }
    if flow.solution_aware:
        properties["workflowEntityId"] = flow.flow_id
    return {
        "name": flow.flow_id,
        "id": f"/providers/Microsoft.ProcessSimple/environments/{env_id}/flows/{flow.flow_id}",
        "type": "Microsoft.ProcessSimple/environments/flows",
        "properties": properties,
    }


class Flow(AdminApi):
    target, stat = "flow", "flowCalls"
    accepted, api_versions = FLOW_AUDIENCES, FLOW_API_VERSIONS

    def route(self, request: Request, caller: Caller) -> Reply:
        parts = [part.lower() for part in request.path[2:]]  # after providers/Microsoft.ProcessSimple
        if request.method == "GET" and len(parts) == 6 and parts[:3] + parts[4:5] == _ONE_FLOW:
            return self._one(caller, parts[3], parts[5])  # one flow, with its connection references
        if parts[:3] != ["scopes", "admin", "environments"] or parts[4:] not in (["v2", "flows"], ["flows"]):
            return admin_error(404, "NotFound", f"No such Flow resource '{'/'.join(request.path)}'.")
        if request.method != "GET":
            return admin_error(405, "MethodNotAllowed", f"The method '{request.method}' is not allowed.")
        with self._world.lock:
            tenant = self._world.tenant(caller.tenant_id)
            env = tenant.environments.get(parts[3])
            if env is None:
                message = f"Access to the environment '{request.path[5]}' is denied."
                return admin_error(403, "EnvironmentAccessDenied", message)
            page, extra = paged(request, env.spec.flows, tenant.spec.page_sizes.flows)
            return json_reply(200, {"value": [flow_body(env, flow) for flow in page], **extra})

    def _one(self, caller: Caller, env_id: str, flow_id: str) -> Reply:
        """One flow with its connection references (owner_changes.py)."""
        with self._world.lock:
            env = self._world.tenant(caller.tenant_id).environments.get(env_id)
            if env is None:
                return admin_error(
                    403, "EnvironmentAccessDenied", f"Access to the environment '{env_id}' is denied."
                )
            flow = next((flow for flow in env.spec.flows if flow.flow_id == flow_id), None)
            body = flow_body(env, flow) if flow is not None else {"properties": {}}
            return flow_detail(env, flow_id, body)
