"""The customer-onboarded v1 parser: every rejection reason, and agreement with the JSON Schema file."""

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
    OnboardingRequest,
    RejectionReason,
    find_credentials,
    parse_onboarding_document,
    parse_onboarding_message,
)
from shared.links.message_builder import onboarding_body, request_body
from shared.spine.identity import Identity, IdentityType
from shared.spine.screening import shaped_like_credential

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "shared" / "links" / "schemas" / "customer-onboarded.v1.schema.json").read_text())
TENANT = "53a2a22c-5cbd-47f7-b588-f5bb5f191ead"
APP = "81a6daa3-a704-4f3e-a1ca-45fa036d5a09"


def message(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schemaVersion": 1,
        "customerTenantId": TENANT,
        "identity": {"type": "federated", "clientId": APP},
    }
    body.update(overrides)
    return body


def parse(body: Any, *, max_bytes: int = 65536) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_onboarding_message(raw, default_partner_id="1234567", max_bytes=max_bytes)


def rejection(body: Any, **kwargs: Any) -> MessageRejected:
    with pytest.raises(MessageRejected) as caught:
        parse(body, **kwargs)
    return caught.value


def test_minimal_federated_message_uses_the_default_partner_id() -> None:
    request = parse(message(customerTenantId=TENANT.upper()))
    assert request.customer_tenant_id == TENANT
    assert request.identity.type is IdentityType.FEDERATED
    assert request.partner_id == "1234567"
    assert request.partner_id_defaulted


def test_full_secret_message() -> None:
    request = parse(
        message(
            identity={"type": "secret", "clientId": APP, "keyVaultSecretName": "fabrikam-pal-secret"},
            partnerId="7654321",
            customerName="Fabrikam",
            correlationId="CRM-1",
        )
    )
    assert request.identity.key_vault_secret_name == "fabrikam-pal-secret"
    assert (request.partner_id, request.partner_id_defaulted) == ("7654321", False)
    assert (request.customer_name, request.correlation_id) == ("Fabrikam", "CRM-1")


@pytest.mark.parametrize(
    ("body", "reason", "expected_detail"),
    [
        (b"{not json", RejectionReason.NOT_JSON, "message: not JSON"),
        (b"{\xff}", RejectionReason.NOT_JSON, "not valid UTF-8 (byte 1)"),
        (
            b'{"schemaVersion": 1, "schemaVersion": 1}',
            RejectionReason.NOT_JSON,
            "schemaVersion: appears more than once",
        ),
        (b"[" * 5000 + b"]" * 5000, RejectionReason.NOT_JSON, "nested too deeply"),
        ([1, 2], RejectionReason.INVALID_FIELD, "message: must be a JSON object, got array"),
        ({"customerTenantId": TENANT}, RejectionReason.INVALID_FIELD, "schemaVersion: required"),
        (
            message(schemaVersion="1"),
            RejectionReason.INVALID_FIELD,
            "schemaVersion: must be an integer, got string",
        ),
        (message(schemaVersion=True), RejectionReason.INVALID_FIELD, "schemaVersion: must be an integer"),
        (
            message(schemaVersion=2),
            RejectionReason.UNSUPPORTED_SCHEMA_VERSION,
            "this version is not supported",
        ),
        (
            message(customerTenantId="contoso.com"),
            RejectionReason.INVALID_FIELD,
            "customerTenantId: must be a GUID",
        ),
        (message(customerTenantId=42), RejectionReason.INVALID_FIELD, "customerTenantId: must be a string"),
        (
            message(customerTenantId="00000000-0000-0000-0000-000000000000"),
            RejectionReason.INVALID_FIELD,
            "customerTenantId: must not be the nil GUID",
        ),
        (message(identity=None), RejectionReason.INVALID_FIELD, "identity: required"),
        (message(identity="app"), RejectionReason.INVALID_FIELD, "identity: must be an object, got string"),
        (
            message(identity={"type": "user", "clientId": APP}),
            RejectionReason.INVALID_FIELD,
            "identity.type: a user account signs in interactively, so the service cannot link it: link it "
            "with `palctl link-user`",
        ),
        (
            message(identity={"type": "person", "clientId": APP}),
            RejectionReason.INVALID_FIELD,
            "identity.type: must be one of: federated, secret, certificate",
        ),
        (
            message(identity={"type": "federated", "clientId": "{" + APP + "}"}),
            RejectionReason.INVALID_FIELD,
            "identity.clientId: must be a GUID",
        ),
        (
            message(identity={"type": "secret", "clientId": APP}),
            RejectionReason.INVALID_FIELD,
            "identity.keyVaultSecretName: required for a secret identity",
        ),
        (
            message(identity={"type": "certificate", "clientId": APP, "keyVaultSecretName": "bad name!"}),
            RejectionReason.INVALID_FIELD,
            "identity.keyVaultSecretName: must be 1-127 letters, digits or dashes",
        ),
        (
            message(identity={"type": "federated", "clientId": APP, "keyVaultSecretName": "x"}),
            RejectionReason.INVALID_FIELD,
            "identity.keyVaultSecretName: not allowed for a federated identity",
        ),
        (
            message(partnerId=1234567),
            RejectionReason.INVALID_FIELD,
            "partnerId: must be a string of 6 to 10 digits",
        ),
        (message(partnerId="12345"), RejectionReason.INVALID_FIELD, "partnerId: must be 6 to 10 digits"),
        (message(partnerId="+1234567"), RejectionReason.INVALID_FIELD, "partnerId: must be 6 to 10 digits"),
        (
            message(partnerId="12345678901"),
            RejectionReason.INVALID_FIELD,
            "partnerId: must be 6 to 10 digits",
        ),
        (message(customerName=""), RejectionReason.INVALID_FIELD, "customerName: must not be empty"),
        (message(customerName="x" * 257), RejectionReason.INVALID_FIELD, "customerName: must be at most 256"),
        (
            message(correlationId="a\nb"),
            RejectionReason.INVALID_FIELD,
            "correlationId: must not contain control",
        ),
        (message(colour="blue"), RejectionReason.INVALID_FIELD, "colour: unknown field"),
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
    # The schema file agrees that these messages are invalid.
    if isinstance(body, dict):
        assert not jsonschema.Draft202012Validator(SCHEMA).is_valid(body)


def test_a_utf8_byte_order_mark_is_accepted() -> None:
    """.NET and Logic Apps senders often start UTF-8 with a byte-order mark."""
    request = parse(b"\xef\xbb\xbf" + json.dumps(message()).encode())
    assert request.customer_tenant_id == TENANT


def test_invalid_utf8_after_a_byte_order_mark_names_the_byte_of_the_body() -> None:
    assert rejection(b"\xef\xbb\xbf{\xff}").details == ("message: not valid UTF-8 (byte 4)",)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
def test_utf16_and_utf32_are_refused_with_or_without_a_byte_order_mark(encoding: str) -> None:
    rejected = rejection(json.dumps(message()).encode(encoding))
    assert rejected.reason is RejectionReason.NOT_JSON
    assert rejected.details == ("message: UTF-16/UTF-32 is not accepted; send UTF-8",)


def test_oversized_message_is_rejected_before_parsing() -> None:
    rejected = rejection(message(customerName="x" * 2000), max_bytes=1024)
    assert rejected.reason is RejectionReason.TOO_LARGE
    assert "more than the limit of 1024" in rejected.details[0]


def test_all_problems_are_reported_at_once_and_capped() -> None:
    rejected = rejection(message(customerTenantId="x", partnerId="y", **{f"extra{i}": i for i in range(30)}))
    assert len(rejected.details) == 21
    assert rejected.details[-1].endswith("more problems not shown)")


def test_rejection_keeps_a_valid_tenant_for_filing() -> None:
    assert rejection(message(partnerId="x")).customer_tenant_id == TENANT
    assert rejection(message(customerTenantId="nope")).customer_tenant_id is None


PLANTED = "Zx98Q~PLANTED.secret-value_0123456789abcdefgh"


@pytest.mark.parametrize(
    "body",
    [
        message(identity={"type": "secret", "clientId": APP, "clientSecret": "hunter2"}),
        message(identity={"type": "secret", "clientId": APP, "keyVaultSecretName": "n"}, password="hunter2"),
        message(customerName=PLANTED),
        message(correlationId="eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl"),
        message(customerName="-----BEGIN PRIVATE KEY-----MIIEv"),
        message(customerName="DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abc"),
        message(notes={"deep": [{"token": "abc"}]}),
        message(**{PLANTED: 1}),
        message(schemaVersion=99, apiKey="k"),
    ],
)
def test_credentials_anywhere_are_rejected_without_echoing_them(body: dict[str, Any]) -> None:
    rejected = rejection(body)
    assert rejected.reason is RejectionReason.SECRET_IN_MESSAGE
    text = str(rejected) + " ".join(rejected.details)
    for secret in ("hunter2", PLANTED, "eyJhbGciOiJSUzI1NiJ9", "BEGIN PRIVATE", "AccountKey=abc"):
        assert secret not in text


def test_key_vault_secret_name_and_guids_are_not_mistaken_for_credentials() -> None:
    body = message(
        identity={"type": "certificate", "clientId": APP, "keyVaultSecretName": "litware-pal-cert"}
    )
    assert find_credentials(body) == []
    assert jsonschema.Draft202012Validator(SCHEMA).is_valid(body)


def test_samples_agree_with_schema_and_parser() -> None:
    samples = sorted((ROOT / "sandbox" / "samples").glob("*.json"))
    assert len(samples) >= 5
    for sample in samples:
        body = json.loads(sample.read_text())
        schema_valid = jsonschema.Draft202012Validator(SCHEMA).is_valid(body)
        try:
            parse(body)
            parser_valid = True
        except MessageRejected as rejected:
            parser_valid = False
            assert rejected.reason in {RejectionReason.INVALID_FIELD, RejectionReason.SECRET_IN_MESSAGE}
        if parser_valid:
            assert schema_valid, sample.name
        else:
            # The schema cannot see credentials in allowed fields; everything else it must reject too.
            assert not schema_valid or find_credentials(body), sample.name


@pytest.mark.parametrize(
    "body",
    [
        message(customerTenantId=TENANT + "\n"),
        message(identity={"type": "federated", "clientId": APP + "\n"}),
        message(partnerId="1234567\n"),
        message(identity={"type": "secret", "clientId": APP, "keyVaultSecretName": "name\n"}),
    ],
)
def test_a_trailing_newline_is_not_a_valid_value(body: dict[str, Any]) -> None:
    assert rejection(body).reason is RejectionReason.INVALID_FIELD


def test_huge_numbers_and_unsupported_versions_are_rejected_without_echo() -> None:
    huge = b'{"schemaVersion": ' + b"9" * 5000 + b"}"
    assert rejection(huge).reason is RejectionReason.NOT_JSON
    unsupported = rejection(message(schemaVersion=123456789))
    assert "123456789" not in " ".join(unsupported.details)


# --- the builder: build -> parse gives the same request ------------------------------------------

_guids = st.uuids().map(str).filter(lambda g: g != "00000000-0000-0000-0000-000000000000")
_secret_names = st.from_regex(r"[0-9a-zA-Z-]{1,127}", fullmatch=True)
_partner_ids = st.from_regex(r"[0-9]{6,10}", fullmatch=True)


def _texts(max_size: int) -> st.SearchStrategy[str]:
    """Values the parser accepts: not blank, no control characters, not shaped like a credential."""
    alphabet = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x85\u2028\u2029")
    return st.text(alphabet, min_size=1, max_size=max_size).filter(
        lambda text: bool(text.strip()) and not shaped_like_credential(text)
    )


@st.composite
def _identities(draw: st.DrawFn) -> Identity:
    kind = draw(st.sampled_from([kind for kind in IdentityType if kind.unattended]))
    name = (
        None
        if kind is IdentityType.FEDERATED
        else draw(_secret_names.filter(lambda n: not shaped_like_credential(n)))
    )
    return Identity(kind, draw(_guids), name)


@st.composite
def _requests(draw: st.DrawFn) -> OnboardingRequest:
    defaulted = draw(st.booleans())
    return OnboardingRequest(
        customer_tenant_id=draw(_guids),
        identity=draw(_identities()),
        partner_id=draw(_partner_ids),
        partner_id_defaulted=defaulted,
        customer_name=draw(st.none() | _texts(256)),
        correlation_id=draw(st.none() | _texts(128)),
    )


@given(request=_requests(), other_default=_partner_ids)
def test_a_built_body_parses_to_the_request_it_was_built_from(
    request: OnboardingRequest, other_default: str
) -> None:
    body = request_body(request)
    default = request.partner_id if request.partner_id_defaulted else other_default
    assert parse_onboarding_message(body, default_partner_id=default, max_bytes=65536) == request
    assert jsonschema.Draft202012Validator(SCHEMA).is_valid(json.loads(body))
    assert body.isascii()


def test_the_builder_writes_the_canonical_compact_body() -> None:
    identity = Identity(IdentityType.SECRET, APP, "fabrikam-pal-secret")
    assert onboarding_body(TENANT, identity, partner_id="1234567", customer_name="Caf\u00e9") == (
        b'{"schemaVersion":1,"customerTenantId":"' + TENANT.encode() + b'","identity":{"type":"secret",'
        b'"clientId":"' + APP.encode() + b'","keyVaultSecretName":"fabrikam-pal-secret"},'
        b'"partnerId":"1234567","customerName":"Caf\\u00e9"}'
    )
    federated = onboarding_body(TENANT, Identity(IdentityType.FEDERATED, APP), partner_id=None)
    assert json.loads(federated) == message()


@pytest.mark.parametrize(
    "document",
    [
        message(),
        message(partnerId="7654321", customerName="Fabrikam", correlationId="crm-1"),
        message(identity={"type": "secret", "clientId": APP, "clientSecret": "hunter2"}),
        message(customerTenantId="nope", identity=[], partnerId=5),
        message(schemaVersion=2),
        [message()],
        None,
    ],
)
def test_the_document_parser_agrees_with_the_body_parser(document: Any) -> None:
    def outcome(parse_it: Any) -> Any:
        try:
            return parse_it()
        except MessageRejected as rejected:
            return (rejected.reason, rejected.details, rejected.customer_tenant_id)

    from_body = outcome(lambda: parse(document))
    from_document = outcome(lambda: parse_onboarding_document(document, default_partner_id="1234567"))
    assert from_document == from_body


def test_a_screened_document_is_not_scanned_for_credentials_again() -> None:
    document = message(customerName=PLANTED)
    with pytest.raises(MessageRejected) as caught:
        parse_onboarding_document(document, default_partner_id="1234567")
    assert caught.value.reason is RejectionReason.SECRET_IN_MESSAGE
    request = parse_onboarding_document(document, default_partner_id="1234567", screened=True)
    assert request.customer_name == PLANTED
