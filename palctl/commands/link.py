"""`palctl link show`: a customer's links read from Azure now, beside what the ledger says.

Asks the Function App's HTTP API (`GET /api/links/{tenant}/live[?clientId=]`), which signs in as each
recorded identity (or the one named) and reads its link from ARM; nothing is written. Prints per
identity "ledger: linked to 1234567 at ...; Azure: linked to 1234567, version 5, updated ..." and
flags an identity whose ledger and Azure are out of step. Exit code 0 when every identity is in
step, 3 when one is out of step, 1 when the API refused or could not be reached, 2 for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from palctl import checks
from palctl.api import ApiTarget, api_session, api_target, call
from palctl.configuration import Configuration
from palctl.errors import ExitCode, Failed
from palctl.options import (
    APP_EXAMPLE,
    TENANT_EXAMPLE,
    Output,
    Tenant,
    command_app,
    examples,
    finish,
    handles_errors,
    session,
)
from palctl.output import OutputFormat, Report, render

app = command_app("link", help="A customer's links, read from Azure now.", no_args_is_help=True)
SHOW_EPILOG = examples(
    f"palctl link show --tenant {TENANT_EXAMPLE}",
    f"palctl link show --tenant {TENANT_EXAMPLE} --client-id {APP_EXAMPLE} -o json",
)


@app.callback()
def link() -> None:
    """A customer's links, read from Azure now (a group, so that `show` is named)."""


# Ledger outcomes that record the link as found; any other is shown beside the partner ID.
_AS_FOUND = {"linked", "already-linked", "verified", "healed", "updated", "reclaimed", "kept-other-partner"}


@dataclass(frozen=True)
class LiveRow:
    """One identity: the ledger's state, Azure's now, and whether they are in step."""

    customer_tenant_id: str
    client_id: str
    in_step: bool = field(metadata={"styles": {"true": "green", "false": "red"}})
    ledger_outcome: str | None
    ledger_partner_id: str | None
    ledger_checked_at: str | None
    offboarded_at: str | None
    azure_linked: bool | None
    azure_partner_id: str | None
    azure_partner_name: str | None
    azure_version: int | None
    azure_updated_at: str | None
    azure_state: str | None
    azure_error_code: str | None
    azure_error: str | None
    difference: str | None


def _text(value: Any, limit: int = 64) -> str | None:
    """A value from the server, screened (escaped, capped, credential-shaped text redacted)."""
    from shared.spine.untrusted import shown

    return None if value is None else shown(value, limit)


def row_of(tenant: str, identity: dict[str, Any]) -> LiveRow:
    """One identity of the API's answer as a row, every value from the server screened."""
    ledger, azure = identity.get("ledger") or {}, identity.get("azure") or {}
    error = azure.get("error") or {}
    version = azure.get("version")
    return LiveRow(
        tenant,
        _text(identity.get("clientId")) or "-",
        identity.get("inStep") is True,
        _text(ledger.get("outcome")),
        _text(ledger.get("linkedPartnerId")),
        _text(ledger.get("lastCheckedAt")),
        _text(ledger.get("offboardedAt")),
        None if error else azure.get("linked") is True,
        _text(azure.get("partnerId")),
        _text(azure.get("partnerName"), 200),
        version if isinstance(version, int) and not isinstance(version, bool) else None,
        _text(azure.get("updatedTime")),
        _text(azure.get("state")),
        _text(error.get("code")),
        _text(error.get("reason"), 500) if error else None,
        _text(identity.get("difference"), 500),
    )


def _ledger_words(row: LiveRow) -> str:
    """The ledger in words: "linked to 1234567 at ...", or no link (with the outcome when a failure)."""
    linked = row.ledger_partner_id is not None and row.ledger_outcome != "unlinked" and not row.offboarded_at
    words = f"linked to {row.ledger_partner_id}" if linked else "no link"
    if row.ledger_outcome not in _AS_FOUND:
        words += f" ({row.ledger_outcome or '-'})"
    if row.ledger_checked_at:
        words += f" at {row.ledger_checked_at}"
    if row.offboarded_at:
        words += f", offboarded at {row.offboarded_at}"
    return words


def _azure_words(row: LiveRow) -> str:
    """Azure in words: "linked to 1234567, version 5, updated ...", no link, or why it was not read."""
    if row.azure_linked is None:
        return f"could not be read ({row.azure_error_code or '-'}): {row.azure_error or '-'}"
    words = f"linked to {row.azure_partner_id or '(not a partner ID)'}" if row.azure_linked else "no link"
    if not row.azure_linked and row.azure_state:
        words += f" (state {row.azure_state})"
    if row.azure_version is not None:
        words += f", version {row.azure_version}"
    if row.azure_updated_at:
        words += f", updated {row.azure_updated_at}"
    return words


def lines_of(rows: list[LiveRow]) -> list[str]:
    """Per identity, for people: the ledger and Azure side by side, and the difference when out of step."""
    lines = []
    for row in rows:
        lines.append(f"{row.client_id}: ledger: {_ledger_words(row)}; Azure: {_azure_words(row)}")
        if not row.in_step:
            lines.append(f"  OUT OF STEP: {row.difference or 'the ledger and Azure differ'}")
    return lines


async def live_rows(target: ApiTarget, tenant: str, client_id: str | None) -> list[LiveRow]:
    """The live view of one customer (or of one of its identities), as rows."""
    query = f"?clientId={client_id}" if client_id else ""
    async with api_session() as http:
        response = await call(http, target, "GET", f"/links/{tenant}/live{query}")
    if response.status != 200 or response.body is None:
        raise Failed(_refusal(response.status, response.body))
    answered = _text(response.body.get("customerTenantId")) or tenant
    return [row_of(answered, identity) for identity in response.body.get("identities") or []]


def _refusal(status: int, body: dict[str, Any] | None) -> str:
    """The API's refusal in one screened line."""
    if status == 401:
        return "HTTP 401: the function key (PAL_API_KEY) is missing or wrong"
    title, detail = (body or {}).get("title"), (body or {}).get("detail")
    return f"HTTP {status} {_text(title or '', 100)}: {_text(detail or '', 500)}".rstrip(": ")


@app.command("show", epilog=SHOW_EPILOG)
@handles_errors
def show(
    ctx: typer.Context,
    tenant: Tenant,
    client_id: Annotated[
        str | None, typer.Option(metavar="GUID", help="only this identity (default: every one recorded)")
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option(metavar="URL", help="the Function App's URL (env PAL_API_URL, config api-url)"),
    ] = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Read a customer's links from Azure now and compare them with the ledger (HTTP API).

    Signs in as each recorded identity (over the API; nothing is written) and prints what the ledger
    says beside what Azure holds. Exit code 3 when an identity is out of step.
    """
    import asyncio

    checked_tenant = checks.guid(tenant, "--tenant")
    checked_client = checks.guid(client_id, "--client-id") if client_id is not None else None
    target = api_target(Configuration(), api_url)
    rows = asyncio.run(live_rows(target, checked_tenant, checked_client))
    current = session(ctx)
    out_of_step = sum(1 for row in rows if not row.in_step)
    summary = {"customerTenantId": checked_tenant, "inStep": out_of_step == 0, "outOfStep": out_of_step}
    report = Report(LiveRow, rows, items_key="rows", summary=summary, lines=lines_of(rows), table_rows=[])
    render(report, output, current.out, session=current)
    finish(ExitCode.PARTIAL if out_of_step else ExitCode.DONE)
