"""`palctl deliver solution|pbix`: deliver a managed solution or a Power BI report as the customer's
linked service principal, over the Function App's HTTP API.

`POST /api/deliveries/{tenant}/solutions?environment=E` (or `/reports?workspace=W&datasetName=N`)
queues the delivery (202 with its id); the Function App imports the file as the linked service
principal, then audits what it imported. With `--wait` palctl polls
`GET /api/deliveries/{tenant}/{deliveryId}` until the delivery ends (a spinner on standard error when
it is a terminal) and prints the outcome, the components imported and how many the audit found
attributed to us. How the file travels: `palctl.deliveries`. Exit code 0 when delivered (or queued,
without --wait), 1 when it failed, the API refused or could not be reached, 2 for bad input, 3 when
delivered but not every component is attributed (or --wait ran out of time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from palctl import checks
from palctl.api import ApiTarget, api_target
from palctl.configuration import Configuration
from palctl.deliveries import FINAL, DeliveryFile, Storage, read_file, read_settings, refusal, submit
from palctl.errors import ExitCode, Failed, UsageError
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
from palctl.terminal import Session

app = command_app(
    "deliver", help="Deliver a solution or a .pbix as the linked identity.", no_args_is_help=True
)
SOLUTION_EPILOG = examples(
    f"palctl deliver solution --tenant {TENANT_EXAMPLE} --environment ENV_ID --file managed.zip --wait",
    "palctl deliver solution --tenant T --environment E --file managed.zip --settings settings.json",
)
PBIX_EPILOG = examples(
    f"palctl deliver pbix --tenant {TENANT_EXAMPLE} --workspace WS_ID --file sales.pbix --wait",
    "palctl deliver pbix --tenant T --workspace W --file sales.pbix --dataset-name Sales -o json",
)
NAME_CONFLICTS = ("Abort", "Overwrite", "CreateOrOverwrite", "GenerateUniqueName", "Ignore")

File = Annotated[Path, typer.Option("--file", metavar="PATH", help="the file to deliver", show_default=False)]
Wait = Annotated[bool, typer.Option("--wait", help="wait for the delivery to end and show its outcome")]
Timeout = Annotated[int, typer.Option(min=1, metavar="SECONDS", help="with --wait: how long to wait at most")]
ApiUrl = Annotated[
    str | None,
    typer.Option(metavar="URL", help="the Function App's URL (env PAL_API_URL, config api-url)"),
]


@app.callback()
def deliver() -> None:
    """Deliver a solution or a .pbix as the linked identity (a group: `solution`, `pbix`)."""


@dataclass(frozen=True)
class Delivery:
    """A delivery as the API last answered it (every value from the server screened)."""

    customer_tenant_id: str
    delivery_id: str
    kind: str
    target: str
    status: str = field(
        metadata={"styles": {"succeeded": "green", "failed": "red", "needs-customer-action": "yellow"}}
    )
    code: str | None
    reason: str | None
    remediation: str | None
    name: str | None
    version: str | None
    sha256: str
    size: int | None
    via_blob: bool
    attempt: int | None
    components_imported: int | None
    components_attributed: int | None
    not_attributed: int | None
    audit: str | None


def _text(value: Any, limit: int = 200) -> str | None:
    from shared.spine.untrusted import shown

    return None if value is None or value == "" else shown(value, limit)


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {str(_text(k, 40)): v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}


def delivery_of(body: dict[str, Any], tenant: str, file: DeliveryFile, via_blob: bool) -> Delivery:
    """The API's answer as a row."""
    components, attributed = _counts(body.get("components")), _counts(body.get("attributed"))
    missing = body.get("notAttributed")
    audited = str(body.get("audit") or "").startswith("audited")
    return Delivery(
        _text(body.get("customerTenantId"), 64) or tenant,
        _text(body.get("deliveryId"), 64) or "-",
        _text(body.get("kind"), 20) or "-",
        _text(body.get("target"), 120) or "-",
        _text(body.get("status"), 40) or "-",
        _text(body.get("code"), 100),
        _text(body.get("reason"), 500),
        _text(body.get("remediation"), 800),
        _text(body.get("solutionName") or body.get("datasetName")),
        _text(body.get("solutionVersion"), 40),
        file.sha256,
        file.size,
        via_blob,
        attempt
        if isinstance(attempt := body.get("attempt"), int) and not isinstance(attempt, bool)
        else None,
        sum(components.values()) if components else None,
        sum(attributed.values()) if audited else None,
        len(missing) if audited and isinstance(missing, list) else None,
        _text(body.get("audit")),
    )


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items())) or "none reported"


def lines_of(row: Delivery, body: dict[str, Any]) -> list[str]:
    """The outcome in words, for people."""
    what = f"{row.kind} {row.name or ''} {row.version or ''}".split()
    lines = [f"delivery {row.delivery_id}: {row.status}: {' '.join(what)} to {row.target}"]
    if row.code and row.status != "succeeded":
        lines.append(f"  {row.code}: {row.reason or '-'}")
    if row.remediation:
        lines.append(f"  what to do: {row.remediation}")
    if row.status == "succeeded":
        lines.append(
            f"  imported: {row.components_imported or 0} ({_kinds(_counts(body.get('components')))})"
        )
        if row.components_attributed is None:
            lines.append(f"  attributed: not audited yet ({row.audit or '-'})")
        else:
            counts = _kinds(_counts(body.get("attributed")))
            lines.append(
                f"  attributed to the linked service principal: {row.components_attributed} ({counts})"
            )
            if row.not_attributed:
                lines.append(f"  NOT ATTRIBUTED: {row.not_attributed} (palctl attribution report)")
    return lines


def exit_code(row: Delivery, waited: bool) -> ExitCode:
    if not waited:
        return ExitCode.DONE
    if row.status in ("failed", "needs-customer-action"):
        return ExitCode.FAILED
    if row.status != "succeeded" or row.components_attributed is None or row.not_attributed:
        return ExitCode.PARTIAL
    return ExitCode.DONE


async def run(
    target: ApiTarget,
    path: str,
    file: DeliveryFile,
    settings: dict[str, Any] | None,
    patience: float | None,
    current: Session,
) -> tuple[dict[str, Any], bool]:
    """Send the delivery and, with `patience`, wait for it: the delivery as last read."""
    import os

    from palctl.attribution_views import spinner
    from palctl.deliveries import progress, upload_session, wait_for

    response, via_blob = await submit(target, path, file, settings, Storage.from_env(os.environ))
    if response.status != 202 or response.body is None:
        raise Failed(refusal(response))
    body = response.body
    delivery_id = _text(body.get("deliveryId"), 64)
    if not delivery_id or not checks_guid(delivery_id):
        raise Failed("the API queued the delivery but named no delivery id")
    if patience is None:
        return body, via_blob
    tenant = str(body.get("customerTenantId") or "")
    async with upload_session() as http:
        with spinner(current, progress(body)) as update:
            return await wait_for(
                http, target, f"/deliveries/{tenant}/{delivery_id}", patience, update
            ), via_blob


def checks_guid(value: str) -> bool:
    from shared.spine.identifiers import is_guid

    return is_guid(value)


def deliver_and_show(
    ctx: typer.Context,
    tenant: str,
    path: str,
    file: DeliveryFile,
    settings: dict[str, Any] | None,
    options: tuple[bool, int, str | None, OutputFormat],
) -> None:
    import asyncio

    wait, timeout, api_url, output = options
    target = api_target(Configuration(), api_url)
    current, chosen = session(ctx), OutputFormat(output)
    body, via_blob = asyncio.run(run(target, path, file, settings, timeout if wait else None, current))
    row = delivery_of(body, tenant, file, via_blob)
    summary = {
        "components": _counts(body.get("components")),
        "attributed": _counts(body.get("attributed")),
    }
    report = Report(Delivery, [row], summary=summary, lines=lines_of(row, body), single=True)
    render(report, chosen, current.out, session=current)
    if wait and row.status not in FINAL:
        current.message(
            f"delivery {row.delivery_id} had not ended within {timeout}s; it goes on in the Function App",
            style="yellow",
        )
    finish(exit_code(row, wait))


@app.command("solution", epilog=SOLUTION_EPILOG)
@handles_errors
def solution(
    ctx: typer.Context,
    tenant: Tenant,
    environment: Annotated[
        str, typer.Option(metavar="ID", help="the Power Platform environment's id", show_default=False)
    ],
    file: File,
    settings: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help="deployment settings: connection references, environment variables (JSON); "
            "the file then goes through Blob Storage",
            show_default=False,
        ),
    ] = None,
    wait: Wait = False,
    timeout: Timeout = 1800,
    api_url: ApiUrl = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Import a managed solution as the customer's linked service principal (HTTP API).

    The importer owns what it imports: every component of the solution is then owned by the
    identity linked to the partner ID. With --wait, prints the outcome, the components imported and
    how many the audit then finds attributed. Exit code 1 when the import failed, 3 when not every
    component is attributed. The function key is read from PAL_API_KEY or the config file.
    """
    from urllib.parse import quote

    checked = checks.guid(tenant, "--tenant")
    if not environment or len(environment) > 100 or not all(c.isalnum() or c in "._-" for c in environment):
        raise UsageError("--environment: the environment's id (letters, digits, . _ -)")
    document = read_settings(settings) if settings is not None else None
    delivery = read_file(file, "zip")
    path = f"/deliveries/{checked}/solutions?environment={quote(environment)}"
    deliver_and_show(ctx, checked, path, delivery, document, (wait, timeout, api_url, output))


@app.command("pbix", epilog=PBIX_EPILOG)
@handles_errors
def pbix(
    ctx: typer.Context,
    tenant: Tenant,
    workspace: Annotated[
        str, typer.Option(metavar="GUID", help="the Power BI workspace's id", show_default=False)
    ],
    file: File,
    dataset_name: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="the dataset's name (default: the file's name without .pbix)"),
    ] = None,
    name_conflict: Annotated[
        str,
        typer.Option(metavar="MODE", help=f"when the name exists: {', '.join(NAME_CONFLICTS)}"),
    ] = "CreateOrOverwrite",
    wait: Wait = False,
    timeout: Timeout = 1800,
    api_url: ApiUrl = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Publish a .pbix as the customer's linked service principal (HTTP API).

    The publisher owns the dataset: it is then owned by the identity linked to the partner ID (the
    service principal must be a Member or Contributor of the workspace). With --wait, prints the
    outcome and whether the audit then finds the dataset attributed. The function key is read from
    PAL_API_KEY or the config file.
    """
    from urllib.parse import urlencode

    checked = checks.guid(tenant, "--tenant")
    space = checks.guid(workspace, "--workspace")
    name = dataset_name if dataset_name is not None else file.stem
    if not name or len(name) > 200 or not name.isprintable() or name.strip() != name:
        raise UsageError("--dataset-name: 1 to 200 printable characters, no leading or trailing space")
    if name_conflict not in NAME_CONFLICTS:
        raise UsageError(f"--name-conflict: one of {', '.join(NAME_CONFLICTS)}")
    delivery = read_file(file, "pbix")
    query = urlencode({"workspace": space, "datasetName": name, "nameConflict": name_conflict})
    path = f"/deliveries/{checked}/reports?{query}"
    deliver_and_show(ctx, checked, path, delivery, None, (wait, timeout, api_url, output))
