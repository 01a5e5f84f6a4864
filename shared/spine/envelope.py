"""The delivery envelope: where a queue message came from and the application properties we set.

Every `pal*` property name is defined here once. Our own scheduling sets them, but anyone who can
send to a queue can set them too: only well-formed values are believed. Light to import (the
Functions host indexes the triggers with this alone), pure, shared by every trigger that reads them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

ATTEMPT_PROPERTY = "palAttempt"
"""1 for the message as sent, n for its (n-1)th scheduled retry."""
PAUSES_PROPERTY = "palPauses"
"""How many times this attempt was deferred (a broken partner credential, the ledger unavailable)."""
ORIGINAL_ID_PROPERTY = "palOriginalMessageId"
"""The MessageId of the message a scheduled copy stands for."""
RUN_ID_PROPERTY = "palRunId"
"""The nightly re-verification run a verify message belongs to."""
KIND_PROPERTY = "palKind"
"""What a message is. On the verify queue: RUN_SUMMARY for a run's summary check, absent on verify
messages. On the onboarding queue: OFFBOARDED for a `customer-offboarded` message, absent (or
ONBOARDED) for a `customer-onboarded` one."""
RUN_SUMMARY = "run-summary"
ONBOARDED = "customer-onboarded"
OFFBOARDED = "customer-offboarded"
CHECK_PROPERTY = "palCheck"
"""The number of a run-summary check."""
REPLAY_OF_PROPERTY = "palReplayOf"
"""Set by `palctl dlq replay`: the MessageId of the dead-lettered message this one replays."""
STATE_PROPERTY = "palLinkState"
"""On a verify message: what the nightly run saw of the link's state row (`shared.links.snapshot`),
so that a steady night writes without reading it first. Absent or malformed: the ledger is read."""
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


class Source(StrEnum):
    """Which way a link is worked on."""

    ONBOARDING = "onboarding"
    VERIFY = "verify"
    RELINK = "relink"
    OFFBOARDING = "offboarding"
    """A `customer-offboarded` message, or an operator's offboard call: the link is removed."""


def onboarding_queue_source(properties: Mapping[str, Any]) -> Source:
    """What a message on the onboarding queue asks for, by its KIND_PROPERTY: ONBOARDING when the
    property is absent or ONBOARDED; OFFBOARDING for any other value, whose handler accepts only
    OFFBOARDED and rejects the rest, so a misspelt kind is refused rather than taken for an onboarding."""
    kind = properties.get(KIND_PROPERTY)
    if isinstance(kind, bytes):
        kind = kind.decode("utf-8", "replace")
    return Source.ONBOARDING if kind in (None, ONBOARDED) else Source.OFFBOARDING


def is_offboarding(properties: Mapping[str, Any]) -> bool:
    """KIND_PROPERTY says `customer-offboarded` (as a string, or as the bytes the AMQP SDK gives)."""
    kind = properties.get(KIND_PROPERTY)
    return kind == OFFBOARDED or kind == OFFBOARDED.encode()
