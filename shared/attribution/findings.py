"""Whether a resource credits us: decided from the rules, without I/O.

A resource is `attributed` when one of its holders in a role the product's rule counts (owner or
co-owner of a canvas app, creator of a flow, a model-driven app or a bot, publisher of a dataset)
is a PAL-linked identity of ours; otherwise `not-attributed`, naming who holds it instead. An API
the customer has not granted makes its resources `unknown` as a whole (`refusal_remedy` says the
one-time grant to ask for); it never hides what the other APIs found.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from shared.attribution.inventory import Api, HolderRole, Resource
from shared.attribution.rules import AttributedIdentity, Product, rule_for, who_counts

__all__ = ["Finding", "FindingStatus", "Ours", "counted_roles", "decide", "refusal_remedy"]


class FindingStatus(StrEnum):
    ATTRIBUTED = "attributed"
    NOT_ATTRIBUTED = "not-attributed"
    UNKNOWN = "unknown"


_ROLES = {
    AttributedIdentity.OWNER_OR_CO_OWNER: frozenset({HolderRole.OWNER, HolderRole.CO_OWNER}),
    AttributedIdentity.CREATOR: frozenset({HolderRole.CREATOR}),
    AttributedIdentity.PUBLISHER: frozenset({HolderRole.PUBLISHER}),
}


def counted_roles(product: Product) -> frozenset[HolderRole]:
    """The holder roles the product's rule credits (none for 'any active user': not audited)."""
    return _ROLES.get(rule_for(product).attributed_identity, frozenset())


@dataclass(frozen=True)
class Ours:
    """Our PAL-linked identities in one tenant, in every form an API names a principal by: Entra
    object IDs, client IDs (Power BI names a service principal publisher by it: inferred), user
    principal names, and the Dataverse systemuser IDs of our application users."""

    object_ids: frozenset[str] = frozenset()
    client_ids: frozenset[str] = frozenset()
    principal_names: frozenset[str] = frozenset()
    dataverse_users: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls, *, object_ids: Iterable[str] = (), client_ids: Iterable[str] = (), **others: Iterable[str]
    ) -> Ours:
        def lowered(values: Iterable[str]) -> frozenset[str]:
            return frozenset(value.lower() for value in values if value)

        return cls(
            lowered(object_ids),
            lowered(client_ids),
            lowered(others.get("principal_names", ())),
            lowered(others.get("dataverse_users", ())),
        )

    def with_dataverse_user(self, systemuser_id: str | None) -> Ours:
        if not systemuser_id:
            return self
        return Ours(
            self.object_ids,
            self.client_ids,
            self.principal_names,
            self.dataverse_users | {systemuser_id.lower()},
        )

    def holds(self, principal: str) -> bool:
        key = principal.lower()
        return any(
            key in ids
            for ids in (self.object_ids, self.client_ids, self.principal_names, self.dataverse_users)
        )


@dataclass(frozen=True)
class Finding:
    product: Product
    environment_id: str
    resource_id: str
    name: str
    status: FindingStatus
    attributed_to: tuple[str, ...] = ()
    """Who holds the resource in a counted role instead of us (empty: nobody, e.g. orphaned)."""
    remedy: str | None = None


def decide(resource: Resource, ours: Ours) -> Finding:
    roles = counted_roles(resource.product)
    counted = [holder.principal for holder in resource.holders if holder.role in roles]
    about = (resource.product, resource.environment_id, resource.resource_id, resource.name)
    if any(ours.holds(principal) for principal in counted):
        return Finding(*about, FindingStatus.ATTRIBUTED)
    remedy = f"{who_counts(resource.product)} See `palctl advise --product {resource.product.value}`."
    return Finding(*about, FindingStatus.NOT_ATTRIBUTED, tuple(dict.fromkeys(counted)), remedy)


_REGISTER = (
    "Ask a tenant admin of the customer to register the partner's app with Power Platform once: "
    "`pac admin application register --application-id {client_id}` (or PowerShell "
    "`New-PowerAppManagementApp -ApplicationId {client_id}`)."
)
_REMEDIES = {
    Api.BAP: _REGISTER,
    Api.POWER_APPS: _REGISTER,
    Api.FLOW: _REGISTER,
    Api.DATAVERSE: (
        "The app needs a Dataverse application user in environment {environment}: once the app is "
        "registered with Power Platform it adds itself (the next audit does), or an admin adds it in "
        "the Power Platform admin center (Environments > Settings > Application users)."
    ),
    Api.POWER_BI: (
        "Ask a Power BI admin of the customer to put the app (client ID {client_id}) in a security group "
        "allowed by the tenant setting 'Service principals can access read-only admin APIs'; the app "
        "must hold no Power BI API permissions that need admin consent."
    ),
}


def refusal_remedy(api: Api, *, client_id: str, environment: str | None = None) -> str:
    """The one-time grant to ask the customer for when `api` refuses our app (power-platform.md)."""
    return _REMEDIES[api].format(client_id=client_id, environment=environment or "(all)")
