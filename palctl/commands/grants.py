"""`palctl grants`: the one-time grants a customer's admin gives so that the attribution audit can read
the customer's Power Platform (the partner's app registered with Power Platform, its Dataverse
application users, the Power BI tenant settings), each with the exact command or admin-portal path.

Nothing is sent anywhere: the command only writes the steps, for the operator to pass on. What each
grant enables and what breaks without it: docs/customer-grants.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from palctl import checks
from palctl.options import (
    APP_EXAMPLE,
    TENANT_EXAMPLE,
    Output,
    Tenant,
    command_app,
    examples,
    handles_errors,
    session,
)
from palctl.output import OutputFormat, Report, render

if TYPE_CHECKING:
    from palctl.terminal import Session

EPILOG = examples(
    f"palctl grants --tenant {TENANT_EXAMPLE} --client-id {APP_EXAMPLE}",
    "palctl grants --tenant T --client-id C -o json | jq -r '.grants[].command'",
)
GUIDE = "docs/customer-grants.md"
POWER_BI_SETTINGS = "https://app.powerbi.com/admin-portal/tenantSettings"
GROUP = "<security group>"


@dataclass(frozen=True)
class Grant:
    """One step for the customer's admin: what to do, the command (or where to click), another way."""

    step: str
    command: str
    alternative: str | None = None


def grants(tenant: str, client_id: str) -> list[Grant]:
    """The grants in order, for the app `client_id` in the customer tenant `tenant`
    (power-platform.md, "What the customer grants once")."""
    return [
        Grant(
            f"Register the partner's app with Power Platform, as an admin of tenant {tenant} signed in with "
            "`pac auth create` (or in PowerShell, module Microsoft.PowerApps.Administration.PowerShell, "
            "after Add-PowerAppsAccount); a service principal cannot register itself. The app can then "
            "read the environments, canvas apps and flows, as a Power Platform administrator.",
            f"pac admin application register --application-id {client_id}",
            f"New-PowerAppManagementApp -ApplicationId {client_id}",
        ),
        Grant(
            "A Dataverse application user for the app in each environment with Dataverse: nothing to do "
            "once step 1 is done (the audit adds it, with Microsoft's addAppUser, as System Administrator "
            "of that environment). To add it yourself:",
            "Power Platform admin center > Environments > (the environment) > Settings > Users + "
            f"permissions > Application users > New app user > the app {client_id}",
        ),
        Grant(
            "Put the app's service principal in a security group for the Power BI settings below "
            f"(a new group or one you have), signed in with `az login --tenant {tenant}`.",
            f'az ad group member add --group "{GROUP}" '
            f'--member-id "$(az ad sp show --id {client_id} --query id --output tsv)"',
            "Microsoft Entra admin center > Groups > (the group) > Members > Add members > "
            f"the app {client_id}",
        ),
        Grant(
            "Let that group use Power BI's read-only admin APIs: the audit reads the datasets and who "
            "published them.",
            f"{POWER_BI_SETTINGS} > Admin API settings > Service principals can access read-only admin "
            f"APIs > Enabled, Specific security groups: {GROUP}",
        ),
        Grant(
            "Let that group use the Fabric APIs: publishing a dataset as the app, or taking one over "
            "(delivery and repair; the audit alone does not need it).",
            f"{POWER_BI_SETTINGS} > Developer settings > Service principals can use Fabric APIs > "
            f"Enabled, Specific security groups: {GROUP}",
        ),
        Grant(
            "Check that the app holds no Power BI permission that needs admin consent: Power BI refuses "
            "the admin APIs to an app that does.",
            f"Microsoft Entra admin center > Enterprise applications > the app {client_id} > Permissions: "
            "no Power BI Service permission granted for the organization",
        ),
    ]


def show_grants(current: Session, tenant: str, client_id: str, steps: list[Grant]) -> None:
    """The steps for people: numbered, each command on a line of its own (to copy)."""
    from rich.table import Table
    from rich.text import Text

    current.line(f"One-time grants for the attribution audit: customer tenant {tenant}, app {client_id}")
    current.line("")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, justify="right")
    grid.add_column(overflow="fold")
    for number, grant in enumerate(steps, 1):
        body = Text(grant.step)
        body.append("\n  " + grant.command, style="bold")
        if grant.alternative:
            body.append("\n  or: " + grant.alternative)
        grid.add_row(Text(f"{number}."), body)
    current.show(grid)
    current.line("")
    current.line(f"What each grant enables, what breaks without it, how to check it: {GUIDE}")


app = command_app("grants")


@app.command("grants", epilog=EPILOG)
@handles_errors
def grants_command(
    ctx: typer.Context,
    tenant: Tenant,
    client_id: Annotated[
        str,
        typer.Option(metavar="GUID", help="client ID of the partner's multi-tenant app", show_default=False),
    ],
    output: Output = OutputFormat.TABLE,
) -> None:
    """Print the grants a customer's admin gives once for the audit.

    Registering the partner's app with Power Platform, its Dataverse application users, and the Power
    BI tenant settings, each with the exact command or admin-portal path. Until a grant is given, the
    audit reports that API alone as needs-customer-action (palctl attribution report).
    """
    tenant = checks.guid(tenant, "--tenant")
    client_id = checks.guid(client_id, "--client-id")
    steps = grants(tenant, client_id)
    current = session(ctx)
    if OutputFormat(output) is OutputFormat.TABLE:
        show_grants(current, tenant, client_id, steps)
        return
    summary = {"customerTenantId": tenant, "clientId": client_id}
    render(Report(Grant, steps, "grants", summary), output, current.out)
