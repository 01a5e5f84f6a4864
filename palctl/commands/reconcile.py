"""`palctl reconcile`: Partner Center's insights download against the ledger, over the HTTP API.

Reads the insights file (`palctl.insights`: the columns `CustomerTenantId`, `Month` and
`PartnerAttributionType` of Microsoft's "Cloud product performance reports - Data definitions",
https://learn.microsoft.com/partner-center/insights/insights-data-definitions), pages through
`GET /api/links` (`continuationToken`) for every link state with its verified and earning intervals,
and prints the mismatches (`palctl.reconciliation`): customers linked and earning for longer than the
reporting delay without PAL attribution, PAL attribution for customers the ledger has no link for,
and months one side has and the other has not. The reporting delay is `--reporting-delay-days`
(environment `PAL_REPORTING_DELAY_DAYS`, default 45: Microsoft documents none, partners report weeks).

Exit code 0 when the two agree, 3 when there are mismatches or skipped rows (the reconciliation found
work to do: "partly done"), 1 when the API refused or could not be reached, 2 for a bad file or flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from palctl.api import ApiTarget, api_session, api_target, call
from palctl.configuration import Configuration
from palctl.errors import ExitCode, Failed, UsageError
from palctl.options import Output, command_app, examples, finish, handles_errors, session
from palctl.output import OutputFormat, Report, render
from palctl.reconciliation import DEFAULT_DELAY_DAYS, KINDS, LedgerLink, Mismatch

if TYPE_CHECKING:
    from palctl.insights import Insights
    from palctl.terminal import Session

EPILOG = examples(
    "palctl reconcile --insights AzureUsage.csv",
    "palctl reconcile --insights AzureUsage.csv --reporting-delay-days 60 -o csv > mismatches.csv",
    "palctl reconcile --insights AzureUsage.csv --as-of 2025-07-15 -o json",
)
PAGE_SIZE = 1000
"""Link states per request: the API's largest `top`."""
MAX_PAGES = 10_000
SHOWN_BAD_ROWS = 20
"""Skipped rows named on standard error; -o json lists them all."""
ADVICE = {
    "earning-not-attributed": "check the customer's Azure usage is under the linked identity's role "
    "assignments and that Partner Center reports the partner ID linked (GET /api/links/{tenant}/evidence)",
    "attributed-not-linked": "link the customer (palctl enqueue) or find who else links our partner ID there",
    "month-not-covered": "the ledger holds no verified interval for these months: the history says why",
    "month-missing": "ask Partner Center support about the months, with the link's evidence",
}


async def ledger_links(target: ApiTarget) -> list[LedgerLink]:
    """Every link state of `GET /api/links`, page after page (`continuationToken`)."""
    from urllib.parse import urlencode

    from palctl.attribution_data import refused
    from palctl.reconciliation import link_of

    links: list[LedgerLink] = []
    seen: set[str] = set()
    token: str | None = None
    async with api_session() as http:
        for _ in range(MAX_PAGES):
            query = {"top": str(PAGE_SIZE)} | ({"continuationToken": token} if token else {})
            response = await call(http, target, "GET", f"/links?{urlencode(query)}")
            if response.status != 200 or response.body is None:
                raise refused(response)
            items = response.body.get("items")
            if not isinstance(items, list):
                raise Failed("the API's answer to GET /api/links has no list of items")
            links += [link for item in items if isinstance(item, dict) and (link := link_of(item))]
            following = response.body.get("continuationToken")
            if following is None:
                return links
            if not isinstance(following, str) or following in seen:
                raise Failed("the API's continuationToken is not a new token: paging stopped")
            seen.add(following)
            token = following
    raise Failed(f"GET /api/links: more than {MAX_PAGES} pages")


def read_file(path: str) -> bytes:
    """The file's bytes (standard input for `-`), at most one byte past the size cap."""
    import sys
    from pathlib import Path

    from palctl.insights import MAX_BYTES

    if path == "-":
        return sys.stdin.buffer.read(MAX_BYTES + 1)
    try:
        with Path(path).open("rb") as stream:
            return stream.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise UsageError("--insights: no such file") from None
    except OSError as error:
        raise UsageError(f"--insights: cannot be read ({type(error).__name__})") from None


def as_of(value: str | None) -> datetime:
    """`--as-of`: a date (midnight UTC) or an ISO 8601 time; now without it."""
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError("--as-of must be a date (2025-07-15) or an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def summary(
    insights: Insights, links: Sequence[LedgerLink], rows: Sequence[Mismatch], now: datetime, delay: int
) -> dict[str, Any]:
    """The JSON document's fields besides the mismatches."""
    from palctl.insights import month_name

    months = sorted(insights.months)
    return {
        "rows": insights.rows,
        "customers": len(insights.tenants),
        "palCustomers": len(insights.pal),
        "months": {"from": month_name(months[0]), "to": month_name(months[-1])} if months else None,
        "links": len(links),
        "ledgerCustomers": len({link.customer_tenant_id for link in links}),
        "reportingDelayDays": delay,
        "asOf": now.isoformat(),
        "total": len(rows),
        "counts": {kind: sum(row.kind == kind for row in rows) for kind in KINDS},
        "skipped": len(insights.bad_rows),
        "skippedRows": [{"line": bad.line, "problem": bad.problem} for bad in insights.bad_rows],
    }


def lines(document: dict[str, Any], rows: Sequence[Mismatch]) -> list[str]:
    """What the table says after the mismatches."""
    months = document["months"]
    period = f"{months['from']} to {months['to']}" if months else "no month"
    said = [
        f"insights: {document['rows']} row(s), {document['customers']} customer(s), "
        f"{document['palCustomers']} attributed through PAL, {period}",
        f"ledger: {document['links']} link state(s) of {document['ledgerCustomers']} customer(s); "
        f"as of {document['asOf'][:10]}, reporting delay {document['reportingDelayDays']} days",
    ]
    if not rows:
        return [*said, "no mismatch: Partner Center and the ledger agree"]
    counts = ", ".join(f"{n} {kind}" for kind, n in document["counts"].items() if n)
    found = {row.kind for row in rows}
    return [*said, f"mismatches: {counts}", *(f"{kind}: {ADVICE[kind]}" for kind in KINDS if kind in found)]


def warn_skipped(current: Session, insights: Insights) -> None:
    """The skipped rows on standard error, the first few by line number."""
    for bad in insights.bad_rows[:SHOWN_BAD_ROWS]:
        current.warn(f"--insights line {bad.line} skipped: {bad.problem}")
    more = len(insights.bad_rows) - SHOWN_BAD_ROWS
    if more > 0:
        current.warn(f"{more} more row(s) skipped (-o json lists every one under skippedRows)")


InsightsFile = Annotated[
    str,
    typer.Option(
        "--insights",
        metavar="FILE.csv",
        help="Partner Center's insights download (Insights > Download reports: Azure usage, or "
        "Customers and tenants), CSV; - reads standard input",
        show_default=False,
    ),
]
ReportingDelay = Annotated[
    int,
    typer.Option(
        "--reporting-delay-days",
        min=0,
        max=366,
        metavar="DAYS",
        envvar="PAL_REPORTING_DELAY_DAYS",
        help="how long Partner Center may take to show PAL attribution",
    ),
]
AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar="DATE",
        help="when the file was downloaded (default: now): the delay counts up to it",
        show_default=False,
    ),
]
ApiUrl = Annotated[
    str | None,
    typer.Option(metavar="URL", help="the Function App's URL (env PAL_API_URL, config api-url)"),
]
app = command_app("reconcile")


@app.command("reconcile", epilog=EPILOG)
@handles_errors
def reconcile(
    ctx: typer.Context,
    insights_file: InsightsFile,
    reporting_delay_days: ReportingDelay = DEFAULT_DELAY_DAYS,
    as_of_value: AsOf = None,
    api_url: ApiUrl = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Reconcile Partner Center's PAL attribution with the ledger.

    Compares the insights download with every link state of the ledger (over the HTTP API) and lists
    the customers linked and earning without PAL attribution, PAL attribution without a link, and the
    months one side has and the other has not. Exit code 3 when there are mismatches (or skipped rows).
    The function key is read from PAL_API_KEY or the config file.
    """
    import asyncio

    from palctl.insights import read_insights
    from palctl.reconciliation import compare

    now = as_of(as_of_value)
    insights = read_insights(read_file(insights_file))
    target = api_target(Configuration(), api_url)
    links = asyncio.run(ledger_links(target))
    rows = compare(insights, links, now=now, delay_days=reporting_delay_days)
    current = session(ctx)
    warn_skipped(current, insights)
    document = summary(insights, links, rows, now, reporting_delay_days)
    report = Report(Mismatch, rows, items_key="mismatches", summary=document, lines=lines(document, rows))
    render(report, output, current.out, session=current)
    finish(ExitCode.PARTIAL if rows or insights.bad_rows else ExitCode.DONE)
