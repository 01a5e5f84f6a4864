"""The reads and owner changes a repair makes, as the linked service principal: the audit's reader
(`shared.attribution.inventory`) for environments, canvas apps, our Dataverse user and the Power BI
datasets, and the delivery's caller (`shared.delivery.calls`) for the rest, one token per audience.
Every call is built here from the kind and the ids; a Dataverse URL gets a token only if it is a
Dataverse host of the cloud (`dataverse_allowed`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from azure.core.exceptions import HttpResponseError

from shared.attribution.inventory import Api, ApiRefused, Environment, InventoryReader, Resource
from shared.delivery.calls import Caller, CallFailed
from shared.repair.plan import CanvasAppFacts, DatasetFacts, FlowFacts, RepairKind
from shared.spine.settings import Settings

__all__ = ["RepairCalls"]

_DATAVERSE = "api/data/v9.2"
_ADMIN_VERSION = "api-version=2016-11-01"


class RepairCalls:
    def __init__(self, settings: Settings, reader: InventoryReader, caller: Caller) -> None:
        self._endpoints = settings.power_platform
        self.reader, self._caller = reader, caller
        self._environments: dict[str, Environment] | None = None
        self._datasets: dict[str, Resource] | None = None

    async def close(self) -> None:
        await self.reader.close()
        await self._caller.close()

    # ---- reads ----------------------------------------------------------------------------------

    async def environment(self, env_id: str) -> Environment | None:
        if self._environments is None:
            self._environments = {env.id.lower(): env for env in await self.reader.environments()}
        return self._environments.get(env_id.lower())

    async def datasets(self, *, fresh: bool = False) -> dict[str, Resource]:
        """Every dataset by id, from one admin read (its workspace and `configuredBy`)."""
        if self._datasets is None or fresh:
            self._datasets = {r.resource_id.lower(): r for r in await self.reader.power_bi_datasets()}
        return self._datasets

    async def dataset_facts(self, dataset_id: str, *, fresh: bool = False) -> tuple[str, DatasetFacts] | None:
        """(workspace, facts), or None when the dataset is gone."""
        found = (await self.datasets(fresh=fresh)).get(dataset_id.lower())
        if found is None:
            return None
        owner = found.holders[0].principal if found.holders else None
        url = f"{self._endpoints.powerbi}/v1.0/myorg/groups/{quote(found.environment_id)}/datasets"
        try:
            await self._caller.call(Api.POWER_BI, "GET", url, audience=_audience(Api.POWER_BI))
            member = True
        except ApiRefused:
            member = False
        return found.environment_id, DatasetFacts(owner, member)

    async def flow_facts(self, environment: Environment, flow_id: str) -> FlowFacts | None:
        """What a flow's repair needs: is it in Dataverse (solution-aware), its owner there, its
        premium connectors (the Flow admin API's connection references) and a Process licence."""
        base = f"{self._endpoints.flow}/providers/Microsoft.ProcessSimple/scopes/admin"
        url = f"{base}/environments/{quote(environment.id)}/flows/{quote(flow_id)}?{_ADMIN_VERSION}"
        try:
            detail = await self._caller.call(Api.FLOW, "GET", url, audience=_audience(Api.FLOW))
        except CallFailed as failed:
            if failed.status == 404:
                return None
            raise
        references = _get(detail, "properties", "connectionReferences")
        premium = tuple(
            sorted(
                str(key)
                for key, reference in (references.items() if isinstance(references, dict) else ())
                if isinstance(reference, dict) and str(reference.get("tier", "")).lower() == "premium"
            )
        )
        workflow_id = _get(detail, "properties", "workflowEntityId")
        if not environment.dataverse_url or not isinstance(workflow_id, str):
            return FlowFacts(False, None, premium)
        row = await self._dataverse(
            environment, "GET", f"workflows({quote(workflow_id)})?$select=_ownerid_value,category"
        )
        if row is None or row.get("category") != 5:
            return FlowFacts(False, None, premium)
        licences = await self._dataverse(
            environment,
            "GET",
            "flowcapacityassignments?$select=flowcapacityassignmentid"
            f"&$filter=_regarding_value eq {quote(workflow_id)} and statecode eq 0",
        )
        licensed = bool(licences and licences.get("value"))
        return FlowFacts(True, _text(row.get("_ownerid_value")), premium, licensed)

    async def canvas_app_owner(
        self, environment: Environment, app_id: str, *, existence: bool = False
    ) -> CanvasAppFacts:
        """The app's owner now; with `existence`, also whether that owner is still in the tenant."""
        for app in await self.reader.canvas_apps(environment):
            if app.resource_id.lower() == app_id.lower():
                owner = app.holders[0].principal if app.holders else None
                exists = await self._owner_exists(environment, app_id, owner) if existence else None
                return CanvasAppFacts(owner, exists)
        return CanvasAppFacts(None)

    async def _owner_exists(self, environment: Environment, app_id: str, owner: str | None) -> bool | None:
        """Whether the app's owner is still a principal of the tenant, from the app's permissions:
        Power Apps shows a deleted owner by its id and type alone, without a name (inferred). The
        first page holds the Owner entry; None when it does not say."""
        if owner is None:
            return None
        base = f"{self._endpoints.powerapps}/providers/Microsoft.PowerApps/scopes/admin"
        url = f"{base}/environments/{quote(environment.id)}/apps/{quote(app_id)}/permissions?{_ADMIN_VERSION}"
        try:
            page = await self._caller.call(Api.POWER_APPS, "GET", url, audience=_audience(Api.POWER_APPS))
        except CallFailed:
            return None
        for entry in page.get("value", []) if isinstance(page, dict) else ():
            principal = _get(entry, "properties", "principal")
            if _get(entry, "properties", "roleName") != "Owner" or not isinstance(principal, dict):
                continue
            if _text(principal.get("id")) != owner.lower():
                return None
            return any(principal.get(key) for key in ("displayName", "email", "userPrincipalName"))
        return None

    async def current_owner(self, kind: RepairKind, env_id: str, resource_id: str) -> str | None:
        """The owner now, as the plan names it (None: the resource is gone)."""
        if kind is RepairKind.POWER_BI_TAKEOVER:
            found = await self.dataset_facts(resource_id, fresh=True)
            return found[1].owner if found else None
        environment = await self.environment(env_id)
        if environment is None:
            return None
        if kind is RepairKind.FLOW_OWNER:
            facts = await self.flow_facts(environment, resource_id)
            return facts.owner if facts else None
        return (await self.canvas_app_owner(environment, resource_id)).owner

    # ---- changes --------------------------------------------------------------------------------

    async def change_owner(self, kind: RepairKind, env_id: str, resource_id: str, owner: str) -> None:
        """Make `owner` the owner (for a dataset: the caller takes it over; `owner` is not sent)."""
        if kind is RepairKind.POWER_BI_TAKEOVER:
            url = (
                f"{self._endpoints.powerbi}/v1.0/myorg/groups/{quote(env_id)}/datasets/"
                f"{quote(resource_id)}/Default.TakeOver"
            )
            await self._caller.call(Api.POWER_BI, "POST", url, audience=_audience(Api.POWER_BI), json={})
            return
        environment = await self.environment(env_id)
        if environment is None:
            raise CallFailed(Api.BAP, 404, "EnvironmentNotFound", "the environment is gone")
        if kind is RepairKind.FLOW_OWNER:
            body = {"ownerid@odata.bind": f"/systemusers({owner})"}
            await self._dataverse(environment, "PATCH", f"workflows({quote(resource_id)})", json=body)
            return
        base = f"{self._endpoints.powerapps}/providers/Microsoft.PowerApps/scopes/admin"
        url = (
            f"{base}/environments/{quote(environment.id)}/apps/{quote(resource_id)}/modifyAppOwner"
            f"?{_ADMIN_VERSION}"
        )
        body = {"newAppOwner": owner, "roleForOldAppOwner": "CanEdit"}
        await self._caller.call(Api.POWER_APPS, "POST", url, audience=_audience(Api.POWER_APPS), json=body)

    async def _dataverse(
        self, environment: Environment, method: str, path: str, json: Any = None
    ) -> dict[str, Any] | None:
        instance = environment.dataverse_url or ""
        if not self._endpoints.dataverse_allowed(instance):
            raise HttpResponseError(
                message="dataverse: the environment's instance URL is not a Dataverse host"
            )
        instance = instance if instance.endswith("/") else f"{instance}/"
        headers = {"OData-MaxVersion": "4.0", "OData-Version": "4.0"}
        try:
            answer = await self._caller.call(
                Api.DATAVERSE,
                method,
                f"{instance}{_DATAVERSE}/{path}",
                audience=instance,
                json=json,
                headers=headers,
            )
        except CallFailed as failed:
            if failed.status == 404 and method == "GET":
                return None
            raise
        return answer if isinstance(answer, dict) else None


def _audience(api: Api) -> str:
    return api.audience or ""


def _get(item: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(item, dict):
            return None
        item = item.get(key)
    return item


def _text(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and value else None
