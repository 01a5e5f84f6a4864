"""Onboarding messages as palctl sends them: validated with the product's own parser, written by the
product's builder (`shared.links.message_builder`), with a MessageId derived from what they ask for
and the day; one from flags or many from a CSV file, every row validated before anything is sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from palctl.errors import UsageError

if TYPE_CHECKING:
    from datetime import date

CSV_COLUMNS = (
    "customerTenantId",
    "clientId",
    "identityType",
    "keyVaultSecretName",
    "partnerId",
    "customerName",
    "correlationId",
)
REQUIRED_COLUMNS = ("customerTenantId", "clientId")


@dataclass(frozen=True)
class Onboarding:
    message_id: str
    body: bytes
    tenant: str
    client_id: str


def onboarding_message_id(
    tenant: str, client_id: str, partner_id: str | None, day: date | None = None
) -> str:
    """Derived from what the message asks for and the day: enqueueing the same customer twice in a
    day sends one message (duplicate detection), while a later day's enqueue is a new attempt (say,
    after the customer granted consent) rather than a no-op."""
    from datetime import UTC, datetime

    day = day or datetime.now(UTC).date()
    return f"onboard:{tenant.lower()}:{client_id.lower()}:{partner_id or 'default'}:{day.isoformat()}"


def build_onboarding(fields: dict[str, str | None], *, where: str) -> Onboarding:
    """Validate one onboarding with the product's parser, then write its canonical v1 body; raises
    UsageError naming field and reason (never the value)."""
    from shared.links.message import MessageRejected, parse_onboarding_document
    from shared.links.message_builder import request_body

    identity: dict[str, Any] = {
        "type": fields.get("identityType") or "federated",
        "clientId": fields.get("clientId"),
    }
    if fields.get("keyVaultSecretName"):
        identity["keyVaultSecretName"] = fields["keyVaultSecretName"]
    message: dict[str, Any] = {
        "schemaVersion": 1,
        "customerTenantId": fields.get("customerTenantId"),
        "identity": identity,
    }
    for name in ("partnerId", "customerName", "correlationId"):
        if fields.get(name):
            message[name] = fields[name]
    try:
        request = parse_onboarding_document(message, default_partner_id="000000")
    except MessageRejected as rejection:
        raise UsageError(f"{where}: " + "; ".join(rejection.details)) from None
    partner = None if request.partner_id_defaulted else request.partner_id
    tenant, client_id = request.customer_tenant_id, request.identity.client_id
    return Onboarding(
        onboarding_message_id(tenant, client_id, partner), request_body(request), tenant, client_id
    )


@dataclass(frozen=True)
class CsvRow:
    """One row of a CSV file: its line number, what it asked for (as written), and either the
    message it makes or why it makes none."""

    line: int
    tenant: str | None
    client_id: str | None
    onboarding: Onboarding | None = None
    error: str | None = None
    duplicate_of: int | None = None
    """The line of an earlier row that makes the same message (sent once)."""


def _row(line: int, row: dict[str | None, Any], seen: dict[str, int]) -> CsvRow:
    from operator import attrgetter

    from palctl.csvfile import validated_row

    tenant, client_id, onboarding, error, first = validated_row(
        line,
        row,
        build_onboarding,
        attrgetter("message_id"),
        seen,
    )
    return CsvRow(line, tenant, client_id, onboarding, error, first)


def read_csv(stream: TextIO) -> list[CsvRow]:
    """Every row of a CSV file, validated: a bad header is a UsageError, a bad row is a row with an
    error, and a row that repeats an earlier one's message says which."""
    from palctl.csvfile import read_rows

    seen: dict[str, int] = {}
    return read_rows(stream, CSV_COLUMNS, REQUIRED_COLUMNS, lambda line, row: _row(line, row, seen))
