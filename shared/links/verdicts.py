"""The outcomes the link service decides on its own, without asking ARM: a message refused by its
parser, a redelivery, a partner ID that is not ours, a nightly check of an offboarded link, and the
names a re-verification gives to what linking found."""

from __future__ import annotations

import dataclasses
import logging

from shared.links.delivery import Delivery
from shared.links.ledger import LedgerView
from shared.links.message import MessageRejected
from shared.links.rows import LinkState
from shared.spine.outcomes import Outcome, OutcomeKind

__all__ = ["as_verification", "not_checked", "partner_not_allowed", "redelivered", "rejected"]

logger = logging.getLogger(__name__)


def rejected(rejection: MessageRejected) -> Outcome:
    """The outcome of a message refused by its parser: final, with every problem found."""
    return Outcome(
        OutcomeKind.REJECTED,
        f"message rejected ({rejection.reason.value}): {rejection.details[0]}",
        code=rejection.reason.value,
        remediation="Fix the message at its source and send it again; it will not be retried.",
        details=rejection.details,
    )


def redelivered(view: LedgerView, delivery: Delivery, tenant: str) -> Outcome | None:
    """The receipt's outcome when this delivery was processed already (nothing is done again)."""
    receipt = view.receipt
    if receipt is None or not receipt.blocks(delivery.attempt):
        return None
    logger.info(
        "duplicate delivery of message %s: already recorded as %s; nothing done",
        delivery.message_id,
        receipt.outcome.value,
        extra={"messageId": delivery.message_id, "customerTenantId": tenant},
    )
    return Outcome(receipt.outcome, receipt.reason, code="duplicate-delivery")


def not_checked(state: LinkState) -> Outcome:
    """A nightly check of an offboarded link is not made: the state's outcome stands (and is what
    the run counts); the event says why nothing was done."""
    return Outcome(
        state.outcome,
        f"offboarded: not checked by the nightly run ({state.reason or state.outcome.value})",
        code="offboarded",
        previous_partner_id=state.previous_partner_id,
        object_id=state.object_id,
    )


def partner_not_allowed(partner_id: str) -> Outcome:
    """A message or relink asked for a partner ID outside ALLOWED_PARTNER_IDS: nothing is called."""
    return Outcome(
        OutcomeKind.REJECTED,
        f"partner ID {partner_id} is not one of ours (ALLOWED_PARTNER_IDS); nothing was changed",
        code="partner-id-not-allowed",
        remediation="Send the message without partnerId (PARTNER_ID is used) or with one of "
        "ALLOWED_PARTNER_IDS; if the ID is ours, add it to ALLOWED_PARTNER_IDS.",
    )


def as_verification(outcome: Outcome) -> Outcome:
    """In a re-verification, a link already in place is `verified` and one made again is `healed`."""
    if outcome.kind is OutcomeKind.ALREADY_LINKED:
        return dataclasses.replace(outcome, kind=OutcomeKind.VERIFIED, reason=f"in place: {outcome.reason}")
    if outcome.kind is OutcomeKind.LINKED:
        return dataclasses.replace(
            outcome,
            kind=OutcomeKind.HEALED,
            reason=f"the link was missing and is made again: {outcome.reason}",
        )
    return outcome
