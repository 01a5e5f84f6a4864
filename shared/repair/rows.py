"""A repair's rows in the ledger table, in the customer's partition beside its findings:

- `repairapply~{applyId}`: `ApplyRow`, one per apply of a plan: the plan's id, when, the counts per
  outcome, and what the re-audit found;
- `repair~{applyId}~{changeId}`: `ChangeRow`, one per planned change: the owner before (so that it
  can be undone) and after, what became of it and why.

No token, no call's answer body: owners are principal ids or names the APIs show."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from shared.attribution.rules import Product
from shared.repair.plan import Evidence, RepairKind
from shared.spine.table_row import TableRow

__all__ = ["APPLY_PREFIX", "CHANGE_PREFIX", "ApplyRow", "ChangeStatus", "RepairChangeRow"]

APPLY_PREFIX = "repairapply~"
CHANGE_PREFIX = "repair~"


class ChangeStatus(StrEnum):
    APPLIED = "applied"
    """The call was made and answered success."""
    REFUSED = "refused"
    """Not made: refused in the plan, or the resource changed since planning."""
    FAILED = "failed"
    """The call was made and refused by the API (its status and code recorded)."""
    UNDONE = "undone"
    UNDO_REFUSED = "undo-refused"
    UNDO_FAILED = "undo-failed"


def apply_row_key(apply_id: str) -> str:
    return f"{APPLY_PREFIX}{apply_id}"


def change_row_key(apply_id: str, change_id: str) -> str:
    return f"{CHANGE_PREFIX}{apply_id}~{change_id}"


@dataclass(frozen=True, kw_only=True)
class ApplyRow(TableRow):
    plan_id: str
    applied_at: datetime
    counts: str = "{}"
    """JSON {status: count}."""
    audit: str = ""
    """What the re-audit of the affected environments and workspaces did."""
    undone_at: datetime | None = None

    @property
    def apply_id(self) -> str:
        return self.row_key.removeprefix(APPLY_PREFIX)

    def count_map(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in json.loads(self.counts).items()}


@dataclass(frozen=True, kw_only=True)
class RepairChangeRow(TableRow):
    apply_id: str
    plan_id: str
    change_id: str
    product: Product
    kind: RepairKind
    unit: str
    resource_id: str
    name: str
    evidence: Evidence
    status: ChangeStatus
    before_owner: str | None = None
    """The owner found just before the change: the one undo puts back."""
    after_owner: str | None = None
    reason: str | None = None
    attributed_after: bool | None = None
    """What the re-audit found for the resource (None: not re-audited)."""
    changed_at: datetime | None = None
    undone_at: datetime | None = None

    CONVERT: ClassVar = {
        "product": Product,
        "kind": RepairKind,
        "evidence": Evidence,
        "status": ChangeStatus,
    }

    def public(self) -> dict[str, Any]:
        return {
            "changeId": self.change_id,
            "product": self.product.value,
            "kind": self.kind.value,
            "environmentId": self.unit,
            "resourceId": self.resource_id,
            "name": self.name,
            "evidence": self.evidence.value,
            "status": self.status.value,
            "beforeOwner": self.before_owner,
            "afterOwner": self.after_owner,
            "reason": self.reason,
            "attributedAfter": self.attributed_after,
            "changedAt": self.changed_at,
            "undoneAt": self.undone_at,
        }
