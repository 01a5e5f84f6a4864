"""`palctl link-user`: link our partner ID for a user or service account in a customer tenant.

Such an account signs in only interactively (MFA), so the unattended service cannot link it; a person
signs in here with a device code, palctl runs the service's linker as the account (GET, then PUT,
PATCH or nothing) and the Function App records the outcome in the ledger as identity type `user`,
with the account's object ID and sign-in name. The nightly run then lists the account as due for a
manual check (`palctl verify-user`). Exit code 0 when linked, 3 when the account is linked to a
partner ID that is not ours (kept), 1 when the sign-in or a call failed, 2 for bad input.
"""

from __future__ import annotations

from palctl.options import TENANT_EXAMPLE, command_app, examples
from palctl.user_links import Verb
from palctl.user_run import add_command

app = command_app("link-user")
EPILOG = examples(
    f"palctl link-user --tenant {TENANT_EXAMPLE}",
    f"palctl link-user --tenant {TENANT_EXAMPLE} --partner-id 1234567 -o json",
)
SUMMARY = """Sign in as a user account and link it (recorded).

Device-code sign-in; the outcome is recorded in the ledger as identity type `user`."""

add_command(app, Verb.LINK, "link-user", SUMMARY, EPILOG)
