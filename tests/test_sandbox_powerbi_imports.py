"""The Power BI stand-in's workspace imports over real HTTPS (power_platform/powerbi_imports.py):
a .pbix published as the service principal becomes a dataset it is the publisher of (`configuredBy`),
the workspace membership and tenant grant it needs, nameConflict's answers, and a file that is no .pbix."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from sandbox.cloud import CloudSandbox
from sandbox.cloud.power_platform import pbix_file
from sandbox.scenario import load_scenario
from tests.test_sandbox_power_platform import ATTRIBUTION, POWER_BI, SECRET_APP, App, call, fresh

USER = "0c7d9e1f-3a2b-4c5d-8e9f-1a2b3c4d5e6f"
DEADLINE = 10.0
BOUNDARY = "----pal-sandbox-boundary"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudSandbox]:
    with CloudSandbox(load_scenario(ATTRIBUTION), state_dir=tmp_path_factory.mktemp("pbi")) as running:
        status, _, _ = call(
            running, "PUT", "/_sandbox/power-platform/delivery-delay", body=json.dumps({"seconds": 0.5})
        )
        assert status == 200
        yield running


def tenant(cloud: CloudSandbox) -> tuple[App, str, str, str]:
    """(app, a workspace it is a member of, one it is not, its service principal's object id)."""
    member, other = str(uuid.uuid4()), str(uuid.uuid4())
    section = {
        "grants": {"powerBiApps": [SECRET_APP]},
        "users": [{"objectId": USER, "displayName": "Nestor", "userPrincipalName": "nestor@t.example"}],
        "powerBi": {
            "workspaces": [
                {
                    "id": member,
                    "name": "Sales",
                    "members": [SECRET_APP],
                    "datasets": [{"id": str(uuid.uuid4()), "name": "Revenue", "configuredBy": USER}],
                },
                {"id": other, "name": "Finance"},
            ]
        },
    }
    app, object_id = fresh(cloud, section)
    return app, member, other, object_id


def multipart(data: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="report.pbix"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def publish(app: App, workspace: str, name: str | None, data: bytes, conflict: str = "") -> tuple[int, Any]:
    query = [f"datasetDisplayName={quote(name)}"] if name is not None else []
    query += [f"nameConflict={conflict}"] if conflict else []
    url = f"/v1.0/myorg/groups/{workspace}/imports?{'&'.join(query)}"
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    raw = multipart(data).decode("latin-1")  # http.client sends a str body as ISO-8859-1: these bytes
    status, _, body = call(app.cloud, "POST", url, token=app.token(POWER_BI), body=raw, headers=headers)
    return status, body


def finished(app: App, workspace: str, import_id: str) -> tuple[dict[str, Any], list[str]]:
    """The import once it left Publishing, and the states seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        status, _, body = app.get(f"/v1.0/myorg/groups/{workspace}/imports/{import_id}", POWER_BI)
        assert status == 200, body
        if not seen or seen[-1] != body["importState"]:
            seen.append(body["importState"])
        if body["importState"] != "Publishing":
            return body, seen
    raise AssertionError(f"the import did not finish in {DEADLINE} s: {seen}")


def datasets(app: App, workspace: str) -> dict[str, dict[str, Any]]:
    status, _, body = app.get(f"/v1.0/myorg/groups/{workspace}/datasets", POWER_BI)
    assert status == 200, body
    return {dataset["name"]: dataset for dataset in body["value"]}


def test_a_pbix_published_by_the_service_principal_is_its_dataset(cloud: CloudSandbox) -> None:
    app, workspace, _, _ = tenant(cloud)
    status, body = publish(app, workspace, "Pipeline", pbix_file("Pipeline"), "Abort")
    assert status == 202 and set(body) == {"id"}
    done, seen = finished(app, workspace, body["id"])
    assert seen == ["Publishing", "Succeeded"]
    assert [d["configuredBy"] for d in done["datasets"]] == [SECRET_APP]
    assert [(r["name"], r["datasetId"], r["createdBy"]) for r in done["reports"]] == [
        ("Pipeline", done["datasets"][0]["id"], SECRET_APP)
    ]
    status, _, admin = app.get("/v1.0/myorg/admin/datasets", POWER_BI)
    assert status == 200
    by_name = {d["name"]: d for d in admin["value"]}
    assert (
        by_name["Pipeline"]["configuredBy"] == SECRET_APP and by_name["Pipeline"]["workspaceId"] == workspace
    )
    assert by_name["Revenue"]["configuredBy"] == "nestor@t.example"
    status, _, reports = app.get(f"/v1.0/myorg/groups/{workspace}/reports", POWER_BI)
    assert status == 200 and [r["id"] for r in reports["value"]] == [done["reports"][0]["id"]]


def test_the_service_principal_must_be_a_workspace_member_and_granted(cloud: CloudSandbox) -> None:
    app, _, other, _ = tenant(cloud)
    status, body = publish(app, other, "Budget", pbix_file())
    assert status == 403 and body["error"]["code"] == "PowerBINotAuthorizedException"
    assert body["error"]["pbi.error"]["code"] == "PowerBINotAuthorizedException"
    member = f"/_sandbox/tenants/{app.tenant_id}/workspaces/{other}/members/{SECRET_APP}"
    assert call(cloud, "PUT", member)[0] == 200
    status, body = publish(app, other, "Budget", pbix_file())
    assert status == 202
    assert finished(app, other, body["id"])[0]["importState"] == "Succeeded"
    status, body = publish(app, str(uuid.uuid4()), "Budget", pbix_file())
    assert status == 404 and body["error"]["code"] == "PowerBIEntityNotFound"
    cloud.set_power_platform_grants(app.tenant_id, SECRET_APP, power_bi=False)
    status, body = publish(app, other, "Budget", pbix_file())
    assert status == 401 and body["error"]["code"] == "PowerBINotAuthorizedException"


def test_name_conflicts_are_answered_as_asked(cloud: CloudSandbox) -> None:
    app, workspace, _, _ = tenant(cloud)
    revenue_id = datasets(app, workspace)["Revenue"]["id"]
    status, body = publish(app, workspace, "Revenue", pbix_file(), "Abort")
    assert status == 409 and body["error"]["code"] == "DuplicatePackageFoundError"
    status, body = publish(app, workspace, "Nothing here", pbix_file(), "Overwrite")
    assert status == 404 and body["error"]["code"] == "DuplicatePackageNotFoundError"
    status, body = publish(app, workspace, "Revenue", pbix_file(), "Sometimes")
    assert status == 400
    status, body = publish(app, workspace, "Revenue", pbix_file(), "GenerateUniqueName")
    assert status == 202
    assert [d["name"] for d in finished(app, workspace, body["id"])[0]["datasets"]] == ["Revenue (2)"]
    status, body = publish(app, workspace, "Revenue", pbix_file(), "CreateOrOverwrite")
    assert status == 202
    done, _ = finished(app, workspace, body["id"])
    assert [(d["id"], d["configuredBy"]) for d in done["datasets"]] == [(revenue_id, SECRET_APP)]
    assert len([name for name in datasets(app, workspace) if name.startswith("Revenue")]) == 2
    status, body = publish(app, workspace, "Revenue", pbix_file(), "Ignore")
    assert status == 202 and finished(app, workspace, body["id"])[0]["importState"] == "Succeeded"
    status, body = publish(app, workspace, "Revenue", pbix_file(), "Overwrite")
    assert status == 409 and body["error"]["code"] == "MoreThanOneDuplicatePackageFoundError"


def test_a_file_that_is_no_pbix_fails_the_import(cloud: CloudSandbox) -> None:
    app, workspace, _, _ = tenant(cloud)
    for data in (b"MZ this is not a zip at all", pbix_file(valid=False)):
        status, body = publish(app, workspace, "Broken", data)
        assert status == 202
        done, seen = finished(app, workspace, body["id"])
        assert seen == ["Publishing", "Failed"] and done["error"]["code"] == "ImportUnsupportedFileFormat"
        assert done["datasets"] == [] and done["reports"] == []
    assert "Broken" not in datasets(app, workspace)
    status, body = publish(app, workspace, None, pbix_file())
    assert status == 400 and body["error"]["code"] == "InvalidRequest"
    url = f"/v1.0/myorg/groups/{workspace}/imports?datasetDisplayName=X"
    status, _, body = call(
        cloud, "POST", url, token=app.token(POWER_BI), body="{}", headers={"Content-Type": "application/json"}
    )
    assert status == 400
