"""The attribution audit's part of the ledger: findings per resource, their changes, run summaries.

Writing a unit (an environment, or Power BI) is idempotent: its findings are compared with what
the ledger holds, changed and new ones are upserted, vanished ones deleted, and a change row is
written for each difference - so a unit audited twice (a redelivery, a retry) changes nothing the
second time. Rows go in entity-group transactions of at most 100 within the customer's partition.
A run's progress (`units_done`) is a set, merged under the run row's ETag.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TransactionOperation

from shared.attribution.findings import Finding, FindingStatus
from shared.attribution.rows import (
    AUDIT_PREFIX,
    AuditRow,
    Change,
    ChangeRow,
    FindingRow,
    Tally,
    audit_row_key,
    change_row_key,
    finding_row_key,
    json_text,
    unit_prefix,
)
from shared.spine.table import (
    LedgerContention,
    Operation,
    Table,
    contention_pauses,
    create,
    delete_if_unchanged,
)

__all__ = ["AttributionLedger", "UnitWritten"]

logger = logging.getLogger(__name__)
_BATCH = 100


@dataclass(frozen=True)
class UnitWritten:
    changes: int
    findings: int


class AttributionLedger:
    def __init__(self, table: Table) -> None:
        self.table = table

    async def findings(self, tenant: str, unit: str | None = None) -> list[FindingRow]:
        prefix = unit_prefix(unit) if unit is not None else "finding~"
        return [
            FindingRow.from_entity(entity) for entity in await self.table.range(tenant, prefix, limit=None)
        ]

    async def changes(self, tenant: str, *, limit: int = 100) -> list[ChangeRow]:
        return [ChangeRow.from_entity(e) for e in await self.table.range(tenant, "attribution~", limit=limit)]

    async def write_unit(
        self,
        tenant: str,
        unit: str,
        run_id: str,
        findings: Sequence[Finding],
        now: datetime,
        *,
        keep: frozenset[str] = frozenset(),
    ) -> UnitWritten:
        """Make the unit's findings in the ledger what this audit found, with a change row per
        difference; the findings of the products in `keep` (their API was not read) stay as they were."""
        before = {row.row_key: row for row in await self.findings(tenant, unit)}
        operations: list[Operation] = []
        changes = 0
        seen: set[str] = set()
        for finding in findings:
            previous = before.get(_row_key(unit, finding))
            since = previous.status_since if previous and previous.status is finding.status else now
            row = FindingRow.of(tenant, unit, finding, run_id, now, since or now)
            seen.add(row.row_key)
            operations.append((TransactionOperation.UPSERT, row.to_entity()))
            change = _change(previous, finding)
            if change is not None:
                changes += 1
                operations.append(create(_change_row(tenant, row, change, previous, now)))
        for key, vanished in before.items():
            if key not in seen and vanished.product.value not in keep:
                changes += 1
                operations.append(delete_if_unchanged(vanished))
                operations.append(create(_change_row(tenant, vanished, Change.DELETED, vanished, now)))
        await self._submit(operations)
        return UnitWritten(changes, len(findings))

    async def _submit(self, operations: list[Operation]) -> None:
        for start in range(0, len(operations), _BATCH):
            await self.table.submit(operations[start : start + _BATCH])

    async def start_run(self, tenant: str, run_id: str, units: Sequence[str], now: datetime) -> bool:
        """Record a customer's run and its units; False when the run was already started."""
        client = await self.table.ready()
        row = AuditRow(
            partition_key=tenant, row_key=audit_row_key(run_id), started_at=now, units=json_text(list(units))
        )
        try:
            await client.create_entity(row.to_entity())
        except ResourceExistsError:
            return False
        return True

    async def runs(self, tenant: str) -> list[AuditRow]:
        """The customer's audit runs, oldest first."""
        rows = [AuditRow.from_entity(e) for e in await self.table.range(tenant, AUDIT_PREFIX, limit=None)]
        return sorted(rows, key=lambda row: row.started_at)

    async def finish_unit(
        self, tenant: str, run_id: str, unit: str, tally: Tally, refused: dict[str, str], now: datetime
    ) -> AuditRow | None:
        """Add a unit's counts and refusals to its run; the run row once every unit is done (and
        only to the writer that completed it), else None."""
        key = audit_row_key(run_id)
        async for _ in contention_pauses():
            found = (await self.table.point_reads(tenant, [key])).get(key)
            if found is None:
                return None
            run = AuditRow.from_entity(found)
            done = run.done_list()
            if unit in done:
                return None  # a redelivered or retried unit: counted once
            columns = _progress(run, unit, tally, refused, now)
            if await self.table.merge_if_unchanged(run, run.etag, columns):
                finished = set(done) | {unit} >= set(run.unit_list())
                return AuditRow.from_entity({**found, **columns}) if finished else None
        raise LedgerContention("attribution: too many writers for this run")

    async def latest_runs(self) -> AsyncIterator[AuditRow]:
        """Every customer's audit runs (the caller keeps the latest finished one per customer)."""
        client = await self.table.ready()
        query = client.query_entities(
            "RowKey ge @lo and RowKey lt @hi", parameters={"lo": AUDIT_PREFIX, "hi": "audit\x7f"}
        )
        async for entity in query:
            yield AuditRow.from_entity(entity)


def _row_key(unit: str, finding: Finding) -> str:
    return finding_row_key(unit, finding.product, finding.resource_id)


def _change(previous: FindingRow | None, finding: Finding) -> Change | None:
    if previous is None:
        return Change.NEW
    if previous.status is finding.status:
        return None
    return Change.ATTRIBUTED if finding.status is FindingStatus.ATTRIBUTED else Change.LOST


def _change_row(
    tenant: str, row: FindingRow, change: Change, previous: FindingRow | None, now: datetime
) -> ChangeRow:
    return ChangeRow(
        partition_key=tenant,
        row_key=change_row_key(now),
        change=change,
        product=row.product,
        unit=row.unit,
        resource_id=row.resource_id,
        name=row.name,
        status=None if change is Change.DELETED else row.status,
        previous_status=previous.status if previous else None,
        run_id=row.run_id,
        event_time=now,
    )


def _progress(
    run: AuditRow, unit: str, tally: Tally, refused: dict[str, str], now: datetime
) -> dict[str, object]:
    """The run row's columns once `unit` is added: progress, counts, refusals, and when the last
    unit is in, the end and the coverage."""
    done = run.done_list() + [unit]
    counts = Tally(run.count_map())
    merged = Tally({product: dict(statuses) for product, statuses in counts.counts.items()})
    for product, statuses in tally.counts.items():
        target = merged.counts.setdefault(product, {})
        for status, count in statuses.items():
            target[status] = target.get(status, 0) + count
    columns: dict[str, object] = {
        "UnitsDone": json_text(done),
        "Counts": json_text(merged.counts),
        "Refused": json_text({**run.refused_map(), **refused}),
    }
    if set(done) >= set(run.unit_list()):
        columns |= {"EndedAt": now}
        coverage = merged.coverage()
        if coverage is not None:
            columns["Coverage"] = coverage
    return columns
