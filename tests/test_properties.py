"""Hostile and malformed input, property-based (hypothesis): every input gets a clear rejection or a
correct outcome, no exception escapes, and nothing unvalidated reaches the ledger.

- The message parser, pure and fast, over many examples: random JSON, wrong types for every field,
  huge strings, deep nesting, invalid UTF-8, GUID and partner ID look-alikes, extra fields and
  duplicate keys. A rejection names the field and never echoes a value.
- `LinkService.handle` against the real sandbox and Azurite: it never raises, and every entity it
  writes holds only validated values under the expected property names.
- The HTTP API through `LinksApi` (real service) and through the local Functions host over HTTP:
  hostile tenant paths, OData injection in query parameters, forged continuation tokens and random
  relink bodies get a documented status and, for 4xx, RFC 9457 problem details.

Hypothesis cannot use function-scoped fixtures in `@given`, so each test that needs the sandbox
runs an inner `@given` function and drives the async product code on an event loop of its own.
Every run is derandomized and keeps no example database, so the suite is deterministic.

Product bugs these properties found are pinned at the end as regression tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pytest
import yarl
from azure.data.tables.aio import TableClient
from hypothesis import HealthCheck, currently_in_test_context, event, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from sandbox.scenario import FaultRule
from shared.links.api import ApiResponse, LinksApi
from shared.links.ledger import UNKNOWN_TENANT
from shared.links.message import (
    MessageRejected,
    OnboardingRequest,
    RejectionReason,
    find_credentials,
    parse_onboarding_message,
)
from shared.links.service import LinkService, Source, reset_service
from shared.spine.identity import IdentityType
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.settings import Settings
from tenants import (
    FABRIKAM,
    FABRIKAM_APP,
    FEDERATED_APP,
    LITWARE,
    LITWARE_APP,
    NORTHWIND,
    PARTNER_ID,
    TAILSPIN,
    WOODGROVE,
    onboarding_message,
)

T = TypeVar("T")

# --- hypothesis profiles: deterministic, no deadline, no example database --------------------------

PURE = hsettings(
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=300,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
REAL = hsettings(PURE, max_examples=25)
"""Examples that go through the sandbox, Azurite or the host: fewer, each costs milliseconds."""

# --- the documented rules, written out independently of the product's own regular expressions ---

MAX_BYTES = 65536
NIL = "00000000-0000-0000-0000-000000000000"
LOWER_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PARTNER = re.compile(r"[0-9]{6,10}")
KEY_VAULT_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")
CONTROL = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]"
)  # as the parser: C0, C1, separators, surrogates
TOP_FIELDS = ("schemaVersion", "customerTenantId", "identity", "partnerId", "customerName", "correlationId")
IDENTITY_FIELDS = ("type", "clientId", "keyVaultSecretName")
_NAME = r"(?:[A-Za-z0-9_.-]{1,64}|<unprintable field name>|\[\d+\])"
DETAIL = re.compile(rf"{_NAME}(?:\.{_NAME}|\[\d+\])*: \S.*|\(\d+ more problems not shown\)")
"""A rejection detail starts with the field it is about (a path into the document) or `message`."""
FIXED_TEXT = "\n".join(
    [
        "must be a GUID like " + NIL,
        ", ".join(kind.value for kind in OutcomeKind),
        ", ".join(reason.value for reason in RejectionReason),  # a rejection's text starts with its reason
        ", ".join(sorted(TOP_FIELDS)),
        "continuationToken, outcome, top",
    ]
)
"""Vocabulary of the product's own (in details) that an input value may equal without being echoed."""
MARKER = "PLANTEDmarker0x5eed"
"""Planted in malformed bodies: it must never come back in a detail, a response or the ledger."""

# Ledger columns (shared/links/ledger.py): anything else in an entity did not come from the ledger's code.
LEDGER_PROPERTIES = {
    "PartitionKey", "RowKey",
    # history event
    "EventTime", "Source", "MessageId", "DeliveryCount", "Attempt", "NextAttemptAt", "ClientId",
    "IdentityType", "CustomerName", "CorrelationId", "RequestedPartnerId", "RunId", "Outcome", "Reason",
    "Code", "Remediation", "Details", "PartnerId", "PreviousPartnerId", "ObjectId", "LinkVersion",
    "RetryAfterSeconds", "DurationMs",
    # receipt
    "EventRowKey", "RecordedAt", "OriginalMessageId", "NextAttempt",
    # link state
    "CustomerTenantId", "KeyVaultSecretName", "LinkedPartnerId", "LastCheckedAt", "LastLinkedAt",
    "ConsecutiveFailures", "LastMessageId", "LastRunId", "FirstSeenAt",
}  # fmt: skip
ROW_KEY = re.compile(r"link~[0-9a-f-]{36}|event~[0-9]{20}~[0-9a-f]{8}|receipt~[0-9a-f]{40}")
API_STATUSES = {200, 400, 403, 404, 413, 503}
PROBLEM_BASE = "https://pal-autopilot.example/problems/"


def parse(body: bytes) -> OnboardingRequest:
    return parse_onboarding_message(body, default_partner_id=PARTNER_ID, max_bytes=MAX_BYTES)


def _is_guid(value: Any) -> bool:
    return isinstance(value, str) and LOWER_GUID.fullmatch(value.lower()) is not None and value.isascii()


def _walk(document: Any) -> Iterator[tuple[str | None, Any]]:
    """(key, value) for every node; key is None for list items and the root."""
    if isinstance(document, dict):
        for key, value in document.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(document, list):
        for value in document:
            yield None, value
            yield from _walk(value)


def echo_candidates(document: Any) -> list[str]:
    """Input values that must never be echoed: strings over 12 characters that are not a field name
    (names are echoed when harmless), not a GUID (a valid tenant is filed under its ID) and not
    text the product writes of its own."""
    keys = [key for key, _ in _walk(document) if key is not None]
    values = [document] if isinstance(document, str) else [v for _, v in _walk(document)]
    return [
        value
        for value in values
        if isinstance(value, str)
        and len(value) > 12
        and not _is_guid(value)
        and value not in FIXED_TEXT
        and not any(value in key for key in keys)
    ]


def check_rejection(rejection: MessageRejected, document: Any) -> None:
    assert isinstance(rejection.reason, RejectionReason)
    assert rejection.details, "a rejection must say what is wrong"
    for detail in rejection.details:
        assert isinstance(detail, str) and not CONTROL.search(detail), detail
        assert DETAIL.fullmatch(detail), f"detail does not start with a field: {detail!r}"
    hint = rejection.customer_tenant_id
    assert hint is None or (LOWER_GUID.fullmatch(hint) and hint != NIL), hint
    text = str(rejection) + "\n".join(rejection.details)
    assert MARKER not in text
    for value in echo_candidates(document):
        assert value not in text, f"an input value is echoed: {value!r}"


def check_request(request: OnboardingRequest, document: Any) -> None:
    """Every field of an accepted request satisfies the documented rules and matches the input."""
    assert LOWER_GUID.fullmatch(request.customer_tenant_id) and request.customer_tenant_id != NIL
    identity = request.identity
    assert LOWER_GUID.fullmatch(identity.client_id) and identity.client_id != NIL
    assert isinstance(identity.type, IdentityType)
    if identity.type is IdentityType.FEDERATED:
        assert identity.key_vault_secret_name is None
    else:
        assert KEY_VAULT_NAME.fullmatch(identity.key_vault_secret_name or "")
    assert request.partner_id.isascii() and PARTNER.fullmatch(request.partner_id)
    if request.partner_id_defaulted:
        assert request.partner_id == PARTNER_ID
    for text, longest in ((request.customer_name, 256), (request.correlation_id, 128)):
        assert text is None or (1 <= len(text) <= longest and text.strip() and not CONTROL.search(text))
    assert request.schema_version == 1
    if document is None:  # from raw bytes: checked above by the rules alone
        return
    assert isinstance(document, dict)
    assert set(document) <= set(TOP_FIELDS) and set(document["identity"]) <= set(IDENTITY_FIELDS)
    assert find_credentials(document) == []
    assert request.customer_tenant_id == document["customerTenantId"].lower()
    assert identity.client_id == document["identity"]["clientId"].lower()
    assert identity.type.value == document["identity"]["type"]
    assert request.partner_id == document.get("partnerId", PARTNER_ID)
    assert request.customer_name == document.get("customerName")
    assert request.correlation_id == document.get("correlationId")


def _event(text: str) -> None:
    """Counted in --hypothesis-show-statistics; the checks are used outside @given too."""
    if currently_in_test_context():
        event(text)


def check_parse(body: bytes, document: Any = None) -> OnboardingRequest | MessageRejected:
    """Parse: a valid request or MessageRejected; anything else escapes and fails the example."""
    try:
        request = parse(body)
    except MessageRejected as rejection:
        _event(f"rejected: {rejection.reason.value}")
        check_rejection(rejection, document)
        return rejection
    _event("accepted")
    check_request(request, document)
    return request


# --- strategies -----------------------------------------------------------------------------------


texts = st.text(max_size=40)
keys = st.one_of(st.sampled_from(TOP_FIELDS + IDENTITY_FIELDS), texts.filter(lambda k: len(k) <= 20))
INJECTION = [
    "linked' or 1 eq 1",
    "linked' or Outcome ne 'x",
    "' or ''='",
    "PartitionKey ne ''",
    "$filter=PartitionKey eq 'x'",
    "RowKey ge 'link~' or true",
    "'; DROP TABLE PalLinks;--",
    "../../../../etc/passwd",
    "..%2F..%2Fadmin",
    "%2e%2e%2f%2e%2e%2f",
    "..\\..\\windows\\win.ini",
    "\x00",
    "%00",
    "<script>alert(1)</script>",
    "${jndi:ldap://attacker/x}",
    "{{7*7}}",
    "\u202egnp.exe",
    "\ufeff1234567",
    "\ud800",
    "a\udfffb",
    "١٢٣٤٥٦٧",
    "１２３４５６７",
    "𝟙𝟚𝟛𝟜𝟝𝟞𝟟",
    "¹²³⁴⁵⁶⁷",
    "Ⅻ",
    NORTHWIND + "\n",
    PARTNER_ID + "\n",
    "colour\n",
    " ",
    "",
    "\u00a0",
    "\u2028",
    MARKER,
]
hostile_strings = st.sampled_from(INJECTION)
huge_strings = st.builds(lambda unit, n: unit * n, st.text(min_size=1, max_size=4), st.integers(50, 20000))

_DIGIT_SETS = {
    "arabic": "٠١٢٣٤٥٦٧٨٩",
    "fullwidth": "０１２３４５６７８９",
    "devanagari": "०१२३४५६७८९",
    "superscript": "⁰¹²³⁴⁵⁶⁷⁸⁹",
    "math": "𝟘𝟙𝟚𝟛𝟜𝟝𝟞𝟟𝟠𝟡",
}
_GUID_MUTATIONS = [
    "as-is",
    "upper",
    "drop-char",
    "add-char",
    "no-dashes",
    "braces",
    "parens",
    "urn",
    "non-hex",
    "unicode-digit",
    "space-before",
    "space-after",
    "tab-after",
    "cr-after",
    "dash-moved",
    "double-dash",
    "nil",
    "nil-braces",
    "fullwidth-all",
    "trailing-nul",
    "trailing-newline",
]


def _mutate_guid(guid: str, how: str, at: int) -> str:
    i = at % len(guid)
    hex_positions = [p for p, c in enumerate(guid) if c != "-"]
    h = hex_positions[at % len(hex_positions)]
    return {
        "as-is": guid,
        "upper": guid.upper(),
        "drop-char": guid[:i] + guid[i + 1 :],
        "add-char": guid[:i] + "a" + guid[i:],
        "no-dashes": guid.replace("-", ""),
        "braces": "{" + guid + "}",
        "parens": "(" + guid + ")",
        "urn": "urn:uuid:" + guid,
        "non-hex": guid[:h] + "g" + guid[h + 1 :],
        "unicode-digit": guid[:h] + "١" + guid[h + 1 :],
        "space-before": " " + guid,
        "space-after": guid + " ",
        "tab-after": guid + "\t",
        "cr-after": guid + "\r",
        "dash-moved": guid.replace("-", "", 1)[:i] + "-" + guid.replace("-", "", 1)[i:],
        "double-dash": guid.replace("-", "--", 1),
        "nil": NIL,
        "nil-braces": "{" + NIL + "}",
        "fullwidth-all": guid.translate(str.maketrans("0123456789", _DIGIT_SETS["fullwidth"])),
        "trailing-nul": guid + "\x00",
        "trailing-newline": guid + "\n",
    }[how]


guids = st.uuids().map(str).filter(lambda g: g != NIL)
any_case_guids = st.tuples(guids, st.booleans()).map(lambda t: t[0].upper() if t[1] else t[0])
guid_lookalikes = st.builds(_mutate_guid, guids, st.sampled_from(_GUID_MUTATIONS), st.integers(0, 40))

_PARTNER_MUTATIONS = [
    "as-is",
    "letter",
    "plus",
    "minus",
    "space-before",
    "space-after",
    "inner-space",
    "tab-after",
    "decimal",
    "exponent",
    "hex",
    "underscore",
    "comma",
    "newline-after",
    *_DIGIT_SETS,
]


def _mutate_partner(digits: str, how: str) -> str:
    if how in _DIGIT_SETS:
        return digits.translate(str.maketrans("0123456789", _DIGIT_SETS[how]))
    middle = len(digits) // 2
    return {
        "as-is": digits,
        "letter": digits[:middle] + "O" + digits[middle:],
        "plus": "+" + digits,
        "minus": "-" + digits,
        "space-before": " " + digits,
        "space-after": digits + " ",
        "inner-space": digits[:middle] + " " + digits[middle:],
        "tab-after": digits + "\t",
        "decimal": digits + ".0",
        "exponent": digits + "e0",
        "hex": "0x" + digits,
        "underscore": digits[:middle] + "_" + digits[middle:],
        "comma": digits[:middle] + "," + digits[middle:],
        "newline-after": digits + "\n",
    }[how]


partner_ids = st.from_regex(PARTNER, fullmatch=True)
partner_lookalikes = st.builds(
    _mutate_partner, st.text("0123456789", max_size=12), st.sampled_from(_PARTNER_MUTATIONS)
)
key_vault_names = st.from_regex(KEY_VAULT_NAME, fullmatch=True)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), texts, hostile_strings, guid_lookalikes
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)
field_values = st.one_of(
    json_values,
    guid_lookalikes,
    partner_lookalikes,
    hostile_strings,
    huge_strings,
    st.sampled_from(["federated", "secret", "certificate", "Federated", "SECRET", "federated ", "user"]),
    st.sampled_from([0, 1, 2, -1, 1.0, True, "1", [1], {"v": 1}]),
)

identities = st.one_of(
    st.fixed_dictionaries({"type": st.just("federated"), "clientId": any_case_guids}),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["secret", "certificate"]),
            "clientId": any_case_guids,
            "keyVaultSecretName": key_vault_names,
        }
    ),
)
valid_messages = st.fixed_dictionaries(
    {"schemaVersion": st.just(1), "customerTenantId": any_case_guids, "identity": identities},
    optional={
        "partnerId": partner_ids,
        "customerName": st.text(min_size=1, max_size=256),
        "correlationId": st.text(min_size=1, max_size=128),
    },
)


@st.composite
def mutated_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A valid message with one to three fields replaced, removed or added."""
    document: dict[str, Any] = draw(valid_messages)
    for _ in range(draw(st.integers(1, 3))):
        identity = document.get("identity")
        inner = isinstance(identity, dict) and draw(st.booleans())
        target: dict[str, Any] = identity if inner else document  # type: ignore[assignment]
        fields = IDENTITY_FIELDS if inner else TOP_FIELDS
        action = draw(st.sampled_from(["replace", "replace", "delete", "extra"]))
        if action == "replace":
            target[draw(st.sampled_from(fields))] = draw(field_values)
        elif action == "delete":
            target.pop(draw(st.sampled_from(fields)), None)
        else:
            target[draw(keys)] = draw(json_values)
    return document


_INVALID_UTF8 = [
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",
    b"\xa0\xa1",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
    b"\xf8\x88\x80\x80",
]


def _splice(document: dict[str, Any], field: str, raw: bytes) -> bytes:
    """The document's JSON with one top-level field's value replaced by raw bytes."""
    placeholder = "@@RAW-" + MARKER + "@@"
    return (
        json.dumps({**document, field: placeholder}).encode().replace(json.dumps(placeholder).encode(), raw)
    )


@st.composite
def raw_bodies(draw: st.DrawFn, *, max_depth: int = 70000) -> bytes:
    """Bytes no JSON serializer would produce: malformed, deep, duplicated, not UTF-8."""
    kind = draw(
        st.sampled_from(
            [
                "binary",
                "open-brackets",
                "nested-arrays",
                "nested-objects",
                "deep-field",
                "invalid-utf8",
                "truncated",
                "bom",
                "utf16",
                "duplicate-top",
                "duplicate-identity",
                "long-number",
                "padding",
                "broken-with-marker",
            ]
        )
    )
    base = draw(valid_messages)
    text = json.dumps({**base, "customerName": MARKER}).encode()
    depth = draw(
        st.one_of(
            st.integers(1, max_depth),
            st.sampled_from([d for d in (900, 1000, 1500, 5000, max_depth) if d <= max_depth]),
        )
    )
    if kind == "binary":
        return draw(st.binary(max_size=300))
    if kind == "open-brackets":
        return draw(st.sampled_from([b"[", b"{", b'{"a":[', b"[{" + b'"x":'])) * depth
    if kind == "nested-arrays":
        return b"[" * depth + b"]" * depth
    if kind == "nested-objects":
        return b'{"a":' * depth + json.dumps(MARKER).encode() + b"}" * depth
    if kind == "deep-field":
        field = draw(st.sampled_from(TOP_FIELDS))
        return _splice(base, field, b"[" * depth + json.dumps(MARKER).encode() + b"]" * depth)
    if kind == "invalid-utf8":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.sampled_from(_INVALID_UTF8)) + text[at:]
    if kind == "truncated":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if kind == "bom":
        return b"\xef\xbb\xbf" + text
    if kind == "utf16":
        return text.decode().encode(draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32"])))
    if kind == "duplicate-top":
        field = draw(st.sampled_from(list(base)))
        return text[:-1] + b", " + json.dumps(field).encode() + b": " + json.dumps(MARKER).encode() + b"}"
    if kind == "duplicate-identity":
        identity = json.dumps(base["identity"]).encode()
        doubled = identity[:-1] + b', "clientId": ' + json.dumps(MARKER).encode() + b"}"
        return json.dumps({**base, "identity": "@@ID@@"}).encode().replace(b'"@@ID@@"', doubled)
    if kind == "long-number":
        # Python refuses to convert integers over 4300 digits (test_regression_huge_integer_*).
        digits = b"1" * draw(st.one_of(st.integers(1, 6000), st.sampled_from([4300, 4301, 6000])))
        return draw(st.sampled_from([digits, _splice(base, "schemaVersion", digits)]))
    if kind == "padding":
        return b" " * draw(st.integers(0, 70000)) + text
    # broken-with-marker: valid JSON text with a random byte range cut out or doubled
    at, length = draw(st.integers(0, len(text))), draw(st.integers(1, 20))
    cut, doubled = text[:at] + text[at + length :], text[:at] + text[at - length : at] + text[at:]
    return draw(st.sampled_from([cut, doubled]))


def _body(document: Any) -> bytes:
    return json.dumps(document).encode()


# --- 1. the parser, pure ----------------------------------------------------------------------------


@PURE
@given(document=json_values)
def test_random_json_is_rejected_with_a_field_or_accepted_by_the_rules(document: Any) -> None:
    check_parse(_body(document), document)


@hsettings(PURE, max_examples=500)
@given(document=mutated_messages())
def test_wrong_types_lookalikes_and_extra_fields_in_every_field(document: dict[str, Any]) -> None:
    result = check_parse(_body(document), document)
    if isinstance(result, MessageRejected) and result.reason is RejectionReason.INVALID_FIELD:
        names = ("message", "<unprintable field name>", *TOP_FIELDS, *document)
        for detail in result.details:
            assert detail.startswith("(") or any(
                detail.startswith((name + ":", name + ".", name + "[")) for name in names
            ), detail


@PURE
@given(document=valid_messages)
def test_well_formed_messages_get_the_right_answer(document: dict[str, Any]) -> None:
    """A message that follows every rule is accepted exactly; one whose free text breaks a rule
    (blank, control characters, shaped like a credential) is rejected for that field."""
    result = check_parse(_body(document), document)
    if isinstance(result, MessageRejected):
        free_text = {k: v for k, v in document.items() if k in ("customerName", "correlationId")}
        assert result.reason in (RejectionReason.SECRET_IN_MESSAGE, RejectionReason.INVALID_FIELD)
        if result.reason is RejectionReason.INVALID_FIELD:
            assert {d.split(":")[0] for d in result.details} <= set(free_text)
            assert any(not v.strip() or CONTROL.search(v) for v in free_text.values())
        else:
            assert find_credentials(document)


@hsettings(PURE, max_examples=400)
@given(body=raw_bodies())
def test_malformed_bytes_are_rejected_without_echo(body: bytes) -> None:
    result = check_parse(body)
    if len(body) > MAX_BYTES:
        assert isinstance(result, MessageRejected) and result.reason is RejectionReason.TOO_LARGE


@PURE
@given(document=valid_messages, field=st.sampled_from(TOP_FIELDS), value=json_values)
def test_duplicate_keys_are_always_refused(document: dict[str, Any], field: str, value: Any) -> None:
    body = _body(document)[:-1] + b", " + json.dumps(field).encode() + b": " + _body(value) + b"}"
    if field not in document:
        body = body[:-1] + b", " + json.dumps(field).encode() + b": 1}"
    result = check_parse(body)
    assert isinstance(result, MessageRejected)
    assert result.reason is RejectionReason.NOT_JSON
    assert result.details == (f"{field}: appears more than once",)


@PURE
@given(
    field=st.sampled_from(["customerTenantId", "identity.clientId"]),
    value=st.one_of(guid_lookalikes, hostile_strings, huge_strings, texts),
)
def test_guid_lookalikes_are_refused_or_normalised(field: str, value: str) -> None:
    document = onboarding_message(NORTHWIND)
    if field == "customerTenantId":
        document["customerTenantId"] = value
    else:
        document["identity"]["clientId"] = value
    result = check_parse(_body(document), document)
    valid = value.isascii() and LOWER_GUID.fullmatch(value.lower()) is not None and value != NIL
    assert isinstance(result, OnboardingRequest) == valid, (value, result)


@PURE
@given(value=st.one_of(partner_lookalikes, partner_ids, hostile_strings, texts, st.integers()))
def test_partner_ids_are_six_to_ten_ascii_digits(value: Any) -> None:
    document = onboarding_message(NORTHWIND, partnerId=value)
    result = check_parse(_body(document), document)
    valid = isinstance(value, str) and value.isascii() and PARTNER.fullmatch(value) is not None
    assert isinstance(result, OnboardingRequest) == valid, (value, result)


# --- event loop of the test's own, for sync @given bodies that drive async product code ------------


class Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __call__(self, awaitable: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def close(self) -> None:
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


@contextlib.contextmanager
def running_service(env: dict[str, str]) -> Iterator[tuple[Loop, LinkService]]:
    run = Loop()

    async def build() -> LinkService:
        return LinkService.from_settings(Settings.from_env(env))

    service = run(build())
    try:
        yield run, service
    finally:
        run(service.close())
        run.close()


async def _entities(env: dict[str, str], query: str | None = None, **parameters: str) -> list[dict[str, Any]]:
    async with TableClient.from_connection_string(env["LedgerStorage"], env["LEDGER_TABLE"]) as table:
        found = table.list_entities() if query is None else table.query_entities(query, parameters=parameters)
        return [dict(entity) async for entity in found]


def check_entity(entity: dict[str, Any]) -> None:
    """A ledger entity holds only the ledger's columns, and every input-derived one is validated."""
    assert set(entity) <= LEDGER_PROPERTIES, set(entity) - LEDGER_PROPERTIES
    partition = entity["PartitionKey"]
    assert partition == UNKNOWN_TENANT or (LOWER_GUID.fullmatch(partition) and partition != NIL), partition
    assert ROW_KEY.fullmatch(entity["RowKey"]), entity["RowKey"]
    for column in ("CustomerTenantId", "ClientId", "ObjectId"):
        if column in entity:
            assert LOWER_GUID.fullmatch(entity[column]), (column, entity[column])
    if "CustomerTenantId" in entity:
        assert entity["CustomerTenantId"] == partition
    for column in ("RequestedPartnerId", "PartnerId", "LinkedPartnerId", "PreviousPartnerId"):
        if column in entity:
            assert entity[column].isascii() and PARTNER.fullmatch(entity[column]), (column, entity[column])
    if "IdentityType" in entity:
        assert entity["IdentityType"] in {t.value for t in IdentityType}
    if "KeyVaultSecretName" in entity:
        assert KEY_VAULT_NAME.fullmatch(entity["KeyVaultSecretName"])
    for column, longest in (("CustomerName", 256), ("CorrelationId", 128)):
        if column in entity:
            text = entity[column]
            assert 1 <= len(text) <= longest and text.strip() and not CONTROL.search(text), (column, text)
    if "Outcome" in entity:
        assert entity["Outcome"] in {kind.value for kind in OutcomeKind}
    if "Source" in entity:
        assert entity["Source"] in {source.value for source in Source}


# --- 2. the service, with the real sandbox and Azurite ------------------------------------------------

KNOWN_IDENTITIES = [
    (NORTHWIND, {"type": "federated", "clientId": FEDERATED_APP}),
    (TAILSPIN, {"type": "federated", "clientId": FEDERATED_APP.upper()}),
    (WOODGROVE, {"type": "federated", "clientId": FEDERATED_APP}),
    (FABRIKAM, {"type": "secret", "clientId": FABRIKAM_APP, "keyVaultSecretName": "fabrikam-pal-secret"}),
    (LITWARE, {"type": "certificate", "clientId": LITWARE_APP, "keyVaultSecretName": "litware-pal-cert"}),
    (LITWARE, {"type": "secret", "clientId": LITWARE_APP, "keyVaultSecretName": "no-such-secret"}),
]
known_partner_ids = st.sampled_from([PARTNER_ID, "7654321", "9999999"])
known_tenant_messages = st.builds(
    lambda tenant_and_identity, extra: {
        "schemaVersion": 1,
        "customerTenantId": tenant_and_identity[0],
        "identity": tenant_and_identity[1],
        **extra,
    },
    st.sampled_from(KNOWN_IDENTITIES),
    st.fixed_dictionaries(
        {},
        optional={
            "partnerId": st.one_of(known_partner_ids, known_partner_ids, partner_lookalikes),
            "customerName": st.one_of(texts, texts, hostile_strings),
            "correlationId": st.one_of(texts, texts, hostile_strings, huge_strings),
        },
    ),
)
"""Messages that reach the sandbox (most of them): every outcome the demo tenants can give."""
service_inputs = st.one_of(
    raw_bodies(max_depth=5000).map(lambda body: (body, None)),
    mutated_messages().map(lambda document: (_body(document), document)),
    json_values.map(lambda document: (_body(document), document)),
    valid_messages.map(lambda document: (_body(document), document)),
    *[known_tenant_messages.map(lambda document: (_body(document), document))] * 3,
)
application_properties = st.dictionaries(
    st.sampled_from(["palAttempt", "palPauses", "palRunId", "palOriginalMessageId", "password", "x"]),
    st.one_of(json_scalars, st.integers(-(2**70), 2**70), hostile_strings),
    max_size=3,
)


def test_handle_never_raises_and_only_validated_values_reach_the_ledger(env: dict[str, str]) -> None:
    numbers = itertools.count()
    seen: dict[str, int] = {}
    with running_service(env) as (run, service):

        @hsettings(REAL, max_examples=40)
        @given(given_input=service_inputs, properties=st.one_of(st.just({}), application_properties))
        @example(
            given_input=(_body(onboarding_message(NORTHWIND)), onboarding_message(NORTHWIND)),
            properties={"palAttempt": "-1", "palPauses": "NaN", "password": MARKER},
        )
        @example(
            given_input=(_body(onboarding_message(WOODGROVE)), onboarding_message(WOODGROVE)), properties={}
        )
        @example(
            given_input=(b'{"schemaVersion": 1, "customerTenantId": "' + MARKER.encode(), None),
            properties={"palAttempt": 10**30},
        )
        def check(given_input: tuple[bytes, Any], properties: dict[str, Any]) -> None:
            body, document = given_input
            message_id = f"prop-{next(numbers)}"
            outcome = run(service.handle(body, message_id=message_id, properties=properties))
            assert isinstance(outcome, Outcome) and isinstance(outcome.kind, OutcomeKind)
            event(f"outcome: {outcome.kind.value}")
            seen[outcome.kind.value] = seen.get(outcome.kind.value, 0) + 1
            written = run(_entities(env, "MessageId eq @m or LastMessageId eq @m", m=message_id))
            assert written, "every message leaves a history event and a receipt"
            for entity in written:
                check_entity(entity)
            if outcome.kind is OutcomeKind.REJECTED:
                assert not any(e["RowKey"].startswith("link~") for e in written), "a rejection changed a link"
                stored = json.dumps(written, default=str, ensure_ascii=False)
                for value in [MARKER, *echo_candidates(document)]:
                    assert value not in stored, f"an unvalidated value reached the ledger: {value!r}"
            else:
                request = parse(body)
                state = [e for e in written if e["RowKey"].startswith("link~")]
                assert [e["PartitionKey"] for e in written] == [request.customer_tenant_id] * len(written)
                if request.customer_name is not None and state:
                    assert state[0]["CustomerName"] == request.customer_name

        check()
        everything = run(_entities(env))
    for entity in everything:
        check_entity(entity)
    assert seen.get("rejected") and len(seen) > 2, seen  # the inputs reached more than the parser


# --- 3. the HTTP API through LinksApi, with a real service ---------------------------------------------

TRAVERSAL = [
    "..",
    "../",
    "../..",
    "..%2F..%2Fadmin",
    "%2e%2e",
    "%2e%2e%2f%2e%2e%2flinks",
    "..\\..\\",
    "....//....//",
    "/etc/passwd",
    NORTHWIND + "/../" + TAILSPIN,
    NORTHWIND + "%2F..%2F" + TAILSPIN,
    NORTHWIND + "%00",
    NORTHWIND + "' or PartitionKey ne '",
    "*",
    "%",
    "?",
    "#",
    "{" + NORTHWIND + "}",
    NORTHWIND.upper(),
]
tenants = st.one_of(
    st.sampled_from([NORTHWIND, TAILSPIN, WOODGROVE, FABRIKAM, LITWARE]),
    st.sampled_from(TRAVERSAL),
    guids,
    guid_lookalikes,
    hostile_strings,
    texts,
    huge_strings,
)
valid_tenants = st.one_of(st.sampled_from([t for t, _ in KNOWN_IDENTITIES] + [NORTHWIND.upper()]), guids)
FEDERATED = _body({"identity": {"type": "federated", "clientId": FEDERATED_APP}})
known_relink_cases = st.sampled_from(KNOWN_IDENTITIES).flatmap(
    lambda known: st.tuples(
        st.just(known[0]),
        st.fixed_dictionaries(
            {"identity": st.just(known[1])},
            optional={"partnerId": st.one_of(known_partner_ids, known_partner_ids, partner_lookalikes)},
        ).map(_body),
    )
)
relink_documents = st.fixed_dictionaries(
    {},
    optional={
        "identity": st.one_of(identities, json_values),
        "partnerId": st.one_of(partner_ids, partner_lookalikes, json_scalars),
        "schemaVersion": st.just(1),
        "customerTenantId": guids,
        "clientSecret": st.sampled_from(["Ab1" + "8Q~" + "x" * 34, MARKER]),
    },
)
relink_bodies = st.one_of(
    st.sampled_from([b"", b"  ", b"null", b"{}", b"[]", b'""', b"0"]),
    relink_documents.map(_body),
    json_values.map(_body),
    raw_bodies(max_depth=16000),
    st.integers(16 * 1024 - 2, 20000).map(lambda n: b"{" + b" " * n + b"}"),
)
relink_cases = st.one_of(
    st.tuples(tenants, relink_bodies),
    st.tuples(valid_tenants, relink_bodies),
    st.tuples(valid_tenants, st.fixed_dictionaries({"identity": identities}).map(_body)),
    known_relink_cases,
    known_relink_cases,
)


def _token(document: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


continuation_tokens = st.one_of(
    st.dictionaries(
        st.sampled_from(["PartitionKey", "RowKey", "NextPartitionKey", "NextRowKey", "TableName", "Other"]),
        st.one_of(st.none(), texts, hostile_strings, st.integers()),
        max_size=4,
    ).map(_token),
    json_values.map(_token),
    st.binary(max_size=64).map(lambda raw: base64.urlsafe_b64encode(raw).decode()),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/", max_size=3000),
    hostile_strings,
)
query_values = st.one_of(
    st.sampled_from([kind.value for kind in OutcomeKind]),
    hostile_strings,
    texts,
    st.text("0123456789", min_size=1, max_size=6),
    st.sampled_from(["0", "1", "1000", "1001", "-1", "+5", " 5", "5 ", "1e3", "0x10", "١٢", "１０", "²"]),
    huge_strings,
)
forged_tokens = st.dictionaries(
    st.sampled_from(
        ["PartitionKey", "RowKey", "NextPartitionKey", "NextRowKey", "TableName", "NextTableName"]
    ),
    st.one_of(st.none(), texts, hostile_strings, guids, st.just("link~" + FEDERATED_APP)),
    max_size=4,
).map(_token)
"""Tokens the API cannot tell from its own: they reach the Tables SDK and Azurite."""
query_parameters = st.one_of(
    st.fixed_dictionaries({"top": st.sampled_from(["²", "¹⁰", "١٢", "１０", "𝟙𝟘", "Ⅻ", "٠"])}),
    st.fixed_dictionaries(
        {"continuationToken": forged_tokens},
        optional={
            "top": st.integers(1, 1000).map(str),
            "outcome": st.sampled_from([kind.value for kind in OutcomeKind]),
        },
    ),
    st.fixed_dictionaries(
        {},
        optional={"outcome": query_values, "top": query_values, "continuationToken": continuation_tokens},
    ),
    st.dictionaries(
        st.one_of(
            st.sampled_from(["outcome", "top", "continuationToken", "$filter", "filter", "$top", "Outcome"]),
            texts,
        ),
        st.one_of(query_values, continuation_tokens),
        max_size=4,
    ),
)


def check_response(response: ApiResponse, *inputs: Any) -> dict[str, Any] | None:
    """A documented status; a 4xx is problem details that echo no input value."""
    assert response.status in API_STATUSES, response
    body = json.loads(response.encoded()) if response.body is not None else None
    if response.status >= 400:
        assert response.content_type == "application/problem+json"
        assert isinstance(body, dict) and {"type", "title", "status", "detail"} <= set(body), body
        assert body["status"] == response.status and body["type"].startswith(PROBLEM_BASE)
        assert isinstance(body["detail"], str) and body["detail"] and body["title"]
        text = json.dumps(body, ensure_ascii=False)
        assert MARKER not in text
        for value in echo_candidates(list(inputs)):
            assert value not in text, f"an input value is echoed: {value!r}"
    if response.status == 503:
        assert int(response.headers["Retry-After"]) >= 1
    return body


def _relink_inputs(tenant: str, body: bytes) -> list[Any]:
    try:
        return [tenant, json.loads(body)]
    except ValueError:
        return [tenant]


@pytest.fixture
def api_env(env: dict[str, str], cloud: CloudSandbox) -> dict[str, str]:
    """`env`, with Tailspin's ARM calls failing with 503 so that relink's transient answer shows."""
    cloud.add_fault(TAILSPIN, FaultRule(target="arm", kind="status", status=503, retry_after=7))
    return env


def test_relink_answers_hostile_tenants_and_bodies_with_a_documented_status(api_env: dict[str, str]) -> None:
    statuses: set[int] = set()
    with running_service(api_env) as (run, service):
        api = LinksApi.of(service)

        @hsettings(REAL, max_examples=40)
        @given(case=relink_cases)
        @example(case=(NORTHWIND, FEDERATED))  # 200
        @example(case=(TAILSPIN, FEDERATED))  # 503: ARM fails
        @example(case=("..%2F..%2Fadmin", FEDERATED))  # 400
        def check(case: tuple[str, bytes]) -> None:
            tenant, body = case
            response = run(api.relink(tenant, body))
            result = check_response(response, *_relink_inputs(tenant, body))
            statuses.add(response.status)
            event(f"status: {response.status}")
            if response.status == 200:
                assert result is not None and _is_guid(tenant)
                assert result["customerTenantId"] == tenant.lower()
                assert result["outcome"] in {kind.value for kind in OutcomeKind}

        check()
        for entity in run(_entities(api_env)):
            check_entity(entity)
    assert {200, 400, 503} <= statuses, statuses


def test_list_links_answers_injection_and_forged_tokens_with_a_documented_status(
    api_env: dict[str, str],
) -> None:
    statuses: set[int] = set()
    with running_service(api_env) as (run, service):
        api = LinksApi.of(service)
        federated = _body({"identity": {"type": "federated", "clientId": FEDERATED_APP}})
        for tenant in (NORTHWIND, WOODGROVE):
            assert run(api.relink(tenant, federated)).status == 200

        @hsettings(REAL, max_examples=60)
        @given(parameters=query_parameters)
        def check(parameters: dict[str, str]) -> None:
            response = run(api.list_links(parameters))
            body = check_response(response, parameters)
            statuses.add(response.status)
            event(f"status: {response.status}")
            if response.status == 200:
                assert body is not None and isinstance(body["items"], list)
                for item in body["items"]:
                    assert item["customerTenantId"] in (NORTHWIND, WOODGROVE)
                    outcome = parameters.get("outcome")
                    assert outcome is None or item["outcome"] == outcome

        check()
    assert {200, 400} <= statuses, statuses


def test_get_link_answers_hostile_tenants_with_a_documented_status(api_env: dict[str, str]) -> None:
    with running_service(api_env) as (run, service):
        api = LinksApi.of(service)
        federated = _body({"identity": {"type": "federated", "clientId": FEDERATED_APP}})
        assert run(api.relink(NORTHWIND, federated)).status == 200

        @REAL
        @given(tenant=tenants)
        def check(tenant: str) -> None:
            response = run(api.get_link(tenant))
            body = check_response(response, tenant)
            if response.status == 200:
                assert body is not None and tenant.lower() == NORTHWIND
                assert body["customerTenantId"] == NORTHWIND and body["links"]
            elif response.status == 404:
                assert _is_guid(tenant) and tenant.lower() != NORTHWIND

        check()


# --- 4. the HTTP API over HTTP, through the local Functions host ----------------------------------------

KEY = "property-test-key"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
HOST_STATUSES = {200, 400, 401, 403, 404, 405, 413, 503}


_RAW_PATH = re.compile(r"(?:[A-Za-z0-9._~/\\-]|%[0-9A-Fa-f]{2})+")


def _segment(tenant: str) -> str:
    """Traversal strings as they are (when a URL can carry them), anything else percent-encoded."""
    if tenant in TRAVERSAL and _RAW_PATH.fullmatch(tenant):
        return tenant
    return quote(tenant.encode("utf-8", "surrogatepass"), safe="")


host_inputs = st.tuples(
    st.one_of(st.tuples(st.sampled_from(TRAVERSAL), relink_bodies), relink_cases).filter(
        lambda case: len(case[0]) <= 300 and len(case[1]) <= 20000
    ),
    query_parameters.filter(lambda p: sum(len(k) + len(v) for k, v in p.items()) <= 600),
    st.sampled_from(METHODS),
    st.sampled_from(["/{tenant}/relink", "/{tenant}", ""]),
)


async def _http(
    session: aiohttp.ClientSession, method: str, url: str, body: bytes | None = None
) -> tuple[int, str, dict[str, str], bytes]:
    headers = {"x-functions-key": KEY}
    async with session.request(method, yarl.URL(url, encoded=True), data=body, headers=headers) as response:
        payload = await response.read()
        return response.status, response.headers.get("Content-Type", ""), dict(response.headers), payload


def check_http(status: int, content_type: str, headers: dict[str, str], payload: bytes, method: str) -> None:
    assert status in HOST_STATUSES, (status, payload[:300])
    if content_type.startswith("application/problem+json"):
        problem = json.loads(payload)
        assert {"type", "title", "status", "detail"} <= set(problem) and problem["status"] == status
        assert MARKER.encode() not in payload
        if status == 405:
            assert headers["Allow"] in ("GET", "POST")
    elif status == 200:
        assert content_type.startswith("application/json") and isinstance(json.loads(payload), dict)
    else:  # not one of ours: the host's router found no function for this path
        assert status == 404, (status, content_type, payload[:300])
    assert b"Traceback" not in payload


def test_http_api_over_the_local_host_answers_hostile_requests(
    bus_env: dict[str, str], cloud: CloudSandbox
) -> None:
    cloud.add_fault(TAILSPIN, FaultRule(target="arm", kind="status", status=503, retry_after=7))
    run = Loop()
    host = LocalFunctionsHost(settings=bus_env, function_key=KEY)
    session: aiohttp.ClientSession | None = None

    async def start() -> aiohttp.ClientSession:
        await reset_service()
        await host.start()
        return aiohttp.ClientSession()

    async def stop() -> None:
        if session is not None:
            await session.close()
        await host.stop(grace_seconds=5)
        await reset_service()

    statuses: set[int] = set()
    try:
        session = run(start())
        base = host.base_url + "/api/links"
        # without a key, with a wrong one: 401 and nothing else
        for headers in ({}, {"x-functions-key": "wrong-" + KEY}):
            status = run(_unauthorised(session, base + "/" + NORTHWIND, headers))
            assert status == 401

        @hsettings(REAL, max_examples=20)
        @given(given_input=host_inputs)
        def check(given_input: tuple[tuple[str, bytes], dict[str, str], str, str]) -> None:
            (tenant, body), parameters, method, route = given_input
            query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in parameters.items())
            segment = _segment(tenant)
            for verb, url, data in (
                ("POST", f"{base}/{segment}/relink", body),
                ("GET", f"{base}/{segment}", None),
                ("GET", f"{base}?{query}", None),
                (method, base + route.format(tenant=segment), body),  # often the wrong method
            ):
                status, content_type, headers, payload = run(_http(session, verb, url, data))
                check_http(status, content_type, headers, payload, verb)
                statuses.add(status)

        check()
        assert not [i for i in host.invocations if not i.succeeded], "a function raised"
    finally:
        run(stop())
        run.close()
    assert {200, 400, 404, 405} <= statuses, statuses


async def _unauthorised(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> int:
    async with session.get(url, headers=headers) as response:
        assert await response.read() == b""
        return response.status


# --- product bugs these properties found ------------------------------------------------------------
# Fixed (regression tests): each was an exception escaping, a value echoed, or an unvalidated value
# accepted, found by the properties above.


@pytest.mark.parametrize(
    "document",
    [
        onboarding_message(NORTHWIND + "\n"),
        onboarding_message(NORTHWIND, FEDERATED_APP + "\n"),
        onboarding_message(NORTHWIND, partnerId=PARTNER_ID + "\n"),
        onboarding_message(NORTHWIND, FABRIKAM_APP, identity_type="secret", secret_name="fabrikam-pal\n"),
    ],
    ids=["customerTenantId", "identity.clientId", "partnerId", "identity.keyVaultSecretName"],
)
def test_regression_a_trailing_newline_is_not_valid(document: dict[str, Any]) -> None:
    """`^...$` with re.match accepted one trailing newline in GUIDs, partner IDs and secret names."""
    result = check_parse(_body(document), document)
    assert isinstance(result, MessageRejected) and result.reason is RejectionReason.INVALID_FIELD


def test_regression_a_trailing_newline_in_a_field_name_is_not_echoed() -> None:
    result = check_parse(_body({**onboarding_message(NORTHWIND), "colour\n": 1}))
    assert isinstance(result, MessageRejected)
    assert result.details[0].startswith("<unprintable field name>: unknown field")


@pytest.mark.parametrize("body", [b"1" * 4301, b'{"schemaVersion": ' + b"1" * 5000 + b"}"])
def test_regression_huge_integer_is_rejected_not_raised(body: bytes) -> None:
    """json.loads raised ValueError (int max str digits) past the parser, and out of handle()."""
    result = check_parse(body)
    assert isinstance(result, MessageRejected) and result.reason is RejectionReason.NOT_JSON


def test_regression_an_unsupported_schema_version_is_not_echoed() -> None:
    document = {**onboarding_message(NORTHWIND), "schemaVersion": 12345678901234567890}
    result = check_parse(_body(document), document)
    assert isinstance(result, MessageRejected)
    assert "12345678901234567890" not in str(result)


async def test_regression_a_trailing_newline_tenant_is_rejected_and_recorded(
    service: LinkService, env: dict[str, str]
) -> None:
    """It used to be linked in the sandbox and then refused by Table Storage as a PartitionKey,
    so handle() raised and the message would have been redelivered until dead-lettered."""
    outcome = await service.handle(_body(onboarding_message(WOODGROVE + "\n")), message_id="newline")
    assert (outcome.kind, outcome.code) == (OutcomeKind.REJECTED, "invalid-field")
    for entity in await _entities(env):
        check_entity(entity)


async def test_regression_api_edge_cases(service: LinkService) -> None:
    api = LinksApi.of(service)
    federated = _body({"identity": {"type": "federated", "clientId": FEDERATED_APP}})
    duplicated = federated[:-1] + b', "partnerId": "12-34", "partnerId": "1234567"}'
    cases: list[tuple[str, Callable[[], Awaitable[ApiResponse]]]] = [
        # "²".isdigit() but int("²") raised ValueError: a 500
        ("top=²", lambda: api.list_links({"top": "²"})),
        # json.loads' RecursionError is not a ValueError: a 500
        ("deep body", lambda: api.relink(NORTHWIND, b"[" * 5000)),
        # duplicate keys were silently accepted (the last one won), unlike on the queue
        ("duplicate keys", lambda: api.relink(NORTHWIND, duplicated)),
        # a tenant with a trailing newline passed the GUID check and reached the ledger
        ("get newline", lambda: api.get_link(NORTHWIND + "\n")),
        ("relink newline", lambda: api.relink(WOODGROVE + "\n", federated)),
    ]
    for name, call in cases:
        response = await call()
        check_response(response)
        assert response.status == 400, (name, response)


# Application properties anyone can set on a queue message are validated before use.


async def test_regression_run_id_property_is_validated(service: LinkService, env: dict[str, str]) -> None:
    """palRunId used to be stored as it came: any sender wrote any text into the ledger, and one over
    32K characters made the ledger write fail after linking."""
    body = _body(onboarding_message(NORTHWIND))
    await service.handle(body, message_id="run-id-control", properties={"palRunId": "a\x00b"})
    outcome = await service.handle(body, message_id="run-id-long", properties={"palRunId": "x" * 40000})
    assert isinstance(outcome, Outcome)
    stored = {entity.get("RunId") for entity in await _entities(env)} - {None}
    assert stored == set(), f"unvalidated run IDs in the ledger: {stored!r}"


@pytest.mark.parametrize("attempt", [2**31, "99999999999", float("inf")], ids=["int", "text", "infinity"])
async def test_regression_huge_attempt_property_is_clamped(service: LinkService, attempt: Any) -> None:
    """palAttempt over 2**31-1 used to be linked and then fail to be stored (Edm.Int32), and an
    infinite one raised OverflowError: handle() raised either way."""
    body = _body(onboarding_message(NORTHWIND))
    outcome = await service.handle(body, message_id=f"attempt-{attempt}", properties={"palAttempt": attempt})
    assert isinstance(outcome, Outcome)
