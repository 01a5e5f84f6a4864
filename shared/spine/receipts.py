"""Receipts: what makes a redelivered message harmless.

A message, its scheduled retries and its body form one chain; the chain's receipt row says what
its latest attempt recorded. A final outcome closes the chain: any later delivery of its messages
is a duplicate and writes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from shared.spine.outcomes import OutcomeKind
from shared.spine.table_row import TableRow

__all__ = ["Receipt", "body_digest", "chain_id", "is_final", "receipt_row_key"]

RECEIPT_PREFIX = "receipt~"


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


def chain_id(original_message_id: str, digest: str | None) -> str:
    """A message, its scheduled retries and its body: what one receipt stands for."""
    return f"{original_message_id}#{digest}" if digest else original_message_id


def hashed_row_key(prefix: str, message_id: str) -> str:
    """Message ids may hold characters a RowKey may not ('/', '#', '?'): store a digest."""
    return prefix + hashlib.sha256(message_id.encode("utf-8")).hexdigest()[:40]


def receipt_row_key(chain: str) -> str:
    return hashed_row_key(RECEIPT_PREFIX, chain)


def is_final(outcome: OutcomeKind, *, retry_scheduled: bool) -> bool:
    """A recorded outcome is its message's last: not worth another attempt, and none scheduled (a
    paused or backed-off attempt records its outcome with the next attempt already scheduled)."""
    return not outcome.is_retryable and not retry_scheduled


@dataclass(frozen=True, kw_only=True)
class Receipt(TableRow):
    """The latest recorded attempt of a chain.

    While a retry is scheduled, only copies of that attempt may go on (a deferred copy has its own
    MessageId but the same attempt number); a redelivered earlier copy would make a second,
    parallel attempt.
    """

    outcome: OutcomeKind
    message_id: str = ""
    original_message_id: str | None = None
    next_attempt: int | None = None
    reason: str = ""
    event_row_key: str = ""
    recorded_at: datetime | None = None

    CONVERT: ClassVar = {"outcome": OutcomeKind}

    @property
    def is_terminal(self) -> bool:
        return is_final(self.outcome, retry_scheduled=self.next_attempt is not None)

    def blocks(self, attempt: int) -> bool:
        """True when attempt number `attempt` of this chain must not be processed (again)."""
        if self.is_terminal:
            return True
        return self.next_attempt is not None and self.next_attempt != attempt
