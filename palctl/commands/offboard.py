"""`palctl offboard`: offboard customers through the Function App's HTTP API, one from flags or many
from a CSV file.

`POST /api/links/{tenant}/offboard` signs in as the identity recorded for the customer, removes its
link and marks it offboarded: the nightly run stops checking it and the history is kept. Every row is
validated with the product's own parser before anything is called; the calls go out a few at a time,
with a progress bar on a terminal. The API URL comes from --api-url, PAL_API_URL or the config file;
the function key from PAL_API_KEY or the config file, never from a flag. Exit code 0 when every
customer was offboarded (outcome `unlinked`; or, with --dry-run, every row is valid), 2 for bad input
(nothing called), 1 when none was, 3 when some were and others not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from palctl.errors import ExitCode, Failed, UsageError
from palctl.offboarding import CSV_COLUMNS, Offboard, OffboardRow, build_offboard, read_csv
from palctl.options import (
    APP_EXAMPLE,
    TENANT_EXAMPLE,
    Output,
    command_app,
    examples,
    finish,
    handles_errors,
    session,
)
from palctl.output import OutputFormat, Report, render

if TYPE_CHECKING:
    from palctl.api import ApiTarget, Response
    from palctl.terminal import Session

EPILOG = examples(
    f"palctl offboard --tenant {TENANT_EXAMPLE}",
    f"palctl offboard --tenant {TENANT_EXAMPLE} --client-id {APP_EXAMPLE} --correlation-id TICKET-4711",
    "palctl offboard --csv ended.csv --dry-run",
    "palctl offboard --csv ended.csv -o csv > offboarded.csv",
)
CONCURRENT_CALLS = 4
"""Calls in flight at once: each customer tenant has its own ARM limits, the Function App has not."""


class Status(StrEnum):
    """What became of a row: `offboarded` (the API answered `unlinked`), `not-offboarded` (another
    outcome, a refusal, or the API could not be reached), `valid` (checked, not called: --dry-run),
    `invalid`, `duplicate` (the same tenant and client ID as an earlier row)."""

    OFFBOARDED = "offboarded"
    NOT_OFFBOARDED = "not-offboarded"
    VALID = "valid"
    INVALID = "invalid"
    DUPLICATE = "duplicate"


STYLES = {
    "offboarded": "green",
    "valid": "green",
    "not-offboarded": "red",
    "invalid": "red",
    "duplicate": "yellow",
}


@dataclass(frozen=True)
class Answer:
    """What the API said about one offboarding, every value from it screened."""

    http_status: int | None
    outcome: str | None = None
    client_id: str | None = None
    code: str | None = None
    detail: str | None = None

    @property
    def offboarded(self) -> bool:
        """The API answered 200 with outcome `unlinked`."""
        return self.http_status == 200 and self.outcome == "unlinked"


@dataclass(frozen=True)
class OffboardResult:
    row: int | None
    customer_tenant_id: str | None
    client_id: str | None
    status: Status = field(metadata={"styles": STYLES})
    http_status: int | None
    outcome: str | None
    code: str | None
    detail: str | None


def answer(response: Response) -> Answer:
    """The API's answer: the outcome and its reason (200, 503), or the problem's title and detail."""
    from shared.spine.untrusted import shown

    body = response.body or {}

    def text(name: str, limit: int) -> str | None:
        value = body.get(name)
        return None if value is None else shown(value, limit)

    if response.status == 401:
        return Answer(401, detail="the function key (PAL_API_KEY) is missing or wrong")
    outcome, client_id, code = text("outcome", 64), text("clientId", 64), text("code", 64)
    if response.status == 200:
        return Answer(200, outcome, client_id, code, text("reason", 500))
    title, detail = text("title", 100), text("detail", 500)
    problem = ": ".join(part for part in (title, detail) if part) or None
    kind = body.get("type")  # a problem's type URI ends in its code
    if code is None and isinstance(kind, str):
        code = shown(kind.rsplit("/", 1)[-1], 64)
    return Answer(response.status, outcome, client_id, code, problem)


async def offboard_all(current: Session, target: ApiTarget, offboards: Sequence[Offboard]) -> list[Answer]:
    """Every offboarding through the API, a few at a time, with a progress bar; in their order."""
    from palctl.api import api_session, call

    gate = asyncio.Semaphore(CONCURRENT_CALLS)
    with current.progress(len(offboards), "offboarding") as advance:
        async with api_session() as http:

            async def one(offboard: Offboard) -> Answer:
                async with gate:
                    try:
                        path = f"/links/{offboard.tenant}/offboard"
                        response = await call(http, target, "POST", path, offboard.body())
                    except Failed as error:
                        return Answer(None, detail=str(error))
                    finally:
                        advance(1)
                return answer(response)

            return list(await asyncio.gather(*(one(offboard) for offboard in offboards)))


def _status(row: OffboardRow, done: Answer | None) -> Status:
    """What became of the row, given the API's answer (None: not called)."""
    if row.error is not None:
        return Status.INVALID
    if row.duplicate_of is not None:
        return Status.DUPLICATE
    if done is None:
        return Status.VALID
    return Status.OFFBOARDED if done.offboarded else Status.NOT_OFFBOARDED


def _result(row: OffboardRow, done: Answer | None, *, from_csv: bool) -> OffboardResult:
    """The row as reported: as written (screened), with the API's answer when it was called."""
    from shared.spine.untrusted import shown

    tenant, client = (None if v is None else shown(v, 64) for v in (row.tenant, row.client_id))
    detail = row.error or (f"the same as row {row.duplicate_of}" if row.duplicate_of else None)
    if done is None:
        return OffboardResult(
            row.line if from_csv else None, tenant, client, _status(row, None), None, None, None, detail
        )
    return OffboardResult(
        row.line if from_csv else None,
        tenant,
        client or done.client_id,
        _status(row, done),
        done.http_status,
        done.outcome,
        done.code,
        done.detail,
    )


def report(
    rows: Sequence[OffboardRow], answers: Sequence[Answer] | None, *, dry_run: bool, from_csv: bool
) -> Report:
    """Every row with what became of it; for people, a table of the rows and a summary line."""
    pending = iter(answers or ())
    table = [
        _result(row, next(pending) if answers is not None and _wanted(row) else None, from_csv=from_csv)
        for row in rows
    ]
    count = {status: sum(1 for result in table if result.status is status) for status in Status}
    summary = {
        "dryRun": dry_run,
        "total": len(table),
        "valid": len(table) - count[Status.INVALID],
        "invalid": count[Status.INVALID],
        "duplicates": count[Status.DUPLICATE],
        "offboarded": count[Status.OFFBOARDED],
    }
    asked = sum(1 for row in rows if _wanted(row))
    if answers is None:
        line = f"{asked} valid offboarding(s); nothing called" + (" (--dry-run)" if dry_run else "")
    else:
        line = f"{count[Status.OFFBOARDED]} of {asked} customer(s) offboarded"
    return Report(OffboardResult, table, "rows", summary, [line])


def _wanted(row: OffboardRow) -> bool:
    """A valid row that is not a repeat of an earlier one: it is called."""
    return row.offboard is not None and row.duplicate_of is None


def exit_code(answers: Sequence[Answer] | None) -> ExitCode:
    """0 all offboarded (or nothing called: --dry-run), 1 none, 3 some."""
    if answers is None:
        return ExitCode.DONE
    offboarded = sum(1 for done in answers if done.offboarded)
    if offboarded == len(answers):
        return ExitCode.DONE
    return ExitCode.FAILED if offboarded == 0 else ExitCode.PARTIAL


def offboard_rows(
    tenant: str | None, csv_file: str | None, single: dict[str, str | None]
) -> list[OffboardRow]:
    """The rows to offboard: one from the flags, or every row of the CSV file (validated)."""
    if (tenant is None) == (csv_file is None):
        raise UsageError("give --tenant (one customer) or --csv FILE (many), not both and not neither")
    if csv_file is None:
        fields = {
            "customerTenantId": tenant,
            "clientId": single["client_id"],
            "correlationId": single["correlation_id"],
        }
        offboard = build_offboard(fields, where="arguments")
        return [OffboardRow(0, offboard.tenant, offboard.client_id, offboard)]
    given = [f"--{name.replace('_', '-')}" for name, value in single.items() if value is not None]
    if given:
        raise UsageError(f"{', '.join(given)}: for --tenant only; a CSV file has columns for them")
    from palctl.csvfile import open_csv

    with open_csv(csv_file) as stream:
        rows = read_csv(stream)
    if not rows:
        raise UsageError("--csv: the file has a header and no rows")
    return rows


def run(
    ctx: typer.Context,
    rows: list[OffboardRow],
    api_url: str | None,
    output: OutputFormat,
    *,
    dry_run: bool,
    from_csv: bool,
) -> ExitCode:
    """Validate, call (unless --dry-run) and report; the exit code."""
    from palctl.api import api_target
    from palctl.configuration import Configuration

    current = session(ctx)
    invalid = sum(1 for row in rows if row.error is not None)
    if invalid:
        render(report(rows, None, dry_run=dry_run, from_csv=from_csv), output, current.out, session=current)
        raise UsageError(f"{invalid} invalid row(s); nothing called (fix them first)")
    answers: list[Answer] | None = None
    if not dry_run:
        target = api_target(Configuration(), api_url)
        wanted = [row.offboard for row in rows if row.offboard is not None and _wanted(row)]
        answers = asyncio.run(offboard_all(current, target, wanted))
    render(report(rows, answers, dry_run=dry_run, from_csv=from_csv), output, current.out, session=current)
    return exit_code(answers)


app = command_app("offboard")


@app.command("offboard", epilog=EPILOG)
@handles_errors
def offboard(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(metavar="GUID", help="customer tenant ID")] = None,
    csv_file: Annotated[
        str | None,
        typer.Option(
            "--csv",
            metavar="FILE",
            help="CSV of customers ('-': standard input); columns: "
            f"{', '.join(CSV_COLUMNS)} (the first required)",
        ),
    ] = None,
    client_id: Annotated[
        str | None,
        typer.Option(
            metavar="GUID", help="the identity to offboard, when several are recorded for the tenant"
        ),
    ] = None,
    correlation_id: Annotated[
        str | None, typer.Option(metavar="TEXT", help="the CRM record or ticket, kept in the history")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate only; call nothing")] = False,
    api_url: Annotated[
        str | None,
        typer.Option(metavar="URL", help="the Function App's URL (env PAL_API_URL, config api-url)"),
    ] = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Offboard customers: remove their link (over the HTTP API).

    Signs in as the identity recorded for each customer and removes the partner's link; the nightly
    re-verification no longer checks it, the history is kept, and onboarding the customer again
    starts anew.
    Every row is validated with the product's own parser first; nothing is called while any row is
    bad. The function key is read from PAL_API_KEY or the config file.
    """
    single: dict[str, Any] = {"client_id": client_id, "correlation_id": correlation_id}
    rows = offboard_rows(tenant, csv_file, single)
    finish(run(ctx, rows, api_url, output, dry_run=dry_run, from_csv=csv_file is not None))
