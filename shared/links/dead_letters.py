"""Dead-lettered messages: no message may end in a dead-letter queue without the ledger knowing.

A message is dead-lettered by Service Bus when every delivery failed (MaxDeliveryCountExceeded),
or by any client that holds the lock. Each one is recorded as a final `failed` attempt, under its
tenant when the body parses (an offboarding message's under its tenant alone: its state is left as
it is), so the nightly re-verification and an operator can find it; the
trigger then completes it. Broker metadata (reason, description, ids) is untrusted input: only a
plain reason name is kept, and the description never is.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.links.alerts import log_outcome
from shared.links.delivery import Delivery
from shared.links.ledger import Attempt
from shared.links.message import (
    MessageRejected,
    find_credentials,
    parse_offboarding_message,
    parse_onboarding_message,
)
from shared.spine.envelope import Source
from shared.spine.outcomes import Outcome, OutcomeKind

if TYPE_CHECKING:
    from shared.links.service import LinkService

logger = logging.getLogger(__name__)

REASON_PROPERTY = "DeadLetterReason"
_REASON = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_CODE = "dead-lettered"
_RELINK = (
    "Relink the customer (POST /api/links/{tenant}/relink or palctl) or send the message again; the "
    "nightly re-verification also retries every recorded link."
)
_OFFBOARD_AGAIN = (
    "Offboard the customer again (palctl offboard, or POST /api/links/{tenant}/offboard, or send the "
    "message again): it is always safe to repeat; the nightly run does not retry an offboarding."
)


@dataclass(frozen=True)
class DeadLetter:
    """What the trigger hands over of a dead-lettered message (all of it untrusted)."""

    body: bytes
    message_id: str
    """Screened by the caller, like every MessageId."""
    original_id: str
    delivery_count: int
    reason: str
    attempt: int
    body_digest: str | None = None


def broker_reason(properties: Mapping[str, Any]) -> str:
    """The dead-letter reason when it is a plain name, never a value someone smuggled in."""
    raw = properties.get(REASON_PROPERTY)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if isinstance(raw, str) and _REASON.fullmatch(raw) and not find_credentials({"reason": raw}):
        return raw
    return "unspecified" if raw in (None, "") else "unrecognised-reason"


def dead_letter_attempt(
    letter: DeadLetter, *, source: str, default_partner_id: str, max_bytes: int
) -> tuple[Attempt, Outcome]:
    """The ledger record for a dead-lettered message: pure, so it can be tested without a broker."""
    offboarding = source == Source.OFFBOARDING
    outcome = Outcome(
        OutcomeKind.FAILED,
        f"Service Bus dead-lettered the message ({letter.reason}) after {letter.delivery_count} "
        "deliveries; it was never processed to the end",
        code=_CODE,
        remediation=_OFFBOARD_AGAIN if offboarding else _RELINK,
    )
    base = Attempt(
        message_id=letter.message_id,
        source=source,
        delivery_count=letter.delivery_count,
        attempt=letter.attempt,
        original_message_id=letter.original_id,
        body_digest=letter.body_digest,
    )
    try:
        if offboarding:
            tenant = parse_offboarding_message(letter.body, max_bytes=max_bytes).customer_tenant_id
            return dataclasses.replace(base, customer_tenant_id=tenant), outcome
        request = parse_onboarding_message(
            letter.body, default_partner_id=default_partner_id, max_bytes=max_bytes
        )
    except MessageRejected as rejection:
        return dataclasses.replace(base, customer_tenant_id=rejection.customer_tenant_id), outcome
    return base.about(request), outcome


async def record_dead_letter(
    service: LinkService,
    body: bytes,
    *,
    message_id: str,
    delivery_count: int,
    properties: Mapping[str, Any],
    source: Source,
) -> Outcome:
    """Record a dead-lettered message as a final `failed` attempt, once.

    Raises when the ledger cannot be written, so that the message stays in the dead-letter
    queue; nothing else about the message can make it raise.
    """
    delivery = Delivery.of_message(message_id, source, delivery_count, properties, body)
    letter = DeadLetter(
        body=body,
        message_id=delivery.message_id,
        original_id=delivery.original_id,
        delivery_count=delivery_count,
        reason=broker_reason(properties),
        attempt=delivery.attempt,
        body_digest=delivery.body_digest,
    )
    attempt, outcome = dead_letter_attempt(
        letter,
        source=source.value,
        default_partner_id=service.settings.partner_id,
        max_bytes=service.settings.max_message_bytes,
    )
    recorded = await service.ledger.record(attempt, outcome)
    if recorded.duplicate:
        logger.info(
            "dead-lettered message %s already has a final outcome; nothing recorded",
            delivery.message_id,
            extra={"messageId": delivery.message_id},
        )
        return outcome
    log_outcome(attempt, outcome)
    return outcome
