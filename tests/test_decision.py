"""The retry decision as a pure function: every branch, table-driven, no I/O."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from shared.links.rows import HistoryEvent
from shared.spine.decision import DEFERRED, Counters, Decision, NextAttempt, after_attempt, before_attempt
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.receipts import Receipt, is_final
from shared.spine.retry import RetryPolicy

POLICY = RetryPolicy(
    max_attempts=3,
    base_seconds=10,
    max_seconds=100,
    credential_pause_seconds=60,
    credential_broken_max_seconds=300,
)


class _Midpoint(random.Random):
    """Jitter always in the middle of its range, so delays are exact."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


def outcome(kind: OutcomeKind, retry_after: float | None = None) -> Outcome:
    return Outcome(kind, "why", code="c", retry_after=retry_after)


@pytest.mark.parametrize(
    ("kind", "counters", "retry_after", "expected"),
    [
        # Final outcomes are final, whatever the counters.
        (OutcomeKind.LINKED, Counters(1, 0), None, None),
        (OutcomeKind.NEEDS_CUSTOMER_ACTION, Counters(2, 0), None, None),
        (OutcomeKind.REJECTED, Counters(1, 0), None, None),
        # Transient: the next attempt after backoff (10 s doubling, equal jitter at its midpoint).
        (OutcomeKind.TRANSIENT, Counters(1, 0), None, NextAttempt(2, 0, 7.5)),
        (OutcomeKind.TRANSIENT, Counters(2, 3), None, NextAttempt(3, 0, 15.0)),
        # ... never sooner than the server's Retry-After.
        (OutcomeKind.TRANSIENT, Counters(1, 0), 42.0, NextAttempt(2, 0, 42.0)),
        # A broken partner credential: the same attempt again after the pause.
        (OutcomeKind.PARTNER_CREDENTIAL_BROKEN, Counters(2, 1), None, NextAttempt(2, 2, 63.0)),
    ],
)
def test_after_an_attempt(
    kind: OutcomeKind, counters: Counters, retry_after: float | None, expected: NextAttempt | None
) -> None:
    decided = after_attempt(
        outcome(kind, retry_after), counters, POLICY, can_reschedule=True, rng=_Midpoint()
    )
    assert decided.next_attempt == expected
    assert decided.outcome.kind is kind
    assert decided.is_final is (expected is None)


def test_the_last_transient_attempt_gives_up() -> None:
    decided = after_attempt(outcome(OutcomeKind.TRANSIENT), Counters(3, 0), POLICY, can_reschedule=True)
    assert decided.is_final
    assert decided.outcome.kind is OutcomeKind.FAILED
    assert decided.outcome.reason.startswith("gave up after 3 attempts")
    assert decided.outcome.remediation


@pytest.mark.parametrize("kind", list(OutcomeKind))
def test_nothing_is_scheduled_when_nothing_can_be(kind: OutcomeKind) -> None:
    decided = after_attempt(outcome(kind), Counters(3, 9), POLICY, can_reschedule=False)
    assert decided == Decision(outcome(kind))
    assert before_attempt(Counters(3, 9), POLICY, paused_for=30, can_reschedule=False) is None


@pytest.mark.parametrize(
    ("counters", "paused_for", "expected"),
    [
        (Counters(1, 0), 0.0, None),  # breaker closed: go on
        (Counters(2, 4), 0.0, None),  # 4 pauses of 60 s: under the 300 s cap
        (Counters(1, 0), 30.0, Decision(DEFERRED, NextAttempt(1, 1, 33.0))),
        (Counters(2, 2), 30.0, Decision(DEFERRED, NextAttempt(2, 3, 33.0))),
    ],
)
def test_before_an_attempt(counters: Counters, paused_for: float, expected: Decision | None) -> None:
    held = before_attempt(counters, POLICY, paused_for=paused_for, can_reschedule=True, rng=_Midpoint())
    assert held == expected


@pytest.mark.parametrize("paused_for", [0.0, 30.0])
def test_a_message_that_waited_too_long_for_the_credential_is_failed(paused_for: float) -> None:
    held = before_attempt(Counters(1, 5), POLICY, paused_for=paused_for, can_reschedule=True)
    assert held is not None and held.is_final
    assert (held.outcome.kind, held.outcome.code) == (
        OutcomeKind.FAILED,
        "partner-credential-broken-too-long",
    )
    assert "300 s" in held.outcome.reason


@pytest.mark.parametrize("kind", list(OutcomeKind))
@pytest.mark.parametrize("retry_scheduled", [False, True])
def test_a_recorded_outcome_is_final_when_not_retryable_and_no_retry_is_scheduled(
    kind: OutcomeKind, retry_scheduled: bool
) -> None:
    expected = kind is not OutcomeKind.TRANSIENT and not retry_scheduled
    assert is_final(kind, retry_scheduled=retry_scheduled) is expected
    # As a history event and as a receipt read back from the table: the same rule.
    event = {"PartitionKey": "t", "RowKey": "event~1", "Outcome": kind.value, "EventTime": datetime.now(UTC)}
    if retry_scheduled:
        event["NextAttemptAt"] = datetime(2026, 11, 23, tzinfo=UTC)
    assert HistoryEvent.from_entity(event).is_final is expected
    receipt = {"PartitionKey": "t", "RowKey": "receipt~1", "Outcome": kind.value, "MessageId": "m"}
    if retry_scheduled:
        receipt["NextAttempt"] = 2
    assert Receipt.from_entity(receipt).is_terminal is expected
