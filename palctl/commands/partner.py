"""`palctl partner show|create|update|delete`: az managementpartner's verbs (`az managementpartner
show|create|update|delete --partner-id`) for one account signed in interactively (device code), with
the ledger kept in step.

`show` reads the account's link from Azure beside the ledger (nothing is written); `create` links
our partner ID when the account has no link (or already has this one); `update` moves an existing
link to our partner ID; `delete` removes the account's link to the given partner ID of ours and
stops its manual checks. Each change is recorded in the ledger as identity type `user`.
"""

from __future__ import annotations

import typer

from palctl.options import TENANT_EXAMPLE, Output, Tenant, command_app, examples, handles_errors, session
from palctl.output import OutputFormat
from palctl.user_links import Verb
from palctl.user_run import ApiUrl, PartnerId, PublicClientId, run
from palctl.user_sign_in import PUBLIC_CLIENT_ID

app = command_app("partner", no_args_is_help=True)


@app.callback()
def partner() -> None:
    """az managementpartner's verbs for one account signed in interactively, the ledger kept in step."""


def _verb(verb: Verb, summary: str) -> None:
    """One verb as a command: the same options, the same run."""

    @app.command(
        verb.value,
        help=summary,
        epilog=examples(f"palctl partner {verb.value} --tenant {TENANT_EXAMPLE}"),
    )
    @handles_errors
    def command(
        ctx: typer.Context,
        tenant: Tenant,
        partner_id: PartnerId = None,
        public_client_id: PublicClientId = PUBLIC_CLIENT_ID,
        api_url: ApiUrl = None,
        output: Output = OutputFormat.TABLE,
    ) -> None:
        run(
            session(ctx),
            verb,
            tenant,
            partner_id=partner_id,
            public_client_id=public_client_id,
            api_url=api_url,
            output=output,
        )


_verb(Verb.SHOW, "Show the account's link in Azure beside the ledger (nothing is written).")
_verb(Verb.CREATE, "Link our partner ID for the account (when it has no link); recorded.")
_verb(Verb.UPDATE, "Move the account's existing link to our partner ID; recorded.")
_verb(Verb.DELETE, "Remove the account's link to our partner ID and stop its checks; recorded.")
