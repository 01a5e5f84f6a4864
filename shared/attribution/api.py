"""The attribution part of the operators' HTTP API, without Azure Functions.

- `GET /api/attribution/rules`: the rules as data (who counts, the owner tables, the service
  principal's routes);
- `GET /api/attribution/{customerTenantId}?product=&status=&top=&skip=`: the latest audit run's
  summary and the findings, filtered and paged;
- `GET /api/attribution[?coverageBelow=0.8]`: every audited customer's latest finished run, or those
  below a coverage;
- `POST /api/attribution/{customerTenantId}/audit`: audit now (202 with the run's id).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shared.attribution.audit import AuditMessage, audit_message
from shared.attribution.findings import FindingStatus
from shared.attribution.rows import AuditRow, FindingRow
from shared.attribution.rules import Product
from shared.attribution.rules_document import rules_document
from shared.attribution.store import AttributionLedger
from shared.links.ledger import Ledger
from shared.spine.identifiers import is_guid
from shared.spine.outages import answers_outages
from shared.spine.problem import ApiResponse, problem
from shared.spine.servicebus import QueueSender
from shared.spine.settings import Settings

__all__ = ["AttributionApi"]

_NUMBER = re.compile(r"^[0-9]{1,5}$")
_FINDING_PARAMETERS = {"product", "status", "top", "skip"}


class AttributionApi:
    """Takes the two ledgers it reads, the sender of the audit queue, and the settings."""

    def __init__(
        self, links: Ledger, ledger: AttributionLedger, sender: QueueSender | None, settings: Settings
    ) -> None:
        self._links, self._ledger, self._sender, self._settings = links, ledger, sender, settings

    @staticmethod
    def rules() -> ApiResponse:
        return ApiResponse(200, rules_document())

    @answers_outages
    async def tenant(self, customer_tenant_id: str, parameters: Mapping[str, str]) -> ApiResponse:
        tenant = customer_tenant_id.lower()
        if not is_guid(tenant):
            return _bad_tenant()
        query = _finding_query(parameters)
        if isinstance(query, ApiResponse):
            return query
        runs = await self._ledger.runs(tenant)
        if not runs:
            return problem(
                404, "not-audited", "Not audited", "no attribution audit is recorded for this tenant"
            )
        findings = [row for row in await self._ledger.findings(tenant) if query.matches(row)]
        page = findings[query.skip : query.skip + query.top]
        body = {
            "customerTenantId": tenant,
            "run": _run(runs[-1]),
            "total": len(findings),
            "findings": [_finding(row) for row in page],
            "changes": [_change(row) for row in await self._ledger.changes(tenant, limit=20)],
        }
        return ApiResponse(200, body)

    @answers_outages
    async def below(self, parameters: Mapping[str, str]) -> ApiResponse:
        unknown = sorted(set(parameters) - {"coverageBelow"})
        given = parameters.get("coverageBelow")
        threshold = _fraction(given) if given is not None else None
        if unknown or (given is not None and threshold is None):
            detail = (
                f"{', '.join(unknown)}: unknown parameter"
                if unknown
                else "coverageBelow: a number from 0 to 1"
            )
            return problem(400, "invalid-query", "Invalid query", detail)
        latest: dict[str, AuditRow] = {}
        async for run in self._ledger.latest_runs():
            if (
                run.coverage is not None
                and run.ended_at
                and (run.partition_key not in latest or run.started_at > latest[run.partition_key].started_at)
            ):
                latest[run.partition_key] = run
        customers = [
            {"customerTenantId": tenant, **_run(run)}
            for tenant, run in sorted(latest.items())
            if threshold is None or (run.coverage or 0.0) < threshold
        ]
        return ApiResponse(200, {"coverageBelow": threshold, "customers": customers})

    @answers_outages
    async def audit_now(self, customer_tenant_id: str) -> ApiResponse:
        tenant = customer_tenant_id.lower()
        if not is_guid(tenant):
            return _bad_tenant()
        if not any(state.is_healthy for state in await self._links.link_states(tenant)):
            return problem(
                404, "not-linked", "Not linked", "no healthy link of ours is recorded for this tenant"
            )
        if self._sender is None:
            return problem(503, "no-queue", "Audit queue unavailable", "Service Bus is not configured")
        run_id = "manual-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        await self._sender.send_batch(
            self._settings.audit_queue, [audit_message(AuditMessage(tenant, run_id))]
        )
        return ApiResponse(202, {"customerTenantId": tenant, "runId": run_id})


class _Query:
    def __init__(self, product: Product | None, status: FindingStatus | None, top: int, skip: int) -> None:
        self.product, self.status, self.top, self.skip = product, status, top, skip

    def matches(self, row: FindingRow) -> bool:
        return (self.product is None or row.product is self.product) and (
            self.status is None or row.status is self.status
        )


def _finding_query(parameters: Mapping[str, str]) -> _Query | ApiResponse:
    problems = [f"{name}: unknown parameter" for name in sorted(set(parameters) - _FINDING_PARAMETERS)]
    product = _member(Product, parameters.get("product"), "product", problems)
    status = _member(FindingStatus, parameters.get("status"), "status", problems)
    top, skip = parameters.get("top", "100"), parameters.get("skip", "0")
    if not (_NUMBER.fullmatch(top) and 1 <= int(top) <= 1000):
        problems.append("top: a whole number from 1 to 1000")
    if not _NUMBER.fullmatch(skip):
        problems.append("skip: a whole number from 0")
    if problems:
        return problem(400, "invalid-query", "Invalid query", "; ".join(problems), errors=problems)
    return _Query(product, status, int(top), int(skip))


def _member(kind: Any, value: str | None, name: str, problems: list[str]) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        problems.append(f"{name}: one of {', '.join(member.value for member in kind)}")
        return None


def _fraction(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None


def _bad_tenant() -> ApiResponse:
    return problem(400, "invalid-tenant-id", "Invalid customer tenant ID", "customerTenantId: must be a GUID")


def _run(run: AuditRow) -> dict[str, Any]:
    return {
        "runId": run.run_id,
        "startedAt": run.started_at,
        "endedAt": run.ended_at,
        "units": run.unit_list(),
        "unitsDone": run.done_list(),
        "counts": run.count_map(),
        "coverage": run.coverage,
        "needsCustomerAction": run.refused_map(),
    }


def _finding(row: FindingRow) -> dict[str, Any]:
    return {
        "product": row.product.value,
        "environmentId": row.unit,
        "resourceId": row.resource_id,
        "name": row.name,
        "status": row.status.value,
        "attributedTo": [part for part in row.attributed_to.split(",") if part],
        "remedy": row.remedy,
        "checkedAt": row.checked_at,
        "statusSince": row.status_since,
    }


def _change(row: Any) -> dict[str, Any]:
    return {
        "change": row.change.value,
        "product": row.product.value,
        "resourceId": row.resource_id,
        "name": row.name,
        "time": row.event_time,
        "runId": row.run_id,
    }
