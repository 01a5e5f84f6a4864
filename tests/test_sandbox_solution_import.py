"""The Dataverse stand-in's solution delivery over real HTTPS (sandbox/cloud/power_platform/solutions.py,
solution_import.py, solution_zip.py): StageSolution, ImportSolutionAsync, the asynchronous operation
and import job polled to their end, the importing service principal made owner and creator of what
it imports, each failure in Dataverse's shape, and hostile files refused without a crash."""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree

import pytest

from sandbox.cloud import CloudSandbox
from sandbox.cloud.power_platform import (
    bot,
    canvas_app,
    connection_reference,
    flow,
    model_driven_app,
    solution_zip,
)
from sandbox.cloud.power_platform.world import systemuser_id
from sandbox.scenario import load_scenario
from tests.test_sandbox_power_platform import (
    ATTRIBUTION,
    BAP_ENVIRONMENTS,
    POWERAPPS,
    SECRET_APP,
    App,
    call,
    dataverse,
    fresh,
)

USER = "5b0f6c1e-2f0e-4a51-9b7e-3c1d2e4f5a60"
USER_FLOW = "7a1e2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b"
SECRET_NAME = "Quarterly payroll export - do not share"
DEADLINE = 10.0


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudSandbox]:
    with CloudSandbox(load_scenario(ATTRIBUTION), state_dir=tmp_path_factory.mktemp("sol")) as running:
        status, _, _ = call(
            running, "PUT", "/_sandbox/power-platform/delivery-delay", body=json.dumps({"seconds": 0.5})
        )
        assert status == 200
        yield running


def tenant(cloud: CloudSandbox, *, app_user: bool = True, **environment: Any) -> tuple[App, str, str]:
    """(app, environment id, its service principal's object id) in a tenant of its own."""
    env: dict[str, Any] = {"id": "Default-{tenant}", "displayName": "Default", **environment}
    if app_user:
        env["applicationUsers"] = [SECRET_APP]
    section = {
        "grants": {"registeredApps": [SECRET_APP]},
        "users": [{"objectId": USER, "displayName": "Megan", "userPrincipalName": "megan@t.example"}],
        "environments": [env],
    }
    app, object_id = fresh(cloud, section)
    return app, f"Default-{app.tenant_id}", object_id


def post(app: App, env: str, action: str, body: object) -> tuple[int, Any]:
    url, scope = dataverse(app.cloud, env, action)
    raw = body if isinstance(body, str) else json.dumps(body)
    status, _, reply = call(
        app.cloud, "POST", url, token=app.token(scope), body=raw, headers={"Content-Type": "application/json"}
    )
    return status, reply


def get(app: App, env: str, segment: str, **query: str) -> Any:
    status, _, body = app.get(*dataverse(app.cloud, env, segment, **query))
    assert status == 200, body
    return body


def encoded(data: bytes) -> str:
    return base64.b64encode(data).decode()


def import_file(app: App, env: str, data: bytes, **extra: Any) -> dict[str, Any]:
    body = {
        "OverwriteUnmanagedCustomizations": False,
        "PublishWorkflows": True,
        "CustomizationFile": encoded(data),
    }
    status, reply = post(app, env, "ImportSolutionAsync", {**body, **extra})
    assert status == 200, reply
    return dict(reply)


def finished(app: App, env: str, operation_id: str) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """The asynchronous operation once completed, and the (statecode, statuscode) pairs seen on the way."""
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        operation = get(app, env, f"asyncoperations({operation_id})")
        pair = (operation["statecode"], operation["statuscode"])
        if not seen or seen[-1] != pair:
            seen.append(pair)
        if operation["statecode"] == 3:
            return operation, seen
    raise AssertionError(f"the import did not finish in {DEADLINE} s: {seen}")


def results(log: str) -> dict[str, str]:
    """Each component's result in an import log, by its name (the manifest's under its unique name)."""
    root = ElementTree.fromstring(log)
    found = {}
    for element in root.iter():
        result = element.find("result")
        if result is not None:
            found[element.get("name") or element.get("id") or ""] = result.get("result", "")
    return found


def components(cloud: CloudSandbox, env: str) -> dict[str, dict[str, Any]]:
    status, _, body = call(cloud, "GET", f"/_sandbox/environments/{env}/components")
    assert status == 200, body
    return {item["name"]: item for item in body["value"]}


# ---- a successful import ----------------------------------------------------------------------------


def stage_then_import(app: App, env: str, job_id: str) -> None:
    """StageSolution, then ImportSolutionAsync of the staged upload, polled to success."""
    parts = [
        flow("cr_orders_flow", "Orders flow"),
        canvas_app("cr_orders_app", "Orders app"),
        bot("cr_helpdesk", "Helpdesk bot"),
        model_driven_app("cr_orders_hub", "Orders hub"),
        connection_reference("cr_office"),
    ]
    status, staged = post(
        app,
        env,
        "StageSolution",
        {"CustomizationFile": encoded(solution_zip("Orders", "1.2.0.0", components=parts))},
    )
    assert status == 200, staged
    results_ = staged["StageSolutionResults"]
    assert results_["StageSolutionStatus"] == "Passed" and results_["MissingDependencies"] == []
    assert results_["SolutionDetails"] == {
        "SolutionUniqueName": "Orders",
        "SolutionFriendlyName": "Orders",
        "SolutionVersion": "1.2.0.0",
        "IsManaged": True,
    }
    connection = {
        "@odata.type": "Microsoft.Dynamics.CRM.connectionreference",
        "connectionreferencelogicalname": "cr_office",
        "connectionid": "shared-office365-1",
        "connectorid": "/providers/Microsoft.PowerApps/apis/shared_office365",
    }
    status, accepted = post(
        app,
        env,
        "ImportSolutionAsync",
        {
            "OverwriteUnmanagedCustomizations": False,
            "PublishWorkflows": True,
            "SolutionParameters": {"StageSolutionUploadId": results_["StageSolutionUploadId"]},
            "ComponentParameters": [connection],
            "ImportJobId": job_id,
        },
    )
    assert status == 200 and accepted["ImportJobKey"] == job_id, accepted
    operation, seen = finished(app, env, accepted["AsyncOperationId"])
    assert seen[0][0] in (0, 2) and seen[-1] == (3, 30) and len(seen) >= 2
    assert operation["completedon"] and operation["message"] is None


def assert_tables_name(app: App, env: str, me: str) -> None:
    """Every table the audit reads names `me` (a systemuser id) as owner and creator of the import."""
    flows = get(app, env, "workflows", **{"$filter": "category eq 5"})["value"]
    assert [(f["name"], f["_ownerid_value"], f["_createdby_value"], f["ismanaged"]) for f in flows] == [
        ("Orders flow", me, me, True)
    ]
    for table in ("canvasapps", "bots", "connectionreferences"):
        rows = get(app, env, table)["value"]
        assert [(row["_ownerid_value"], row["_createdby_value"]) for row in rows] == [(me, me)], table
    assert get(app, env, "connectionreferences")["value"][0]["connectionid"] == "shared-office365-1"
    assert [a["_createdby_value"] for a in get(app, env, "appmodules")["value"]] == [me]
    solution = get(app, env, "solutions", **{"$filter": "uniquename eq 'Orders'"})["value"]
    assert [(s["version"], s["ismanaged"], s["_createdby_value"]) for s in solution] == [
        ("1.2.0.0", True, me)
    ]


def test_import_makes_the_service_principal_owner_and_creator(cloud: CloudSandbox) -> None:
    app, env, sp = tenant(cloud, app_user=False)
    add = f"{BAP_ENVIRONMENTS}/{env}/addAppUser?api-version=2020-10-01"
    added = call(
        cloud, "POST", add, token=app.token(POWERAPPS), body=json.dumps({"servicePrincipalAppId": SECRET_APP})
    )
    assert added[0] == 200
    job_id = str(uuid.uuid4())
    stage_then_import(app, env, job_id)
    job = get(app, env, f"importjobs({job_id})")
    me = systemuser_id(env, sp)
    assert (job["solutionname"], job["progress"], job["_createdby_value"]) == ("Orders", 100.0, me)
    assert job["completedon"] and set(results(job["data"]).values()) == {"success"}
    assert_tables_name(app, env, systemuser_id(env, sp))
    owned = components(cloud, env)
    assert {name: (c["owner"], c["created_by"]) for name, c in owned.items()} == {
        name: (sp, sp)
        for name in ("Orders flow", "Orders app", "Helpdesk bot", "Orders hub", "cr_office", "Orders")
    }
    apps_url = f"/providers/Microsoft.PowerApps/scopes/admin/environments/{env}/apps?api-version=2016-11-01"
    status, _, apps = app.get(apps_url, POWERAPPS)
    assert status == 200 and [a["properties"]["owner"]["id"] for a in apps["value"]] == [sp]


def test_reimport_keeps_existing_owners_and_gives_new_components_to_the_importer(cloud: CloudSandbox) -> None:
    user_flow = {"id": USER_FLOW, "displayName": "Approvals", "creator": USER, "solutionAware": True}
    app, env, sp = tenant(cloud, flows=[user_flow])
    parts = [flow("cr_approvals", "Approvals", component_id=USER_FLOW), flow("cr_reminders", "Reminders")]
    for version in ("1.0.0.0", "1.0.0.0", "1.1.0.0"):
        accepted = import_file(app, env, solution_zip("ApprovalKit", version, components=parts))
        assert finished(app, env, accepted["AsyncOperationId"])[0]["statuscode"] == 30
    owned = components(cloud, env)
    assert (owned["Approvals"]["owner"], owned["Approvals"]["created_by"]) == (USER, USER)
    assert (owned["Reminders"]["owner"], owned["Reminders"]["created_by"]) == (sp, sp)
    solutions = get(app, env, "solutions", **{"$filter": "uniquename eq 'ApprovalKit'"})["value"]
    assert [s["version"] for s in solutions] == ["1.1.0.0"]


# ---- failures ----------------------------------------------------------------------------------------


def failed(app: App, env: str, data: bytes, **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    accepted = import_file(app, env, data, **extra)
    operation, seen = finished(app, env, accepted["AsyncOperationId"])
    assert seen[-1] == (3, 31), seen
    job = get(app, env, f"importjobs({accepted['ImportJobKey']})")
    assert job["completedon"] and "failure" in results(job["data"]).values()
    for text in (operation["message"], operation["friendlymessage"]):  # the log, like Dataverse's, names
        assert SECRET_NAME not in text  # the components: the product must not copy it into a message
    return operation, job


def test_a_missing_dependency_fails_the_import_and_shows_in_staging(cloud: CloudSandbox) -> None:
    app, env, _ = tenant(cloud)
    data = solution_zip(
        "Reports", components=[flow("cr_x", SECRET_NAME)], missing_dependencies=["BaseTables"]
    )
    status, staged = post(app, env, "StageSolution", {"CustomizationFile": encoded(data)})
    assert status == 200 and staged["StageSolutionResults"]["StageSolutionStatus"] == "Failed"
    assert [d["RequiredSolutionName"] for d in staged["StageSolutionResults"]["MissingDependencies"]] == [
        "BaseTables"
    ]
    operation, _ = failed(app, env, data)
    assert (
        "Some dependencies are missing" in operation["friendlymessage"]
        and '"BaseTables"' in operation["message"]
    )
    assert operation["errorcode"] == int("0x8004801D", 16) - (1 << 32)
    assert "Reports" not in components(cloud, env)


def test_a_connection_reference_without_a_connection_fails_the_import(cloud: CloudSandbox) -> None:
    app, env, _ = tenant(cloud)
    data = solution_zip("Mail", components=[flow("cr_mail", SECRET_NAME), connection_reference("cr_outlook")])
    operation, job = failed(app, env, data)
    assert "cr_outlook" in operation["friendlymessage"] and "connectionid" in operation["friendlymessage"]
    assert results(job["data"])["cr_outlook"] == "failure"
    assert SECRET_NAME not in components(cloud, env)


def test_an_older_version_of_an_installed_managed_solution_fails(cloud: CloudSandbox) -> None:
    installed = {
        "id": str(uuid.uuid4()),
        "uniqueName": "Ledger",
        "version": "2.0.0.0",
        "managed": True,
        "createdBy": USER,
    }
    app, env, _ = tenant(cloud, solutions=[installed])
    operation, _ = failed(
        app, env, solution_zip("Ledger", "1.9.0.0", components=[bot("cr_ledger", SECRET_NAME)])
    )
    assert "must have a higher version" in operation["friendlymessage"]
    assert [
        s["version"] for s in get(app, env, "solutions", **{"$filter": "uniquename eq 'Ledger'"})["value"]
    ] == ["2.0.0.0"]


def test_a_caller_without_an_application_user_is_not_a_member(cloud: CloudSandbox) -> None:
    app, env, _ = tenant(cloud, app_user=False)
    for action in ("StageSolution", "ImportSolutionAsync"):
        status, body = post(app, env, action, {"CustomizationFile": encoded(solution_zip("Any"))})
        assert (status, body) == (
            403,
            {"error": {"code": "0x80072560", "message": "The user is not a member of the organization."}},
        )


def test_unknown_operations_and_staged_uploads_are_not_found(cloud: CloudSandbox) -> None:
    app, env, _ = tenant(cloud)
    missing = str(uuid.uuid4())
    status, _, body = app.get(*dataverse(cloud, env, f"asyncoperations({missing})"))
    assert status == 404 and body["error"]["code"] == "0x80040217"
    body = {"OverwriteUnmanagedCustomizations": True, "PublishWorkflows": True}
    status, reply = post(
        app, env, "ImportSolutionAsync", {**body, "SolutionParameters": {"StageSolutionUploadId": missing}}
    )
    assert status == 404 and reply["error"]["code"] == "0x80040217"
    status, reply = post(app, env, "ImportSolutionAsync", {"CustomizationFile": encoded(solution_zip("A"))})
    assert status == 400 and reply["error"]["code"] == "0x80048d19"


# ---- hostile files -------------------------------------------------------------------------------------


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def with_solution_xml(xml: bytes) -> bytes:
    return zipped(
        {
            "[Content_Types].xml": b"<Types />",
            "solution.xml": xml,
            "customizations.xml": b"<ImportExportXml />",
        }
    )


LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
    b"<ImportExportXml><SolutionManifest><UniqueName>&lol2;</UniqueName></SolutionManifest></ImportExportXml>"
)
HOSTILE = {
    "not base64": ("%%% not base64 %%%", "0x80048d19", "base64"),
    "not a zip": (encoded(b"MZ" + SECRET_NAME.encode() * 10), "0x8004800d", "not a compressed"),
    "path traversal": (
        encoded(zipped({"../../evil.xml": b"x", "solution.xml": b"<a/>", "customizations.xml": b"<a/>"})),
        "0x8004800d",
        "plain relative path",
    ),
    "zip bomb": (
        encoded(
            zipped(
                {
                    "[Content_Types].xml": b"<a/>",
                    "solution.xml": b" " * (9 * 1024 * 1024),
                    "customizations.xml": b"<a/>",
                }
            )
        ),
        "0x8004800d",
        "expands beyond",
    ),
    "entities": (encoded(with_solution_xml(LAUGHS)), "0x8004800d", "DTD or an entity"),
    "not xml": (encoded(with_solution_xml(SECRET_NAME.encode() + b"<<<")), "0x8004800d", "not well-formed"),
    "missing files": (encoded(zipped({"readme.txt": b"hi"})), "0x8004800d", "required file"),
    "bad unique name": (
        encoded(
            with_solution_xml(
                b"<ImportExportXml><SolutionManifest><UniqueName>Robert'); DROP--</UniqueName>"
                b"<Version>1.0</Version></SolutionManifest></ImportExportXml>"
            )
        ),
        "0x8004800d",
        "UniqueName",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_file_is_refused_precisely_and_the_server_keeps_answering(
    cloud: CloudSandbox, case: str
) -> None:
    app, env, _ = tenant(cloud)
    content, code, rule = HOSTILE[case]
    for action in ("StageSolution", "ImportSolutionAsync"):
        body = {
            "CustomizationFile": content,
            "OverwriteUnmanagedCustomizations": False,
            "PublishWorkflows": False,
        }
        status, reply = post(app, env, action, body)
        assert status == 400 and reply["error"]["code"] == code, reply
        message = reply["error"]["message"]
        assert (
            rule in message and SECRET_NAME not in message and "DROP" not in message and "lol" not in message
        )
    assert get(app, env, "WhoAmI")["UserId"]
    assert get(app, env, "asyncoperations")["value"] == []
