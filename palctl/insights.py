"""Partner Center's insights download, read as untrusted input: which customer was attributed to the
partner through PAL in which month.

The column names are Microsoft's, from "Cloud product performance reports - Data definitions"
(https://learn.microsoft.com/partner-center/insights/insights-data-definitions; the reports of the
Insights dashboard's Download Reports hub): the "Azure usage" report and the "Customers and tenants"
report both have `CustomerTenantId` (the customer's Entra tenant ID), `Month` (the month usage and
revenue are reported for) and `PartnerAttributionType` (the partner's attribution type; the Dynamics
365 and Power BI reports call it `PartnerAttachType`), and `CustomerName`. Those three are required;
the names are matched ignoring case, spaces, `_` and `-` (`customer tenant id` is `CustomerTenantId`).
Microsoft does not list the attribution types' values: a row is a PAL attribution when its type has
the word `PAL` or says `Partner Admin Link` (`PAL`, `Partner Admin Link (PAL)`, `PAL;CSP`).

What the file may hold is checked before anything is done with it: at most `MAX_BYTES`; UTF-8 with or
without a byte order mark (or UTF-16 with one, Excel's "Unicode Text"); `,`, `;` or tab as separator
(the one whose header has the columns, or Excel's `sep=` first line); no NUL byte. A row whose tenant
ID is not a GUID or whose month cannot be read is skipped and reported by its line number, its value
escaped and cut (`shared.spine.untrusted.shown`); blank rows (Excel's trailing `,,,`) are ignored. Excel
leaves cells as `="..."`, `'...` or `{guid}`: these are unwrapped. A month is `2025-03`, `2025-03-01`
(with a time or not), `202503`, `3/1/2025` or `1/3/2025` (the day is the first: the month is the other
number; otherwise the one above 12 is the day), `1.3.2025` (day first), `Mar-25`, `March 2025`, or an
Excel date serial number.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from palctl.errors import UsageError

SOURCE = "https://learn.microsoft.com/partner-center/insights/insights-data-definitions"
MAX_BYTES = 64 * 1024 * 1024
"""The largest file read (64 MiB): an export of a few hundred thousand rows."""
TENANT, MONTH, ATTRIBUTION, NAME = "CustomerTenantId", "Month", "PartnerAttributionType", "CustomerName"
REQUIRED = (TENANT, MONTH, ATTRIBUTION)
_ALIASES = {"partnerattachtype": ATTRIBUTION}
_SEPARATORS = (",", ";", "\t")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NIL = "00000000-0000-0000-0000-000000000000"
_FULL_NAMES = "january february march april may june july august september october november december"
_MONTH_NAMES = {
    name: number for number, full in enumerate(_FULL_NAMES.split(), 1) for name in (full, full[:3])
} | {"sept": 9}
_ISO = re.compile(r"(\d{4})[-/](\d{1,2})(?:[-/](\d{1,2}))?(?:[t ].*)?")
_COMPACT = re.compile(r"(\d{4})(\d{2})")
_DAY_MONTH_YEAR = re.compile(r"(\d{1,2})([/.-])(\d{1,2})\2(\d{4})(?:[t ].*)?")
_NAMED = re.compile(r"([a-z]{3,9})[ -]?'?(\d{2}|\d{4})")
_SERIAL = re.compile(r"\d{5}(?:\.\d+)?")
_EXCEL_EPOCH = date(1899, 12, 30)


@dataclass(frozen=True)
class BadRow:
    """A row that was skipped: its line number in the file and why (values escaped and cut)."""

    line: int
    problem: str


@dataclass(frozen=True)
class Insights:
    """What the file says, per customer tenant (lower case)."""

    rows: int
    """Data rows read (blank rows not counted, skipped rows counted)."""
    pal: Mapping[str, frozenset[date]]
    """The months (their first day) each tenant was attributed through PAL."""
    other: Mapping[str, frozenset[str]]
    """Each tenant's other attribution types (screened), for the details."""
    names: Mapping[str, str]
    """A customer name per tenant (screened), when the file has the column."""
    months: frozenset[date]
    """Every month of a row read: the period the file covers."""
    bad_rows: tuple[BadRow, ...] = ()

    @property
    def tenants(self) -> frozenset[str]:
        """Every customer tenant of a row read, attributed through PAL or otherwise."""
        return frozenset(self.pal) | frozenset(self.other)


def month_name(month: date) -> str:
    """`2025-03`."""
    return f"{month.year:04d}-{month.month:02d}"


def is_pal(attribution: str) -> bool:
    """The attribution type names PAL: the word `PAL`, or `Partner Admin Link`."""
    words = re.split(r"[^a-z0-9]+", attribution.casefold())
    return "pal" in words or "partner admin link" in " ".join(word for word in words if word)


def cell(value: str | None) -> str:
    """A cell as Excel may have left it, unwrapped: `="x"` and `'x` are `x`; outer spaces go."""
    text = (value or "").strip()
    if text.startswith('="') and text.endswith('"') and len(text) >= 3:
        text = text[2:-1]
    return text.removeprefix("'").strip()


def tenant_id(value: str) -> str | None:
    """A customer tenant ID (a GUID, braces allowed, any case) in lower case, or None."""
    text = value.strip().removeprefix("{").removesuffix("}").lower()
    return text if _GUID.fullmatch(text) and text != _NIL else None


def parse_month(value: str) -> date | None:
    """The month a cell names (its first day), or None when it names none or is ambiguous."""
    text = value.strip().casefold()
    found = _ISO.fullmatch(text) or _COMPACT.fullmatch(text)
    if found:
        return _month(int(found.group(1)), int(found.group(2)))
    if found := _DAY_MONTH_YEAR.fullmatch(text):
        first, separator, second, year = found.groups()
        return _day_month(int(first), int(second), int(year), day_first=separator != "/")
    if found := _NAMED.fullmatch(text):
        return _named(found.group(1), found.group(2))
    if _SERIAL.fullmatch(text):
        day = _EXCEL_EPOCH + timedelta(days=int(float(text)))
        return _month(day.year, day.month)
    return None


def _month(year: int, month: int) -> date | None:
    """The month's first day, if it is one of this century's."""
    return date(year, month, 1) if 2000 <= year <= 2100 and 1 <= month <= 12 else None


def _day_month(first: int, second: int, year: int, *, day_first: bool) -> date | None:
    """`first/second/year`: day first with `.` or `-`; with `/`, whichever reading is possible, and
    when both are, the one that makes it the first of a month (a month is reported on its first day)."""
    if day_first:
        return _month(year, second) if 1 <= first <= 31 else None
    if first > 12 or (first == 1 and second != 1):
        month, day = second, first
    elif second > 12 or second == 1 or first == second:
        month, day = first, second
    else:
        return None  # 3/5/2025: March 5th or May 3rd, neither the first of a month
    return _month(year, month) if 1 <= day <= 31 else None


def _named(name: str, year_text: str) -> date | None:
    """`mar`, `march` or `sept` and a year of two or four digits."""
    number = _MONTH_NAMES.get(name)
    if number is None:
        return None
    return _month(int(year_text) + (2000 if len(year_text) == 2 else 0), number)


# --- the file ---------------------------------------------------------------------------------------


def decode(data: bytes, name: str) -> str:
    """The file's text: UTF-8 (a byte order mark allowed) or UTF-16 with its mark; a UsageError for
    anything else (an Excel workbook, another code page, a binary file), naming the line."""
    import codecs

    if data.startswith(b"PK\x03\x04"):
        raise UsageError(f"{name}: an Excel workbook, not a CSV file (Excel: Save As > CSV UTF-8)")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise UsageError(f"{name}: not UTF-16 text after its byte order mark") from None
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line = data[: error.start].count(b"\n") + 1
            raise UsageError(f"{name}: line {line} is not UTF-8 text (Excel: Save As > CSV UTF-8)") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise UsageError(f"{name}: line {line} has a NUL character: not a CSV text file")
    return text


def column_key(name: str) -> str:
    """A header cell as it is matched: no case, spaces, `_` or `-`."""
    return re.sub(r"[\s_\-\ufeff]+", "", name).casefold()


_KNOWN = {column_key(column): column for column in (*REQUIRED, NAME)} | _ALIASES


def header_columns(header: Sequence[str], name: str) -> dict[str, int]:
    """{documented column: its index}; a UsageError naming the missing required columns, or a column
    given twice."""
    from shared.spine.untrusted import shown

    found: dict[str, int] = {}
    for index, text in enumerate(header):
        column = _KNOWN.get(column_key(cell(text)))
        if column is None:
            continue
        if column in found:
            raise UsageError(f"{name}: the column {column} is in the header twice")
        found[column] = index
    missing = [column for column in REQUIRED if column not in found]
    if missing:
        seen = ", ".join(shown(cell(text), 40) for text in header[:30] if cell(text)) or "none"
        raise UsageError(
            f"{name}: not a Partner Center insights download: missing column(s) {', '.join(missing)} "
            f"(columns found: {seen}; the columns are described at {SOURCE})"
        )
    return found


def _separator(text: str) -> tuple[str, str, int]:
    """The separator, the text from the header on, and how many lines went before it (Excel's
    `sep=;` line): the separator the header splits into the most known columns with (else `,`)."""
    first, _, rest = text.partition("\n")
    hint = re.fullmatch(r'"?sep=(.)"?[,;\t]*', first.rstrip("\r"), re.IGNORECASE)
    if hint:
        return hint.group(1), rest, 1

    def score(separator: str) -> int:
        """How many known columns the header has, split at `separator`."""
        header = next(csv.reader([first], delimiter=separator), [])
        return sum(column_key(cell(text)) in _KNOWN for text in header)

    return max(_SEPARATORS, key=score), text, 0


def read_insights(data: bytes, name: str = "--insights") -> Insights:
    """The insights file's PAL months per tenant; a UsageError for a file that is not one."""
    if len(data) > MAX_BYTES:
        raise UsageError(f"{name}: larger than {MAX_BYTES // (1024 * 1024)} MiB: not an insights download")
    separator, text, before = _separator(decode(data, name))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    try:
        header = next(reader, None)
        if header is None:
            raise UsageError(f"{name}: empty: no header")
        columns = header_columns(header, name)
        return _collect(((reader.line_num + before, row) for row in reader), columns)
    except csv.Error as error:
        raise UsageError(f"{name}: line {reader.line_num + before}: not CSV ({error})") from None


class _Collector:
    """The rows read so far, per tenant."""

    def __init__(self) -> None:
        """Nothing read yet."""
        self.rows = 0
        self.pal: dict[str, set[date]] = {}
        self.other: dict[str, set[str]] = {}
        self.names: dict[str, str] = {}
        self.months: set[date] = set()
        self.bad: list[BadRow] = []

    def add(self, line: int, row: list[str], columns: Mapping[str, int]) -> None:
        """One data row: its tenant's PAL month or other attribution type, or why it is skipped."""
        from shared.spine.untrusted import shown

        values = {column: cell(row[index]) if index < len(row) else "" for column, index in columns.items()}
        self.rows += 1
        tenant, month = tenant_id(values[TENANT]), parse_month(values[MONTH])
        if tenant is None:
            self.bad.append(BadRow(line, f"{TENANT} is not a GUID: {_quoted(values[TENANT])}"))
            return
        if month is None:
            self.bad.append(BadRow(line, f"{MONTH} is not a month: {_quoted(values[MONTH])}"))
            return
        self.months.add(month)
        attribution = values[ATTRIBUTION]
        if is_pal(attribution):
            self.pal.setdefault(tenant, set()).add(month)
        elif attribution:
            self.other.setdefault(tenant, set()).add(shown(attribution, 40))
        if values.get(NAME) and tenant not in self.names:
            self.names[tenant] = shown(values[NAME], 80)

    def insights(self) -> Insights:
        """What was read, frozen."""
        return Insights(
            rows=self.rows,
            pal={tenant: frozenset(months) for tenant, months in self.pal.items()},
            other={tenant: frozenset(types) for tenant, types in self.other.items()},
            names=dict(self.names),
            months=frozenset(self.months),
            bad_rows=tuple(self.bad),
        )


def _quoted(value: str) -> str:
    """A cell's value for a message: quoted, escaped and cut, or `empty`."""
    from shared.spine.untrusted import shown

    return f'"{shown(value, 40)}"' if value else "empty"


def _collect(rows: Iterable[tuple[int, list[str]]], columns: Mapping[str, int]) -> Insights:
    """Every row that is not blank (Excel's trailing `,,,`), by its line number."""
    collector = _Collector()
    for line, row in rows:
        if any(cell(value) for value in row):
            collector.add(line, row, columns)
    return collector.insights()
