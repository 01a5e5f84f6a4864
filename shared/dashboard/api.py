"""The dashboard's JSON data, for a signed-in operator: the existing API classes behind an Entra ID
token check (shared.dashboard.auth) instead of a function key.

Every call first checks the caller (401 without a valid token, 403 without the role the call needs),
then answers exactly as the operators' API does (shared.links.api, shared.links.coverage_api,
shared.links.live_api, shared.attribution.api), so the vocabulary, validation and problem details
are the same. The operator's actions (relink, offboard, audit now) are attributed to the operator:
their object ID and name are recorded in the history event a relink or an offboarding writes, and
in an action row for an audit (shared.dashboard.actions). What the fleet views read, and how they
stay cheap at 10,000 customers, is in shared.dashboard.fleet.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.dashboard import fleet
from shared.dashboard.actions import ActionLog, OperatorAction
from shared.dashboard.auth import KeysUnavailable, Operator, Refused, Role, TokenValidator
from shared.links.api import LinksApi, _decode_token, _encode_token, _link
from shared.spine.actor import acting_as, actor_text
from shared.spine.identifiers import is_guid
from shared.spine.outages import answers_outages
from shared.spine.outcomes import OutcomeKind
from shared.spine.problem import ApiResponse, problem

if TYPE_CHECKING:
    from shared.attribution.api import AttributionApi
    from shared.attribution.store import AttributionLedger
    from shared.links.coverage_api import CoverageApi
    from shared.links.ledger import Ledger
    from shared.links.live_api import LiveApi

logger = logging.getLogger(__name__)

_LINK_PARAMETERS = {"outcome", "top", "continuationToken", "tenant", "name"}
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")
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


def _invalid(detail: str) -> ApiResponse:
    return problem(400, "invalid-query", "Invalid query", detail)


def _now_text() -> str:
    return datetime.now(UTC).isoformat()


class DashboardApi:
    """What the dashboard page reads and the actions it offers, for a signed-in operator."""

    def __init__(
        self, validator: TokenValidator, links: LinksApi, coverage: CoverageApi, ledger: Ledger
    ) -> None:
        self._validator, self._links, self._coverage, self._ledger = validator, links, coverage, ledger
        self._live: LiveApi | None = None
        self._attribution: AttributionApi | None = None
        self._attribution_ledger: AttributionLedger | None = None
        self._actions = ActionLog(ledger.table)

    def extended(
        self, live: LiveApi, attribution: AttributionApi, attribution_ledger: AttributionLedger
    ) -> DashboardApi:
        """With the live view and the attribution audit (the customer view's and fleet's parts)."""
        self._live, self._attribution, self._attribution_ledger = live, attribution, attribution_ledger
        return self

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
        """GET dashboard/data/summary: links by outcome now (offboarded ones apart), counted at most
        once a minute per instance (`asOf` says when)."""
        caller = await self._caller(authorization, Role.READER)
        if isinstance(caller, ApiResponse):
            return caller
        return await self._summary()

    @answers_outages
    async def _summary(self) -> ApiResponse:
        body = await fleet.cached(
            fleet.table_key(self._ledger), "summary", lambda: fleet.summary(self._ledger, _now_text())
        )
        return ApiResponse(200, dict(body))

    async def trends(self, authorization: str | None) -> ApiResponse:
        """GET dashboard/data/trends: links by outcome over the nightly runs, and what changed."""
        caller = await self._caller(authorization, Role.READER)
        if isinstance(caller, ApiResponse):
            return caller
        return await self._trends()

    @answers_outages
    async def _trends(self) -> ApiResponse:
        return ApiResponse(200, await fleet.trends(self._ledger))

    async def attribution_coverage(self, authorization: str | None) -> ApiResponse:
        """GET dashboard/data/attribution: coverage per customer and product, drops first."""
        caller = await self._caller(authorization, Role.READER)
        if isinstance(caller, ApiResponse):
            return caller
        return await self._attribution_coverage()

    @answers_outages
    async def _attribution_coverage(self) -> ApiResponse:
        ledger = self._attribution_ledger
        assert ledger is not None, "built without the attribution ledger (DashboardApi.extended)"
        body = await fleet.cached(
            fleet.table_key(self._ledger), "coverage", lambda: fleet.coverage(ledger, _now_text())
        )
        return ApiResponse(200, dict(body))

    async def links(self, authorization: str | None, parameters: Mapping[str, str]) -> ApiResponse:
        """GET dashboard/data/links?outcome=&top=&continuationToken=&tenant=&name=: a page of link
        states, one tenant's (search by tenant ID), or those whose customer name starts with `name`."""
        caller = await self._caller(authorization, Role.READER)
        if isinstance(caller, ApiResponse):
            return caller
        unknown = sorted(set(parameters) - _LINK_PARAMETERS)
        if unknown:
            allowed = ", ".join(sorted(_LINK_PARAMETERS))
            names = ", ".join(
                name if re.fullmatch(r"[A-Za-z]{1,32}", name) else "<unprintable>" for name in unknown
            )
            return _invalid(f"{names}: unknown parameter (allowed: {allowed})")
        tenant = parameters.get("tenant", "").strip()
        name = parameters.get("name", "")
        if tenant and name:
            return _invalid("tenant, name: search by one of them")
        if name:
            return await self._by_name(name, parameters)
        if not tenant:
            return await self._links.list_links({k: v for k, v in parameters.items() if k != "tenant"})
        return await self._one_tenant(tenant, parameters.get("outcome"))

    @answers_outages
    async def _by_name(self, name: str, parameters: Mapping[str, str]) -> ApiResponse:
        """The name search: a case-sensitive prefix, filtered by Table Storage, paged."""
        if not _NAME.fullmatch(name):
            return _invalid("name: 1 to 64 characters, no control characters")
        outcome = parameters.get("outcome")
        if outcome is not None and outcome not in {kind.value for kind in OutcomeKind}:
            return _invalid(f"outcome: must be one of {', '.join(kind.value for kind in OutcomeKind)}")
        top = parameters.get("top", "100")
        if not re.fullmatch(r"[0-9]{1,4}", top) or not 1 <= int(top) <= 1000:
            return _invalid("top: must be a whole number from 1 to 1000")
        continuation = None
        if "continuationToken" in parameters:
            continuation = _decode_token(parameters["continuationToken"])
            if continuation is None:
                return _invalid("continuationToken: not a token this API returned")
        items, token = await fleet.names_page(self._ledger, name, outcome, int(top), continuation)
        return ApiResponse(
            200,
            {
                "items": [_link(item) for item in items],
                "continuationToken": _encode_token(token) if token else None,
            },
        )

    async def _one_tenant(self, tenant: str, outcome: str | None) -> ApiResponse:
        """The search by tenant ID: that tenant's links as one page (none when nothing is recorded)."""
        if not is_guid(tenant):
            return _invalid("tenant: must be a GUID (the directory ID)")
        if outcome is not None and outcome not in {kind.value for kind in OutcomeKind}:
            allowed = ", ".join(kind.value for kind in OutcomeKind)
            return _invalid(f"outcome: must be one of {allowed}")
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
        """GET dashboard/data/customers/{tenant}: its links, history, operator actions and coverage
        (last 30 days)."""
        caller = await self._caller(authorization, Role.READER)
        if isinstance(caller, ApiResponse):
            return caller
        links = await self._links.get_link(customer_tenant_id)
        if links.status != 200 or links.body is None:
            return links
        coverage = await self._coverage.get(customer_tenant_id, {})
        body: dict[str, Any] = dict(links.body)
        body["coverage"] = coverage.body if coverage.status == 200 else None
        actions = await self._recent_actions(customer_tenant_id.lower())
        if actions.status != 200 or actions.body is None:
            return actions
        body["actions"] = actions.body["actions"]
        return ApiResponse(200, body)

    @answers_outages
    async def _recent_actions(self, tenant: str) -> ApiResponse:
        return ApiResponse(200, {"actions": [a.view() for a in await self._actions.recent(tenant)]})

    async def live(self, authorization: str | None, customer_tenant_id: str) -> ApiResponse:
        """GET dashboard/data/customers/{tenant}/live: each identity's link read from Azure now."""
        caller = await self._caller(authorization, Role.READER)
        if isinstance(caller, ApiResponse):
            return caller
        assert self._live is not None, "built without the live view (DashboardApi.extended)"
        return await self._live.get(customer_tenant_id, {})

    async def attribution(
        self, authorization: str | None, customer_tenant_id: str, parameters: Mapping[str, str]
    ) -> ApiResponse:
        """GET dashboard/data/customers/{tenant}/attribution?product=&status=&top=&skip=: the latest
        audit's summary (coverage per product) and findings with their owners; `audited: false`
        when none is recorded."""
        caller = await self._caller(authorization, Role.READER)
        if isinstance(caller, ApiResponse):
            return caller
        assert self._attribution is not None, "built without the attribution API (DashboardApi.extended)"
        answer = await self._attribution.tenant(customer_tenant_id, parameters)
        if answer.status == 404:
            tenant = customer_tenant_id.lower()
            return ApiResponse(
                200, {"customerTenantId": tenant, "audited": False, "findings": [], "changes": []}
            )
        if answer.status == 200 and answer.body is not None:
            answer.body["audited"] = True
        return answer

    async def relink(self, authorization: str | None, customer_tenant_id: str, body: bytes) -> ApiResponse:
        """POST dashboard/data/customers/{tenant}/relink: the operators' relink, attributed to the
        signed-in operator (PalAutopilot.Operator only)."""
        return await self._as_operator(
            authorization,
            customer_tenant_id,
            "relinked",
            lambda: self._links.relink(customer_tenant_id, body),
        )

    async def offboard(self, authorization: str | None, customer_tenant_id: str, body: bytes) -> ApiResponse:
        """POST dashboard/data/customers/{tenant}/offboard: the operators' offboard (the link is
        removed, the customer no longer checked), attributed to the operator (Operator only)."""
        return await self._as_operator(
            authorization,
            customer_tenant_id,
            "offboarded",
            lambda: self._links.offboard(customer_tenant_id, body),
        )

    async def _as_operator(
        self,
        authorization: str | None,
        customer_tenant_id: str,
        what: str,
        act: Callable[[], Awaitable[ApiResponse]],
    ) -> ApiResponse:
        """An operators' API call made as the signed-in operator: the link service records them as
        the actor of the history event, and the answer names them."""
        caller = await self._caller(authorization, Role.OPERATOR)
        if isinstance(caller, ApiResponse):
            return caller
        actor = actor_text(caller.object_id, caller.name)
        with acting_as(actor):
            answer = await act()
        if answer.body is not None and answer.status in (200, 403, 503):
            answer.body["actor"] = actor
        self._acted(caller, what, customer_tenant_id)
        return answer

    async def audit(self, authorization: str | None, customer_tenant_id: str) -> ApiResponse:
        """POST dashboard/data/customers/{tenant}/audit: queue an attribution audit now, and record
        who asked in the customer's history (an action row; Operator only)."""
        caller = await self._caller(authorization, Role.OPERATOR)
        if isinstance(caller, ApiResponse):
            return caller
        assert self._attribution is not None, "built without the attribution API (DashboardApi.extended)"
        answer = await self._attribution.audit_now(customer_tenant_id)
        if answer.status != 202 or answer.body is None:
            return answer
        actor = actor_text(caller.object_id, caller.name)
        run_id = str(answer.body["runId"])
        action = OperatorAction(
            time=datetime.now(UTC),
            action="audit",
            outcome="requested",
            actor=actor,
            reason=f"attribution audit {run_id} queued from the dashboard",
            run_id=run_id,
        )
        recorded = await self._record(customer_tenant_id.lower(), action)
        if recorded is not None:
            return recorded
        answer.body["actor"] = actor
        self._acted(caller, "queued an attribution audit of", customer_tenant_id)
        return answer

    @answers_outages
    async def _record_answer(self, tenant: str, action: OperatorAction) -> ApiResponse:
        await self._actions.record(tenant, action)
        return ApiResponse(204, None)

    async def _record(self, tenant: str, action: OperatorAction) -> ApiResponse | None:
        """Record the action; the outage's 503 when the ledger could not be written."""
        answer = await self._record_answer(tenant, action)
        return None if answer.status == 204 else answer

    def _acted(self, caller: Operator, what: str, customer_tenant_id: str) -> None:
        fleet.forget_cached()  # this instance shows the change at once
        if is_guid(customer_tenant_id):
            logger.info(
                "dashboard: operator %s %s tenant %s", caller.object_id, what, customer_tenant_id.lower()
            )
