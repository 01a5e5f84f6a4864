"""The dashboard's operator actions that write no link history event of their own.

A relink and an offboard go through the link service, whose history event records the operator
(`shared.spine.actor`). An "audit now" only queues an attribution audit: nothing in the links ledger
says who asked for it. So the dashboard records it here, one row per request in the customer's
partition (`dashboardaction~<inverted time>~<random>`, newest first, kept like the history), and
the customer view shows these rows in its history beside the link events.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.spine.table import Table

__all__ = ["ACTION_PREFIX", "ActionLog", "OperatorAction"]

ACTION_PREFIX = "dashboardaction~"
_INVERT = 10**19


def action_row_key(now: datetime) -> str:
    micros = int(now.timestamp() * 1_000_000)
    return f"{ACTION_PREFIX}{_INVERT - micros:020d}~{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class OperatorAction:
    """One operator's request, as the customer view's history shows it."""

    time: datetime
    action: str
    outcome: str
    actor: str
    reason: str
    run_id: str | None = None

    def view(self) -> dict[str, Any]:
        """As a history event of the dashboard's customer view (source `audit`, outcome `requested`)."""
        event: dict[str, Any] = {
            "time": self.time,
            "source": self.action,
            "outcome": self.outcome,
            "reason": self.reason,
            "actor": self.actor,
        }
        if self.run_id:
            event["runId"] = self.run_id
        return event


class ActionLog:
    """The operator actions recorded in the links ledger's table."""

    def __init__(self, table: Table) -> None:
        self._table = table

    async def record(self, tenant: str, action: OperatorAction) -> None:
        client = await self._table.ready()
        entity = {
            "PartitionKey": tenant,
            "RowKey": action_row_key(action.time),
            "EventTime": action.time,
            "Action": action.action,
            "Outcome": action.outcome,
            "Actor": action.actor,
            "Reason": action.reason[:512],
            "RunId": action.run_id or "",
        }
        await client.create_entity(entity)

    async def recent(self, tenant: str, *, limit: int = 20) -> list[OperatorAction]:
        """The customer's newest recorded actions, newest first."""
        entities = await self._table.range(tenant, ACTION_PREFIX, limit=limit)
        return [
            OperatorAction(
                time=entity["EventTime"],
                action=str(entity["Action"]),
                outcome=str(entity["Outcome"]),
                actor=str(entity["Actor"]),
                reason=str(entity.get("Reason", "")),
                run_id=str(entity.get("RunId") or "") or None,
            )
            for entity in entities
        ]


def now() -> datetime:
    return datetime.now(UTC)
