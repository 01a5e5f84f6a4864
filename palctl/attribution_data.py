"""The attribution API as palctl reads it: the routes over `palctl.api` (the function key in a
header, never on screen), and what they answer, screened (`shared.spine.untrusted.shown`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from palctl.api import ApiTarget, Response, api_session, call
from palctl.errors import Failed

if TYPE_CHECKING:
    pass

PAGE_SIZE = 1000
"""Findings per request: the API's largest `top`."""
STATUSES = ("attributed", "not-attributed", "unknown")
"""The finding statuses, in the order the tables show them (an unknown one from the API follows)."""
STATUS_STYLES = {"attributed": "green", "not-attributed": "red", "unknown": "yellow"}


# --- the API ------------------------------------------------------------------------------------


class AttributionApi:
    """The attribution routes of the HTTP API (`/api/attribution...`) over one HTTP session."""

    def __init__(self, target: ApiTarget, http: Any) -> None:
        self._target, self._http = target, http

    async def call(self, method: str, path: str = "", query: Mapping[str, str] | None = None) -> Response:
        """The status and the parsed JSON object (None if the body is not one); Failed if unreachable."""
        from urllib.parse import urlencode

        suffix = f"?{urlencode(query)}" if query else ""
        return await call(self._http, self._target, method, f"/attribution{path}{suffix}")


@asynccontextmanager
async def connected(target: ApiTarget) -> AsyncIterator[AttributionApi]:
    async with api_session() as http:
        yield AttributionApi(target, http)


def refused(response: Response, hints: Mapping[str, str] | None = None) -> Failed:
    """The error for an answer the command cannot use: the API's problem, screened, and what to do
    for the problem types in `hints` (keyed by the last part of the problem's `type`)."""
    from shared.spine.untrusted import shown

    if response.status == 401:
        return Failed("HTTP 401: the function key (PAL_API_KEY) is missing or wrong")
    body = response.body or {}
    title, detail = body.get("title"), body.get("detail")
    message = f"HTTP {response.status}"
    if title is not None:
        message += f" {shown(title, 100)}: {shown(detail or '', 500)}"
    kind = str(body.get("type", "")).rsplit("/", 1)[-1]
    hint = (hints or {}).get(kind)
    return Failed(f"{message} ({hint})" if hint else message)


# --- what the API says, screened ----------------------------------------------------------------


def text(value: Any, limit: int = 200) -> str | None:
    """A value from the API as text to show: None stays None, anything else screened."""
    from shared.spine.untrusted import shown

    return None if value is None else shown(value if isinstance(value, str) else str(value), limit)


def _texts(value: Any, limit: int = 200) -> tuple[str, ...]:
    return tuple(text(item, limit) or "" for item in value) if isinstance(value, list) else ()


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _fraction(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0.0 <= value <= 1.0 else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Run:
    """An audit run's summary as the API gives it (`run`, or a customer of `coverageBelow`)."""

    run_id: str
    started_at: str | None
    ended_at: str | None
    units: tuple[str, ...]
    units_done: tuple[str, ...]
    counts: Mapping[str, Mapping[str, int]]
    """{product: {status: count}} over the units done."""
    coverage: float | None
    needs_customer_action: Mapping[str, str]
    """{api: the one-time grant to ask the customer for}."""

    @classmethod
    def parse(cls, value: Any) -> Run:
        body = _mapping(value)
        counts = {
            text(product, 64) or "": {
                text(status, 64) or "": _count(n) for status, n in _mapping(row).items()
            }
            for product, row in _mapping(body.get("counts")).items()
        }
        needs = {
            text(api, 64) or "": text(remedy, 600) or ""
            for api, remedy in _mapping(body.get("needsCustomerAction")).items()
        }
        return cls(
            run_id=text(body.get("runId"), 128) or "",
            started_at=text(body.get("startedAt"), 64),
            ended_at=text(body.get("endedAt"), 64),
            units=_texts(body.get("units"), 128),
            units_done=_texts(body.get("unitsDone"), 128),
            counts=counts,
            coverage=_fraction(body.get("coverage")),
            needs_customer_action=needs,
        )

    @property
    def finished(self) -> bool:
        return self.ended_at is not None

    def total(self, status: str) -> int:
        return sum(statuses.get(status, 0) for statuses in self.counts.values())

    def document(self) -> dict[str, Any]:
        """The run as JSON, in the API's shape."""
        return {
            "runId": self.run_id,
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "units": list(self.units),
            "unitsDone": list(self.units_done),
            "counts": {product: dict(statuses) for product, statuses in self.counts.items()},
            "coverage": self.coverage,
            "needsCustomerAction": dict(self.needs_customer_action),
        }


@dataclass(frozen=True)
class FindingRow:
    """A finding as a CSV row: `attributedTo` semicolon-joined."""

    customer_tenant_id: str
    product: str
    environment_id: str
    resource_id: str
    name: str
    status: str = field(metadata={"styles": STATUS_STYLES})
    attributed_to: str
    remedy: str | None
    checked_at: str | None
    status_since: str | None


@dataclass(frozen=True)
class Finding:
    """One resource's finding, as the API gives it."""

    customer_tenant_id: str
    product: str
    environment_id: str
    resource_id: str
    name: str
    status: str
    attributed_to: tuple[str, ...]
    """Who holds the resource in the role that counts, instead of us."""
    remedy: str | None
    checked_at: str | None
    status_since: str | None

    @classmethod
    def parse(cls, tenant: str, value: Any) -> Finding:
        body = _mapping(value)
        return cls(
            customer_tenant_id=tenant,
            product=text(body.get("product"), 64) or "",
            environment_id=text(body.get("environmentId"), 128) or "",
            resource_id=text(body.get("resourceId"), 256) or "",
            name=text(body.get("name"), 200) or "",
            status=text(body.get("status"), 64) or "",
            attributed_to=_texts(body.get("attributedTo"), 256),
            remedy=text(body.get("remedy"), 600),
            checked_at=text(body.get("checkedAt"), 64),
            status_since=text(body.get("statusSince"), 64),
        )

    def row(self) -> FindingRow:
        return FindingRow(
            self.customer_tenant_id,
            self.product,
            self.environment_id,
            self.resource_id,
            self.name,
            self.status,
            ";".join(self.attributed_to),
            self.remedy,
            self.checked_at,
            self.status_since,
        )

    def document(self) -> dict[str, Any]:
        """The finding as JSON (`attributedTo` a list)."""
        from palctl.output import json_name

        fields = {json_name(name): value for name, value in vars(self).items()}
        return fields | {"attributedTo": list(self.attributed_to)}


@dataclass(frozen=True)
class CustomerReport:
    """One customer's latest audit run, its findings (every page) and its recent changes."""

    customer_tenant_id: str
    run: Run
    total: int
    findings: list[Finding]
    changes: list[dict[str, str | None]]

    def document(self) -> dict[str, Any]:
        return {
            "customerTenantId": self.customer_tenant_id,
            "run": self.run.document(),
            "total": self.total,
            "findings": [finding.document() for finding in self.findings],
            "changes": self.changes,
        }


_CHANGE_FIELDS = ("change", "product", "resourceId", "name", "time", "runId")
NOT_AUDITED_HINT = "audit it first: palctl audit --tenant {tenant} --wait"


async def customer_report(
    api: AttributionApi, tenant: str, filters: Mapping[str, str], page_size: int = PAGE_SIZE
) -> CustomerReport:
    """GET /api/attribution/{tenant}, page after page (`skip`) until `total` findings are read."""
    findings: list[Finding] = []
    while True:
        query = {**filters, "top": str(page_size), "skip": str(len(findings))}
        response = await api.call("GET", f"/{tenant}", query)
        if response.status != 200 or response.body is None:
            raise refused(response, {"not-audited": NOT_AUDITED_HINT.format(tenant=tenant)})
        body = response.body
        page = [Finding.parse(tenant, item) for item in body.get("findings") or [] if isinstance(item, dict)]
        findings += page
        total = _count(body.get("total"))
        if not page or len(findings) >= total:  # an empty page: the findings shrank while paging
            break
    changes = [
        {name: text(change.get(name), 200) for name in _CHANGE_FIELDS}
        for change in body.get("changes") or []
        if isinstance(change, dict)
    ]
    return CustomerReport(tenant, Run.parse(body.get("run")), total, findings, changes)


# --- the customers below a coverage -------------------------------------------------------------


@dataclass(frozen=True)
class CustomerCoverage:
    """A customer's latest finished audit run, in a row."""

    customer_tenant_id: str
    run_id: str
    ended_at: str | None
    coverage: float | None = field(metadata={"justify": "right"})
    attributed: int = field(metadata={"justify": "right"})
    not_attributed: int = field(metadata={"justify": "right"})
    unknown: int = field(metadata={"justify": "right"})
    needs_customer_action: str
    """The APIs the customer has not granted, semicolon-joined."""

    @classmethod
    def of(cls, tenant: str, run: Run) -> CustomerCoverage:
        return cls(
            tenant,
            run.run_id,
            run.ended_at,
            run.coverage,
            run.total("attributed"),
            run.total("not-attributed"),
            run.total("unknown"),
            ";".join(sorted(run.needs_customer_action)),
        )


@dataclass(frozen=True)
class CoverageCells:
    customer_tenant_id: str
    coverage: str = field(metadata={"justify": "right"})
    attributed: int = field(metadata={"justify": "right"})
    not_attributed: int = field(metadata={"justify": "right"})
    unknown: int = field(metadata={"justify": "right"})
    needs_customer_action: str
    run_id: str
    ended_at: str | None


async def customers_below(api: AttributionApi, threshold: float | None) -> list[CustomerCoverage]:
    """GET /api/attribution[?coverageBelow=x]: every audited customer's latest finished run, or only
    those below a coverage."""
    from shared.spine.identifiers import is_guid

    response = await api.call("GET", "", {} if threshold is None else {"coverageBelow": repr(threshold)})
    if response.status != 200 or response.body is None:
        raise refused(response)
    rows = []
    for customer in response.body.get("customers") or []:
        tenant = _mapping(customer).get("customerTenantId")
        if is_guid(tenant):  # it becomes a path: nothing else is asked for
            rows.append(CustomerCoverage.of(str(tenant).lower(), Run.parse(customer)))
    return rows
