"""The stand-ins' owner-changing calls over real HTTPS (sandbox/cloud/power_platform/owner_changes.py),
as a repair makes them and as they fail: Dataverse `PATCH workflows({id})` with `ownerid@odata.bind`,
Power Apps `modifyAppOwner` and Power BI `Default.TakeOver`, each in a tenant of its own, called with a
real HTTPS client trusting the sandbox's CA and a token from its token endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.cloud import CloudSandbox
from sandbox.cloud.power_platform.world import systemuser_id
from sandbox.scenario import load_scenario
from tests.test_sandbox_power_platform import (
    ATTRIBUTION,
    FLOW,
    POWER_BI,
    POWERAPPS,
    SECRET_APP,
    App,
    call,
    dataverse,
    fresh,
)

MEGAN = "5b0f6c1e-2f0e-4a51-9b7e-3c1d2e4f5a60"
ALEX = "6c1f7d2f-3a1f-4b62-8c0d-4d2e3f5a6b71"
GONE = "7d2a8e3a-4b2a-4c73-9d1e-5e3f4a6b7c82"
STRANGER = "8e3b9f4b-5c3b-4d84-ae2f-6f4a5b7c8d93"
APP = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
ORPHAN_APP = "9c0d1e2f-3a4b-4c5d-6e7f-8091a2b3c4d5"
SOLUTION_FLOW = "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e"
PREMIUM_FLOW = "3c4d5e6f-7a8b-4c9d-0e1f-2a3b4c5d6e7f"
OUTSIDE_FLOW = "4d5e6f7a-8b9c-4d0e-1f2a-3b4c5d6e7f80"
MEMBER_WS, OTHER_WS = "5e6f7a8b-9c0d-4e1f-2a3b-4c5d6e7f8091", "6f7a8b9c-0d1e-4f2a-3b4c-5d6e7f8091a2"
DATASET, OTHER_DATASET = "7a8b9c0d-1e2f-4a3b-4c5d-6e7f8091a2b3", "8b9c0d1e-2f3a-4b4c-5d6e-7f8091a2b3c4"
ADMIN = "/providers/{provider}/scopes/admin/environments/{env}"
VERSION = "api-version=2016-11-01"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudSandbox]:
    with CloudSandbox(load_scenario(ATTRIBUTION), state_dir=tmp_path_factory.mktemp("owners")) as running:
        yield running


@pytest.fixture
def tenant(cloud: CloudSandbox) -> tuple[App, str]:
    """(the app signed in to a tenant of its own, its service principal's object id)."""
    user = {"displayName": "Megan", "userPrincipalName": "megan@t.example"}
    section = {
        "grants": {"registeredApps": [SECRET_APP], "powerBiApps": [SECRET_APP]},
        "users": [
            {"objectId": MEGAN, **user},
            {"objectId": ALEX, "displayName": "Alex", "userPrincipalName": "alex@t.example"},
            {"objectId": GONE, "displayName": "Pat", "userPrincipalName": "pat@t.example", "deleted": True},
        ],
        "environments": [
            {
                "id": "Default-{tenant}",
                "displayName": "Default",
                "applicationUsers": [SECRET_APP],
                "canvasApps": [
                    {"id": APP, "displayName": "Expenses", "owner": MEGAN, "coOwners": []},
                    {"id": ORPHAN_APP, "displayName": "Old timesheets", "owner": GONE},
                ],
                "flows": [
                    {"id": SOLUTION_FLOW, "displayName": "Notify", "creator": MEGAN, "solutionAware": True},
                    {
                        "id": PREMIUM_FLOW,
                        "displayName": "Sync orders",
                        "creator": MEGAN,
                        "solutionAware": True,
                        "premiumConnectors": ["shared_sql"],
                    },
                    {"id": OUTSIDE_FLOW, "displayName": "My flow", "creator": MEGAN},
                ],
            }
        ],
        "powerBi": {
            "workspaces": [
                {
                    "id": MEMBER_WS,
                    "name": "Sales",
                    "members": [SECRET_APP],
                    "datasets": [{"id": DATASET, "name": "Sales", "configuredBy": MEGAN}],
                },
                {
                    "id": OTHER_WS,
                    "name": "Finance",
                    "datasets": [{"id": OTHER_DATASET, "name": "Finance", "configuredBy": MEGAN}],
                },
            ]
        },
    }
    return fresh(cloud, section)


def env_of(app: App) -> str:
    return f"Default-{app.tenant_id}"


def send(app: App, method: str, url: str, scope: str, body: Any = None) -> tuple[int, Any]:
    raw = body if isinstance(body, str) or body is None else json.dumps(body)
    headers = {"Content-Type": "application/json"}
    status, _, reply = call(app.cloud, method, url, token=app.token(scope), body=raw, headers=headers)
    return status, reply


# ---- Dataverse: PATCH workflows({id}) ---------------------------------------------------------------


def patch_owner(app: App, workflow: str, body: Any) -> tuple[int, Any]:
    url, scope = dataverse(app.cloud, env_of(app), f"workflows({workflow})")
    return send(app, "PATCH", url, scope, body)


def workflow(app: App, workflow_id: str) -> dict[str, Any]:
    url, scope = dataverse(
        app.cloud, env_of(app), f"workflows({workflow_id})", **{"$select": "_ownerid_value,_createdby_value"}
    )
    status, _, body = app.get(url, scope)
    assert status == 200, body
    return dict(body)


def flow_state(app: App, flow_id: str) -> str:
    path = ADMIN.format(provider="Microsoft.ProcessSimple", env=env_of(app))
    status, _, body = app.get(f"{path}/flows/{flow_id}?{VERSION}", FLOW)
    assert status == 200, body
    return str(body["properties"]["state"])


def test_a_solution_flows_owner_is_bound_to_a_systemuser_and_its_creator_stays(
    tenant: tuple[App, str],
) -> None:
    app, object_id = tenant
    ours, megan = systemuser_id(env_of(app), object_id), systemuser_id(env_of(app), MEGAN)
    before = workflow(app, SOLUTION_FLOW)
    assert before["_ownerid_value"] == before["_createdby_value"] == megan

    status, body = patch_owner(app, SOLUTION_FLOW, {"ownerid@odata.bind": f"/systemusers({ours})"})
    assert (status, body) == (204, None)
    after = workflow(app, SOLUTION_FLOW)
    assert (after["_ownerid_value"], after["_createdby_value"]) == (ours, megan)  # the creator stays
    assert flow_state(app, SOLUTION_FLOW) == "Started"

    # Without the leading slash, as the Web API also takes it; back to the user.
    status, _ = patch_owner(app, SOLUTION_FLOW, {"ownerid@odata.bind": f"systemusers({megan})"})
    assert status == 204 and workflow(app, SOLUTION_FLOW)["_ownerid_value"] == megan


@pytest.mark.parametrize(
    "body",
    [
        {"ownerid": "x"},
        {"ownerid@odata.bind": "/teams(5b0f6c1e-2f0e-4a51-9b7e-3c1d2e4f5a60)"},
        {"ownerid@odata.bind": "/systemusers(not-a-guid)"},
        {"ownerid@odata.bind": "/systemusers({megan})", "name": "renamed"},
        {"ownerid@odata.bind": 5},
        [],
        "not json",
    ],
    ids=["plain-ownerid", "a-team", "not-a-guid", "another-column", "not-text", "a-list", "not-json"],
)
def test_a_wrong_body_is_refused_and_changes_nothing(tenant: tuple[App, str], body: Any) -> None:
    app, _ = tenant
    megan = systemuser_id(env_of(app), MEGAN)
    if isinstance(body, dict) and isinstance(body.get("ownerid@odata.bind"), str):
        body = {**body, "ownerid@odata.bind": body["ownerid@odata.bind"].format(megan=megan)}
    status, reply = patch_owner(app, SOLUTION_FLOW, body)
    assert status == 400 and reply["error"]["code"] == "0x80048d19", reply
    assert workflow(app, SOLUTION_FLOW)["_ownerid_value"] == megan


def test_an_unknown_user_a_flow_outside_a_solution_and_another_table_are_refused(
    tenant: tuple[App, str],
) -> None:
    app, object_id = tenant
    ours = systemuser_id(env_of(app), object_id)
    unknown = systemuser_id(env_of(app), STRANGER)
    status, reply = patch_owner(app, SOLUTION_FLOW, {"ownerid@odata.bind": f"/systemusers({unknown})"})
    assert status == 404 and reply["error"]["code"] == "0x80040217"
    assert unknown in reply["error"]["message"] and "systemuser" in reply["error"]["message"]
    # A flow outside a solution is not a Dataverse workflow row: there is nothing to PATCH.
    status, reply = patch_owner(app, OUTSIDE_FLOW, {"ownerid@odata.bind": f"/systemusers({ours})"})
    assert status == 404 and reply["error"]["code"] == "0x80040217"
    url, scope = dataverse(app.cloud, env_of(app), f"canvasapps({APP})")
    status, reply = send(app, "PATCH", url, scope, {"ownerid@odata.bind": f"/systemusers({ours})"})
    assert status == 405, reply
    assert workflow(app, SOLUTION_FLOW)["_ownerid_value"] == systemuser_id(env_of(app), MEGAN)


def test_a_premium_flow_without_a_process_licence_is_suspended_under_a_service_principal(
    tenant: tuple[App, str],
) -> None:
    app, object_id = tenant
    path = ADMIN.format(provider="Microsoft.ProcessSimple", env=env_of(app))
    status, _, detail = app.get(f"{path}/flows/{PREMIUM_FLOW}?{VERSION}", FLOW)
    assert status == 200
    tiers = {k: v["tier"] for k, v in detail["properties"]["connectionReferences"].items()}
    assert tiers == {"shared_sql": "Premium", "shared_office365": "Standard"}
    url, scope = dataverse(
        app.cloud,
        env_of(app),
        "flowcapacityassignments",
        **{"$filter": f"_regarding_value eq {PREMIUM_FLOW}"},
    )
    status, _, licences = app.get(url, scope)
    assert status == 200 and licences["value"] == []

    ours = systemuser_id(env_of(app), object_id)
    status, _ = patch_owner(app, PREMIUM_FLOW, {"ownerid@odata.bind": f"/systemusers({ours})"})
    assert status == 204
    assert flow_state(app, PREMIUM_FLOW) == "Suspended"  # what the plan's refusal protects against
    assert flow_state(app, SOLUTION_FLOW) == "Started"


# ---- Power Apps: modifyAppOwner ---------------------------------------------------------------------


def modify(app: App, body: Any, app_id: str = APP, env: str | None = None) -> tuple[int, Any]:
    path = ADMIN.format(provider="Microsoft.PowerApps", env=env or env_of(app))
    return send(app, "POST", f"{path}/apps/{app_id}/modifyAppOwner?{VERSION}", POWERAPPS, body)


def owners(app: App) -> dict[str, str]:
    """The app's permissions: principal id -> role."""
    path = ADMIN.format(provider="Microsoft.PowerApps", env=env_of(app))
    found = {}
    for page in app.pages(f"{path}/apps/{APP}/permissions?{VERSION}", POWERAPPS):
        for entry in page["value"]:
            found[entry["properties"]["principal"]["id"]] = entry["properties"]["roleName"]
    return found


def test_modify_app_owner_takes_the_real_body_and_keeps_the_old_owner_as_co_owner(
    tenant: tuple[App, str],
) -> None:
    app, object_id = tenant
    status, _ = modify(app, {"newAppOwner": object_id, "roleForOldAppOwner": "CanEdit"})
    assert status == 200
    assert owners(app) == {object_id: "Owner", MEGAN: "CanEdit"}
    # Back to the user: the service principal cannot be a co-owner, so it is simply gone.
    status, _ = modify(app, {"newAppOwner": MEGAN, "roleForOldAppOwner": "CanView"})
    assert status == 200 and owners(app) == {MEGAN: "Owner"}
    status, _ = modify(app, {"newAppOwner": ALEX, "roleForOldAppOwner": "CanView"})
    assert status == 200 and owners(app) == {ALEX: "Owner", MEGAN: "CanView"}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"roleForOldAppOwner": "CanEdit"}, 400, "InvalidRequestContent"),
        ({"newAppOwner": ALEX, "roleForOldAppOwner": "Owner"}, 400, "InvalidRequestContent"),
        ({"newAppOwner": 7}, 400, "InvalidRequestContent"),
        ("[]", 400, "InvalidRequestContent"),
        ({"newAppOwner": GONE, "roleForOldAppOwner": "CanEdit"}, 400, "InvalidPrincipal"),
        ({"newAppOwner": STRANGER, "roleForOldAppOwner": "CanEdit"}, 400, "InvalidPrincipal"),
    ],
    ids=["no-owner", "bad-role", "not-text", "a-list", "a-deleted-user", "an-unknown-principal"],
)
def test_modify_app_owner_refuses_a_wrong_body_or_principal(
    tenant: tuple[App, str], body: Any, status: int, code: str
) -> None:
    app, _ = tenant
    answered, reply = modify(app, body)
    assert (answered, reply["error"]["code"]) == (status, code), reply
    assert owners(app) == {MEGAN: "Owner"}


def test_modify_app_owner_of_an_unknown_app_or_environment_is_404(tenant: tuple[App, str]) -> None:
    app, object_id = tenant
    status, reply = modify(app, {"newAppOwner": object_id}, app_id=STRANGER)
    assert (status, reply["error"]["code"]) == (404, "AppNotFound")
    status, reply = modify(app, {"newAppOwner": object_id}, env=STRANGER)
    assert (status, reply["error"]["code"]) == (404, "EnvironmentNotFound")


def test_a_deleted_owner_shows_by_id_alone(tenant: tuple[App, str]) -> None:
    """What the plan reads to warn that an undo could not give an app back to its deleted owner."""
    app, object_id = tenant
    path = ADMIN.format(provider="Microsoft.PowerApps", env=env_of(app))

    def owner_of(app_id: str) -> dict[str, Any]:
        entries = app.pages(f"{path}/apps/{app_id}/permissions?{VERSION}", POWERAPPS)[0]["value"]
        return dict(
            next(e for e in entries if e["properties"]["roleName"] == "Owner")["properties"]["principal"]
        )

    assert owner_of(APP)["displayName"] == "Megan"
    assert owner_of(ORPHAN_APP) == {"id": GONE, "type": "User", "tenantId": app.tenant_id}
    # The app can be given to our service principal, but never back to its deleted owner.
    assert modify(app, {"newAppOwner": object_id}, app_id=ORPHAN_APP)[0] == 200
    status, reply = modify(app, {"newAppOwner": GONE}, app_id=ORPHAN_APP)
    assert (status, reply["error"]["code"]) == (400, "InvalidPrincipal")
    assert owner_of(ORPHAN_APP)["id"] == object_id


# ---- Power BI: Default.TakeOver ---------------------------------------------------------------------


def take_over(app: App, workspace: str, dataset: str) -> tuple[int, Any]:
    url = f"{app.cloud.base_url}/v1.0/myorg/groups/{workspace}/datasets/{dataset}/Default.TakeOver"
    return send(app, "POST", url, POWER_BI, {})


def configured_by(app: App, workspace: str) -> dict[str, str]:
    url = f"{app.cloud.base_url}/v1.0/myorg/groups/{workspace}/datasets"
    status, _, body = app.get(url, POWER_BI)
    assert status == 200, body
    return {dataset["id"]: dataset["configuredBy"] for dataset in body["value"]}


def test_a_member_takes_a_dataset_over_and_becomes_its_owner(tenant: tuple[App, str]) -> None:
    app, _ = tenant
    assert configured_by(app, MEMBER_WS) == {DATASET: "megan@t.example"}
    status, body = take_over(app, MEMBER_WS, DATASET)
    assert (status, body) == (200, None)
    assert configured_by(app, MEMBER_WS) == {DATASET: SECRET_APP}  # a service principal: its client id


def test_a_takeover_outside_membership_or_of_an_unknown_dataset_is_refused(tenant: tuple[App, str]) -> None:
    app, _ = tenant
    status, body = take_over(app, OTHER_WS, OTHER_DATASET)
    assert status == 403 and body["error"]["code"] == "PowerBINotAuthorizedException"
    status, body = take_over(app, MEMBER_WS, OTHER_DATASET)  # in another workspace
    assert status == 404 and body["error"]["code"] == "PowerBIEntityNotFound"
    status, body = take_over(app, STRANGER, DATASET)
    assert status == 404 and body["error"]["code"] == "PowerBIEntityNotFound"
    assert configured_by(app, MEMBER_WS) == {DATASET: "megan@t.example"}
