"""`palctl advise`: does a Power Platform resource delivered this way credit the partner, and how to
make it count.

The answer comes from the rules (`shared.attribution.advisor.advise`, no I/O): who counts for the
product, the verdict (`counts`, `does-not-count-yet`, `not-covered`), why, the steps in order (each
naming its tool or API call) and the cautions. `--output json` is the advisor's document;
`--all` answers every combination of product, identity and solution (narrowed by the flags given).
The attribution modules are loaded when the command runs, not when palctl starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from palctl.errors import UsageError
from palctl.options import Output, command_app, examples, handles_errors, session
from palctl.output import OutputFormat, Report, render, rich_table

if TYPE_CHECKING:
    from palctl.terminal import Session
    from shared.attribution.advisor import Advice, IdentityKind
    from shared.attribution.rules import Product

PRODUCTS = (
    "canvas-app",
    "model-driven-app",
    "cloud-flow",
    "power-bi-dataset",
    "copilot-studio-bot",
    "customer-insights-instance",
)
"""For the help (written before the rules are loaded); a test keeps it equal to `Product`."""
KINDS = ("service-principal", "user-account")
E = TypeVar("E", bound=StrEnum)
VERDICT_STYLES = {"counts": "green", "does-not-count-yet": "yellow", "not-covered": "red"}
EPILOG = examples(
    "palctl advise --product canvas-app --delivered-by service-principal --outside-solution",
    "palctl advise --product cloud-flow --delivered-by user-account --in-solution -o json",
    "palctl advise --all",
    "palctl advise --all --product power-bi-dataset -o csv > power-bi.csv",
)


@dataclass(frozen=True)
class Question:
    product: Product
    delivered_by: IdentityKind
    in_solution: bool


@dataclass(frozen=True)
class AdviceRow:
    """An answer in a row (CSV): the steps and cautions joined with ` | `."""

    product: str
    delivered_by: str
    in_solution: bool
    verdict: str = field(metadata={"styles": VERDICT_STYLES})
    who_counts: str
    reason: str
    steps: str
    cautions: str


@dataclass(frozen=True)
class VerdictCells:
    """An answer in the `--all` table for people."""

    product: str
    delivered_by: str
    in_solution: bool
    verdict: str = field(metadata={"styles": VERDICT_STYLES})


def _member(value: str, flag: str, kind: type[E]) -> E:
    try:
        return kind(value.lower())
    except ValueError:
        raise UsageError(f"{flag} must be one of: {', '.join(member.value for member in kind)}") from None


def questions(
    product: str | None, delivered_by: str | None, in_solution: bool | None, every: bool
) -> list[Question]:
    """The questions asked: one (--product, --delivered-by, default outside a solution), or with
    --all every combination the flags given allow."""
    from shared.attribution.advisor import IdentityKind
    from shared.attribution.rules import Product

    products = [_member(product, "--product", Product)] if product is not None else list(Product)
    kinds = (
        [_member(delivered_by, "--delivered-by", IdentityKind)]
        if delivered_by is not None
        else list(IdentityKind)
    )
    if not every and (product is None or delivered_by is None):
        raise UsageError("give --product and --delivered-by (or --all for every combination)")
    placements = [in_solution] if in_solution is not None else [False, True] if every else [False]
    return [Question(p, k, placed) for p in products for k in kinds for placed in placements]


def row(advice: Advice) -> AdviceRow:
    from shared.attribution.rules import who_counts

    return AdviceRow(
        advice.rule.product.value,
        advice.delivered_by.value,
        advice.in_solution,
        advice.verdict.value,
        who_counts(advice.rule.product),
        advice.reason,
        " | ".join(f"{n}. {step}" for n, step in enumerate(advice.steps, 1)),
        " | ".join(advice.cautions),
    )


def _grid(rows: list[tuple[str, str, str]]) -> Any:
    """Two columns, the second folded under itself on a terminal; a style per row for the second."""
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(overflow="fold")
    for left, right, style in rows:
        grid.add_row(Text(left), Text(right, style=style))
    return grid


def show_advice(current: Session, advice: Advice) -> None:
    """The answer for people: the question, who counts, the verdict and why, steps, cautions."""
    from shared.attribution.rules import who_counts

    rule, counts = advice.rule, who_counts(advice.rule.product)
    where = "in a solution" if advice.in_solution else "outside a solution"
    why = advice.reason.removesuffix(counts).strip() or advice.reason
    verdict = advice.verdict.value
    current.show(
        _grid(
            [
                (
                    "question",
                    f"a {rule.display_name} ({rule.product.value}), {where}, "
                    f"delivered by a PAL-linked {advice.delivered_by.label}",
                    "",
                ),
                ("who counts", counts, ""),
                ("verdict", verdict, VERDICT_STYLES.get(verdict, "")),
                ("why", why, ""),
            ]
        )
    )
    for title, items, marker in (("steps", advice.steps, None), ("cautions", advice.cautions, "-")):
        if items:
            current.line("")
            current.line(title, style="bold")
            current.show(_grid([(marker or f"{n}.", item, "") for n, item in enumerate(items, 1)]))


def _show_all(current: Session, output: OutputFormat, answers: list[Advice]) -> None:
    import json

    from shared.attribution.advisor import advice_document

    if output is OutputFormat.JSON:
        document = {"advice": [advice_document(advice) for advice in answers]}
        current.out.write(json.dumps(document, indent=2, ensure_ascii=True) + "\n")
    elif output is OutputFormat.CSV:
        render(Report(AdviceRow, [row(advice) for advice in answers], "advice"), output, current.out)
    else:
        cells = [
            VerdictCells(a.rule.product.value, a.delivered_by.value, a.in_solution, a.verdict.value)
            for a in answers
        ]
        current.show(rich_table(VerdictCells, cells))
        current.line("the steps: palctl advise --product P --delivered-by K --in-solution|--outside-solution")


def _show_one(current: Session, output: OutputFormat, advice: Advice) -> None:
    import json

    from shared.attribution.advisor import advice_document

    if output is OutputFormat.JSON:
        current.out.write(json.dumps(advice_document(advice), indent=2, ensure_ascii=True) + "\n")
    elif output is OutputFormat.CSV:
        render(Report(AdviceRow, [row(advice)], single=True), output, current.out)
    else:
        show_advice(current, advice)


app = command_app("advise")


@app.command("advise", epilog=EPILOG)
@handles_errors
def advise(
    ctx: typer.Context,
    product: Annotated[
        str | None, typer.Option(metavar="PRODUCT", help=f"the resource: {', '.join(PRODUCTS)}")
    ] = None,
    delivered_by: Annotated[
        str | None,
        typer.Option(metavar="KIND", help=f"the PAL-linked identity that delivers it: {', '.join(KINDS)}"),
    ] = None,
    in_solution: Annotated[
        bool | None,
        typer.Option(
            "--in-solution/--outside-solution",
            help="delivered in a (managed) solution or not [default: outside; with --all: both]",
            show_default=False,
        ),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="every combination (narrowed by --product, --delivered-by...)")
    ] = False,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Does a delivery credit the partner, and what to do.

    Answers from Microsoft's attribution rules, without asking any service: who must hold the resource
    for it to count, whether delivering it this way by the PAL-linked identity makes it count, the
    steps in order (each naming its tool, command or API call) and the cautions.
    """
    from shared.attribution.advisor import advise as advisor

    asked = questions(product, delivered_by, in_solution, every)
    answers = [advisor(q.product, q.delivered_by, q.in_solution) for q in asked]
    current, chosen = session(ctx), OutputFormat(output)
    if every:
        _show_all(current, chosen, answers)
    else:
        _show_one(current, chosen, answers[0])
