"""The seed's three owner tables (change the owner directly / through a solution import / to a service
principal in a solution; by GUI, PowerShell, PP CLI, DevOps + Build Tools), cell by cell, and the
command behind each YES."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from shared.attribution.rules import OwnerChange, Product, Support, Tool

__all__ = [
    "COMMANDS",
    "OWNER_CHANGES",
    "OWNER_CHANGE_QUESTIONS",
    "TOOL_COLUMNS",
    "TOOL_LABELS",
    "Command",
    "CommandKind",
    "commands_for",
    "owner_change",
    "tools_allowing",
]

# The seed's three owner tables, row by row, in its column order.

TOOL_COLUMNS = (Tool.GUI, Tool.POWERSHELL, Tool.PP_CLI, Tool.DEVOPS_BUILD_TOOLS)
"""The seed's columns, in its order."""

TOOL_LABELS: Mapping[Tool, str] = MappingProxyType(
    {
        Tool.GUI: "GUI",
        Tool.POWERSHELL: "PowerShell",
        Tool.PP_CLI: "PP CLI",
        Tool.DEVOPS_BUILD_TOOLS: "DevOps + Build Tools",
    }
)

OWNER_CHANGE_QUESTIONS: Mapping[OwnerChange, str] = MappingProxyType(
    {
        OwnerChange.DIRECTLY: "Can you change the owner of an object directly outside of a solution?",
        OwnerChange.THROUGH_SOLUTION_IMPORT: (
            "Can you change the owner of an object contained inside of a solution by importing the "
            "solution (the identity importing it becomes the owner of every object in it)?"
        ),
        OwnerChange.TO_SERVICE_PRINCIPAL_IN_SOLUTION: (
            "Can you change a previously assigned user account to a service principal with a PAL "
            "association, for an object inside of a solution?"
        ),
    }
)

_Y, _N = True, False
_OWNER_TABLES: Mapping[OwnerChange, Mapping[Product, tuple[bool, bool, bool, bool]]] = {
    OwnerChange.DIRECTLY: {
        Product.CANVAS_APP: (_Y, _Y, _N, _N),
        Product.MODEL_DRIVEN_APP: (_N, _N, _N, _N),
        Product.CLOUD_FLOW: (_Y, _Y, _N, _N),
        Product.POWER_BI_DATASET: (_N, _Y, _N, _N),
        Product.COPILOT_STUDIO_BOT: (_N, _N, _N, _N),
    },
    OwnerChange.THROUGH_SOLUTION_IMPORT: {
        Product.CANVAS_APP: (_Y, _Y, _Y, _Y),
        Product.MODEL_DRIVEN_APP: (_Y, _N, _Y, _Y),
        Product.CLOUD_FLOW: (_Y, _Y, _Y, _Y),
        Product.POWER_BI_DATASET: (_N, _Y, _N, _N),
        Product.COPILOT_STUDIO_BOT: (_Y, _N, _Y, _Y),
    },
    OwnerChange.TO_SERVICE_PRINCIPAL_IN_SOLUTION: {
        Product.CANVAS_APP: (_N, _N, _Y, _Y),
        Product.MODEL_DRIVEN_APP: (_N, _N, _Y, _Y),
        Product.CLOUD_FLOW: (_Y, _Y, _Y, _Y),
        Product.POWER_BI_DATASET: (_N, _Y, _N, _N),
        Product.COPILOT_STUDIO_BOT: (_N, _N, _Y, _Y),
    },
}

OWNER_CHANGES: Mapping[tuple[Product, OwnerChange, Tool], bool] = MappingProxyType(
    {
        (product, change, tool): cell
        for change, rows in _OWNER_TABLES.items()
        for product, cells in rows.items()
        for tool, cell in zip(TOOL_COLUMNS, cells, strict=True)
    }
)
"""The seed's YES/NO cells, exactly; a product without rows (Customer Insights) has no key."""


def owner_change(product: Product, change: OwnerChange, tool: Tool) -> Support:
    """The seed's cell: YES, NO, or not covered (the seed has no row for the product)."""
    cell = OWNER_CHANGES.get((product, change, tool))
    if cell is None:
        return Support.NOT_COVERED
    return Support.YES if cell else Support.NO


def tools_allowing(product: Product, change: OwnerChange) -> tuple[Tool, ...]:
    """The seed's columns that say YES for the product in one table, in the seed's order."""
    return tuple(tool for tool in TOOL_COLUMNS if OWNER_CHANGES.get((product, change, tool)))


# The command or place behind each YES cell (what a step tells the partner to use).


class CommandKind(StrEnum):
    """What a command behind a YES cell does: the seed's tables mix these."""

    IMPORT_SOLUTION = "import-solution"
    CHANGE_OWNER = "change-owner"
    PUBLISH = "publish"


@dataclass(frozen=True)
class Command:
    """The command or place behind one of the seed's YES cells."""

    tool: Tool
    text: str
    kind: CommandKind


_IMPORT_COMMANDS: Mapping[Tool, str] = {
    Tool.GUI: "the Power Apps maker portal (Solutions > Import solution)",
    Tool.POWERSHELL: "PowerShell Import-CrmSolution (Microsoft.Xrm.Data.PowerShell)",
    Tool.PP_CLI: "pac solution import (PP CLI)",
    Tool.DEVOPS_BUILD_TOOLS: "the Power Platform Build Tools Import Solution task (DevOps)",
}
_PUBLISH_WITH_POWERSHELL = (
    "PowerShell Connect-PowerBIServiceAccount, then New-PowerBIReport (MicrosoftPowerBIMgmt)",
    CommandKind.PUBLISH,
)
_TO_SP = OwnerChange.TO_SERVICE_PRINCIPAL_IN_SOLUTION
_COMMAND_OVERRIDES: Mapping[tuple[Product, OwnerChange, Tool], tuple[str, CommandKind]] = {
    (Product.CANVAS_APP, OwnerChange.DIRECTLY, Tool.GUI): (
        "sharing the app as co-owner in Power Apps (make.powerapps.com, Share)",
        CommandKind.CHANGE_OWNER,
    ),
    (Product.CANVAS_APP, OwnerChange.DIRECTLY, Tool.POWERSHELL): (
        "PowerShell Set-AdminPowerAppOwner",
        CommandKind.CHANGE_OWNER,
    ),
    (Product.CLOUD_FLOW, OwnerChange.DIRECTLY, Tool.GUI): (
        "the Power Automate portal (the flow's owners)",
        CommandKind.CHANGE_OWNER,
    ),
    (Product.CLOUD_FLOW, OwnerChange.DIRECTLY, Tool.POWERSHELL): (
        "PowerShell Set-AdminFlowOwnerRole",
        CommandKind.CHANGE_OWNER,
    ),
    (Product.CLOUD_FLOW, _TO_SP, Tool.GUI): (
        "the Power Automate portal (the solution flow's owner)",
        CommandKind.CHANGE_OWNER,
    ),
    (Product.CLOUD_FLOW, _TO_SP, Tool.POWERSHELL): (
        "PowerShell Set-AdminFlowOwnerRole",
        CommandKind.CHANGE_OWNER,
    ),
    **{
        (Product.POWER_BI_DATASET, change, Tool.POWERSHELL): _PUBLISH_WITH_POWERSHELL
        for change in OwnerChange
    },
}


def _command(key: tuple[Product, OwnerChange, Tool]) -> Command:
    tool = key[2]
    text, kind = _COMMAND_OVERRIDES.get(key, (_IMPORT_COMMANDS[tool], CommandKind.IMPORT_SOLUTION))
    return Command(tool, text, kind)


COMMANDS: Mapping[tuple[Product, OwnerChange, Tool], Command] = MappingProxyType(
    {key: _command(key) for key, cell in OWNER_CHANGES.items() if cell}
)
"""The command or place behind each of the seed's YES cells (and only those)."""


def commands_for(
    product: Product, change: OwnerChange, kind: CommandKind | None = None
) -> tuple[Command, ...]:
    """The commands behind the seed's YES cells for the product in one table (of one kind), in the
    seed's column order."""
    found = (COMMANDS[(product, change, tool)] for tool in tools_allowing(product, change))
    return tuple(command for command in found if kind is None or command.kind is kind)
