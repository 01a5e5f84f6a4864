"""A customer tenant's Power Platform in the scenario: its `powerPlatform` section, read strictly.

What the customer granted once (apps registered with Power Platform, Power BI service-principal
access, Dataverse application users per environment), the people resources point at (users by Entra
object id; a deleted one leaves orphans), the environments with their canvas apps, cloud flows and,
where Dataverse exists, model-driven apps, bots, solutions and import jobs, the Power BI workspaces
and datasets, and the limits and page sizes the stand-ins apply. Owners are object ids: a listed
user or one of the tenant's service principals; a service principal owns Dataverse records only in an
environment where its application user exists, and never co-owns a canvas app (sharing takes users,
groups and the tenant only).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from .scenario_fields import Fields, unique

DEFAULT_TIME = "2024-05-01T09:00:00Z"
SKUS = ("Default", "Production", "Sandbox", "Developer", "Trial", "Teams")
CO_OWNER_ROLES = ("CanEdit", "CanView")
FLOW_STATES = ("Started", "Stopped", "Suspended")
_ENVIRONMENT_ID = re.compile(r"^(Default-)?[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Limits:
    """Service protection, the documented values by default (JSON: camelCase names)."""

    dataverse_requests: int = 6000  # per (principal, environment) in the window below
    dataverse_window_seconds: int = 300
    power_bi_datasets_per_minute: int = 5  # per tenant
    power_bi_datasets_per_hour: int = 50
    power_bi_groups_per_minute: int = 15
    power_bi_groups_per_hour: int = 50


@dataclass(frozen=True)
class PageSizes:
    """Items per page of the `nextLink` APIs (the services publish none: these are the sandbox's)."""

    environments: int = 50
    apps: int = 250
    permissions: int = 100
    flows: int = 50


@dataclass(frozen=True)
class User:
    object_id: str
    display_name: str
    user_principal_name: str
    deleted: bool = False  # gone from Entra ID: what it owned is orphaned


@dataclass(frozen=True)
class CoOwner:
    object_id: str
    role: str  # CanEdit (co-owner) or CanView
    principal_type: str  # User or Group
    display_name: str


@dataclass(frozen=True)
class CanvasApp:
    app_id: str
    display_name: str
    owner: str
    created_by: str
    co_owners: tuple[CoOwner, ...] = ()


@dataclass(frozen=True)
class CloudFlow:
    flow_id: str  # the Flow API's name; for a solution-aware flow also its Dataverse workflowid
    display_name: str
    creator: str
    solution_aware: bool = False
    owner: str = ""  # Dataverse ownerid of a solution-aware flow
    managed: bool = False
    state: str = "Started"
    premium_connectors: tuple[str, ...] = ()  # connector ids (shared_sql, ...) of premium tier
    process_license: bool = False  # a Process licence is assigned to the flow


@dataclass(frozen=True)
class ModelDrivenApp:
    app_id: str
    name: str
    unique_name: str
    created_by: str
    managed: bool = False


@dataclass(frozen=True)
class Bot:
    bot_id: str
    name: str
    owner: str
    created_by: str


@dataclass(frozen=True)
class Solution:
    solution_id: str
    unique_name: str
    friendly_name: str
    version: str
    managed: bool
    installed_on: str
    created_by: str


@dataclass(frozen=True)
class ImportJob:
    job_id: str
    solution_name: str
    started_on: str
    completed_on: str
    created_by: str


@dataclass(frozen=True)
class Environment:
    env_id: str
    display_name: str
    sku: str = "Production"
    region: str = "unitedstates"
    created_by: str | None = None  # None: SYSTEM
    dataverse: bool = True
    application_users: tuple[str, ...] = ()  # client IDs with a Dataverse application user at start
    canvas_apps: tuple[CanvasApp, ...] = ()
    flows: tuple[CloudFlow, ...] = ()
    model_driven_apps: tuple[ModelDrivenApp, ...] = ()
    bots: tuple[Bot, ...] = ()
    solutions: tuple[Solution, ...] = ()
    import_jobs: tuple[ImportJob, ...] = ()


@dataclass(frozen=True)
class Dataset:
    dataset_id: str
    name: str
    configured_by: str  # an object id, shown as the user's UPN (a service principal's: its client ID)


@dataclass(frozen=True)
class Workspace:
    workspace_id: str
    name: str
    datasets: tuple[Dataset, ...] = ()
    members: tuple[str, ...] = ()  # client IDs of service principals that are workspace members


@dataclass(frozen=True)
class PowerPlatform:
    registered_apps: tuple[str, ...] = ()  # client IDs registered with Power Platform (admin apps)
    power_bi_apps: tuple[str, ...] = ()  # client IDs the Power BI tenant settings let in
    users: tuple[User, ...] = ()
    environments: tuple[Environment, ...] = ()
    workspaces: tuple[Workspace, ...] = ()
    limits: Limits = Limits()
    page_sizes: PageSizes = PageSizes()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_Numbers = TypeVar("_Numbers", Limits, PageSizes)


def _numbers(kind: type[_Numbers], value: object, path: str) -> _Numbers:
    """A dataclass of positive integers from an object with the camelCase names; defaults kept."""
    names = {_camel(field.name): field for field in dataclasses.fields(kind)}
    fields = Fields(value if value is not None else {}, path, tuple(names))
    return kind(**{f.name: fields.integer(key, f.default) for key, f in names.items()})  # type: ignore[arg-type]


class _People:
    """Who a reference may name: the section's users and the tenant's service principals."""

    def __init__(self, users: Mapping[str, User], principals: Mapping[str, str]) -> None:
        self.users, self.principals = users, principals  # principals: object id -> client id

    def anyone(self, fields: Fields, key: str, default: str | None = None) -> str:
        if default is not None and fields.value.get(key) is None:
            return default
        value = fields.guid(key)
        if value not in self.users and value not in self.principals:
            raise ValueError(f"{fields.at(key)}: no user (users) or service principal with this objectId")
        return value

    def in_dataverse(self, fields: Fields, key: str, app_users: set[str], default: str | None = None) -> str:
        """A Dataverse record's owner or creator: a service principal needs its application user."""
        value = self.anyone(fields, key, default)
        if value in self.principals and self.principals[value] not in app_users:
            raise ValueError(
                f"{fields.at(key)}: this service principal has no application user in this environment "
                "(add its clientId to applicationUsers)"
            )
        return value


def parse_power_platform(value: object, path: str, principals: Mapping[str, str]) -> PowerPlatform | None:
    """The tenant's `powerPlatform` section (None when absent); `principals`: object id -> client id."""
    if value is None:
        return None
    fields = Fields(value, path, ("grants", "users", "environments", "powerBi", "limits", "pageSizes"))
    users = tuple(_user(item_path, item) for item_path, item in fields.items("users"))
    unique([(f"{fields.at('users')}[{i}].objectId", u.object_id) for i, u in enumerate(users)], "objectId")
    for index, user in enumerate(users):
        if user.object_id in principals:
            raise ValueError(f"{fields.at('users')}[{index}].objectId: a service principal, not a user")
    people = _People({user.object_id: user for user in users}, principals)
    grants = Fields(fields.value.get("grants", {}), fields.at("grants"), ("registeredApps", "powerBiApps"))
    registered, power_bi = (_client_ids(grants, key, people) for key in ("registeredApps", "powerBiApps"))
    environments = tuple(_environment(p, item, people) for p, item in fields.items("environments"))
    unique([(f"{fields.at('environments')}[{i}].id", e.env_id) for i, e in enumerate(environments)], "id")
    return PowerPlatform(
        registered_apps=registered,
        power_bi_apps=power_bi,
        users=users,
        environments=environments,
        workspaces=_workspaces(fields.value.get("powerBi", {}), fields.at("powerBi"), people),
        limits=_numbers(Limits, fields.value.get("limits"), fields.at("limits")),
        page_sizes=_numbers(PageSizes, fields.value.get("pageSizes"), fields.at("pageSizes")),
    )


def _client_ids(fields: Fields, key: str, people: _People) -> tuple[str, ...]:
    """A list of client IDs, each of one of the tenant's service principals."""
    known = set(people.principals.values())
    found = fields.guids(key)
    for path, client_id in found:
        if client_id not in known:
            raise ValueError(f"{path}: no service principal of this clientId in this tenant")
    unique(found, "clientId")
    return tuple(client_id for _, client_id in found)


def _user(path: str, item: object) -> User:
    fields = Fields(item, path, ("objectId", "displayName", "userPrincipalName", "deleted"))
    return User(
        fields.guid("objectId"),
        fields.text("displayName"),
        fields.text("userPrincipalName"),
        fields.boolean("deleted", False),
    )


def _environment(path: str, item: object, people: _People) -> Environment:
    fields = Fields(
        item,
        path,
        ("id", "displayName", "sku", "region", "createdBy", "dataverse", "applicationUsers", "canvasApps")
        + ("flows", "modelDrivenApps", "bots", "solutions", "importJobs"),
    )
    env_id = fields.text("id")
    if not _ENVIRONMENT_ID.match(env_id):
        raise ValueError(f"{fields.at('id')}: expected a GUID or Default-<tenant GUID>")
    dataverse = fields.boolean("dataverse", True)
    app_users = _client_ids(fields, "applicationUsers", people)
    for key in ("applicationUsers", "modelDrivenApps", "bots", "solutions", "importJobs"):
        if not dataverse and fields.value.get(key):
            raise ValueError(f"{fields.at(key)}: this environment has no Dataverse (dataverse: false)")
    users = set(app_users)
    flows = tuple(_flow(p, raw, people, users, dataverse) for p, raw in fields.items("flows"))
    environment = Environment(
        env_id=env_id,
        display_name=fields.text("displayName"),
        sku=fields.choice("sku", SKUS, "Production"),
        region=fields.text("region", "unitedstates"),
        created_by=people.anyone(fields, "createdBy") if fields.value.get("createdBy") is not None else None,
        dataverse=dataverse,
        application_users=app_users,
        canvas_apps=tuple(_canvas_app(p, raw, people) for p, raw in fields.items("canvasApps")),
        flows=flows,
        model_driven_apps=tuple(
            _model_app(p, raw, people, users) for p, raw in fields.items("modelDrivenApps")
        ),
        bots=tuple(_bot(p, raw, people, users) for p, raw in fields.items("bots")),
        solutions=tuple(_solution(p, raw, people, users) for p, raw in fields.items("solutions")),
        import_jobs=tuple(_import_job(p, raw, people, users) for p, raw in fields.items("importJobs")),
    )
    _unique_ids(fields, environment)
    return environment


def _unique_ids(fields: Fields, environment: Environment) -> None:
    for key, ids in (
        ("canvasApps", [app.app_id for app in environment.canvas_apps]),
        ("flows", [flow.flow_id for flow in environment.flows]),
        ("modelDrivenApps", [app.app_id for app in environment.model_driven_apps]),
        ("bots", [bot.bot_id for bot in environment.bots]),
        ("solutions", [solution.solution_id for solution in environment.solutions]),
        ("importJobs", [job.job_id for job in environment.import_jobs]),
    ):
        unique([(f"{fields.at(key)}[{i}].id", value) for i, value in enumerate(ids)], "id")


def _canvas_app(path: str, item: object, people: _People) -> CanvasApp:
    fields = Fields(item, path, ("id", "displayName", "owner", "createdBy", "coOwners"))
    owner = people.anyone(fields, "owner")
    co_owners = tuple(_co_owner(p, raw, people) for p, raw in fields.items("coOwners"))
    unique(
        [(f"{fields.at('coOwners')}[{i}].objectId", c.object_id) for i, c in enumerate(co_owners)]
        + [(fields.at("owner"), owner)],
        "objectId (the owner, or another co-owner)",
    )
    return CanvasApp(
        app_id=fields.guid("id"),
        display_name=fields.text("displayName"),
        owner=owner,
        created_by=people.anyone(fields, "createdBy", owner),
        co_owners=co_owners,
    )


def _co_owner(path: str, item: object, people: _People) -> CoOwner:
    fields = Fields(item, path, ("objectId", "role", "type", "displayName"))
    principal_type = fields.choice("type", ("User", "Group"), "User")
    object_id = fields.guid("objectId")
    if object_id in people.principals:
        raise ValueError(
            f"{fields.at('objectId')}: a service principal cannot be a co-owner "
            "(sharing takes users, groups and the tenant only)"
        )
    if principal_type == "User":
        user = people.users.get(object_id)
        if user is None:
            raise ValueError(f"{fields.at('objectId')}: no user (users) with this objectId")
        display_name = user.display_name
    else:
        display_name = fields.text("displayName", f"Group {object_id[:8]}")
    return CoOwner(object_id, fields.choice("role", CO_OWNER_ROLES, "CanEdit"), principal_type, display_name)


def _flow(path: str, item: object, people: _People, app_users: set[str], dataverse: bool) -> CloudFlow:
    fields = Fields(
        item,
        path,
        ("id", "displayName", "creator", "solutionAware", "owner", "managed", "state")
        + ("premiumConnectors", "processLicense"),
    )
    solution_aware = fields.boolean("solutionAware", False)
    if solution_aware and not dataverse:
        raise ValueError(
            f"{fields.at('solutionAware')}: this environment has no Dataverse (dataverse: false)"
        )
    for key in ("owner", "managed"):
        if not solution_aware and key in fields.value:
            raise ValueError(f"{fields.at(key)}: only a solution-aware flow (solutionAware: true) has one")
    creator = (
        people.in_dataverse(fields, "creator", app_users)
        if solution_aware
        else people.anyone(fields, "creator")
    )
    return CloudFlow(
        flow_id=fields.guid("id"),
        display_name=fields.text("displayName"),
        creator=creator,
        solution_aware=solution_aware,
        owner=people.in_dataverse(fields, "owner", app_users, creator) if solution_aware else "",
        managed=fields.boolean("managed", False),
        state=fields.choice("state", FLOW_STATES, "Started"),
        premium_connectors=tuple(str(c) for c in fields.value.get("premiumConnectors") or ()),
        process_license=fields.boolean("processLicense", False),
    )


def _model_app(path: str, item: object, people: _People, app_users: set[str]) -> ModelDrivenApp:
    fields = Fields(item, path, ("id", "name", "uniqueName", "createdBy", "managed"))
    name = fields.text("name")
    return ModelDrivenApp(
        app_id=fields.guid("id"),
        name=name,
        unique_name=fields.text("uniqueName", re.sub(r"\W", "", name.lower()) or "app"),
        created_by=people.in_dataverse(fields, "createdBy", app_users),
        managed=fields.boolean("managed", False),
    )


def _bot(path: str, item: object, people: _People, app_users: set[str]) -> Bot:
    fields = Fields(item, path, ("id", "name", "owner", "createdBy"))
    owner = people.in_dataverse(fields, "owner", app_users)
    return Bot(
        bot_id=fields.guid("id"),
        name=fields.text("name"),
        owner=owner,
        created_by=people.in_dataverse(fields, "createdBy", app_users, owner),
    )


def _solution(path: str, item: object, people: _People, app_users: set[str]) -> Solution:
    keys = ("id", "uniqueName", "friendlyName", "version", "managed", "installedOn", "createdBy")
    fields = Fields(item, path, keys)
    unique_name = fields.text("uniqueName")
    return Solution(
        solution_id=fields.guid("id"),
        unique_name=unique_name,
        friendly_name=fields.text("friendlyName", unique_name),
        version=fields.text("version", "1.0.0.0"),
        managed=fields.boolean("managed", True),
        installed_on=fields.timestamp("installedOn", DEFAULT_TIME),
        created_by=people.in_dataverse(fields, "createdBy", app_users),
    )


def _import_job(path: str, item: object, people: _People, app_users: set[str]) -> ImportJob:
    fields = Fields(item, path, ("id", "solutionName", "startedOn", "completedOn", "createdBy"))
    return ImportJob(
        job_id=fields.guid("id"),
        solution_name=fields.text("solutionName"),
        started_on=fields.timestamp("startedOn", DEFAULT_TIME),
        completed_on=fields.timestamp("completedOn", DEFAULT_TIME),
        created_by=people.in_dataverse(fields, "createdBy", app_users),
    )


def _workspaces(value: object, path: str, people: _People) -> tuple[Workspace, ...]:
    fields = Fields(value, path, ("workspaces",))
    workspaces = []
    for workspace_path, raw in fields.items("workspaces"):
        workspace = Fields(raw, workspace_path, ("id", "name", "datasets", "members"))
        datasets = []
        for dataset_path, raw_dataset in workspace.items("datasets"):
            dataset = Fields(raw_dataset, dataset_path, ("id", "name", "configuredBy"))
            datasets.append(
                Dataset(dataset.guid("id"), dataset.text("name"), people.anyone(dataset, "configuredBy"))
            )
        members = _client_ids(workspace, "members", people)
        workspaces.append(Workspace(workspace.guid("id"), workspace.text("name"), tuple(datasets), members))
    unique([(f"{fields.at('workspaces')}[{i}].id", w.workspace_id) for i, w in enumerate(workspaces)], "id")
    unique(
        [
            (f"{fields.at('workspaces')}[{i}].datasets[{j}].id", d.dataset_id)
            for i, w in enumerate(workspaces)
            for j, d in enumerate(w.datasets)
        ],
        "dataset id",
    )
    return tuple(workspaces)
