"""The shapes of the identifiers the product accepts: one definition for every entry point."""

from __future__ import annotations

import re
from typing import Any, TypeGuard

GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
NIL_GUID = "00000000-0000-0000-0000-000000000000"
PARTNER_ID = re.compile(r"[0-9]{6,10}")
"""The Associated Partner ID (location MPN ID); the service is the authority on which exist."""
_PRINTABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def is_guid(value: Any) -> TypeGuard[str]:
    """A GUID as Entra ID writes tenant and client IDs (any case), and not the nil GUID."""
    return isinstance(value, str) and GUID.fullmatch(value) is not None and value != NIL_GUID


def is_partner_id(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and PARTNER_ID.fullmatch(value) is not None


def printable_name(name: str, fallback: str = "<unprintable field name>") -> str:
    """A field or parameter name from a request, echoed in an error only when plainly harmless."""
    return name if _PRINTABLE_NAME.fullmatch(name) else fallback
