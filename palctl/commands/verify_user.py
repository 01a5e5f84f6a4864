"""`palctl verify-user`: the nightly check of a user account's link, by a person.

The nightly run cannot sign in as a user account, so it lists such links as due for a manual check
(`GET /api/links?identityType=user`, and its log). This signs in as the account with a device code
and checks its link as the nightly run would: `verified` when in place, `healed` when it was missing
and is made again, moved back to our partner ID when it held another one. The ledger records it.
Exit codes as `palctl link-user`'s.
"""

from __future__ import annotations

from palctl.options import TENANT_EXAMPLE, command_app, examples
from palctl.user_links import Verb
from palctl.user_run import add_command

app = command_app("verify-user")
EPILOG = examples(f"palctl verify-user --tenant {TENANT_EXAMPLE}")
SUMMARY = """Sign in as a user account and verify its link.

Device-code sign-in; the outcome is recorded in the ledger as identity type `user`."""

add_command(app, Verb.VERIFY, "verify-user", SUMMARY, EPILOG)
