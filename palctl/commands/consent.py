"""`palctl consent-url`: the link a customer's administrator opens to consent to the partner's app.

Consent creates the app's service principal in the customer's tenant, which is the identity that gets
linked. Nothing is sent anywhere: the command only writes the URL (standard output holds the link
alone, for scripts; the reminder about redirect URIs goes to standard error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

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

PUBLIC_AUTHORITY = "https://login.microsoftonline.com"
EPILOG = examples(
    f"palctl consent-url --tenant {TENANT_EXAMPLE} --client-id {APP_EXAMPLE}",
    'palctl consent-url --tenant T --client-id C --redirect-uri "$(azd env get-value '
    'PARTNER_APP_CONSENT_REDIRECT_URI)"',
    "palctl consent-url --tenant T --client-id C --authority https://login.microsoftonline.us -o json",
)
REDIRECT_HELP = (
    "where Entra ID sends the administrator afterwards. It must be registered on the app, or the "
    "administrator gets AADSTS50011: the template registers PARTNER_APP_CONSENT_REDIRECT_URI on the app "
    "it creates and nothing on an existing app (leave it out there: Entra ID then uses the app's own)"
)


@dataclass(frozen=True)
class ConsentUrl:
    url: str
    customer_tenant_id: str
    client_id: str
    redirect_uri: str | None
    authority: str


def admin_consent_url(
    tenant: str, client_id: str, redirect_uri: str | None = None, *, authority: str = PUBLIC_AUTHORITY
) -> str:
    """The link a customer's administrator opens to consent to the partner's app in their tenant.

    Without a redirect URI Entra ID returns the administrator to the app's registered one.
    """
    tenant = checks.guid(tenant, "--tenant")
    client_id = checks.guid(client_id, "--client-id")
    authority = checks.url(authority, "--authority", loopback_http=False).rstrip("/")
    query = {"client_id": client_id}
    if redirect_uri:
        query["redirect_uri"] = checks.url(redirect_uri, "--redirect-uri", loopback_http=True)
    return f"{authority}/{tenant}/adminconsent?{urlencode(query)}"


app = command_app("consent-url")


@app.command("consent-url", epilog=EPILOG)
@handles_errors
def consent_url(
    ctx: typer.Context,
    tenant: Tenant,
    client_id: Annotated[
        str,
        typer.Option(metavar="GUID", help="client ID of the partner's multi-tenant app", show_default=False),
    ],
    redirect_uri: Annotated[str | None, typer.Option(metavar="URL", help=REDIRECT_HELP)] = None,
    authority: Annotated[
        str, typer.Option(metavar="URL", help="Entra ID sign-in endpoint (sovereign clouds)")
    ] = PUBLIC_AUTHORITY,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Print the admin-consent link for a customer tenant.

    A Global Administrator (or Cloud Application / Application Administrator) of the customer tenant
    opens it to consent to the partner's multi-tenant app.
    """
    link = admin_consent_url(tenant, client_id, redirect_uri, authority=authority)
    result = ConsentUrl(link, tenant.lower(), client_id.lower(), redirect_uri or None, authority.rstrip("/"))
    current = session(ctx)
    render(Report(ConsentUrl, [result], lines=[link], single=True), output, current.out, session=current)
    if redirect_uri:
        # palctl cannot see the app's registration; the operator can (docs/customer-onboarding.md).
        current.message(
            "the redirect URI must be registered on the app (otherwise the administrator gets "
            "AADSTS50011); leave --redirect-uri out for an app the template did not create"
        )
