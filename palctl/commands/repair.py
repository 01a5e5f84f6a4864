"""`palctl repair plan|apply|undo`: repair ownership where Microsoft's APIs allow it, opt-in, over
the Function App's HTTP API (`/api/repairs/...`).

`plan` asks for a plan (nothing is changed) and prints it: per resource, the kind, the owners before
and after, verified or inferred, the risk (for people in full: whether the change earns credit is
said there), refused with the reason, and a warning when an undo would not be possible. `-o json >
plan.json` writes the plan document an operator reviews; `apply --plan plan.json` sends exactly that
document (asking for confirmation on a terminal; elsewhere only with --yes) and prints what became of
each change; `undo --plan plan.json` (the latest apply of that plan) or `--apply-id ID` puts the
previous owners back where the API allows. Without --tenant, `plan` makes one plan per customer the
audit has findings for (`{"plans": [...]}`), and `apply` / `undo` take such a file too. `-o csv`
prints one CSV row per change. Exit codes: 0 done, 1 refused, not confirmed or unreachable, 2 bad
input or `apply` without --yes off a terminal, 3 some changes applied and others failed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from palctl import checks
from palctl.api import ApiTarget, api_session, api_target, call
from palctl.attribution_data import refused, text
from palctl.commands.attribution import ApiUrl
from palctl.configuration import Configuration
from palctl.errors import ExitCode, Failed, UsageError
from palctl.options import Output, command_app, examples, finish, handles_errors, session
from palctl.output import OutputFormat, Report, columns, render
from palctl.terminal import is_terminal

app = command_app("repair", help="Repair ownership, opt-in: plan, apply a plan, undo.", no_args_is_help=True)
NOT_LINKED_HINT = "link the customer first: palctl enqueue --tenant T --client-id C"
PlanFile = Annotated[
    Path, typer.Option("--plan", metavar="FILE", help="the plan document (palctl repair plan -o json)")
]


async def _post(target: ApiTarget, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    async with api_session() as http:
        response = await call(http, target, "POST", f"/repairs{path}", body)
    if response.status != 200 or response.body is None:
        raise refused(response, {"not-linked": NOT_LINKED_HINT})
    return response.body


async def _tenants(target: ApiTarget) -> list[str]:
    async with api_session() as http:
        response = await call(http, target, "GET", "/attribution")
    if response.status != 200 or response.body is None:
        raise refused(response)
    customers = response.body.get("customers")
    return [
        str(c["customerTenantId"]) for c in customers or [] if isinstance(c, dict) and "customerTenantId" in c
    ]


def _plans_of(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, dict) and isinstance(document.get("plans"), list):
        plans = document["plans"]
    else:
        plans = [document]
    if not all(isinstance(plan, dict) and isinstance(plan.get("customerTenantId"), str) for plan in plans):
        raise UsageError("--plan: not a plan document (palctl repair plan -o json)")
    for plan in plans:
        checks.guid(plan["customerTenantId"], "--plan customerTenantId")
    return list(plans)


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        return _plans_of(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:
        raise UsageError(f"--plan: cannot read {path.name} ({type(error).__name__})") from None


@dataclass(frozen=True)
class PlanChange:
    """One planned change, as `-o csv` prints it (the JSON names of the plan document)."""

    customer_tenant_id: str | None
    plan_id: str | None
    change_id: str | None
    product: str | None
    kind: str | None
    environment_id: str | None
    resource_id: str | None
    name: str | None
    refused: bool | None
    reason: str | None
    evidence: str | None
    risk: str | None
    before_owner: str | None
    after_owner: str | None
    call: str | None
    undo: str | None
    undoable: bool | None


@dataclass(frozen=True)
class AppliedChange:
    """What became of one change of an apply (or undo), as `-o csv` prints it."""

    customer_tenant_id: str | None
    apply_id: str | None
    plan_id: str | None
    change_id: str | None
    product: str | None
    kind: str | None
    environment_id: str | None
    resource_id: str | None
    name: str | None
    status: str | None
    reason: str | None
    evidence: str | None
    before_owner: str | None
    after_owner: str | None
    attributed_after: bool | None
    changed_at: str | None
    undone_at: str | None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _rows(document: dict[str, Any], row_type: type[Any]) -> list[Any]:
    """The changes of every plan or apply in `document`, screened, one row each."""
    rows = []
    for item in document.get("plans", [document]):
        if not isinstance(item, dict):
            continue
        for change in item.get("changes") or []:
            if not isinstance(change, dict):
                continue
            values: dict[str, Any] = {}
            for column in columns(row_type):
                source = item if column.name in ("customerTenantId", "planId", "applyId") else change
                value = source.get(column.name)
                flag = column.name in ("refused", "undoable", "attributedAfter")
                values[column.attribute] = _flag(value) if flag else text(value, 2000)
            rows.append(row_type(**values))
    return rows


def _show_changes(out: Any, changes: Any, planning: bool) -> None:
    for change in changes or []:
        if not isinstance(change, dict):
            continue
        if planning:
            shown = "refused" if change.get("refused") is True else "planned"
        else:
            shown = text(change.get("status"), 20) or "-"
        out.line(
            f"  {text(change.get('changeId'), 10)} {shown:<12} {text(change.get('kind'), 20):<20} "
            f"{text(change.get('product'), 20):<18} {text(change.get('name'), 60)} "
            f"[{text(change.get('evidence'), 10)}]"
        )
        if change.get("beforeOwner") or change.get("afterOwner"):
            out.line(
                f"      owner: {text(change.get('beforeOwner'), 100) or '-'} -> "
                f"{text(change.get('afterOwner'), 100) or '-'}"
            )
        if change.get("attributedAfter") is not None:
            out.line(f"      attributed after the re-audit: {'yes' if change['attributedAfter'] else 'no'}")
        reason = change.get("reason")
        if reason:
            out.line(f"      reason: {text(reason, 600)}")
        if planning and change.get("risk"):
            out.line(f"      risk: {text(change.get('risk'), 1000)}")
        if planning and change.get("refused") is False and change.get("undoable") is False:
            out.line("      undo: not possible by us (see the risk)")


def _write(current: Any, output: OutputFormat, document: dict[str, Any], planning: bool) -> None:
    if output is OutputFormat.JSON:
        current.out.write(json.dumps(document, indent=2, ensure_ascii=True, default=str) + "\n")
        return
    if output is OutputFormat.CSV:
        row_type = PlanChange if planning else AppliedChange
        render(Report(row_type, _rows(document, row_type), "changes"), output, current.out)
        return
    for item in document.get("plans", [document]):
        which = "plan" if planning else "apply"
        identifier = text(item.get("planId") if planning else item.get("applyId"), 40)
        current.line(f"customer {text(item.get('customerTenantId'), 40)} {which} {identifier}")
        if not planning:
            counts = text(json.dumps(item.get("counts")), 200)
            current.line(f"  re-audit: {text(item.get('audit'), 200)}; counts {counts}")
        _show_changes(current, item.get("changes"), planning)


@app.command(
    "plan",
    epilog=examples("palctl repair plan --tenant T", "palctl repair plan --tenant T -o json > plan.json"),
)
@handles_errors
def plan(
    ctx: typer.Context,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", metavar="GUID", help="customer tenant ID (default: every audited customer)"),
    ] = None,
    include_unverified: Annotated[
        bool, typer.Option("--include-unverified", help="also plan canvas app owner changes (unverified)")
    ] = False,
    api_url: ApiUrl = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Plan what can be repaired and how (nothing is changed)."""
    import asyncio

    target = api_target(Configuration(), api_url)
    query = "?includeUnverified=true" if include_unverified else ""

    async def run() -> dict[str, Any]:
        tenants = [checks.guid(tenant, "--tenant")] if tenant else await _tenants(target)
        plans = [await _post(target, f"/{t}/plan{query}") for t in tenants]
        return plans[0] if tenant else {"plans": plans}

    _write(session(ctx), OutputFormat(output), asyncio.run(run()), planning=True)


@app.command(
    "apply",
    epilog=examples(
        "palctl repair apply --plan plan.json", "palctl repair apply --plan plan.json --yes -o json"
    ),
)
@handles_errors
def apply(
    ctx: typer.Context,
    plan_file: PlanFile,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    api_url: ApiUrl = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Apply a reviewed plan: exactly its changes that are not refused."""
    import asyncio

    plans = _read(plan_file)
    target = api_target(Configuration(), api_url)
    current = session(ctx)
    planned = sum(
        1 for p in plans for c in p.get("changes") or [] if isinstance(c, dict) and c.get("refused") is False
    )
    if not yes:
        if not (is_terminal(current.err) and is_terminal(sys.stdin)):
            raise UsageError("not applied: not on a terminal to confirm; review the plan, then pass --yes")
        if not typer.confirm(
            f"change the owner of {planned} resources in {len(plans)} customer tenants?", err=True
        ):
            raise Failed("not applied: not confirmed")

    async def run() -> list[dict[str, Any]]:
        return [await _post(target, f"/{p['customerTenantId']}/apply", p) for p in plans]

    applied = asyncio.run(run())
    _write(
        current, OutputFormat(output), applied[0] if len(applied) == 1 else {"plans": applied}, planning=False
    )
    _finish(applied)


@app.command(
    "undo",
    epilog=examples("palctl repair undo --plan plan.json", "palctl repair undo --tenant T --apply-id ID"),
)
@handles_errors
def undo(
    ctx: typer.Context,
    plan_file: Annotated[
        Path | None, typer.Option("--plan", metavar="FILE", help="undo the latest apply of this plan")
    ] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", metavar="GUID", help="with --apply-id")] = None,
    apply_id: Annotated[
        str | None, typer.Option("--apply-id", metavar="GUID", help="the apply to undo")
    ] = None,
    api_url: ApiUrl = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Put the previous owners back where the API allows."""
    import asyncio

    if (plan_file is None) == (apply_id is None) or (apply_id is not None and tenant is None):
        raise UsageError("give --plan FILE, or --tenant T with --apply-id ID")
    target = api_target(Configuration(), api_url)
    if plan_file is not None:
        requests = [(p["customerTenantId"], {"planId": p.get("planId")}) for p in _read(plan_file)]
    else:
        requests = [
            (checks.guid(tenant or "", "--tenant"), {"applyId": checks.guid(apply_id or "", "--apply-id")})
        ]

    async def run() -> list[dict[str, Any]]:
        return [await _post(target, f"/{t}/undo", body) for t, body in requests]

    undone = asyncio.run(run())
    document = undone[0] if len(undone) == 1 else {"plans": undone}
    _write(session(ctx), OutputFormat(output), document, planning=False)


def _finish(applied: list[dict[str, Any]]) -> None:
    statuses = [c.get("status") for a in applied for c in a.get("changes") or [] if isinstance(c, dict)]
    if any(s == "applied" for s in statuses) and any(s == "failed" for s in statuses):
        finish(ExitCode.PARTIAL)
