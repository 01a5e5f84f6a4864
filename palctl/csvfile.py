"""CSV files as palctl reads them (`enqueue --csv`, `offboard --csv`): UTF-8 (a byte-order mark is
accepted), `-` for standard input, a header of known columns, and every row read before anything is
done, so that a bad row stops the command before it sends or calls anything."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

from palctl.errors import UsageError

Row = TypeVar("Row")
Built = TypeVar("Built")


def validated_row(
    line: int,
    row: dict[str | None, Any],
    build: Callable[..., Built],
    key: Callable[[Any], Any],
    seen: dict[Any, int],
) -> tuple[str | None, str | None, Built | None, str | None, int | None]:
    """One CSV row: its tenant and client ID as written, what `build(fields, where=...)` makes of it
    (or the error, naming the line), and the line of an earlier row that makes the same thing
    (`seen`: first line per key)."""
    fields = {name: (value or "").strip() or None for name, value in row.items() if name is not None}
    tenant, client_id = fields.get("customerTenantId"), fields.get("clientId")
    if row.get(None):
        return tenant, client_id, None, f"row {line}: more values than columns", None
    try:
        built = build(fields, where=f"row {line}")
    except UsageError as error:
        return tenant, client_id, None, str(error), None
    first = seen.setdefault(key(built), line)
    return tenant, client_id, built, None, None if first == line else first


def open_csv(path: str) -> TextIO:
    """The file (or standard input for `-`) as UTF-8 text; a missing or unreadable file is a UsageError."""
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
    try:
        return Path(path).open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError("--csv: no such file") from None
    except OSError as error:
        raise UsageError(f"--csv: cannot be read ({type(error).__name__})") from None


def check_header(names: Sequence[str], columns: Sequence[str], required: Sequence[str]) -> None:
    """A UsageError naming the missing required columns, or the unknown ones (escaped)."""
    listed = ", ".join(columns)
    missing = set(required) - set(names)
    if missing:
        raise UsageError(f"CSV header: missing column(s) {', '.join(sorted(missing))}; columns: {listed}")
    unknown = set(names) - set(columns)
    if unknown:
        from shared.spine.untrusted import shown

        named = ", ".join(shown(name, 40) for name in sorted(unknown))
        raise UsageError(f"CSV header: unknown column(s) {named}; columns: {listed}")


def read_rows(
    stream: TextIO,
    columns: Sequence[str],
    required: Sequence[str],
    row: Callable[[int, dict[str | None, Any]], Row],
) -> list[Row]:
    """Every row of a CSV file made by `row(line number, fields)`, after the header is checked; a file
    that is not CSV or not UTF-8 is a UsageError naming the line."""
    import csv

    reader = csv.DictReader(stream)
    try:
        check_header(list(reader.fieldnames or []), columns, required)
        return [row(reader.line_num, fields) for fields in reader]
    except csv.Error as error:
        raise UsageError(f"CSV line {reader.line_num}: {error}") from None
    except UnicodeDecodeError:
        raise UsageError(f"CSV after line {reader.line_num}: not UTF-8 text") from None
