"""The Power Platform stand-ins (sandbox/cloud/power_platform) over real HTTPS, with tokens from the
sandbox's Entra ID by the client-credentials flow: BAP, Power Apps, Flow, Dataverse and Power BI as
sandbox/scenarios/attribution.json holds them, their paging, grants, limits, faults and audiences."""

from __future__ import annotations

import http.client
import json
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
from azure.identity import CertificateCredential

from sandbox.cloud import CloudSandbox
from sandbox.cloud.power_platform.world import systemuser_id
from sandbox.scenario import FaultRule, load_scenario

ROOT = Path(__file__).resolve().parents[1]
ATTRIBUTION = ROOT / "sandbox" / "scenarios" / "attribution.json"
POWERAPPS, FLOW = "https://service.powerapps.com/.default", "https://service.flow.microsoft.com/.default"
POWER_BI = "https://analysis.windows.net/powerbi/api/.default"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PARTNER_TENANT = "06a9217b-0248-4057-ba46-05be61101c37"
MI_CLIENT, MI_PRINCIPAL = "15f2d0f8-8784-4690-b5c7-e45e31452a9a", "481be298-d292-4dd2-a8e4-3e36a28df338"
FEDERATED_APP, NORTHWIND = "81a6daa3-a704-4f3e-a1ca-45fa036d5a09", "53a2a22c-5cbd-47f7-b588-f5bb5f191ead"
SECRET_APP, FABRIKAM = "3d396df3-d832-4c8b-a51d-91fbcce04b1d", "892ad125-0722-49b7-a665-aea7ede649e4"
CERT_APP, LITWARE = "15e6da4c-256b-441c-a9e3-585cf41b8266", "ac9630d7-e100-495c-a709-71872a194254"
FABRIKAM_SP = "fad08631-a20d-46eb-9c68-9bb2395042d8"
FABRIKAM_DEFAULT = f"Default-{FABRIKAM}"
BAP_ENVIRONMENTS = "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments"
APPS = "/providers/Microsoft.PowerApps/scopes/admin/environments/{env}/apps"
FLOWS = "/providers/Microsoft.ProcessSimple/scopes/admin/environments/{env}/v2/flows?api-version=2016-11-01"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudSandbox]:
    with CloudSandbox(load_scenario(ATTRIBUTION), state_dir=tmp_path_factory.mktemp("pp")) as running:
        yield running


@pytest.fixture(autouse=True)
def _restore(cloud: CloudSandbox) -> Iterator[None]:
    yield
    cloud.clear_faults()
    cloud.reset_power_platform_limits()


class App:
    """An app signed in to one tenant: tokens per scope from the sandbox's token endpoint, and calls."""

    def __init__(self, cloud: CloudSandbox, tenant_id: str, client_id: str, proof: dict[str, str]) -> None:
        self.cloud, self.tenant_id, self.client_id, self.proof = cloud, tenant_id, client_id, proof
        self._tokens: dict[str, str] = {}

    def token(self, scope: str) -> str:
        if scope not in self._tokens:
            if "certificate" in self.proof:
                self._tokens[scope] = certificate_token(self.cloud, self.proof["certificate"], scope)
            else:
                form = {"grant_type": "client_credentials", "client_id": self.client_id, "scope": scope}
                status, _, body = call(
                    self.cloud,
                    "POST",
                    f"/{self.tenant_id}/oauth2/v2.0/token",
                    body=urlencode({**form, **self.proof}),
                )
                assert status == 200, body
                self._tokens[scope] = body["access_token"]
        return self._tokens[scope]

    def get(
        self, url: str, scope: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        return call(self.cloud, "GET", url, token=self.token(scope), headers=headers)

    def pages(self, url: str, scope: str, link: str = "nextLink", **headers: str) -> list[dict[str, Any]]:
        """Every page's `value`, following `link` until a page has none."""
        pages = []
        while True:
            status, _, body = self.get(url, scope, headers)
            assert status == 200, body
            pages.append(body)
            if link not in body:
                return pages
            url = body[link]


def call(
    cloud: CloudSandbox,
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One HTTPS exchange; `url` absolute (a nextLink) or a path; the body parsed when it is JSON."""
    parts = urlsplit(url)
    context = ssl.create_default_context(cafile=str(cloud.ca_path))
    connection = http.client.HTTPSConnection("127.0.0.1", urlsplit(cloud.base_url).port, context=context)
    sent = {"Content-Type": "application/x-www-form-urlencoded"} if "oauth2" in url else {}
    sent.update(headers or {}, **({"Authorization": f"Bearer {token}"} if token else {}))
    try:
        connection.request(
            method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=sent
        )
        response = connection.getresponse()
        raw = response.read()
        reply_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()
    return response.status, reply_headers, json.loads(raw) if raw else None


def certificate_token(cloud: CloudSandbox, secret_name: str, scope: str) -> str:
    pem, ca = cloud.secret_value(secret_name).encode(), str(cloud.ca_path)
    options: dict[str, Any] = {"authority": cloud.authority, "disable_instance_discovery": True}
    credential = CertificateCredential(
        LITWARE, CERT_APP, certificate_data=pem, connection_verify=ca, **options
    )
    return str(credential.get_token(scope).token)


def fabrikam(cloud: CloudSandbox) -> App:
    return App(cloud, FABRIKAM, SECRET_APP, {"client_secret": cloud.secret_value("fabrikam-pal-secret")})


def litware(cloud: CloudSandbox) -> App:
    return App(cloud, LITWARE, CERT_APP, {"certificate": "litware-pal-cert"})


def northwind(cloud: CloudSandbox) -> App:
    """The federated app: the managed identity's token is its client assertion."""
    issuer = f"https://login.microsoftonline.com/{PARTNER_TENANT}/v2.0"
    assertion = cloud.issue_token(
        PARTNER_TENANT, MI_PRINCIPAL, "api://AzureADTokenExchange", app_id=MI_CLIENT, issuer=issuer
    )
    return App(
        cloud, NORTHWIND, FEDERATED_APP, {"client_assertion_type": JWT_BEARER, "client_assertion": assertion}
    )


def dataverse(cloud: CloudSandbox, env_id: str, table: str = "", **query: str) -> tuple[str, str]:
    """(URL, token scope) of a Dataverse query in an environment."""
    base = cloud.dataverse_url(env_id)
    encoded = urlencode(query, quote_via=quote, safe="$,")
    return f"{base}api/data/v9.2/{table}" + (f"?{encoded}" if encoded else ""), f"{base}.default"


def spec(cloud: CloudSandbox, tenant_id: str) -> Any:
    tenant = cloud.scenario.tenant(tenant_id)
    assert tenant is not None and tenant.power_platform is not None
    return tenant.power_platform


def values(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for page in pages for item in page["value"]]


def fresh(cloud: CloudSandbox, section: dict[str, Any]) -> tuple[App, str]:
    """A tenant of its own with the secret app's service principal and this Power Platform section."""
    tenant_id, object_id = str(uuid.uuid4()), str(uuid.uuid4())
    cloud.add_tenant(tenant_id, "Test tenant")
    cloud.add_service_principal(tenant_id, SECRET_APP, object_id)
    section = json.loads(json.dumps(section).replace("{tenant}", tenant_id).replace("{sp}", object_id))
    cloud.install_power_platform(tenant_id, section)
    return App(
        cloud, tenant_id, SECRET_APP, {"client_secret": cloud.secret_value("fabrikam-pal-secret")}
    ), object_id


# ---- each API lists what the scenario holds, across its pages -----------------------------------------


def test_bap_lists_every_environment_once_across_next_links(cloud: CloudSandbox) -> None:
    pages = fabrikam(cloud).pages(f"{BAP_ENVIRONMENTS}?api-version=2020-10-01", POWERAPPS)
    environments = values(pages)
    assert len(pages) == 2 and pages[0]["nextLink"].startswith(cloud.base_url)  # page size 2 in Fabrikam
    expected = [env.env_id for env in spec(cloud, FABRIKAM).environments]
    assert [env["name"] for env in environments] == expected
    by_name = {env["properties"]["displayName"]: env["properties"] for env in environments}
    default = by_name["Fabrikam (default)"]
    assert default["linkedEnvironmentMetadata"]["instanceUrl"] == cloud.dataverse_url(FABRIKAM_DEFAULT)
    assert (default["environmentSku"], default["isDefault"], default["createdBy"]["type"]) == (
        "Default",
        True,
        "User",
    )
    assert default["createdBy"]["userPrincipalName"] == "meganb@fabrikam.example"
    assert "linkedEnvironmentMetadata" not in by_name["Fabrikam Productivity (no Dataverse)"]
    assert by_name["Fabrikam Productivity (no Dataverse)"]["databaseType"] == "None"


def test_power_apps_lists_apps_with_owners_and_permissions(cloud: CloudSandbox) -> None:
    app = fabrikam(cloud)
    url = APPS.format(env=FABRIKAM_DEFAULT) + "?api-version=2016-11-01"
    pages = app.pages(url, POWERAPPS)
    apps = {item["properties"]["displayName"]: item for item in values(pages)}
    assert len(pages) == 2 and len(apps) == 4
    inspections = apps["Field Inspections"]
    assert inspections["properties"]["owner"]["id"] == FABRIKAM_SP
    assert inspections["properties"]["owner"]["type"] == "ServicePrincipal"
    orphan = apps["Old Timesheets"]["properties"]["owner"]
    assert set(orphan) == {"id", "type", "tenantId"}  # its owner was deleted: no name left
    survey = apps["Site Survey"]["properties"]
    assert (
        survey["owner"]["displayName"] == "Alex Wilber"
        and survey["createdBy"]["displayName"] == "Megan Bowen"
    )
    permissions = app.pages(
        APPS.format(env=FABRIKAM_DEFAULT) + f"/{inspections['name']}/permissions?api-version=2016-11-01",
        POWERAPPS,
    )
    roles = [(p["properties"]["roleName"], p["properties"]["principal"]["type"]) for p in values(permissions)]
    assert roles == [("Owner", "ServicePrincipal"), ("CanEdit", "User"), ("CanView", "Group")]
    assert len(permissions) == 2  # page size 2


def test_flow_lists_creators_and_solution_aware_flows(cloud: CloudSandbox) -> None:
    flows = values(fabrikam(cloud).pages(FLOWS.format(env=FABRIKAM_DEFAULT), FLOW))
    by_name = {flow["properties"]["displayName"]: flow for flow in flows}
    assert len(flows) == len(by_name) == 4
    reminders = by_name["Inspection reminders"]
    assert reminders["properties"]["creator"]["objectId"] == FABRIKAM_SP
    assert reminders["properties"]["workflowEntityId"] == reminders["name"]
    assert reminders["properties"]["isManaged"] is True
    assert "workflowEntityId" not in by_name["Weekly digest"]["properties"]
    assert by_name["Notify on new survey"]["properties"]["state"] == "Stopped"


def test_dataverse_tables_name_the_service_principal_by_systemuser(cloud: CloudSandbox) -> None:
    app = fabrikam(cloud)
    query = {
        "$filter": f"applicationid eq {SECRET_APP}",
        "$select": "systemuserid,azureactivedirectoryobjectid",
    }
    status, headers, body = app.get(*dataverse(cloud, FABRIKAM_DEFAULT, "systemusers", **query))
    assert status == 200 and headers["odata-version"] == "4.0"
    [me] = body["value"]
    assert me["azureactivedirectoryobjectid"] == FABRIKAM_SP and "@odata.etag" in me
    select = "name,workflowid,_ownerid_value,_createdby_value,ismanaged"
    workflows = app.get(
        *dataverse(cloud, FABRIKAM_DEFAULT, "workflows", **{"$filter": "category eq 5", "$select": select})
    )[2]
    rows = {row["name"]: row for row in workflows["value"]}
    assert set(rows) == {"Inspection reminders", "Expense approvals"}  # solution-aware ones only
    assert rows["Inspection reminders"]["_createdby_value"] == me["systemuserid"]
    assert rows["Expense approvals"]["_ownerid_value"] == me["systemuserid"]  # owner changed to the app
    assert rows["Expense approvals"]["_createdby_value"] != me["systemuserid"]
    assert workflows["@odata.context"].endswith(f"$metadata#workflows({select})")
    for table, key, expected in [
        ("appmodules", "name", {"Inspection Hub", "Asset Register"}),
        ("bots", "name", {"Inspection Helper", "HR FAQ"}),
        ("solutions", "uniquename", {"Default", "System", "FabrikamInspections", "ExpenseApps"}),
        ("importjobs", "solutionname", {"FabrikamInspections", "ExpenseApps"}),
    ]:
        assert {
            row[key] for row in app.get(*dataverse(cloud, FABRIKAM_DEFAULT, table))[2]["value"]
        } == expected
    disabled = app.get(
        *dataverse(cloud, FABRIKAM_DEFAULT, "systemusers", **{"$filter": "isdisabled eq true"})
    )[2]
    assert [row["fullname"] for row in disabled["value"]] == ["Pradeep Gupta"]  # the orphans' owner


def test_dataverse_pages_with_maxpagesize_and_top(cloud: CloudSandbox) -> None:
    app = fabrikam(cloud)
    url, scope = dataverse(cloud, FABRIKAM_DEFAULT, "systemusers", **{"$select": "fullname"})
    everything = app.get(url, scope)[2]["value"]
    assert "@odata.nextLink" not in app.get(url, scope)[2]  # default page size 5000
    pages = app.pages(url, scope, "@odata.nextLink", Prefer="odata.maxpagesize=2")
    assert len(pages) == 3 and [row["systemuserid"] for row in values(pages)] == [
        r["systemuserid"] for r in everything
    ]
    assert (
        app.get(url, scope, {"Prefer": "odata.maxpagesize=2"})[1]["preference-applied"]
        == "odata.maxpagesize=2"
    )
    url, _ = dataverse(cloud, FABRIKAM_DEFAULT, "systemusers", **{"$top": "1"})
    status, _, body = app.get(url, scope, {"Prefer": "odata.maxpagesize=2"})
    assert status == 200 and len(body["value"]) == 1 and "@odata.nextLink" not in body


@pytest.mark.parametrize(
    ("table", "query", "status", "message"),
    [
        (
            "workflows",
            {"$select": "name,owner"},
            400,
            "Could not find a property named 'owner' on type 'Microsoft.Dynamics.CRM.workflow'.",
        ),
        ("workflows", {"$filter": "category ne 5"}, 400, "The sandbox's $filter takes"),
        ("workflows", {"$filter": "category eq five"}, 400, "'five' is not a value"),
        ("bots", {"$orderby": "name"}, 400, "The query option '$orderby' is not supported"),
        ("accounts", {}, 404, "Resource not found for the segment 'accounts'."),
    ],
)
def test_dataverse_refuses_what_it_cannot_read(
    cloud: CloudSandbox, table: str, query: dict[str, str], status: int, message: str
) -> None:
    answer = fabrikam(cloud).get(*dataverse(cloud, FABRIKAM_DEFAULT, table, **query))
    assert answer[0] == status and answer[2]["error"]["message"].startswith(message)
    assert answer[2]["error"]["code"] in ("0x80060888", "0x8006088a")


def test_power_bi_pages_datasets_with_top_and_skip_and_expands_groups(cloud: CloudSandbox) -> None:
    app = fabrikam(cloud)
    seen, skip = [], 0
    while True:
        status, _, body = app.get(f"/v1.0/myorg/admin/datasets?$top=2&$skip={skip}", POWER_BI)
        assert status == 200
        seen += body["value"]
        if len(body["value"]) < 2:
            break
        skip += 2
    by_name = {dataset["name"]: dataset for dataset in seen}
    assert len(seen) == len(by_name) == 3
    assert by_name["Inspections"]["configuredBy"] == SECRET_APP  # a service principal: its client ID
    assert by_name["Inspection KPIs"]["configuredBy"] == "meganb@fabrikam.example"
    assert by_name["Expenses 2024"]["configuredBy"] == "pradeepg@fabrikam.example"  # orphaned
    groups = app.get("/v1.0/myorg/admin/groups?$top=5000&$expand=datasets", POWER_BI)[2]["value"]
    assert [len(group["datasets"]) for group in groups] == [2, 1]
    for query in ("", "?$top=5001", "?$top=0", "?$top=1&$expand=users"):
        assert app.get(f"/v1.0/myorg/admin/groups{query}", POWER_BI)[0] == 400


# ---- grants -----------------------------------------------------------------------------------------------


def test_each_missing_grant_is_refused_by_its_own_api_only(cloud: CloudSandbox) -> None:
    unregistered = northwind(cloud)  # not registered with Power Platform
    status, _, body = unregistered.get(f"{BAP_ENVIRONMENTS}?api-version=2020-10-01", POWERAPPS)
    assert status == 403 and body["error"]["code"] == "Forbidden"
    assert (
        f"for application {FEDERATED_APP} does not have permission to access the path"
        in body["error"]["message"]
    )
    env = f"Default-{NORTHWIND}"
    assert unregistered.get(APPS.format(env=env) + "?api-version=2016-11-01", POWERAPPS)[0] == 403
    assert unregistered.get(FLOWS.format(env=env), FLOW)[0] == 403
    assert unregistered.get(*dataverse(cloud, env, "solutions"))[0] == 200  # an admin added the app user
    assert unregistered.get("/v1.0/myorg/admin/datasets", POWER_BI)[0] == 200

    no_power_bi = litware(cloud)  # the Power BI tenant setting leaves the app out
    status, _, body = no_power_bi.get("/v1.0/myorg/admin/datasets", POWER_BI)
    assert status == 401 and body["error"]["code"] == "PowerBINotAuthorizedException"
    assert no_power_bi.get(f"{BAP_ENVIRONMENTS}?api-version=2020-10-01", POWERAPPS)[0] == 200
    assert no_power_bi.get(*dataverse(cloud, f"Default-{LITWARE}", "bots"))[0] == 200

    sales = spec(cloud, FABRIKAM).environments[1].env_id  # Dataverse, but no application user
    status, _, body = fabrikam(cloud).get(*dataverse(cloud, sales, "workflows"))
    assert (status, body["error"]) == (
        403,
        {"code": "0x80072560", "message": "The user is not a member of the organization."},
    )
    assert fabrikam(cloud).get(APPS.format(env=sales) + "?api-version=2016-11-01", POWERAPPS)[0] == 200


def test_add_app_user_then_dataverse_answers(cloud: CloudSandbox) -> None:
    section: dict[str, Any] = {
        "grants": {"registeredApps": [SECRET_APP]},
        "environments": [
            {"id": "Default-{tenant}", "displayName": "Default"},
            {"id": str(uuid.uuid4()), "displayName": "No DB", "dataverse": False},
        ],
    }
    app, object_id = fresh(cloud, section)
    env, no_db = f"Default-{app.tenant_id}", section["environments"][1]["id"]
    assert app.get(*dataverse(cloud, env, "WhoAmI"))[0] == 403
    add = f"{BAP_ENVIRONMENTS}/{env}/addAppUser?api-version=2020-10-01"
    token = app.token(POWERAPPS)
    for body, expected in [("{}", 400), (json.dumps({"servicePrincipalAppId": str(uuid.uuid4())}), 400)]:
        assert call(cloud, "POST", add, token=token, body=body)[0] == expected
    no_db_add = add.replace(env, no_db)
    assert (
        call(cloud, "POST", no_db_add, token=token, body=json.dumps({"servicePrincipalAppId": SECRET_APP}))[0]
        == 400
    )
    status, _, body = call(
        cloud, "POST", add, token=token, body=json.dumps({"servicePrincipalAppId": SECRET_APP})
    )
    assert (status, body) == (200, None)
    status, _, who = app.get(*dataverse(cloud, env, "WhoAmI"))
    assert status == 200 and who["UserId"] == systemuser_id(env, object_id)
    assert cloud.power_platform_grants(app.tenant_id)["applicationUsers"] == {env: [SECRET_APP], no_db: []}
    cloud.set_power_platform_grants(app.tenant_id, SECRET_APP, registered=False)
    assert (
        call(cloud, "POST", add, token=token, body=json.dumps({"servicePrincipalAppId": SECRET_APP}))[0]
        == 403
    )


# ---- limits, faults, tokens -------------------------------------------------------------------------------


def test_dataverse_throttles_per_principal_and_environment(cloud: CloudSandbox) -> None:
    envs: list[dict[str, Any]] = [
        {"id": "Default-{tenant}", "displayName": "A", "applicationUsers": [SECRET_APP]},
        {"id": str(uuid.uuid4()), "displayName": "B", "applicationUsers": [SECRET_APP]},
    ]
    app, _ = fresh(
        cloud, {"environments": envs, "limits": {"dataverseRequests": 2, "dataverseWindowSeconds": 1}}
    )
    first = dataverse(cloud, f"Default-{app.tenant_id}", "solutions")
    assert [app.get(*first)[0] for _ in range(2)] == [200, 200]
    status, headers, body = app.get(*first)
    assert (status, headers["retry-after"], body["error"]["code"]) == (429, "1", "0x80072322")
    assert (
        body["error"]["message"]
        == "Number of requests exceeded the limit of 2 over time window of 1 seconds."
    )
    assert app.get(*dataverse(cloud, envs[1]["id"], "solutions"))[0] == 200  # another environment's window
    time.sleep(1.1)
    assert app.get(*first)[0] == 200


def test_power_bi_throttles_per_tenant_and_operation(cloud: CloudSandbox) -> None:
    section = {"grants": {"powerBiApps": [SECRET_APP]}, "limits": {"powerBiDatasetsPerMinute": 2}}
    app, _ = fresh(cloud, section)
    assert [app.get("/v1.0/myorg/admin/datasets", POWER_BI)[0] for _ in range(2)] == [200, 200]
    status, headers, body = app.get("/v1.0/myorg/admin/datasets", POWER_BI)
    assert (
        status == 429
        and 1 <= int(headers["retry-after"]) <= 60
        and body["error"]["code"] == "TooManyRequests"
    )
    assert app.get("/v1.0/myorg/admin/groups?$top=10", POWER_BI)[0] == 200  # groups have their own limit
    cloud.reset_power_platform_limits()
    assert app.get("/v1.0/myorg/admin/datasets", POWER_BI)[0] == 200


def test_a_fault_hits_its_api_only_and_calls_are_counted(cloud: CloudSandbox) -> None:
    app = fabrikam(cloud)
    calls = {
        "bap": (f"{BAP_ENVIRONMENTS}?api-version=2020-10-01", POWERAPPS, "bapCalls"),
        "powerapps": (
            APPS.format(env=FABRIKAM_DEFAULT) + "?api-version=2016-11-01",
            POWERAPPS,
            "powerAppsCalls",
        ),
        "flow": (FLOWS.format(env=FABRIKAM_DEFAULT), FLOW, "flowCalls"),
        "dataverse": (*dataverse(cloud, FABRIKAM_DEFAULT, "bots"), "dataverseCalls"),
        "powerbi": ("/v1.0/myorg/admin/groups?$top=1", POWER_BI, "powerBiCalls"),
    }
    for target, (url, scope, _) in calls.items():
        before = cloud.stats()
        cloud.add_fault(FABRIKAM, FaultRule(target=target, kind="status", status=503, retry_after=7, count=1))  # type: ignore[arg-type]
        answers = {
            other: app.get(other_url, other_scope) for other, (other_url, other_scope, _) in calls.items()
        }
        assert {other: answer[0] for other, answer in answers.items()} == {
            o: 503 if o == target else 200 for o in calls
        }
        assert (
            answers[target][1]["retry-after"] == "7"
            and answers[target][2]["error"]["code"] == "ServiceUnavailable"
        )
        assert app.get(url, scope)[0] == 200  # count=1: used up
        after = cloud.stats()
        for _, _, stat in calls.values():
            counted = after[stat][FABRIKAM]["GET"] - before[stat].get(FABRIKAM, {}).get("GET", 0)
            assert counted == (2 if stat == calls[target][2] else 1)
    cloud.add_fault(FABRIKAM, FaultRule(target="dataverse", kind="drop", count=1))
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        app.get(*dataverse(cloud, FABRIKAM_DEFAULT, "bots"))


def test_a_token_for_another_audience_is_refused(cloud: CloudSandbox) -> None:
    app = fabrikam(cloud)
    status, headers, body = call(
        cloud, "GET", f"{BAP_ENVIRONMENTS}?api-version=2020-10-01", token=app.token(FLOW)
    )
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationTokenAudience"
    assert "www-authenticate" in headers
    flows = FLOWS.format(env=FABRIKAM_DEFAULT)
    assert call(cloud, "GET", flows, token=app.token(POWERAPPS))[0] == 401
    assert call(cloud, "GET", "/v1.0/myorg/admin/datasets", token=app.token(POWERAPPS))[0] == 401
    assert call(cloud, "GET", f"{BAP_ENVIRONMENTS}?api-version=2020-10-01")[0] == 401
    _, other_scope = dataverse(cloud, f"Default-{LITWARE}")
    url, _ = dataverse(cloud, FABRIKAM_DEFAULT, "bots")
    for token in (
        app.token(POWERAPPS),
        litware(cloud).token(other_scope),
    ):  # another API, another environment
        status, headers, body = call(cloud, "GET", url, token=token)
        assert (status, body) == (401, None)
        assert f"resource_id={cloud.dataverse_url(FABRIKAM_DEFAULT)}" in headers["www-authenticate"]
    assert (
        call(cloud, "GET", f"{BAP_ENVIRONMENTS}?api-version=2019-01-01", token=app.token(POWERAPPS))[0] == 400
    )
