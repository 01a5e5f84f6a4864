"""The attribution audit against the Power Platform stand-ins: per resource, per missing grant, per
run; in process and through the broker and the local Functions host."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from sandbox.scenario import FaultRule, Scenario, load_scenario
from shared.attribution.audit import AttributionAudit, AuditMessage, audit_message
from shared.attribution.findings import FindingStatus, Ours, decide
from shared.attribution.inventory import Holder, HolderRole, Resource
from shared.attribution.rows import POWER_BI_UNIT, AuditRow
from shared.attribution.rules import Product
from shared.attribution.store import AttributionLedger
from shared.links.service import LinkService
from shared.spine.envelope import Source
from tenants import (
    FABRIKAM,
    FABRIKAM_APP,
    FEDERATED_APP,
    LITWARE,
    LITWARE_APP,
    NORTHWIND,
    ROOT,
    onboarding_message,
)

ATTRIBUTION_SCENARIO = ROOT / "sandbox" / "scenarios" / "attribution.json"
FABRIKAM_SP = "fad08631-a20d-46eb-9c68-9bb2395042d8"
SP_APP = "86e43e11-c4f5-482f-b1a7-bf6a8a962c9e"
USER_APP = "ed260509-95dc-473e-a54e-929496959016"
NO_APP_USER_ENV = "9e82d65f-75ff-4607-aa36-24c9af6d621b"


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(ATTRIBUTION_SCENARIO)


IDENTITIES = {
    FABRIKAM: dict(client_id=FABRIKAM_APP, identity_type="secret", secret_name="fabrikam-pal-secret"),
    LITWARE: dict(client_id=LITWARE_APP, identity_type="certificate", secret_name="litware-pal-cert"),
    NORTHWIND: dict(client_id=FEDERATED_APP),
}


async def link(service: LinkService, tenant: str) -> None:
    fields = dict(IDENTITIES[tenant])
    body = json.dumps(onboarding_message(tenant, fields.pop("client_id"), **fields)).encode()
    outcome = await service.handle(
        body, message_id=f"onboard-{tenant}", properties={}, source=Source.ONBOARDING
    )
    assert outcome.kind.is_success, outcome


def audit_of(service: LinkService) -> AttributionAudit:
    assert service.credentials is not None
    return AttributionAudit(
        service.ledger,
        AttributionLedger(service.ledger.table),
        service.credentials,
        None,
        service.settings,
        service.transport,
    )


@pytest.fixture
async def audited(service: LinkService) -> AsyncIterator[AttributionAudit]:
    for tenant in IDENTITIES:
        await link(service, tenant)
    yield audit_of(service)


# ---- the decision, pure -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("product", "role", "expected"),
    [
        (Product.CANVAS_APP, HolderRole.OWNER, FindingStatus.ATTRIBUTED),
        (Product.CANVAS_APP, HolderRole.CO_OWNER, FindingStatus.ATTRIBUTED),
        (Product.CANVAS_APP, HolderRole.CREATOR, FindingStatus.NOT_ATTRIBUTED),
        (Product.CLOUD_FLOW, HolderRole.CREATOR, FindingStatus.ATTRIBUTED),
        (Product.CLOUD_FLOW, HolderRole.OWNER, FindingStatus.NOT_ATTRIBUTED),
        (Product.MODEL_DRIVEN_APP, HolderRole.CREATOR, FindingStatus.ATTRIBUTED),
        (Product.COPILOT_STUDIO_BOT, HolderRole.OWNER, FindingStatus.NOT_ATTRIBUTED),
        (Product.POWER_BI_DATASET, HolderRole.PUBLISHER, FindingStatus.ATTRIBUTED),
    ],
)
def test_only_the_role_the_rule_counts_credits_us(
    product: Product, role: HolderRole, expected: FindingStatus
) -> None:
    ours = Ours.of(object_ids=["OUR-OID"])
    finding = decide(Resource(product, "env", "r1", "R", (Holder(role, "our-oid"),)), ours)
    assert finding.status is expected


def test_someone_elses_resource_names_them_and_the_remedy() -> None:
    resource = Resource(Product.CLOUD_FLOW, "env", "f1", "Flow", (Holder(HolderRole.CREATOR, "user-1"),))
    finding = decide(resource, Ours.of(object_ids=["sp"], client_ids=["app"]))
    assert (finding.status, finding.attributed_to) == (FindingStatus.NOT_ATTRIBUTED, ("user-1",))
    assert finding.remedy is not None and "creator" in finding.remedy


def test_an_orphaned_resource_is_not_attributed_to_anyone() -> None:
    finding = decide(Resource(Product.CANVAS_APP, "env", "a", "App", ()), Ours.of(object_ids=["sp"]))
    assert (finding.status, finding.attributed_to) == (FindingStatus.NOT_ATTRIBUTED, ())


def test_audit_messages_are_parsed_strictly() -> None:
    good = AuditMessage(FABRIKAM, "2026-11-29", "env-1")
    assert AuditMessage.parse(good.body()) == good
    for bad in (
        b"not json",
        b"[]",
        json.dumps({"customerTenantId": "x", "runId": "r"}).encode(),
        json.dumps({"customerTenantId": FABRIKAM, "runId": "r", "extra": 1}).encode(),
        json.dumps({"customerTenantId": FABRIKAM, "runId": "r/../x"}).encode(),
        json.dumps({"customerTenantId": FABRIKAM, "runId": "r", "unit": "a" * 200}).encode(),
    ):
        assert AuditMessage.parse(bad) is None, bad


# ---- in process, against the stand-ins ----------------------------------------------------------


async def test_each_resource_is_decided_and_each_missing_grant_reported_alone(
    audited: AttributionAudit, cloud: CloudSandbox
) -> None:
    await audited.start(FABRIKAM, "run-1")
    findings = {row.resource_id: row for row in await audited.ledger.findings(FABRIKAM)}
    assert findings[SP_APP].status is FindingStatus.ATTRIBUTED
    assert findings[USER_APP].status is FindingStatus.NOT_ATTRIBUTED
    assert findings[USER_APP].attributed_to and findings[USER_APP].remedy
    products = {row.product for row in findings.values()}
    assert {
        Product.CANVAS_APP,
        Product.CLOUD_FLOW,
        Product.MODEL_DRIVEN_APP,
        Product.POWER_BI_DATASET,
    } <= products
    attributed_products = {row.product for row in findings.values() if row.status is FindingStatus.ATTRIBUTED}
    assert {Product.CANVAS_APP, Product.CLOUD_FLOW, Product.MODEL_DRIVEN_APP} <= attributed_products
    (run,) = await audited.ledger.runs(FABRIKAM)
    assert run.ended_at is not None and set(run.done_list()) >= set(run.unit_list())
    # The environment without our Dataverse application user: that API alone needs the customer.
    assert "dataverse" in run.refused_map() and "application user" in run.refused_map()["dataverse"]
    assert any(row.unit == NO_APP_USER_ENV and row.product is Product.CANVAS_APP for row in findings.values())
    assert run.coverage is not None and 0 < run.coverage < 1


async def test_an_api_not_granted_never_hides_the_others(audited: AttributionAudit) -> None:
    await audited.start(LITWARE, "run-1")  # Power BI's tenant setting is off for our app
    (run,) = await audited.ledger.runs(LITWARE)
    assert set(run.refused_map()) == {"powerbi"}
    assert "Service principals can access read-only admin APIs" in run.refused_map()["powerbi"]
    assert {row.product for row in await audited.ledger.findings(LITWARE)} >= {
        Product.CANVAS_APP,
        Product.CLOUD_FLOW,
    }

    await audited.start(NORTHWIND, "run-1")  # the app is not registered with Power Platform
    (run,) = await audited.ledger.runs(NORTHWIND)
    assert "bap" in run.refused_map() and "pac admin application register" in run.refused_map()["bap"]
    assert run.unit_list() == [POWER_BI_UNIT]
    assert {row.product for row in await audited.ledger.findings(NORTHWIND)} == {Product.POWER_BI_DATASET}


async def test_a_second_audit_records_only_changes_and_warns_when_coverage_drops(
    audited: AttributionAudit, cloud: CloudSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    await audited.start(FABRIKAM, "run-1")
    first_changes = await audited.ledger.changes(FABRIKAM, limit=1000)
    assert first_changes and {change.change.value for change in first_changes} == {"new"}

    await audited.start(FABRIKAM, "run-2")  # nothing changed
    assert len(await audited.ledger.changes(FABRIKAM, limit=1000)) == len(first_changes)

    document = json.loads(ATTRIBUTION_SCENARIO.read_text())
    fabrikam = next(t for t in document["tenants"] if t["tenantId"] == FABRIKAM)["powerPlatform"]
    for app in fabrikam["environments"][0]["canvasApps"]:
        if app["id"] == SP_APP:
            app["owner"] = app["createdBy"] = fabrikam["users"][0]["objectId"]
            app["coOwners"] = []
    cloud.install_power_platform(FABRIKAM, fabrikam)
    caplog.set_level(logging.WARNING)
    await audited.start(FABRIKAM, "run-3")
    lost = [c for c in await audited.ledger.changes(FABRIKAM, limit=1000) if c.change.value == "lost"]
    assert [c.resource_id for c in lost] == [SP_APP]
    runs = await audited.ledger.runs(FABRIKAM)
    assert (runs[-1].coverage or 0) < (runs[-2].coverage or 0)
    assert any(
        "attribution coverage" in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records
    )


async def test_a_dead_lettered_unit_still_finishes_its_run(audited: AttributionAudit) -> None:
    await audited.ledger.start_run(FABRIKAM, "run-d", ["env-x"], datetime.now(UTC))
    await audited.dead_lettered(AuditMessage(FABRIKAM, "run-d", "env-x").body())
    (run,) = await audited.ledger.runs(FABRIKAM)
    assert run.ended_at is not None and "dead-lettered" in run.refused_map()["error"]
    assert await audited.dead_lettered(b"junk") == "not a valid audit message; dropped"


def audit_message_of(tenant: str, run_id: str) -> Any:
    return audit_message(AuditMessage(tenant, run_id))


# ---- through the broker and the host ------------------------------------------------------------


async def wait_for_run(ledger: AttributionLedger, tenant: str, run_id: str, timeout: float = 60) -> AuditRow:
    deadline = time.monotonic() + timeout
    while True:
        runs = {run.run_id: run for run in await ledger.runs(tenant)}
        if run_id in runs and runs[run_id].ended_at is not None:
            return runs[run_id]
        assert time.monotonic() < deadline, runs
        await asyncio.sleep(0.2)


async def test_an_operator_audits_a_customer_through_the_queue_and_reads_the_findings(
    host: LocalFunctionsHost, bus_env: dict[str, str], cloud: CloudSandbox
) -> None:
    from shared.links.service import get_service

    service = await get_service()
    await link(service, FABRIKAM)
    status, started = await host_call(host, "POST", f"/api/attribution/{FABRIKAM}/audit")
    assert status == 202, started
    run = await wait_for_run(AttributionLedger(service.ledger.table), FABRIKAM, started["runId"])
    assert run.coverage is not None

    status, body = await host_call(
        host, "GET", f"/api/attribution/{FABRIKAM}?product=canvas-app&status=attributed"
    )
    assert status == 200
    assert body["run"]["runId"] == started["runId"]
    assert [f["resourceId"] for f in body["findings"]] == [SP_APP] or SP_APP in {
        f["resourceId"] for f in body["findings"]
    }
    assert all(f["status"] == "attributed" and f["product"] == "canvas-app" for f in body["findings"])

    status, below = await host_call(host, "GET", "/api/attribution?coverageBelow=1")
    assert status == 200 and [c["customerTenantId"] for c in below["customers"]] == [FABRIKAM]
    status, rules = await host_call(host, "GET", "/api/attribution/rules")
    assert status == 200 and "products" in rules
    status, problem = await host_call(host, "GET", "/api/attribution/not-a-guid")
    assert status == 400 and problem["type"].endswith("invalid-tenant-id")


async def host_call(host: LocalFunctionsHost, method: str, path: str) -> tuple[int, Any]:
    """Call the host's API; every answer is checked against the OpenAPI document."""
    import aiohttp
    from test_http_api import check_against_openapi

    template = re.sub(
        r"/attribution/(?!rules)[^/?]+", "/attribution/{customerTenantId}", path.removeprefix("/api")
    )
    async with aiohttp.ClientSession() as session:
        url = f"{host.base_url}{path}"
        async with session.request(method, url, headers={"x-functions-key": host.function_key}) as response:
            payload = await response.json(content_type=None)
            check_against_openapi(
                template, method, response.status, response.headers["Content-Type"], payload
            )
            return response.status, payload


async def test_a_throttled_unit_is_scheduled_again_and_completes(
    host: LocalFunctionsHost, bus_env: dict[str, str], cloud: CloudSandbox
) -> None:
    from shared.links.service import get_service

    service = await get_service()
    await link(service, FABRIKAM)
    # Power BI's admin API throttles the first call (5 a minute per tenant in Azure).
    cloud.add_fault(FABRIKAM, FaultRule(target="powerbi", kind="status", status=429, retry_after=1, count=1))
    status, started = await host_call(host, "POST", f"/api/attribution/{FABRIKAM}/audit")
    assert status == 202
    run = await wait_for_run(AttributionLedger(service.ledger.table), FABRIKAM, started["runId"])
    assert "error" not in run.refused_map() and "powerbi" not in run.refused_map()
    rows = await AttributionLedger(service.ledger.table).findings(FABRIKAM, POWER_BI_UNIT)
    assert rows and all(row.product is Product.POWER_BI_DATASET for row in rows)
    assert cloud.stats()["powerBiCalls"][FABRIKAM]["GET"] == 2  # the throttled call, then the retry


async def test_a_large_tenant_under_faults_ends_with_one_result_per_environment(
    azurite: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Throttling, outages and dropped connections on the way: every unit is audited once, every
    resource has its finding, and no token or secret is logged or stored."""
    from sandbox.broker import ServiceBusBroker
    from sandbox.fleet import APP, MI_CLIENT, power_platform_scenario
    from sandbox.local_env import local_settings
    from shared.links.service import get_service, reset_service
    from traces import everything_logged, everything_stored

    caplog.set_level(logging.DEBUG)
    document = power_platform_scenario(environments=6, canvas_apps=120, flows=120, workspaces=3, datasets=30)
    tenant = document["tenants"][0]["tenantId"]
    faults = [
        FaultRule(target="powerapps", kind="status", status=429, retry_after=1, count=2),
        FaultRule(target="dataverse", kind="status", status=503, count=2),
        FaultRule(target="flow", kind="drop", count=2),
        FaultRule(target="powerbi", kind="status", status=429, retry_after=1, count=1),
    ]
    with (
        CloudSandbox(Scenario.from_dict(document), state_dir=tmp_path / "cloud") as cloud,
        ServiceBusBroker() as broker,
    ):
        env = local_settings(
            cloud,
            azurite.connection_string,
            managed_identity_client_id=MI_CLIENT,
            service_bus_connection_string=broker.connection_string,
            ledger_table="Large" + tenant.replace("-", "")[:12],
        ) | {"RETRY_BASE_SECONDS": "1", "RETRY_MAX_SECONDS": "2", "SDK_RETRY_TOTAL": "0"}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        await reset_service()
        async with LocalFunctionsHost(settings=env):
            service = await get_service()
            body = {
                "schemaVersion": 1,
                "customerTenantId": tenant,
                "identity": {"type": "federated", "clientId": APP},
            }
            await service.handle(
                json.dumps(body).encode(), message_id="large", properties={}, source=Source.ONBOARDING
            )
            for rule in faults:
                cloud.add_fault(tenant, rule)
            assert service.sender is not None
            await service.sender.send_batch(
                service.settings.audit_queue, [audit_message_of(tenant, "large-1")]
            )
            ledger = AttributionLedger(service.ledger.table)
            run = await wait_for_run(ledger, tenant, "large-1", timeout=120)
            findings = await ledger.findings(tenant)
            stored = await everything_stored(env)
        await reset_service()
    assert sorted(run.done_list()) == sorted(run.unit_list()) and len(run.unit_list()) == 7
    assert run.refused_map() == {}, run.refused_map()
    by_product = {product: sum(1 for f in findings if f.product is product) for product in Product}
    assert (by_product[Product.CANVAS_APP], by_product[Product.CLOUD_FLOW]) == (120, 120)
    assert by_product[Product.POWER_BI_DATASET] == 30
    assert cloud.stats()["faultsApplied"]
    for text in (stored, everything_logged(caplog)):
        assert "eyJ" not in text  # no bearer token (a JWT) anywhere
