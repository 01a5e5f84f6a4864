"""`palctl verify-user`: the nightly check of a user account's link, by a person.

The nightly run cannot sign in as a user account, so it lists such links as due for a manual check
(`GET /api/links?identityType=user`, and its log). This signs in as the account with a device code
and checks its link as the nightly run would: `verified` when in place, `healed` when it was missing
and is made again, moved back to our partner ID when it held another one. The ledger records it.
Exit codes as `palctl link-user`'s.
"""

from __future__ import annotations

import typer

from palctl.options import TENANT_EXAMPLE, Output, Tenant, command_app, examples, handles_errors, session
from palctl.output import OutputFormat
from palctl.user_links import Verb
from palctl.user_run import ApiUrl, PartnerId, PublicClientId, run
from palctl.user_sign_in import PUBLIC_CLIENT_ID

app = command_app("verify-user")
EPILOG = examples(f"palctl verify-user --tenant {TENANT_EXAMPLE}")


@app.command(epilog=EPILOG)
@handles_errors
def verify_user(
    ctx: typer.Context,
    tenant: Tenant,
    partner_id: PartnerId = None,
    public_client_id: PublicClientId = PUBLIC_CLIENT_ID,
    api_url: ApiUrl = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Sign in as a user account and verify its link.

    Device-code sign-in; the outcome is recorded in the ledger as identity type `user`.
    """
    run(
        session(ctx),
        Verb.VERIFY,
        tenant,
        partner_id=partner_id,
        public_client_id=public_client_id,
        api_url=api_url,
        output=output,
    )
