"""The demo scenario's customers and identities, and the messages the tests send about them.

A plain module: tests import these names from here (fixtures live in conftest.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO_SCENARIO = ROOT / "sandbox" / "scenarios" / "demo.json"
SAMPLES = ROOT / "sandbox" / "samples"

PARTNER_ID = "1234567"
OTHER_PARTNER_ID = "7654321"
FEDERATED_APP = "81a6daa3-a704-4f3e-a1ca-45fa036d5a09"
NORTHWIND = "53a2a22c-5cbd-47f7-b588-f5bb5f191ead"
TAILSPIN = "d4dda931-e8e4-4937-8f81-9c578f5d5d03"
FABRIKAM = "892ad125-0722-49b7-a665-aea7ede649e4"
FABRIKAM_APP = "3d396df3-d832-4c8b-a51d-91fbcce04b1d"
WOODGROVE = "a21564c4-fb83-46d4-b1ae-f4675e7d4921"
LITWARE = "ac9630d7-e100-495c-a709-71872a194254"
LITWARE_APP = "15e6da4c-256b-441c-a9e3-585cf41b8266"


def bound_to(tenant: str, client_id: str) -> dict[str, str]:
    """Key Vault tags that bind a secret to one customer tenant ("*": every tenant) and app."""
    return {"customerTenantId": tenant, "clientId": client_id}


def onboarding_message(tenant: str, client_id: str = FEDERATED_APP, **fields: Any) -> dict[str, Any]:
    identity: dict[str, Any] = {"type": fields.pop("identity_type", "federated"), "clientId": client_id}
    if "secret_name" in fields:
        identity["keyVaultSecretName"] = fields.pop("secret_name")
    return {"schemaVersion": 1, "customerTenantId": tenant, "identity": identity, **fields}


NORTHWIND_USER = "6f1e2b9c-3d4a-4c5e-9f70-1a2b3c4d5e6f"
"""Northwind's dedicated service account (a user: it signs in with a device code)."""
NORTHWIND_UPN = "pal-service@northwind.example"
