"""Untrusted text from outside the message body (broker metadata: MessageIds, application
properties, dead-letter reasons) made safe to keep and to show.

- A MessageId is kept only when it is plain printable ASCII and not shaped like a credential (the
  screen message bodies get, encoded forms included); otherwise a stable digest stands in for it,
  so that redelivery of the same message is still recognised.
- Text shown on a terminal or in a log line has every control character escaped, so input can
  neither start a line of its own (a forged `ALERT ...`) nor drive the terminal.
- The product's log records have their arguments escaped whatever handler writes them, and the
  Azure SDK's loggers are kept at WARNING: host.json's log levels do not reach the Python worker,
  and the SDK's HTTP logging policy writes request URLs (Key Vault secret names among them).
  azure-identity's at ERROR: its warnings of a refused sign-in repeat Entra's error text (what a
  server chose to say), and the product logs its own line for the same failure, with the AADSTS code.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.spine.screening import shaped_like_credential

UNSAFE_ID_PREFIX = "unsafe-id:"
REDACTED = "<redacted: looks like a credential>"
SDK_LOGGERS = (
    "azure",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.identity",
    "azure.servicebus",
    "uamqp",
    "azure.data.tables",
    "azure.keyvault",
    "msal",
)
PRODUCT_LOGGERS = ("shared", "functions", "function_app")
_SAFE_ID = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, as long as a MessageId may be
_PLAIN = re.compile(r"[\x20-\x7e]*")
# an escape written by escape_controls, or one character: what truncation must not split
_ESCAPE_PIECE = re.compile(r"\\x[0-9a-f]{2}|\\u[0-9a-f]{4}|\\U[0-9a-f]{8}|.", re.DOTALL)
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""C0, DEL, C1; format characters (bidi overrides, zero-width); lone surrogates; line and
paragraph separators."""


def message_id_for_records(raw: object) -> str:
    """The MessageId to log and store: itself when plain, else `unsafe-id:` and a stable digest."""
    data = _raw_bytes(raw)
    if not data:
        return ""
    text = data.decode("ascii", "replace")
    if _SAFE_ID.fullmatch(text) and not shaped_like_credential(text):
        return text
    return UNSAFE_ID_PREFIX + hashlib.sha256(data).hexdigest()[:32]


def _raw_bytes(raw: object) -> bytes:
    if isinstance(raw, bytes):
        return raw
    return ("" if raw is None else str(raw)).encode("utf-8", "surrogatepass")


def escape_controls(text: str) -> str:
    """`text` with every control character written as `\\xNN`, `\\uNNNN` or `\\UNNNNNNNN`."""
    if _PLAIN.fullmatch(text):
        return text
    return "".join(_escaped(char) for char in text)


def printable(text: object, limit: int = 200) -> str:
    """Untrusted text for a terminal or a log line: control characters escaped, at most `limit`
    characters (an escape is never cut; an ellipsis marks the cut)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    escaped = escape_controls(text if isinstance(text, str) else str(text))
    if len(escaped) <= limit:
        return escaped
    kept, used = [], 0
    for piece in _ESCAPE_PIECE.findall(escaped):
        if used + len(piece) > limit - 1:
            break
        kept.append(piece)
        used += len(piece)
    return "".join(kept) + "…"


def shown(text: object, limit: int = 200) -> str:
    """Like `printable`, and a credential-shaped text is not shown at all."""
    raw = text if isinstance(text, str) else str(text)
    return REDACTED if shaped_like_credential(raw) else printable(raw, limit)


def _escaped(char: str) -> str:
    if unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


@dataclass(frozen=True)
class _Shown:
    """An argument whose text carried control characters: formats as its escaped str and repr."""

    text: str
    representation: str

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.representation


class ControlCharacterFilter(logging.Filter):
    """Escapes control characters in a record's arguments, where input enters a log line (the
    format string is ours, and its newlines with it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):
            record.args = {key: _safe_argument(value) for key, value in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_safe_argument(value) for value in record.args)
        return True


def _safe_argument(value: object) -> object:
    if isinstance(value, str):
        return escape_controls(value)
    if value is None or isinstance(value, int | float):
        return value
    try:
        text, representation = str(value), repr(value)
    except Exception:  # formatting will fail the same way, and logging reports that itself
        return value
    safe = _Shown(escape_controls(text), escape_controls(representation))
    return value if (safe.text, safe.representation) == (text, representation) else safe


class _EscapingRecordFactory:
    """Wraps the record factory so that every record of the product's loggers is escaped when it
    is made: unlike a filter on a logger or a handler, this holds for child loggers and for
    handlers added later (the worker's, an exporter's, a test's)."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous
        self._filter = ControlCharacterFilter()

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.previous(*args, **kwargs)
        if record.name.split(".", 1)[0] in PRODUCT_LOGGERS:
            self._filter.filter(record)
        return record


_QUIETER = {"azure.identity": logging.ERROR}


def configure_logging() -> None:
    """Escape the product's log records and quiet the Azure SDK; safe to call more than once."""
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(_QUIETER.get(name, logging.WARNING))
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _EscapingRecordFactory):
        logging.setLogRecordFactory(_EscapingRecordFactory(factory))
