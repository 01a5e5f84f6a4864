"""The partner's identity in a customer tenant: how it signs in, and which application it is."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["UNATTENDED_TYPES", "Identity", "IdentityType"]


class IdentityType(StrEnum):
    """How the identity proves itself: a federated credential, a Key Vault secret or certificate
    (service principals, which the service signs in unattended), or a person's sign-in (`user`)."""

    FEDERATED = "federated"
    SECRET = "secret"
    CERTIFICATE = "certificate"
    USER = "user"
    """A user or service account in the customer's tenant. It signs in interactively (MFA), so only
    palctl links and verifies it (`palctl link-user`, `palctl verify-user`); the service keeps its
    record, never builds a credential for it, and lists it as due for a manual check each night."""

    @property
    def unattended(self) -> bool:
        """Whether the service can sign in as it without a person (every type but `user`)."""
        return self is not IdentityType.USER


UNATTENDED_TYPES = frozenset(kind.value for kind in IdentityType if kind.unattended)
"""The identity types a queue message, a relink and the service's credentials accept."""


@dataclass(frozen=True)
class Identity:
    """One identity in the customer's tenant: an application (service principal), with where its
    credential is kept, or (type `user`) a user account, whose `client_id` is then its object ID."""

    type: IdentityType
    client_id: str
    key_vault_secret_name: str | None = None
