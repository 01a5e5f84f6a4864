"""What an attempt calls for next, decided in one place and without I/O.

Two questions, asked in this order by every queue-triggered attempt:
- `before_attempt`: may the attempt go on at all (the partner credential may be known broken, or
  broken for too long)?
- `after_attempt`: given its outcome, is it final, retried after a backoff, deferred until the
  breaker closes, or given up?
A relink (no message to reschedule) gets `Decision(outcome, None)` from both: it is never scheduled.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.retry import RetryPolicy

DEFERRED = Outcome(
    OutcomeKind.PARTNER_CREDENTIAL_BROKEN,
    "deferred: the partner credential is broken; tried again after the pause",
    code="deferred",
)


@dataclass(frozen=True)
class Counters:
    """Where a message is in its chain: its attempt number and the pauses of that attempt so far."""

    attempt: int = 1
    pauses: int = 0


@dataclass(frozen=True)
class NextAttempt:
    """The copy of a message to schedule: its attempt number, pauses so far and delay in seconds."""

    number: int
    pauses: int
    delay: float


@dataclass(frozen=True)
class Decision:
    """The outcome to record and, unless it is final, the copy to schedule first."""

    outcome: Outcome
    next_attempt: NextAttempt | None = None

    @property
    def is_final(self) -> bool:
        return self.next_attempt is None


def before_attempt(
    counters: Counters,
    policy: RetryPolicy,
    *,
    paused_for: float,
    can_reschedule: bool,
    rng: random.Random | None = None,
) -> Decision | None:
    """None: go on and make the attempt. Otherwise the attempt is not made: it has waited for a
    broken partner credential too long (final), or the credential's breaker is open (deferred)."""
    if not can_reschedule:
        return None
    if counters.pauses * policy.credential_pause_seconds >= policy.credential_broken_max_seconds:
        return Decision(_broken_too_long(counters, policy))
    if paused_for > 0:
        delay = policy.pause_seconds(paused_for, rng)
        return Decision(DEFERRED, NextAttempt(counters.attempt, counters.pauses + 1, delay))
    return None


def after_attempt(
    outcome: Outcome,
    counters: Counters,
    policy: RetryPolicy,
    *,
    can_reschedule: bool,
    rng: random.Random | None = None,
) -> Decision:
    """Final, retried with backoff (a new attempt), paused (the same attempt again), or given up."""
    if not can_reschedule:
        return Decision(outcome)
    if outcome.kind is OutcomeKind.PARTNER_CREDENTIAL_BROKEN:
        pause = policy.pause_seconds(policy.credential_pause_seconds, rng)
        return Decision(outcome, NextAttempt(counters.attempt, counters.pauses + 1, pause))
    if outcome.kind is not OutcomeKind.TRANSIENT:
        return Decision(outcome)
    if counters.attempt >= policy.max_attempts:
        return Decision(_gave_up(outcome, counters.attempt))
    backoff = policy.backoff_seconds(counters.attempt, outcome.retry_after, rng)
    return Decision(outcome, NextAttempt(counters.attempt + 1, 0, backoff))


def _gave_up(outcome: Outcome, attempts: int) -> Outcome:
    return dataclasses.replace(
        outcome,
        kind=OutcomeKind.FAILED,
        reason=f"gave up after {attempts} attempts: {outcome.reason}",
        remediation="The nightly re-verification will try again; relink by hand to try now.",
    )


def _broken_too_long(counters: Counters, policy: RetryPolicy) -> Outcome:
    waited = counters.pauses * policy.credential_pause_seconds
    return Outcome(
        OutcomeKind.FAILED,
        f"the partner credential stayed broken for {waited:.0f} s (CREDENTIAL_BROKEN_MAX_SECONDS); "
        "this message is no longer deferred",
        code="partner-credential-broken-too-long",
        remediation="Repair the partner credential (see the ALERT line and the runbook), then relink; "
        "the nightly re-verification also retries every recorded link.",
    )
