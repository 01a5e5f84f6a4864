"""`palctl audit`: audit a customer's Power Platform attribution now, over the Function App's HTTP API.

`POST /api/attribution/{tenant}/audit` queues the audit (202 with its run id; 404 `not-linked` when
no healthy link of ours is recorded for the customer). With `--wait` palctl then polls
`GET /api/attribution/{tenant}` until the latest run is this one and has ended (a spinner on standard
error when it is a terminal), and prints the run's summary. Exit code 0 when the audit was queued
(and, with --wait, finished), 1 when the API refused or could not be reached, 2 for bad input, 3 when
it was queued but did not finish within --timeout (it goes on: `palctl attribution report` later).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from palctl import checks
from palctl.api import ApiTarget, api_target
from palctl.attribution_data import AttributionApi, Run, connected, refused, text
from palctl.attribution_views import show_run, spinner
from palctl.commands.attribution import ApiUrl
from palctl.configuration import Configuration
from palctl.errors import ExitCode, Failed
from palctl.options import (
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

if TYPE_CHECKING:
    from palctl.terminal import Session

EPILOG = examples(
    f"palctl audit --tenant {TENANT_EXAMPLE}",
    "palctl audit --tenant T --wait",
    "palctl audit --tenant T --wait --timeout 1800 -o json",
)
NOT_LINKED_HINT = "link the customer first: palctl enqueue --tenant {tenant} --client-id C"
FIRST_POLL_SECONDS = 0.5
LONGEST_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class Audit:
    """The audit palctl started, and (with --wait) its run as last seen."""

    customer_tenant_id: str
    run_id: str
    finished: bool
    coverage: float | None
    units: int | None
    units_done: int | None


async def start(api: AttributionApi, tenant: str) -> str:
    """POST /api/attribution/{tenant}/audit: the run id."""
    response = await api.call("POST", f"/{tenant}/audit")
    if response.status != 202 or response.body is None:
        raise refused(response, {"not-linked": NOT_LINKED_HINT.format(tenant=tenant)})
    run_id = text(response.body.get("runId"), 128)
    if not run_id:
        raise Failed("the API queued the audit but named no run (no runId in its answer)")
    return run_id


def _progress(run_id: str, run: Run | None) -> str:
    if run is None:
        return f"waiting for audit run {run_id} to start"
    return f"audit run {run_id}: {len(run.units_done)} of {len(run.units)} units done"


async def wait_for(
    api: AttributionApi, tenant: str, run_id: str, patience: float, update: Callable[[str], None]
) -> Run | None:
    """Poll GET /api/attribution/{tenant} until its run is `run_id` and has ended, or `patience`
    seconds have passed: the run as last seen (None: never seen)."""
    import asyncio
    import time

    deadline = time.monotonic() + patience
    delay, seen = FIRST_POLL_SECONDS, None
    while True:
        response = await api.call("GET", f"/{tenant}", {"top": "1"})
        if response.status == 200 and response.body is not None:
            run = Run.parse(response.body.get("run"))
            if run.run_id == run_id:
                seen = run
        elif response.status != 404:  # 404: no run recorded yet
            raise refused(response)
        if seen is not None and seen.finished:
            return seen
        update(_progress(run_id, seen))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return seen
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 1.5, LONGEST_POLL_SECONDS)


async def audit_now(
    target: ApiTarget, tenant: str, patience: float | None, current: Session, output: OutputFormat
) -> tuple[str, Run | None]:
    """Queue the audit; with `patience` (seconds), wait for it (the run as last seen)."""
    async with connected(target) as api:
        run_id = await start(api, tenant)
        if output is OutputFormat.TABLE:
            current.line(f"audit queued: customerTenantId={tenant} runId={run_id}")
        if patience is None:
            return run_id, None
        with spinner(current, _progress(run_id, None)) as update:
            return run_id, await wait_for(api, tenant, run_id, patience, update)


def _show(current: Session, output: OutputFormat, audit: Audit, run: Run | None, waited: bool) -> None:
    import json

    if output is OutputFormat.JSON:
        document: dict[str, Any] = {
            "customerTenantId": audit.customer_tenant_id,
            "runId": audit.run_id,
            "finished": audit.finished,
            "run": None if run is None else run.document(),
        }
        current.out.write(json.dumps(document, indent=2, ensure_ascii=True) + "\n")
    elif output is OutputFormat.CSV:
        render(Report(Audit, [audit], single=True), output, current.out)
    elif run is not None and run.finished:
        current.line("")
        show_run(current, audit.customer_tenant_id, run)
    elif waited:
        current.line(_progress(audit.run_id, run))
    else:
        current.message(
            "the audit runs in the Function App: palctl attribution report --tenant "
            f"{audit.customer_tenant_id} when it has ended (or palctl audit --wait next time)"
        )


app = command_app("audit")


@app.command("audit", epilog=EPILOG)
@handles_errors
def audit(
    ctx: typer.Context,
    tenant: Tenant,
    wait: Annotated[
        bool, typer.Option("--wait", help="wait for the audit to finish and show its summary")
    ] = False,
    timeout: Annotated[
        int, typer.Option(min=1, metavar="SECONDS", help="with --wait: how long to wait at most")
    ] = 600,
    api_url: ApiUrl = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Audit a customer's attribution now (over the HTTP API).

    Queues an audit of the customer's environments and Power BI (the customer needs a healthy link)
    and prints the run's id; with --wait, waits for it to finish and prints its summary: coverage,
    counts per product and status, and the APIs the customer has not granted. The function key is read
    from PAL_API_KEY or the config file.
    """
    import asyncio

    tenant = checks.guid(tenant, "--tenant")
    target = api_target(Configuration(), api_url)
    current, chosen = session(ctx), OutputFormat(output)
    run_id, run = asyncio.run(audit_now(target, tenant, timeout if wait else None, current, chosen))
    finished = run is not None and run.finished
    result = Audit(
        tenant,
        run_id,
        finished,
        run.coverage if run else None,
        len(run.units) if run else None,
        len(run.units_done) if run else None,
    )
    _show(current, chosen, result, run, wait)
    if wait and not finished:
        current.message(
            f"audit run {run_id} did not finish within {timeout}s; it goes on: "
            f"palctl attribution report --tenant {tenant} later",
            style="yellow",
        )
        finish(ExitCode.PARTIAL)
