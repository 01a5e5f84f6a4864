"""Who Microsoft credits for a Power Platform resource, and how that identity can be changed: as data.

Two sources, kept apart (`Source`):
- the seed (Microsoft's page on linking a partner ID for Power Platform and Customer Insights): its
  "Attributed User Logic" table, its per-product bullets and its three owner tables (change the
  owner directly / through a solution import / to a service principal in a solution, each by GUI,
  PowerShell, PP CLI, DevOps + Build Tools). The cells are copied, not interpreted.
- docs/power-platform.md: model-driven apps and Copilot Studio bots in "Who counts", and what a
  service principal can do through Microsoft's APIs ("Changing owners"), each claim `verified`
  (read in a source) or `inferred` (not verified: built behind a switch).
Where the two disagree both are kept: the seed's cell in the owner tables, the doc's claim in
`SERVICE_PRINCIPAL_ROUTES` with the seed's column it corresponds to (`seed_tool`).

The enum values are stable: they are API and CLI values (`rules_document`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TypeAlias

__all__ = [
    "COMMANDS",
    "OWNER_CHANGES",
    "OWNER_CHANGE_QUESTIONS",
    "RULES",
    "RULES_DOCUMENT_VERSION",
    "SERVICE_PRINCIPAL_PREREQUISITES",
    "SERVICE_PRINCIPAL_ROUTES",
    "TOOL_COLUMNS",
    "TOOL_LABELS",
    "AttributedIdentity",
    "AttributionRule",
    "Command",
    "CommandKind",
    "Evidence",
    "JsonValue",
    "OwnerChange",
    "Product",
    "Route",
    "ServicePrincipalRoute",
    "SeveralPartners",
    "Source",
    "Support",
    "Tool",
    "commands_for",
    "owner_change",
    "routes_for",
    "rule_document",
    "rule_for",
    "rules_document",
    "tools_allowing",
    "who_counts",
]

JsonValue: TypeAlias = "str | int | float | bool | None | list[JsonValue] | dict[str, JsonValue]"

RULES_DOCUMENT_VERSION = 1
"""Version of `rules_document`'s shape: bumped when a key changes or goes."""


class Product(StrEnum):
    """A kind of Power Platform resource that can credit a partner."""

    CANVAS_APP = "canvas-app"
    MODEL_DRIVEN_APP = "model-driven-app"
    CLOUD_FLOW = "cloud-flow"
    POWER_BI_DATASET = "power-bi-dataset"
    COPILOT_STUDIO_BOT = "copilot-studio-bot"
    CUSTOMER_INSIGHTS_INSTANCE = "customer-insights-instance"


class AttributedIdentity(StrEnum):
    """Which identity of a resource Microsoft credits: the PAL-linked identity must be this one."""

    OWNER_OR_CO_OWNER = "owner-or-co-owner"
    CREATOR = "creator"
    PUBLISHER = "publisher"
    ANY_ACTIVE_USER = "any-active-user"


class SeveralPartners(StrEnum):
    """What happens when the identities of several partners qualify for one resource."""

    LATEST_BY_ACTIVITY = "latest-by-activity"
    """The user's activity is reviewed and the 'latest' partner is credited."""
    SINGLE_CREATOR = "single-creator"
    """There is only one creator, so there is nothing to choose."""
    NONE = "none"
    """The sources give no rule."""


class Source(StrEnum):
    SEED = "seed"
    POWER_PLATFORM_DOC = "power-platform.md"


class Support(StrEnum):
    """An answer the sources give, or say nothing about (never a guess)."""

    YES = "yes"
    NO = "no"
    NOT_COVERED = "not-covered"


class OwnerChange(StrEnum):
    """The seed's three owner tables."""

    DIRECTLY = "directly"
    THROUGH_SOLUTION_IMPORT = "through-solution-import"
    TO_SERVICE_PRINCIPAL_IN_SOLUTION = "to-service-principal-in-solution"


class Tool(StrEnum):
    """The seed's owner tables' columns."""

    GUI = "gui"
    POWERSHELL = "powershell"
    PP_CLI = "pp-cli"
    DEVOPS_BUILD_TOOLS = "devops-build-tools"


class Evidence(StrEnum):
    """How far power-platform.md vouches for a claim about a service principal."""

    VERIFIED = "verified"
    """Read in a source (Microsoft Learn, or an open-source client doing it as a service principal)."""
    INFERRED = "inferred"
    """Not verified: build it behind a switch and say so."""


@dataclass(frozen=True)
class AttributionRule:
    """Who Microsoft credits for one product's resources, and how they are delivered."""

    product: Product
    display_name: str
    metric: str | None
    """The usage credited ("monthly active users"), or None where the sources name none."""
    resource: str
    """The resource credited, in the seed's word for it (lower case)."""
    attributed_identity: AttributedIdentity
    several_partners: SeveralPartners
    solution_delivery: Support
    """Whether the resource is delivered inside a (managed) solution."""
    maker_tool: str
    """Where a user account makes (creates, publishes, uses) the resource, which makes it the
    attributed identity."""
    owner_table_row: str | None
    """The seed's row for the product in its owner tables; None: the tables do not cover it."""
    notes: tuple[str, ...]
    """The seed's bullets for the product."""
    source: Source
    """Where the product's row in "who counts" comes from."""


_IN_SOLUTION_IMPORT = (
    "When inside of a solution, and imported into another environment, the importing entity "
    "becomes the new owner."
)
_PAL_CREATOR = "Make sure the app creator has a PAL association."

_RULES = (
    AttributionRule(
        product=Product.CANVAS_APP,
        display_name="Power Apps canvas app",
        metric="monthly active users",
        resource="application",
        attributed_identity=AttributedIdentity.OWNER_OR_CO_OWNER,
        several_partners=SeveralPartners.LATEST_BY_ACTIVITY,
        solution_delivery=Support.YES,
        maker_tool="Power Apps Studio (make.powerapps.com)",
        owner_table_row="Power App Canvas",
        notes=(
            "Set the PAL associated User or Service Account as the owner or co-owner of the application.",
            "You can only change the owner via the PowerShell Set-AdminPowerAppOwner.",
            _IN_SOLUTION_IMPORT,
        ),
        source=Source.SEED,
    ),
    AttributionRule(
        product=Product.MODEL_DRIVEN_APP,
        display_name="Power Apps model-driven app",
        metric="monthly active users",
        resource="application",
        attributed_identity=AttributedIdentity.CREATOR,
        several_partners=SeveralPartners.LATEST_BY_ACTIVITY,
        solution_delivery=Support.YES,
        maker_tool="the Power Apps maker portal (make.powerapps.com)",
        owner_table_row="Power App Model Driven",
        notes=(
            _PAL_CREATOR,
            "There is NO co-owner option, and you cannot change the owner via the GUI or PowerShell "
            "directly.",
            _IN_SOLUTION_IMPORT,
        ),
        source=Source.POWER_PLATFORM_DOC,
    ),
    AttributionRule(
        product=Product.CLOUD_FLOW,
        display_name="Power Automate cloud flow",
        metric="monthly active users",
        resource="flow",
        attributed_identity=AttributedIdentity.CREATOR,
        several_partners=SeveralPartners.SINGLE_CREATOR,
        solution_delivery=Support.YES,
        maker_tool="the Power Automate portal (make.powerautomate.com)",
        owner_table_row="Power Automate",
        notes=(
            _PAL_CREATOR,
            "There is no co-owner option.",
            "You can easily change the owner via the web GUI or with the PowerShell Set-AdminFlowOwnerRole.",
            _IN_SOLUTION_IMPORT,
        ),
        source=Source.SEED,
    ),
    AttributionRule(
        product=Product.POWER_BI_DATASET,
        display_name="Power BI dataset (semantic model)",
        metric="monthly active users",
        resource="dataset",
        attributed_identity=AttributedIdentity.PUBLISHER,
        several_partners=SeveralPartners.LATEST_BY_ACTIVITY,
        solution_delivery=Support.NO,
        maker_tool="Power BI Desktop (Publish)",
        owner_table_row="Power BI (Publishing)",
        notes=(
            "The act of publishing to the service sets the owner.",
            "Make sure the user publishing the report has a PAL association.",
            "Use PowerShell to publish as any user or Service Account.",
        ),
        source=Source.SEED,
    ),
    AttributionRule(
        product=Product.COPILOT_STUDIO_BOT,
        display_name="Copilot Studio bot (Power Virtual Agents)",
        metric=None,
        resource="bot",
        attributed_identity=AttributedIdentity.CREATOR,
        several_partners=SeveralPartners.NONE,
        solution_delivery=Support.YES,
        maker_tool="Copilot Studio (copilotstudio.microsoft.com)",
        owner_table_row="Power Virtual Agent",
        notes=(
            "Make sure the Bot creator has a PAL association.",
            "You can not change the owner in the GUI or via a PowerShell command.",
            _IN_SOLUTION_IMPORT,
        ),
        source=Source.POWER_PLATFORM_DOC,
    ),
    AttributionRule(
        product=Product.CUSTOMER_INSIGHTS_INSTANCE,
        display_name="Dynamics 365 Customer Insights instance",
        metric="unified profiles",
        resource="instance",
        attributed_identity=AttributedIdentity.ANY_ACTIVE_USER,
        several_partners=SeveralPartners.LATEST_BY_ACTIVITY,
        solution_delivery=Support.NOT_COVERED,
        maker_tool="Customer Insights (the instance, signed in)",
        owner_table_row=None,
        notes=(),
        source=Source.SEED,
    ),
)

RULES: Mapping[Product, AttributionRule] = MappingProxyType({rule.product: rule for rule in _RULES})


def rule_for(product: Product) -> AttributionRule:
    return RULES[product]


# The seed's three owner tables, row by row, in its column order.

TOOL_COLUMNS = (Tool.GUI, Tool.POWERSHELL, Tool.PP_CLI, Tool.DEVOPS_BUILD_TOOLS)
"""The seed's columns, in its order."""

TOOL_LABELS: Mapping[Tool, str] = MappingProxyType(
    {
        Tool.GUI: "GUI",
        Tool.POWERSHELL: "PowerShell",
        Tool.PP_CLI: "PP CLI",
        Tool.DEVOPS_BUILD_TOOLS: "DevOps + Build Tools",
    }
)

OWNER_CHANGE_QUESTIONS: Mapping[OwnerChange, str] = MappingProxyType(
    {
        OwnerChange.DIRECTLY: "Can you change the owner of an object directly outside of a solution?",
        OwnerChange.THROUGH_SOLUTION_IMPORT: (
            "Can you change the owner of an object contained inside of a solution by importing the "
            "solution (the identity importing it becomes the owner of every object in it)?"
        ),
        OwnerChange.TO_SERVICE_PRINCIPAL_IN_SOLUTION: (
            "Can you change a previously assigned user account to a service principal with a PAL "
            "association, for an object inside of a solution?"
        ),
    }
)

_Y, _N = True, False
_OWNER_TABLES: Mapping[OwnerChange, Mapping[Product, tuple[bool, bool, bool, bool]]] = {
    OwnerChange.DIRECTLY: {
        Product.CANVAS_APP: (_Y, _Y, _N, _N),
        Product.MODEL_DRIVEN_APP: (_N, _N, _N, _N),
        Product.CLOUD_FLOW: (_Y, _Y, _N, _N),
        Product.POWER_BI_DATASET: (_N, _Y, _N, _N),
        Product.COPILOT_STUDIO_BOT: (_N, _N, _N, _N),
    },
    OwnerChange.THROUGH_SOLUTION_IMPORT: {
        Product.CANVAS_APP: (_Y, _Y, _Y, _Y),
        Product.MODEL_DRIVEN_APP: (_Y, _N, _Y, _Y),
        Product.CLOUD_FLOW: (_Y, _Y, _Y, _Y),
        Product.POWER_BI_DATASET: (_N, _Y, _N, _N),
        Product.COPILOT_STUDIO_BOT: (_Y, _N, _Y, _Y),
    },
    OwnerChange.TO_SERVICE_PRINCIPAL_IN_SOLUTION: {
        Product.CANVAS_APP: (_N, _N, _Y, _Y),
        Product.MODEL_DRIVEN_APP: (_N, _N, _Y, _Y),
        Product.CLOUD_FLOW: (_Y, _Y, _Y, _Y),
        Product.POWER_BI_DATASET: (_N, _Y, _N, _N),
        Product.COPILOT_STUDIO_BOT: (_N, _N, _Y, _Y),
    },
}

OWNER_CHANGES: Mapping[tuple[Product, OwnerChange, Tool], bool] = MappingProxyType(
    {
        (product, change, tool): cell
        for change, rows in _OWNER_TABLES.items()
        for product, cells in rows.items()
        for tool, cell in zip(TOOL_COLUMNS, cells, strict=True)
    }
)
"""The seed's YES/NO cells, exactly; a product without rows (Customer Insights) has no key."""


def owner_change(product: Product, change: OwnerChange, tool: Tool) -> Support:
    """The seed's cell: YES, NO, or not covered (the seed has no row for the product)."""
    cell = OWNER_CHANGES.get((product, change, tool))
    if cell is None:
        return Support.NOT_COVERED
    return Support.YES if cell else Support.NO


def tools_allowing(product: Product, change: OwnerChange) -> tuple[Tool, ...]:
    """The seed's columns that say YES for the product in one table, in the seed's order."""
    return tuple(tool for tool in TOOL_COLUMNS if OWNER_CHANGES.get((product, change, tool)))


# The command or place behind each YES cell (what a step tells the partner to use).


class CommandKind(StrEnum):
    """What a command behind a YES cell does: the seed's tables mix these."""

    IMPORT_SOLUTION = "import-solution"
    CHANGE_OWNER = "change-owner"
    PUBLISH = "publish"


@dataclass(frozen=True)
class Command:
    """The command or place behind one of the seed's YES cells."""

    tool: Tool
    text: str
    kind: CommandKind


_IMPORT_COMMANDS: Mapping[Tool, str] = {
    Tool.GUI: "the Power Apps maker portal (Solutions > Import solution)",
    Tool.POWERSHELL: "PowerShell Import-CrmSolution (Microsoft.Xrm.Data.PowerShell)",
    Tool.PP_CLI: "pac solution import (PP CLI)",
    Tool.DEVOPS_BUILD_TOOLS: "the Power Platform Build Tools Import Solution task (DevOps)",
}
_PUBLISH_WITH_POWERSHELL = (
    "PowerShell Connect-PowerBIServiceAccount, then New-PowerBIReport (MicrosoftPowerBIMgmt)",
    CommandKind.PUBLISH,
)
_TO_SP = OwnerChange.TO_SERVICE_PRINCIPAL_IN_SOLUTION
_COMMAND_OVERRIDES: Mapping[tuple[Product, OwnerChange, Tool], tuple[str, CommandKind]] = {
    (Product.CANVAS_APP, OwnerChange.DIRECTLY, Tool.GUI): (
        "sharing the app as co-owner in Power Apps (make.powerapps.com, Share)",
        CommandKind.CHANGE_OWNER,
    ),
    (Product.CANVAS_APP, OwnerChange.DIRECTLY, Tool.POWERSHELL): (
        "PowerShell Set-AdminPowerAppOwner",
        CommandKind.CHANGE_OWNER,
    ),
    (Product.CLOUD_FLOW, OwnerChange.DIRECTLY, Tool.GUI): (
        "the Power Automate portal (the flow's owners)",
        CommandKind.CHANGE_OWNER,
    ),
    (Product.CLOUD_FLOW, OwnerChange.DIRECTLY, Tool.POWERSHELL): (
        "PowerShell Set-AdminFlowOwnerRole",
        CommandKind.CHANGE_OWNER,
    ),
    (Product.CLOUD_FLOW, _TO_SP, Tool.GUI): (
        "the Power Automate portal (the solution flow's owner)",
        CommandKind.CHANGE_OWNER,
    ),
    (Product.CLOUD_FLOW, _TO_SP, Tool.POWERSHELL): (
        "PowerShell Set-AdminFlowOwnerRole",
        CommandKind.CHANGE_OWNER,
    ),
    **{
        (Product.POWER_BI_DATASET, change, Tool.POWERSHELL): _PUBLISH_WITH_POWERSHELL
        for change in OwnerChange
    },
}


def _command(key: tuple[Product, OwnerChange, Tool]) -> Command:
    tool = key[2]
    text, kind = _COMMAND_OVERRIDES.get(key, (_IMPORT_COMMANDS[tool], CommandKind.IMPORT_SOLUTION))
    return Command(tool, text, kind)


COMMANDS: Mapping[tuple[Product, OwnerChange, Tool], Command] = MappingProxyType(
    {key: _command(key) for key, cell in OWNER_CHANGES.items() if cell}
)
"""The command or place behind each of the seed's YES cells (and only those)."""


def commands_for(
    product: Product, change: OwnerChange, kind: CommandKind | None = None
) -> tuple[Command, ...]:
    """The commands behind the seed's YES cells for the product in one table (of one kind), in the
    seed's column order."""
    found = (COMMANDS[(product, change, tool)] for tool in tools_allowing(product, change))
    return tuple(command for command in found if kind is None or command.kind is kind)


# What a service principal can do through Microsoft's APIs (power-platform.md, "Changing owners").


class Route(StrEnum):
    """A way for a service principal to become (or not) a resource's attributed identity."""

    IMPORT_SOLUTION = "import-solution"
    REIMPORT_SOLUTION = "reimport-solution"
    PATCH_FLOW_OWNER = "patch-flow-owner"
    FLOW_CO_OWNER = "flow-co-owner"
    MODIFY_APP_OWNER = "modify-app-owner"
    SHARE_APP_CO_OWNER = "share-app-co-owner"
    PATCH_RECORD_OWNER = "patch-record-owner"
    PUBLISH_PBIX = "publish-pbix"
    TAKE_OVER_DATASET = "take-over-dataset"
    ADD_INSTANCE_USER = "add-instance-user"


@dataclass(frozen=True)
class ServicePrincipalRoute:
    """One claim of power-platform.md: the service principal can (or cannot) reach `goal` by `call`."""

    route: Route
    product: Product
    goal: str
    call: str
    """The API call, and the tool that wraps it where there is one."""
    possible: bool
    evidence: Evidence
    delivers: bool
    """True: a way to deliver the resource; False: a repair of one another identity delivered."""
    in_solution_only: bool
    seed_tool: Tool | None
    """The seed's column this route is done with, to read its table of owner changes to a service
    principal beside the claim (they can disagree)."""
    notes: tuple[str, ...] = ()


_SOLUTION_PRODUCTS = (
    Product.CANVAS_APP,
    Product.MODEL_DRIVEN_APP,
    Product.CLOUD_FLOW,
    Product.COPILOT_STUDIO_BOT,
)
_IMPORT_CALL = (
    "Dataverse POST /api/data/v9.2/StageSolution, then POST /api/data/v9.2/ImportSolutionAsync "
    "(ComponentParameters for connection references and environment variables), then poll "
    "asyncoperations({id}) and read the import job"
)
_OWNER_BIND = '{"ownerid@odata.bind": "/systemusers({id})"}'


def _solution_routes(product: Product) -> tuple[ServicePrincipalRoute, ...]:
    return (
        ServicePrincipalRoute(
            route=Route.IMPORT_SOLUTION,
            product=product,
            goal="import the managed solution as the service principal, the owner of every component in it",
            call=_IMPORT_CALL,
            possible=True,
            evidence=Evidence.VERIFIED,
            delivers=True,
            in_solution_only=True,
            seed_tool=None,
            notes=("Microsoft's Terraform provider does it as a service principal",),
        ),
        ServicePrincipalRoute(
            route=Route.REIMPORT_SOLUTION,
            product=product,
            goal="import the solution again as the service principal, to own components already there",
            call=_IMPORT_CALL,
            possible=True,
            evidence=Evidence.INFERRED,
            delivers=False,
            in_solution_only=True,
            seed_tool=Tool.PP_CLI,
        ),
    )


_OTHER_ROUTES = (
    ServicePrincipalRoute(
        route=Route.PATCH_FLOW_OWNER,
        product=Product.CLOUD_FLOW,
        goal="make the service principal the owner of a flow inside a solution",
        call=f"Dataverse PATCH /api/data/v9.2/workflows({{id}}) with {_OWNER_BIND}",
        possible=True,
        evidence=Evidence.VERIFIED,
        delivers=False,
        in_solution_only=True,
        seed_tool=None,
        notes=(
            "first check its connectors: a flow with premium connectors owned by a service principal "
            "is suspended unless it has a Process licence or a licensed co-owner set as licensee; never "
            "switch a customer's flow off silently",
        ),
    ),
    ServicePrincipalRoute(
        route=Route.FLOW_CO_OWNER,
        product=Product.CLOUD_FLOW,
        goal="make the service principal a co-owner of a flow",
        call="PowerShell Set-AdminFlowOwnerRole, or sharing in the Power Automate portal",
        possible=False,
        evidence=Evidence.VERIFIED,
        delivers=False,
        in_solution_only=False,
        seed_tool=Tool.POWERSHELL,
    ),
    ServicePrincipalRoute(
        route=Route.MODIFY_APP_OWNER,
        product=Product.CANVAS_APP,
        goal="make the service principal the owner of a canvas app",
        call=(
            "POST https://api.powerapps.com/providers/Microsoft.PowerApps/scopes/admin/environments/{env}"
            '/apps/{app}/modifyAppOwner?api-version=2016-11-01 with {"newAppOwner": "<objectId>", '
            '"roleForOldAppOwner": "CanEdit"} (PowerShell Set-AdminPowerAppOwner wraps it)'
        ),
        possible=True,
        evidence=Evidence.INFERRED,
        delivers=False,
        in_solution_only=False,
        seed_tool=Tool.POWERSHELL,
        notes=(
            "an admin app may make the call (verified); that it accepts a service principal as the new "
            "owner is not verified",
        ),
    ),
    ServicePrincipalRoute(
        route=Route.SHARE_APP_CO_OWNER,
        product=Product.CANVAS_APP,
        goal="make the service principal a co-owner of a canvas app by sharing",
        call="POST .../apps/{app}/modifyPermissions (sharing in Power Apps)",
        possible=False,
        evidence=Evidence.VERIFIED,
        delivers=False,
        in_solution_only=False,
        seed_tool=Tool.GUI,
        notes=("sharing takes only User, Group or Tenant principals",),
    ),
    ServicePrincipalRoute(
        route=Route.PATCH_RECORD_OWNER,
        product=Product.COPILOT_STUDIO_BOT,
        goal="make the service principal the bot's creator by changing its Dataverse record owner",
        call=f"Dataverse PATCH /api/data/v9.2/bots({{id}}) with {_OWNER_BIND}",
        possible=False,
        evidence=Evidence.INFERRED,
        delivers=False,
        in_solution_only=False,
        seed_tool=None,
        notes=("the call works for a service principal (verified), but it changes ownerid, not createdby",),
    ),
    ServicePrincipalRoute(
        route=Route.PUBLISH_PBIX,
        product=Product.POWER_BI_DATASET,
        goal="publish the .pbix as the service principal, which makes it the publisher",
        call=(
            "POST https://api.powerbi.com/v1.0/myorg/groups/{groupId}/imports?datasetDisplayName=..."
            "&nameConflict=CreateOrOverwrite (multipart .pbix), then poll GET .../imports/{importId} "
            "(the Power BI imports API)"
        ),
        possible=True,
        evidence=Evidence.VERIFIED,
        delivers=True,
        in_solution_only=False,
        seed_tool=Tool.POWERSHELL,
        notes=("the documented way for service principals",),
    ),
    ServicePrincipalRoute(
        route=Route.TAKE_OVER_DATASET,
        product=Product.POWER_BI_DATASET,
        goal="make the service principal the owner of a dataset another identity published",
        call="POST https://api.powerbi.com/v1.0/myorg/groups/{groupId}/datasets/{datasetId}/Default.TakeOver",
        possible=True,
        evidence=Evidence.VERIFIED,
        delivers=False,
        in_solution_only=False,
        seed_tool=None,
        notes=(
            "the service principal must be a member of the workspace",
            "data-source credentials usually need rebinding after (inferred)",
        ),
    ),
    ServicePrincipalRoute(
        route=Route.ADD_INSTANCE_USER,
        product=Product.CUSTOMER_INSIGHTS_INSTANCE,
        goal="make the service principal an active user of the instance",
        call=(
            "add the app as a user of the Customer Insights instance (its API also needs a subscription key)"
        ),
        possible=True,
        evidence=Evidence.INFERRED,
        delivers=True,
        in_solution_only=False,
        seed_tool=None,
        notes=(
            "adding the app as a user is verified; that a service principal's use makes it an active "
            "user of the instance is not",
        ),
    ),
)

SERVICE_PRINCIPAL_ROUTES: tuple[ServicePrincipalRoute, ...] = (
    *(route for product in _SOLUTION_PRODUCTS for route in _solution_routes(product)),
    *_OTHER_ROUTES,
)


def routes_for(product: Product) -> tuple[ServicePrincipalRoute, ...]:
    return tuple(route for route in SERVICE_PRINCIPAL_ROUTES if route.product is product)


_POWER_PLATFORM_GRANTS = (
    "A tenant admin registers the app with Power Platform once (a service principal cannot register "
    "itself): pac admin application register --application-id <appId>, or PowerShell "
    "New-PowerAppManagementApp -ApplicationId <appId> (verified).",
    "The service principal gets a Dataverse application user in the environment (once registered it "
    "adds itself): POST https://api.bap.microsoft.com/providers/Microsoft.BusinessAppPlatform/scopes/"
    "admin/environments/{envId}/addAppUser?api-version=2020-10-01 (verified).",
)

SERVICE_PRINCIPAL_PREREQUISITES: Mapping[Product, tuple[str, ...]] = MappingProxyType(
    {
        **{product: _POWER_PLATFORM_GRANTS for product in _SOLUTION_PRODUCTS},
        Product.POWER_BI_DATASET: (
            "A tenant admin puts the app in a security group allowed by the Power BI tenant setting "
            "'Service principals can use Fabric APIs' (Power BI admin portal); the app holds no Power BI "
            "API permissions that need admin consent (verified).",
            "The service principal is a member of the workspace (Power BI workspace access) (verified).",
        ),
        Product.CUSTOMER_INSIGHTS_INSTANCE: (),
    }
)
"""What the customer grants once before the service principal can act (power-platform.md)."""


# One sentence on who counts.

_IDENTITY_PHRASES: Mapping[AttributedIdentity, str] = {
    AttributedIdentity.OWNER_OR_CO_OWNER: "must be an owner or co-owner of the {resource}",
    AttributedIdentity.CREATOR: "must be the creator of the {resource}",
    AttributedIdentity.PUBLISHER: "must be the publisher of the {resource}",
    AttributedIdentity.ANY_ACTIVE_USER: "must be an active user of the {resource}",
}
_SEVERAL_PARTNERS_PHRASES: Mapping[SeveralPartners, str] = {
    SeveralPartners.LATEST_BY_ACTIVITY: "with several partners, the one whose user was active latest counts",
    SeveralPartners.SINGLE_CREATOR: "there is only one creator, so only one partner can count",
    SeveralPartners.NONE: "the sources give no rule for several partners",
}


def who_counts(product: Product) -> str:
    """Who must be the attributed identity for the product, in one sentence."""
    rule = rule_for(product)
    identity = _IDENTITY_PHRASES[rule.attributed_identity].format(resource=rule.resource)
    credited = f" to be credited with its {rule.metric}" if rule.metric else " for it to count"
    several = _SEVERAL_PARTNERS_PHRASES[rule.several_partners]
    return f"For a {rule.display_name}, the PAL-linked identity {identity}{credited}; {several}."


# The whole rule set as JSON (GET /api/attribution/rules, palctl advise --output json).


def rule_document(rule: AttributionRule) -> dict[str, JsonValue]:
    return {
        "product": rule.product.value,
        "displayName": rule.display_name,
        "metric": rule.metric,
        "resource": rule.resource,
        "attributedIdentity": rule.attributed_identity.value,
        "severalPartners": rule.several_partners.value,
        "solutionDelivery": rule.solution_delivery.value,
        "makerTool": rule.maker_tool,
        "ownerTableRow": rule.owner_table_row,
        "notes": list(rule.notes),
        "source": rule.source.value,
        "whoCounts": who_counts(rule.product),
    }


def _owner_table_document(change: OwnerChange) -> dict[str, JsonValue]:
    return {
        "change": change.value,
        "question": OWNER_CHANGE_QUESTIONS[change],
        "rows": [_owner_row_document(rule, change) for rule in RULES.values()],
    }


def _owner_row_document(rule: AttributionRule, change: OwnerChange) -> dict[str, JsonValue]:
    covered = rule.owner_table_row is not None
    cells: list[JsonValue] = [
        {
            "tool": tool.value,
            "allowed": OWNER_CHANGES[(rule.product, change, tool)],
            **_command_document(COMMANDS.get((rule.product, change, tool))),
        }
        for tool in (TOOL_COLUMNS if covered else ())
    ]
    return {
        "product": rule.product.value,
        "seedRow": rule.owner_table_row,
        "covered": covered,
        "cells": cells,
    }


def _command_document(command: Command | None) -> dict[str, JsonValue]:
    if command is None:
        return {"command": None, "commandKind": None}
    return {"command": command.text, "commandKind": command.kind.value}


def _route_document(route: ServicePrincipalRoute) -> dict[str, JsonValue]:
    return {
        "route": route.route.value,
        "product": route.product.value,
        "goal": route.goal,
        "call": route.call,
        "possible": route.possible,
        "evidence": route.evidence.value,
        "delivers": route.delivers,
        "inSolutionOnly": route.in_solution_only,
        "seedTool": route.seed_tool.value if route.seed_tool else None,
        "notes": list(route.notes),
    }


def _values(members: Iterable[StrEnum]) -> list[JsonValue]:
    return [member.value for member in members]


def rules_document() -> dict[str, JsonValue]:
    """The whole rule set, JSON-serialisable, with stable camelCase keys and enum values."""
    return {
        "version": RULES_DOCUMENT_VERSION,
        "tools": [{"tool": tool.value, "label": TOOL_LABELS[tool]} for tool in TOOL_COLUMNS],
        "products": [rule_document(rule) for rule in RULES.values()],
        "ownerTables": [_owner_table_document(change) for change in OwnerChange],
        "servicePrincipalRoutes": [_route_document(route) for route in SERVICE_PRINCIPAL_ROUTES],
        "servicePrincipalPrerequisites": [
            {"product": product.value, "steps": list(steps)}
            for product, steps in SERVICE_PRINCIPAL_PREREQUISITES.items()
        ],
        "evidence": _values(Evidence),
        "sources": _values(Source),
    }
