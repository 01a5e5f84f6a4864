"""Coverage: when, within a period, each identity's link was linked to one of our partner IDs, and
the gaps with their reasons. Pure: computed from observations, read by `shared.links.coverage_api`.

The ledger writes a history event only when something changed; a night that found everything as
before extends the state's verified interval and leaves its proof in the run record. So the
observations of an identity are:
- its history events (each says what was found: linked, healed after a removal, re-pointed,
  identity gone, offboarded, ...);
- every complete nightly run that wrote no event for it while it was linked (the run checked every
  link and found nothing changed);
- the current state's last check, while it is linked.

Between two observations the link is taken as the earlier one found it, for at most `MAX_SILENCE`
(one night and a margin) after a linked observation; longer silence is a gap `unknown`. A
discovery (healed after a removal, reclaimed from another partner, found re-pointed) ends the
linked interval at the last observation that found it linked: when in between it changed is not
known, so the whole span is the gap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from shared.links.rows import HistoryEvent, LinkState
from shared.links.runs import RunRecord
from shared.spine.errors import IDENTITY_GONE
from shared.spine.outcomes import OutcomeKind

__all__ = [
    "MAX_SILENCE",
    "Coverage",
    "Gap",
    "GapReason",
    "Interval",
    "Observation",
    "coverage_of",
    "observations_of",
]

MAX_SILENCE = timedelta(hours=26)
"""How long after a check that found the link in place it is taken as still in place."""


class GapReason(StrEnum):
    """Why the link was not linked to one of our partner IDs."""

    REMOVED = "removed"
    """Found gone by a nightly check (and healed): removed some time after the last check before."""
    REPOINTED = "re-pointed"
    """Linked to a partner ID that is not ours."""
    IDENTITY_GONE = "identity-gone"
    """The identity could not sign in (service principal deleted, consent withdrawn or never given)."""
    OFFBOARDED = "offboarded"
    NOT_ONBOARDED = "not-onboarded"
    """Before the first observation of the identity."""
    UNKNOWN = "unknown"
    """Not checked: no complete nightly run or event for longer than a night, or the record retired."""


@dataclass(frozen=True)
class Observation:
    """What one check (or event) found at `at`. `linked` None: the same as the check before."""

    at: datetime
    linked: bool | None
    partner_id: str | None = None
    reason: GapReason | None = None
    """Why not linked (for `linked` False)."""
    before: GapReason | None = None
    """What the state was just before, when the observation discovered it (healed: removed)."""
    detail: str | None = None
    changed_now: bool = False
    """The change happened at `at` (we removed the link, or retired the record): not discovered."""


@dataclass(frozen=True)
class Interval:
    """Linked to one of our partner IDs from `start` to `end`."""

    start: datetime
    end: datetime
    partner_id: str | None = None


@dataclass(frozen=True)
class Gap:
    """Not linked (or not known to be) from `start` to `end`, and why."""

    start: datetime
    end: datetime
    reason: GapReason
    detail: str | None = None


@dataclass(frozen=True)
class Coverage:
    """One identity's coverage of the period."""

    client_id: str
    start: datetime
    end: datetime
    intervals: list[Interval] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    last_observed_at: datetime | None = None

    @property
    def linked_throughout(self) -> bool:
        return not self.gaps and bool(self.intervals)


_LINKED = {
    OutcomeKind.LINKED,
    OutcomeKind.ALREADY_LINKED,
    OutcomeKind.VERIFIED,
    OutcomeKind.UPDATED,
    OutcomeKind.KEPT_OTHER_PARTNER,
}
_SAME = {OutcomeKind.EARNING, OutcomeKind.NOT_EARNING, OutcomeKind.EARNING_UNKNOWN}
"""Recognition changes: read right after a verification that found the link in place."""


def _linked(event: HistoryEvent) -> Observation:
    return Observation(event.event_time, True, event.partner_id)


def _healed(event: HistoryEvent) -> Observation:
    return Observation(
        event.event_time, True, event.partner_id, before=GapReason.REMOVED, detail=event.reason
    )


def _reclaimed(event: HistoryEvent) -> Observation:
    detail = f"linked to partner ID {event.previous_partner_id} until reclaimed"
    return Observation(event.event_time, True, event.partner_id, before=GapReason.REPOINTED, detail=detail)


def _foreign(event: HistoryEvent) -> Observation:
    return Observation(event.event_time, False, reason=GapReason.REPOINTED, detail=event.reason)


def _unlinked(event: HistoryEvent) -> Observation:
    """The offboarding removed the link then; an identity already gone took it earlier."""
    known = event.code not in IDENTITY_GONE
    return Observation(
        event.event_time, False, reason=GapReason.OFFBOARDED, detail=event.reason, changed_now=known
    )


def _cannot_sign_in(event: HistoryEvent) -> Observation:
    gone = GapReason.IDENTITY_GONE if event.code in IDENTITY_GONE else GapReason.UNKNOWN
    return Observation(event.event_time, False, reason=gone, detail=event.reason)


def _retired(event: HistoryEvent) -> Observation:
    detail = "record retired: no longer checked"
    return Observation(event.event_time, False, reason=GapReason.UNKNOWN, detail=detail, changed_now=True)


def _same(event: HistoryEvent) -> Observation:
    return Observation(event.event_time, None)


_OBSERVE: dict[OutcomeKind, Callable[[HistoryEvent], Observation]] = {
    **dict.fromkeys(_LINKED, _linked),
    OutcomeKind.HEALED: _healed,
    OutcomeKind.RECLAIMED: _reclaimed,
    OutcomeKind.FOREIGN_PARTNER: _foreign,
    OutcomeKind.UNLINKED: _unlinked,
    OutcomeKind.NEEDS_CUSTOMER_ACTION: _cannot_sign_in,
    OutcomeKind.RETIRED: _retired,
    **dict.fromkeys(_SAME, _same),
}


def observation_of(event: HistoryEvent) -> Observation | None:
    """What an event says about the link; None when it says nothing (a rejection, a transient or
    failed attempt, a problem on our side: the silence rule decides)."""
    observe = _OBSERVE.get(event.outcome)
    return observe(event) if observe is not None else None


def observations_of(
    client_id: str,
    events: Iterable[HistoryEvent],
    runs: Iterable[RunRecord],
    state: LinkState | None,
) -> list[Observation]:
    """The identity's observations, oldest first: its events, the complete runs that wrote no event
    for it (each a check that found nothing changed), and the state's last check while linked."""
    mine = [event for event in events if event.client_id == client_id]
    found = [o for o in (observation_of(event) for event in mine) if o is not None]
    with_events = {event.run_id for event in mine if event.run_id}
    first = min((o.at for o in found), default=None)
    silent_runs = [
        Observation(run.started_at, None)
        for run in runs
        if run.complete and run.run_id not in with_events and first is not None and run.started_at > first
    ]
    current = []
    if state is not None and state.last_checked_at and state.outcome.is_success and not state.is_offboarded:
        current = [Observation(state.last_checked_at, None, state.linked_partner_id)]
    return sorted(found + silent_runs + current, key=lambda o: o.at)


_BEGINNING = datetime.min.replace(tzinfo=UTC)


@dataclass
class _Walk:
    """The timeline built so far: closed spans, and the open one (linked since `since`, last found
    linked at `seen`; or not linked since `since`, for `reason`)."""

    spans: list[Interval | Gap] = field(default_factory=list)
    linked: bool = False
    since: datetime = _BEGINNING
    seen: datetime = _BEGINNING
    partner_id: str | None = None
    reason: GapReason = GapReason.NOT_ONBOARDED
    detail: str | None = None

    def step(self, o: Observation) -> None:
        """Take one observation (oldest first) into the timeline."""
        if not self.linked:
            if o.linked:
                self._link(o)
            elif o.linked is False and (o.reason, o.detail) != (self.reason, self.detail):
                self._gap_until(o.at)
                self.since, self.reason, self.detail = o.at, o.reason or GapReason.UNKNOWN, o.detail
            return
        if o.changed_now and o.at - self.seen <= MAX_SILENCE:
            self._unlink(o.at, o.reason or GapReason.UNKNOWN, o.detail)
        elif o.before is not None or o.linked is False:  # a discovery: unknown when it changed
            self._unlink(self.seen, o.before or o.reason or GapReason.UNKNOWN, o.detail)
            if o.linked:
                self._link(o)
        elif o.at - self.seen > MAX_SILENCE:
            self._unlink(self.seen + MAX_SILENCE, GapReason.UNKNOWN, "not checked")
            self._link(o)
        elif o.linked and o.partner_id and o.partner_id != self.partner_id:
            self.spans.append(Interval(self.since, o.at, self.partner_id))
            self.since, self.seen, self.partner_id = o.at, o.at, o.partner_id
        else:
            self.seen = o.at

    def finish(self, end: datetime) -> None:
        """Close the open span at `end`: a linked one is carried at most `MAX_SILENCE` past its last check."""
        if self.linked and end - self.seen > MAX_SILENCE:
            self._unlink(self.seen + MAX_SILENCE, GapReason.UNKNOWN, "not checked since")
        if self.linked:
            self.spans.append(Interval(self.since, end, self.partner_id))
        else:
            self._gap_until(end)

    def _link(self, o: Observation) -> None:
        self._gap_until(o.at)
        self.linked, self.since, self.seen = True, o.at, o.at
        self.partner_id = o.partner_id or self.partner_id

    def _unlink(self, at: datetime, reason: GapReason, detail: str | None) -> None:
        self.spans.append(Interval(self.since, at, self.partner_id))
        self.linked, self.since, self.reason, self.detail = False, at, reason, detail

    def _gap_until(self, at: datetime) -> None:
        self.spans.append(Gap(self.since, at, self.reason, self.detail))


def coverage_of(
    client_id: str, observations: Sequence[Observation], start: datetime, end: datetime
) -> Coverage:
    """The identity's intervals and gaps within [start, end), from its observations (oldest first)."""
    walk = _Walk()
    for observation in observations:
        if observation.at >= end:
            break
        walk.step(observation)
    walk.finish(end)
    clipped = [_clip(span, start, end) for span in walk.spans]
    kept = [span for span in clipped if span is not None]
    return Coverage(
        client_id,
        start,
        end,
        intervals=[span for span in kept if isinstance(span, Interval)],
        gaps=[span for span in kept if isinstance(span, Gap)],
        last_observed_at=max((o.at for o in observations if o.at < end), default=None),
    )


def _clip(span: Interval | Gap, start: datetime, end: datetime) -> Interval | Gap | None:
    """The span within [start, end); None when nothing of it is."""
    begin, finish = max(span.start, start), min(span.end, end)
    if finish <= begin:
        return None
    if isinstance(span, Interval):
        return Interval(begin, finish, span.partner_id)
    return Gap(begin, finish, span.reason, span.detail)
