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
    "offboard": Entry(
        "palctl.commands.offboard", "Offboard customers: remove their link (over the HTTP API)."
    ),
    "retire": Entry("palctl.commands.retire", "Retire an identity's ledger record (over the HTTP API)."),
    "link": Entry("palctl.commands.link", "A customer's links read from Azure now, beside the ledger."),
    "link-user": Entry("palctl.commands.link_user", "Sign in as a user account and link it (recorded)."),
    "verify-user": Entry("palctl.commands.verify_user", "Sign in as a user account and verify its link."),
    "partner": Entry("palctl.commands.partner", "az managementpartner's verbs, as a signed-in user account."),
    "evidence": Entry("palctl.commands.evidence", "Was each customer linked throughout a period? (HTTP API)"),
    "dlq": Entry("palctl.commands.dlq", "The dead-letter queue: list what is in it and why, replay."),
    "advise": Entry("palctl.commands.advise", "Does a delivery credit the partner, and what to do."),
    "audit": Entry("palctl.commands.audit", "Audit a customer's attribution now (over the HTTP API)."),
    "attribution": Entry(
        "palctl.commands.attribution", "The attribution audit's results: findings, coverage, CSV."
    ),
    "grants": Entry(
        "palctl.commands.grants", "Print the grants a customer's admin gives once for the audit."
    ),
    "reconcile": Entry(
        "palctl.commands.reconcile", "Reconcile Partner Center's PAL attribution with the ledger."
    ),
    "deliver": Entry("palctl.commands.deliver", "Deliver a solution or a .pbix as the linked identity."),
    "repair": Entry("palctl.commands.repair", "Repair ownership, opt-in: plan, apply a plan, undo."),
    "config": Entry("palctl.commands.config", "palctl's settings: set, unset, show."),
}


def summary(name: str) -> str:
    return COMMANDS[name].summary
