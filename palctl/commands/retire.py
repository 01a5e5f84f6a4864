"""`palctl retire`: retire an identity's ledger record through the Function App's HTTP API.

`DELETE /api/links/{tenant}/identities/{clientId}` removes the identity's link state from the ledger
with a history event saying why (the history is kept). The API URL comes from --api-url, PAL_API_URL
or the config file; the function key from PAL_API_KEY or the config file, never from a flag (a
command line stays in the shell's history and shows in the process list). The key goes in a header,
never on screen, and redirects are not followed (the key would follow them). Exit code 0 when the
record was retired, 1 when the API refused or could not be reached, 2 for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from palctl import checks
from palctl.api import ApiTarget, Response, api_session, api_target, call
from palctl.configuration import Configuration
from palctl.errors import ExitCode, UsageError
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

EPILOG = examples(
    f'palctl retire --tenant {TENANT_EXAMPLE} --client-id {APP_EXAMPLE} --reason "CRM typo, ticket 4711"',
    "palctl retire --tenant T --client-id C --api-url https://func-pal.azurewebsites.net -o json",
)


async def retire_identity(target: ApiTarget, tenant: str, client_id: str, reason: str | None) -> Response:
    """DELETE /api/links/{tenant}/identities/{clientId}: the status and the parsed JSON body (or None)."""
    body = {"reason": reason} if reason is not None else None
    async with api_session() as http:
        return await call(http, target, "DELETE", f"/links/{tenant}/identities/{client_id}", body)


@dataclass(frozen=True)
class Retirement:
    status: int
    retired: bool
    customer_tenant_id: str
    client_id: str
    outcome: str | None
    title: str | None
    detail: str | None


def retirement(response: Response, tenant: str, client_id: str) -> Retirement:
    """The API's answer, every value from the server screened (escaped, capped, credentials redacted)."""
    from shared.spine.untrusted import shown

    body = response.body or {}

    def text(name: str, limit: int, default: str | None = None) -> str | None:
        value = body.get(name, default)
        return None if value is None else shown(value, limit)

    if response.status == 200:
        shown_tenant, shown_client = (
            text("customerTenantId", 64, "-") or "-",
            text("clientId", 64, "-") or "-",
        )
        return Retirement(200, True, shown_tenant, shown_client, text("outcome", 64), None, None)
    title, detail = text("title", 100), text("detail", 500)
    return Retirement(response.status, False, tenant, client_id, None, title, detail)


def line(result: Retirement) -> str:
    """The result for people: one line."""
    if result.retired:
        return f"retired: customerTenantId={result.customer_tenant_id} clientId={result.client_id}"
    if result.status == 401:
        return "palctl: HTTP 401: the function key (PAL_API_KEY) is missing or wrong"
    if result.title is not None:
        return f"palctl: HTTP {result.status} {result.title}: {result.detail or ''}"
    return f"palctl: HTTP {result.status}"


def _reason(value: str | None) -> str | None:
    from shared.links.retirement import InvalidReason, retirement_reason

    try:
        return None if value is None else retirement_reason(value, name="--reason")
    except InvalidReason as error:
        raise UsageError(str(error)) from None


app = command_app("retire")


@app.command("retire", epilog=EPILOG)
@handles_errors
def retire(
    ctx: typer.Context,
    tenant: Tenant,
    client_id: Annotated[
        str, typer.Option(metavar="GUID", help="client ID of the identity to retire", show_default=False)
    ],
    reason: Annotated[
        str | None, typer.Option(metavar="TEXT", help="why, kept in the history (1-256 printable characters)")
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option(metavar="URL", help="the Function App's URL (env PAL_API_URL, config api-url)"),
    ] = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Retire an identity's ledger record (over the HTTP API).

    Removes the identity's link state from the ledger, with a history event saying why (the history is
    kept); the nightly re-verification and a body-less relink no longer see it. Nothing changes in the
    customer's tenant. The function key is read from PAL_API_KEY or the config file.
    """
    import asyncio

    tenant = checks.guid(tenant, "--tenant")
    client_id = checks.guid(client_id, "--client-id")
    checked_reason = _reason(reason)
    target = api_target(Configuration(), api_url)
    response = asyncio.run(retire_identity(target, tenant, client_id, checked_reason))
    result = retirement(response, tenant, client_id)
    current = session(ctx)
    report = Report(Retirement, [result], lines=[line(result)], single=True)
    render(report, output, current.out, session=current)
    finish(ExitCode.DONE if result.retired else ExitCode.FAILED)
