"""One attempt on its way through the link service (`Step`), and what is derived from it: the
attempt the ledger records, the credential breaker's key, the nightly snapshot a verify message
carries."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from shared.links.delivery import Delivery
from shared.links.ledger import Attempt, LedgerView
from shared.links.message import OnboardingRequest
from shared.links.recognition import Recognition
from shared.links.snapshot import StateSnapshot
from shared.spine.decision import NextAttempt
from shared.spine.envelope import (
    REPLAY_OF_PROPERTY,
    Source,
)
from shared.spine.servicebus import QueueSender
from shared.spine.write_intent import WriteIntent


@dataclasses.dataclass
class Step:
    """One attempt on its way through the service: the request, where it came from, what the
    ledger said before linking (None once the ledger has changed since)."""

    request: OnboardingRequest
    delivery: Delivery
    body: bytes | None
    started: float
    view: LedgerView | None
    snapshot: StateSnapshot | None = None
    """What the nightly run saw of the link's state row, while the ledger has not been read."""
    intent: WriteIntent | None = dataclasses.field(init=False)
    recognition: Recognition | None = dataclasses.field(default=None, init=False)
    """The link's Azure recognition, when a nightly verification checked it."""

    def __post_init__(self) -> None:
        self.intent = self.view.intent if self.view is not None else None

    def can_reschedule(self, sender: QueueSender | None) -> bool:
        return self.body is not None and sender is not None

    @property
    def known_version(self) -> int | None:
        """The version of the link's own record the ledger holds (read with it, or in the snapshot)."""
        if self.view is not None and self.view.state is not None:
            return self.view.state.link_record_version
        return self.snapshot.record_version if self.snapshot is not None else None


def snapshot_of(delivery: Delivery, properties: Mapping[str, Any]) -> StateSnapshot | None:
    """The state snapshot of a verify message's first delivery as the nightly run sent it; None for
    anything else (a redelivery, a scheduled copy, a replay: an earlier attempt may have left a
    receipt or an intent that only a read finds)."""
    first = delivery.delivery_count == 1 and delivery.attempt == 1 and delivery.pauses == 0
    sent_as_is = delivery.original_id == delivery.message_id and REPLAY_OF_PROPERTY not in properties
    if delivery.source is not Source.VERIFY or not (first and sent_as_is):
        return None
    return StateSnapshot.of_properties(properties)


def credential_key(request: OnboardingRequest) -> tuple[str, ...]:
    identity = request.identity
    return (identity.type.value, identity.client_id, identity.key_vault_secret_name or "")


def attempt_of(step: Step, decided_at: datetime, next_attempt: NextAttempt | None) -> Attempt:
    delivery = step.delivery
    return Attempt(
        message_id=delivery.message_id,
        source=delivery.source.value,
        delivery_count=delivery.delivery_count,
        duration_ms=elapsed_ms(step.started),
        attempt=delivery.attempt,
        next_attempt_at=decided_at + timedelta(seconds=next_attempt.delay) if next_attempt else None,
        run_id=delivery.run_id,
        original_message_id=delivery.original_id,
        body_digest=delivery.body_digest,
        next_attempt=next_attempt.number if next_attempt else None,
    ).about(step.request)


def elapsed_ms(started: float) -> float:
    return (time.monotonic() - started) * 1000
