"""A generated fleet of customer tenants for benchmarks and reliability runs: one partner app,
consented in every tenant, optionally already linked; and one large Power Platform tenant for the
attribution benchmark (`power_platform_scenario`)."""

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


def _guid(series: int, n: int) -> str:
    return str(uuid.UUID(int=(series << 112) + n))


def power_platform_scenario(
    *,
    environments: int = 20,
    canvas_apps: int = 1000,
    flows: int = 1000,
    workspaces: int = 10,
    datasets: int = 200,
    users: int = 50,
    linked: bool = True,
) -> dict[str, Any]:
    """A scenario document with one large customer tenant (the fleet's first, series 9) for the
    attribution benchmark: `environments` (the first the default, every fourth without Dataverse),
    `canvas_apps` and `flows` spread over them, `datasets` in `workspaces`, every grant given. Of the
    resources a tenth belong to the linked service principal, a tenth to a deleted user (orphans), the
    rest to `users`; a third of the flows in Dataverse environments are solution-aware, and each
    Dataverse environment also has two model-driven apps, a bot and a solution with its import job."""
    tenant = fleet_tenants(1, series=9)[0]
    document = fleet_scenario([tenant], linked=linked)
    sp = document["tenants"][0]["servicePrincipals"][0]["objectId"]
    people = [_guid(1, n) for n in range(users)]
    deleted = _guid(1, users)

    def owner(n: int) -> str:
        return sp if n % 10 == 0 else deleted if n % 10 == 1 else people[n % users]

    envs = [_pp_environment(tenant, e, e % 4 != 3) for e in range(environments)]
    for n in range(canvas_apps):
        envs[n % environments]["canvasApps"].append(
            {"id": _guid(3, n), "displayName": f"App {n}", "owner": owner(n)}
        )
    for n in range(flows):
        env = envs[n % environments]
        flow: dict[str, Any] = {"id": _guid(4, n), "displayName": f"Flow {n}", "creator": owner(n)}
        if env.get("dataverse", True) and n % 3 == 0:
            flow["solutionAware"] = True
        env["flows"].append(flow)
    for e, env in enumerate(envs):
        if env.get("dataverse", True):
            _pp_dataverse_records(env, e, sp, people[e % users])
    document["tenants"][0]["powerPlatform"] = {
        "grants": {"registeredApps": [APP], "powerBiApps": [APP]},
        "users": _pp_users(people, deleted),
        "environments": envs,
        "powerBi": {
            "workspaces": [
                {
                    "id": _guid(5, w),
                    "name": f"Workspace {w}",
                    "datasets": [
                        {"id": _guid(6, n), "name": f"Dataset {n}", "configuredBy": owner(n)}
                        for n in range(w, datasets, workspaces)
                    ],
                }
                for w in range(workspaces)
            ]
        },
    }
    return document


def _pp_users(people: list[str], deleted: str) -> list[dict[str, Any]]:
    users: list[dict[str, Any]] = [
        {"objectId": oid, "displayName": f"User {n}", "userPrincipalName": f"user{n}@customer.example"}
        for n, oid in enumerate(people)
    ]
    former = {"displayName": "Former", "userPrincipalName": "former@customer.example", "deleted": True}
    return [*users, {"objectId": deleted, **former}]


def _pp_environment(tenant: str, e: int, dataverse: bool) -> dict[str, Any]:
    env: dict[str, Any] = {
        "id": f"Default-{tenant}" if e == 0 else _guid(2, e),
        "displayName": "Default" if e == 0 else f"Environment {e}",
        "sku": "Default" if e == 0 else "Production",
        "canvasApps": [],
        "flows": [],
    }
    if dataverse:
        env["applicationUsers"] = [APP]
    else:
        env["dataverse"] = False
    return env


def _pp_dataverse_records(env: dict[str, Any], e: int, sp: str, user: str) -> None:
    env["modelDrivenApps"] = [
        {"id": _guid(7, 2 * e), "name": f"Hub {e}", "createdBy": sp},
        {"id": _guid(7, 2 * e + 1), "name": f"Register {e}", "createdBy": user},
    ]
    env["bots"] = [{"id": _guid(8, e), "name": f"Helper {e}", "owner": sp}]
    env["solutions"] = [{"id": _guid(10, e), "uniqueName": f"Delivery{e}", "createdBy": sp}]
    env["importJobs"] = [{"id": _guid(11, e), "solutionName": f"Delivery{e}", "createdBy": sp}]
