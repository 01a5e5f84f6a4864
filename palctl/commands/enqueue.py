"""`palctl enqueue`: send onboarding messages, one customer from flags or a backfill from a CSV file.

Every row is validated with the product's own parser before anything is sent; the messages go out in
as few batches as the size limit allows (`shared.spine.servicebus.send_in_batches`), with a progress
bar on a terminal. Exit code 0 when every message was sent (or, with --dry-run, every row is valid),
2 for bad input (nothing sent), 1 when nothing could be sent, 3 when some messages were sent and
others not (a send failed part way, or invalid rows were skipped with --skip-invalid).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated

import typer

from palctl.bus import BusFlags
from palctl.configuration import Configuration, Key
from palctl.errors import ExitCode, Failed, UsageError
from palctl.onboarding import CSV_COLUMNS, CsvRow, Onboarding, build_onboarding, read_csv
from palctl.options import (
    APP_EXAMPLE,
    TENANT_EXAMPLE,
    ConnectionString,
    Namespace,
    Output,
    Queue,
    command_app,
    examples,
    finish,
    handles_errors,
    session,
)
from palctl.output import OutputFormat, Report, render
from palctl.terminal import Session

EPILOG = examples(
    f"palctl enqueue --tenant {TENANT_EXAMPLE} --client-id {APP_EXAMPLE}",
    "palctl enqueue --csv customers.csv --dry-run",
    "palctl enqueue --csv customers.csv --namespace pal-prod.servicebus.windows.net -o json",
    "export-crm | palctl enqueue --csv - --skip-invalid -o csv > sent.csv",
)


class IdentityType(StrEnum):
    FEDERATED = "federated"
    SECRET = "secret"
    CERTIFICATE = "certificate"


class Status(StrEnum):
    """What became of a row: `valid` (checked, not sent: --dry-run or other rows invalid), `sent`,
    `not-sent` (a send failed), `invalid`, `duplicate` (the same message as an earlier row)."""

    VALID = "valid"
    SENT = "sent"
    NOT_SENT = "not-sent"
    INVALID = "invalid"
    DUPLICATE = "duplicate"


STYLES = {"sent": "green", "valid": "green", "not-sent": "red", "invalid": "red", "duplicate": "yellow"}


@dataclass(frozen=True)
class EnqueueRow:
    row: int | None
    customer_tenant_id: str | None
    client_id: str | None
    message_id: str | None
    status: Status = field(metadata={"styles": STYLES})
    error: str | None


@dataclass(frozen=True)
class Outcome:
    """How far it got: nothing tried (--dry-run, or rows invalid), or the first `sent` messages went
    out and `failure` says why the rest did not."""

    dry_run: bool
    attempted: bool = False
    sent: int = 0
    failure: Failed | None = None


def _status(row: CsvRow, position: int, outcome: Outcome) -> Status:
    if row.error is not None:
        return Status.INVALID
    if row.duplicate_of is not None:
        return Status.DUPLICATE
    if not outcome.attempted:
        return Status.VALID
    return Status.SENT if position < outcome.sent else Status.NOT_SENT


def report(rows: Sequence[CsvRow], queue: str, outcome: Outcome, *, from_csv: bool) -> Report:
    """Every row with what became of it; for people, the invalid and duplicate rows and a summary."""
    from shared.spine.untrusted import shown

    table: list[EnqueueRow] = []
    position = 0
    for row in rows:
        status = _status(row, position, outcome)
        position += status in (Status.SENT, Status.NOT_SENT, Status.VALID)
        tenant, client = (None if v is None else shown(v, 64) for v in (row.tenant, row.client_id))
        message_id = row.onboarding.message_id if row.onboarding else None
        line = row.line if from_csv else None
        error = str(outcome.failure) if status is Status.NOT_SENT and outcome.failure else row.error
        table.append(EnqueueRow(line, tenant, client, message_id, status, error))
    count = {status: sum(1 for r in table if r.status is status) for status in Status}
    summary = {
        "queue": queue,
        "dryRun": outcome.dry_run,
        "total": len(table),
        "valid": len(table) - count[Status.INVALID],
        "invalid": count[Status.INVALID],
        "duplicates": count[Status.DUPLICATE],
        "sent": count[Status.SENT],
    }
    return Report(EnqueueRow, table, "rows", summary, _lines(rows, queue, outcome), table_rows=[])


def _lines(rows: Sequence[CsvRow], queue: str, outcome: Outcome) -> list[str]:
    lines = [f"invalid {row.error}" for row in rows if row.error is not None]
    lines += [
        f"row {row.line}: the same message as row {row.duplicate_of} (sent once)"
        for row in rows
        if row.duplicate_of is not None
    ]
    wanted = sum(1 for row in rows if row.error is None and row.duplicate_of is None)
    if not outcome.attempted:
        if outcome.dry_run:
            lines.append(f"{wanted} valid message(s); nothing sent (--dry-run)")
    elif outcome.failure is None and outcome.sent == wanted:
        lines.append(f"{outcome.sent} message(s) sent to {queue}")
    else:
        lines.append(f"{outcome.sent} of {wanted} message(s) sent to {queue}")
    return lines


def rows_from_csv(path: str) -> list[CsvRow]:
    from palctl.csvfile import open_csv

    with open_csv(path) as stream:
        rows = read_csv(stream)
    if not rows:
        raise UsageError("--csv: the file has a header and no rows")
    return rows


def row_from_flags(fields: dict[str, str | None]) -> list[CsvRow]:
    """The one customer given by flags; bad flags are a UsageError."""
    onboarding = build_onboarding(fields, where="arguments")
    return [CsvRow(0, onboarding.tenant, onboarding.client_id, onboarding)]


async def send(
    session: Session, config: Configuration, flags: BusFlags, queue: str, onboardings: Sequence[Onboarding]
) -> Outcome:
    """Send in batches with a progress bar; how many went out, and why the rest did not."""
    from palctl.bus import bus_errors, bus_target, failure, open_bus
    from shared.spine.servicebus import OutgoingMessage, send_in_batches

    target = bus_target(config, flags)
    messages = [OutgoingMessage(o.body, o.message_id, {}) for o in onboardings]
    sent = 0
    with session.progress(len(messages), f"sending to {queue}") as advance:

        def on_sent(count: int) -> None:
            nonlocal sent
            sent += count
            advance(count)

        try:
            async with open_bus(target) as client, client.get_queue_sender(queue) as sender:
                await send_in_batches(sender, messages, on_sent=on_sent)
        except bus_errors() as error:
            return Outcome(
                dry_run=False, attempted=True, sent=sent, failure=failure(error, f"sending to {queue}")
            )
    return Outcome(dry_run=False, attempted=True, sent=sent)


def exit_code(rows: Sequence[CsvRow], outcome: Outcome) -> ExitCode:
    if not outcome.attempted:
        return ExitCode.DONE
    if outcome.sent == 0:
        return ExitCode.FAILED
    skipped = any(row.error is not None for row in rows)
    return ExitCode.PARTIAL if outcome.failure is not None or skipped else ExitCode.DONE


def _source(tenant: str | None, csv_file: str | None, single: dict[str, str | None]) -> None:
    if (tenant is None) == (csv_file is None):
        raise UsageError("give --tenant (one customer) or --csv FILE (many), not both and not neither")
    if csv_file is not None:
        given = [f"--{name.replace('_', '-')}" for name, value in single.items() if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: for --tenant only; a CSV file has columns for them")
    elif single["client_id"] is None:
        raise UsageError("--client-id is required with --tenant")


def enqueue_rows(tenant: str | None, csv_file: str | None, single: dict[str, str | None]) -> list[CsvRow]:
    _source(tenant, csv_file, single)
    if csv_file is not None:
        return rows_from_csv(csv_file)
    return row_from_flags(
        {
            "customerTenantId": tenant,
            "clientId": single["client_id"],
            "identityType": single["identity_type"],
            "keyVaultSecretName": single["secret_name"],
            "partnerId": single["partner_id"],
            "customerName": single["customer_name"],
            "correlationId": single["correlation_id"],
        }
    )


def run(
    ctx: typer.Context,
    rows: list[CsvRow],
    target: tuple[BusFlags, str | None],
    output: OutputFormat,
    *,
    skip_invalid: bool,
    dry_run: bool,
    from_csv: bool,
) -> ExitCode:
    """Validate, report and (unless --dry-run) send; the exit code."""
    import asyncio

    flags, queue_flag = target
    current, config = session(ctx), Configuration()
    queue = config.get(Key.QUEUE, queue_flag) or ""
    invalid = sum(1 for row in rows if row.error is not None)
    wanted = [r.onboarding for r in rows if r.onboarding is not None and r.duplicate_of is None]
    outcome = Outcome(dry_run=dry_run)
    if (invalid and not skip_invalid) or not wanted:
        render(report(rows, queue, outcome, from_csv=from_csv), output, current.out, session=current)
        if not wanted:
            raise UsageError("no valid row; nothing sent")
        raise UsageError(f"{invalid} invalid row(s); nothing sent (fix them, or use --skip-invalid)")
    if not dry_run:
        outcome = asyncio.run(send(current, config, flags, queue, wanted))
    render(report(rows, queue, outcome, from_csv=from_csv), output, current.out, session=current)
    if outcome.failure is not None:
        current.message(str(outcome.failure), style="red")
    return exit_code(rows, outcome)


app = command_app("enqueue")


@app.command("enqueue", epilog=EPILOG)
@handles_errors
def enqueue(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(metavar="GUID", help="customer tenant ID")] = None,
    csv_file: Annotated[
        str | None,
        typer.Option(
            "--csv",
            metavar="FILE",
            help="CSV of customers ('-': standard input); columns: "
            f"{', '.join(CSV_COLUMNS)} (the first two required)",
        ),
    ] = None,
    client_id: Annotated[
        str | None, typer.Option(metavar="GUID", help="client ID of the partner's app in that tenant")
    ] = None,
    identity_type: Annotated[IdentityType | None, typer.Option("--type", help="[default: federated]")] = None,
    secret_name: Annotated[
        str | None, typer.Option(metavar="NAME", help="Key Vault secret (secret and certificate identities)")
    ] = None,
    partner_id: Annotated[
        str | None, typer.Option(metavar="ID", help="partner ID; default: the service's PARTNER_ID")
    ] = None,
    customer_name: Annotated[str | None, typer.Option(metavar="TEXT")] = None,
    correlation_id: Annotated[str | None, typer.Option(metavar="TEXT")] = None,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="send the valid CSV rows even if some are bad (exit 3)")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate only; send nothing")] = False,
    namespace: Namespace = None,
    connection_string: ConnectionString = None,
    queue: Queue = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Send onboarding messages: one customer, or a CSV backfill.

    Every row is validated with the product's own parser first; nothing is sent while any row is bad
    (unless --skip-invalid). The MessageId is derived from tenant, client ID, partner ID and the day,
    so the same customer enqueued twice on one day is sent once.
    """
    single: dict[str, str | None] = {
        "client_id": client_id,
        "identity_type": identity_type.value if identity_type else None,
        "secret_name": secret_name,
        "partner_id": partner_id,
        "customer_name": customer_name,
        "correlation_id": correlation_id,
    }
    rows = enqueue_rows(tenant, csv_file, single)
    target = (BusFlags(namespace, connection_string), queue)
    code = run(ctx, rows, target, output, skip_invalid=skip_invalid, dry_run=dry_run, from_csv=bool(csv_file))
    finish(code)
