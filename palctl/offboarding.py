"""Offboardings as palctl asks for them: validated with the product's own parser
(`shared.links.message.parse_offboarding_document`), one from flags or many from a CSV file, every row
validated before anything is called."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO

from palctl.errors import UsageError

CSV_COLUMNS = ("customerTenantId", "clientId", "correlationId")
REQUIRED_COLUMNS = ("customerTenantId",)


@dataclass(frozen=True)
class Offboard:
    """One validated offboarding: the tenant, and the identity and CRM record when given."""

    tenant: str
    client_id: str | None = None
    correlation_id: str | None = None

    @property
    def key(self) -> tuple[str, str | None]:
        """What makes two rows the same offboarding."""
        return self.tenant, self.client_id

    def body(self) -> dict[str, str]:
        """The body of `POST /api/links/{tenant}/offboard`."""
        fields = {"clientId": self.client_id, "correlationId": self.correlation_id}
        return {name: value for name, value in fields.items() if value is not None}


def build_offboard(fields: dict[str, str | None], *, where: str) -> Offboard:
    """Validate one offboarding with the product's parser; raises UsageError naming field and reason
    (never the value)."""
    from shared.links.message import MessageRejected, parse_offboarding_document

    document: dict[str, Any] = {"schemaVersion": 1, "customerTenantId": fields.get("customerTenantId")}
    for name in ("clientId", "correlationId"):
        if fields.get(name):
            document[name] = fields[name]
    try:
        request = parse_offboarding_document(document)
    except MessageRejected as rejection:
        raise UsageError(f"{where}: " + "; ".join(rejection.details)) from None
    return Offboard(request.customer_tenant_id, request.client_id, request.correlation_id)


@dataclass(frozen=True)
class OffboardRow:
    """One row of a CSV file (line 0: the flags): what it asked for as written, and either the
    offboarding it makes or why it makes none."""

    line: int
    tenant: str | None
    client_id: str | None
    offboard: Offboard | None = None
    error: str | None = None
    duplicate_of: int | None = None
    """The line of an earlier row that asks for the same offboarding (done once)."""


def _row(line: int, row: dict[str | None, Any], seen: dict[tuple[str, str | None], int]) -> OffboardRow:
    """One CSV row, validated, and whether it repeats an earlier one (`seen`: first line per key)."""
    from operator import attrgetter

    from palctl.csvfile import validated_row

    tenant, client_id, offboard, error, first = validated_row(
        line, row, build_offboard, attrgetter("key"), seen
    )
    return OffboardRow(line, tenant, client_id, offboard, error, first)


def read_csv(stream: TextIO) -> list[OffboardRow]:
    """Every row of a CSV file, validated: a bad header is a UsageError, a bad row is a row with an
    error, and a row that repeats an earlier one says which."""
    from palctl.csvfile import read_rows

    seen: dict[tuple[str, str | None], int] = {}
    return read_rows(stream, CSV_COLUMNS, REQUIRED_COLUMNS, lambda line, row: _row(line, row, seen))
