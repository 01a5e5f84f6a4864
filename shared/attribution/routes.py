"""What a service principal can do through Microsoft's APIs (power-platform.md, "Changing owners"),
each claim verified or inferred, and what the customer grants once first."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from shared.attribution.rules import Evidence, Product, Tool

__all__ = [
    "SERVICE_PRINCIPAL_PREREQUISITES",
    "SERVICE_PRINCIPAL_ROUTES",
    "Route",
    "ServicePrincipalRoute",
    "routes_for",
]

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
