"""Retiring an identity's ledger record: the rule for the operator's reason, which is stored in the
history for good, so it is checked before anything is written (and never echoed when refused)."""

from __future__ import annotations

from typing import Any

from shared.links.message import find_credentials

MAX_REASON_LENGTH = 256
DEFAULT_REASON = "retired by an operator (no reason given)"
RETIRE_SOURCE = "retire"
"""The history event's source: an operator's retirement, not a queue or relink attempt."""


class InvalidReason(ValueError):
    """The reason breaks the rule; the text names what is wrong, never the value."""


def retirement_reason(value: Any, *, name: str = "reason") -> str:
    """1-256 printable characters (no control, format or separator characters other than the
    space) that do not look like a credential; raises InvalidReason otherwise."""
    if not isinstance(value, str):
        raise InvalidReason(f"{name}: must be a string")
    if not value.strip():
        raise InvalidReason(f"{name}: must not be empty")
    if len(value) > MAX_REASON_LENGTH:
        raise InvalidReason(f"{name}: must be at most {MAX_REASON_LENGTH} characters, got {len(value)}")
    if not value.isprintable():
        raise InvalidReason(f"{name}: must be printable (no control characters, line breaks or tabs)")
    if find_credentials({"reason": value}):
        raise InvalidReason(
            f"{name}: looks like a credential (secret, password, key or token); it would be stored"
        )
    return value
