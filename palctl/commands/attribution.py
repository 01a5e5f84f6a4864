"""`palctl attribution report`: what the attribution audit found, over the Function App's HTTP API.

With `--tenant`, one customer's latest audit run (coverage, counts per product and status, the APIs
the customer has not granted and the grant to ask for) and every finding, paged through
`GET /api/attribution/{tenant}` until the API's `total` is reached; without it, every audited
customer's coverage, or those below one
(`GET /api/attribution[?coverageBelow=x]`). `--csv FILE` writes one row per
finding for Excel or Power BI (UTF-8 with a byte order mark, CRLF line ends).

The module also holds what `palctl audit` shares: the attribution routes over `palctl.api` (the
function key in a header, never on screen, no redirect followed) and the run summary. Every value
from the API is screened before it is shown or written (`shared.spine.untrusted.shown`: control
characters escaped, length capped, credential-shaped text redacted) and printed as Rich `Text`,
never as markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from palctl import checks
from palctl.api import ApiTarget, api_target
from palctl.attribution_data import (
    PAGE_SIZE,
    CoverageCells,
    CustomerCoverage,
    CustomerReport,
    Finding,
    FindingRow,
    connected,
    customer_report,
    customers_below,
)
from palctl.attribution_views import percent, show_customer
from palctl.configuration import Configuration
from palctl.errors import Failed, UsageError
from palctl.options import (
    TENANT_EXAMPLE,
    Output,
    command_app,
    examples,
    handles_errors,
    session,
)
from palctl.output import OutputFormat, Report, render, rich_table

if TYPE_CHECKING:
    from palctl.terminal import Session

REPORT_EPILOG = examples(
    f"palctl attribution report --tenant {TENANT_EXAMPLE}",
    "palctl attribution report --tenant T --status not-attributed --product cloud-flow",
    "palctl attribution report --tenant T --csv findings.csv",
    "palctl attribution report --coverage-below 0.8",
    "palctl attribution report --csv every-finding.csv -o json",
)
ApiUrl = Annotated[
    str | None,
    typer.Option(metavar="URL", help="the Function App's URL (env PAL_API_URL, config api-url)"),
]


# --- the command --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    product: str | None
    status: str | None

    def query(self) -> dict[str, str]:
        return {name: value for name, value in (("product", self.product), ("status", self.status)) if value}


def checked_filters(product: str | None, status: str | None) -> Filters:
    """--product and --status checked against the rules' values (the attribution modules are loaded
    here, when the command runs, not when palctl starts)."""
    from shared.attribution.findings import FindingStatus
    from shared.attribution.rules import Product

    for value, kind, flag in ((product, Product, "--product"), (status, FindingStatus, "--status")):
        if value is not None and value not in {member.value for member in kind}:
            raise UsageError(f"{flag} must be one of: {', '.join(member.value for member in kind)}")
    return Filters(product, status)


def checked_csv_path(path: Path | None) -> Path | None:
    """The CSV file to write: its folder must exist (checked before anything is asked of the API)."""
    if path is None:
        return None
    if path.is_dir() or not path.parent.is_dir():
        raise UsageError("--csv must name a file in an existing folder")
    return path


def write_findings_csv(path: Path, findings: Sequence[Finding]) -> None:
    """One row per finding, UTF-8 with a byte order mark and CRLF line ends (Excel reads the
    encoding from the mark; Power BI reads either), written to a side file and then moved."""
    import os

    from palctl.output import write_csv

    partial = path.with_name(path.name + ".partial")
    try:
        # newline="\r\n": every line end the CSV writer writes becomes CRLF (a cell holds none)
        with partial.open("w", encoding="utf-8-sig", newline="\r\n") as stream:
            write_csv(Report(FindingRow, [finding.row() for finding in findings]), stream)
        os.replace(partial, path)
    except OSError as error:
        raise Failed(f"cannot write {path} ({type(error).__name__})") from None


app = command_app(
    "attribution",
    help="The attribution audit's results: one customer's findings, or every customer's coverage.",
    no_args_is_help=True,
)


@app.callback()
def attribution() -> None:
    """The attribution audit's results: one customer's findings, or every customer's coverage."""


OneCustomer = Annotated[
    str | None,
    typer.Option(
        "--tenant", metavar="GUID", help="one customer: its latest run and every finding", show_default=False
    ),
]
ProductFilter = Annotated[
    str | None,
    typer.Option(metavar="PRODUCT", help="only this product's findings (canvas-app, cloud-flow...)"),
]
StatusFilter = Annotated[
    str | None,
    typer.Option(
        metavar="STATUS", help="only findings with this status: attributed, not-attributed, unknown"
    ),
]
CoverageBelow = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=1.0,
        metavar="FRACTION",
        help="without --tenant: only the customers below this coverage (default: every audited one)",
    ),
]
CsvFile = Annotated[
    Path | None,
    typer.Option(
        "--csv", metavar="FILE", help="also write one row per finding to FILE (UTF-8 with BOM, for Excel)"
    ),
]
PageSize = Annotated[int, typer.Option(min=1, max=PAGE_SIZE, metavar="N", help="findings per request")]


@dataclass(frozen=True)
class ReportRequest:
    tenant: str | None
    filters: Filters
    threshold: float | None
    csv_path: Path | None
    page_size: int


async def _fetch(
    target: ApiTarget, request: ReportRequest
) -> tuple[list[CustomerCoverage], list[CustomerReport]]:
    """One customer's report, or the customers below the coverage (and, for a CSV file, each one's
    findings)."""
    query = request.filters.query()
    async with connected(target) as api:
        if request.tenant is not None:
            return [], [await customer_report(api, request.tenant, query, request.page_size)]
        customers = await customers_below(api, request.threshold)
        reports = []
        if request.csv_path is not None:
            for customer in customers:
                tenant = customer.customer_tenant_id
                reports.append(await customer_report(api, tenant, query, request.page_size))
        return customers, reports


def _show_customers(current: Session, request: ReportRequest, customers: list[CustomerCoverage]) -> None:
    if customers:
        cells = [
            CoverageCells(
                c.customer_tenant_id,
                percent(c.coverage),
                c.attributed,
                c.not_attributed,
                c.unknown,
                c.needs_customer_action or "-",
                c.run_id,
                c.ended_at,
            )
            for c in customers
        ]
        current.show(rich_table(CoverageCells, cells))
    below = "" if request.threshold is None else f" below {request.threshold:.0%} coverage"
    current.line(f"{len(customers)} audited customer(s){below}")


def _render(
    current: Session,
    output: OutputFormat,
    request: ReportRequest,
    found: tuple[list[CustomerCoverage], list[CustomerReport]],
) -> None:
    import json

    customers, reports = found
    if request.tenant is not None:
        (only,) = reports
        if output is OutputFormat.TABLE:
            show_customer(current, only)
        elif output is OutputFormat.JSON:
            current.out.write(json.dumps(only.document(), indent=2, ensure_ascii=True) + "\n")
        else:
            render(Report(FindingRow, [f.row() for f in only.findings]), output, current.out)
    elif output is OutputFormat.TABLE:
        _show_customers(current, request, customers)
    else:
        summary = {"coverageBelow": request.threshold}
        render(Report(CustomerCoverage, customers, "customers", summary), output, current.out)


@app.command("report", epilog=REPORT_EPILOG)
@handles_errors
def report(
    ctx: typer.Context,
    tenant: OneCustomer = None,
    product: ProductFilter = None,
    status: StatusFilter = None,
    coverage_below: CoverageBelow = None,
    csv_file: CsvFile = None,
    page_size: PageSize = PAGE_SIZE,
    api_url: ApiUrl = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Show what the attribution audit found: one customer's findings, or every customer's coverage.

    With --tenant: the customer's latest audit run (coverage, counts per product and status, the APIs
    it has not granted and the grant to ask for) and every finding. Without: every audited customer
    whose coverage is below --coverage-below (1: every one not fully attributed). --csv FILE writes
    the findings (of every customer listed, without --tenant) for Excel or Power BI.
    """
    import asyncio

    request = ReportRequest(
        checks.guid(tenant, "--tenant") if tenant is not None else None,
        checked_filters(product, status),
        coverage_below,
        checked_csv_path(csv_file),
        page_size,
    )
    target = api_target(Configuration(), api_url)
    found = asyncio.run(_fetch(target, request))
    current = session(ctx)
    _render(current, OutputFormat(output), request, found)
    if request.csv_path is not None:
        findings = [finding for customer in found[1] for finding in customer.findings]
        write_findings_csv(request.csv_path, findings)
        current.message(f"wrote {len(findings)} finding(s) to {request.csv_path}")
