"""The credential screen sees through the simple encodings a credential is pasted in (percent-encoding,
once or more, `+` for space, HTML entities, base64), and still leaves ordinary values alone."""

from __future__ import annotations

import base64
import time
from urllib.parse import quote, quote_plus

import pytest

from shared.links.message import find_credentials

CLIENT_SECRET = "abc8Q~PLANTED-encoded-value_0123456789ab"
SIG = "kX3rP9vQ2mZ8tY1uW4sN7bH0cF6dJ5gL+a/E=Q9rT2w="
SAS = f"sv=2022-11-02&ss=b&srt=sco&sp=rl&se=2030-01-01T00:00:00Z&sig={quote(SIG, safe='')}"
ACCOUNT_KEY = "PLANTEDaccountKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV+/=="
CONNECTION_STRING = f"DefaultEndpointsProtocol=https;AccountName=contoso;AccountKey={ACCOUNT_KEY}"


def fully_percent_encoded(text: str) -> str:
    return "".join(f"%{byte:02X}" for byte in text.encode())


def percent_encoded(text: str, times: int) -> str:
    """`quote` leaves `~` alone (RFC 3986 unreserved); tools that encode it write %7E."""
    for _ in range(times):
        text = quote(text, safe="").replace("~", "%7E")
    return text


ENCODED = {
    "client secret, ~ as %7E": CLIENT_SECRET.replace("~", "%7E"),
    "client secret, ~ as %7e": CLIENT_SECRET.replace("~", "%7e"),
    "client secret, fully percent-encoded": fully_percent_encoded(CLIENT_SECRET),
    "client secret, percent-encoded twice": percent_encoded(CLIENT_SECRET, 2),
    "client secret, percent-encoded three times": percent_encoded(CLIENT_SECRET, 3),
    "client secret in a form body": "client_id=abc&client%5Fsecret%3D" + quote(CLIENT_SECRET, safe=""),
    "client secret as an HTML entity": CLIENT_SECRET.replace("~", "&#126;"),
    "client secret, base64": base64.b64encode(CLIENT_SECRET.encode()).decode(),
    "SAS without ? or &": SAS,
    "SAS with sig first": f"sig={quote(SIG, safe='')}&se=2030-01-01T00%3A00%3A00Z&sp=r&sv=2022-11-02",
    "SAS with sig unencoded": f"se=2030-01-01&sig={SIG}",
    "SAS after a semicolon": f"SharedAccessSignature=sv=2022-11-02;sig={SIG}",
    "SAS URL percent-encoded": quote(f"https://contoso.blob.core.windows.net/c?{SAS}", safe=""),
    "SAS in an HTML attribute": f"https://contoso.blob.core.windows.net/c?sv=2022-11-02&amp;sig={SIG}",
    "connection string, percent-encoded": quote(CONNECTION_STRING, safe=""),
    "connection string, AccountKey%3D only": f"AccountName=contoso%3BAccountKey%3D{quote(ACCOUNT_KEY)}",
    "connection string, + for space": quote_plus("AccountName=contoso; AccountKey = " + ACCOUNT_KEY),
    "connection string, percent-encoded twice": percent_encoded(CONNECTION_STRING, 2),
    "connection string, base64": base64.b64encode(CONNECTION_STRING.encode()).decode(),
    "connection string, base64url": base64.urlsafe_b64encode(CONNECTION_STRING.encode()).decode(),
    "connection string, base64 then percent-encoded": quote(
        base64.b64encode(CONNECTION_STRING.encode()).decode(), safe=""
    ),
    "connection string, base64 in a sentence": "config is "
    + base64.b64encode(CONNECTION_STRING.encode()).decode().rstrip("=")
    + " (see wiki)",
    "password, percent-encoded": "user=ops&password%3Dhunter2",
    "JWT, percent-encoded": quote("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJQTEFOVEVEIn0.sig", safe="").replace(
        "e", "%65"
    ),
}


@pytest.mark.parametrize("value", ENCODED.values(), ids=ENCODED.keys())
def test_an_encoded_credential_is_found(value: str) -> None:
    assert find_credentials({"customerName": value}) == ["customerName"]


@pytest.mark.parametrize("value", ENCODED.values(), ids=ENCODED.keys())
def test_an_encoded_credential_as_a_field_name_is_found(value: str) -> None:
    assert find_credentials({value: "x"}) != []


@pytest.mark.parametrize("name", ["pass%77ord", "api%2Dkey", "p&#97;ssword", "Account%4Bey"])
def test_an_encoded_secret_field_name_is_found(name: str) -> None:
    assert find_credentials({name: "x"}) == ["<unprintable field name>"]


ORDINARY = [
    "53a2a22c-5cbd-47f7-b588-f5bb5f191ead",
    "53A2A22C-5CBD-47F7-B588-F5BB5F191EAD",
    "1234567",
    "Northwind Traders",
    "Café%20Paris & Söhne",
    "Müller+Partner GmbH",
    "100% of 50%",
    "%zz%",
    "a+b=c",
    "fabrikam-pal-secret",
    "contoso-pal-client-secret-for-production-tenant-0001-rotated-2024",
    "x" * 127,
    "CRM-ACC-0001",
    "2024-05-01T02:00:00Z",
    "2024-05-01T02%3A00%3A00.1234567%2B00%3A00",
    "onboard:53a2a22c-5cbd-47f7-b588-f5bb5f191ead:81a6daa3-a704-4f3e-a1ca-45fa036d5a09:1234567:2024-05-01",
    "verify:53a2a22c-5cbd-47f7-b588-f5bb5f191ead:81a6daa3-a704-4f3e-a1ca-45fa036d5a09:2024-05-01",
    "m-1:retry3p2",
    "unsafe-id:0123456789abcdef0123456789abcdef",
    "sha256:" + "ab" * 32,
    "https://contoso.example/path?x=1&y=2&design=modern&config=a%2Fb",
    "https://portal.azure.com/#view/Microsoft_Azure_Billing/PartnerAdminLink",
    base64.b64encode(b"Hello world, this is an ordinary sentence.").decode(),
    base64.b64encode(bytes(range(255))).decode(),
    "SGVsbG8gd29ybGQ",
    "0123456789abcdef" * 4,
    "&amp;&lt;&#x3D;&#61;",
    "\ud800 %E2%80 \udfff+%",
]


@pytest.mark.parametrize("value", ORDINARY)
def test_ordinary_values_are_not_credentials(value: str) -> None:
    assert find_credentials({"customerName": value, "correlationId": value}) == []


def test_screening_a_large_message_stays_fast() -> None:
    document = {
        "a": "x" * 65536,
        "b": "%25" * 20000,
        "c": "A" * 65536,
        "d": "+" * 65536,
        "e": "&#37;" * 13000,
        "f": ["QUJD" * 16] * 1000,
    }
    started = time.monotonic()
    assert find_credentials(document) == []
    assert time.monotonic() - started < 2.0
