"""A link's Azure recognition as the ledger keeps it: columns on the link's state row, written by the
nightly verification's own write, and a history event when it changes between nights.

A night whose check finds what the last one found adds only `EarningCheckedAt` to the verified
interval's MERGE: no event. A change of status or of the qualifying grants (a role removed,
downgraded to one that does not qualify, a subscription gone) is one history event, whose outcome is
the new status (`earning`, `not-earning`, `earning-unknown`) and whose code says what changed, and a
WARNING when recognition was lost. A link's first check records its recognition without an event:
nothing changed between nights. A check that could not be made (None) keeps what the row held.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.links.recognition import Earning, Recognition, RoleGrant
from shared.links.rows import LinkState
from shared.spine.outcomes import Outcome, OutcomeKind

if TYPE_CHECKING:
    from shared.links.ledger import Attempt

__all__ = [
    "STOPPED_EARNING",
    "Noted",
    "change_between",
    "encode_grants",
    "grants_of",
    "log_change",
    "note",
    "roles_view",
]

logger = logging.getLogger(__name__)

STOPPED_EARNING = "stopped-earning"
"""The change the nightly run counts: earning one night, not the next."""
_LOSSES = frozenset({STOPPED_EARNING, "roles-lost", "earning-unknown"})
_EVENT_KINDS = {
    Earning.EARNING: OutcomeKind.EARNING,
    Earning.NOT_EARNING: OutcomeKind.NOT_EARNING,
    Earning.UNKNOWN: OutcomeKind.EARNING_UNKNOWN,
}
_FIELDS = (
    "earning",
    "earning_roles",
    "earning_reason",
    "earning_remediation",
    "earning_checked_at",
    "earning_since",
    "earning_change",
    "earning_changed_run_id",
    "partner_name",
    "link_created_at",
    "link_updated_at",
    "link_record_version",
)
_COMPARED = tuple(name for name in _FIELDS if name != "earning_checked_at")


@dataclass(frozen=True)
class Noted:
    """What one check does to the link's state row."""

    state: LinkState
    """The state with the recognition written in (or kept from before)."""
    change: Outcome | None = None
    """The history event's outcome when the recognition changed between nights."""
    rewrite: bool = False
    """The stored recognition differs from the row's: the row is written whole, not merged."""
    checked: dict[str, datetime] = field(default_factory=dict)
    """The fields a MERGE adds when nothing else differs (the time of the check)."""


def note(
    state: LinkState,
    previous: LinkState | None,
    recognition: Recognition | None,
    *,
    at: datetime,
    run_id: str | None,
) -> Noted:
    """`state` (the link's next state) with this check's recognition, or with the previous row's
    recognition when none was checked (a whole-row write must not drop it)."""
    if recognition is None:
        kept = {name: getattr(previous, name) for name in _FIELDS} if previous is not None else {}
        return Noted(state.replace(**kept))
    change = change_between(previous, recognition)
    before = previous if previous is not None and previous.earning is not None else None
    if change is not None or before is None:  # a new recognition (or the first): it starts now
        since, code, changed_in = at, change.code if change is not None else None, run_id
    else:
        since, code, changed_in = (
            before.earning_since or at,
            before.earning_change,
            before.earning_changed_run_id,
        )
    record = recognition.record
    written = state.replace(
        partner_name=record.partner_name if record else _kept(previous, "partner_name"),
        link_created_at=record.created if record else _kept(previous, "link_created_at"),
        link_updated_at=record.updated if record else _kept(previous, "link_updated_at"),
        link_record_version=record.version if record else _kept(previous, "link_record_version"),
        earning=recognition.status,
        earning_roles=encode_grants(recognition.grants),
        earning_reason=recognition.reason,
        earning_remediation=recognition.remediation,
        earning_checked_at=at,
        earning_since=since,
        earning_change=code,
        earning_changed_run_id=changed_in if code is not None else None,
    )
    rewrite = previous is None or _compared(written) != _compared(previous)
    return Noted(written, change, rewrite, {"earning_checked_at": at})


def change_between(previous: LinkState | None, recognition: Recognition) -> Outcome | None:
    """The history event's outcome when the recognition differs from the row's; None when it is the
    same, or when the row held none (a first check is not a change)."""
    before = previous.earning if previous is not None else None
    if previous is None or before is None:
        return None
    was = {grant.key: grant for grant in grants_of(previous) if grant.qualifies}
    now = {grant.key: grant for grant in recognition.qualifying}
    lost = [grant for key, grant in sorted(was.items()) if key not in now]
    gained = [grant for key, grant in sorted(now.items()) if key not in was]
    code = _code(before, recognition.status, lost=bool(lost), gained=bool(gained))
    if code is None:
        return None
    details = tuple(f"lost: {grant.label}" for grant in lost) + tuple(
        f"gained: {grant.label}" for grant in gained
    )
    reason = recognition.reason + (
        f"; no longer: {', '.join(grant.label for grant in lost[:5])}" if lost else ""
    )
    return Outcome(
        _EVENT_KINDS[recognition.status],
        reason,
        code=code,
        remediation=recognition.remediation,
        object_id=previous.object_id,
        details=details,
    )


def _code(before: Earning, now: Earning, *, lost: bool, gained: bool) -> str | None:
    if before is now:
        if now is not Earning.EARNING:
            return None
        return "roles-lost" if lost else ("roles-gained" if gained else None)
    if now is Earning.EARNING:
        return "started-earning"
    if now is Earning.UNKNOWN:
        return "earning-unknown"
    return STOPPED_EARNING if before is Earning.EARNING else "not-earning"


def log_change(attempt: Attempt, change: Outcome | None) -> None:
    """One line per change between nights: a WARNING when recognition was lost, INFO otherwise."""
    if change is None:
        return
    fields = {
        "customerTenantId": attempt.customer_tenant_id,
        "clientId": attempt.client_id,
        "runId": attempt.run_id,
        "earning": change.kind.value,
        "code": change.code,
    }
    level = logging.WARNING if change.code in _LOSSES else logging.INFO
    text = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
    logger.log(level, "Azure recognition changed: %s reason=%r", text, change.reason, extra=fields)


def stopped_in(state: LinkState, run_id: str) -> bool:
    """Whether the link stopped earning in this nightly run."""
    return state.earning_change == STOPPED_EARNING and state.earning_changed_run_id == run_id


def grants_of(state: LinkState) -> tuple[RoleGrant, ...]:
    """The role grants the row records (a malformed entry, from whatever wrote it, is left out)."""
    try:
        items = json.loads(state.earning_roles) if state.earning_roles else []
    except ValueError:
        return ()
    grants = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        role, definition, scope = item.get("role"), item.get("roleDefinitionId"), item.get("scope")
        qualifies = item.get("qualifies")
        if isinstance(role, str) and isinstance(definition, str) and isinstance(scope, str):
            grants.append(RoleGrant(role, definition, scope, qualifies is True))
    return tuple(grants)


def roles_view(state: LinkState) -> dict[str, Any]:
    """The API's `earningRoles` for a state row that has a recognition."""
    if state.earning is None:
        return {}
    return {"earningRoles": [_item(grant) for grant in grants_of(state)]}


def _item(grant: RoleGrant) -> dict[str, str | bool]:
    return {
        "role": grant.role,
        "roleDefinitionId": grant.role_definition_id,
        "scope": grant.scope,
        "qualifies": grant.qualifies,
    }


def encode_grants(grants: tuple[RoleGrant, ...]) -> str:
    """The `EarningRoles` column's text for these grants (compact JSON)."""
    return json.dumps([_item(grant) for grant in grants], separators=(",", ":"))


def _kept(previous: LinkState | None, name: str) -> Any:
    return getattr(previous, name) if previous is not None else None


def _compared(state: LinkState) -> tuple[object, ...]:
    return tuple(getattr(state, name) for name in _COMPARED)
