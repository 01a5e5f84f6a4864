"""`GET /api/links/{customerTenantId}/live[?clientId=]`: each recorded identity's link read from ARM
now, signed in as that identity (`Linker.current`), beside what the ledger says, and whether the two
are in step. Read-only: nothing is written to the ledger or to ARM.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.links.linker import LiveLink
from shared.links.rows import LinkState
from shared.spine.errors import IDENTITY_GONE
from shared.spine.identifiers import is_guid
from shared.spine.outages import answers_outages
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.problem import ApiResponse, problem

if TYPE_CHECKING:
    from shared.links.ledger import Ledger
    from shared.links.linker import Linker
    from shared.links.service import LinkService

__all__ = ["LiveApi", "compare"]


_PARAMETERS = {"clientId"}
# Outcomes after which the ledger means no link should be in place.
_NONE_EXPECTED = frozenset({OutcomeKind.UNLINKED})
# Outcomes that record a link as it was found (ours, or kept): anything else records a failure.
_FOUND = frozenset({kind for kind in OutcomeKind if kind.is_success} | {OutcomeKind.FOREIGN_PARTNER})


def _expected(state: LinkState) -> str | None:
    """The partner ID the ledger says Azure holds for the identity (None: no link)."""
    if state.outcome in _NONE_EXPECTED or state.is_offboarded:
        return None
    return state.linked_partner_id


def _ledger_words(state: LinkState) -> str:
    """What the ledger says, in words for the difference sentence."""
    expected = _expected(state)
    if expected is not None:
        return f"the ledger says linked to {expected}"
    if state.is_offboarded:
        return "the ledger says offboarded (no link)"
    return f"the ledger says no link ({state.outcome.value})"


def compare(state: LinkState, azure: LiveLink | Outcome) -> tuple[bool, str | None]:
    """Whether the ledger and Azure agree, and a sentence saying how they differ when they do not."""
    if isinstance(azure, Outcome):
        same = state.outcome is azure.kind and state.code == azure.code
        gone = state.outcome in _NONE_EXPECTED and azure.code in IDENTITY_GONE
        if same or gone:
            return True, None
        return False, f"{_ledger_words(state)}, but Azure could not be read as this identity: {azure.reason}"
    held = azure.partner_id if azure.linked else None
    if state.outcome not in _FOUND:
        found = f"linked to {held}" if held else "no link"
        return False, f"the ledger records {state.outcome.value}, but Azure answered now: {found}"
    expected = _expected(state)
    if held == expected:
        return True, None
    if held is None:
        removed = f" (its link is {azure.state})" if azure.state else ""
        return False, f"{_ledger_words(state)}, but Azure holds no link{removed}"
    return False, f"{_ledger_words(state)}, but Azure holds a link to {held}"


def _ledger_view(state: LinkState) -> dict[str, Any]:
    """The ledger's side of the answer (its state row, as read)."""
    return {
        "outcome": state.outcome.value,
        "linkedPartnerId": state.linked_partner_id,
        "linkVersion": state.link_version,
        "lastCheckedAt": state.last_checked_at,
        "verifiedSince": state.verified_since,
        "offboardedAt": state.offboarded_at,
    }


def _azure_view(azure: LiveLink | Outcome) -> dict[str, Any]:
    """Azure's side: the link as ARM holds it now, or why it could not be read."""
    if isinstance(azure, Outcome):
        return {
            "error": {
                "outcome": azure.kind.value,
                "code": azure.code,
                "reason": azure.reason,
                "remediation": azure.remediation,
            }
        }
    return {
        "linked": azure.linked,
        "partnerId": azure.partner_id,
        "partnerName": azure.partner_name,
        "objectId": azure.object_id,
        "version": azure.version,
        "createdTime": azure.created_time,
        "updatedTime": azure.updated_time,
        "state": azure.state,
    }


def identity_view(state: LinkState, azure: LiveLink | Outcome) -> dict[str, Any]:
    """One identity: the ledger's state, Azure's now, and whether they are in step."""
    in_step, difference = compare(state, azure)
    return {
        "clientId": state.client_id,
        "ledger": _ledger_view(state),
        "azure": _azure_view(azure),
        "inStep": in_step,
        "difference": difference,
    }


class LiveApi:
    """Reads the tenant's recorded identities from the ledger and their links from ARM."""

    def __init__(self, ledger: Ledger, linker: Linker) -> None:
        self._ledger = ledger
        self._linker = linker

    @classmethod
    def of(cls, service: LinkService) -> LiveApi:
        """Built on the service's ledger and linker (its credentials and shared ARM client)."""
        return cls(service.ledger, service.linker)

    @answers_outages
    async def get(self, customer_tenant_id: str, parameters: Mapping[str, str]) -> ApiResponse:
        """The live view of the tenant's recorded identities (or of the one `clientId` names)."""
        refused = _refused(customer_tenant_id, parameters)
        if refused is not None:
            return refused
        tenant = customer_tenant_id.lower()
        states = await self._ledger.link_states(tenant)
        chosen = _chosen(states, parameters.get("clientId"))
        if isinstance(chosen, ApiResponse):
            return chosen
        found = await asyncio.gather(*(self._read(tenant, state) for state in chosen))
        identities = [identity_view(state, azure) for state, azure in zip(chosen, found, strict=True)]
        return ApiResponse(
            200, {"customerTenantId": tenant, "readAt": datetime.now(UTC), "identities": identities}
        )

    async def _read(self, tenant: str, state: LinkState) -> LiveLink | Outcome:
        """The identity's link from ARM now, or why it could not (or cannot unattended) be read."""
        identity = state.identity
        if state.is_user:
            return Outcome(
                OutcomeKind.REJECTED,
                "a user account: only a person can sign in as it to read Azure "
                f"(`palctl partner show --tenant {tenant}`)",
                code="user-sign-in-required",
            )
        if identity is None:
            return Outcome(
                OutcomeKind.REJECTED,
                "the recorded identity cannot sign in unattended; Azure was not read",
                code="cannot-sign-in",
            )
        return await self._linker.current(tenant, identity)


def _refused(customer_tenant_id: str, parameters: Mapping[str, str]) -> ApiResponse | None:
    """The problem with the request's tenant or query, if any."""
    if not is_guid(customer_tenant_id):
        detail = "customerTenantId: must be a GUID (the directory ID)"
        return problem(400, "invalid-tenant-id", "Invalid customer tenant ID", detail)
    if set(parameters) - _PARAMETERS:
        return problem(400, "invalid-query", "Invalid query", "unknown parameter (allowed: clientId)")
    client_id = parameters.get("clientId")
    if client_id is not None and not is_guid(client_id):
        detail = "clientId: must be a GUID (the application (client) ID)"
        return problem(400, "invalid-client-id", "Invalid client ID", detail)
    return None


def _chosen(states: list[LinkState], client_id: str | None) -> list[LinkState] | ApiResponse:
    """The recorded identities to read (the one with `client_id`, when given), or 404."""
    if not states:
        return problem(
            404, "unknown-tenant", "Unknown customer tenant", "no link is recorded for this tenant"
        )
    if client_id is None:
        return states
    chosen = [state for state in states if state.client_id == client_id.lower()]
    if not chosen:
        detail = "no identity with this client ID is recorded for this tenant"
        return problem(404, "unknown-identity", "Unknown identity", detail)
    return chosen
