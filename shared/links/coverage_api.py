"""`GET /api/links/{customerTenantId}/coverage?from=&to=`: per identity, whether its link was linked
to one of our partner IDs throughout the period, or its intervals and gaps with their reasons
(computed by `shared.links.coverage` from the history, the nightly run records and the state).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.links.coverage import Coverage, coverage_of, observations_of
from shared.links.rows import EVENT_PREFIX, HistoryEvent, LinkState, events_until_key
from shared.links.runs import RunRecord
from shared.spine.identifiers import is_guid
from shared.spine.outages import answers_outages
from shared.spine.problem import ApiResponse, problem
from shared.spine.table import Table, after_prefix

if TYPE_CHECKING:
    from shared.links.ledger import Ledger
    from shared.links.service import LinkService

__all__ = ["DEFAULT_DAYS", "MAX_DAYS", "CoverageApi", "Period", "history_until", "period_of"]


DEFAULT_DAYS = 30
"""`from` when not given: this many days before `to`."""
MAX_DAYS = 366
_PARAMETERS = {"from", "to"}
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class Period:
    """[start, end) in UTC, `end` never after now."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start, self.end = start, end


def _moment(name: str, text: str, *, end: bool) -> datetime | str:
    """An ISO date (midnight UTC; a `to` date includes that day) or date-time (UTC when no
    offset is given); a sentence saying what is wrong otherwise."""
    if len(text) > 40:
        return f"{name}: not an ISO 8601 date or date-time"
    try:
        if _DATE.fullmatch(text):
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return f"{name}: not an ISO 8601 date or date-time"
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def period_of(parameters: Mapping[str, str], now: datetime) -> Period | str:
    """The period the query asks for, or why it cannot be answered."""
    unknown = sorted(set(parameters) - _PARAMETERS)
    if unknown:
        return "unknown parameter (allowed: from, to)"
    end = _moment("to", parameters["to"], end=True) if "to" in parameters else now
    if isinstance(end, str):
        return end
    end = min(end, now)
    start = _moment("from", parameters["from"], end=False) if "from" in parameters else end
    if isinstance(start, str):
        return start
    if "from" not in parameters:
        start = end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        return "from: must be before to (and before now)"
    if end - start > timedelta(days=MAX_DAYS):
        return f"the period may be at most {MAX_DAYS} days"
    return Period(start, end)


async def history_until(table: Table, customer_tenant_id: str, end: datetime) -> list[HistoryEvent]:
    """Every history event of the tenant up to `end`, newest first, page by page (the status at the
    period's start needs the events before it)."""
    client = await table.ready()
    query = client.query_entities(
        "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
        parameters={"pk": customer_tenant_id, "lo": events_until_key(end), "hi": after_prefix(EVENT_PREFIX)},
        results_per_page=1000,
    )
    return [HistoryEvent.from_entity(entity) async for entity in query]


def coverage_view(coverage: Coverage, state: LinkState | None) -> dict[str, Any]:
    """One identity's coverage as the API shows it."""
    fields = {
        "clientId": coverage.client_id,
        "identityType": state.identity_type if state else None,
        "outcome": state.outcome.value if state else None,
        "linkedThroughout": coverage.linked_throughout,
        "intervals": [
            {"from": i.start, "to": i.end, **({"partnerId": i.partner_id} if i.partner_id else {})}
            for i in coverage.intervals
        ],
        "gaps": [
            {
                "from": g.start,
                "to": g.end,
                "reason": g.reason.value,
                **({"detail": g.detail} if g.detail else {}),
            }
            for g in coverage.gaps
        ],
        "lastObservedAt": coverage.last_observed_at,
    }
    return {name: value for name, value in fields.items() if value is not None}


class CoverageApi:
    """Reads what a coverage answer needs (states, history up to the period's end, run records)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    @classmethod
    def of(cls, service: LinkService) -> CoverageApi:
        return cls(service.ledger)

    async def get(self, customer_tenant_id: str, parameters: Mapping[str, str]) -> ApiResponse:
        if not is_guid(customer_tenant_id):
            detail = "customerTenantId: must be a GUID (the directory ID)"
            return problem(400, "invalid-tenant-id", "Invalid customer tenant ID", detail)
        period = period_of(parameters, datetime.now(UTC))
        if isinstance(period, str):
            return problem(400, "invalid-query", "Invalid query", period)
        return await self._answer(customer_tenant_id.lower(), period)

    @answers_outages
    async def _answer(self, tenant: str, period: Period) -> ApiResponse:
        states = {state.client_id or "": state for state in await self._ledger.link_states(tenant)}
        events = await history_until(self._ledger.table, tenant, period.end)
        if not states and not events:
            return problem(
                404, "unknown-tenant", "Unknown customer tenant", "nothing is recorded for this tenant"
            )
        runs = [run for run in await self._ledger.runs.all() if run.started_at < period.end]
        clients = sorted(set(states) | {event.client_id for event in events if event.client_id})
        identities = [
            coverage_view(
                coverage_of(
                    client,
                    observations_of(client, events, runs, states.get(client)),
                    period.start,
                    period.end,
                ),
                states.get(client),
            )
            for client in clients
        ]
        return ApiResponse(
            200,
            {
                "customerTenantId": tenant,
                "from": period.start,
                "to": period.end,
                "generatedAt": datetime.now(UTC),
                "completeRuns": _complete_runs(runs, period),
                "identities": identities,
            },
        )


def _complete_runs(runs: list[RunRecord], period: Period) -> int:
    """The complete nightly runs that started within the period (the checks behind the intervals)."""
    return sum(1 for run in runs if run.complete and period.start <= run.started_at < period.end)
