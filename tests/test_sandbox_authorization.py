"""The ARM stand-in for subscriptions and Microsoft.Authorization (sandbox/cloud/authorization.py) over
real HTTPS: what a caller sees, paging, the assignedTo filter, PIM eligibility, 403 and 404 where ARM
gives them, faults of their own, the admin API, and the scenario section read strictly."""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any
from urllib.parse import urlsplit

import pytest

from sandbox.cloud import CloudSandbox
from sandbox.scenario import FaultRule, Scenario
from tenants import NORTHWIND, TAILSPIN

NORTHWIND_OID = "d87199a7-f53b-4dd6-813d-019f7547bffb"
TAILSPIN_SUB = "0f5c8d2a-7b3e-4c61-8e90-3a4b5c6d7e81"
SOMEONE = "11111111-2222-4333-8444-555555555555"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
ARM = "https://management.azure.com/"
SUBSCRIPTIONS = "/subscriptions?api-version=2022-12-01"


def sub(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def call(
    cloud: CloudSandbox, path: str, token: str | None, method: str = "GET", body: Any = None
) -> tuple[int, Any]:
    parts = urlsplit(cloud.base_url + path if path.startswith("/") else path)
    context = ssl.create_default_context(cafile=str(cloud.ca_path))
    connection = http.client.HTTPSConnection(parts.hostname or "", parts.port, context=context, timeout=10)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), data, headers)
        response = connection.getresponse()
        text = response.read()
    finally:
        connection.close()
    return response.status, json.loads(text) if text else None


def every(cloud: CloudSandbox, path: str, token: str) -> tuple[list[Any], int]:
    """Every item of a paged list, and how many pages it took."""
    items, pages, url = [], 0, path
    while url:
        status, page = call(cloud, url, token)
        assert status == 200, page
        items += page["value"]
        pages, url = pages + 1, page.get("nextLink")
    return items, pages


@pytest.fixture
def token(cloud: CloudSandbox) -> str:
    return cloud.issue_token(NORTHWIND, NORTHWIND_OID, ARM)


def assignment(principal: str, role: str, **extra: Any) -> dict[str, Any]:
    return {"principalId": principal, "roleDefinitionId": role, **extra}


@pytest.fixture
def five(cloud: CloudSandbox) -> None:
    """Five subscriptions in Northwind: three the app holds a role in, one only PIM-eligible, one deleted."""
    subscriptions = [
        {
            "subscriptionId": sub(n),
            "displayName": f"S{n}",
            "roleAssignments": [assignment(NORTHWIND_OID, READER)],
        }
        for n in (1, 2, 3)
    ]
    subscriptions[0]["roleAssignments"] += [
        assignment(NORTHWIND_OID, CONTRIBUTOR, scope=f"/subscriptions/{sub(1)}/resourceGroups/rg-web"),
        assignment(NORTHWIND_OID, OWNER, eligible=True),
        assignment(SOMEONE, OWNER),
    ]
    subscriptions.append(
        {
            "subscriptionId": sub(4),
            "displayName": "S4",
            "roleAssignments": [assignment(NORTHWIND_OID, OWNER, eligible=True)],
        }
    )
    subscriptions.append(
        {
            "subscriptionId": sub(5),
            "displayName": "S5",
            "state": "Deleted",
            "roleAssignments": [assignment(NORTHWIND_OID, READER)],
        }
    )
    cloud.install_subscriptions(NORTHWIND, subscriptions)


@pytest.mark.usefixtures("five")
def test_a_caller_sees_the_subscriptions_it_holds_an_active_role_in_page_by_page(
    cloud: CloudSandbox, token: str
) -> None:
    items, pages = every(cloud, SUBSCRIPTIONS, token)
    assert [item["subscriptionId"] for item in items] == [sub(1), sub(2), sub(3)]
    assert pages == 2
    assert items[0] | {"subscriptionPolicies": None} == {
        "id": f"/subscriptions/{sub(1)}",
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": sub(1),
        "tenantId": NORTHWIND,
        "displayName": "S1",
        "state": "Enabled",
        "subscriptionPolicies": None,
    }
    # Another identity of the tenant holds nothing: it sees nothing.
    assert every(cloud, SUBSCRIPTIONS, cloud.issue_token(NORTHWIND, SOMEONE.replace("1", "9"), ARM))[0] == []


@pytest.mark.usefixtures("five")
def test_role_assignments_assigned_to_the_caller_and_the_definitions(cloud: CloudSandbox, token: str) -> None:
    base = f"/subscriptions/{sub(1)}/providers/Microsoft.Authorization"
    mine, pages = every(
        cloud, f"{base}/roleAssignments?api-version=2022-04-01&$filter=assignedTo('{NORTHWIND_OID}')", token
    )
    assert pages == 1
    assert [
        (a["properties"]["roleDefinitionId"].rsplit("/", 1)[1], a["properties"]["scope"]) for a in mine
    ] == [
        (READER, f"/subscriptions/{sub(1)}"),
        (CONTRIBUTOR, f"/subscriptions/{sub(1)}/resourceGroups/rg-web"),
    ]  # the PIM-eligible Owner is not an active assignment: not listed
    assert mine[0]["properties"]["roleDefinitionId"] == f"{base}/roleDefinitions/{READER}"
    assert mine[0]["type"] == "Microsoft.Authorization/roleAssignments"
    everyone, pages = every(cloud, f"{base}/roleAssignments?api-version=2022-04-01", token)
    assert len(everyone) == 3 and pages == 2
    by_id, _ = every(
        cloud, f"{base}/roleAssignments?api-version=2022-04-01&$filter=principalId%20eq%20'{SOMEONE}'", token
    )
    assert [a["properties"]["principalId"] for a in by_id] == [SOMEONE]

    status, definition = call(cloud, f"{base}/roleDefinitions/{CONTRIBUTOR}?api-version=2022-04-01", token)
    assert (status, definition["properties"]["roleName"], definition["properties"]["type"]) == (
        200,
        "Contributor",
        "BuiltInRole",
    )
    status, missing = call(cloud, f"{base}/roleDefinitions/{SOMEONE}?api-version=2022-04-01", token)
    assert (status, missing["error"]["code"]) == (404, "RoleDefinitionDoesNotExist")


@pytest.mark.usefixtures("five")
@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (
            f"/subscriptions/{sub(4)}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01",
            403,
            "AuthorizationFailed",
        ),
        (
            f"/subscriptions/{sub(5)}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01",
            404,
            "SubscriptionNotFound",
        ),
        (
            f"/subscriptions/{TAILSPIN_SUB}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01",
            404,
            "SubscriptionNotFound",
        ),
        (
            f"/subscriptions/{sub(1)}/providers/Microsoft.Authorization/roleAssignments",
            400,
            "MissingApiVersionParameter",
        ),
        (
            f"/subscriptions/{sub(1)}/providers/Microsoft.Authorization/roleAssignments?api-version=2018-02-01",
            400,
            "InvalidApiVersionParameter",
        ),
        (
            f"/subscriptions/{sub(1)}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=atScope()",
            400,
            "InvalidFilterInQueryString",
        ),
        ("/subscriptions?api-version=2022-04-01", 400, "InvalidApiVersionParameter"),
        (f"/subscriptions/{sub(1)}/resourceGroups?api-version=2022-04-01", 404, "NotFound"),
    ],
)
def test_what_arm_refuses(cloud: CloudSandbox, token: str, path: str, status: int, code: str) -> None:
    answered, body = call(cloud, path, token)
    assert (answered, body["error"]["code"]) == (status, code)


@pytest.mark.usefixtures("five")
def test_reads_of_a_subscription_that_withholds_them_are_refused(cloud: CloudSandbox, token: str) -> None:
    path = f"/subscriptions/{sub(2)}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01"
    cloud.set_assignments_readable(NORTHWIND, sub(2), False)
    status, body = call(cloud, path, token)
    assert (status, body["error"]["code"]) == (403, "AuthorizationFailed")
    assert "Microsoft.Authorization/roleAssignments/read" in body["error"]["message"]
    cloud.set_assignments_readable(NORTHWIND, sub(2), True)
    assert call(cloud, path, token)[0] == 200


def test_tokens_are_checked_like_arms(cloud: CloudSandbox) -> None:
    status, body = call(cloud, SUBSCRIPTIONS, None)
    assert (status, body["error"]["code"]) == (401, "AuthenticationFailed")
    wrong = cloud.issue_token(NORTHWIND, NORTHWIND_OID, "https://vault.azure.net")
    status, body = call(cloud, SUBSCRIPTIONS, wrong)
    assert (status, body["error"]["code"]) == (401, "InvalidAuthenticationToken")


def test_faults_of_its_own_and_calls_counted_apart(cloud: CloudSandbox, token: str) -> None:
    cloud.add_fault(
        NORTHWIND, FaultRule(target="authorization", kind="status", status=429, retry_after=7, count=1)
    )
    cloud.add_fault(NORTHWIND, FaultRule(target="arm", kind="status", status=503))
    status, body = call(cloud, SUBSCRIPTIONS, token)
    assert (status, body["error"]["code"]) == (429, "TooManyRequests")
    assert call(cloud, SUBSCRIPTIONS, token)[0] == 200  # the ManagementPartner fault is not this one's
    stats = cloud.stats()
    assert stats["authorizationCalls"][NORTHWIND] == {"GET": 2} and NORTHWIND not in stats["armCalls"]


def test_changes_while_running_and_the_admin_api(cloud: CloudSandbox, token: str) -> None:
    demo = cloud.subscriptions(NORTHWIND)
    assert [(s["displayName"], [a["roleDefinitionId"] for a in s["roleAssignments"]]) for s in demo] == [
        ("Northwind Production", [CONTRIBUTOR])
    ]
    production = demo[0]["subscriptionId"]
    assert cloud.remove_role_assignments(NORTHWIND, production, NORTHWIND_OID, CONTRIBUTOR) == 1
    assert every(cloud, SUBSCRIPTIONS, token)[0] == []  # no role left: the subscription is not seen
    cloud.add_role_assignment(NORTHWIND, production, NORTHWIND_OID, READER)
    assert len(every(cloud, SUBSCRIPTIONS, token)[0]) == 1

    section = {
        "subscriptions": [
            {
                "subscriptionId": sub(9),
                "displayName": "Admin",
                "roleAssignments": [assignment(NORTHWIND_OID, OWNER)],
            }
        ],
        "customRoles": [{"id": SOMEONE, "roleName": "Operator"}],
    }
    status, _ = call(cloud, f"/_sandbox/tenants/{NORTHWIND}/subscriptions", None, "PUT", section)
    assert status == 200
    status, shown = call(cloud, f"/_sandbox/tenants/{NORTHWIND}/subscriptions", None)
    assert (status, [s["subscriptionId"] for s in shown]) == (200, [sub(9)])
    status, refused = call(
        cloud,
        f"/_sandbox/tenants/{NORTHWIND}/subscriptions",
        None,
        "PUT",
        {"subscriptions": [{"subscriptionId": TAILSPIN_SUB, "displayName": "x"}]},
    )
    assert status == 400 and "belongs to another tenant" in refused["error"]
    assert [s["subscriptionId"] for s in cloud.subscriptions(TAILSPIN)] == [TAILSPIN_SUB]


def _scenario_with(scenario: Scenario, tenant_extra: dict[str, Any]) -> dict[str, Any]:
    from tenants import DEMO_SCENARIO

    data = json.loads(DEMO_SCENARIO.read_text())
    data["tenants"][0] = {
        key: value for key, value in data["tenants"][0].items() if key != "subscriptions"
    } | tenant_extra
    return data


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (
            {"subscriptions": [{"subscriptionId": sub(1), "displayName": "S", "colour": "red"}]},
            "tenants[0].subscriptions[0].colour: unknown field",
        ),
        (
            {"subscriptions": [{"subscriptionId": "nope", "displayName": "S"}]},
            "tenants[0].subscriptions[0].subscriptionId: not a GUID",
        ),
        (
            {"subscriptions": [{"subscriptionId": sub(1), "displayName": "S", "state": "Paused"}]},
            "tenants[0].subscriptions[0].state: expected one of",
        ),
        (
            {
                "subscriptions": [
                    {
                        "subscriptionId": sub(1),
                        "displayName": "S",
                        "roleAssignments": [assignment(NORTHWIND_OID, SOMEONE)],
                    }
                ]
            },
            "roleAssignments[0].roleDefinitionId: not a built-in role the sandbox knows nor a customRole",
        ),
        (
            {
                "subscriptions": [
                    {
                        "subscriptionId": sub(1),
                        "displayName": "S",
                        "roleAssignments": [
                            assignment(NORTHWIND_OID, READER, scope=f"/subscriptions/{sub(2)}")
                        ],
                    }
                ]
            },
            f"roleAssignments[0].scope: expected /subscriptions/{sub(1)} or a resource group or resource",
        ),
        (
            {
                "subscriptions": [
                    {
                        "subscriptionId": sub(1),
                        "displayName": "S",
                        "roleAssignments": [assignment(NORTHWIND_OID, READER, eligible="yes")],
                    }
                ]
            },
            "roleAssignments[0].eligible: expected true or false",
        ),
        (
            {"subscriptions": [{"subscriptionId": TAILSPIN_SUB, "displayName": "S"}]},
            "duplicate subscriptionId (a subscription belongs to one tenant)",
        ),
        (
            {"customRoles": [{"id": READER, "roleName": "Mine"}]},
            "tenants[0].customRoles[0].id: the ID of a built-in role",
        ),
        ({"subscriptions": {"subscriptionId": sub(1)}}, "tenants[0].subscriptions: expected a list"),
    ],
)
def test_the_scenario_section_is_read_strictly(scenario: Scenario, extra: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=None) as raised:
        Scenario.from_dict(_scenario_with(scenario, extra))
    assert error in str(raised.value)


def test_a_custom_role_assignment_in_the_scenario(scenario: Scenario) -> None:
    extra = {
        "customRoles": [{"id": SOMEONE, "roleName": "Operator"}],
        "subscriptions": [
            {
                "subscriptionId": sub(1),
                "displayName": "S",
                "roleAssignments": [assignment(NORTHWIND_OID, SOMEONE)],
            }
        ],
    }
    parsed = Scenario.from_dict(_scenario_with(scenario, extra)).tenants[0]
    assert [a.role_definition_id for a in parsed.subscriptions[0].role_assignments] == [SOMEONE]
    assert parsed.subscriptions[0].role_assignments[0].scope == f"/subscriptions/{sub(1)}"
