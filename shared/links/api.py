"""The operators' HTTP API, without Azure Functions: relink or offboard one customer, read link
status, retire an identity's record.

Errors are RFC 9457 problem details. Requests are validated with the same parser as queue
messages, so the rules (GUIDs, partner IDs, no credentials) are the same on every path.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from shared.links.earning import roles_view
from shared.links.message import (
    DuplicateKeyError,
    MessageRejected,
    OffboardingRequest,
    OnboardingRequest,
    find_credentials,
    json_text,
    loads_strict,
    parse_offboarding_document,
    parse_onboarding_document,
)
from shared.links.retirement import DEFAULT_REASON, InvalidReason, retirement_reason
from shared.links.rows import LinkState
from shared.spine.identifiers import is_guid, printable_name
from shared.spine.identity import IdentityType
from shared.spine.outages import answers_outages
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.problem import ApiResponse, problem
from shared.spine.settings import Settings
from shared.spine.table_row import TableRow

if TYPE_CHECKING:
    from shared.links.ledger import Ledger
    from shared.links.offboarding import Offboarded
    from shared.links.service import LinkService

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
_RELINK_FIELDS = {"identity", "partnerId"}
_RETIRE_FIELDS = {"reason"}
_OFFBOARD_FIELDS = {"clientId", "correlationId"}
_LIST_PARAMETERS = {"outcome", "identityType", "top", "continuationToken"}


def _api_names(*fields: str) -> dict[str, str]:
    """`customer_tenant_id` -> `customerTenantId`, for each field."""
    return {field: re.sub(r"_([a-z])", lambda match: match.group(1).upper(), field) for field in fields}


# The rows' fields the API shows, in API names (camelCase of the field name, unless named here).
_LINK_FIELDS = _api_names(
    "customer_tenant_id",
    "client_id",
    "identity_type",
    "key_vault_secret_name",
    "user_principal_name",
    "customer_name",
    "correlation_id",
    "partner_id",
    "linked_partner_id",
    "previous_partner_id",
    "object_id",
    "link_version",
    "outcome",
    "reason",
    "code",
    "remediation",
    "last_checked_at",
    "last_linked_at",
    "verified_since",
    "verified_count",
    "consecutive_failures",
    "first_seen_at",
    "offboarded_at",
    "earning",
    "earning_reason",
    "earning_remediation",
    "earning_checked_at",
    "earning_since",
    "earning_change",
)
_EVENT_FIELDS = {"event_time": "time"} | _api_names(
    "source",
    "message_id",
    "attempt",
    "client_id",
    "outcome",
    "reason",
    "code",
    "remediation",
    "partner_id",
    "previous_partner_id",
    "run_id",
    "correlation_id",
    "actor",
)


def _project(row: TableRow, fields: Mapping[str, str]) -> dict[str, Any]:
    """The row's fields that have a value, under their API names."""
    values = ((name, getattr(row, field)) for field, name in fields.items())
    return {name: value for name, value in values if value is not None}


def _link(state: LinkState) -> dict[str, Any]:
    """A link's state as the API shows it, its Azure role grants as objects."""
    return _project(state, _LINK_FIELDS) | roles_view(state)


def read_object(body: bytes, allowed: set[str]) -> dict[str, Any] | ApiResponse:
    """An optional JSON object body ({} when empty), or the problem with it; same text rule as the
    queue (shared.links.message.json_text), credentials refused and never echoed."""
    document = _decode_object(body)
    if isinstance(document, ApiResponse):
        return document
    credentials = find_credentials(document)
    if credentials:
        details = [
            f"{path}: looks like a credential; send a Key Vault secret name instead" for path in credentials
        ]
        return problem(400, "secret-in-request", "Invalid request body", "; ".join(details), errors=details)
    unknown = sorted(set(document) - allowed)
    if unknown:
        return problem(
            400,
            "invalid-body",
            "Invalid request body",
            f"{_names(unknown)}: unknown field (allowed: {', '.join(sorted(allowed))})",
        )
    return document


def _decode_object(body: bytes) -> dict[str, Any] | ApiResponse:
    """The body as a JSON object ({} when empty), or why it is not one."""
    if len(body) > MAX_BODY_BYTES:
        return problem(
            413, "body-too-large", "Request body too large", f"the body may be at most {MAX_BODY_BYTES} bytes"
        )
    try:
        text = json_text(body, what="body")
        document = loads_strict(text) if text.strip() else {}
    except MessageRejected as rejection:
        return problem(400, "invalid-body", "Invalid request body", "; ".join(rejection.details))
    except DuplicateKeyError as err:
        return problem(400, "invalid-body", "Invalid request body", str(err))
    except (ValueError, RecursionError):
        return problem(400, "invalid-body", "Invalid request body", "body: not JSON, or nested too deeply")
    if not isinstance(document, dict):
        return problem(400, "invalid-body", "Invalid request body", "body: must be a JSON object")
    return document


def _relink_answer(tenant: str, request: OnboardingRequest, outcome: Outcome) -> ApiResponse:
    """200 with the outcome; 503 with Retry-After when it is worth trying again; 403 when the
    partner ID is not ours (nothing was called)."""
    result = {
        "customerTenantId": tenant,
        "clientId": request.identity.client_id,
        "outcome": outcome.kind.value,
        "reason": outcome.reason,
        "code": outcome.code,
        "remediation": outcome.remediation,
        "partnerId": outcome.partner_id or request.partner_id,
        "previousPartnerId": outcome.previous_partner_id,
        "objectId": outcome.object_id,
        "linkVersion": outcome.link_version,
    }
    return _outcome_answer(result, outcome)


# An offboarding that could not choose an identity: nothing was called, nothing recorded.
_CHOICE_PROBLEMS = {
    "unknown-tenant": (404, "Unknown customer tenant"),
    "unknown-identity": (404, "Unknown identity"),
    "identity-required": (400, "Identity required"),
}


def _offboard_answer(tenant: str, done: Offboarded) -> ApiResponse:
    """404 or 400 when no identity could be chosen; otherwise as a relink's answer."""
    outcome = done.outcome
    choice = _CHOICE_PROBLEMS.get(outcome.code or "") if outcome.kind is OutcomeKind.REJECTED else None
    if choice is not None:
        return problem(choice[0], outcome.code or "", choice[1], outcome.reason)
    result = {
        "customerTenantId": tenant,
        "clientId": done.client_id,
        "outcome": outcome.kind.value,
        "reason": outcome.reason,
        "code": outcome.code,
        "remediation": outcome.remediation,
        "previousPartnerId": outcome.previous_partner_id,
        "objectId": outcome.object_id,
    }
    return _outcome_answer(result, outcome)


def _outcome_answer(result: dict[str, Any], outcome: Outcome) -> ApiResponse:
    """200 with the outcome; 503 with Retry-After when it is worth trying again; 403 when refused
    (nothing was called)."""
    result = {key: value for key, value in result.items() if value is not None}
    if outcome.kind is OutcomeKind.TRANSIENT:
        retry_after = max(1, round(outcome.retry_after or 30))
        response = problem(
            503, "transient", "Try again later", outcome.reason, retryAfterSeconds=retry_after, **result
        )
        response.headers["Retry-After"] = str(retry_after)
        return response
    if outcome.kind is OutcomeKind.REJECTED:
        return problem(403, outcome.code or "rejected", "Not allowed", outcome.reason, **result)
    return ApiResponse(200, result)


def bad_tenant(customer_tenant_id: str) -> ApiResponse | None:
    if is_guid(customer_tenant_id):
        return None
    return problem(
        400,
        "invalid-tenant-id",
        "Invalid customer tenant ID",
        "customerTenantId: must be a GUID (the directory ID)",
    )


class Relinker(Protocol):
    """What the API needs to link a customer now: an operator's relink."""

    async def relink(self, request: OnboardingRequest) -> Outcome: ...


class Offboarder(Protocol):
    """What the API needs to offboard a customer now (shared.links.offboarding)."""

    async def offboard(self, request: OffboardingRequest) -> Offboarded: ...


class LinksApi:
    """The operators' API: relink, offboard, read status, retire. Takes only what it uses: the
    ledger, a relinker (the link service), an offboarder and the settings."""

    def __init__(
        self, ledger: Ledger, relinker: Relinker, settings: Settings, offboarder: Offboarder | None = None
    ) -> None:
        self._ledger = ledger
        self._relinker = relinker
        self._settings = settings
        self._offboarder = offboarder

    @classmethod
    def of(cls, service: LinkService) -> LinksApi:
        from shared.links.offboarding import Offboarding

        return cls(service.ledger, service, service.settings, Offboarding(service))

    @answers_outages
    async def relink(self, customer_tenant_id: str, body: bytes) -> ApiResponse:
        if (bad := bad_tenant(customer_tenant_id)) is not None:
            return bad
        tenant = customer_tenant_id.lower()
        document = read_object(body, _RELINK_FIELDS)
        if isinstance(document, ApiResponse):
            return document

        message: dict[str, Any] = {"schemaVersion": 1, "customerTenantId": tenant, **document}
        if "identity" not in document:
            recorded = await self._recorded_identity(tenant, document)
            if isinstance(recorded, ApiResponse):
                return recorded
            message |= recorded
        try:
            # The body's fields were screened for credentials by read_object; the rest of `message`
            # is the path's tenant (a GUID) and what the ledger recorded from a parsed request.
            request = parse_onboarding_document(
                message, default_partner_id=self._settings.partner_id, screened=True
            )
        except MessageRejected as rejection:
            return problem(
                400,
                "invalid-body",
                "Invalid request body",
                "; ".join(rejection.details),
                errors=list(rejection.details),
            )

        return _relink_answer(tenant, request, await self._relinker.relink(request))

    async def _recorded_identity(self, tenant: str, document: dict[str, Any]) -> dict[str, Any] | ApiResponse:
        """For a body-less relink: the one identity recorded for the tenant (and the partner ID it
        asked for last, if that is still one of ours), or the problem that there is none or several."""
        every = await self._ledger.link_states(tenant)
        if not every:
            return problem(
                404,
                "unknown-tenant",
                "Unknown customer tenant",
                "no link is recorded for this tenant; give the identity in the body to link it",
            )
        states = [state for state in every if not state.is_offboarded]
        if not states:
            return problem(
                409,
                "offboarded",
                "Customer offboarded",
                "this customer was offboarded: its link is not made again without an identity; to "
                "onboard it again send a customer-onboarded message, or relink with the identity in the body",
            )
        if len(states) > 1:
            clients = ", ".join(sorted(state.client_id or "" for state in states))
            return problem(
                400,
                "identity-required",
                "Identity required",
                f"several identities are recorded for this tenant ({clients}); give identity in the body",
            )
        state = states[0]
        identity = {"type": state.identity_type, "clientId": state.client_id}
        if state.key_vault_secret_name:
            identity["keyVaultSecretName"] = state.key_vault_secret_name
        recorded: dict[str, Any] = {"identity": identity}
        # A state written before ALLOWED_PARTNER_IDS may hold a foreign ID: PARTNER_ID then applies.
        if "partnerId" not in document and state.partner_id in self._settings.allowed_partner_ids:
            recorded["partnerId"] = state.partner_id
        return recorded

    @answers_outages
    async def list_links(self, parameters: Mapping[str, str]) -> ApiResponse:
        unknown = sorted(set(parameters) - _LIST_PARAMETERS)
        if unknown:
            return problem(
                400,
                "invalid-query",
                "Invalid query",
                f"{_names(unknown)}: unknown parameter (allowed: {', '.join(sorted(_LIST_PARAMETERS))})",
            )
        outcome = parameters.get("outcome")
        if outcome is not None and outcome not in {kind.value for kind in OutcomeKind}:
            allowed = ", ".join(kind.value for kind in OutcomeKind)
            return problem(400, "invalid-query", "Invalid query", f"outcome: must be one of {allowed}")
        identity_type = parameters.get("identityType")
        if identity_type is not None and identity_type not in {kind.value for kind in IdentityType}:
            allowed = ", ".join(kind.value for kind in IdentityType)
            return problem(400, "invalid-query", "Invalid query", f"identityType: must be one of {allowed}")
        top_text = parameters.get("top", "100")
        if not re.fullmatch(r"[0-9]{1,4}", top_text) or not 1 <= int(top_text) <= 1000:
            return problem(
                400, "invalid-query", "Invalid query", "top: must be a whole number from 1 to 1000"
            )
        continuation = None
        if "continuationToken" in parameters:
            continuation = _decode_token(parameters["continuationToken"])
            if continuation is None:
                return problem(
                    400, "invalid-query", "Invalid query", "continuationToken: not a token this API returned"
                )
        items, next_token = await self._ledger.link_states_page(
            outcome=outcome, identity_type=identity_type, top=int(top_text), continuation=continuation
        )
        return ApiResponse(
            200,
            {
                "items": [_link(item) for item in items],
                "continuationToken": _encode_token(next_token) if next_token else None,
            },
        )

    @answers_outages
    async def get_link(self, customer_tenant_id: str) -> ApiResponse:
        if (bad := bad_tenant(customer_tenant_id)) is not None:
            return bad
        tenant = customer_tenant_id.lower()
        states = await self._ledger.link_states(tenant)
        history = await self._ledger.history(tenant, limit=20)
        if not states and not history:
            return problem(
                404, "unknown-tenant", "Unknown customer tenant", "nothing is recorded for this tenant"
            )
        return ApiResponse(
            200,
            {
                "customerTenantId": tenant,
                "links": [_link(state) for state in states],
                "history": [_project(event, _EVENT_FIELDS) for event in history],
            },
        )

    @answers_outages
    async def offboard(self, customer_tenant_id: str, body: bytes) -> ApiResponse:
        """Offboard the customer now: remove the recorded identity's link (the one with the body's
        `clientId`, when several are recorded) and stop checking it; the history is kept."""
        if (bad := bad_tenant(customer_tenant_id)) is not None:
            return bad
        tenant = customer_tenant_id.lower()
        document = read_object(body, _OFFBOARD_FIELDS)
        if isinstance(document, ApiResponse):
            return document
        try:
            # Screened for credentials by read_object; the rest is the path's tenant (a GUID).
            request = parse_offboarding_document(
                {"schemaVersion": 1, "customerTenantId": tenant, **document}, screened=True
            )
        except MessageRejected as rejection:
            details = list(rejection.details)
            return problem(400, "invalid-body", "Invalid request body", "; ".join(details), errors=details)
        if self._offboarder is None:
            raise RuntimeError("this API was built without an offboarder")
        return _offboard_answer(tenant, await self._offboarder.offboard(request))

    @answers_outages
    async def retire(self, customer_tenant_id: str, client_id: str, body: bytes) -> ApiResponse:
        """Retire an identity's record (a phantom from a wrong client ID, or one no longer used)."""
        if (bad := bad_tenant(customer_tenant_id)) is not None:
            return bad
        if not is_guid(client_id):
            return problem(
                400,
                "invalid-client-id",
                "Invalid client ID",
                "clientId: must be a GUID (the application (client) ID)",
            )
        document = read_object(body, _RETIRE_FIELDS)
        if isinstance(document, ApiResponse):
            return document
        try:
            reason = retirement_reason(document.get("reason", DEFAULT_REASON))
        except InvalidReason as err:
            return problem(400, "invalid-body", "Invalid request body", str(err))
        tenant, client = customer_tenant_id.lower(), client_id.lower()
        if not await self._ledger.retire(tenant, client, reason):
            return problem(
                404,
                "unknown-identity",
                "Unknown identity",
                "no identity with this client ID is recorded for this tenant",
            )
        logger.info("identity %s of tenant %s retired by an operator; its history is kept", client, tenant)
        return ApiResponse(
            200, {"customerTenantId": tenant, "clientId": client, "outcome": OutcomeKind.RETIRED.value}
        )


def _names(keys: list[str]) -> str:
    """Names from the request, echoed only when plainly harmless."""
    return ", ".join(printable_name(k, "<unprintable>") for k in keys)


def _encode_token(token: Mapping[str, Any]) -> str:
    return (
        base64.urlsafe_b64encode(json.dumps(dict(token), separators=(",", ":")).encode()).decode().rstrip("=")
    )


def _decode_token(text: str) -> dict[str, Any] | None:
    if len(text) > 2048:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(decoded, dict) or not all(isinstance(v, str | None) for v in decoded.values()):
        return None
    allowed = {"PartitionKey", "RowKey", "NextPartitionKey", "NextRowKey", "TableName", "NextTableName"}
    return decoded if set(decoded) <= allowed else None
