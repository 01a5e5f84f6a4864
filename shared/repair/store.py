"""The repairs' rows in the ledger table (rows.py): written once per apply, updated by an undo."""

from __future__ import annotations

from collections.abc import Sequence

from azure.data.tables import TransactionOperation

from shared.repair.rows import APPLY_PREFIX, ApplyRow, RepairChangeRow, apply_row_key
from shared.spine.table import Table

__all__ = ["RepairLedger"]

_BATCH = 100


class RepairLedger:
    def __init__(self, table: Table) -> None:
        self.table = table

    async def write(self, apply: ApplyRow, changes: Sequence[RepairChangeRow]) -> None:
        rows = [apply, *changes]
        for start in range(0, len(rows), _BATCH):
            await self.table.submit(
                [(TransactionOperation.UPSERT, row.to_entity()) for row in rows[start : start + _BATCH]]
            )

    async def get(self, tenant: str, apply_id: str) -> tuple[ApplyRow, list[RepairChangeRow]] | None:
        key = apply_row_key(apply_id)
        found = (await self.table.point_reads(tenant, [key])).get(key)
        if found is None:
            return None
        changes = await self.table.range(tenant, f"repair~{apply_id}~", limit=None)
        return ApplyRow.from_entity(found), [RepairChangeRow.from_entity(entity) for entity in changes]

    async def applies(self, tenant: str) -> list[ApplyRow]:
        rows = [ApplyRow.from_entity(e) for e in await self.table.range(tenant, APPLY_PREFIX, limit=None)]
        return sorted(rows, key=lambda row: row.applied_at)
