"""When and how a failed attempt is tried again: backoff with jitter, derived message ids, and a
circuit breaker that stops hammering every tenant while our own credential is broken."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

_MAX_ROOT_LENGTH = 100  # Service Bus MessageIds are at most 128 characters


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    max_seconds: float
    credential_pause_seconds: float
    credential_broken_max_seconds: float = 86400.0
    """How long a message waits for a broken partner credential, in pauses, before it is failed."""

    def backoff_seconds(
        self, attempt: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float:
        """Delay before attempt `attempt + 1`: exponential with equal jitter, never below Retry-After."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempt - 1))
        delay = ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
        return float(max(delay, retry_after or 0.0))

    def pause_seconds(self, remaining: float, rng: random.Random | None = None) -> float:
        """Delay for a message that met an open breaker: after it closes, spread out a little."""
        return float(remaining + (rng or random).uniform(0, max(1.0, self.credential_pause_seconds / 10)))


def root_message_id(message_id: str) -> str:
    return (
        message_id
        if len(message_id) <= _MAX_ROOT_LENGTH
        else "h-" + hashlib.sha256(message_id.encode()).hexdigest()
    )


def retry_message_id(original_id: str, attempt: int, pauses: int = 0) -> str:
    """Each scheduled copy needs its own id: duplicate detection silently drops a repeated one."""
    suffix = f":retry{attempt}" + (f"p{pauses}" if pauses else "")
    return root_message_id(original_id) + suffix


class CredentialBreaker:
    """Per partner credential: open for a while after it is found broken (one worker's memory)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._open_until: dict[tuple[str, ...], float] = {}
        self._monotonic = monotonic

    def remaining(self, key: tuple[str, ...]) -> float:
        until = self._open_until.get(key)
        if until is None:
            return 0.0
        left = until - self._monotonic()
        if left <= 0:
            # Half-open: let the next attempt through as a probe.
            del self._open_until[key]
            return 0.0
        return left

    def trip(self, key: tuple[str, ...], seconds: float) -> bool:
        """Open the breaker; True when it was closed (so the caller alerts once, not per message)."""
        was_closed = self.remaining(key) == 0.0
        self._open_until[key] = self._monotonic() + seconds
        return was_closed

    def reset(self, key: tuple[str, ...]) -> None:
        self._open_until.pop(key, None)
