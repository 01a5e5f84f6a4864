"""A partner's question answered from the rules: "does this count, and what do I do?"

`advise(product, delivered_by, in_solution)` is pure and derives its answer from `shared.attribution.rules`:
- the verdict: `counts` when delivering this way makes the PAL-linked identity the attributed one
  (a solution import by it, per the seed's import tables; publishing by it, for Power BI; making
  it, for a user account), `does-not-count-yet` otherwise, `not-covered` where the seed's owner
  tables have no row for the product (Customer Insights);
- the steps, in order, each naming its tool or call: the customer's one-time grants (a service
  principal), the delivery (or, when this way does not count, the other way that does), then the
  repairs of a resource another identity made, from the seed's YES cells and power-platform.md's
  routes. A route the doc only infers says so ("Inferred, behind a switch"), and a route that
  disagrees with the seed's cell quotes that cell.
- the cautions: what cannot work, and where the sources leave the credit in doubt.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from shared.attribution.owner_tables import (
    TOOL_COLUMNS,
    TOOL_LABELS,
    Command,
    CommandKind,
    commands_for,
    owner_change,
    tools_allowing,
)
from shared.attribution.routes import SERVICE_PRINCIPAL_PREREQUISITES, ServicePrincipalRoute, routes_for
from shared.attribution.rules import (
    AttributedIdentity,
    AttributionRule,
    Evidence,
    JsonValue,
    OwnerChange,
    Product,
    Support,
    Tool,
    rule_for,
    who_counts,
)
from shared.attribution.rules_document import rule_document

__all__ = ["Advice", "IdentityKind", "Verdict", "advice_document", "advise"]


class IdentityKind(StrEnum):
    """The kind of PAL-linked identity the partner delivers with."""

    SERVICE_PRINCIPAL = "service-principal"
    USER_ACCOUNT = "user-account"

    @property
    def label(self) -> str:
        return self.value.replace("-", " ")


class Verdict(StrEnum):
    COUNTS = "counts"
    DOES_NOT_COUNT_YET = "does-not-count-yet"
    NOT_COVERED = "not-covered"
    """The seed's owner tables have no row for the product: no route is documented."""


@dataclass(frozen=True)
class Advice:
    """The answer to one question: the rule, the verdict and why, what to do, what to avoid."""

    rule: AttributionRule
    delivered_by: IdentityKind
    in_solution: bool
    verdict: Verdict
    reason: str
    steps: tuple[str, ...]
    """In order; each names the tool, command or API call to use."""
    cautions: tuple[str, ...]


_IMPORT_TABLE: Mapping[IdentityKind, OwnerChange] = {
    IdentityKind.USER_ACCOUNT: OwnerChange.THROUGH_SOLUTION_IMPORT,
    IdentityKind.SERVICE_PRINCIPAL: OwnerChange.TO_SERVICE_PRINCIPAL_IN_SOLUTION,
}
"""The seed's table that says how each kind of identity imports a solution it then owns."""

_OWNER_TABLE: Mapping[IdentityKind, OwnerChange] = {
    IdentityKind.USER_ACCOUNT: OwnerChange.DIRECTLY,
    IdentityKind.SERVICE_PRINCIPAL: OwnerChange.TO_SERVICE_PRINCIPAL_IN_SOLUTION,
}
"""The seed's table for changing the owner to each kind of identity (and, in its "Power BI
(Publishing)" rows, for publishing as it): the seed's only table about service principals is the third."""


@dataclass(frozen=True)
class _Making:
    """How an identity becomes the attributed one by making the resource, in words."""

    verb: str
    """Imperative: "Create" (the app)."""
    does: str
    """Third person: "creates" (it)."""
    word: str
    """What the identity then is: "owner"."""
    effect: str


_MAKING: Mapping[AttributedIdentity, _Making] = {
    AttributedIdentity.OWNER_OR_CO_OWNER: _Making(
        "Create", "creates", "owner", "the identity that creates it is its owner"
    ),
    AttributedIdentity.CREATOR: _Making(
        "Create", "creates", "creator", "the identity that creates it is its creator"
    ),
    AttributedIdentity.PUBLISHER: _Making(
        "Publish", "publishes", "publisher", "publishing to the service sets the owner (seed)"
    ),
    AttributedIdentity.ANY_ACTIVE_USER: _Making(
        "Use", "uses", "active user", "any active user of the instance is attributed (seed)"
    ),
}
_INSTEAD: Mapping[bool, str] = {
    True: (
        "Deliver it in a managed solution instead (add it to a solution in the Power Apps maker portal, "
        "Solutions > Add existing, and export it as managed). "
    ),
    False: "Deliver it outside a solution instead. ",
}
_TABLE_NAMES: Mapping[OwnerChange, str] = {
    OwnerChange.DIRECTLY: "the seed's table of direct owner changes",
    OwnerChange.THROUGH_SOLUTION_IMPORT: "the seed's table of owner changes through a solution import",
    OwnerChange.TO_SERVICE_PRINCIPAL_IN_SOLUTION: (
        "the seed's table of owner changes to a service principal in a solution"
    ),
}
_ROUTE_PREFIXES: Mapping[tuple[bool, Evidence], str] = {
    (True, Evidence.VERIFIED): "",
    (True, Evidence.INFERRED): "Inferred, behind a switch: ",
    (False, Evidence.VERIFIED): "Not possible: ",
    (False, Evidence.INFERRED): "Probably not possible (inferred): ",
}
_RECOMMEND_SOLUTIONS = (
    "The seed strongly recommends delivering in a managed solution imported by the PAL-linked identity "
    "(pac solution import, or the Power Apps maker portal)."
)


def advise(product: Product, delivered_by: IdentityKind, in_solution: bool) -> Advice:
    """Whether a resource delivered this way by the PAL-linked identity counts, and what to do."""
    rule = rule_for(product)
    delivery = _delivery(rule, delivered_by, in_solution)
    if rule.owner_table_row is None:
        verdict = Verdict.NOT_COVERED
    else:
        verdict = Verdict.COUNTS if delivery else Verdict.DOES_NOT_COUNT_YET
    return Advice(
        rule=rule,
        delivered_by=delivered_by,
        in_solution=in_solution,
        verdict=verdict,
        reason=f"{_why(rule, delivered_by, in_solution, verdict)} {who_counts(product)}",
        steps=(
            *_prerequisites(rule, delivered_by),
            *_delivery_steps(rule, delivered_by, in_solution, delivery),
            *_repair_steps(rule, delivered_by, in_solution),
        ),
        cautions=_cautions(rule, delivered_by, in_solution),
    )


def _delivery(rule: AttributionRule, kind: IdentityKind, in_solution: bool) -> tuple[str, ...]:
    """The tools with which this identity delivers the resource this way and so becomes its
    attributed identity (verified ways only); empty when there is none."""
    if in_solution:
        if rule.solution_delivery is not Support.YES:
            return ()
        tools = _texts(commands_for(rule.product, _IMPORT_TABLE[kind], CommandKind.IMPORT_SOLUTION))
    else:
        maker = (rule.maker_tool,) if kind is IdentityKind.USER_ACCOUNT else ()
        publishing = rule.solution_delivery is Support.NO
        published = commands_for(rule.product, _OWNER_TABLE[kind], CommandKind.PUBLISH) if publishing else ()
        tools = (*maker, *_texts(published))
    if kind is IdentityKind.SERVICE_PRINCIPAL:
        tools += tuple(f"{route.call} ({route.evidence})" for route in _delivering_routes(rule, in_solution))
    return tools


def _is_delivery(route: ServicePrincipalRoute) -> bool:
    """A verified way to deliver the resource as the service principal (not a repair, not a guess)."""
    return route.delivers and route.possible and route.evidence is Evidence.VERIFIED


def _delivering_routes(rule: AttributionRule, in_solution: bool) -> tuple[ServicePrincipalRoute, ...]:
    return tuple(
        route
        for route in routes_for(rule.product)
        if _is_delivery(route) and route.in_solution_only is in_solution
    )


def _texts(commands: Iterable[Command]) -> tuple[str, ...]:
    return tuple(command.text for command in commands)


def _why(rule: AttributionRule, kind: IdentityKind, in_solution: bool, verdict: Verdict) -> str:
    making = _MAKING[rule.attributed_identity]
    if verdict is Verdict.NOT_COVERED:
        return (
            f"The seed's owner tables have no row for a {rule.display_name}: no delivery route is documented."
        )
    if verdict is Verdict.COUNTS and in_solution:
        return "The identity that imports a solution becomes the owner of every component in it (seed)."
    if verdict is Verdict.COUNTS:
        return f"The PAL-linked {kind.label} that {making.does} it is its {making.word}."
    if in_solution:
        return (
            f"{_a(rule.resource).capitalize()} is not delivered in a solution (seed): a solution import "
            f"does not set its {making.word}."
        )
    return (
        f"A {kind.label} does not make {_a(rule.resource)} outside a solution: its {making.word} is "
        "whoever made it."
    )


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _prerequisites(rule: AttributionRule, kind: IdentityKind) -> tuple[str, ...]:
    if kind is IdentityKind.USER_ACCOUNT:
        return ()
    return SERVICE_PRINCIPAL_PREREQUISITES[rule.product]


def _delivery_steps(
    rule: AttributionRule, kind: IdentityKind, in_solution: bool, delivery: tuple[str, ...]
) -> tuple[str, ...]:
    """This way of delivering when it attributes; otherwise the other way, if that one does."""
    if delivery:
        return (_delivery_step(rule, kind, in_solution, delivery),)
    other = _delivery(rule, kind, not in_solution)
    if not other:
        return ()
    instead = "" if rule.solution_delivery is Support.NOT_COVERED else _INSTEAD[not in_solution]
    return (instead + _delivery_step(rule, kind, not in_solution, other),)


def _delivery_step(
    rule: AttributionRule, kind: IdentityKind, in_solution: bool, tools: tuple[str, ...]
) -> str:
    how = " or ".join(tools)
    if in_solution:
        return (
            f"Import the managed solution as the PAL-linked {kind.label} with {how}: the importing identity "
            "becomes the owner of every component in it (seed)."
        )
    making = _MAKING[rule.attributed_identity]
    return f"{making.verb} the {rule.resource} as the PAL-linked {kind.label} with {how}: {making.effect}."


def _repair_steps(rule: AttributionRule, kind: IdentityKind, in_solution: bool) -> tuple[str, ...]:
    """How to make the PAL-linked identity the attributed one of a resource another identity made."""
    if kind is IdentityKind.USER_ACCOUNT:
        if in_solution or rule.solution_delivery is not Support.YES:
            return ()
        return _owner_change_step(rule, kind, frozenset())
    refuted = frozenset(
        route.seed_tool for route in routes_for(rule.product) if not route.possible and route.seed_tool
    )
    routes = tuple(
        _route_text(route) for route in routes_for(rule.product) if route.possible and not _is_delivery(route)
    )
    return (*_owner_change_step(rule, kind, refuted), *routes)


def _owner_change_step(
    rule: AttributionRule, kind: IdentityKind, refuted: frozenset[Tool]
) -> tuple[str, ...]:
    """The seed's YES cells for changing the owner to this kind of identity, less the tools a verified
    route of power-platform.md says cannot do it (those are cautions)."""
    change = _OWNER_TABLE[kind]
    commands = [
        command
        for command in commands_for(rule.product, change, CommandKind.CHANGE_OWNER)
        if command.tool not in refuted
    ]
    if not commands:
        return ()
    how = " or ".join(command.text for command in commands)
    labels = ", ".join(TOOL_LABELS[command.tool] for command in commands)
    return (
        f"If another identity made it: make the PAL-linked {kind.label} its owner with {how} "
        f"({_TABLE_NAMES[change]}: YES for {labels}).",
    )


def _route_text(route: ServicePrincipalRoute) -> str:
    """A route of power-platform.md as a sentence: its claim, its evidence, and the seed's cell."""
    prefix = _ROUTE_PREFIXES[(route.possible, route.evidence)]
    notes = "".join(f"; {note}" for note in route.notes)
    text = f"{route.goal}: {route.call} ({route.evidence}){notes}{_seed_cell(route)}."
    return prefix + text if prefix else text[0].upper() + text[1:]


def _seed_cell(route: ServicePrincipalRoute) -> str:
    if route.seed_tool is None:
        return ""
    cell = owner_change(route.product, OwnerChange.TO_SERVICE_PRINCIPAL_IN_SOLUTION, route.seed_tool)
    if cell is Support.NOT_COVERED:
        return "; the seed's owner tables have no row for it"
    table = _TABLE_NAMES[OwnerChange.TO_SERVICE_PRINCIPAL_IN_SOLUTION]
    return f"; {table} says {cell.value.upper()} for {TOOL_LABELS[route.seed_tool]}"


def _cautions(rule: AttributionRule, kind: IdentityKind, in_solution: bool) -> tuple[str, ...]:
    return (
        *_impossible_routes(rule, kind),
        *_solution_cautions(rule, kind, in_solution),
        *_creator_caution(rule, kind, in_solution),
    )


def _impossible_routes(rule: AttributionRule, kind: IdentityKind) -> tuple[str, ...]:
    if kind is IdentityKind.USER_ACCOUNT:
        return ()
    return tuple(_route_text(route) for route in routes_for(rule.product) if not route.possible)


def _solution_cautions(rule: AttributionRule, kind: IdentityKind, in_solution: bool) -> tuple[str, ...]:
    if rule.solution_delivery is Support.NOT_COVERED:
        return (f"The seed does not say whether a {rule.display_name} is delivered in a solution.",)
    if rule.solution_delivery is Support.NO or in_solution:
        return ()
    cautions: list[str] = []
    if not tools_allowing(rule.product, OwnerChange.DIRECTLY):
        none = ", ".join(TOOL_LABELS[tool] for tool in TOOL_COLUMNS)
        word = _MAKING[rule.attributed_identity].word
        cautions.append(
            f"No direct owner change for a {rule.display_name} ({_TABLE_NAMES[OwnerChange.DIRECTLY]}: "
            f"NO for {none}): only a solution import changes its {word}."
        )
    if kind is IdentityKind.USER_ACCOUNT:
        cautions.append(_RECOMMEND_SOLUTIONS)
    return tuple(cautions)


def _creator_caution(rule: AttributionRule, kind: IdentityKind, in_solution: bool) -> tuple[str, ...]:
    """The seed credits the creator, yet offers owner changes: whether they move the credit is open."""
    if rule.attributed_identity is not AttributedIdentity.CREATOR:
        return ()
    if kind is IdentityKind.USER_ACCOUNT and in_solution:
        return ()
    if not commands_for(rule.product, _OWNER_TABLE[kind], CommandKind.CHANGE_OWNER):
        return ()
    return (
        f"The seed's rule credits the creator of a {rule.resource}, yet its owner tables offer owner "
        "changes: that an owner change moves the credit is inferred (power-platform.md keeps the creator "
        "as the rule).",
    )


def advice_document(advice: Advice) -> dict[str, JsonValue]:
    """The advice as JSON with stable camelCase keys (palctl advise --output json)."""
    return {
        "product": advice.rule.product.value,
        "deliveredBy": advice.delivered_by.value,
        "inSolution": advice.in_solution,
        "verdict": advice.verdict.value,
        "reason": advice.reason,
        "steps": list(advice.steps),
        "cautions": list(advice.cautions),
        "rule": rule_document(advice.rule),
    }
