"""The user-account commands' common run: our partner IDs from the API, a person's device-code
sign-in, the action as that account, the ledger kept in step, and the result for people or scripts.
Used by `palctl link-user`, `palctl verify-user` and `palctl partner`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import typer

from palctl import checks
from palctl.api import api_target
from palctl.configuration import Configuration
from palctl.errors import ExitCode, UsageError
from palctl.options import Output, Tenant, finish, handles_errors, session
from palctl.output import OutputFormat, Report, render
from palctl.terminal import Session
from palctl.user_links import Verb, act, ledger_state, partner_ids, record, record_body
from palctl.user_sign_in import PUBLIC_CLIENT_ID, SignedInUser, sign_in

PartnerId = Annotated[
    str | None,
    typer.Option(
        metavar="DIGITS",
        help="our partner ID to link (default: the Function App's PARTNER_ID)",
        show_default=False,
    ),
]
PublicClientId = Annotated[
    str,
    typer.Option(
        metavar="GUID",
        envvar="PAL_PUBLIC_CLIENT_ID",
        help="the public client app to sign in with (env PAL_PUBLIC_CLIENT_ID; default: Azure CLI's)",
    ),
]
ApiUrl = Annotated[
    str | None,
    typer.Option(
        metavar="URL", help="the Function App's URL (env PAL_API_URL, config api-url)", show_default=False
    ),
]


@dataclass(frozen=True)
class UserLinkRow:
    """What palctl did as the account, and whether the ledger recorded it."""

    customer_tenant_id: str
    object_id: str
    user_principal_name: str
    action: str
    outcome: str = field(metadata={"styles": {"unlinked": "yellow", "foreign-partner": "red"}})
    linked_partner_id: str | None
    reason: str
    recorded: bool


@dataclass(frozen=True)
class UserShowRow:
    """The account's link as Azure holds it now, beside what the ledger says (nothing is written)."""

    customer_tenant_id: str
    object_id: str
    user_principal_name: str
    azure_linked: bool
    azure_partner_id: str | None
    azure_version: int | None
    azure_updated_at: str | None
    ledger_outcome: str | None
    ledger_partner_id: str | None
    ledger_checked_at: str | None


def add_command(app: typer.Typer, verb: Verb, name: str, summary: str, epilog: str) -> None:
    """`verb` as a command of `app`: the user-account commands' options, and `run`."""

    @app.command(name, help=summary, epilog=epilog)
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


def run(
    current: Session,
    verb: Verb,
    tenant: str,
    *,
    partner_id: str | None,
    public_client_id: str,
    api_url: str | None,
    output: OutputFormat,
) -> None:
    """Sign in as the account in `tenant`, do `verb` as it, keep the ledger in step, print the result."""
    from shared.spine.settings import SettingsError, SignInCloud

    checked_tenant = checks.guid(tenant, "--tenant")
    client = checks.guid(public_client_id, "--public-client-id")
    target = api_target(Configuration(), api_url)
    try:
        cloud = SignInCloud.from_env()
    except SettingsError as error:
        raise UsageError(str(error)) from None
    partners = asyncio.run(partner_ids(target))
    chosen = partners.chosen(partner_id)

    def prompt(verification_uri: str, user_code: str, expires_on: datetime) -> None:
        current.message(
            f"to sign in as the account, open {verification_uri} and enter the code {user_code} "
            f"(before {expires_on:%H:%M})"
        )

    user = sign_in(checked_tenant, cloud, prompt, public_client_id=client)
    current.message(f"signed in as {user.user_principal_name} ({user.object_id})")
    done = asyncio.run(act(verb, user, cloud, partners, chosen))
    if verb is Verb.SHOW:
        _show(current, user, done, asyncio.run(ledger_state(target, user)), output)
        return
    answer = asyncio.run(record(target, user, record_body(verb, user, chosen, done)))
    row = UserLinkRow(
        user.tenant_id,
        user.object_id,
        user.user_principal_name,
        verb.value,
        str(answer.get("outcome")),
        answer.get("linkedPartnerId"),
        str(answer.get("reason")),
        recorded=True,
    )
    lines = [f"{row.user_principal_name}: {row.outcome}: {row.reason}; recorded in the ledger"]
    if answer.get("remediation"):
        lines.append(f"  {answer['remediation']}")
    render(
        Report(UserLinkRow, [row], items_key="rows", lines=lines, single=True),
        output,
        current.out,
        session=current,
    )
    finish(ExitCode.PARTIAL if row.outcome == "foreign-partner" else ExitCode.DONE)


def _show(
    current: Session, user: SignedInUser, live: Any, ledger: dict[str, Any] | None, output: OutputFormat
) -> None:
    """`palctl partner show`: Azure now, beside the ledger."""
    from shared.links.linker import LiveLink

    if not isinstance(live, LiveLink):
        from palctl.errors import Failed

        raise Failed(f"Azure could not be read as the account: {live.kind.value}: {live.reason}")
    ledger = ledger or {}
    row = UserShowRow(
        user.tenant_id,
        user.object_id,
        user.user_principal_name,
        live.linked,
        live.partner_id,
        live.version,
        live.updated_time.isoformat() if live.updated_time else None,
        ledger.get("outcome"),
        ledger.get("linkedPartnerId"),
        ledger.get("lastCheckedAt"),
    )
    azure = f"linked to {row.azure_partner_id}, version {row.azure_version}" if live.linked else "no link"
    recorded = (
        f"{row.ledger_outcome} ({row.ledger_partner_id or 'no link'})" if ledger else "nothing recorded"
    )
    lines = [f"{row.user_principal_name}: Azure: {azure}; ledger: {recorded}"]
    render(
        Report(UserShowRow, [row], items_key="rows", lines=lines, single=True),
        output,
        current.out,
        session=current,
    )
