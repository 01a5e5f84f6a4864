"""`palctl evidence`: was each customer linked to our partner ID throughout a period?

Asks the Function App's HTTP API (`GET /api/links/{tenant}/coverage?from=&to=`) for one customer
(--tenant) or for every customer in the ledger (`GET /api/links`, paged), and prints per customer
and identity: linked throughout, or the intervals linked and the gaps with their reasons. `--csv
FILE` writes one row per interval and gap (UTF-8 with BOM), the file to hand over in an incentive
dispute (docs/operations.md says what it proves). Exit code 0 when answered (whether or not every
identity was linked throughout), 1 when the API refused or could not be reached, 2 for bad input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from palctl import checks
from palctl.api import ApiTarget, api_session, api_target, call
from palctl.commands.attribution import CsvFile, checked_csv_path
from palctl.configuration import Configuration
from palctl.errors import ExitCode, Failed
from palctl.options import TENANT_EXAMPLE, Output, command_app, examples, finish, handles_errors, session
from palctl.output import OutputFormat, Report, render

EPILOG = examples(
    f"palctl evidence --tenant {TENANT_EXAMPLE} --from 2026-03-01 --to 2026-03-31",
    "palctl evidence --from 2026-03-01 --to 2026-03-31 --csv march-evidence.csv",
)
_LIST_PAGE = 1000


@dataclass(frozen=True)
class EvidenceRow:
    """One interval linked, or one gap, of one identity of one customer."""

    customer_tenant_id: str
    client_id: str
    linked_throughout: bool
    kind: str
    """`linked` or `gap`."""
    start: str
    end: str
    partner_id: str | None
    reason: str | None
    detail: str | None


def rows_of(answer: dict[str, Any]) -> list[EvidenceRow]:
    """The coverage answer as rows, every value from the server screened (escaped, capped)."""
    from shared.spine.untrusted import shown

    def text(value: Any, limit: int = 64) -> str | None:
        return None if value is None else shown(value, limit)

    tenant = text(answer.get("customerTenantId")) or "-"
    rows = []
    for identity in answer.get("identities") or []:
        client, throughout = text(identity.get("clientId")) or "-", identity.get("linkedThroughout") is True
        spans = [("linked", span) for span in identity.get("intervals") or []]
        spans += [("gap", span) for span in identity.get("gaps") or []]
        for kind, span in sorted(spans, key=lambda pair: str(pair[1].get("from"))):
            rows.append(
                EvidenceRow(
                    tenant,
                    client,
                    throughout,
                    kind,
                    text(span.get("from")) or "-",
                    text(span.get("to")) or "-",
                    text(span.get("partnerId")),
                    text(span.get("reason")),
                    text(span.get("detail"), 300),
                )
            )
    return rows


def lines_of(rows: Sequence[EvidenceRow]) -> list[str]:
    """Per customer and identity, for people: linked throughout, or how many gaps and why."""
    lines = []
    identities = dict.fromkeys((row.customer_tenant_id, row.client_id) for row in rows)
    for tenant, client in identities:
        mine = [row for row in rows if (row.customer_tenant_id, row.client_id) == (tenant, client)]
        gaps = [row for row in mine if row.kind == "gap"]
        if mine[0].linked_throughout:
            lines.append(f"{tenant} {client}: linked throughout")
        else:
            reasons = ", ".join(sorted({row.reason or "-" for row in gaps}))
            lines.append(f"{tenant} {client}: NOT linked throughout: {len(gaps)} gap(s) ({reasons})")
    return lines


async def coverage_rows(
    target: ApiTarget, tenant: str | None, start: str | None, end: str | None
) -> list[EvidenceRow]:
    """The coverage of one customer, or of every customer the ledger lists."""
    query = "&".join(f"{name}={quote(value)}" for name, value in (("from", start), ("to", end)) if value)
    async with api_session() as http:
        tenants = [tenant] if tenant else await _every_tenant(http, target)
        rows: list[EvidenceRow] = []
        for customer in tenants:
            response = await call(http, target, "GET", f"/links/{customer}/coverage?{query}")
            if response.status != 200 or response.body is None:
                raise Failed(_refusal(response.status, response.body))
            rows += rows_of(response.body)
    return rows


async def _every_tenant(http: Any, target: ApiTarget) -> list[str]:
    """Every customer tenant with a link state in the ledger, through `GET /api/links`, paged."""
    from shared.spine.identifiers import is_guid

    tenants: dict[str, None] = {}
    token: str | None = None
    while True:
        page = f"/links?top={_LIST_PAGE}" + (f"&continuationToken={quote(token)}" if token else "")
        response = await call(http, target, "GET", page)
        if response.status != 200 or response.body is None:
            raise Failed(_refusal(response.status, response.body))
        for item in response.body.get("items") or []:
            tenant = item.get("customerTenantId")
            if isinstance(tenant, str) and is_guid(tenant):
                tenants[tenant.lower()] = None
        token = response.body.get("continuationToken")
        if not isinstance(token, str) or not token:
            return list(tenants)


def _refusal(status: int, body: dict[str, Any] | None) -> str:
    from shared.spine.untrusted import shown

    if status == 401:
        return "HTTP 401: the function key (PAL_API_KEY) is missing or wrong"
    title, detail = (body or {}).get("title"), (body or {}).get("detail")
    return f"HTTP {status} {shown(title or '', 100)}: {shown(detail or '', 500)}".rstrip(": ")


def write_rows_csv(path: Path, rows: Sequence[EvidenceRow]) -> None:
    """UTF-8 with a byte order mark and CRLF line ends, written to a side file and then moved."""
    import os

    from palctl.output import write_csv

    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8-sig", newline="\r\n") as stream:
            write_csv(Report(EvidenceRow, rows), stream)
        os.replace(partial, path)
    except OSError as error:
        raise Failed(f"cannot write {path} ({type(error).__name__})") from None


app = command_app("evidence")


@app.command("evidence", epilog=EPILOG)
@handles_errors
def evidence(
    ctx: typer.Context,
    tenant: Annotated[
        str | None, typer.Option(metavar="GUID", help="one customer (default: every customer in the ledger)")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--from", metavar="DATE", help="start: ISO date or date-time (default: 30 days before --to)"
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", metavar="DATE", help="end: ISO date (included) or date-time; default now"),
    ] = None,
    csv_file: CsvFile = None,
    api_url: Annotated[
        str | None,
        typer.Option(metavar="URL", help="the Function App's URL (env PAL_API_URL, config api-url)"),
    ] = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Was each customer linked throughout a period? (HTTP API)

    Per customer and identity: linked throughout, or the intervals linked and the gaps with their
    reasons (removed, re-pointed, identity-gone, offboarded, not-onboarded, unknown). --csv FILE
    writes one row per interval and gap, for an incentive dispute.
    """
    import asyncio

    checked_tenant = checks.guid(tenant, "--tenant") if tenant is not None else None
    csv_path = checked_csv_path(csv_file)
    target = api_target(Configuration(), api_url)
    rows = asyncio.run(coverage_rows(target, checked_tenant, start, end))
    current = session(ctx)
    if csv_path is not None:
        write_rows_csv(csv_path, rows)
        current.message(f"wrote {len(rows)} row(s) to {csv_path}")
    report = Report(EvidenceRow, rows, items_key="rows", lines=lines_of(rows))
    render(report, output, current.out, session=current)
    finish(ExitCode.DONE)
