"""A generated fleet of customer tenants for benchmarks and reliability runs: one partner app,
consented in every tenant, optionally already linked."""

from __future__ import annotations

import uuid
from typing import Any

APP = "81a6daa3-a704-4f3e-a1ca-45fa036d5a09"
PARTNER_ID = "1234567"
PARTNER_TENANT = "06a9217b-0248-4057-ba46-05be61101c37"
MI_CLIENT = "15f2d0f8-8784-4690-b5c7-e45e31452a9a"
MI_PRINCIPAL = "481be298-d292-4dd2-a8e4-3e36a28df338"


def fleet_tenants(count: int, *, series: int) -> list[str]:
    """Deterministic tenant IDs; different series never collide."""
    return [str(uuid.UUID(int=(series << 100) + n)) for n in range(count)]


def fleet_scenario(tenants: list[str], *, linked: bool) -> dict[str, Any]:
    """A scenario document (see sandbox/scenarios/demo.json) with one service principal per tenant."""

    def object_id(n: int) -> str:
        return str(uuid.UUID(int=(1 << 120) + n))

    return {
        "partnerTenantId": PARTNER_TENANT,
        "managedIdentity": {"clientId": MI_CLIENT, "principalId": MI_PRINCIPAL},
        "knownPartnerIds": {PARTNER_ID: "Contoso Partner"},
        "apps": [
            {
                "clientId": APP,
                "displayName": "Contoso PAL Autopilot",
                "federatedCredentials": [
                    {
                        "issuer": f"https://login.microsoftonline.com/{PARTNER_TENANT}/v2.0",
                        "subject": MI_PRINCIPAL,
                        "audience": "api://AzureADTokenExchange",
                    }
                ],
            }
        ],
        "tenants": [
            {
                "tenantId": tenant,
                "name": f"Customer {n}",
                "servicePrincipals": [{"clientId": APP, "objectId": object_id(n)}],
                "links": [{"objectId": object_id(n), "partnerId": PARTNER_ID}] if linked else [],
            }
            for n, tenant in enumerate(tenants)
        ],
    }
