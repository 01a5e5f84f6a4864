"""The nightly runs' records: one row per re-verification run, in the ledger's `pal-runs` partition.

A run is started once per UTC day (a timer that fires twice finds its row and sends nothing new)
and summarised once every link it checked has a final outcome.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import UpdateMode

from shared.spine.table import Table
from shared.spine.table_row import TableRow

__all__ = ["RUNS_PARTITION", "RunRecord", "RunSummary", "Runs"]

RUNS_PARTITION = "pal-runs"
"""Partition of the re-verification run records (one entity per nightly run)."""


@dataclass(frozen=True)
class RunSummary:
    """How a run ended: when, whether every link was checked, the outcomes counted, the links'
    Azure recognition, and how many customers stopped earning in this run."""

    ended_at: datetime
    duration_seconds: float
    complete: bool
    counts: Mapping[str, int]
    earning: Mapping[str, int] = field(default_factory=dict)
    """Links per recognition (earning, not-earning, unknown, or unchecked: never checked)."""
    stopped_earning: int = 0
    """Customers with a link that earned the night before and no longer does."""

    def columns(self) -> dict[str, Any]:
        """The summary's columns; each count also as its own `Count_<outcome>` column, so that a
        table query can filter on it."""
        return {
            "EndedAt": self.ended_at,
            "DurationSeconds": self.duration_seconds,
            "Complete": self.complete,
            "Counts": json.dumps(dict(sorted(self.counts.items()))),
            **{f"Count_{kind.replace('-', '_')}": count for kind, count in self.counts.items()},
            "Earning": json.dumps(dict(sorted(self.earning.items()))),
            "StoppedEarning": self.stopped_earning,
        }


@dataclass(frozen=True, kw_only=True)
class RunRecord(TableRow):
    """A run as recorded: started with its total; ended once summarised."""

    total: int
    started_at: datetime
    manual_checks: int | None = None
    """User-account links due for a manual check (`palctl verify-user`): listed, never sent."""
    ended_at: datetime | None = None
    duration_seconds: float | None = None
    complete: bool | None = None
    counts: Mapping[str, int] = field(default_factory=dict, metadata={"column": None})
    earning: Mapping[str, int] = field(default_factory=dict, metadata={"column": None})
    stopped_earning: int | None = None

    @property
    def run_id(self) -> str:
        return self.row_key

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def count(self, outcome: str) -> int:
        return int(self.counts.get(outcome, 0))

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any]) -> Self:
        record = super().from_entity(entity)
        counts = json.loads(entity["Counts"]) if entity.get("Counts") else {}
        earning = json.loads(entity["Earning"]) if entity.get("Earning") else {}
        return record.replace(
            counts={str(key): int(value) for key, value in counts.items()},
            earning={str(key): int(value) for key, value in earning.items()},
        )


class Runs:
    """The run records of one ledger table."""

    def __init__(self, table: Table) -> None:
        self._table = table

    async def create(self, run_id: str, *, total: int, started_at: datetime, manual_checks: int = 0) -> bool:
        """Record the start of a run; False when this run already exists (the timer fired twice)."""
        client = await self._table.ready()
        record = RunRecord(
            partition_key=RUNS_PARTITION,
            row_key=run_id,
            total=total,
            started_at=started_at,
            manual_checks=manual_checks,
        )
        try:
            await client.create_entity(record.to_entity())
        except ResourceExistsError:
            return False
        return True

    async def all(self) -> list[RunRecord]:
        """Every run, oldest first (run ids are dates)."""
        client = await self._table.ready()
        query = client.query_entities("PartitionKey eq @pk", parameters={"pk": RUNS_PARTITION})
        records = [RunRecord.from_entity(entity) async for entity in query]
        return sorted(records, key=lambda run: run.run_id)

    async def finish(self, run_id: str, summary: RunSummary) -> None:
        client = await self._table.ready()
        entity = {"PartitionKey": RUNS_PARTITION, "RowKey": run_id, **summary.columns()}
        await client.upsert_entity(entity, mode=UpdateMode.MERGE)
