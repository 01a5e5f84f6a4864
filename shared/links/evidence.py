"""The evidence a partner can show for each link: a superset of what Microsoft's attestation script
prints from the customer's side (tenant ID, identity type, object ID, app ID, partner ID and name,
the link's created and updated times), plus the Azure roles and scopes it earns through.

Every nightly check is in it without one row per night: the verified interval (`verifiedSince` to
`lastCheckedAt`, `verifiedCount` nights) and the recognition interval (`earningSince` to
`earningCheckedAt`); each change between them is in the link's history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.links.earning import grants_of
from shared.links.rows import LinkState
from shared.spine.identifiers import is_guid
from shared.spine.outages import answers_outages
from shared.spine.problem import ApiResponse, problem

if TYPE_CHECKING:
    from shared.links.ledger import Ledger
    from shared.links.service import LinkService

__all__ = ["EvidenceApi", "evidence_of"]


SERVICE_PRINCIPAL = "ServicePrincipal"
USER = "User"
"""The identity types, as the attestation script names them: an application the service links, or a
user account palctl links after a person signs in."""


def evidence_of(state: LinkState) -> dict[str, Any]:
    """One link's evidence record (the fields the ledger has)."""
    qualifying = [grant for grant in grants_of(state) if grant.qualifies]
    user = state.is_user
    fields = {
        "tenantId": state.customer_tenant_id,
        "identityType": USER if user else SERVICE_PRINCIPAL,
        "credentialType": None if user else state.identity_type,
        "objectId": state.object_id or (state.client_id if user else None),
        "appId": None if user else state.client_id,
        "userPrincipalName": state.user_principal_name,
        "partnerId": state.linked_partner_id,
        "partnerName": state.partner_name,
        "linkCreatedTime": state.link_created_at,
        "linkUpdatedTime": state.link_updated_at,
        "linkVersion": state.link_version,
        "outcome": state.outcome.value,
        "verifiedSince": state.verified_since,
        "verifiedCount": state.verified_count,
        "lastCheckedAt": state.last_checked_at,
        "earning": state.earning.value if state.earning else None,
        "earningSince": state.earning_since,
        "earningCheckedAt": state.earning_checked_at,
        "earningRoles": [{"role": grant.role, "scope": grant.scope} for grant in qualifying]
        if state.earning
        else None,
        "offboardedAt": state.offboarded_at,
    }
    return {name: value for name, value in fields.items() if value is not None}


class EvidenceApi:
    """`GET /api/links/{customerTenantId}/evidence`: the evidence record of each of the tenant's links."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    @classmethod
    def of(cls, service: LinkService) -> EvidenceApi:
        return cls(service.ledger)

    @answers_outages
    async def get(self, customer_tenant_id: str) -> ApiResponse:
        if not is_guid(customer_tenant_id):
            detail = "customerTenantId: must be a GUID (the directory ID)"
            return problem(400, "invalid-tenant-id", "Invalid customer tenant ID", detail)
        tenant = customer_tenant_id.lower()
        states = await self._ledger.link_states(tenant)
        if not states:
            return problem(
                404, "unknown-tenant", "Unknown customer tenant", "no link is recorded for this tenant"
            )
        return ApiResponse(
            200,
            {
                "customerTenantId": tenant,
                "generatedAt": datetime.now(UTC),
                "links": [evidence_of(state) for state in states],
            },
        )
