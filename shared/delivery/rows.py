"""A delivery's row in the ledger table, in the customer's partition beside its links and findings:
`delivery~{deliveryId}`. It holds what was delivered (the blob's SHA-256 and size, never the file),
where, what became of it, the components the import reported (kinds and counts) and how many of
them the audit afterwards found attributed to us. The import log and the file stay out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from shared.delivery.message import DeliveryKind
from shared.spine.table_row import TableRow

__all__ = ["DELIVERY_PREFIX", "DeliveryRow", "DeliveryStatus", "delivery_row_key"]

DELIVERY_PREFIX = "delivery~"


class DeliveryStatus(StrEnum):
    QUEUED = "queued"
    IMPORTING = "importing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NEEDS_CUSTOMER_ACTION = "needs-customer-action"

    @property
    def is_final(self) -> bool:
        return self in (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED, DeliveryStatus.NEEDS_CUSTOMER_ACTION)


def delivery_row_key(delivery_id: str) -> str:
    return DELIVERY_PREFIX + delivery_id


@dataclass(frozen=True, kw_only=True)
class DeliveryRow(TableRow):
    kind: DeliveryKind
    target: str
    """The environment's id, or the Power BI workspace's."""
    blob: str
    sha256: str
    size: int
    status: DeliveryStatus
    settings_blob: str | None = None
    dataset_name: str | None = None
    name_conflict: str | None = None
    code: str | None = None
    reason: str = ""
    remediation: str | None = None
    solution_name: str | None = None
    solution_version: str | None = None
    import_job_id: str | None = None
    async_operation_id: str | None = None
    powerbi_import_id: str | None = None
    components: str = "{}"
    """JSON {kind: count} of what the import reported."""
    attributed: str = "{}"
    """JSON {kind: count} of those the audit then found attributed to us."""
    not_attributed: str = "[]"
    """JSON [component id] the audit found not attributed (at most 50)."""
    audit: str = ""
    """What became of the audit after the import (done, queued, or why not)."""
    attempt: int = 1
    polls: int = 0
    expected_attempt: int | None = None
    """While a copy is scheduled: its attempt and polls, the only message that may go on."""
    expected_polls: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    CONVERT: ClassVar = {"kind": DeliveryKind, "status": DeliveryStatus}

    @property
    def delivery_id(self) -> str:
        return self.row_key.removeprefix(DELIVERY_PREFIX)

    def public(self) -> dict[str, Any]:
        """The row as the HTTP API answers it."""
        return {
            "deliveryId": self.delivery_id,
            "customerTenantId": self.partition_key,
            "kind": self.kind.value,
            "target": self.target,
            "sha256": self.sha256,
            "size": self.size,
            "status": self.status.value,
            "code": self.code,
            "reason": self.reason,
            "remediation": self.remediation,
            "solutionName": self.solution_name,
            "solutionVersion": self.solution_version,
            "datasetName": self.dataset_name,
            "nameConflict": self.name_conflict,
            "importJobId": self.import_job_id,
            "components": _json(self.components, {}),
            "attributed": _json(self.attributed, {}),
            "notAttributed": _json(self.not_attributed, []),
            "audit": self.audit,
            "attempt": self.attempt,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


def _json(text: str, default: Any) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return default
