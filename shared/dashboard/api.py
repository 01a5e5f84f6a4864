"""The dashboard's JSON data, for a signed-in operator: the existing API classes behind an Entra ID
token check (shared.dashboard.auth) instead of a function key.

Every call first checks the caller (401 without a valid token, 403 without the role the call needs),
then answers exactly as the operators' API does (shared.links.api, shared.links.coverage_api), so
the vocabulary, validation and problem details are the same. A relink is attributed to the operator:
their object ID and name are recorded in the history event it writes.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.dashboard.auth import KeysUnavailable, Operator, Refused, Role, TokenValidator
from shared.links.api import LinksApi
from shared.spine.actor import acting_as, actor_text
from shared.spine.identifiers import is_guid
from shared.spine.outages import answers_outages
from shared.spine.outcomes import OutcomeKind
from shared.spine.problem import ApiResponse, problem

if TYPE_CHECKING:
    from shared.links.coverage_api import CoverageApi
    from shared.links.ledger import Ledger

logger = logging.getLogger(__name__)

_LINK_PARAMETERS = {"outcome", "top", "continuationToken", "tenant"}
NEEDS_ACTION = (OutcomeKind.NEEDS_CUSTOMER_ACTION.value, OutcomeKind.NEEDS_PARTNER_ACTION.value)


def _keys_unavailable() -> ApiResponse:
    response = problem(
        503,
        "sign-in-unavailable",
        "Try again later",
        "the sign-in authority's signing keys could not be read; try again later",
        retryAfterSeconds=30,
    )
    response.headers["Retry-After"] = "30"
    return response


class DashboardApi:
    """What the dashboard page reads and the one action it offers, for a signed-in operator."""

    def __init__(
        self, validator: TokenValidator, links: LinksApi, coverage: CoverageApi, ledger: Ledger
    ) -> None:
        self._validator, self._links, self._coverage, self._ledger = validator, links, coverage, ledger

    async def _caller(self, authorization: str | None, role: Role) -> Operator | ApiResponse:
        try:
            return await self._validator.operator(authorization, role)
        except Refused as refused:
            if refused.response.status == 403:
                logger.info("dashboard: a signed-in account without the needed role was refused")
            return refused.response
        except KeysUnavailable:
            return _keys_unavailable()

    async def me(self, authorization: str | None) -> ApiResponse:
        """GET dashboard/data/me: who is signed in and what they may do."""
        caller = await self._caller(authorization, Role.READER)
        if isinstance(caller, ApiResponse):
            return caller
        return ApiResponse(200, caller.view())

    async def summary(self, authorization: str | None) -> ApiResponse:
        """GET dashboard/data/summary: links by outcome now (offboarded ones apart)."""
        caller = await self._caller(authorization, Role.READER)
        if isinstance(caller, ApiResponse):
            return caller
        return await self._summary()

    @answers_outages
    async def _summary(self) -> ApiResponse:
        outcomes: Counter[str] = Counter()
        offboarded = 0
        async for state in self._ledger.all_link_states():
            if state.is_offboarded:
                offboarded += 1
            else:
                outcomes[state.outcome.value] += 1
        total = sum(outcomes.values())
        needing = sum(outcomes[kind] for kind in NEEDS_ACTION)
        return ApiResponse(
            200,
            {
                "total": total,
                "offboarded": offboarded,
                "needingAction": needing,
                "byOutcome": dict(sorted(outcomes.items())),
            },
        )

    async def links(self, authorization: str | None, parameters: Mapping[str, str]) -> ApiResponse:
        """GET dashboard/data/links?outcome=&top=&continuationToken=&tenant=: a page of link states,
        or one tenant's (search by tenant ID)."""
        caller = await self._caller(authorization, Role.READER)
        if isinstance(caller, ApiResponse):
            return caller
        unknown = sorted(set(parameters) - _LINK_PARAMETERS)
        if unknown:
            allowed = ", ".join(sorted(_LINK_PARAMETERS))
            names = ", ".join(
                name if re.fullmatch(r"[A-Za-z]{1,32}", name) else "<unprintable>" for name in unknown
            )
            return problem(
                400, "invalid-query", "Invalid query", f"{names}: unknown parameter (allowed: {allowed})"
            )
        tenant = parameters.get("tenant", "").strip()
        if not tenant:
            return await self._links.list_links({k: v for k, v in parameters.items() if k != "tenant"})
        return await self._one_tenant(tenant, parameters.get("outcome"))

    async def _one_tenant(self, tenant: str, outcome: str | None) -> ApiResponse:
        """The search by tenant ID: that tenant's links as one page (none when nothing is recorded)."""
        if not is_guid(tenant):
            return problem(400, "invalid-query", "Invalid query", "tenant: must be a GUID (the directory ID)")
        if outcome is not None and outcome not in {kind.value for kind in OutcomeKind}:
            allowed = ", ".join(kind.value for kind in OutcomeKind)
            return problem(400, "invalid-query", "Invalid query", f"outcome: must be one of {allowed}")
        answer = await self._links.get_link(tenant)
        if answer.status == 404:
            return ApiResponse(200, {"items": [], "continuationToken": None})
        if answer.status != 200 or answer.body is None:
            return answer
        items = answer.body["links"]
        if outcome:
            items = [item for item in items if item.get("outcome") == outcome]
        return ApiResponse(200, {"items": items, "continuationToken": None})

    async def customer(self, authorization: str | None, customer_tenant_id: str) -> ApiResponse:
        """GET dashboard/data/customers/{tenant}: its links, history and coverage (last 30 days)."""
        caller = await self._caller(authorization, Role.READER)
        if isinstance(caller, ApiResponse):
            return caller
        links = await self._links.get_link(customer_tenant_id)
        if links.status != 200 or links.body is None:
            return links
        coverage = await self._coverage.get(customer_tenant_id, {})
        body: dict[str, Any] = dict(links.body)
        body["coverage"] = coverage.body if coverage.status == 200 else None
        return ApiResponse(200, body)

    async def relink(self, authorization: str | None, customer_tenant_id: str, body: bytes) -> ApiResponse:
        """POST dashboard/data/customers/{tenant}/relink: the operators' relink, attributed to the
        signed-in operator (PalAutopilot.Operator only)."""
        caller = await self._caller(authorization, Role.OPERATOR)
        if isinstance(caller, ApiResponse):
            return caller
        actor = actor_text(caller.object_id, caller.name)
        with acting_as(actor):
            answer = await self._links.relink(customer_tenant_id, body)
        if answer.body is not None and answer.status in (200, 403, 503):
            answer.body["actor"] = actor
        if is_guid(customer_tenant_id):
            logger.info(
                "dashboard: operator %s relinked tenant %s", caller.object_id, customer_tenant_id.lower()
            )
        return answer
