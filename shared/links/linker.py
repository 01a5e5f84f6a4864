"""Links the partner ID for one identity in one customer tenant: GET first, then PUT, PATCH or nothing."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.transport import AioHttpTransport

from shared.spine.credentials import CredentialCache
from shared.spine.errors import Stage, classify_error, transient
from shared.spine.identifiers import is_partner_id
from shared.spine.identity import Identity
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.settings import OnOtherPartner, Settings
from shared.spine.write_intent import WriteIntent

logger = logging.getLogger(__name__)

BeforeWrite = Callable[[WriteIntent], Awaitable[None]]
"""Called just before ARM is asked to change the link; what it raises is raised by `link`."""


class BeforeWriteFailed(Exception):
    """The intent could not be recorded, so ARM was not called; `__cause__` says why."""


class Linker:
    def __init__(self, settings: Settings, credentials: CredentialCache, transport: AioHttpTransport) -> None:
        self._settings = settings
        self._credentials = credentials
        self._transport = transport

    def _arm_client(self, credential: Any) -> Any:
        from azure.mgmt.managementpartner.aio import ACEProvisioningManagementPartnerAPI

        return ACEProvisioningManagementPartnerAPI(
            credential,
            base_url=self._settings.arm_endpoint,
            credential_scopes=[self._settings.arm_scope],
            transport=self._transport,
            retry_total=self._settings.sdk_retry_total,
        )

    async def link(
        self,
        tenant_id: str,
        identity: Identity,
        partner_id: str,
        *,
        on_other_partner: OnOtherPartner | None = None,
        before_write: BeforeWrite | None = None,
    ) -> Outcome:
        """Make the identity's link in the tenant point at `partner_id`.

        Never raises for a service error; raises BeforeWriteFailed when `before_write` fails.
        """
        policy = on_other_partner or self._settings.on_other_partner

        try:
            credential = await self._credentials.get(tenant_id, identity)
        except Exception as err:  # noqa: BLE001 - every failure becomes an outcome
            return classify_error(
                err,
                stage=Stage.KEY_VAULT,
                client_id=identity.client_id,
                secret_name=identity.key_vault_secret_name,
            )

        try:
            # Asked here so a sign-in failure is told apart from an ARM failure; the ARM client's
            # own request reuses this cached token.
            await credential.get_token(self._settings.arm_scope)
        except Exception as err:  # noqa: BLE001
            outcome = classify_error(
                err,
                stage=Stage.TOKEN,
                client_id=identity.client_id,
                secret_name=identity.key_vault_secret_name,
            )
            if outcome.kind is OutcomeKind.PARTNER_CREDENTIAL_BROKEN or outcome.code == "AADSTS700024":
                # Read Key Vault again next time: the secret may have been rotated meanwhile.
                await self._credentials.forget(tenant_id, identity)
            return outcome

        client = _Writes(self._arm_client(credential), identity.client_id, self._settings, before_write)
        try:
            return await self._link(client, partner_id, policy)
        except BeforeWriteFailed:
            raise
        except Exception as err:  # noqa: BLE001
            return classify_error(
                err, stage=Stage.ARM, client_id=identity.client_id, secret_name=identity.key_vault_secret_name
            )

    async def _current(self, client: Any) -> Any | None:
        try:
            link = await client.partners.get()
        except ResourceNotFoundError:
            return None
        return link if (link.state or "Active") == "Active" else None

    async def _link(self, client: Any, partner_id: str, policy: OnOtherPartner) -> Outcome:
        """GET, then PUT when there is no link, PATCH when it holds another partner ID, or nothing."""
        current = await self._current(client)
        if current is None:
            made = await self._create(client, partner_id)
            if isinstance(made, Outcome):
                return made
            current = made
        if current.partner_id == partner_id:
            return _result(OutcomeKind.ALREADY_LINKED, f"already linked to partner ID {partner_id}", current)
        foreign = current.partner_id not in self._settings.allowed_partner_ids
        if policy is OnOtherPartner.KEEP:
            return _kept(current, foreign=foreign)
        return await self._move(client, current, partner_id, foreign=foreign)

    async def _create(self, client: Any, partner_id: str) -> Outcome | Any:
        """PUT: `linked`, or the link found instead (someone else's, or one made meanwhile)."""
        try:
            created = await client.partner.create(partner_id)
        except ResourceExistsError:
            # Someone linked it between our GET and PUT: look again.
            current = await self._current(client)
            if current is None:
                return transient("arm: PUT reported a conflict but no link exists", code="Conflict")
            return current
        if created.partner_id == partner_id:
            return _result(OutcomeKind.LINKED, f"linked to partner ID {partner_id}", created)
        return created  # a 200 that kept someone else's link

    async def _move(self, client: Any, current: Any, partner_id: str, *, foreign: bool) -> Outcome:
        """PATCH the link from another partner ID to ours (PUT when it vanished meanwhile)."""
        try:
            updated = await client.partner.update(partner_id, current.partner_id)
        except ResourceNotFoundError:
            # The link was removed between our GET and PATCH: create it instead.
            created = await client.partner.create(partner_id)
            if created.partner_id != partner_id:
                return _mismatch("PUT", created.partner_id, partner_id)
            return _result(OutcomeKind.LINKED, f"linked to partner ID {partner_id}", created)
        if updated.partner_id != partner_id:
            return _mismatch("PATCH", updated.partner_id, partner_id)
        kind, what = (
            (OutcomeKind.RECLAIMED, "a partner ID that is not ours")
            if foreign
            else (OutcomeKind.UPDATED, "partner ID")
        )
        return _result(
            kind,
            f"changed the link from {what} {current.partner_id} to {partner_id}",
            updated,
            previous_partner_id=current.partner_id,
        )


class _Writes:
    """The ARM client's `partners.get`, `partner.create` and `partner.update`, with the intent
    recorded before each write."""

    def __init__(self, client: Any, client_id: str, settings: Settings, before: BeforeWrite | None) -> None:
        self.partners = client.partners
        self.partner = self
        self._client = client
        self._client_id = client_id
        self._allowed = settings.allowed_partner_ids
        self._before = before

    async def _announce(self, partner_id: str, previous: str | None) -> None:
        if self._before is None:
            return
        intent = WriteIntent(
            self._client_id, partner_id, previous, previous is None or previous in self._allowed
        )
        try:
            await self._before(intent)
        except Exception as error:
            raise BeforeWriteFailed() from error

    async def create(self, partner_id: str) -> Any:
        await self._announce(partner_id, None)
        return await self._client.partner.create(partner_id)

    async def update(self, partner_id: str, previous: str | None) -> Any:
        await self._announce(partner_id, previous)
        return await self._client.partner.update(partner_id)


def _kept(current: Any, *, foreign: bool) -> Outcome:
    if foreign:
        return _result(
            OutcomeKind.FOREIGN_PARTNER,
            f"linked to partner ID {_shown(current.partner_id)}, which is not ours; kept because "
            "ON_OTHER_PARTNER=keep",
            current,
            remediation="Find out with the customer who linked our identity to that partner ID; relink "
            "with ON_OTHER_PARTNER=update to move it back.",
        )
    return _result(
        OutcomeKind.KEPT_OTHER_PARTNER,
        f"linked to another of our partner IDs ({current.partner_id}); kept because ON_OTHER_PARTNER=keep",
        current,
    )


def _shown(partner_id: Any) -> str:
    """A partner ID from ARM's reply, shown only when it has the shape of one."""
    return partner_id if is_partner_id(partner_id) else "(not a partner ID)"


def _mismatch(method: str, answered: str | None, requested: str) -> Outcome:
    """ARM answered a write with a link that is not the one asked for: nothing is believed."""
    return transient(
        f"arm: the {method} was answered with partner ID {_shown(answered)}, not the requested "
        f"{requested}; the link will be read again",
        code="arm-reply-mismatch",
    )


def _result(
    kind: OutcomeKind,
    reason: str,
    link: Any,
    *,
    previous_partner_id: str | None = None,
    remediation: str | None = None,
) -> Outcome:
    return Outcome(
        kind,
        reason,
        remediation=remediation,
        partner_id=link.partner_id,
        previous_partner_id=previous_partner_id,
        object_id=link.object_id,
        link_version=link.version,
    )
