"""Who Microsoft credits for a Power Platform resource, as data (the owner tables, the service
principal's routes and the JSON document are in `owner_tables`, `routes` and `rules_document`).

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

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TypeAlias

__all__ = [
    "RULES",
    "RULES_DOCUMENT_VERSION",
    "AttributedIdentity",
    "AttributionRule",
    "Evidence",
    "JsonValue",
    "OwnerChange",
    "Product",
    "SeveralPartners",
    "Source",
    "Support",
    "Tool",
    "rule_for",
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
