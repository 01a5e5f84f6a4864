"""The customer-offboarded v1 parser and builder: every rejection names the field and the reason
(never the value), the same text rule, size limit and credential screen as the onboarding message,
and agreement with the JSON Schema file; and the onboarding queue's kind property."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.links.message import (
    MessageRejected,
    OffboardingRequest,
    RejectionReason,
    parse_offboarding_document,
    parse_offboarding_message,
    unknown_kind,
)
from shared.links.message_builder import OFFBOARDING_PROPERTIES, offboarding_body, offboarding_document
from shared.spine.envelope import Source, is_offboarding, onboarding_queue_source
from shared.spine.screening import shaped_like_credential

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads(
    (ROOT / "shared" / "links" / "schemas" / "customer-offboarded.v1.schema.json").read_text()
)
TENANT = "53a2a22c-5cbd-47f7-b588-f5bb5f191ead"
APP = "81a6daa3-a704-4f3e-a1ca-45fa036d5a09"
PLANTED = "Zx98Q~PLANTED.secret-value_0123456789abcdefgh"


def message(**overrides: Any) -> dict[str, Any]:
    return {"schemaVersion": 1, "customerTenantId": TENANT, **overrides}


def parse(body: Any, *, max_bytes: int = 65536) -> OffboardingRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_offboarding_message(raw, max_bytes=max_bytes)


def rejection(body: Any, **kwargs: Any) -> MessageRejected:
    with pytest.raises(MessageRejected) as caught:
        parse(body, **kwargs)
    return caught.value


def test_the_tenant_alone_is_a_valid_message() -> None:
    request = parse(message(customerTenantId=TENANT.upper()))
    assert request == OffboardingRequest(TENANT, None, None, 1)
    assert jsonschema.Draft202012Validator(SCHEMA).is_valid(message())


def test_a_full_message() -> None:
    request = parse(message(clientId=APP.upper(), correlationId="CRM-ACC-0001"))
    assert (request.client_id, request.correlation_id) == (APP, "CRM-ACC-0001")


@pytest.mark.parametrize(
    ("body", "reason", "expected_detail"),
    [
        (b"{not json", RejectionReason.NOT_JSON, "message: not JSON"),
        (
            b'{"schemaVersion": 1, "customerTenantId": "x", "customerTenantId": "y"}',
            RejectionReason.NOT_JSON,
            "customerTenantId: appears more than once",
        ),
        ([1, 2], RejectionReason.INVALID_FIELD, "message: must be a JSON object, got array"),
        ({"customerTenantId": TENANT}, RejectionReason.INVALID_FIELD, "schemaVersion: required"),
        (
            message(schemaVersion=2),
            RejectionReason.UNSUPPORTED_SCHEMA_VERSION,
            "this version is not supported",
        ),
        ({"schemaVersion": 1}, RejectionReason.INVALID_FIELD, "customerTenantId: required"),
        (
            message(customerTenantId="contoso.com"),
            RejectionReason.INVALID_FIELD,
            "customerTenantId: must be a GUID",
        ),
        (
            message(customerTenantId="00000000-0000-0000-0000-000000000000"),
            RejectionReason.INVALID_FIELD,
            "customerTenantId: must not be the nil GUID",
        ),
        (message(clientId=None), RejectionReason.INVALID_FIELD, "clientId: must be a GUID, or left out"),
        (
            message(clientId=42),
            RejectionReason.INVALID_FIELD,
            "clientId: must be a string (a GUID), got number",
        ),
        (message(correlationId=""), RejectionReason.INVALID_FIELD, "correlationId: must not be empty"),
        (
            message(correlationId="x" * 129),
            RejectionReason.INVALID_FIELD,
            "correlationId: must be at most 128",
        ),
        (
            message(correlationId="a\nb"),
            RejectionReason.INVALID_FIELD,
            "correlationId: must not contain control",
        ),
        (
            message(identity={"type": "federated", "clientId": APP}),
            RejectionReason.INVALID_FIELD,
            "identity: unknown field (allowed: clientId, correlationId, customerTenantId, schemaVersion)",
        ),
        (message(partnerId="1234567"), RejectionReason.INVALID_FIELD, "partnerId: unknown field"),
        (
            message(**{"bad key!": 1}),
            RejectionReason.INVALID_FIELD,
            "<unprintable field name>: unknown field",
        ),
    ],
)
def test_every_rejection_names_the_field_and_reason(
    body: Any, reason: RejectionReason, expected_detail: str
) -> None:
    rejected = rejection(body)
    assert rejected.reason is reason
    assert any(expected_detail in detail for detail in rejected.details), rejected.details
    if isinstance(body, dict | list):
        assert not jsonschema.Draft202012Validator(SCHEMA).is_valid(body)


def test_a_trailing_newline_is_not_a_valid_value() -> None:
    # (Python's `$` in the schema's pattern would let it through; ECMA-262's does not.)
    for body in (message(customerTenantId=TENANT + "\n"), message(clientId=APP + "\n")):
        assert rejection(body).reason is RejectionReason.INVALID_FIELD


def test_encodings_sizes_and_filing_follow_the_onboarding_rules() -> None:
    assert parse(b"\xef\xbb\xbf" + json.dumps(message()).encode()).customer_tenant_id == TENANT
    utf16 = rejection(json.dumps(message()).encode("utf-16"))
    assert utf16.details == ("message: UTF-16/UTF-32 is not accepted; send UTF-8",)
    large = rejection(message(correlationId="x" * 100), max_bytes=64)
    assert large.reason is RejectionReason.TOO_LARGE and "more than the limit of 64" in large.details[0]
    assert rejection(message(clientId="nope")).customer_tenant_id == TENANT
    assert rejection(message(customerTenantId="nope")).customer_tenant_id is None
    many = rejection(message(clientId="x", **{f"extra{i}": i for i in range(30)}))
    assert len(many.details) == 21 and many.details[-1].endswith("more problems not shown)")


@pytest.mark.parametrize(
    "body",
    [
        message(clientSecret="hunter2"),
        message(correlationId=PLANTED),
        message(correlationId="eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl"),
        message(notes={"deep": [{"token": "abc"}]}),
        message(**{PLANTED: 1}),
    ],
)
def test_credentials_anywhere_are_rejected_without_echoing_them(body: dict[str, Any]) -> None:
    rejected = rejection(body)
    assert (rejected.reason, rejected.customer_tenant_id) == (RejectionReason.SECRET_IN_MESSAGE, TENANT)
    text = str(rejected) + " ".join(rejected.details)
    for secret in ("hunter2", PLANTED, "eyJhbGciOiJSUzI1NiJ9"):
        assert secret not in text


def test_the_document_parser_agrees_with_the_body_parser() -> None:
    for document in (message(), message(clientId="x", colour=1), [message()], None, message(token="t")):

        def outcome(parse_it: Any) -> Any:
            try:
                return parse_it()
            except MessageRejected as rejected:
                return (rejected.reason, rejected.details, rejected.customer_tenant_id)

        assert outcome(lambda d=document: parse_offboarding_document(d)) == outcome(
            lambda d=document: parse(d)
        )


_guids = st.uuids().map(str).filter(lambda g: g != "00000000-0000-0000-0000-000000000000")
_texts = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x85\u2028\u2029"),
    min_size=1,
    max_size=128,
).filter(lambda text: bool(text.strip()) and not shaped_like_credential(text))


@given(tenant=_guids, client_id=st.none() | _guids, correlation_id=st.none() | _texts)
def test_a_built_body_parses_to_the_request_it_was_built_from(
    tenant: str, client_id: str | None, correlation_id: str | None
) -> None:
    body = offboarding_body(tenant, client_id=client_id, correlation_id=correlation_id)
    request = OffboardingRequest(tenant, client_id, correlation_id)
    assert parse_offboarding_message(body, max_bytes=65536) == request
    assert offboarding_document(request) == json.loads(body)
    assert jsonschema.Draft202012Validator(SCHEMA).is_valid(json.loads(body))
    assert body.isascii()


@pytest.mark.parametrize(
    ("properties", "source"),
    [
        ({}, Source.ONBOARDING),
        ({"palKind": "customer-onboarded"}, Source.ONBOARDING),
        (OFFBOARDING_PROPERTIES, Source.OFFBOARDING),
        ({"palKind": b"customer-offboarded"}, Source.OFFBOARDING),
        ({"palKind": "Customer-Offboarded"}, Source.OFFBOARDING),  # refused by the offboarding handler
        ({"palKind": 7}, Source.OFFBOARDING),
    ],
)
def test_the_kind_property_routes_the_onboarding_queue(properties: dict[str, Any], source: Source) -> None:
    assert onboarding_queue_source(properties) is source
    offboarding = properties.get("palKind") in ("customer-offboarded", b"customer-offboarded")
    assert is_offboarding(properties) is offboarding


def test_an_unknown_kind_is_rejected_without_echo_and_filed_under_the_bodys_tenant() -> None:
    rejected = unknown_kind(json.dumps(message()).encode(), max_bytes=65536)
    assert (rejected.reason, rejected.customer_tenant_id) == (RejectionReason.UNKNOWN_KIND, TENANT)
    assert rejected.details == (
        "palKind: the application property must be customer-offboarded or customer-onboarded, or absent",
    )
    assert unknown_kind(b"\xff", max_bytes=65536).customer_tenant_id is None
