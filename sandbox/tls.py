"""A throw-away certificate authority and a server certificate for 127.0.0.1 and localhost (trustme)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TlsMaterial:
    ca_path: Path  # clients trust the sandbox with connection_verify=str(ca_path)
    server_context: ssl.SSLContext


def make_tls(directory: Path) -> TlsMaterial:
    """A new CA (its PEM written to `directory/ca.pem`) and a server context with a cert it issued."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="PAL Autopilot sandbox")
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    return TlsMaterial(ca_path=ca_path, server_context=context)
