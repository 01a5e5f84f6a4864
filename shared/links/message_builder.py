"""The `customer-onboarded` and `customer-offboarded` messages (v1) written: the inverse of
`shared.links.message`'s parsers.

Every v1 body the product and its tools send (the nightly verify messages, `palctl enqueue`, the
sandbox's soak run) is built here, so there is one writer of the format as there is one reader.
The builder does not validate: the parser is the one authority, and every path parses what it
sends (`parse_onboarding_message(onboarding_body(request), ...) == request` for any request the
parser returned).
"""

from __future__ import annotations

import json
from typing import Any

from shared.links.message import SUPPORTED_SCHEMA_VERSIONS, OffboardingRequest, OnboardingRequest
from shared.spine.envelope import KIND_PROPERTY, OFFBOARDED
from shared.spine.identity import Identity

OFFBOARDING_PROPERTIES = {KIND_PROPERTY: OFFBOARDED}
"""The application properties a `customer-offboarded` message travels with on the onboarding queue."""


def onboarding_document(
    customer_tenant_id: str,
    identity: Identity,
    *,
    partner_id: str | None = None,
    customer_name: str | None = None,
    correlation_id: str | None = None,
    schema_version: int = SUPPORTED_SCHEMA_VERSIONS[-1],
) -> dict[str, Any]:
    """The v1 JSON object; an optional part that is None or empty is left out (a missing partner ID
    means the receiver's default)."""
    identity_document: dict[str, Any] = {"type": identity.type.value, "clientId": identity.client_id}
    if identity.key_vault_secret_name:
        identity_document["keyVaultSecretName"] = identity.key_vault_secret_name
    document: dict[str, Any] = {
        "schemaVersion": schema_version,
        "customerTenantId": customer_tenant_id,
        "identity": identity_document,
    }
    for field, value in (
        ("partnerId", partner_id),
        ("customerName", customer_name),
        ("correlationId", correlation_id),
    ):
        if value:
            document[field] = value
    return document


def onboarding_body(
    customer_tenant_id: str,
    identity: Identity,
    *,
    partner_id: str | None = None,
    customer_name: str | None = None,
    correlation_id: str | None = None,
) -> bytes:
    """The canonical v1 body: compact JSON, ASCII only (non-ASCII characters escaped)."""
    document = onboarding_document(
        customer_tenant_id,
        identity,
        partner_id=partner_id,
        customer_name=customer_name,
        correlation_id=correlation_id,
    )
    return _encode(document)


def request_body(request: OnboardingRequest) -> bytes:
    """The body a request was parsed from, canonically written; a defaulted partner ID is left out,
    so the receiver's default applies again."""
    return _encode(
        onboarding_document(
            request.customer_tenant_id,
            request.identity,
            partner_id=None if request.partner_id_defaulted else request.partner_id,
            customer_name=request.customer_name,
            correlation_id=request.correlation_id,
            schema_version=request.schema_version,
        )
    )


def offboarding_document(request: OffboardingRequest) -> dict[str, Any]:
    """The v1 `customer-offboarded` JSON object; an optional part that is None is left out."""
    document: dict[str, Any] = {
        "schemaVersion": request.schema_version,
        "customerTenantId": request.customer_tenant_id,
    }
    for field, value in (("clientId", request.client_id), ("correlationId", request.correlation_id)):
        if value:
            document[field] = value
    return document


def offboarding_body(
    customer_tenant_id: str, *, client_id: str | None = None, correlation_id: str | None = None
) -> bytes:
    """The canonical v1 `customer-offboarded` body (send it with OFFBOARDING_PROPERTIES)."""
    return _encode(offboarding_document(OffboardingRequest(customer_tenant_id, client_id, correlation_id)))


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
