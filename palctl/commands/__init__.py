"""palctl's commands: one module per command or command group, each with a Typer `app`.

`COMMANDS` is the registry `palctl.cli` builds the command line from: a command's module is imported
only when that command runs (or shows its help, or completes), so `palctl --help` stays as cheap with
twenty commands as with five. The summary is the one line `palctl --help` lists.
"""

from __future__ import annotations

from typing import NamedTuple


class Entry(NamedTuple):
    module: str
    summary: str


COMMANDS: dict[str, Entry] = {
    "enqueue": Entry("palctl.commands.enqueue", "Send onboarding messages: one customer, or a CSV backfill."),
    "consent-url": Entry("palctl.commands.consent", "Print the admin-consent link for a customer tenant."),
    "retire": Entry("palctl.commands.retire", "Retire an identity's ledger record (over the HTTP API)."),
    "dlq": Entry("palctl.commands.dlq", "The dead-letter queue: list what is in it and why, replay."),
    "config": Entry("palctl.commands.config", "palctl's settings: set, unset, show."),
}


def summary(name: str) -> str:
    return COMMANDS[name].summary
