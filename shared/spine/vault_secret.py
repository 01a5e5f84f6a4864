"""Whether a Key Vault secret may be used for one customer, decided before its value is used.

A secret serves a customer only when its Key Vault tags bind it there: `customerTenantId` (the
customer tenant, or `*` for a multi-tenant app's secret deliberately shared by every customer) and
`clientId` (the app). Then it must be enabled, unexpired and shaped for its identity type: a client
secret that is not a PEM, or a PEM holding an unencrypted RSA private key and its certificate.

Every problem is an `UnusableSecret` carrying the secret's name, GUIDs and our own words, never the
value; `shared/errors.py` turns it into an outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from shared.spine.identifiers import is_guid
from shared.spine.identity import IdentityType

TENANT_TAG = "customerTenantId"
CLIENT_TAG = "clientId"
ANY_TENANT = "*"
_PEM_BEGIN = "-----BEGIN"


@dataclass(frozen=True)
class SecretUse:
    """A Key Vault secret about to be used for one customer: what every check and problem names."""

    name: str
    tenant_id: str
    client_id: str
    identity_type: IdentityType


class UnusableSecret(Exception):
    """The secret cannot be used for this customer; `detail` is our own words, never the value."""

    code: ClassVar[str]

    def __init__(self, use: SecretUse, detail: str = "") -> None:
        self.use = use
        self.detail = detail
        super().__init__(f"{self.code}: Key Vault secret {use.name}" + (f" ({detail})" if detail else ""))


class SecretNotBound(UnusableSecret):
    code = "secret-not-bound"

    def __init__(self, use: SecretUse, problems: tuple[str, ...]) -> None:
        self.problems = problems
        super().__init__(use, "; ".join(problems))


class SecretMissing(UnusableSecret):
    code = "key-vault-secret-missing"


class SecretEmpty(UnusableSecret):
    code = "key-vault-secret-empty"


class SecretDisabled(UnusableSecret):
    code = "key-vault-secret-disabled"


class SecretExpired(UnusableSecret):
    code = "key-vault-secret-expired"


class CertificateNotPem(UnusableSecret):
    code = "certificate-not-pem"


class SecretIsPem(UnusableSecret):
    code = "secret-is-pem"


def check_binding(use: SecretUse, tags: Mapping[str, str] | None) -> None:
    """Raise `SecretNotBound` unless the tags bind the secret to this tenant and client (any case)."""
    by_name = {name.lower(): value.strip() for name, value in (tags or {}).items()}
    problems = [
        problem
        for problem in (
            _tag_problem(TENANT_TAG, by_name.get(TENANT_TAG.lower()), use.tenant_id, allow_any=True),
            _tag_problem(CLIENT_TAG, by_name.get(CLIENT_TAG.lower()), use.client_id, allow_any=False),
        )
        if problem
    ]
    if problems:
        raise SecretNotBound(use, tuple(problems))


def _tag_problem(tag: str, found: str | None, expected: str, *, allow_any: bool) -> str | None:
    """One problem as `tags.<name>: <what is wrong>`, like a rejection's per-field details."""
    if found is None:
        return f"tags.{tag}: missing"
    if found.lower() == expected.lower() or (allow_any and found == ANY_TENANT):
        return None
    # A tag value is shown only when it is a GUID: whatever else someone typed there stays out.
    shown = found.lower() if is_guid(found) else "not a GUID" + (" or *" if allow_any else "")
    return f"tags.{tag}: {shown}, expected {expected.lower()}"


def check_attributes(use: SecretUse, *, enabled: bool | None, expires_on: datetime | None) -> None:
    """Raise for a disabled or expired secret (Key Vault still serves an expired one)."""
    if enabled is False:
        raise SecretDisabled(use)
    if expires_on is not None and expires_on <= datetime.now(UTC):
        raise SecretExpired(use, f"it expired on {expires_on.astimezone(UTC):%Y-%m-%d %H:%M} UTC")


def check_value(use: SecretUse, value: str | None) -> str:
    """The value, once it is shaped for the identity type; raises otherwise."""
    if value is None or not value.strip():
        raise SecretEmpty(use)
    if use.identity_type is IdentityType.CERTIFICATE:
        problem = _certificate_problem(value)
        if problem:
            raise CertificateNotPem(use, problem)
    elif _PEM_BEGIN in value:
        raise SecretIsPem(use)
    return value


def _rsa_private_key(data: bytes) -> RSAPrivateKey | str:
    """The PEM's RSA private key, or what is wrong with it."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return "the PEM's private key cannot be read (encrypted with a password, or damaged)"
    if not isinstance(key, RSAPrivateKey):
        return "the private key is not RSA (Entra ID signs client assertions with RS256)"
    return key


def _certificate_problem(value: str) -> str | None:
    """What keeps the value from being a PEM with an RSA private key and its certificate, if anything."""
    if _PEM_BEGIN not in value:
        return "it is not PEM (a PKCS#12 file or a client secret, perhaps)"
    data = value.encode("utf-8")
    if "PRIVATE KEY-----" not in value:
        return "the PEM holds no private key"
    key = _rsa_private_key(data)
    if isinstance(key, str):
        return key
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError:
        return "the PEM holds no readable certificate"
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if certificate.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        return "the certificate does not belong to the private key"
    return None
