"""Where an attempt came from and how many times it has been tried: a queue message (with the
application properties our scheduling set, believed only when well-formed) or an operator's relink."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

from shared.spine.decision import Counters
from shared.spine.envelope import (
    ATTEMPT_PROPERTY,
    ORIGINAL_ID_PROPERTY,
    PAUSES_PROPERTY,
    RUN_ID_PROPERTY,
    Source,
    counter,
    valid_run_id,
)
from shared.spine.receipts import body_digest, chain_id
from shared.spine.untrusted import message_id_for_records

__all__ = ["Delivery"]


@dataclasses.dataclass(frozen=True)
class Delivery:
    """Where a request came from and how many times it has been tried."""

    message_id: str
    original_id: str
    source: Source
    delivery_count: int = 1
    attempt: int = 1
    pauses: int = 0
    run_id: str | None = None
    body_digest: str | None = None

    @property
    def counters(self) -> Counters:
        return Counters(self.attempt, self.pauses)

    @property
    def chain_id(self) -> str:
        """The message and its scheduled retries (its receipt's key): a different body under a
        used MessageId is a new chain, never dropped as a duplicate."""
        return chain_id(self.original_id, self.body_digest)

    @classmethod
    def of_message(
        cls,
        message_id: str,
        source: Source,
        delivery_count: int,
        properties: Mapping[str, Any],
        body: bytes | None = None,
    ) -> Delivery:
        # Application properties are set by our own scheduling, but anyone who can send to the
        # queue can set them too: only well-formed values are believed (shared.spine.envelope).
        # The host always sets a MessageId; should one be missing, the body stands in for it so
        # that redelivery stays idempotent.
        message_id = message_id_for_records(message_id) or (
            "sha256:" + hashlib.sha256(body).hexdigest() if body is not None else ""
        )
        original = properties.get(ORIGINAL_ID_PROPERTY)
        if not (isinstance(original, str) and message_id_for_records(original) == original):
            original = None
        return cls(
            message_id=message_id,
            original_id=original or message_id,
            source=source,
            delivery_count=delivery_count,
            attempt=counter(properties, ATTEMPT_PROPERTY, 1),
            pauses=counter(properties, PAUSES_PROPERTY, 0),
            run_id=valid_run_id(properties.get(RUN_ID_PROPERTY)),
            body_digest=body_digest(body) if body is not None else None,
        )
