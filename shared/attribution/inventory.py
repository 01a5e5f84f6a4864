"""What a customer's Power Platform holds and who holds it, read as the partner's service principal.

The calls and response shapes are those of `power-platform.md` ("Reading (inventory)"): BAP
environments, Power Apps canvas apps, Flow admin flows, Dataverse model-driven apps and bots, Power BI
admin datasets. One token per (tenant, audience) comes from the credential the linker uses. A
refused call (401/403: a one-time grant is missing) raises `ApiRefused` for that API alone; a 429
raises `Throttled` with the server's Retry-After; anything else is the SDK's error, classified by
`shared.spine.errors`. No call retries inside: a failed environment is tried again as a whole by
the spine's decision.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from azure.core import AsyncPipelineClient
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline import policies
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.rest import HttpRequest

from shared.attribution.rules import Product
from shared.spine.settings import Settings

__all__ = [
    "Api",
    "ApiRefused",
    "Environment",
    "Holder",
    "HolderRole",
    "InventoryReader",
    "Resource",
    "Throttled",
]

_BAP_VERSION = "api-version=2020-10-01"
_ADMIN_VERSION = "api-version=2016-11-01"
_DATAVERSE = "api/data/v9.2"
_MAX_PAGES = 1000
"""A guard against a server that pages for ever."""


class Api(StrEnum):
    """The APIs the audit reads; each is granted (or not) by the customer on its own."""

    BAP = "bap"
    POWER_APPS = "powerapps"
    FLOW = "flow"
    DATAVERSE = "dataverse"
    POWER_BI = "powerbi"

    @property
    def audience(self) -> str | None:
        """The token audience; Dataverse's is the environment's own URL."""
        return _AUDIENCES.get(self)


_AUDIENCES = {
    Api.BAP: "https://service.powerapps.com/",
    Api.POWER_APPS: "https://service.powerapps.com/",
    Api.FLOW: "https://service.flow.microsoft.com/",
    Api.POWER_BI: "https://analysis.windows.net/powerbi/api",
}


class ApiRefused(Exception):
    """401 or 403 from one API: a one-time grant of the customer's is missing (or was withdrawn)."""

    def __init__(self, api: Api, status: int) -> None:
        super().__init__(f"{api.value}: HTTP {status}")
        self.api, self.status = api, status


class Throttled(Exception):
    """429 from one API (service protection): try again after `retry_after` seconds."""

    def __init__(self, api: Api, retry_after: float | None) -> None:
        super().__init__(f"{api.value}: throttled")
        self.api, self.retry_after = api, retry_after


class HolderRole(StrEnum):
    OWNER = "owner"
    CO_OWNER = "co-owner"
    CREATOR = "creator"
    PUBLISHER = "publisher"


@dataclass(frozen=True)
class Holder:
    """Who holds a resource in one role: an Entra object ID, a Dataverse systemuser ID, or the
    principal name Power BI records (a user's UPN, a service principal's client ID)."""

    role: HolderRole
    principal: str


@dataclass(frozen=True)
class Resource:
    product: Product
    environment_id: str
    """The Power Platform environment, or the Power BI workspace."""
    resource_id: str
    name: str
    holders: tuple[Holder, ...]


@dataclass(frozen=True)
class Environment:
    id: str
    name: str
    dataverse_url: str | None
    """The Dataverse instance URL (with its slash), when the environment has Dataverse."""


class InventoryReader:
    """Reads one customer tenant as the partner's identity there (`credential`)."""

    def __init__(
        self, settings: Settings, credential: AsyncTokenCredential, transport: AioHttpTransport
    ) -> None:
        self._settings, self._credential, self._transport = settings, credential, transport
        self._clients: dict[str, AsyncPipelineClient[HttpRequest, Any]] = {}

    async def environments(self) -> list[Environment]:
        base = f"{self._settings.power_platform.bap}/providers/Microsoft.BusinessAppPlatform/scopes/admin"
        found = []
        async for item in self._pages(Api.BAP, f"{base}/environments?{_BAP_VERSION}", "nextLink"):
            metadata = _get(item, "properties", "linkedEnvironmentMetadata") or {}
            instance = metadata.get("instanceUrl") if isinstance(metadata, dict) else None
            name = _get(item, "properties", "displayName")
            found.append(Environment(str(item["name"]), str(name or item["name"]), _text(instance)))
        return found

    async def canvas_apps(self, environment: Environment) -> list[Resource]:
        base = f"{self._settings.power_platform.powerapps}/providers/Microsoft.PowerApps/scopes/admin"
        url = f"{base}/environments/{quote(environment.id)}/apps?{_ADMIN_VERSION}"
        apps = []
        async for item in self._pages(Api.POWER_APPS, url, "nextLink"):
            owner = _text(_get(item, "properties", "owner", "id"))
            holders = (Holder(HolderRole.OWNER, owner),) if owner else ()
            name = _text(_get(item, "properties", "displayName")) or str(item["name"])
            apps.append(Resource(Product.CANVAS_APP, environment.id, str(item["name"]), name, holders))
        return apps

    async def co_owners(self, environment: Environment, app: Resource) -> tuple[Holder, ...]:
        """The app's co-owners (role CanEdit): asked only when a user account of ours could be one
        (a service principal cannot be made co-owner of a canvas app)."""
        base = f"{self._settings.power_platform.powerapps}/providers/Microsoft.PowerApps/scopes/admin"
        app_path = f"environments/{quote(environment.id)}/apps/{quote(app.resource_id)}"
        url = f"{base}/{app_path}/permissions?{_ADMIN_VERSION}"
        holders = []
        async for item in self._pages(Api.POWER_APPS, url, "nextLink"):
            principal = _text(_get(item, "properties", "principal", "id"))
            if _get(item, "properties", "roleName") == "CanEdit" and principal:
                holders.append(Holder(HolderRole.CO_OWNER, principal))
        return tuple(holders)

    async def flows(self, environment: Environment) -> list[Resource]:
        base = f"{self._settings.power_platform.flow}/providers/Microsoft.ProcessSimple/scopes/admin"
        url = f"{base}/environments/{quote(environment.id)}/v2/flows?{_ADMIN_VERSION}"
        flows = []
        async for item in self._pages(Api.FLOW, url, "nextLink"):
            creator = _text(_get(item, "properties", "creator", "objectId"))
            holders = (Holder(HolderRole.CREATOR, creator),) if creator else ()
            name = _text(_get(item, "properties", "displayName")) or str(item["name"])
            flows.append(Resource(Product.CLOUD_FLOW, environment.id, str(item["name"]), name, holders))
        return flows

    async def dataverse_user(self, environment: Environment, client_id: str) -> str | None:
        """The systemuser ID of our application user in the environment, if it has one."""
        rows = self._dataverse(
            environment, "systemusers", f"$select=systemuserid&$filter=applicationid eq {client_id}"
        )
        async for row in rows:
            return _text(row.get("systemuserid"))
        return None

    async def dataverse_resources(self, environment: Environment) -> list[Resource]:
        """Model-driven apps and Copilot Studio bots: attributed to their creator (a systemuser)."""
        tables = (
            (Product.MODEL_DRIVEN_APP, "appmodules", "appmoduleid", "name"),
            (Product.COPILOT_STUDIO_BOT, "bots", "botid", "name"),
        )
        found = []
        for product, table, key, name in tables:
            query = f"$select={key},{name},_createdby_value"
            async for row in self._dataverse(environment, table, query):
                creator = _text(row.get("_createdby_value"))
                holders = (Holder(HolderRole.CREATOR, creator),) if creator else ()
                found.append(
                    Resource(product, environment.id, str(row[key]), str(row.get(name) or row[key]), holders)
                )
        return found

    async def power_bi_datasets(self) -> list[Resource]:
        """Every dataset with its workspace, in pages of 5000 (the admin API allows 5 calls a minute)."""
        base = f"{self._settings.power_platform.powerbi}/v1.0/myorg/admin/groups"
        found = []
        skip = 0
        for _ in range(_MAX_PAGES):
            page = await self._json(Api.POWER_BI, f"{base}?$top=5000&$skip={skip}&$expand=datasets")
            groups = page.get("value") or []
            for group in groups:
                found += [_dataset(group, dataset) for dataset in group.get("datasets") or []]
            if len(groups) < 5000:
                break
            skip += len(groups)
        return found

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()

    # ---- HTTP -----------------------------------------------------------------------------------

    def _client(self, api: Api, audience: str) -> AsyncPipelineClient[HttpRequest, Any]:
        client = self._clients.get(audience)
        if client is None:
            pipeline_policies: list[Any] = [
                policies.HeadersPolicy({"Accept": "application/json"}),
                policies.UserAgentPolicy("pal-autopilot"),
                policies.AsyncBearerTokenCredentialPolicy(self._credential, _scope(audience)),
                policies.HttpLoggingPolicy(),
            ]
            client = AsyncPipelineClient(audience, policies=pipeline_policies, transport=self._transport)
            self._clients[audience] = client
        return client

    async def _json(
        self, api: Api, url: str, *, audience: str | None = None, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        client = self._client(api, audience or api.audience or "")
        response = await client.send_request(HttpRequest("GET", url, headers=dict(headers or {})))
        if response.status_code in (401, 403):
            raise ApiRefused(api, response.status_code)
        if response.status_code == 429:
            raise Throttled(api, _retry_after(response.headers.get("Retry-After")))
        if response.status_code >= 400:
            raise HttpResponseError(response=response)
        document = response.json()
        if not isinstance(document, dict):
            raise HttpResponseError(
                message=f"{api.value}: the answer is not a JSON object", response=response
            )
        return document

    async def _pages(
        self,
        api: Api,
        url: str,
        next_key: str,
        *,
        audience: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a paged list; the next page's URL must stay on the first page's origin."""
        origin = _origin(url)
        next_url: str | None = url
        for _ in range(_MAX_PAGES):
            if next_url is None:
                return
            page = await self._json(api, next_url, audience=audience, headers=headers)
            for item in page.get("value") or []:
                if isinstance(item, dict):
                    yield item
            next_url = _text(page.get(next_key))
            if next_url is not None and _origin(next_url) != origin:
                raise HttpResponseError(message=f"{api.value}: a next page on another host was refused")

    def _dataverse(self, environment: Environment, table: str, query: str) -> AsyncIterator[dict[str, Any]]:
        instance = environment.dataverse_url or ""
        if not self._settings.power_platform.dataverse_allowed(instance):
            raise HttpResponseError(
                message="dataverse: the environment's instance URL is not a Dataverse host"
            )
        instance = instance if instance.endswith("/") else f"{instance}/"
        url = f"{instance}{_DATAVERSE}/{table}?{query}"
        prefer = {"Prefer": "odata.maxpagesize=5000", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}
        return self._pages(Api.DATAVERSE, url, "@odata.nextLink", audience=instance, headers=prefer)


def _scope(audience: str) -> str:
    return f"{audience}.default" if audience.endswith("/") else f"{audience}/.default"


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _get(item: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(item, dict):
            return None
        item = item.get(key)
    return item


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _dataset(group: Mapping[str, Any], dataset: Mapping[str, Any]) -> Resource:
    owner = _text(dataset.get("configuredBy"))
    holders = (Holder(HolderRole.PUBLISHER, owner),) if owner else ()
    name = _text(dataset.get("name")) or str(dataset.get("id"))
    return Resource(Product.POWER_BI_DATASET, str(group.get("id")), str(dataset.get("id")), name, holders)
