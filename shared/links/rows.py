"""The links ledger's rows, typed: a link's state, a history event, a write intent.

One table, partitioned by customer tenant:
- `link~{clientId}`: `LinkState`, the current state of the identity's link in that tenant;
- `event~{inverted time}~{id}`: `HistoryEvent`, the history, newest first;
- `receipt~{hash of chain}`: the spine's `Receipt`, which makes redelivery harmless;
- `intent~{hash of chain}`: `IntentRow`, what an attempt is about to change in ARM.
Nothing secret is ever in a row: outcomes carry no secret by construction, and only Key Vault
secret *names* are stored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from shared.links.recognition import Earning
from shared.spine.envelope import Source
from shared.spine.identity import UNATTENDED_TYPES, Identity, IdentityType
from shared.spine.outcomes import OutcomeKind
from shared.spine.receipts import hashed_row_key, is_final
from shared.spine.table_row import TableRow
from shared.spine.write_intent import WriteIntent

__all__ = [
    "HistoryEvent",
    "IntentRow",
    "LinkState",
    "event_row_key",
    "events_until_key",
    "intent_row_key",
    "state_row_key",
]

STATE_PREFIX = "link~"
EVENT_PREFIX = "event~"
INTENT_PREFIX = "intent~"
_INVERT = 10**20 - 1


def state_row_key(client_id: str) -> str:
    return f"{STATE_PREFIX}{client_id}"


def event_row_key(now: datetime) -> str:
    """Newest first: the key holds the inverted time, then a random suffix against collisions."""
    micros = int(now.timestamp() * 1_000_000)
    return f"{EVENT_PREFIX}{_INVERT - micros:020d}~{uuid.uuid4().hex[:8]}"


def events_until_key(moment: datetime) -> str:
    """The smallest key of an event at or before `moment` (keys are newest first)."""
    micros = int(moment.timestamp() * 1_000_000)
    return f"{EVENT_PREFIX}{_INVERT - micros:020d}"


def intent_row_key(chain: str) -> str:
    return hashed_row_key(INTENT_PREFIX, chain)


@dataclass(frozen=True, kw_only=True)
class LinkState(TableRow):
    """What the ledger knows about one identity's link in one customer tenant."""

    outcome: OutcomeKind
    customer_tenant_id: str | None = None
    client_id: str | None = None
    """The application (client) ID; for a user account (`identity_type` user), its object ID."""
    identity_type: str | None = None
    key_vault_secret_name: str | None = None
    user_principal_name: str | None = None
    """A user account's sign-in name, as Entra ID gave it when palctl signed it in."""
    customer_name: str | None = None
    correlation_id: str | None = None
    partner_id: str | None = None
    """The partner ID we asked for."""
    linked_partner_id: str | None = None
    """What Microsoft holds for this identity, as far as we last saw."""
    previous_partner_id: str | None = None
    object_id: str | None = None
    link_version: int | None = None
    reason: str | None = None
    code: str | None = None
    remediation: str | None = None
    last_checked_at: datetime | None = None
    last_linked_at: datetime | None = None
    verified_since: datetime | None = None
    """The verified interval: from the first of an unbroken run of verifications..."""
    verified_count: int | None = None
    """...and how many nights it has lasted."""
    consecutive_failures: int = 0
    last_message_id: str | None = None
    last_run_id: str | None = None
    first_seen_at: datetime | None = None
    offboarded_at: datetime | None = None
    """When the customer was offboarded (the first attempt to remove the link): the nightly run no
    longer checks the link and a body-less relink refuses it, until an onboarding starts anew."""
    earning: Earning | None = None
    """Azure recognition at the last check after a nightly verification (`shared.links.earning`)."""
    earning_roles: str | None = None
    """The identity's Azure role grants then, qualifying first: a JSON list of {role,
    roleDefinitionId, scope, qualifies}."""
    earning_reason: str | None = None
    earning_remediation: str | None = None
    earning_checked_at: datetime | None = None
    earning_since: datetime | None = None
    """Since when the recognition (status and qualifying grants) has been what it is."""
    earning_change: str | None = None
    """The code of the last change between nights (stopped-earning, roles-lost, ...)..."""
    earning_changed_run_id: str | None = None
    """...and the nightly run that found it."""
    partner_name: str | None = None
    """The link's own record as Microsoft holds it (read after a nightly verification, once per
    link version): the partner's name, when the link was created and last updated..."""
    link_created_at: datetime | None = None
    link_updated_at: datetime | None = None
    link_record_version: int | None = None
    """...and the link version that record is of."""

    CONVERT: ClassVar = {
        "outcome": OutcomeKind,
        "verified_count": int,
        "consecutive_failures": int,
        "earning": Earning,
        "link_record_version": int,
    }

    @property
    def is_healthy(self) -> bool:
        """Linked as asked: a message with another identity must prove itself before replacing it."""
        return self.outcome.is_success and not self.is_offboarded

    @property
    def is_offboarded(self) -> bool:
        return self.offboarded_at is not None

    @property
    def is_user(self) -> bool:
        """A user account's link: palctl keeps it, the service never signs in as it."""
        return self.identity_type == IdentityType.USER.value

    @property
    def identity(self) -> Identity | None:
        """The recorded identity, when the service can sign in as it unattended (None for a user
        account, or for a row that records no valid identity)."""
        if not (self.client_id and self.identity_type in UNATTENDED_TYPES):
            return None
        return Identity(IdentityType(self.identity_type), self.client_id, self.key_vault_secret_name or None)


def offboarded_at(source: str, previous: LinkState | None, now: datetime) -> datetime | None:
    """The state's `offboarded_at` after an attempt from `source`: set by the first offboarding
    attempt and kept by the later ones (and by anything else, say a verify message sent before);
    cleared by an onboarding or a relink, which start the customer's next chapter."""
    before = previous.offboarded_at if previous is not None else None
    if source == Source.OFFBOARDING:
        return before or now
    if source in (Source.ONBOARDING, Source.RELINK):
        return None
    return before


@dataclass(frozen=True, kw_only=True)
class HistoryEvent(TableRow):
    """One attempt's outcome, kept for good (the evidence)."""

    outcome: OutcomeKind
    event_time: datetime
    source: str | None = None
    message_id: str | None = None
    delivery_count: int | None = None
    attempt: int | None = None
    next_attempt_at: datetime | None = None
    client_id: str | None = None
    identity_type: str | None = None
    user_principal_name: str | None = None
    customer_name: str | None = None
    correlation_id: str | None = None
    requested_partner_id: str | None = None
    run_id: str | None = None
    reason: str | None = None
    code: str | None = None
    remediation: str | None = None
    details: str | None = None
    partner_id: str | None = None
    previous_partner_id: str | None = None
    object_id: str | None = None
    link_version: int | None = None
    retry_after_seconds: float | None = None
    duration_ms: float | None = None
    actor: str | None = None
    """Who asked for it: `name (objectId)` of the operator behind a dashboard action."""

    CONVERT: ClassVar = {"outcome": OutcomeKind}

    @property
    def is_final(self) -> bool:
        """The final outcome of its message's chain (no retry scheduled, nothing left to try)."""
        return is_final(self.outcome, retry_scheduled=self.next_attempt_at is not None)


@dataclass(frozen=True, kw_only=True)
class IntentRow(TableRow):
    """A `WriteIntent` as stored, under its chain."""

    original_message_id: str
    client_id: str = ""
    requested_partner_id: str = ""
    previous_partner_id: str | None = None
    previous_is_ours: bool = True
    recorded_at: datetime | None = None

    @property
    def intent(self) -> WriteIntent:
        return WriteIntent(
            client_id=self.client_id,
            requested_partner_id=self.requested_partner_id,
            previous_partner_id=self.previous_partner_id,
            previous_is_ours=self.previous_is_ours,
        )
