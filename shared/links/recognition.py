"""Is a link earning? The linked identity's Azure recognition, decided from its own role assignments.

For Azure consumption a link alone earns nothing: Microsoft recognises the partner through the
linked identity's role assignments on the customer's resources, under each assignment's scope, and
only for the roles its partner earned credit table marks eligible (`shared.links.qualifying_roles`).
ARM lists only active assignments: a PIM-eligible role appears (and earns) only while it is
activated, which is what Microsoft counts too.

A link is
- `earning`: at least one assignment of a qualifying role (the roles and their scopes are listed);
- `not-earning`: none, with the sentence to send the customer (the least-privilege qualifying role
  to ask for, and where);
- `unknown`: the identity may not read its assignments (401/403) and nothing it could read earns.

This module is the decision (`decide`) and its types, pure; `shared.links.recognition_arm` reads
ARM as the identity and calls it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.links.qualifying_roles import LEAST_PRIVILEGE

__all__ = ["Earning", "LinkRecord", "Recognition", "RoleGrant", "Subscription", "decide"]

_MAX_GRANTS = 100
"""Grants kept per link (qualifying first): a row's text column holds 32K characters."""
_SHOWN = 5
"""Subscriptions (and grants) named in a sentence; the rest are counted."""


class Earning(StrEnum):
    """A link's Azure recognition at its last check."""

    EARNING = "earning"
    NOT_EARNING = "not-earning"
    UNKNOWN = "unknown"


@dataclass(frozen=True, order=True)
class RoleGrant:
    """One role the identity holds at one scope, and whether that role earns partner credit."""

    role: str
    role_definition_id: str
    scope: str
    qualifies: bool

    @property
    def key(self) -> tuple[str, str]:
        """What makes two grants the same grant: the role and the scope (any case)."""
        return self.role_definition_id.lower(), self.scope.lower()

    @property
    def label(self) -> str:
        return f"{self.role} on {self.scope}"


@dataclass(frozen=True)
class Subscription:
    subscription_id: str
    display_name: str

    @property
    def label(self) -> str:
        return f"{self.display_name} ({self.subscription_id})"


@dataclass(frozen=True)
class LinkRecord:
    """The link's own record as Microsoft holds it (`GET .../partners` as the linked identity): what
    Microsoft's attestation script prints beside the identity's IDs. Read once per link version, and
    kept only when it is the link just verified."""

    partner_id: str
    object_id: str
    partner_name: str | None
    created: datetime | None
    updated: datetime | None
    version: int | None


@dataclass(frozen=True)
class Recognition:
    """One check's answer: the status, every grant found (qualifying first), why, and what to do."""

    status: Earning
    grants: tuple[RoleGrant, ...]
    reason: str
    remediation: str | None = None
    record: LinkRecord | None = None
    """The link's own record (partner name, created and updated times), when it was read too."""

    @property
    def qualifying(self) -> tuple[RoleGrant, ...]:
        return tuple(grant for grant in self.grants if grant.qualifies)


def decide(
    subscriptions: Sequence[Subscription],
    refused: Sequence[Subscription],
    grants: Iterable[RoleGrant],
    *,
    client_id: str,
) -> Recognition:
    """The recognition of an identity that sees `subscriptions`, may not read its assignments in
    `refused` (a subset), and holds `grants` in the others."""
    kept = tuple(sorted(set(grants), key=lambda grant: (not grant.qualifies, grant)))[:_MAX_GRANTS]
    qualifying = [grant for grant in kept if grant.qualifies]
    if qualifying:
        return Recognition(Earning.EARNING, kept, f"qualifying Azure roles: {_labels(qualifying)}")
    app = f"the partner's app (client ID {client_id})"
    if refused:
        where = _names(refused)
        return Recognition(
            Earning.UNKNOWN,
            kept,
            f"the identity may not read its role assignments in {where}",
            f"Ask the customer to assign {app} the {LEAST_PRIVILEGE.name} role (the least privilege that "
            f"earns partner credit; it can also read role assignments) on {where}, or confirm which "
            "qualifying role it holds there.",
        )
    held = f"; it holds only {_labels(kept)}" if kept else ""
    sees = _names(subscriptions) if subscriptions else None
    reason = f"no qualifying Azure role{held}" if sees else "the identity sees no Azure subscription"
    where = f"on {sees}" if sees else "on each subscription the partner manages"
    return Recognition(
        Earning.NOT_EARNING,
        kept,
        reason,
        f"Ask the customer to assign {app} a permanent Azure role that earns partner credit {where}: "
        f"{LEAST_PRIVILEGE.name} is the least privilege that qualifies, Contributor when the work "
        "changes resources. Read-only roles such as Reader do not qualify, and a PIM-eligible role "
        "counts only while it is active.",
    )


def _labels(grants: Sequence[RoleGrant]) -> str:
    shown = ", ".join(grant.label for grant in grants[:_SHOWN])
    return shown + (f" and {len(grants) - _SHOWN} more" if len(grants) > _SHOWN else "")


def _names(subscriptions: Sequence[Subscription]) -> str:
    shown = ", ".join(subscription.label for subscription in subscriptions[:_SHOWN])
    more = len(subscriptions) - _SHOWN
    return "subscription " + shown + (f" and {more} more" if more > 0 else "")
