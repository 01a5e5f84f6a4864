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
from typing import Any

from shared.links.ledger import Attempt
from shared.links.message import (
    MessageRejected,
    find_credentials,
    parse_offboarding_message,
    parse_onboarding_message,
)
from shared.spine.envelope import Source
from shared.spine.outcomes import Outcome, OutcomeKind

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
