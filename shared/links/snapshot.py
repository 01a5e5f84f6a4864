"""What the nightly run saw of a verified link's state row, carried in its verify message, so that a
steady night (nothing changed) needs no read of the ledger before its write.

The nightly run reads every state row to send the verify messages. For a row whose last outcome
was `verified` it adds a `StateSnapshot` (the application property STATE_PROPERTY): the row's ETag,
its verified count, the link-record version last read, and two digests of what a steady night
compares (the link as recorded; the Azure recognition as recorded). The worker then skips the
ledger's point read: when the night finds what the digests say, it extends the verified interval
with one MERGE conditioned on that ETag (`steady_columns`), exactly the columns a read would have
led to. Anything else reads the ledger and decides as before: another outcome, a changed
recognition, an ARM write about to be made, and a conditional write that lost (412: the row
changed since the nightly run read it).

Only a message's first delivery, as sent, is believed (a redelivery, a scheduled retry or a replay
reads: an earlier attempt of its chain may have left a receipt or an intent). The property is
validated like every `pal*` property; a malformed or missing one means the ledger is read, so an
older message without it works as before. A sender who forges one gains nothing: the write is
conditioned on the row's real ETag and made only when ARM itself found what the digests say.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.links.earning import encode_grants
from shared.links.recognition import Recognition
from shared.links.rows import LinkState
from shared.spine.envelope import STATE_PROPERTY
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.table_row import column_name

if TYPE_CHECKING:
    from shared.links.ledger import Attempt, LedgerView

__all__ = ["StateSnapshot", "snapshot_properties", "steady_columns"]

_DIGEST = re.compile(r"[0-9a-f]{32}")
_ETAG = re.compile(r"[\x21-\x7e]{1,200}")
_MAX_COUNT = 10**9
_KEYS = frozenset({"etag", "count", "record", "link", "earning"})


@dataclass(frozen=True)
class StateSnapshot:
    """A verified link's state row as the nightly run read it (see the module's docstring)."""

    etag: str
    verified_count: int | None
    record_version: int | None
    link_digest: str
    earning_digest: str | None
    """None when the row's recognition cannot be matched by a steady night (none recorded yet)."""

    @classmethod
    def of_state(cls, state: LinkState) -> StateSnapshot | None:
        """The snapshot of a row a steady night can extend: verified, read with its ETag."""
        if state.outcome is not OutcomeKind.VERIFIED or not state.etag or state.is_offboarded:
            return None
        if not _ETAG.fullmatch(state.etag):
            return None
        return cls(
            etag=state.etag,
            verified_count=state.verified_count,
            record_version=state.link_record_version,
            link_digest=_digest(
                OutcomeKind.VERIFIED.value,
                state.identity_type,
                state.key_vault_secret_name,
                state.linked_partner_id,
                state.object_id,
                state.link_version,
                state.partner_id,
            ),
            earning_digest=_recorded_earning(state),
        )

    def holds(self, view: LedgerView) -> bool:
        """The ledger, as read now, is what the nightly run saw: the same row (ETag), and no receipt
        or intent of the message's chain."""
        state = view.state
        unchanged = state is not None and state.etag == self.etag
        return unchanged and view.receipt is None and view.intent_row is None

    def to_property(self) -> str:
        document = {
            "etag": self.etag,
            "count": self.verified_count,
            "record": self.record_version,
            "link": self.link_digest,
            "earning": self.earning_digest,
        }
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def of_properties(cls, properties: Mapping[str, Any]) -> StateSnapshot | None:
        """The snapshot a message carries, when it is well-formed; None otherwise (read the ledger)."""
        raw = properties.get(STATE_PROPERTY)
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        if not isinstance(raw, str) or len(raw) > 512:
            return None
        try:
            document = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(document, dict) or set(document) != _KEYS:
            return None
        etag, link, earning = document["etag"], document["link"], document["earning"]
        count, record = _count(document["count"]), _count(document["record"])
        valid = (
            isinstance(etag, str)
            and _ETAG.fullmatch(etag) is not None
            and isinstance(link, str)
            and _DIGEST.fullmatch(link) is not None
            and (earning is None or (isinstance(earning, str) and _DIGEST.fullmatch(earning) is not None))
            and count is not False
            and record is not False
        )
        if not valid:
            return None
        assert count is not False and record is not False
        return cls(etag, count, record, link, earning)


def snapshot_properties(state: LinkState) -> dict[str, str]:
    """The application properties that carry the row's snapshot (none for a row it does not fit)."""
    snapshot = StateSnapshot.of_state(state)
    return {STATE_PROPERTY: snapshot.to_property()} if snapshot is not None else {}


def steady_columns(
    snapshot: StateSnapshot,
    attempt: Attempt,
    outcome: Outcome,
    recognition: Recognition | None,
    now: datetime,
) -> dict[str, Any] | None:
    """The columns a steady night MERGEs into the row (if it still has the snapshot's ETag), or None
    when the night did not find what the row holds: then the ledger is read and decides.

    The same columns as `Ledger._extend_verification` writes after a read: the verified interval
    grows by one night, and the recognition's check time moves when it was checked and unchanged.
    A recognition with the link's own record (read when its version changed) is never steady here.
    """
    if outcome.kind is not OutcomeKind.VERIFIED:
        return None
    found = _digest(
        OutcomeKind.VERIFIED.value,
        attempt.identity_type,
        attempt.key_vault_secret_name,
        outcome.partner_id,
        outcome.object_id,
        outcome.link_version,
        attempt.partner_id,
    )
    if found != snapshot.link_digest:
        return None
    if recognition is not None and (
        recognition.record is not None
        or snapshot.earning_digest is None
        or _earning(recognition) != snapshot.earning_digest
    ):
        return None
    columns: dict[str, Any] = {
        "last_checked_at": now,
        "last_linked_at": now,
        "verified_count": (snapshot.verified_count or 1) + 1,
        "last_message_id": attempt.message_id,
    }
    if attempt.run_id:
        columns["last_run_id"] = attempt.run_id
    if recognition is not None:
        columns["earning_checked_at"] = now
    return {column_name(name): value for name, value in columns.items()}


def _recorded_earning(state: LinkState) -> str | None:
    """The digest of the row's recognition; None when a check must rewrite the row whatever it
    finds (no recognition yet, no start of it, or a change code without its run)."""
    if state.earning is None or state.earning_since is None:
        return None
    if (state.earning_change is None) != (state.earning_changed_run_id is None):
        return None
    return _digest(state.earning.value, state.earning_roles, state.earning_reason, state.earning_remediation)


def _earning(recognition: Recognition) -> str:
    return _digest(
        recognition.status.value,
        encode_grants(recognition.grants),
        recognition.reason,
        recognition.remediation,
    )


def _digest(*values: Any) -> str:
    text = json.dumps(values, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _count(value: Any) -> int | None | bool:
    """A count from the property: None, a whole number from 0, or False for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
        return False
    return value
