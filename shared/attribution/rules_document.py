"""The whole rule set as JSON: GET /api/attribution/rules and `palctl advise --output json`."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from shared.attribution.owner_tables import (
    COMMANDS,
    OWNER_CHANGE_QUESTIONS,
    OWNER_CHANGES,
    TOOL_COLUMNS,
    TOOL_LABELS,
    Command,
)
from shared.attribution.routes import (
    SERVICE_PRINCIPAL_PREREQUISITES,
    SERVICE_PRINCIPAL_ROUTES,
    ServicePrincipalRoute,
)
from shared.attribution.rules import (
    RULES,
    RULES_DOCUMENT_VERSION,
    AttributionRule,
    Evidence,
    JsonValue,
    OwnerChange,
    Source,
    who_counts,
)

__all__ = [
    "rule_document",
    "rules_document",
]

# The whole rule set as JSON (GET /api/attribution/rules, palctl advise --output json).


def rule_document(rule: AttributionRule) -> dict[str, JsonValue]:
    return {
        "product": rule.product.value,
        "displayName": rule.display_name,
        "metric": rule.metric,
        "resource": rule.resource,
        "attributedIdentity": rule.attributed_identity.value,
        "severalPartners": rule.several_partners.value,
        "solutionDelivery": rule.solution_delivery.value,
        "makerTool": rule.maker_tool,
        "ownerTableRow": rule.owner_table_row,
        "notes": list(rule.notes),
        "source": rule.source.value,
        "whoCounts": who_counts(rule.product),
    }


def _owner_table_document(change: OwnerChange) -> dict[str, JsonValue]:
    return {
        "change": change.value,
        "question": OWNER_CHANGE_QUESTIONS[change],
        "rows": [_owner_row_document(rule, change) for rule in RULES.values()],
    }


def _owner_row_document(rule: AttributionRule, change: OwnerChange) -> dict[str, JsonValue]:
    covered = rule.owner_table_row is not None
    cells: list[JsonValue] = [
        {
            "tool": tool.value,
            "allowed": OWNER_CHANGES[(rule.product, change, tool)],
            **_command_document(COMMANDS.get((rule.product, change, tool))),
        }
        for tool in (TOOL_COLUMNS if covered else ())
    ]
    return {
        "product": rule.product.value,
        "seedRow": rule.owner_table_row,
        "covered": covered,
        "cells": cells,
    }


def _command_document(command: Command | None) -> dict[str, JsonValue]:
    if command is None:
        return {"command": None, "commandKind": None}
    return {"command": command.text, "commandKind": command.kind.value}


def _route_document(route: ServicePrincipalRoute) -> dict[str, JsonValue]:
    return {
        "route": route.route.value,
        "product": route.product.value,
        "goal": route.goal,
        "call": route.call,
        "possible": route.possible,
        "evidence": route.evidence.value,
        "delivers": route.delivers,
        "inSolutionOnly": route.in_solution_only,
        "seedTool": route.seed_tool.value if route.seed_tool else None,
        "notes": list(route.notes),
    }


def _values(members: Iterable[StrEnum]) -> list[JsonValue]:
    return [member.value for member in members]


def rules_document() -> dict[str, JsonValue]:
    """The whole rule set, JSON-serialisable, with stable camelCase keys and enum values."""
    return {
        "version": RULES_DOCUMENT_VERSION,
        "tools": [{"tool": tool.value, "label": TOOL_LABELS[tool]} for tool in TOOL_COLUMNS],
        "products": [rule_document(rule) for rule in RULES.values()],
        "ownerTables": [_owner_table_document(change) for change in OwnerChange],
        "servicePrincipalRoutes": [_route_document(route) for route in SERVICE_PRINCIPAL_ROUTES],
        "servicePrincipalPrerequisites": [
            {"product": product.value, "steps": list(steps)}
            for product, steps in SERVICE_PRINCIPAL_PREREQUISITES.items()
        ],
        "evidence": _values(Evidence),
        "sources": _values(Source),
    }
