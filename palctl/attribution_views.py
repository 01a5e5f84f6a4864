"""How palctl shows attribution to people: the run summary, counts, findings and changes, as Rich
`Text` (never markup), and a spinner only on a terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from palctl.attribution_data import STATUS_STYLES, STATUSES, CustomerReport, Run
from palctl.output import rich_table

if TYPE_CHECKING:
    from palctl.terminal import Session


# --- for people ---------------------------------------------------------------------------------


def percent(coverage: float | None) -> str:
    return "-" if coverage is None else f"{coverage:.0%}"


def _statuses(run: Run) -> list[str]:
    seen = {status for statuses in run.counts.values() for status in statuses}
    return [*STATUSES, *sorted(seen - set(STATUSES))]


def run_lines(tenant: str, run: Run) -> list[str]:
    """The run in a few lines: which, when, how far, the coverage."""
    state = f"ended {run.ended_at}" if run.finished else "not finished"
    attributed, missing = run.total("attributed"), run.total("not-attributed")
    coverage = (
        f"coverage: {percent(run.coverage)} ({attributed} of {attributed + missing} decided resources "
        f"attributed; {run.total('unknown')} unknown)"
        if run.finished
        else "coverage: - (the run has not finished)"
    )
    return [
        f"customer {tenant}: audit run {run.run_id}, started {run.started_at or '-'}, {state}",
        f"units done: {len(run.units_done)} of {len(run.units)}",
        coverage,
    ]


def counts_table(run: Run) -> Any:
    """Products down, statuses across, with a total line."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    statuses = _statuses(run)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("product")
    for status in statuses:
        table.add_column(status, justify="right")
    for product, counts in sorted(run.counts.items()):
        table.add_row(Text(product), *(Text(str(counts.get(status, 0))) for status in statuses))
    table.add_row(Text("total", style="bold"), *(Text(str(run.total(status))) for status in statuses))
    return table


def show_run(current: Session, tenant: str, run: Run) -> None:
    """The run summary for people: lines, the counts, and the grants the customer has not given."""
    for line in run_lines(tenant, run):
        current.line(line)
    if run.counts:
        current.line("")
        current.show(counts_table(run))
    if run.needs_customer_action:
        current.line("")
        current.line(
            "needs customer action: the audit cannot read these APIs until the customer grants them "
            f"(palctl grants --tenant {tenant} --client-id C prints every grant):",
            style="yellow",
        )
        current.show(_two_columns(sorted(run.needs_customer_action.items())))


def _two_columns(rows: Sequence[tuple[str, str]]) -> Any:
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for left, right in rows:
        grid.add_row(Text("  " + left), Text(right))
    return grid


@dataclass(frozen=True)
class FindingCells:
    """A finding in the table for people (the CSV and JSON have every field)."""

    product: str
    status: str = field(metadata={"styles": STATUS_STYLES})
    name: str
    environment_id: str
    attributed_to: str


@dataclass(frozen=True)
class ChangeCells:
    time: str | None
    change: str | None
    product: str | None
    name: str | None


def show_customer(current: Session, report: CustomerReport) -> None:
    """One customer's report for people: the run, the findings, their remedies, recent changes."""
    show_run(current, report.customer_tenant_id, report.run)
    current.line("")
    current.line(f"findings: {len(report.findings)} of {report.total}", style="bold")
    if report.findings:
        cells = [
            FindingCells(f.product, f.status, f.name, f.environment_id, ", ".join(f.attributed_to) or "-")
            for f in report.findings
        ]
        current.show(rich_table(FindingCells, cells))
    remedies = sorted({(f.product, f.remedy) for f in report.findings if f.remedy})
    if remedies:
        current.line("")
        current.line("what to do:", style="bold")
        current.show(_two_columns([(product, remedy or "") for product, remedy in remedies]))
    if report.changes:
        current.line("")
        current.line("recent changes:", style="bold")
        changes = [ChangeCells(c["time"], c["change"], c["product"], c["name"]) for c in report.changes]
        current.show(rich_table(ChangeCells, changes))


@contextmanager
def spinner(current: Session, first: str) -> Iterator[Callable[[str], None]]:
    """A spinner with a line of text on standard error while the block runs, if standard error is
    decorated; yields the function that changes the text (a no-op without a spinner)."""
    from palctl.terminal import decorated

    if not decorated(current.err):
        yield lambda _text: None
        return
    from rich.text import Text

    # Text, not str: Rich reads a str given to a spinner as markup
    with current.console(current.err).status(Text(first)) as status:
        yield lambda line: status.update(Text(line))
