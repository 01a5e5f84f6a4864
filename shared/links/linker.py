"""Links the partner ID for one identity in one customer tenant: GET first, then PUT, PATCH or nothing."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import AioHttpTransport

from shared.links.arm_client import NoSharedCredential, TenantAuth, TenantClient, TenantTokenPolicy
from shared.spine.credentials import CredentialSource
from shared.spine.errors import Stage, classify_error, transient
from shared.spine.identifiers import is_partner_id
from shared.spine.identity import Identity
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.settings import OnOtherPartner
from shared.spine.transport import drop_idle_policies
from shared.spine.write_intent import WriteIntent

logger = logging.getLogger(__name__)

BeforeWrite = Callable[[WriteIntent], Awaitable[None]]
"""Called just before ARM is asked to change the link; what it raises is raised by `link`."""


class BeforeWriteFailed(Exception):
    """The intent could not be recorded, so ARM was not called; `__cause__` says why."""


@dataclass(frozen=True)
class LiveLink:
    """An identity's link as ARM holds it now (`linked`: there is one and it is active)."""

    linked: bool
    partner_id: str | None = None
    partner_name: str | None = None
    object_id: str | None = None
    version: int | None = None
    created_time: datetime | None = None
    updated_time: datetime | None = None
    state: str | None = None

    @classmethod
    def of(cls, link: Any) -> LiveLink:
        """From the SDK's PartnerResponse; a partner ID shown only when it has the shape of one."""
        raw = getattr(link.state, "value", link.state)
        state = raw if isinstance(raw, str) else None
        return cls(
            linked=(state or "Active") == "Active",
            partner_id=link.partner_id if is_partner_id(link.partner_id) else None,
            partner_name=link.partner_name if isinstance(link.partner_name, str) else None,
            object_id=link.object_id if isinstance(link.object_id, str) else None,
            version=link.version if isinstance(link.version, int) else None,
            created_time=link.created_time if isinstance(link.created_time, datetime) else None,
            updated_time=link.updated_time if isinstance(link.updated_time, datetime) else None,
            state=state,
        )


class LinkerSettings(Protocol):
    """What the linker reads of the settings: the service's `Settings`, or palctl's for a user."""

    @property
    def arm_scope(self) -> str: ...
    @property
    def arm_endpoint(self) -> str: ...
    @property
    def sdk_retry_total(self) -> int: ...
    @property
    def on_other_partner(self) -> OnOtherPartner: ...
    @property
    def allowed_partner_ids(self) -> frozenset[str]: ...


class Linker:
    def __init__(
        self, settings: LinkerSettings, credentials: CredentialSource, transport: AioHttpTransport
    ) -> None:
        self._settings = settings
        self._credentials = credentials
        self._transport = transport
        self._arm_scope = settings.arm_scope
        self._shared_client: Any = None  # built on first use: the SDK's import costs cold start

    def _arm_client(self, credential: AsyncTokenCredential, token: AccessToken | None = None) -> Any:
        """The ARM client, as one tenant's: every request it sends carries that tenant's token.

        One SDK client serves every link (building one costs more than the GET it sends); its
        authentication policy takes the token from each call (`TenantTokenPolicy`), so no tenant's
        token can reach another tenant's request. `token`, when given, is used while it is valid.
        """
        if self._shared_client is None:
            from azure.mgmt.managementpartner.aio import ACEProvisioningManagementPartnerAPI

            self._shared_client = ACEProvisioningManagementPartnerAPI(
                NoSharedCredential(),
                base_url=self._settings.arm_endpoint,
                credential_scopes=[self._arm_scope],
                transport=self._transport,
                retry_total=self._settings.sdk_retry_total,
                authentication_policy=TenantTokenPolicy(self._arm_scope),
            )
            drop_idle_policies(self._shared_client._client)
        return TenantClient(self._shared_client, TenantAuth(credential, self._arm_scope, token))

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
        arm = await self._signed_in(tenant_id, identity)
        if isinstance(arm, Outcome):
            return arm
        client = _Writes(arm, identity.client_id, self._settings, before_write)
        try:
            return await self._link(client, partner_id, policy)
        except BeforeWriteFailed:
            raise
        except Exception as err:  # noqa: BLE001
            return classify_error(
                err, stage=Stage.ARM, client_id=identity.client_id, secret_name=identity.key_vault_secret_name
            )

    async def _signed_in(self, tenant_id: str, identity: Identity) -> Any:
        """The ARM client as the identity, signed in to the tenant (the token asked here, so a sign-in
        failure is told apart from an ARM failure; the ARM requests carry it), or the Outcome of a
        failure to get its credential or sign in."""
        client_id, secret_name = identity.client_id, identity.key_vault_secret_name
        try:
            credential = await self._credentials.get(tenant_id, identity)
        except Exception as err:  # noqa: BLE001 - every failure becomes an outcome
            return classify_error(err, stage=Stage.KEY_VAULT, client_id=client_id, secret_name=secret_name)
        try:
            token = await credential.get_token(self._arm_scope)
        except Exception as err:  # noqa: BLE001
            outcome = classify_error(err, stage=Stage.TOKEN, client_id=client_id, secret_name=secret_name)
            if outcome.kind is OutcomeKind.PARTNER_CREDENTIAL_BROKEN or outcome.code == "AADSTS700024":
                # Read Key Vault again next time: the secret may have been rotated meanwhile.
                await self._credentials.forget(tenant_id, identity)
            return outcome
        return self._arm_client(credential, token)

    async def current(self, tenant_id: str, identity: Identity) -> LiveLink | Outcome:
        """Read the identity's link in the tenant from ARM now, signed in as that identity (the same
        credential path as `link`); nothing is written anywhere. The link as ARM holds it (`linked`
        only when it is active), or the outcome a failure to sign in or read means. Never raises for
        a service error."""
        client = await self._signed_in(tenant_id, identity)
        if isinstance(client, Outcome):
            return client
        try:
            found = await client.partners.get()
        except ResourceNotFoundError:
            return LiveLink(linked=False)
        except Exception as err:  # noqa: BLE001
            return classify_error(
                err, stage=Stage.ARM, client_id=identity.client_id, secret_name=identity.key_vault_secret_name
            )
        return LiveLink.of(found)

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

    async def unlink(self, tenant_id: str, identity: Identity) -> Outcome:
        """Remove the identity's link in the tenant, signed in as that identity (the same credential
        path as `link`): GET the caller's link, then DELETE it (a soft delete; ARM answers 200 even
        when nothing is linked). `unlinked` with the partner ID removed, or with none when no link was
        in place; a failure to get a credential, sign in or call ARM is the outcome it means (the
        caller decides what a sign-in refusal means for an identity that is being offboarded).
        Never raises for a service error.
        """
        client_id, secret_name = identity.client_id, identity.key_vault_secret_name
        client = await self._signed_in(tenant_id, identity)
        if isinstance(client, Outcome):
            return client
        try:
            current = await self._current(client)
            if current is None:
                return Outcome(OutcomeKind.UNLINKED, "no link was in place; nothing to remove")
            await client.partner.delete(current.partner_id)
        except Exception as err:  # noqa: BLE001
            return classify_error(err, stage=Stage.ARM, client_id=client_id, secret_name=secret_name)
        removed = current.partner_id if is_partner_id(current.partner_id) else None
        return Outcome(
            OutcomeKind.UNLINKED,
            f"removed the link to partner ID {_shown(current.partner_id)}",
            previous_partner_id=removed,
            object_id=current.object_id,
        )


class _Writes:
    """The ARM client's `partners.get`, `partner.create` and `partner.update`, with the intent
    recorded before each write."""

    def __init__(
        self, client: Any, client_id: str, settings: LinkerSettings, before: BeforeWrite | None
    ) -> None:
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
