"""The Power Platform part of the scenario format (sandbox/scenario_power_platform.py): its errors
name the field; the admin API installs a tenant's Power Platform and changes its grants from another
process; the fleet's large Power Platform tenant for the benchmark loads and serves."""

from __future__ import annotations

import http.client
import json
import ssl
import uuid
from pathlib import Path
from typing import Any

import pytest

from sandbox.cloud import CloudSandbox
from sandbox.fleet import power_platform_scenario
from sandbox.scenario import Scenario

ROOT = Path(__file__).resolve().parents[1]
ATTRIBUTION = ROOT / "sandbox" / "scenarios" / "attribution.json"
SECRET_APP, CERT_APP = "3d396df3-d832-4c8b-a51d-91fbcce04b1d", "15e6da4c-256b-441c-a9e3-585cf41b8266"
FABRIKAM_SP = "fad08631-a20d-46eb-9c68-9bb2395042d8"
BAP_ENVIRONMENTS = "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?api-version=2020-10-01"


def call(
    cloud: CloudSandbox, method: str, path: str, body: object = None, token: str = ""
) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=str(cloud.ca_path))
    connection = http.client.HTTPSConnection(
        "127.0.0.1", int(cloud.base_url.rsplit(":", 1)[1]), context=context
    )
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        connection.close()


def _broken(change: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ATTRIBUTION.read_text())
    change(data["tenants"][1]["powerPlatform"], data)
    return data


_FABRIKAM_PP = "tenants[1].powerPlatform"
_ENV1 = f"{_FABRIKAM_PP}.environments[1]"
_ENV0 = f"{_FABRIKAM_PP}.environments[0]"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda pp, d: pp.update(grant={}), f"{_FABRIKAM_PP}.grant: unknown field"),
        (
            lambda pp, d: pp["grants"].update(powerBiApps=[CERT_APP]),
            f"{_FABRIKAM_PP}.grants.powerBiApps[0]: no service principal of this clientId",
        ),
        (
            lambda pp, d: pp["environments"][0].update(id="prod"),
            f"{_ENV0}.id: expected a GUID or Default-<tenant GUID>",
        ),
        (
            lambda pp, d: pp["environments"][2].update(
                bots=[{"id": str(uuid.uuid4()), "name": "b", "owner": FABRIKAM_SP}]
            ),
            f"{_FABRIKAM_PP}.environments[2].bots: this environment has no Dataverse",
        ),
        (
            lambda pp, d: pp["environments"][0]["canvasApps"][0].update(owner=str(uuid.uuid4())),
            f"{_ENV0}.canvasApps[0].owner: no user (users) or service principal",
        ),
        (
            lambda pp, d: pp["environments"][0]["canvasApps"][1]["coOwners"].append(
                {"objectId": FABRIKAM_SP}
            ),
            f"{_ENV0}.canvasApps[1].coOwners[1].objectId: a service principal cannot be a co-owner",
        ),
        (
            lambda pp, d: pp["environments"][1]["flows"][0].update(creator=FABRIKAM_SP),
            f"{_ENV1}.flows[0].creator: this service principal has no application user",
        ),
        (
            lambda pp, d: pp["environments"][0]["flows"][2].update(owner=FABRIKAM_SP),
            f"{_ENV0}.flows[2].owner: only a solution-aware flow",
        ),
        (
            lambda pp, d: pp.update(limits={"dataverseRequests": 0}),
            f"{_FABRIKAM_PP}.limits.dataverseRequests: expected a positive integer",
        ),
        (
            lambda pp, d: pp["powerBi"]["workspaces"][0]["datasets"][0].update(configuredBy="x"),
            f"{_FABRIKAM_PP}.powerBi.workspaces[0].datasets[0].configuredBy: not a GUID",
        ),
        (
            lambda pp, d: pp["environments"][0]["solutions"][0].update(installedOn="June"),
            f"{_ENV0}.solutions[0].installedOn: expected an ISO 8601 time",
        ),
        (
            lambda pp, d: d["tenants"][2]["powerPlatform"]["environments"][0].update(
                id=pp["environments"][1]["id"]
            ),
            "tenants[2].powerPlatform.environments[0].id: duplicate environment id",
        ),
    ],
)
def test_power_platform_scenario_errors_name_the_field(change: Any, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        Scenario.from_dict(_broken(change))
    assert str(raised.value).startswith(message)


def test_admin_api_installs_a_tenant_and_changes_its_grants(tmp_path: Path) -> None:
    with CloudSandbox(Scenario.from_dict(json.loads(ATTRIBUTION.read_text())), state_dir=tmp_path) as cloud:
        _drive_admin_api(cloud)


def _drive_admin_api(cloud: CloudSandbox) -> None:
    tenant_id, object_id = str(uuid.uuid4()), str(uuid.uuid4())
    cloud.add_tenant(tenant_id, "Admin-made")
    cloud.add_service_principal(tenant_id, SECRET_APP, object_id)
    env = str(uuid.uuid4())

    def admin(method: str, path: str, body: object = None) -> int:
        return call(cloud, method, f"/_sandbox/{path}", body)[0]

    base = f"tenants/{tenant_id}/power-platform"
    assert admin("PUT", base, {"environments": [{"id": env, "displayName": "E"}]}) == 200
    assert admin("PUT", base, {"environments": [{"id": "x", "displayName": "E"}]}) == 400
    assert admin("PATCH", f"{base}/grants/{SECRET_APP}", {"registered": True, "powerBi": True}) == 200
    assert admin("PUT", f"environments/{env}/application-users/{SECRET_APP}") == 200
    status, grants = call(cloud, "GET", f"/_sandbox/{base}")
    assert grants == {
        "registeredApps": [SECRET_APP],
        "powerBiApps": [SECRET_APP],
        "applicationUsers": {env: [SECRET_APP]},
    }
    assert admin("DELETE", f"environments/{env}/application-users/{SECRET_APP}") == 200
    assert admin("PATCH", f"{base}/grants/{SECRET_APP}", {"registered": "yes"}) == 400


def test_fleet_power_platform_scenario_is_a_large_tenant(tmp_path: Path) -> None:
    scenario = Scenario.from_dict(power_platform_scenario())
    [tenant] = scenario.tenants
    platform = tenant.power_platform
    assert platform is not None and len(platform.environments) == 20
    assert sum(len(env.canvas_apps) + len(env.flows) for env in platform.environments) == 2000
    assert sum(len(w.datasets) for w in platform.workspaces) == 200
    assert [env.dataverse for env in platform.environments].count(False) == 5
    with CloudSandbox(scenario, state_dir=tmp_path) as cloud:
        sp = tenant.service_principals[0]
        token = cloud.issue_token(
            tenant.tenant_id, sp.object_id, "https://service.powerapps.com/", app_id=sp.client_id
        )
        status, body = call(cloud, "GET", BAP_ENVIRONMENTS, token=token)
        assert status == 200 and len(body["value"]) == 20
