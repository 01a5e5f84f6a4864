"""The credentials the cloud sandbox makes up: client secret values shaped like Entra ID's, and
self-signed certificates as Key Vault stores a certificate's secret (private key, then certificate)."""

from __future__ import annotations

import base64
import secrets
import string
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

_SECRET_ALPHABET = string.ascii_letters + string.digits + "_~.-"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def client_secret() -> str:
    """Shaped like an Entra client secret value: 3 characters, '8Q~', 34 more."""
    pick = secrets.choice
    return (
        "".join(pick(_SECRET_ALPHABET) for _ in range(3))
        + "8Q~"
        + "".join(pick(_SECRET_ALPHABET) for _ in range(34))
    )


def thumbprints(cert: x509.Certificate) -> list[str]:
    """The certificate's x5t and x5t#S256 (base64url SHA-1 and SHA-256 fingerprints)."""
    return [b64url(cert.fingerprint(algorithm)) for algorithm in (hashes.SHA1(), hashes.SHA256())]


def self_signed_pem(common_name: str) -> tuple[str, x509.Certificate]:
    """A PEM with the private key and then the certificate, as Key Vault stores a certificate's secret."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return (key_pem + cert.public_bytes(serialization.Encoding.PEM)).decode(), cert
