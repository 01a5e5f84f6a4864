"""The lines an operator reads: one structured line per attempt, and the ALERTs.

Every field in these lines is validated input or our own text (shared.spine.untrusted escapes
the rest at the handler).
"""

from __future__ import annotations

import logging

from shared.links.ledger import Attempt
from shared.links.message import OnboardingRequest
from shared.spine.decision import Decision
from shared.spine.outcomes import Outcome, OutcomeKind

__all__ = ["alert_credential_broken", "alert_foreign_partner", "log_deferral", "log_outcome"]

logger = logging.getLogger(__name__)


def log_outcome(attempt: Attempt, outcome: Outcome) -> None:
    """One structured line per attempt; every field here is validated input or our own text."""
    fields = {
        "source": attempt.source,
        "outcome": outcome.kind.value,
        "customerTenantId": attempt.customer_tenant_id,
        "clientId": attempt.client_id,
        "correlationId": attempt.correlation_id,
        "messageId": attempt.message_id,
        "deliveryCount": attempt.delivery_count,
        "attempt": attempt.attempt,
        "runId": attempt.run_id,
        "nextAttemptAt": attempt.next_attempt_at.isoformat(timespec="seconds")
        if attempt.next_attempt_at
        else None,
        "partnerId": outcome.partner_id or attempt.partner_id,
        "code": outcome.code,
        "durationMs": round(attempt.duration_ms, 1),
    }
    if outcome.kind is OutcomeKind.PARTNER_CREDENTIAL_BROKEN:
        level = logging.ERROR
    elif outcome.kind.is_success:
        level = logging.INFO
    else:
        level = logging.WARNING
    text = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
    logger.log(level, "%s reason=%r", text, outcome.reason, extra=fields)


def log_deferral(message_id: str, request: OnboardingRequest, held: Decision) -> None:
    """An attempt held back while the partner credential is broken (INFO: the ALERT was logged)."""
    delay = held.next_attempt.delay if held.next_attempt else 0.0
    logger.info(
        "message %s deferred %.0f s: the partner credential for client %s is broken",
        message_id,
        delay,
        request.identity.client_id,
        extra={"messageId": message_id, "customerTenantId": request.customer_tenant_id},
    )


def alert_credential_broken(request: OnboardingRequest, outcome: Outcome, pause: float) -> None:
    """ERROR, once per breaker trip: the partner's own credential fails everywhere."""
    identity = request.identity
    logger.error(
        "ALERT partner credential broken: client %s (%s) failed with %s; every tenant using it is "
        "paused for %.0f s. %s",
        identity.client_id,
        identity.type.value,
        outcome.code,
        pause,
        outcome.remediation or "",
    )


def alert_foreign_partner(request: OnboardingRequest, outcome: Outcome) -> None:
    """ERROR: our identity was found linked to a partner ID that is not ours."""
    foreign = outcome.previous_partner_id if outcome.kind is OutcomeKind.RECLAIMED else outcome.partner_id
    done = (
        f"moved back to {request.partner_id}"
        if outcome.kind is OutcomeKind.RECLAIMED
        else "left as it is (ON_OTHER_PARTNER=keep)"
    )
    logger.error(
        "ALERT foreign partner ID: our identity %s in tenant %s was linked to partner ID %s, which is "
        "not in ALLOWED_PARTNER_IDS; %s",
        request.identity.client_id,
        request.customer_tenant_id,
        foreign,
        done,
        extra={"customerTenantId": request.customer_tenant_id, "outcome": outcome.kind.value},
    )
