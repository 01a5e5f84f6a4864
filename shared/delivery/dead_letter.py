"""A delivery message that Service Bus dead-lettered (its handler kept raising, e.g. a ledger
outage longer than the message's deliveries): the delivery's row is recorded as failed with code
`dead-lettered`, so that `GET /api/deliveries/{tenant}/{id}` and `palctl deliver --wait` end
instead of showing `queued` or `importing` for ever. A row already final is left as it is (the copy
that went to the dead-letter queue was a duplicate); a message that is no delivery message, or names
no recorded delivery, is only logged. Nothing of the body is logged."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from shared.delivery.message import DeliveryMessage
from shared.delivery.rows import DeliveryStatus
from shared.delivery.store import DeliveryLedger
from shared.spine.table import contention_pauses
from shared.spine.untrusted import message_id_for_records

__all__ = ["DEAD_LETTERED", "record_dead_letter"]

logger = logging.getLogger(__name__)
DEAD_LETTERED = "dead-lettered"


async def record_dead_letter(
    ledger: DeliveryLedger, body: bytes, *, message_id: str, delivery_count: int, max_file_bytes: int
) -> str:
    """Record the dead-lettered message's delivery as failed; what became of it, for the log."""
    shown_id = message_id_for_records(message_id)
    message = DeliveryMessage.parse(body, max_file_bytes=max_file_bytes)
    if message is None:
        logger.warning("dead-lettered delivery message %s is not a delivery message", shown_id)
        return "not a delivery message"
    async for _ in contention_pauses():
        row = await ledger.get(message.tenant, message.delivery_id)
        if row is None:
            logger.warning("dead-lettered delivery message %s names no recorded delivery", shown_id)
            return "no such delivery recorded"
        if row.status.is_final:
            return f"delivery {message.delivery_id} is already {row.status.value}"
        failed = row.replace(
            status=DeliveryStatus.FAILED,
            code=DEAD_LETTERED,
            reason="Service Bus gave up on the delivery's message: it was dead-lettered",
            remediation=(
                "See why in the Function App's log (palctl dlq list shows the message); "
                "deliver the file again once the cause is fixed."
            ),
            expected_attempt=None,
            expected_polls=None,
            updated_at=datetime.now(UTC),
        )
        if await ledger.replace(failed, row) is not None:
            logger.warning(
                "delivery %s of tenant %s dead-lettered after %d deliveries: recorded as failed",
                message.delivery_id,
                message.tenant,
                delivery_count,
            )
            return f"failed: delivery {message.delivery_id} dead-lettered"
    raise AssertionError("unreachable: contention_pauses raises when it runs out")
