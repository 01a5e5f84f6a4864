"""Links the partner ID for one identity in one customer tenant: GET first, then PUT, PATCH or nothing."""

from __future__ import annotations

import logging
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.transport import AioHttpTransport

from .credentials import ARM_SCOPE, CredentialCache
from .errors import Stage, classify_error, transient
from .message import Identity
from .outcomes import Outcome, OutcomeKind
from .settings import OnOtherPartner, Settings

logger = logging.getLogger(__name__)


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
            credential_scopes=[ARM_SCOPE],
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
    ) -> Outcome:
        """Make the identity's link in the tenant point at `partner_id`; never raises for a service error."""
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
            await credential.get_token(ARM_SCOPE)
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

        client = self._arm_client(credential)
        try:
            return await self._link(client, partner_id, policy)
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
        current = await self._current(client)
        if current is None:
            try:
                created = await client.partner.create(partner_id)
            except ResourceExistsError:
                # Someone linked it between our GET and PUT: look again.
                current = await self._current(client)
                if current is None:
                    return transient("arm: PUT reported a conflict but no link exists", code="Conflict")
            else:
                if created.partner_id == partner_id:
                    return _result(OutcomeKind.LINKED, f"linked to partner ID {partner_id}", created)
                current = created  # a 200 that kept someone else's link

        if current.partner_id == partner_id:
            return _result(OutcomeKind.ALREADY_LINKED, f"already linked to partner ID {partner_id}", current)

        if policy is OnOtherPartner.KEEP:
            return _result(
                OutcomeKind.KEPT_OTHER_PARTNER,
                f"linked to another partner ID ({current.partner_id}); kept because ON_OTHER_PARTNER=keep",
                current,
                remediation="If this customer's work is yours, agree it with the customer, then relink "
                "with ON_OTHER_PARTNER=update.",
            )

        try:
            updated = await client.partner.update(partner_id)
        except ResourceNotFoundError:
            # The link was removed between our GET and PATCH: create it instead.
            created = await client.partner.create(partner_id)
            return _result(OutcomeKind.LINKED, f"linked to partner ID {partner_id}", created)
        return _result(
            OutcomeKind.UPDATED,
            f"changed the link from partner ID {current.partner_id} to {partner_id}",
            updated,
            previous_partner_id=current.partner_id,
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
