"""What an attempt is about to change in ARM, recorded before the write call.

If ARM makes the change and the ledger then fails before the outcome is written, the retry finds
the link already in place and would record `already-linked`: the evidence of what was changed
(a new link, or a takeover from another partner ID) would be gone. The intent, written first,
lets the retry record what really happened.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from shared.spine.outcomes import Outcome, OutcomeKind


@dataclass(frozen=True)
class WriteIntent:
    """A PUT (no link yet: `previous_partner_id` None) or a PATCH away from another partner ID."""

    client_id: str
    requested_partner_id: str
    previous_partner_id: str | None
    previous_is_ours: bool
    """Whether the partner ID being replaced is one of ALLOWED_PARTNER_IDS."""


def settle(outcome: Outcome, intent: WriteIntent | None) -> Outcome:
    """The outcome an attempt records when an earlier attempt of its message made the change.

    Only a link found exactly as the intent meant to leave it is credited to the intent.
    """
    found_in_place = outcome.kind is OutcomeKind.ALREADY_LINKED
    if intent is None or not found_in_place or outcome.partner_id != intent.requested_partner_id:
        return outcome
    note = " (made by an earlier attempt of this message whose record was lost)"
    if intent.previous_partner_id is None:
        return dataclasses.replace(
            outcome,
            kind=OutcomeKind.LINKED,
            reason=f"linked to partner ID {intent.requested_partner_id}{note}",
        )
    kind = OutcomeKind.UPDATED if intent.previous_is_ours else OutcomeKind.RECLAIMED
    what = "partner ID" if intent.previous_is_ours else "a partner ID that is not ours"
    return dataclasses.replace(
        outcome,
        kind=kind,
        reason=f"changed the link from {what} {intent.previous_partner_id} to "
        f"{intent.requested_partner_id}{note}",
        previous_partner_id=intent.previous_partner_id,
    )
