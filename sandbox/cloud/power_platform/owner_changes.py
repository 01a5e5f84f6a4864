"""The owner-changing calls a repair makes, on the stand-ins' state (power-platform.md, "Changing
owners"):

- Dataverse `PATCH /api/data/v9.2/workflows({id})` with `{"ownerid@odata.bind": "/systemusers({id})"}`
  (Microsoft Learn, "Associate and disassociate table rows": `@odata.bind` on a single-valued
  navigation property; 204 No Content). Only a solution-aware cloud flow's owner changes; the creator
  stays (`createdby` is never written). A flow with premium connectors whose new owner is a service
  principal, without a Process licence, is suspended, as Power Automate's licensing page says of such
  flows (the suspension itself is what the sandbox does; the exact moment is inferred).
- Dataverse `flowcapacityassignments` (a Process licence assigned to a flow, `_regarding_value` the
  workflowid): the table name and columns are inferred.
- Flow admin `GET .../scopes/admin/environments/{env}/flows/{flow}?api-version=2016-11-01`: the flow
  with `properties.connectionReferences` (`tier` Premium or Standard per connector; the shape follows
  CLI for Microsoft 365's flow-get spec, the `tier` field is inferred).
- Power Apps `POST .../scopes/admin/environments/{env}/apps/{app}/modifyAppOwner?api-version=2016-11-01`
  body `{"newAppOwner": objectId, "roleForOldAppOwner": "CanEdit"}` (the call PowerShell's
  Set-AdminPowerAppOwner makes): the old owner keeps the given role when it is a user (a service
  principal cannot be a co-owner). That it accepts a service principal is inferred; a new owner
  that is deleted or not a principal of the tenant is refused (400 InvalidPrincipal: the code is
  inferred), which is why an undo cannot give an app back to an owner deleted since.
- Power BI `POST /v1.0/myorg/groups/{groupId}/datasets/{datasetId}/Default.TakeOver` (Microsoft Learn,
  "Datasets - Take Over In Group"): 200, the caller becomes the dataset's owner (`configuredBy`); the
  caller must be a member of the workspace (checked by the route before).

Called with the request parsed; each takes the world's lock itself.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from typing import Any

from ...scenario_power_platform import CanvasApp, CoOwner
from ..protocol import Reply, Request, json_reply
from .common import Caller, admin_error
from .odata import ODataError, Table
from .world import LiveEnvironment, LiveTenant, PowerPlatformWorld, systemuser_id

_BIND = re.compile(r"^/?systemusers\(([0-9a-fA-F-]{36})\)$")
_ONE = re.compile(r"^workflows\(([0-9a-fA-F-]{36})\)$")
_CAPACITY_NAMESPACE = uuid.UUID("2b1f7c64-1f0e-4d0a-9a51-6f3f3f0c9d21")
_CONNECTORS = {
    "shared_sql": "SQL Server",
    "shared_commondataservice": "Microsoft Dataverse (legacy)",
    "shared_salesforce": "Salesforce",
    "shared_servicebus": "Service Bus",
    "shared_http": "HTTP",
}

CAPACITY_TABLES = {
    "flowcapacityassignments": Table(
        "flowcapacityassignments",
        "flowcapacityassignment",
        "flowcapacityassignmentid",
        ("flowcapacityassignmentid", "capacitytype", "statecode", "_regarding_value"),
    )
}


def flowcapacityassignments(world: PowerPlatformWorld, env: LiveEnvironment) -> list[dict[str, Any]]:
    """One active Process assignment per solution-aware flow that has a Process licence (lock held)."""
    return [
        {
            "flowcapacityassignmentid": str(uuid.uuid5(_CAPACITY_NAMESPACE, flow.flow_id)),
            "capacitytype": "Process",
            "statecode": 0,
            "_regarding_value": flow.flow_id,
        }
        for flow in env.spec.flows
        if flow.solution_aware and flow.process_license
    ]


CAPACITY_ROWS = {"flowcapacityassignments": flowcapacityassignments}


def patch_record(world: PowerPlatformWorld, env: LiveEnvironment, request: Request, segment: str) -> Reply:
    """`PATCH workflows({id})` with an owner bind: 204; anything else is refused as Dataverse does."""
    one = _ONE.match(segment)
    if one is None:
        raise ODataError(405, "0x80060888", "The sandbox's Dataverse updates a workflow's owner only.")
    workflow_id = one.group(1).lower()
    document = _json(request.body)
    bind = document.get("ownerid@odata.bind") if isinstance(document, dict) else None
    found = _BIND.match(bind) if isinstance(bind, str) else None
    if found is None or set(document) != {"ownerid@odata.bind"}:
        raise ODataError(400, "0x80048d19", "The body sets ownerid@odata.bind to /systemusers({id}) only.")
    target = found.group(1).lower()
    with world.lock:
        owner = _object_id_of(world, env, target)
        if owner is None:
            raise ODataError(404, "0x80040217", f"systemuser With Id = {target} Does Not Exist")
        flows = list(env.spec.flows)
        index = next(
            (i for i, flow in enumerate(flows) if flow.solution_aware and flow.flow_id == workflow_id), None
        )
        if index is None:
            raise ODataError(404, "0x80040217", f"workflow With Id = {workflow_id} Does Not Exist")
        flow = flows[index]
        principal = world.who(env.tenant_id, owner).kind == "ServicePrincipal"
        suspended = principal and bool(flow.premium_connectors) and not flow.process_license
        flows[index] = dataclasses.replace(flow, owner=owner, state="Suspended" if suspended else flow.state)
        env.spec = dataclasses.replace(env.spec, flows=tuple(flows))
    return Reply(204, b"", {"OData-Version": "4.0"})


def _object_id_of(world: PowerPlatformWorld, env: LiveEnvironment, systemuser: str) -> str | None:
    """The Entra object id behind a systemuser of the environment (lock held)."""
    for user in world.tenant(env.tenant_id).users.values():
        if systemuser_id(env.env_id, user.object_id) == systemuser:
            return user.object_id
    for client_id in env.app_users:
        object_id = world.principal_object_id(env.tenant_id, client_id)
        if object_id is not None and systemuser_id(env.env_id, object_id) == systemuser:
            return object_id
    return None


def flow_detail(env: LiveEnvironment, flow_id: str, body: dict[str, Any]) -> Reply:
    """One flow as the Flow admin API gives it, with its connection references (lock held)."""
    flow = next((flow for flow in env.spec.flows if flow.flow_id == flow_id), None)
    if flow is None:
        return admin_error(404, "FlowNotFound", f"Could not find flow '{flow_id}'.")
    references = {
        connector: {
            "connectionName": str(uuid.uuid5(_CAPACITY_NAMESPACE, f"{flow.flow_id}/{connector}")).replace(
                "-", ""
            ),
            "id": f"/providers/Microsoft.PowerApps/apis/{connector}",
            "apiName": connector.removeprefix("shared_"),
            "displayName": _CONNECTORS.get(connector, connector.removeprefix("shared_")),
            "tier": "Premium",
        }
        for connector in flow.premium_connectors
    }
    references["shared_office365"] = {
        "connectionName": "shared-office365-" + flow.flow_id[:8],
        "id": "/providers/Microsoft.PowerApps/apis/shared_office365",
        "apiName": "office365",
        "displayName": "Office 365 Outlook",
        "tier": "Standard",
    }
    body["properties"]["connectionReferences"] = references
    return json_reply(200, body)


def modify_app_owner(
    world: PowerPlatformWorld, tenant_id: str, env_id: str, app_id: str, request: Request
) -> Reply:
    document = _json(request.body)
    new_owner = document.get("newAppOwner") if isinstance(document, dict) else None
    role = document.get("roleForOldAppOwner", "CanEdit") if isinstance(document, dict) else None
    if not isinstance(new_owner, str) or role not in ("CanEdit", "CanView"):
        return admin_error(
            400,
            "InvalidRequestContent",
            "The body needs newAppOwner and roleForOldAppOwner (CanEdit or CanView).",
        )
    new_owner = new_owner.lower()
    with world.lock:
        env = world.tenant(tenant_id).environments.get(env_id.lower())
        if env is None:
            return admin_error(404, "EnvironmentNotFound", f"Could not find environment '{env_id}'.")
        apps = list(env.spec.canvas_apps)
        index = next((i for i, app in enumerate(apps) if app.app_id == app_id.lower()), None)
        if index is None:
            return admin_error(404, "AppNotFound", f"Could not find app '{app_id}'.")
        who = world.who(tenant_id, new_owner)
        if who.deleted:
            return admin_error(400, "InvalidPrincipal", f"The principal '{new_owner}' was not found.")
        env.spec = dataclasses.replace(
            env.spec,
            canvas_apps=(
                *apps[:index],
                _owned(world, tenant_id, apps[index], new_owner, role),
                *apps[index + 1 :],
            ),
        )
    return Reply(200, b"", {})


def _owned(world: PowerPlatformWorld, tenant_id: str, app: CanvasApp, owner: str, role: str) -> CanvasApp:
    """The app with its new owner; the old one a co-owner in `role` when it is a user (lock held)."""
    co_owners = [co for co in app.co_owners if co.object_id != owner]
    old = world.who(tenant_id, app.owner)
    if app.owner != owner and old.kind == "User" and not old.deleted:
        co_owners.append(CoOwner(app.owner, role, "User", old.display_name))
    return dataclasses.replace(app, owner=owner, co_owners=tuple(co_owners))


def take_over(
    world: PowerPlatformWorld, tenant: LiveTenant, workspace_id: str, dataset_id: str, caller: Caller
) -> Reply:
    """The caller becomes the dataset's owner (the route checked the grant and membership)."""
    with world.lock:
        workspaces = list(tenant.spec.workspaces)
        for index, workspace in enumerate(workspaces):
            if workspace.workspace_id.lower() != workspace_id:
                continue
            datasets = list(workspace.datasets)
            for position, dataset in enumerate(datasets):
                if dataset.dataset_id.lower() == dataset_id:
                    datasets[position] = dataclasses.replace(dataset, configured_by=caller.object_id)
                    workspaces[index] = dataclasses.replace(workspace, datasets=tuple(datasets))
                    tenant.spec = dataclasses.replace(tenant.spec, workspaces=tuple(workspaces))
                    return Reply(200, b"", {})
    body = {"error": {"code": "PowerBIEntityNotFound", "pbi.error": {"code": "PowerBIEntityNotFound"}}}
    return json_reply(404, body)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
