"""The one outcome type every path through the product ends in."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class OutcomeKind(StrEnum):
    """What happened to a link; the values are the product's vocabulary (logs, ledger, API)."""

    LINKED = "linked"
    ALREADY_LINKED = "already-linked"
    VERIFIED = "verified"
    """Re-verification found the link in place."""
    HEALED = "healed"
    """Re-verification found the link gone and made it again."""
    UPDATED = "updated"
    KEPT_OTHER_PARTNER = "kept-other-partner"
    """Linked to another of our own partner IDs (ALLOWED_PARTNER_IDS); kept: ON_OTHER_PARTNER=keep."""
    RECLAIMED = "reclaimed"
    """Found linked to a partner ID outside ALLOWED_PARTNER_IDS (an ALERT) and moved back to ours."""
    FOREIGN_PARTNER = "foreign-partner"
    """Found linked to a partner ID outside ALLOWED_PARTNER_IDS (an ALERT) and left so: keep."""
    NEEDS_CUSTOMER_ACTION = "needs-customer-action"
    PARTNER_CREDENTIAL_BROKEN = "partner-credential-broken"
    """Our shared credential (federated trust, or a secret many customers use) is broken: pauses all."""
    NEEDS_PARTNER_ACTION = "needs-partner-action"
    """This customer's own credential in Key Vault is missing, empty, malformed or not bound to it."""
    INVALID_PARTNER_ID = "invalid-partner-id"
    TRANSIENT = "transient"
    FAILED = "failed"
    """Transient failures outlasted every attempt; the nightly re-verification tries again."""
    REJECTED = "rejected"
    RETIRED = "retired"
    """An operator retired the identity's record: the nightly run no longer checks it."""
    UNLINKED = "unlinked"
    """Offboarded: the identity's link was removed (or none was left, or the identity itself is gone,
    and its link with it); the nightly run no longer checks it."""
    EARNING = "earning"
    """A history event only, never a link's state: the link's Azure recognition changed, and it earns."""
    NOT_EARNING = "not-earning"
    """A history event only: the recognition changed, and the linked identity holds no qualifying role."""
    EARNING_UNKNOWN = "earning-unknown"
    """A history event only: the recognition changed, and the identity may not read its role assignments."""

    @property
    def is_success(self) -> bool:
        return self in _SUCCESS

    @property
    def is_retryable(self) -> bool:
        """Worth another attempt later without anyone changing anything."""
        return self is OutcomeKind.TRANSIENT


_SUCCESS = frozenset(
    {
        OutcomeKind.LINKED,
        OutcomeKind.ALREADY_LINKED,
        OutcomeKind.VERIFIED,
        OutcomeKind.HEALED,
        OutcomeKind.UPDATED,
        OutcomeKind.KEPT_OTHER_PARTNER,
        OutcomeKind.RECLAIMED,
        OutcomeKind.UNLINKED,
    }
)


@dataclass(frozen=True)
class Outcome:
    """The result of one attempt, safe to log and store: it never holds a secret or raw input."""

    kind: OutcomeKind
    reason: str
    code: str | None = None
    """Machine-readable cause: an AADSTS code, an ARM error code or a rejection reason."""
    remediation: str | None = None
    """A sentence a partner can act on, for outcomes that need someone to do something."""
    partner_id: str | None = None
    previous_partner_id: str | None = None
    object_id: str | None = None
    """The object id of the identity's service principal in the customer tenant."""
    link_version: int | None = None
    retry_after: float | None = None
    """Seconds the server asked us to wait (transient outcomes only)."""
    details: tuple[str, ...] = field(default=())
    """Every problem found, for rejections (field and reason, never the value)."""
