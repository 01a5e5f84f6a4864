"""The partner's identity in a customer tenant: how it signs in, and which application it is."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Identity", "IdentityType"]


class IdentityType(StrEnum):
    """How the identity proves itself: a federated credential, a Key Vault secret or certificate."""

    FEDERATED = "federated"
    SECRET = "secret"
    CERTIFICATE = "certificate"


@dataclass(frozen=True)
class Identity:
    """One application (service principal) in the customer's tenant, with where its credential is kept."""

    type: IdentityType
    client_id: str
    key_vault_secret_name: str | None = None
