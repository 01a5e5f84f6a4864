"""Reading the scenario's JSON strictly: one object at a time, with its path for error messages.

`Fields` refuses unknown keys (typos) and reads typed values; `unique` refuses duplicates. Shared by
`scenario.py` (apps, tenants, faults) and `scenario_power_platform.py` (a tenant's Power Platform).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any


def whole(value: object) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_guid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class Fields:
    """One JSON object being read, with its path for error messages; unknown keys are refused (typos)."""

    def __init__(self, value: object, path: str, allowed: tuple[str, ...]) -> None:
        if not isinstance(value, dict):
            raise ValueError(f"{path or '(top level)'}: expected an object")
        self.value: dict[str, Any] = value
        self.path = path
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise ValueError(f"{self.at(unknown[0])}: unknown field")

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def text(self, key: str, default: str | None = None) -> str:
        value = self.value.get(key, default)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{self.at(key)}: expected a non-empty string")
        return value

    def guid(self, key: str) -> str:
        value = self.text(key)
        if not is_guid(value):
            raise ValueError(f"{self.at(key)}: not a GUID")
        return value.lower()

    def optional_guid(self, key: str) -> str | None:
        return self.guid(key) if self.value.get(key) is not None else None

    def integer(self, key: str, default: int) -> int:
        value = self.value.get(key, default)
        if not whole(value) or value <= 0:
            raise ValueError(f"{self.at(key)}: expected a positive integer")
        return int(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.value.get(key, default)
        if not isinstance(value, bool):
            raise ValueError(f"{self.at(key)}: expected true or false")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
        value = self.value.get(key, default)
        if value not in choices:
            raise ValueError(f"{self.at(key)}: expected one of {', '.join(choices)}")
        return str(value)

    def timestamp(self, key: str, default: str) -> str:
        """An ISO 8601 date and time with its zone, such as 2024-05-01T09:00:00Z."""
        value = self.text(key, default)
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise ValueError(f"{self.at(key)}: expected an ISO 8601 time with a zone, such as {default}")
        return value

    def items(self, key: str) -> list[tuple[str, object]]:
        value = self.value.get(key, [])
        if not isinstance(value, list):
            raise ValueError(f"{self.at(key)}: expected a list")
        return [(f"{self.at(key)}[{index}]", item) for index, item in enumerate(value)]

    def guids(self, key: str) -> list[tuple[str, str]]:
        """A list of GUIDs: (path, lower-cased GUID) pairs."""
        found = []
        for path, item in self.items(key):
            if not is_guid(item):
                raise ValueError(f"{path}: not a GUID")
            found.append((path, str(item).lower()))
        return found


def unique(values: list[tuple[str, str]], what: str) -> None:
    """Refuse the second of two equal values (case-insensitive), naming its path."""
    seen: set[str] = set()
    for path, value in values:
        if value.lower() in seen:
            raise ValueError(f"{path}: duplicate {what} {value}")
        seen.add(value.lower())
