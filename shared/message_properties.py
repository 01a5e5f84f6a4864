"""Application properties of queue messages, validated before use.

Our own scheduling sets them, but anyone who can send to a queue can set them too: only
well-formed values are believed. Pure functions, shared by every trigger that reads them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

RUN_ID_PROPERTY = "palRunId"
MAX_COUNTER = 10_000
_RUN_ID = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}|[A-Za-z0-9-]{1,40}")


def counter(properties: Mapping[str, Any], name: str, default: int) -> int:
    """A count we set (attempt, pauses): from `default` to MAX_COUNTER; malformed counts as `default`."""
    try:
        return min(MAX_COUNTER, max(default, int(properties.get(name, default))))
    except (TypeError, ValueError, OverflowError):
        return default


def whole_number(value: Any, *, low: int) -> int | None:
    """An int (or a string of ASCII digits) from `low` to MAX_COUNTER, else None."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 5:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if low <= value <= MAX_COUNTER else None


def valid_run_id(value: Any) -> str | None:
    """A re-verification run id (a UTC date, or a short name of letters, digits and dashes)."""
    return value if isinstance(value, str) and _RUN_ID.fullmatch(value) else None
