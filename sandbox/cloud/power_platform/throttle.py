"""Service protection as sliding windows: Dataverse per (principal, environment) over 5 minutes,
Power BI's admin APIs per tenant per minute and per hour. A refused request is not counted; the
refusal says in whole seconds when the busiest window lets one more in (Retry-After)."""

from __future__ import annotations

import math
import threading
from bisect import bisect_right
from collections.abc import Hashable, Sequence


class SlidingWindows:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: dict[Hashable, list[float]] = {}  # ascending request times per key

    def take(self, key: Hashable, rules: Sequence[tuple[int, float]], now: float) -> tuple[int, int]:
        """(0, requests left) when the request is let in and counted, else (seconds to wait, 0);
        `rules` are (limit, window in seconds) pairs that must all hold."""
        with self._lock:
            times = self._times.setdefault(key, [])
            del times[: bisect_right(times, now - max(window for _, window in rules))]
            wait, left = 0.0, min(limit for limit, _ in rules)
            for limit, window in rules:
                inside = len(times) - bisect_right(times, now - window)
                if inside >= limit:
                    wait = max(wait, times[len(times) - limit] + window - now)
                left = min(left, limit - inside - 1)
            if wait > 0:
                return max(1, math.ceil(wait)), 0
            times.append(now)
            return 0, left

    def reset(self) -> None:
        with self._lock:
            self._times.clear()
