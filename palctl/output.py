"""One renderer for everything palctl prints as data: typed rows as a table, JSON or CSV.

A command describes its result as a `Report`: rows of one dataclass type (each field is a column; the
JSON and CSV name of `customer_tenant_id` is `customerTenantId`), the JSON key the rows go under,
summary fields for the JSON document, and lines for people that follow the table. `render` writes it:

- `table` (the default; for people): a Rich table of the rows (`table_rows`, if given, picks those
  worth a person's eye) followed by the report's lines; a result that is one value is just lines.
- `json` (for scripts): one object, the summary fields and the rows under `items_key`, or, for a
  report of one result (`single`), that row's fields and the summary fields; indented, ASCII only.
- `csv` (for spreadsheets and scripts): a header of the JSON names, then one line per row; no summary.

Every string is written with its control characters escaped (as `\\xNN`) in every format, and a cell
of a CSV file that a spreadsheet would take for a formula (it starts with `=`, `+`, `-`, `@`, a tab or
a carriage return) is prefixed with `'`. Rich markup in a value is never interpreted: cells are
`Text` objects. Values from outside (broker metadata, API responses, CSV fields) are screened by the
command before they become a row (`shared.spine.untrusted.shown`: credentials redacted, length capped).
The module is usable outside palctl: `render(report, "table", sys.stdout)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from palctl.terminal import Session

Cell = str | int | float | bool | None
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class OutputFormat(StrEnum):
    """`--output`: how a command prints its result."""

    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def json_name(name: str) -> str:
    """`customer_tenant_id` -> `customerTenantId`."""
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True)
class Column:
    """A column of a row type: its JSON/CSV name, and Rich styles for some of its values."""

    name: str
    attribute: str
    justify: str = "left"
    styles: Mapping[str, str] = field(default_factory=dict)


def columns(row_type: type[Any]) -> list[Column]:
    """The columns of a dataclass row type; a field's metadata may give `justify` and `styles`."""
    if not dataclasses.is_dataclass(row_type):
        raise TypeError(f"{row_type!r} is not a dataclass")
    return [
        Column(
            json_name(f.name),
            f.name,
            justify=f.metadata.get("justify", "left"),
            styles=f.metadata.get("styles", {}),
        )
        for f in dataclasses.fields(row_type)
    ]


@dataclass(frozen=True)
class Report:
    """A command's result: rows of `row_type` (a dataclass), and what goes around them."""

    row_type: type[Any]
    rows: Sequence[Any]
    items_key: str = "items"
    summary: Mapping[str, Any] = field(default_factory=dict)
    lines: Sequence[str] = ()
    table_rows: Sequence[Any] | None = None
    single: bool = False

    def row_dicts(self) -> list[dict[str, Cell]]:
        cols = columns(self.row_type)
        return [{c.name: _clean(getattr(row, c.attribute)) for c in cols} for row in self.rows]

    def document(self) -> dict[str, Any]:
        """The JSON document."""
        rows = self.row_dicts()
        if self.single:
            (only,) = rows
            return {**only, **_clean_json(self.summary)}
        return {**_clean_json(self.summary), self.items_key: rows}


def render(
    report: Report, output: OutputFormat | str, out: TextIO, *, session: Session | None = None
) -> None:
    """Write `report` to `out` in the chosen format."""
    import json

    chosen = OutputFormat(output)
    if chosen is OutputFormat.JSON:
        out.write(json.dumps(report.document(), indent=2, ensure_ascii=True) + "\n")
    elif chosen is OutputFormat.CSV:
        write_csv(report, out)
    else:
        from palctl.terminal import Session

        write_table(report, session or Session(out, out), out)
    out.flush()


def write_csv(report: Report, out: TextIO) -> None:
    import csv

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.name for c in columns(report.row_type)])
    for row in report.row_dicts():
        writer.writerow([_csv_cell(value) for value in row.values()])


def write_table(report: Report, session: Session, out: TextIO) -> None:
    rows = report.rows if report.table_rows is None else report.table_rows
    if rows and not report.single:
        session.show(rich_table(report.row_type, rows), out)
    for line in report.lines:
        session.line(_clean_text(line), stream=out)


def rich_table(row_type: type[Any], rows: Sequence[Any]) -> Any:
    """A Rich table of `rows`: every cell a `Text` (never markup), `-` for a missing value."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    cols = columns(row_type)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in cols:
        table.add_column(column.name, justify=column.justify, overflow="fold")  # type: ignore[arg-type]
    for row in rows:
        cells = []
        for column in cols:
            value = _clean(getattr(row, column.attribute))
            text = "-" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
            cells.append(Text(text, style=column.styles.get(text, "")))
        table.add_row(*cells)
    return table


def _clean_text(text: str) -> str:
    from shared.spine.untrusted import escape_controls

    return escape_controls(text)


def _clean(value: Any) -> Cell:
    if isinstance(value, StrEnum):
        return _clean_text(value.value)
    if isinstance(value, str):
        return _clean_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    raise TypeError(f"a cell must be str, int, float, bool or None, not {type(value).__name__}")


def _clean_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {_clean_text(str(key)): _clean_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(item) for item in value]
    return _clean(value)


def _csv_cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if isinstance(value, str) and text.startswith(_FORMULA_START) else text
