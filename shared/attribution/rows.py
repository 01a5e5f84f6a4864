"""The attribution audit's rows in the ledger table, in each customer's partition beside its links.

- `finding~{unit}~{product}~{resource}`: `FindingRow`, the current finding per resource (a unit is a
  Power Platform environment, or `powerbi` for the tenant's Power BI workspaces);
- `attribution~{inverted time}~{id}`: `ChangeRow`, the history of *changes* only (a resource newly
  attributed, lost, new or deleted): an audit that found nothing changed writes none;
- `audit~{run}`: `AuditRow`, one per customer and run: its units, those done, counts per product
  and status, the APIs the customer has not granted, and the coverage.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Self

from shared.attribution.findings import Finding, FindingStatus
from shared.attribution.rules import Product
from shared.spine.table_row import TableRow

__all__ = [
    "AUDIT_PREFIX",
    "CHANGE_PREFIX",
    "FINDING_PREFIX",
    "POWER_BI_UNIT",
    "AuditRow",
    "Change",
    "ChangeRow",
    "Tally",
    "FindingRow",
    "audit_row_key",
    "change_row_key",
    "finding_row_key",
    "json_text",
    "unit_prefix",
]

FINDING_PREFIX = "finding~"
CHANGE_PREFIX = "attribution~"
AUDIT_PREFIX = "audit~"
POWER_BI_UNIT = "powerbi"
_INVERT = 10**20 - 1
_PLAIN = re.compile(r"^[A-Za-z0-9._-]{1,120}$")


def _key(text: str) -> str:
    """A RowKey part: the text when it is plain, else a digest (ids from an API are not trusted)."""
    return text if _PLAIN.fullmatch(text) else "h" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def unit_prefix(unit: str) -> str:
    return f"{FINDING_PREFIX}{_key(unit)}~"


def finding_row_key(unit: str, product: Product, resource_id: str) -> str:
    return f"{unit_prefix(unit)}{product.value}~{_key(resource_id)}"


def change_row_key(now: datetime) -> str:
    micros = int(now.timestamp() * 1_000_000)
    return f"{CHANGE_PREFIX}{_INVERT - micros:020d}~{uuid.uuid4().hex[:8]}"


def audit_row_key(run_id: str) -> str:
    return f"{AUDIT_PREFIX}{_key(run_id)}"


@dataclass(frozen=True, kw_only=True)
class FindingRow(TableRow):
    product: Product
    unit: str
    resource_id: str
    name: str
    status: FindingStatus
    attributed_to: str = ""
    """Comma-separated principals that hold the resource in a counted role instead of us."""
    remedy: str | None = None
    run_id: str | None = None
    checked_at: datetime | None = None
    status_since: datetime | None = None

    CONVERT: ClassVar = {"product": Product, "status": FindingStatus}

    @classmethod
    def of(
        cls, tenant: str, unit: str, finding: Finding, run_id: str, now: datetime, since: datetime
    ) -> Self:
        return cls(
            partition_key=tenant,
            row_key=finding_row_key(unit, finding.product, finding.resource_id),
            product=finding.product,
            unit=unit,
            resource_id=finding.resource_id,
            name=finding.name[:256],
            status=finding.status,
            attributed_to=",".join(finding.attributed_to)[:1024],
            remedy=finding.remedy,
            run_id=run_id,
            checked_at=now,
            status_since=since,
        )


class Change(StrEnum):
    """What happened to a resource between two audits."""

    NEW = "new"
    ATTRIBUTED = "attributed"
    LOST = "lost"
    DELETED = "deleted"


@dataclass(frozen=True, kw_only=True)
class ChangeRow(TableRow):
    change: Change
    product: Product
    unit: str
    resource_id: str
    name: str
    status: FindingStatus | None = None
    previous_status: FindingStatus | None = None
    run_id: str | None = None
    event_time: datetime | None = None

    CONVERT: ClassVar = {
        "change": Change,
        "product": Product,
        "status": FindingStatus,
        "previous_status": FindingStatus,
    }


@dataclass(frozen=True, kw_only=True)
class AuditRow(TableRow):
    """One customer's audit run: which units it covers, which are done, and what they found."""

    started_at: datetime
    units: str = "[]"
    """JSON list of the run's units (environment IDs, and `powerbi`)."""
    units_done: str = "[]"
    counts: str = "{}"
    """JSON {product: {status: count}} over the units done."""
    refused: str = "{}"
    """JSON {api: remedy}: the APIs the customer has not granted, with the grant to ask for."""
    ended_at: datetime | None = None
    coverage: float | None = None
    """Attributed / (attributed + not attributed), once every unit is done."""
    previous_coverage: float | None = None

    @property
    def run_id(self) -> str:
        return self.row_key.removeprefix(AUDIT_PREFIX)

    def unit_list(self) -> list[str]:
        return [str(unit) for unit in json.loads(self.units)]

    def done_list(self) -> list[str]:
        return [str(unit) for unit in json.loads(self.units_done)]

    def count_map(self) -> dict[str, dict[str, int]]:
        return {str(product): dict(statuses) for product, statuses in json.loads(self.counts).items()}

    def refused_map(self) -> dict[str, str]:
        return {str(api): str(remedy) for api, remedy in json.loads(self.refused).items()}


@dataclass(frozen=True)
class Tally:
    """Counts per product and status, added up unit by unit."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, findings: list[Finding]) -> Tally:
        counts = {product: dict(statuses) for product, statuses in self.counts.items()}
        for finding in findings:
            statuses = counts.setdefault(finding.product.value, {})
            statuses[finding.status.value] = statuses.get(finding.status.value, 0) + 1
        return Tally(counts)

    def coverage(self) -> float | None:
        attributed = sum(s.get(FindingStatus.ATTRIBUTED.value, 0) for s in self.counts.values())
        missing = sum(s.get(FindingStatus.NOT_ATTRIBUTED.value, 0) for s in self.counts.values())
        return round(attributed / (attributed + missing), 4) if attributed + missing else None


def json_text(value: Mapping[str, Any] | list[Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
