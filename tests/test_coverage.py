"""Coverage intervals and gaps, table-driven: the pure computation of `shared.links.coverage` from
history events, nightly run records and the current state."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.links.coverage import Gap, GapReason, Interval, coverage_of, observations_of
from shared.links.rows import HistoryEvent, LinkState
from shared.links.runs import RUNS_PARTITION, RunRecord
from shared.spine.outcomes import OutcomeKind
from tenants import NORTHWIND, OTHER_PARTNER_ID, PARTNER_ID

CLIENT = "00000000-0000-0000-0000-00000000c11e"
MARCH, APRIL = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)


def night(day: datetime, minutes: int = 0) -> datetime:
    """02:00 UTC that day (the run's start), plus a few minutes (its checks)."""
    return day.replace(hour=2, minute=minutes)


def day(month: int, number: int) -> datetime:
    return datetime(2026, month, number, tzinfo=UTC)


def event(at: datetime, outcome: OutcomeKind, *, run: bool = True, **fields: Any) -> HistoryEvent:
    return HistoryEvent(
        partition_key=NORTHWIND,
        row_key=f"event~{at.isoformat()}",
        event_time=at,
        outcome=outcome,
        client_id=fields.pop("client_id", CLIENT),
        partner_id=fields.pop("partner_id", PARTNER_ID),
        run_id=at.date().isoformat() if run else None,
        **fields,
    )


def runs(first: datetime, last: datetime, *, skip: tuple[datetime, ...] = ()) -> list[RunRecord]:
    """A complete run every night from `first` to `last`, except the days in `skip`."""
    records, current = [], first
    while current <= last:
        if current not in skip:
            started = night(current)
            records.append(
                RunRecord(
                    partition_key=RUNS_PARTITION,
                    row_key=current.date().isoformat(),
                    total=1,
                    started_at=started,
                    ended_at=started + timedelta(minutes=10),
                    complete=True,
                )
            )
        current += timedelta(days=1)
    return records


ONBOARDED = event(day(2, 20) + timedelta(hours=9), OutcomeKind.ALREADY_LINKED, run=False)
FIRST_VERIFIED = event(night(day(2, 21), 1), OutcomeKind.VERIFIED)


@dataclass
class Case:
    name: str
    events: list[HistoryEvent]
    intervals: list[tuple[datetime, datetime]]
    gaps: list[tuple[datetime, datetime, GapReason]]
    nights: list[RunRecord] = field(default_factory=lambda: runs(day(2, 21), day(4, 2)))
    state: LinkState | None = None


CASES = [
    Case("linked throughout", [ONBOARDED, FIRST_VERIFIED], [(MARCH, APRIL)], []),
    Case(
        "removed and healed inside the period",
        [
            ONBOARDED,
            FIRST_VERIFIED,
            event(night(day(3, 10), 1), OutcomeKind.HEALED),
            event(night(day(3, 11), 1), OutcomeKind.VERIFIED),
        ],
        [(MARCH, night(day(3, 9))), (night(day(3, 10), 1), APRIL)],
        [(night(day(3, 9)), night(day(3, 10), 1), GapReason.REMOVED)],
    ),
    Case(
        "offboarded",
        [ONBOARDED, FIRST_VERIFIED, event(day(3, 15) + timedelta(hours=12), OutcomeKind.UNLINKED, run=False)],
        [(MARCH, day(3, 15) + timedelta(hours=12))],
        [(day(3, 15) + timedelta(hours=12), APRIL, GapReason.OFFBOARDED)],
    ),
    Case(
        "re-pointed to another partner and reclaimed",
        [
            ONBOARDED,
            FIRST_VERIFIED,
            event(night(day(3, 5), 1), OutcomeKind.RECLAIMED, previous_partner_id=OTHER_PARTNER_ID),
            event(night(day(3, 6), 1), OutcomeKind.VERIFIED),
        ],
        [(MARCH, night(day(3, 4))), (night(day(3, 5), 1), APRIL)],
        [(night(day(3, 4)), night(day(3, 5), 1), GapReason.REPOINTED)],
    ),
    Case(
        "re-pointed and kept so",
        [ONBOARDED, FIRST_VERIFIED, event(night(day(3, 5), 1), OutcomeKind.FOREIGN_PARTNER)],
        [(MARCH, night(day(3, 4)))],
        [(night(day(3, 4)), APRIL, GapReason.REPOINTED)],
    ),
    Case(
        "period before onboarding",
        [event(day(3, 10), OutcomeKind.LINKED, run=False), event(night(day(3, 11), 1), OutcomeKind.VERIFIED)],
        [(day(3, 10), APRIL)],
        [(MARCH, day(3, 10), GapReason.NOT_ONBOARDED)],
    ),
    Case(
        "identity gone",
        [
            ONBOARDED,
            FIRST_VERIFIED,
            event(night(day(3, 7), 1), OutcomeKind.NEEDS_CUSTOMER_ACTION, code="AADSTS700016"),
        ],
        [(MARCH, night(day(3, 6)))],
        [(night(day(3, 6)), APRIL, GapReason.IDENTITY_GONE)],
    ),
    Case(
        "nights without a run are not checked",
        [ONBOARDED, FIRST_VERIFIED],
        [(MARCH, night(day(3, 10)) + timedelta(hours=26)), (night(day(3, 14)), APRIL)],
        [(night(day(3, 10)) + timedelta(hours=26), night(day(3, 14)), GapReason.UNKNOWN)],
        nights=runs(day(2, 21), day(4, 2), skip=(day(3, 11), day(3, 12), day(3, 13))),
    ),
    Case(
        "another identity's events are not this one's",
        [ONBOARDED, FIRST_VERIFIED, event(night(day(3, 10), 1), OutcomeKind.HEALED, client_id="other")],
        [(MARCH, APRIL)],
        [],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_coverage(case: Case) -> None:
    observations = observations_of(CLIENT, case.events, case.nights, case.state)
    coverage = coverage_of(CLIENT, observations, MARCH, APRIL)
    assert [(i.start, i.end) for i in coverage.intervals] == case.intervals
    assert [(g.start, g.end, g.reason) for g in coverage.gaps] == case.gaps
    assert coverage.linked_throughout == (not case.gaps)


def test_the_state_last_check_carries_the_link_one_night_and_no_further() -> None:
    state = LinkState(
        partition_key=NORTHWIND,
        row_key=f"link~{CLIENT}",
        outcome=OutcomeKind.VERIFIED,
        client_id=CLIENT,
        last_checked_at=night(day(3, 20), 1),
    )
    observations = observations_of(CLIENT, [ONBOARDED, FIRST_VERIFIED], [], state)
    # No run records: the verified event and the last check are 27 days apart, which is unknown.
    coverage = coverage_of(CLIENT, observations, MARCH, night(day(3, 21)))
    assert coverage.intervals == [Interval(night(day(3, 20), 1), night(day(3, 21)), PARTNER_ID)]
    assert coverage.gaps == [Gap(MARCH, night(day(3, 20), 1), GapReason.UNKNOWN, "not checked")]
    late = coverage_of(CLIENT, observations, night(day(3, 20), 1), APRIL)
    carried = night(day(3, 20), 1) + timedelta(hours=26)
    assert [(g.start, g.reason) for g in late.gaps] == [(carried, GapReason.UNKNOWN)]
