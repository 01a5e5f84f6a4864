"""What looks like a credential: field names and values, as written and in the simple encodings a
credential gets pasted in (percent-encoding once or several times, `+` for space, HTML entities,
base64). One screen for message bodies, request bodies and broker metadata."""

from __future__ import annotations

import base64
import binascii
import functools
import html
import re
from collections.abc import Callable
from urllib.parse import unquote, unquote_plus

# Field names that only ever hold a credential.
_SECRET_KEY = re.compile(
    r"(secret(?!name)|passw|pwd|token|assertion|private.?key|client.?key|access.?key|api.?key|"
    r"account.?key|connection.?string|credential|signature|\bsas\b)",
    re.IGNORECASE,
)
# Values shaped like credentials: Entra client secrets, JWTs, PEM blocks, connection strings, SAS
# signatures (`sig=` anywhere a parameter can start, not only after `?` or `&`).
_SECRET_VALUE = re.compile(
    r"([A-Za-z0-9_~.\-]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}"
    r"|eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\."
    r"|-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)"
    r"|(AccountKey|SharedAccessKey|SharedAccessSignature|client_secret|password|pwd)\s*="
    r"|(?<![A-Za-z0-9])sig=[A-Za-z0-9%+/=]{20,}"
    r"|[A-Za-z0-9+/]{86}==)",
    re.IGNORECASE,
)
_MAX_ROUNDS = 4
"""Percent-encoding nested deeper than this is not something a person or a tool pastes."""
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_URL_SAFE = str.maketrans("-_", "+/")
_ENCODED = re.compile(r"[%+&]")
_CACHED_LENGTH = 128
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Each decoding, and the characters without which it changes nothing (the common case is cheap).
_UNWRAPPERS: tuple[tuple[Callable[[str], str], str], ...] = (
    (unquote, "%"),
    (unquote_plus, "%+"),
    (html.unescape, "&"),
)


def named_like_credential(name: str) -> bool:
    """A field name that only ever holds a credential (`clientSecret`, `pass%77ord`)."""
    return (_named_cached if len(name) <= _CACHED_LENGTH else _named)(name)


def shaped_like_credential(text: str) -> bool:
    """A value shaped like a credential, as written or once decoded."""
    return (_shaped_cached if len(text) <= _CACHED_LENGTH else _shaped)(text)


def _named(name: str) -> bool:
    return any(_SECRET_KEY.search(form) for form in decoded_forms(name))


def _shaped(text: str) -> bool:
    return any(_SECRET_VALUE.search(form) for form in decoded_forms(text))


# Names and identifiers recur in every message: their answers are remembered, for short texts
# only, so that the caches stay small whatever is sent.
_named_cached = functools.lru_cache(maxsize=1024)(_named)
_shaped_cached = functools.lru_cache(maxsize=4096)(_shaped)


def decoded_forms(text: str) -> list[str]:
    """`text` and what it decodes to: each decoding repeated until stable (bounded), then the base64
    runs of every form that decode to UTF-8 text. A decoding that does not apply adds nothing."""
    runs = [run for run in _BASE64_RUN.findall(text) if not _GUID.fullmatch(run)]
    if not runs and not _ENCODED.search(text):
        return [text]  # nothing in it could be encoded: the common case, kept cheap
    forms = [text]
    for unwrap, triggers in _UNWRAPPERS:
        if any(trigger in text for trigger in triggers):
            forms.extend(_repeatedly(unwrap, text))
    forms = list(dict.fromkeys(forms))
    return forms + [decoded for form in forms for decoded in _base64_texts(form)]


def _repeatedly(unwrap: Callable[[str], str], text: str) -> list[str]:
    forms = []
    for _ in range(_MAX_ROUNDS):
        unwrapped = unwrap(text)
        if unwrapped == text:
            break
        forms.append(unwrapped)
        text = unwrapped
    return forms


def _base64_texts(text: str) -> list[str]:
    texts = []
    for run in _BASE64_RUN.findall(text):
        if _GUID.fullmatch(run):
            continue  # an identifier, and the most common run by far
        data = run.rstrip("=").translate(_URL_SAFE)
        try:
            texts.append(base64.b64decode(data + "=" * (-len(data) % 4), validate=True).decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError):
            continue  # not base64, or not text: nothing a person could paste a credential in
    return texts
