"""Repair, opt-in: plans decided without I/O, and plan / apply / undo against the Power Platform
stand-ins as the linked service principal, with the ledger in Azurite."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from sandbox.cloud import CloudSandbox
from sandbox.scenario import Scenario, load_scenario
from shared.attribution.audit import AttributionAudit
from shared.attribution.findings import FindingStatus
from shared.attribution.rules import Product
from shared.attribution.store import AttributionLedger
from shared.links.service import LinkService
from shared.repair.api import RepairApi
from shared.repair.plan import (
    CanvasAppFacts,
    DatasetFacts,
    Evidence,
    FlowFacts,
    RepairKind,
    RepairPlan,
    Target,
    plan_change,
)
from shared.repair.rows import ChangeStatus
from shared.repair.service import RepairService
from shared.repair.store import RepairLedger
from shared.spine.envelope import Source
from tenants import FABRIKAM, FABRIKAM_APP, ROOT, onboarding_message
from traces import everything_logged, everything_stored

ATTRIBUTION_SCENARIO = ROOT / "sandbox" / "scenarios" / "attribution.json"
FABRIKAM_SP = "fad08631-a20d-46eb-9c68-9bb2395042d8"
MEGAN = "a82ae7eb-8e4f-47b6-88a2-356c34a438da"
ALEX = "c909e18c-ffaa-4a0d-8186-63cd29dcea10"
USER_APP = "ed260509-95dc-473e-a54e-929496959016"
WORKSPACE = "f2ecf949-91b6-41f5-877f-0c879514e004"
MEGANS_DATASET_PREFIX = "cbb06d47"
PLAIN_FLOW = "5d0f3c1e-0a7b-4e5e-9a8e-0f4b8d2c7a11"
PREMIUM_FLOW = "6e1a4d2f-1b8c-4f6f-8b9f-1a5c9e3d8b22"
LICENSED_FLOW = "7f2b5e3a-2c9d-4a7a-9cab-2b6daf4e9c33"
TARGET = Target("sp-oid", "sp-app", {"env": "sp-systemuser"})


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(ATTRIBUTION_SCENARIO)


# ---- the plan, pure -----------------------------------------------------------------------------


def planned(product: Product, facts: Any, *, unverified: bool = False) -> Any:
    return plan_change(
        1,
        product,
        "env",
        "9e1c9505-1490-49c1-a165-49db68b8ba4b",
        "R",
        facts,
        TARGET,
        include_unverified=unverified,
    )


def test_a_dataset_is_taken_over_only_by_a_workspace_member_and_the_rebinding_is_said() -> None:
    change = planned(Product.POWER_BI_DATASET, DatasetFacts("meganb@x", True))
    assert (change.kind, change.refused, change.evidence) == (
        RepairKind.POWER_BI_TAKEOVER,
        False,
        Evidence.VERIFIED,
    )
    assert change.call.endswith("/Default.TakeOver") and "rebinding" in change.risk
    assert (change.before_owner, change.after_owner) == ("meganb@x", "sp-app")
    outsider = planned(Product.POWER_BI_DATASET, DatasetFacts("meganb@x", False))
    assert outsider.refused and "member of this workspace" in (outsider.reason or "")


def test_a_premium_flow_without_a_process_licence_is_refused_with_the_reason() -> None:
    refused = planned(Product.CLOUD_FLOW, FlowFacts(True, "user-su", ("shared_sql",), False))
    assert (
        refused.refused and "shared_sql" in (refused.reason or "") and "suspended" in (refused.reason or "")
    )
    licensed = planned(Product.CLOUD_FLOW, FlowFacts(True, "user-su", ("shared_sql",), True))
    assert not licensed.refused and licensed.after_owner == "sp-systemuser"
    assert "ownerid@odata.bind=/systemusers(sp-systemuser)" in (licensed.call or "")
    outside = planned(Product.CLOUD_FLOW, FlowFacts(False, None))
    assert (outside.kind, outside.refused) == (RepairKind.NOT_REPAIRABLE, True)
    assert "outside a solution" in (outside.reason or "")


def test_a_flow_owner_change_says_plainly_that_its_credit_is_inferred() -> None:
    change = planned(Product.CLOUD_FLOW, FlowFacts(True, "user-su"))
    assert (change.kind, change.refused, change.evidence) == (RepairKind.FLOW_OWNER, False, Evidence.INFERRED)
    assert "not its creator" in change.risk and "will still show this flow not attributed" in change.risk
    assert "palctl deliver solution --tenant T --environment env" in change.risk and change.undoable
    # Already ours in Dataverse and still not attributed: only a re-delivery can help, not a no-op PATCH.
    ours = planned(Product.CLOUD_FLOW, FlowFacts(True, "SP-SYSTEMUSER"))
    assert (ours.kind, ours.refused, ours.call) == (RepairKind.REDELIVER_SOLUTION, True, None)
    assert "already owns this flow" in (ours.reason or "") and "palctl deliver solution" in (
        ours.reason or ""
    )


def test_each_kinds_evidence_follows_the_docs() -> None:
    """power-platform.md, "Changing owners": TakeOver and a solution import are read (verified), an
    owner change of a creator-credited flow and modifyAppOwner with a service principal inferred."""
    expected = {
        Product.POWER_BI_DATASET: (DatasetFacts("u@x", True), Evidence.VERIFIED),
        Product.CLOUD_FLOW: (FlowFacts(True, "user-su"), Evidence.INFERRED),
        Product.CANVAS_APP: (CanvasAppFacts("user-oid"), Evidence.INFERRED),
        Product.MODEL_DRIVEN_APP: (None, Evidence.VERIFIED),
        Product.COPILOT_STUDIO_BOT: (None, Evidence.VERIFIED),
    }
    for product, (facts, evidence) in expected.items():
        change = planned(product, facts, unverified=True)
        assert change.evidence is evidence, product
        assert "(inferred)" in change.risk or "is inferred" in change.risk, product  # what is not known


def test_a_canvas_app_whose_owner_is_gone_is_planned_with_the_undo_warning() -> None:
    change = planned(Product.CANVAS_APP, CanvasAppFacts("gone-oid", owner_exists=False), unverified=True)
    assert not change.refused and not change.undoable and "UNDO MAY BE IMPOSSIBLE" in change.risk
    kept = planned(Product.CANVAS_APP, CanvasAppFacts("user-oid", owner_exists=True), unverified=True)
    assert kept.undoable and "UNDO MAY BE IMPOSSIBLE" not in kept.risk


def test_a_canvas_app_needs_the_unverified_switch_and_is_labelled_so() -> None:
    without = planned(Product.CANVAS_APP, CanvasAppFacts("user-oid"))
    assert without.refused and without.evidence is Evidence.INFERRED and "UNVERIFIED" in without.risk
    with_switch = planned(Product.CANVAS_APP, CanvasAppFacts("user-oid"), unverified=True)
    assert not with_switch.refused and "modifyAppOwner" in (with_switch.call or "")


@pytest.mark.parametrize("product", [Product.MODEL_DRIVEN_APP, Product.COPILOT_STUDIO_BOT])
def test_creator_based_resources_are_only_re_delivered(product: Product) -> None:
    change = planned(product, None)
    assert (change.kind, change.refused, change.call) == (RepairKind.REDELIVER_SOLUTION, True, None)
    assert "palctl deliver solution" in (change.reason or "")


def test_a_plan_document_round_trips_and_bad_ones_are_refused() -> None:
    plan = RepairPlan(
        "0f6e2c1a-2b3c-4d5e-8f90-112233445566",
        FABRIKAM,
        datetime(2026, 11, 26, tzinfo=UTC),
        "run-1",
        False,
        (planned(Product.CANVAS_APP, CanvasAppFacts("user-oid")),),
    )
    assert RepairPlan.parse(json.loads(json.dumps(plan.document()))) == plan
    bad: Any
    for bad in ({**plan.document(), "version": 2}, {**plan.document(), "customerTenantId": "x"}, []):
        assert isinstance(RepairPlan.parse(bad), str)
    tampered = copy.deepcopy(plan.document())
    tampered["changes"][0]["resourceId"] = "../../x"
    assert isinstance(RepairPlan.parse(tampered), str)


# ---- against the stand-ins ----------------------------------------------------------------------


def fabrikam_section() -> dict[str, Any]:
    document = json.loads(ATTRIBUTION_SCENARIO.read_text())
    section = next(t for t in document["tenants"] if t["tenantId"] == FABRIKAM)["powerPlatform"]
    section["powerBi"]["workspaces"][0]["members"] = [FABRIKAM_APP]
    section["environments"][0]["flows"] += [
        {"id": PLAIN_FLOW, "displayName": "Notify", "creator": MEGAN, "solutionAware": True},
        {
            "id": PREMIUM_FLOW,
            "displayName": "Sync orders",
            "creator": MEGAN,
            "solutionAware": True,
            "premiumConnectors": ["shared_sql"],
        },
        {
            "id": LICENSED_FLOW,
            "displayName": "Sync stock",
            "creator": ALEX,
            "solutionAware": True,
            "premiumConnectors": ["shared_salesforce"],
            "processLicense": True,
        },
    ]
    return dict(section)


@pytest.fixture
async def repairs(service: LinkService, cloud: CloudSandbox) -> AsyncIterator[RepairService]:
    assert service.credentials is not None
    cloud.install_power_platform(FABRIKAM, fabrikam_section())
    body = json.dumps(
        onboarding_message(FABRIKAM, FABRIKAM_APP, identity_type="secret", secret_name="fabrikam-pal-secret")
    ).encode()
    outcome = await service.handle(body, message_id="onboard-f", properties={}, source=Source.ONBOARDING)
    assert outcome.kind.is_success, outcome
    findings = AttributionLedger(service.ledger.table)
    audit = AttributionAudit(
        service.ledger, findings, service.credentials, None, service.settings, service.transport
    )
    await audit.start(FABRIKAM, "run-1")
    yield RepairService(
        service.ledger,
        findings,
        RepairLedger(service.ledger.table),
        audit,
        service.credentials,
        service.settings,
        service.transport,
    )


def by_resource(plan: RepairPlan) -> dict[str, Any]:
    return {change.resource_id: change for change in plan.changes}


async def status_of(repairs: RepairService, resource: str) -> FindingStatus:
    rows = [row for row in await repairs._findings.findings(FABRIKAM) if row.resource_id == resource]
    return rows[0].status


async def test_each_kind_is_planned_and_applied_then_undone(
    repairs: RepairService, all_logs: pytest.LogCaptureFixture, env: dict[str, str], cloud: CloudSandbox
) -> None:
    plan = await repairs.plan(FABRIKAM, include_unverified=True)
    changes = by_resource(plan)
    assert plan.audit_run == "run-1" and plan.tenant == FABRIKAM
    dataset = next(c for r, c in changes.items() if r.startswith(MEGANS_DATASET_PREFIX))
    assert dataset.kind is RepairKind.POWER_BI_TAKEOVER and not dataset.refused
    assert changes[PLAIN_FLOW].kind is RepairKind.FLOW_OWNER and not changes[PLAIN_FLOW].refused
    assert changes[PREMIUM_FLOW].refused and "shared_sql" in (changes[PREMIUM_FLOW].reason or "")
    assert not changes[LICENSED_FLOW].refused
    assert changes[USER_APP].kind is RepairKind.CANVAS_APP_OWNER and not changes[USER_APP].refused
    assert changes[USER_APP].before_owner == MEGAN
    kinds = {change.kind for change in plan.changes}
    assert RepairKind.REDELIVER_SOLUTION in kinds and RepairKind.NOT_REPAIRABLE in kinds
    # Planning changed nothing.
    assert await status_of(repairs, USER_APP) is FindingStatus.NOT_ATTRIBUTED

    applied = await repairs.apply(RepairPlan.parse(json.loads(json.dumps(plan.document()))))  # type: ignore[arg-type]
    rows = {row.resource_id: row for row in applied.changes}
    assert rows[USER_APP].status is ChangeStatus.APPLIED and rows[USER_APP].attributed_after is True
    assert (
        rows[dataset.resource_id].status is ChangeStatus.APPLIED
        and rows[dataset.resource_id].attributed_after
    )
    assert rows[PLAIN_FLOW].status is ChangeStatus.APPLIED and rows[PLAIN_FLOW].before_owner
    assert rows[PREMIUM_FLOW].status is ChangeStatus.REFUSED
    assert await status_of(repairs, USER_APP) is FindingStatus.ATTRIBUTED
    stored = await repairs.status(FABRIKAM, applied.apply.apply_id)
    assert stored is not None and stored.apply.count_map()["applied"] >= 4
    # The premium flow was never touched: still running, its owner the user.
    again = by_resource(await repairs.plan(FABRIKAM, include_unverified=True))
    assert again[PREMIUM_FLOW].before_owner == changes[PREMIUM_FLOW].before_owner
    assert again[PLAIN_FLOW].before_owner == changes[PLAIN_FLOW].after_owner  # owner changed in Dataverse

    undone = await repairs.undo(FABRIKAM, applied.apply.apply_id)
    after = {row.resource_id: row for row in undone.changes}
    assert after[USER_APP].status is ChangeStatus.UNDONE and after[PLAIN_FLOW].status is ChangeStatus.UNDONE
    assert after[dataset.resource_id].status is ChangeStatus.UNDO_REFUSED
    assert await status_of(repairs, USER_APP) is FindingStatus.NOT_ATTRIBUTED
    restored = by_resource(await repairs.plan(FABRIKAM, include_unverified=True))
    assert restored[USER_APP].before_owner == MEGAN
    assert restored[PLAIN_FLOW].before_owner == changes[PLAIN_FLOW].before_owner

    secret = cloud.secret_value("fabrikam-pal-secret")
    leaked = [r.name for r in all_logs.records if secret in everything_logged_one(r)]
    assert not leaked, leaked
    for text in (everything_logged(all_logs), await everything_stored(env)):
        assert secret not in text and "Bearer " not in text
        assert not re.search(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+", text)  # no bearer token (a JWT)


def everything_logged_one(record: Any) -> str:
    return str(record.getMessage()) + json.dumps({k: str(v) for k, v in record.__dict__.items()})


async def test_a_canvas_app_is_not_changed_without_the_switch(repairs: RepairService) -> None:
    plan = await repairs.plan(FABRIKAM, include_unverified=False)
    assert by_resource(plan)[USER_APP].refused
    applied = await repairs.apply(plan)
    assert {r.resource_id: r for r in applied.changes}[USER_APP].status is ChangeStatus.REFUSED
    assert await status_of(repairs, USER_APP) is FindingStatus.NOT_ATTRIBUTED


async def test_a_plan_made_stale_by_an_owner_change_is_refused_per_change(
    repairs: RepairService, cloud: CloudSandbox
) -> None:
    plan = await repairs.plan(FABRIKAM, include_unverified=True)
    section = fabrikam_section()
    for app in section["environments"][0]["canvasApps"]:
        if app["id"] == USER_APP:
            app["owner"] = app["createdBy"] = ALEX
            app["coOwners"] = []
    cloud.install_power_platform(FABRIKAM, section)
    applied = await repairs.apply(plan)
    row = {r.resource_id: r for r in applied.changes}[USER_APP]
    assert row.status is ChangeStatus.REFUSED and "changed since planning" in (row.reason or "")
    assert row.before_owner == ALEX
    assert {r.resource_id: r for r in applied.changes}[PLAIN_FLOW].status is ChangeStatus.APPLIED


async def test_nothing_is_changed_without_a_valid_plan(repairs: RepairService) -> None:
    api = RepairApi(repairs)
    for body in (b"", b"{}", b"not json", json.dumps({"version": 1}).encode()):
        answer = await api.apply(FABRIKAM, body)
        assert answer.status == 400, answer
    plan = (await api.plan(FABRIKAM, {"includeUnverified": "true"})).body
    assert isinstance(plan, dict)
    other = {**plan, "customerTenantId": "0f6e2c1a-2b3c-4d5e-8f90-112233445566"}
    assert (await api.apply(FABRIKAM, json.dumps(other).encode())).status == 400
    assert await repairs.ledger.applies(FABRIKAM) == []
    assert await status_of(repairs, USER_APP) is FindingStatus.NOT_ATTRIBUTED
    assert (await api.undo(FABRIKAM, b'{"planId": "0f6e2c1a-2b3c-4d5e-8f90-112233445566"}')).status == 404
    assert (await api.plan("not-a-guid", {})).status == 400
