"""`palctl partner show|create|update|delete`: az managementpartner's verbs (`az managementpartner
show|create|update|delete --partner-id`) for one account signed in interactively (device code), with
the ledger kept in step.

`show` reads the account's link from Azure beside the ledger (nothing is written); `create` links
our partner ID when the account has no link (or already has this one); `update` moves an existing
link to our partner ID; `delete` removes the account's link to the given partner ID of ours and
stops its manual checks. Each change is recorded in the ledger as identity type `user`.
"""

from __future__ import annotations

from palctl.options import TENANT_EXAMPLE, command_app, examples
from palctl.user_links import Verb
from palctl.user_run import add_command

app = command_app("partner", no_args_is_help=True)


@app.callback()
def partner() -> None:
    """az managementpartner's verbs for one account signed in interactively, the ledger kept in step."""


for verb, summary in [
    (Verb.SHOW, "Show the account's link in Azure beside the ledger (nothing is written)."),
    (Verb.CREATE, "Link our partner ID for the account (when it has no link); recorded."),
    (Verb.UPDATE, "Move the account's existing link to our partner ID; recorded."),
    (Verb.DELETE, "Remove the account's link to our partner ID and stop its checks; recorded."),
]:
    add_command(
        app, verb, verb.value, summary, examples(f"palctl partner {verb.value} --tenant {TENANT_EXAMPLE}")
    )
