"""Checks of the operator's input (GUIDs, URLs, host and queue names): each returns the value in
its canonical form or raises UsageError naming where the value came from, never echoing it."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from palctl.errors import UsageError
from shared.spine.identifiers import is_guid

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+")
_QUEUE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,258}[A-Za-z0-9_])?")


def guid(value: str, what: str) -> str:
    """A tenant or client ID: a GUID (any case; not the nil GUID), returned in lower case."""
    if not is_guid(value):
        raise UsageError(f"{what} must be a GUID (for example 53a2a22c-5cbd-47f7-b588-f5bb5f191ead)")
    return value.lower()


def url(value: str, what: str, *, loopback_http: bool) -> str:
    """An absolute https URL without a fragment; Entra ID (and a local host) also take http on localhost."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        host = None
    if not host or parts.fragment:
        raise UsageError(f"{what} must be an absolute URL without a #fragment")
    if parts.scheme == "https" or (loopback_http and parts.scheme == "http" and host in LOOPBACK):
        return value
    raise UsageError(
        f"{what} must be an https:// URL" + (" (http only for localhost)" if loopback_http else "")
    )


def api_url(value: str, what: str) -> str:
    """The Function App's base URL: https (http on localhost), no query; `/api` and `/` trimmed."""
    checked = url(value, what, loopback_http=True)
    if urlsplit(checked).query:
        raise UsageError(f"{what} must not have a query; give the function key in PAL_API_KEY")
    return checked.rstrip("/").removesuffix("/api")


def namespace(value: str, what: str) -> str:
    """A Service Bus namespace's host name, NAME.servicebus.windows.net (or a sovereign cloud's)."""
    if not _HOST.fullmatch(value):
        raise UsageError(f"{what} must be a host name such as NAME.servicebus.windows.net (no sb:// or path)")
    return value.lower()


def connection_string(value: str, what: str) -> str:
    """A Service Bus connection string: `Endpoint=sb://...;...` (its key is never shown)."""
    parts = {part.split("=", 1)[0].strip().lower() for part in value.split(";") if "=" in part}
    if "endpoint" not in parts or not value.isprintable():
        raise UsageError(
            f"{what} must be a Service Bus connection string "
            "(Endpoint=sb://NAME.servicebus.windows.net/;SharedAccessKeyName=...;SharedAccessKey=...)"
        )
    return value.strip()


def queue(value: str, what: str) -> str:
    """A queue name: letters, digits, `.`, `-`, `_` and `/`, at most 260 characters."""
    if not _QUEUE.fullmatch(value):
        raise UsageError(f"{what} must be a queue name (letters, digits, . - _ /; at most 260 characters)")
    return value


def api_key(value: str, what: str) -> str:
    """A function key: printable, no spaces."""
    if not value or not value.isprintable() or any(c.isspace() for c in value):
        raise UsageError(f"{what} must be a function key (printable, no spaces)")
    return value
