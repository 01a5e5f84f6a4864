"""The `customer-onboarded` and `customer-offboarded` messages (v1): strict parsing with a precise
reason for every rejection.

Rejection details name the field and what is wrong with it, never the value: a value could be a
credential someone pasted into the wrong field, and details end up in logs and the ledger.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.spine.envelope import KIND_PROPERTY, OFFBOARDED, ONBOARDED
from shared.spine.identifiers import GUID, NIL_GUID, is_guid, is_partner_id, printable_name
from shared.spine.identity import UNATTENDED_TYPES, Identity, IdentityType
from shared.spine.screening import named_like_credential, shaped_like_credential

SUPPORTED_SCHEMA_VERSIONS = (1,)
_MAX_DETAILS = 20
_KEY_VAULT_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class RejectionReason(StrEnum):
    NOT_JSON = "not-json"
    TOO_LARGE = "too-large"
    INVALID_FIELD = "invalid-field"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported-schema-version"
    SECRET_IN_MESSAGE = "secret-in-message"
    UNKNOWN_KIND = "unknown-kind"


class MessageRejected(ValueError):
    """The message can never be processed; `details` say what is wrong, field by field."""

    def __init__(
        self, reason: RejectionReason, details: list[str], *, customer_tenant_id: str | None = None
    ) -> None:
        if len(details) > _MAX_DETAILS:
            details = details[:_MAX_DETAILS] + [f"({len(details) - _MAX_DETAILS} more problems not shown)"]
        self.reason = reason
        self.details = tuple(details)
        self.customer_tenant_id = customer_tenant_id
        """The message's tenant when that field alone was valid, so the rejection is filed under it."""
        super().__init__(f"{reason.value}: " + "; ".join(details))


@dataclass(frozen=True)
class OnboardingRequest:
    customer_tenant_id: str
    identity: Identity
    partner_id: str
    partner_id_defaulted: bool
    customer_name: str | None = None
    correlation_id: str | None = None
    schema_version: int = 1


@dataclass(frozen=True)
class OffboardingRequest:
    """Remove the link of the identity recorded for the tenant (the one with `client_id`, when given)."""

    customer_tenant_id: str
    client_id: str | None = None
    correlation_id: str | None = None
    schema_version: int = 1


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key


def _field_name(key: str) -> str:
    return printable_name(key)


def _walk(value: Any, path: str) -> Iterator[tuple[str, str | None, Any]]:
    """Yield (path, key, value) for every node of a JSON document."""
    if isinstance(value, dict):
        for key, child in value.items():
            child_path = f"{path}.{_field_name(key)}" if path else _field_name(key)
            yield child_path, key, child
            yield from _walk(child, child_path)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            child_path = f"{path}[{index}]"
            yield child_path, None, child
            yield from _walk(child, child_path)


def find_credentials(document: Any) -> list[str]:
    """Paths of every field that holds, or is named like, a credential."""
    found = []
    for path, key, value in _walk(document, ""):
        named_like_secret = key is not None and named_like_credential(key) and value not in ("", None)
        shaped_like_secret = (key is not None and shaped_like_credential(key)) or (
            isinstance(value, str) and shaped_like_credential(value)
        )
        if named_like_secret or shaped_like_secret:
            found.append(path)
    return found


def _tenant_hint(document: Any) -> str | None:
    if isinstance(document, dict):
        value = document.get("customerTenantId")
        if is_guid(value):
            return value.lower()
    return None


def _guid(problems: list[str], document: dict[str, Any], key: str, path: str) -> str | None:
    value = document.get(key)
    if value is None:
        problems.append(f"{path}: required")
    elif not isinstance(value, str):
        problems.append(f"{path}: must be a string (a GUID), got {_json_type(value)}")
    elif not GUID.fullmatch(value):
        problems.append(f"{path}: must be a GUID like 00000000-0000-0000-0000-000000000000")
    elif value == NIL_GUID:
        problems.append(f"{path}: must not be the nil GUID")
    else:
        return value.lower()
    return None


def _optional_text(problems: list[str], document: dict[str, Any], key: str, max_length: int) -> str | None:
    if key not in document:
        return None
    value = document[key]
    if not isinstance(value, str):
        problems.append(f"{key}: must be a string, got {_json_type(value)}")
    elif not value.strip():
        problems.append(f"{key}: must not be empty")
    elif len(value) > max_length:
        problems.append(f"{key}: must be at most {max_length} characters, got {len(value)}")
    elif _CONTROL.search(value):
        problems.append(f"{key}: must not contain control characters or unpaired surrogates")
    else:
        return value
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _unknown_fields(problems: list[str], document: dict[str, Any], allowed: set[str], prefix: str) -> None:
    for key in document:
        if key not in allowed:
            problems.append(
                f"{prefix}{_field_name(key)}: unknown field (allowed: {', '.join(sorted(allowed))})"
            )


_TOP_FIELDS = {"schemaVersion", "customerTenantId", "identity", "partnerId", "customerName", "correlationId"}
_IDENTITY_FIELDS = {"type", "clientId", "keyVaultSecretName"}
_OFFBOARDING_FIELDS = {"schemaVersion", "customerTenantId", "clientId", "correlationId"}


def loads_strict(text: str | bytes) -> Any:
    """json.loads that refuses duplicate keys (ValueError); the one JSON reader for requests."""
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except _DuplicateKey as err:
        raise DuplicateKeyError(err.key) from None


class DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"{_field_name(key)}: appears more than once")


_WIDE_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def json_text(body: bytes, *, what: str = "message") -> str:
    """The one text rule of every path (queue and HTTP): UTF-8, with or without a byte-order mark
    (common from .NET and Logic Apps senders); UTF-16 and UTF-32 are refused, BOM or not.

    JSON text starts with an ASCII character, so a NUL among the first four bytes means UTF-16 or
    UTF-32 without a BOM (RFC 4627, section 3). Raises MessageRejected (`not-json`).
    """
    if body.startswith(_WIDE_BOMS) or b"\x00" in body[:4]:
        raise MessageRejected(
            RejectionReason.NOT_JSON, [f"{what}: UTF-16/UTF-32 is not accepted; send UTF-8"]
        )
    skipped = len(codecs.BOM_UTF8) if body.startswith(codecs.BOM_UTF8) else 0
    try:
        return body[skipped:].decode("utf-8")
    except UnicodeDecodeError as err:
        raise MessageRejected(
            RejectionReason.NOT_JSON, [f"{what}: not valid UTF-8 (byte {skipped + err.start})"]
        ) from None


def _decode(body: bytes, max_bytes: int) -> Any:
    if len(body) > max_bytes:
        raise MessageRejected(
            RejectionReason.TOO_LARGE, [f"message: {len(body)} bytes, more than the limit of {max_bytes}"]
        )
    text = json_text(body)
    try:
        return loads_strict(text)
    except DuplicateKeyError as err:
        raise MessageRejected(RejectionReason.NOT_JSON, [str(err)]) from None
    except json.JSONDecodeError as err:
        detail = f"message: not JSON ({err.msg} at line {err.lineno} column {err.colno})"
        raise MessageRejected(RejectionReason.NOT_JSON, [detail]) from None
    except RecursionError:
        raise MessageRejected(RejectionReason.NOT_JSON, ["message: nested too deeply"]) from None
    except ValueError:  # e.g. an integer longer than Python will convert
        raise MessageRejected(RejectionReason.NOT_JSON, ["message: a number is too large"]) from None


def parse_onboarding_message(body: bytes, *, default_partner_id: str, max_bytes: int) -> OnboardingRequest:
    """Parse and validate a message body, or raise MessageRejected with every problem found."""
    return parse_onboarding_document(_decode(body, max_bytes), default_partner_id=default_partner_id)


def parse_onboarding_document(
    document: Any, *, default_partner_id: str, screened: bool = False
) -> OnboardingRequest:
    """Validate a decoded message (a JSON value, normally an object), or raise MessageRejected with
    every problem found. `screened`: the caller has already refused every field of `document` that
    holds or is named like a credential (`find_credentials`), so it is not scanned again."""
    tenant_hint, version = _opened(document, screened)

    problems: list[str] = []
    _unknown_fields(problems, document, _TOP_FIELDS, "")
    tenant_id = _guid(problems, document, "customerTenantId", "customerTenantId")
    identity = _parse_identity(problems, document.get("identity"))

    defaulted = "partnerId" not in document
    partner_id = default_partner_id if defaulted else _partner_id(problems, document["partnerId"])

    customer_name = _optional_text(problems, document, "customerName", 256)
    correlation_id = _optional_text(problems, document, "correlationId", 128)

    if problems:
        raise MessageRejected(RejectionReason.INVALID_FIELD, problems, customer_tenant_id=tenant_hint)
    assert tenant_id is not None and identity is not None
    return OnboardingRequest(
        customer_tenant_id=tenant_id,
        identity=identity,
        partner_id=partner_id or default_partner_id,
        partner_id_defaulted=defaulted,
        customer_name=customer_name,
        correlation_id=correlation_id,
        schema_version=version,
    )


def _opened(document: Any, screened: bool) -> tuple[str | None, int]:
    """The checks every message kind starts with: no credential anywhere (unless the caller has
    screened it), a JSON object, a supported schemaVersion. Returns the tenant hint and the version."""
    tenant_hint = _tenant_hint(document)
    if not screened:
        _refuse_credentials(document, tenant_hint)
    if not isinstance(document, dict):
        raise MessageRejected(
            RejectionReason.INVALID_FIELD, [f"message: must be a JSON object, got {_json_type(document)}"]
        )
    return tenant_hint, _schema_version(document, tenant_hint)


def _refuse_credentials(document: Any, tenant_hint: str | None) -> None:
    credentials = find_credentials(document)
    if credentials:
        raise MessageRejected(
            RejectionReason.SECRET_IN_MESSAGE,
            [
                f"{path}: looks like a credential (secret, password, key or token); a message may carry "
                "only a Key Vault secret name, never the credential itself"
                for path in credentials
            ],
            customer_tenant_id=tenant_hint,
        )


def _schema_version(document: dict[str, Any], tenant_hint: str | None) -> int:
    version = document.get("schemaVersion")
    if version is None:
        raise MessageRejected(RejectionReason.INVALID_FIELD, ["schemaVersion: required"])
    if isinstance(version, bool) or not isinstance(version, int):
        raise MessageRejected(
            RejectionReason.INVALID_FIELD,
            [f"schemaVersion: must be an integer, got {_json_type(version)}"],
        )
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
        raise MessageRejected(
            RejectionReason.UNSUPPORTED_SCHEMA_VERSION,
            [f"schemaVersion: this version is not supported (supported: {supported})"],
            customer_tenant_id=tenant_hint,
        )
    return version


def _partner_id(problems: list[str], raw: Any) -> str | None:
    if not isinstance(raw, str):
        problems.append(f"partnerId: must be a string of 6 to 10 digits, got {_json_type(raw)}")
        return None
    if not is_partner_id(raw):
        problems.append("partnerId: must be 6 to 10 digits (the Associated Partner ID)")
        return None
    return raw


def _identity_type(problems: list[str], raw_type: Any) -> IdentityType | None:
    """An identity type the service can sign in as unattended; a user account is refused with the
    way it is linked instead."""
    allowed = ", ".join(t.value for t in IdentityType if t.unattended)
    if raw_type is None:
        problems.append(f"identity.type: required (one of: {allowed})")
    elif raw_type == IdentityType.USER.value:
        problems.append(
            "identity.type: a user account signs in interactively, so the service cannot link it: "
            f"link it with `palctl link-user` (one of: {allowed} here)"
        )
    elif not isinstance(raw_type, str) or raw_type not in UNATTENDED_TYPES:
        problems.append(f"identity.type: must be one of: {allowed}")
    else:
        return IdentityType(raw_type)
    return None


def _parse_identity(problems: list[str], raw: Any) -> Identity | None:
    if raw is None:
        problems.append("identity: required")
        return None
    if not isinstance(raw, dict):
        problems.append(f"identity: must be an object, got {_json_type(raw)}")
        return None
    _unknown_fields(problems, raw, _IDENTITY_FIELDS, "identity.")
    client_id = _guid(problems, raw, "clientId", "identity.clientId")

    identity_type = _identity_type(problems, raw.get("type"))
    secret_name = raw.get("keyVaultSecretName")
    if identity_type is IdentityType.FEDERATED and "keyVaultSecretName" in raw:
        problems.append(
            "identity.keyVaultSecretName: not allowed for a federated identity (it needs no secret)"
        )
        secret_name = None
    elif identity_type in (IdentityType.SECRET, IdentityType.CERTIFICATE):
        if secret_name is None:
            problems.append(f"identity.keyVaultSecretName: required for a {identity_type.value} identity")
        elif not isinstance(secret_name, str) or not _KEY_VAULT_NAME.fullmatch(secret_name):
            problems.append("identity.keyVaultSecretName: must be 1-127 letters, digits or dashes")
            secret_name = None

    if client_id is None or identity_type is None:
        return None
    return Identity(type=identity_type, client_id=client_id, key_vault_secret_name=secret_name)


def parse_offboarding_message(body: bytes, *, max_bytes: int) -> OffboardingRequest:
    """Parse and validate a `customer-offboarded` body, or raise MessageRejected with every problem
    found (the same text rule, size limit and credential screen as an onboarding message)."""
    return parse_offboarding_document(_decode(body, max_bytes))


def parse_offboarding_document(document: Any, *, screened: bool = False) -> OffboardingRequest:
    """Validate a decoded `customer-offboarded` message, or raise MessageRejected with every problem
    found. `screened`: as for `parse_onboarding_document`."""
    tenant_hint, version = _opened(document, screened)
    problems: list[str] = []
    _unknown_fields(problems, document, _OFFBOARDING_FIELDS, "")
    tenant_id = _guid(problems, document, "customerTenantId", "customerTenantId")
    client_id = None
    if document.get("clientId", "") is None:
        problems.append("clientId: must be a GUID, or left out")
    elif "clientId" in document:
        client_id = _guid(problems, document, "clientId", "clientId")
    correlation_id = _optional_text(problems, document, "correlationId", 128)
    if problems:
        raise MessageRejected(RejectionReason.INVALID_FIELD, problems, customer_tenant_id=tenant_hint)
    assert tenant_id is not None
    return OffboardingRequest(tenant_id, client_id, correlation_id, version)


def unknown_kind(body: bytes, *, max_bytes: int) -> MessageRejected:
    """The rejection of an onboarding-queue message whose kind is neither of ours (the value is not
    echoed), filed under the body's tenant when it names a valid one."""
    try:
        tenant_hint = _tenant_hint(_decode(body, max_bytes))
    except MessageRejected:
        tenant_hint = None
    return MessageRejected(
        RejectionReason.UNKNOWN_KIND,
        [f"{KIND_PROPERTY}: the application property must be {OFFBOARDED} or {ONBOARDED}, or absent"],
        customer_tenant_id=tenant_hint,
    )
