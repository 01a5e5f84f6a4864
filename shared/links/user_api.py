"""The operators' API for user accounts' links: what palctl did as a signed-in account, recorded
(`POST /api/links/{customerTenantId}/users/{objectId}`), and our partner IDs, which palctl checks a
request against before a person signs in (`GET /api/partner`)."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from shared.links.api import bad_tenant, read_object
from shared.links.ledger import Attempt
from shared.links.user_accounts import USER_RECORD_FIELDS, UserAction, UserRecord, parse_user_record
from shared.spine.identifiers import is_guid
from shared.spine.identity import IdentityType
from shared.spine.outages import answers_outages
from shared.spine.problem import ApiResponse, problem
from shared.spine.settings import Settings

if TYPE_CHECKING:
    from shared.links.ledger import Ledger
    from shared.links.service import LinkService

__all__ = ["UserLinksApi"]

logger = logging.getLogger(__name__)


class UserLinksApi:
    """Records user accounts' links; takes only the ledger and the settings."""

    def __init__(self, ledger: Ledger, settings: Settings) -> None:
        self._ledger = ledger
        self._settings = settings

    @classmethod
    def of(cls, service: LinkService) -> UserLinksApi:
        return cls(service.ledger, service.settings)

    def partner(self) -> ApiResponse:
        """Our partner IDs: the default, every one allowed, and what a link to another one of ours gets."""
        settings = self._settings
        return ApiResponse(
            200,
            {
                "partnerId": settings.partner_id,
                "allowedPartnerIds": sorted(settings.allowed_partner_ids),
                "onOtherPartner": settings.on_other_partner.value,
            },
        )

    @answers_outages
    async def record(self, customer_tenant_id: str, object_id: str, body: bytes) -> ApiResponse:
        """Record what palctl did as the user account `object_id` in the tenant."""
        if (bad := bad_tenant(customer_tenant_id)) is not None:
            return bad
        if not is_guid(object_id):
            detail = "objectId: must be a GUID (the user account's object ID)"
            return problem(400, "invalid-object-id", "Invalid object ID", detail)
        document = read_object(body, USER_RECORD_FIELDS)
        if isinstance(document, ApiResponse):
            return document
        record = parse_user_record(document, self._settings.allowed_partner_ids)
        if isinstance(record, list):
            return problem(400, "invalid-body", "Invalid request body", "; ".join(record), errors=record)
        tenant, user = customer_tenant_id.lower(), object_id.lower()
        refused = await self._refusal(tenant, user, record)
        if refused is not None:
            return refused
        outcome = record.as_outcome(user)
        await self._ledger.record(_attempt(tenant, user, record), outcome)
        logger.info(
            "user account %s of tenant %s: %s recorded (palctl %s)",
            user,
            tenant,
            outcome.kind.value,
            record.action.value,
        )
        answer = {
            "customerTenantId": tenant,
            "objectId": user,
            "userPrincipalName": record.user_principal_name,
            "outcome": outcome.kind.value,
            "reason": outcome.reason,
            "linkedPartnerId": record.linked_partner_id,
            "remediation": outcome.remediation,
        }
        return ApiResponse(200, {name: value for name, value in answer.items() if value is not None})

    async def _refusal(self, tenant: str, user: str, record: UserRecord) -> ApiResponse | None:
        """Why the record does not fit what the ledger holds for that identity, if it does not."""
        state = next((s for s in await self._ledger.link_states(tenant) if s.client_id == user), None)
        if state is not None and not state.is_user:
            detail = "objectId: an application with this ID is recorded for this tenant, not a user account"
            return problem(409, "not-a-user-account", "Not a user account", detail)
        if record.action is UserAction.VERIFY and state is not None and state.is_offboarded:
            detail = (
                "this account's link was removed (offboarded); a check would make it again: link it "
                "anew with `palctl link-user` if the customer is back"
            )
            return problem(409, "offboarded", "Offboarded", detail)
        return None


def _attempt(tenant: str, user: str, record: UserRecord) -> Attempt:
    return Attempt(
        message_id=f"interactive:{uuid.uuid4()}",
        source=record.action.source.value,
        customer_tenant_id=tenant,
        client_id=user,
        identity_type=IdentityType.USER.value,
        user_principal_name=record.user_principal_name,
        partner_id=record.partner_id,
        customer_name=record.customer_name,
        correlation_id=record.correlation_id,
    )
