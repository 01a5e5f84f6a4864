"""What an attempt's outcome writes to the links ledger, decided without reading or writing it: its
history event, the link's next state, whether the outcome becomes that state, and whether a night
only extends the link's verified interval. `shared.links.ledger` writes what these decide.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from shared.links.rows import HistoryEvent, LinkState, offboarded_at, state_row_key
from shared.spine.outcomes import Outcome, OutcomeKind

if TYPE_CHECKING:
    from shared.links.ledger import Attempt, LedgerView

__all__ = ["changes_state", "extends_verification", "history_event", "link_state"]

_SUCCESS_KINDS = {
    OutcomeKind.LINKED,
    OutcomeKind.UPDATED,
    OutcomeKind.ALREADY_LINKED,
    OutcomeKind.VERIFIED,
    OutcomeKind.HEALED,
}


def extends_verification(attempt: Attempt, outcome: Outcome, found: LedgerView) -> bool:
    """A verification that finds everything as the last one left it only extends the link's
    verified interval (`VerifiedSince` .. `LastCheckedAt`): no event, no receipt. Anything else
    (the first verification after a change, a retry that closes a chain, an intent to settle, a
    different identity or link) is written as an event."""
    previous = found.state
    if outcome.kind is not OutcomeKind.VERIFIED or previous is None:
        return False
    if found.receipt is not None or found.intent_row is not None:
        return False
    recorded = (
        previous.outcome,
        previous.identity_type,
        previous.key_vault_secret_name,
        previous.linked_partner_id,
        previous.object_id,
        previous.link_version,
        previous.partner_id,
    )
    found_now = (
        OutcomeKind.VERIFIED,
        attempt.identity_type,
        attempt.key_vault_secret_name,
        outcome.partner_id,
        outcome.object_id,
        outcome.link_version,
        attempt.partner_id,
    )
    return recorded == found_now


def changes_state(attempt: Attempt, outcome: Outcome, previous: LinkState | None) -> bool:
    """Whether this attempt's outcome becomes the link's recorded state.

    A rejection never does. A different identity (type or Key Vault secret) for a healthy link
    must prove itself: it replaces the recorded one only once it has signed in and linked, so a
    message with a wrong identity cannot break a link that works.
    """
    if outcome.kind is OutcomeKind.REJECTED:
        return False
    if previous is None or outcome.kind.is_success:
        return True
    same_identity = (previous.identity_type, previous.key_vault_secret_name) == (
        attempt.identity_type,
        attempt.key_vault_secret_name,
    )
    return same_identity or not previous.is_healthy


def history_event(
    partition: str, row_key: str, attempt: Attempt, outcome: Outcome, now: datetime
) -> HistoryEvent:
    return HistoryEvent(
        partition_key=partition,
        row_key=row_key,
        event_time=now,
        source=attempt.source,
        message_id=attempt.message_id,
        delivery_count=attempt.delivery_count,
        attempt=attempt.attempt,
        next_attempt_at=attempt.next_attempt_at,
        client_id=attempt.client_id,
        identity_type=attempt.identity_type,
        user_principal_name=attempt.user_principal_name,
        customer_name=attempt.customer_name,
        correlation_id=attempt.correlation_id,
        requested_partner_id=attempt.partner_id,
        run_id=attempt.run_id,
        outcome=outcome.kind,
        reason=outcome.reason,
        code=outcome.code,
        remediation=outcome.remediation,
        details="\n".join(outcome.details) or None,
        partner_id=outcome.partner_id,
        previous_partner_id=outcome.previous_partner_id,
        object_id=outcome.object_id,
        link_version=outcome.link_version,
        retry_after_seconds=outcome.retry_after,
        duration_ms=round(attempt.duration_ms, 1),
        actor=attempt.actor,
    )


def link_state(
    partition: str, attempt: Attempt, outcome: Outcome, now: datetime, previous: LinkState | None
) -> LinkState:
    """The link's state after this outcome; what the outcome does not say is kept from before."""
    before = previous or LinkState(partition_key=partition, row_key="", outcome=outcome.kind)
    verified, unlinked = outcome.kind is OutcomeKind.VERIFIED, outcome.kind is OutcomeKind.UNLINKED
    continued = verified and previous is not None and previous.outcome is OutcomeKind.VERIFIED
    return LinkState(
        partition_key=partition,
        row_key=state_row_key(attempt.client_id or ""),
        customer_tenant_id=attempt.customer_tenant_id,
        client_id=attempt.client_id,
        identity_type=attempt.identity_type,
        key_vault_secret_name=attempt.key_vault_secret_name,
        user_principal_name=attempt.user_principal_name or before.user_principal_name,
        customer_name=attempt.customer_name or before.customer_name,
        correlation_id=attempt.correlation_id or before.correlation_id,
        partner_id=attempt.partner_id,
        linked_partner_id=None if unlinked else outcome.partner_id or before.linked_partner_id,
        previous_partner_id=outcome.previous_partner_id or before.previous_partner_id,
        object_id=outcome.object_id or before.object_id,
        link_version=outcome.link_version or before.link_version,
        outcome=outcome.kind,
        reason=outcome.reason,
        code=outcome.code,
        remediation=outcome.remediation,
        last_checked_at=now,
        last_linked_at=now if outcome.kind in _SUCCESS_KINDS else before.last_linked_at,
        verified_since=(before.verified_since or now) if continued else (now if verified else None),
        verified_count=((before.verified_count or 1) + 1 if continued else 1) if verified else None,
        consecutive_failures=0 if outcome.kind.is_success else before.consecutive_failures + 1,
        last_message_id=attempt.message_id,
        last_run_id=attempt.run_id or before.last_run_id,
        first_seen_at=before.first_seen_at or now,
        offboarded_at=offboarded_at(attempt.source, previous, now),
    )
