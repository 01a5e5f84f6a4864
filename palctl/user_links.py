"""What palctl does as a signed-in user account, with the service's own linker, and how it keeps the
ledger in step: `link` (GET, then PUT / PATCH / nothing), `verify` (the nightly check, by a person),
and az managementpartner's verbs `show`, `create`, `update`, `delete`. Every change is reported to the
Function App (`POST /api/links/{tenant}/users/{objectId}`), which records it for identity type `user`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from palctl.api import ApiTarget, api_session, call
from palctl.errors import Failed, UsageError
from shared.links.linker import LiveLink
from shared.links.user_accounts import UserAction
from shared.links.verdicts import as_verification
from shared.spine.identifiers import is_partner_id
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.settings import OnOtherPartner, SignInCloud

if TYPE_CHECKING:
    from palctl.user_sign_in import SignedInUser
    from shared.links.linker import Linker

RECORDED = frozenset(
    {
        OutcomeKind.LINKED,
        OutcomeKind.ALREADY_LINKED,
        OutcomeKind.VERIFIED,
        OutcomeKind.HEALED,
        OutcomeKind.UPDATED,
        OutcomeKind.RECLAIMED,
        OutcomeKind.KEPT_OTHER_PARTNER,
        OutcomeKind.FOREIGN_PARTNER,
        OutcomeKind.UNLINKED,
    }
)
"""What Azure was seen to hold: recorded. A failure (a refused call, a transient error) says nothing
about the link and is only shown."""


class Verb(StrEnum):
    LINK = "link"
    VERIFY = "verify"
    SHOW = "show"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True)
class PartnerIds:
    """Our partner IDs as the Function App is configured (`GET /api/partner`)."""

    default: str
    allowed: frozenset[str]
    on_other_partner: OnOtherPartner

    def chosen(self, partner_id: str | None) -> str:
        """The partner ID to link (the default when none is given); a UsageError when not one of ours."""
        chosen = partner_id or self.default
        if not is_partner_id(chosen) or chosen not in self.allowed:
            raise UsageError(
                "--partner-id: not one of our partner IDs (the Function App's ALLOWED_PARTNER_IDS)"
            )
        return chosen


@dataclass(frozen=True)
class UserLinkSettings:
    """The linker's settings for one sign-in (the service's `LinkerSettings`)."""

    arm_scope: str
    arm_endpoint: str
    on_other_partner: OnOtherPartner
    allowed_partner_ids: frozenset[str]
    sdk_retry_total: int = 2


async def partner_ids(target: ApiTarget) -> PartnerIds:
    """Our partner IDs from the Function App, asked before anyone signs in."""
    async with api_session() as http:
        response = await call(http, target, "GET", "/partner")
    body = response.body or {}
    allowed = body.get("allowedPartnerIds")
    if response.status != 200 or not isinstance(allowed, list) or not is_partner_id(body.get("partnerId")):
        raise Failed(f"the API did not give our partner IDs (HTTP {response.status})")
    try:
        on_other = OnOtherPartner(body.get("onOtherPartner", "update"))
    except ValueError:
        on_other = OnOtherPartner.UPDATE
    return PartnerIds(body["partnerId"], frozenset(p for p in allowed if is_partner_id(p)), on_other)


async def act(
    verb: Verb, user: SignedInUser, cloud: SignInCloud, partners: PartnerIds, partner_id: str
) -> Any:
    """Do `verb` as the signed-in account: the Outcome of a change, or the LiveLink `show` reads."""
    from azure.core.pipeline.transport import AioHttpTransport

    from palctl.user_sign_in import OneSignedInUser
    from shared.links.linker import Linker

    settings = UserLinkSettings(
        cloud.arm_scope, cloud.arm_endpoint, partners.on_other_partner, partners.allowed
    )
    async with AioHttpTransport(connection_verify=cloud.ca_bundle or True) as transport:
        linker = Linker(settings, OneSignedInUser(user), transport)
        return await _act(verb, linker, user, partner_id)


async def _act(verb: Verb, linker: Linker, user: SignedInUser, partner_id: str) -> Outcome | LiveLink:
    tenant, identity = user.tenant_id, user.identity
    if verb is Verb.LINK:
        return await linker.link(tenant, identity, partner_id)
    if verb is Verb.VERIFY:
        return as_verification(await linker.link(tenant, identity, partner_id))
    live = await linker.current(tenant, identity)
    if verb is Verb.SHOW or isinstance(live, Outcome):
        return live
    if verb is Verb.CREATE and live.linked and live.partner_id != partner_id:
        raise Failed(f"already linked to partner ID {live.partner_id or '(another)'}; change it with update")
    if verb is Verb.UPDATE and not live.linked:
        raise Failed("no link to update; make one with create")
    if verb is Verb.DELETE:
        if not live.linked:
            return Outcome(OutcomeKind.UNLINKED, "no link was in place; nothing to remove")
        if live.partner_id != partner_id:
            raise Failed(
                f"linked to partner ID {live.partner_id or '(another)'}, not {partner_id}: nothing removed"
            )
        return await linker.unlink(tenant, identity)
    return await linker.link(tenant, identity, partner_id, on_other_partner=OnOtherPartner.UPDATE)


def record_body(verb: Verb, user: SignedInUser, partner_id: str, outcome: Outcome) -> dict[str, Any]:
    """What the API records; Failed (nothing recorded) when the outcome says nothing about the link."""
    if outcome.kind not in RECORDED:
        advice = f" {outcome.remediation}" if outcome.remediation else ""
        raise Failed(f"{outcome.kind.value}: {outcome.reason}.{advice}")
    body = {
        "action": UserAction(verb.value).value,
        "userPrincipalName": user.user_principal_name,
        "outcome": outcome.kind.value,
        "partnerId": partner_id,
        "linkedPartnerId": None if outcome.kind is OutcomeKind.UNLINKED else outcome.partner_id,
        "previousPartnerId": outcome.previous_partner_id,
        "linkVersion": outcome.link_version,
    }
    return {name: value for name, value in body.items() if value is not None}


async def record(target: ApiTarget, user: SignedInUser, body: dict[str, Any]) -> dict[str, Any]:
    """Record the change in the ledger; Failed (with what Azure now holds) when the API refuses."""
    async with api_session() as http:
        response = await call(http, target, "POST", f"/links/{user.tenant_id}/users/{user.object_id}", body)
    if response.status != 200 or response.body is None:
        from shared.spine.untrusted import shown

        detail = shown((response.body or {}).get("detail") or "", 500)
        outcome = body["outcome"]
        raise Failed(
            f"Azure was changed ({outcome}), but the ledger refused it: HTTP {response.status} {detail}"
        )
    return response.body


async def ledger_state(target: ApiTarget, user: SignedInUser) -> dict[str, Any] | None:
    """What the ledger holds for the account (None: nothing recorded)."""
    async with api_session() as http:
        response = await call(http, target, "GET", f"/links/{user.tenant_id}")
    if response.status == 404:
        return None
    if response.status != 200 or response.body is None:
        raise Failed(f"the API did not answer the ledger's state (HTTP {response.status})")
    links = response.body.get("links") or []
    return next(
        (link for link in links if isinstance(link, dict) and link.get("clientId") == user.object_id), None
    )
