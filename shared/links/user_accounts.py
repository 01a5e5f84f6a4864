"""User accounts' links, which only a person can sign in as (`palctl link-user`, `verify-user`,
`partner`): the pure rules of what palctl may record, as a typed `UserRecord`.

palctl signs the account in with the device-code flow, runs the same linker as the service (GET,
then PUT / PATCH / nothing, or DELETE) and reports what it did; the ledger records it as identity
type `user`, keyed by the account's object ID, with its sign-in name. The service takes the report
from a holder of a function key (an operator) but not its words: the reason recorded is composed here
from checked fields, every partner ID is checked against ours, and an outcome must fit the action
and what Azure was seen to hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from shared.spine.envelope import Source
from shared.spine.identifiers import is_partner_id
from shared.spine.outcomes import Outcome, OutcomeKind

__all__ = ["USER_RECORD_FIELDS", "UserAction", "UserRecord", "parse_user_record"]

_UPN = re.compile(r"[^\s@\x00-\x1f\x7f]{1,64}@[A-Za-z0-9.-]{1,255}")
_UPN_MAX = 113  # Entra ID's limit for a userPrincipalName
_NAME_MAX = 200
_E = TypeVar("_E", bound=StrEnum)


class UserAction(StrEnum):
    """What palctl did as the signed-in account."""

    LINK = "link"
    """`palctl link-user`: GET, then PUT, PATCH or nothing (the service's linker)."""
    VERIFY = "verify"
    """`palctl verify-user`: the nightly check, by a person (a missing link is made again)."""
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    """`palctl managementpartner create|update|delete` (az managementpartner's verbs)."""

    @property
    def source(self) -> Source:
        """How the ledger treats it: a deliberate link starts the customer's next chapter, a check
        keeps what was there, a removal stops the account's checks (as an offboarding does)."""
        if self is UserAction.VERIFY:
            return Source.VERIFY
        return Source.OFFBOARDING if self is UserAction.DELETE else Source.RELINK


_LINKING = frozenset(
    {
        OutcomeKind.LINKED,
        OutcomeKind.ALREADY_LINKED,
        OutcomeKind.UPDATED,
        OutcomeKind.RECLAIMED,
        OutcomeKind.KEPT_OTHER_PARTNER,
        OutcomeKind.FOREIGN_PARTNER,
    }
)
_OUTCOMES = {
    UserAction.LINK: _LINKING,
    UserAction.CREATE: _LINKING,
    UserAction.UPDATE: _LINKING,
    UserAction.VERIFY: (_LINKING - {OutcomeKind.LINKED, OutcomeKind.ALREADY_LINKED})
    | {OutcomeKind.VERIFIED, OutcomeKind.HEALED},
    UserAction.DELETE: frozenset({OutcomeKind.UNLINKED}),
}
USER_RECORD_FIELDS = {
    "action",
    "userPrincipalName",
    "outcome",
    "partnerId",
    "linkedPartnerId",
    "previousPartnerId",
    "linkVersion",
    "customerName",
    "correlationId",
}


@dataclass(frozen=True)
class UserRecord:
    """What palctl reports it did as a user account, once checked."""

    action: UserAction
    user_principal_name: str
    outcome: OutcomeKind
    partner_id: str
    """The partner ID asked for (one of ours)."""
    linked_partner_id: str | None
    """What Azure held after the action (None: no link)."""
    previous_partner_id: str | None = None
    link_version: int | None = None
    customer_name: str | None = None
    correlation_id: str | None = None

    def as_outcome(self, object_id: str) -> Outcome:
        """The outcome to record, its reason composed from the checked fields, never taken as sent."""
        return Outcome(
            self.outcome,
            _reason(self),
            remediation=_remediation(self),
            partner_id=self.linked_partner_id,
            previous_partner_id=self.previous_partner_id,
            object_id=object_id,
            link_version=self.link_version,
            details=(f"signed in interactively as {self.user_principal_name} (palctl, {self.action.value})",),
        )


def parse_user_record(
    document: dict[str, Any], allowed_partner_ids: frozenset[str]
) -> UserRecord | list[str]:
    """The record, or every problem with it (field names and rules only, never the values sent)."""
    problems: list[str] = []
    action = _choice(problems, document, "action", UserAction)
    outcome = _choice(problems, document, "outcome", OutcomeKind)
    upn = _upn(problems, document.get("userPrincipalName"))
    partner_id = _partner_id(problems, document, "partnerId", required=True)
    linked = _partner_id(problems, document, "linkedPartnerId")
    previous = _partner_id(problems, document, "previousPartnerId")
    version = document.get("linkVersion")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 0):
        problems.append("linkVersion: must be a whole number")
    names = [_text(problems, document, field) for field in ("customerName", "correlationId")]
    if partner_id is not None and partner_id not in allowed_partner_ids:
        problems.append("partnerId: not one of our partner IDs (ALLOWED_PARTNER_IDS)")
    if action is not None and outcome is not None and partner_id is not None:
        problems += _misfits(action, outcome, partner_id, linked, allowed_partner_ids)
    if problems or action is None or outcome is None or upn is None or partner_id is None:
        return problems
    return UserRecord(action, upn, outcome, partner_id, linked, previous, version, names[0], names[1])


def _misfits(
    action: UserAction, outcome: OutcomeKind, partner_id: str, linked: str | None, ours: frozenset[str]
) -> list[str]:
    """How the outcome does not fit the action or what Azure was seen to hold."""
    if outcome not in _OUTCOMES[action]:
        allowed = ", ".join(sorted(kind.value for kind in _OUTCOMES[action]))
        return [f"outcome: {outcome.value} is not an outcome of {action.value} (one of: {allowed})"]
    if outcome is OutcomeKind.UNLINKED:
        return [] if linked is None else ["linkedPartnerId: must be absent when the link was removed"]
    if linked is None:
        return [f"linkedPartnerId: required for {outcome.value}"]
    expected = {
        OutcomeKind.FOREIGN_PARTNER: linked not in ours,
        OutcomeKind.KEPT_OTHER_PARTNER: linked in ours and linked != partner_id,
    }.get(outcome, linked == partner_id)
    return [] if expected else [f"linkedPartnerId: does not fit the outcome {outcome.value}"]


def _choice(problems: list[str], document: dict[str, Any], name: str, kind: type[_E]) -> _E | None:
    value = document.get(name)
    if isinstance(value, str) and value in {member.value for member in kind}:
        return kind(value)
    problems.append(f"{name}: {'required' if value is None else 'not an accepted value'}")
    return None


def _upn(problems: list[str], value: Any) -> str | None:
    if isinstance(value, str) and len(value) <= _UPN_MAX and _UPN.fullmatch(value):
        return value
    problems.append("userPrincipalName: required, a sign-in name such as alex@contoso.com")
    return None


def _partner_id(
    problems: list[str], document: dict[str, Any], name: str, *, required: bool = False
) -> str | None:
    value = document.get(name)
    if value is None and not required:
        return None
    if isinstance(value, str) and is_partner_id(value):
        return value
    problems.append(f"{name}: {'required, ' if required else ''}a partner ID (6 to 10 digits)")
    return None


def _text(problems: list[str], document: dict[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    if isinstance(value, str) and 0 < len(value) <= _NAME_MAX and value.isprintable():
        return value
    problems.append(f"{name}: printable text of at most {_NAME_MAX} characters")
    return None


def _reason(record: UserRecord) -> str:
    linked, previous = record.linked_partner_id, record.previous_partner_id
    changed = f"changed the link from partner ID {previous or '(another)'} to {linked}"
    return {
        OutcomeKind.LINKED: f"linked to partner ID {linked}",
        OutcomeKind.ALREADY_LINKED: f"already linked to partner ID {linked}",
        OutcomeKind.VERIFIED: f"in place: linked to partner ID {linked}",
        OutcomeKind.HEALED: f"the link was missing and is made again: linked to partner ID {linked}",
        OutcomeKind.UPDATED: changed,
        OutcomeKind.RECLAIMED: changed,
        OutcomeKind.KEPT_OTHER_PARTNER: f"linked to another of our partner IDs ({linked}); kept",
        OutcomeKind.FOREIGN_PARTNER: f"linked to partner ID {linked}, which is not ours; kept",
        OutcomeKind.UNLINKED: f"removed the link to partner ID {previous}"
        if previous
        else "no link was in place",
    }[record.outcome]


def _remediation(record: UserRecord) -> str | None:
    if record.outcome is not OutcomeKind.FOREIGN_PARTNER:
        return None
    return (
        "Find out with the customer who linked this account to that partner ID; move it back with "
        "`palctl partner update` after signing in as the account."
    )
