"""Is each link earning? The linked identity's Azure recognition, checked by the nightly verification
against the ARM stand-in (subscriptions, role assignments, role definitions over HTTPS), recorded on
the link's state row in Azurite, its changes between nights in the history and the run summary."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from test_http_api import KEY, Client, check_against_openapi

from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from sandbox.scenario import FaultRule
from shared.links.api import LinksApi
from shared.links.earning import grants_of
from shared.links.evidence import EvidenceApi
from shared.links.recognition import Earning
from shared.links.reverify import NightlyRun, verify_now
from shared.links.rows import LinkState
from shared.links.service import LinkService, reset_service
from shared.spine.identity import Identity, IdentityType
from tenants import FEDERATED_APP, NORTHWIND, TAILSPIN
from tenants import onboarding_message as message

NORTHWIND_OID = "d87199a7-f53b-4dd6-813d-019f7547bffb"
NORTHWIND_SUB = "6b1f3f7e-2f4a-4d8e-9a51-0c2d7e4b9a10"
TAILSPIN_SUB = "0f5c8d2a-7b3e-4c61-8e90-3a4b5c6d7e81"
OTHER_SUB = "4e5d6c7b-8a9f-4e1d-b2c3-a4b5c6d7e8f9"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CUSTOM = "5f1c9d3e-7a2b-4c8d-9e0f-1a2b3c4d5e6f"


async def onboard(service: LinkService, tenant: str) -> None:
    outcome = await service.handle(json.dumps(message(tenant)).encode(), message_id=f"onboard-{tenant}")
    assert outcome.kind.value in ("linked", "already-linked")


async def night(service: LinkService, tenant: str, run_id: str) -> tuple[str, LinkState]:
    """Verify the tenant's one link as that night's verify message would; its outcome and state after."""
    (state,) = await service.ledger.link_states(tenant)
    outcome = await verify_now(service, state, run_id)
    assert outcome is not None
    (after,) = await service.ledger.link_states(tenant)
    return outcome.kind.value, after


def northwind(
    *assignments: dict[str, Any], readable: bool = True, extra: list[Any] | None = None
) -> list[Any]:
    subscription = {
        "subscriptionId": NORTHWIND_SUB,
        "displayName": "Northwind Production",
        "readAssignments": readable,
        "roleAssignments": list(assignments),
    }
    return [subscription, *(extra or [])]


def grant(role: str, **fields: Any) -> dict[str, Any]:
    return {"principalId": NORTHWIND_OID, "roleDefinitionId": role, **fields}


def recognition_events(history: list[Any]) -> list[tuple[str, str | None]]:
    kinds = {"earning", "not-earning", "earning-unknown"}
    return [(event.outcome.value, event.code) for event in history if event.outcome.value in kinds]


async def test_a_qualifying_role_earns_and_lists_its_roles_and_scopes(
    service: LinkService, cloud: CloudSandbox
) -> None:
    scope = f"/subscriptions/{OTHER_SUB}/resourceGroups/rg-web"
    other = {
        "subscriptionId": OTHER_SUB,
        "displayName": "Northwind Web",
        "roleAssignments": [grant(READER), grant(CONTRIBUTOR, scope=scope)],
    }
    cloud.install_subscriptions(NORTHWIND, northwind(grant(CONTRIBUTOR), extra=[other]))
    await onboard(service, NORTHWIND)

    outcome, state = await night(service, NORTHWIND, "2026-03-01")

    assert outcome == "verified" and state.earning is Earning.EARNING
    grants = {(g.role, g.scope, g.qualifies) for g in grants_of(state)}
    assert grants == {
        ("Contributor", f"/subscriptions/{NORTHWIND_SUB}", True),
        ("Contributor", scope, True),
        ("Reader", f"/subscriptions/{OTHER_SUB}", False),
    }
    assert state.earning_remediation is None and "Contributor on" in (state.earning_reason or "")
    assert state.earning_checked_at == state.earning_since == state.last_checked_at
    # The first check records the recognition; it is not a change between nights: no event.
    assert recognition_events(await service.ledger.history(NORTHWIND)) == []


@pytest.mark.parametrize(
    ("subscriptions", "sees"),
    [
        (northwind(grant(READER)), "Northwind Production"),  # read-only: does not qualify
        (northwind(grant(READER), grant(OWNER, eligible=True)), "Northwind Production"),  # PIM-eligible
        ([], None),  # no subscription at all
    ],
    ids=["reader-only", "pim-eligible-only", "no-subscription"],
)
async def test_no_qualifying_role_is_not_earning_with_the_sentence_to_send(
    service: LinkService, cloud: CloudSandbox, subscriptions: list[Any], sees: str | None
) -> None:
    cloud.install_subscriptions(NORTHWIND, subscriptions)
    await onboard(service, NORTHWIND)

    outcome, state = await night(service, NORTHWIND, "2026-03-01")

    assert (outcome, state.earning) == ("verified", Earning.NOT_EARNING)
    remediation = state.earning_remediation or ""
    assert "Support Request Contributor is the least privilege that qualifies" in remediation
    assert f"client ID {FEDERATED_APP}" in remediation
    if sees is None:
        assert state.earning_reason == "the identity sees no Azure subscription"
        assert "on each subscription the partner manages" in remediation
    else:
        assert f"on subscription {sees} ({NORTHWIND_SUB})" in remediation
        assert [g.role for g in grants_of(state)] == ["Reader"]


async def test_assignments_it_may_not_read_are_unknown(service: LinkService, cloud: CloudSandbox) -> None:
    cloud.install_subscriptions(NORTHWIND, northwind(grant(CONTRIBUTOR), readable=False))
    await onboard(service, NORTHWIND)

    outcome, state = await night(service, NORTHWIND, "2026-03-01")

    assert (outcome, state.earning) == ("verified", Earning.UNKNOWN)
    assert "may not read its role assignments in subscription Northwind Production" in (
        state.earning_reason or ""
    )
    assert "Support Request Contributor" in (state.earning_remediation or "")


async def test_a_custom_role_is_named_and_never_counted(service: LinkService, cloud: CloudSandbox) -> None:
    custom = [{"id": CUSTOM, "roleName": "Northwind Operator"}]
    cloud.install_subscriptions(NORTHWIND, northwind(grant(CUSTOM)), custom)
    await onboard(service, NORTHWIND)

    _, state = await night(service, NORTHWIND, "2026-03-01")

    assert state.earning is Earning.NOT_EARNING
    assert [(g.role, g.qualifies) for g in grants_of(state)] == [("Northwind Operator", False)]


async def test_a_role_removed_between_nights_is_an_event_a_warning_and_counted(
    service: LinkService, cloud: CloudSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await onboard(service, NORTHWIND)
    await onboard(service, TAILSPIN)
    nightly = NightlyRun(service.ledger, None, service.settings)

    async def run(run_id: str) -> Any:
        await service.ledger.runs.create(run_id, total=2, started_at=datetime.now(UTC))
        outcomes = [(await night(service, tenant, run_id))[0] for tenant in (NORTHWIND, TAILSPIN)]
        assert outcomes == ["verified", "verified"]
        return await nightly.check(run_id, 1)

    first = await run("2026-03-01")
    assert first.stopped_earning == 0
    assert dict(first.earning) == {"earning": 1, "not-earning": 1}

    # Nothing changes: the second night writes no event (the verified interval only grows).
    events_before = len(await service.ledger.history(NORTHWIND))
    await run("2026-03-02")
    assert len(await service.ledger.history(NORTHWIND)) == events_before

    # Downgraded to Reader: Contributor removed, Reader given.
    assert cloud.remove_role_assignments(NORTHWIND, NORTHWIND_SUB, NORTHWIND_OID, CONTRIBUTOR) == 1
    cloud.add_role_assignment(NORTHWIND, NORTHWIND_SUB, NORTHWIND_OID, READER)
    caplog.clear()
    third = await run("2026-03-03")

    (state,) = await service.ledger.link_states(NORTHWIND)
    assert (state.outcome.value, state.earning) == ("verified", Earning.NOT_EARNING)
    assert (state.earning_change, state.earning_changed_run_id) == ("stopped-earning", "2026-03-03")
    history = await service.ledger.history(NORTHWIND)
    assert recognition_events(history) == [("not-earning", "stopped-earning")]
    (event,) = [e for e in history if e.code == "stopped-earning"]
    assert (event.source, event.run_id, event.client_id) == ("verify", "2026-03-03", state.client_id)
    assert f"lost: Contributor on /subscriptions/{NORTHWIND_SUB}" in (event.details or "")
    assert "Support Request Contributor" in (event.remediation or "")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "Azure recognition changed" in w and "code=stopped-earning" in w and NORTHWIND in w for w in warnings
    )
    assert third.stopped_earning == 1 and dict(third.earning) == {"not-earning": 2}
    assert any("2026-03-03: 1 customers stopped earning last night" in w for w in warnings)
    (record,) = [r for r in await service.ledger.runs.all() if r.run_id == "2026-03-03"]
    assert (record.stopped_earning, dict(record.earning)) == (1, {"not-earning": 2})

    # The next night nothing changed again: no event, and no longer counted as stopping.
    fourth = await run("2026-03-04")
    assert fourth.stopped_earning == 0
    assert recognition_events(await service.ledger.history(NORTHWIND)) == [("not-earning", "stopped-earning")]

    # Contributor given back: earning again, an INFO event.
    cloud.add_role_assignment(NORTHWIND, NORTHWIND_SUB, NORTHWIND_OID, CONTRIBUTOR)
    await run("2026-03-05")
    assert recognition_events(await service.ledger.history(NORTHWIND))[0] == ("earning", "started-earning")


async def test_a_subscription_gone_while_another_still_earns_is_roles_lost(
    service: LinkService, cloud: CloudSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    other = {"subscriptionId": OTHER_SUB, "displayName": "Northwind Web", "roleAssignments": [grant(OWNER)]}
    cloud.install_subscriptions(NORTHWIND, northwind(grant(CONTRIBUTOR), extra=[other]))
    await onboard(service, NORTHWIND)
    _, before = await night(service, NORTHWIND, "2026-03-01")
    assert len([g for g in grants_of(before) if g.qualifies]) == 2

    cloud.remove_subscription(NORTHWIND, OTHER_SUB)
    caplog.set_level(logging.INFO)
    _, state = await night(service, NORTHWIND, "2026-03-02")

    assert (state.earning, state.earning_change) == (Earning.EARNING, "roles-lost")
    assert state.earning_since is not None and before.earning_since is not None
    assert state.earning_since > before.earning_since
    assert recognition_events(await service.ledger.history(NORTHWIND)) == [("earning", "roles-lost")]
    assert any(r.levelno == logging.WARNING and "code=roles-lost" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "fault",
    [
        FaultRule(target="authorization", kind="status", status=503),
        FaultRule(target="authorization", kind="status", status=429, retry_after=30),
        FaultRule(target="authorization", kind="drop"),
    ],
    ids=["503", "429", "dropped"],
)
async def test_a_failed_check_keeps_the_previous_recognition_and_the_link_outcome(
    service: LinkService, cloud: CloudSandbox, caplog: pytest.LogCaptureFixture, fault: FaultRule
) -> None:
    await onboard(service, NORTHWIND)
    _, earned = await night(service, NORTHWIND, "2026-03-01")
    assert earned.earning is Earning.EARNING
    events = len(await service.ledger.history(NORTHWIND))

    cloud.remove_role_assignments(NORTHWIND, NORTHWIND_SUB, NORTHWIND_OID)  # would be not-earning...
    cloud.add_role_assignment(NORTHWIND, NORTHWIND_SUB, NORTHWIND_OID, READER)
    cloud.add_fault(NORTHWIND, fault)  # ...but ARM cannot be read tonight
    caplog.set_level(logging.INFO)
    outcome, state = await night(service, NORTHWIND, "2026-03-02")

    assert (outcome, state.outcome.value, state.verified_count) == ("verified", "verified", 2)
    assert (state.earning, state.earning_checked_at) == (Earning.EARNING, earned.earning_checked_at)
    assert state.earning_roles == earned.earning_roles
    assert len(await service.ledger.history(NORTHWIND)) == events
    assert any(
        "Azure recognition of client" in r.getMessage() and "not checked" in r.getMessage()
        for r in caplog.records
    )

    cloud.clear_faults(NORTHWIND)
    _, later = await night(service, NORTHWIND, "2026-03-03")
    assert (later.earning, later.earning_change) == (Earning.NOT_EARNING, "stopped-earning")


async def test_a_link_that_needs_the_customer_is_not_checked_and_keeps_what_it_had(
    service: LinkService, cloud: CloudSandbox
) -> None:
    await onboard(service, NORTHWIND)
    _, earned = await night(service, NORTHWIND, "2026-03-01")
    cloud.reset_stats()
    cloud.set_service_principal_enabled(NORTHWIND, FEDERATED_APP, False)
    assert service.credentials is not None
    await service.credentials.forget(NORTHWIND, Identity(IdentityType.FEDERATED, FEDERATED_APP))

    outcome, state = await night(service, NORTHWIND, "2026-03-02")

    assert outcome == "needs-customer-action"
    assert "authorizationCalls" not in cloud.stats() or not cloud.stats()["authorizationCalls"]
    assert (state.earning, state.earning_checked_at) == (earned.earning, earned.earning_checked_at)


async def test_the_link_view_shows_the_recognition_as_the_openapi_document_says(
    service: LinkService, cloud: CloudSandbox
) -> None:
    await onboard(service, NORTHWIND)
    await onboard(service, TAILSPIN)
    await night(service, NORTHWIND, "2026-03-01")
    await night(service, TAILSPIN, "2026-03-01")
    api = LinksApi.of(service)

    for tenant, expected in ((NORTHWIND, "earning"), (TAILSPIN, "not-earning")):
        response = await api.get_link(tenant)
        body = json.loads(response.encoded())
        check_against_openapi("/links/{customerTenantId}", "GET", 200, "application/json", body)
        (link,) = body["links"]
        assert link["earning"] == expected and link["earningCheckedAt"]
        assert [role["role"] for role in link["earningRoles"]] == (
            ["Contributor"] if expected == "earning" else ["Reader"]
        )
        assert ("earningRemediation" in link) is (expected == "not-earning")

    listed = await api.list_links({})
    body = json.loads(listed.encoded())
    check_against_openapi("/links", "GET", 200, "application/json", body)
    assert {item["earning"] for item in body["items"]} == {"earning", "not-earning"}


async def test_the_evidence_record_holds_the_attestation_fields_and_the_earning_roles(
    service: LinkService, cloud: CloudSandbox
) -> None:
    await onboard(service, NORTHWIND)
    cloud.reset_stats()
    _, state = await night(service, NORTHWIND, "2026-03-01")
    first_gets = cloud.stats()["armCalls"][NORTHWIND]["GET"]
    (link,) = [link for link in cloud.links() if link["tenantId"] == NORTHWIND]
    assert state.partner_name == "Contoso Partner" and state.link_record_version == link["version"]
    assert state.link_created_at == datetime.fromisoformat(link["createdTime"])

    # The link did not change: its record is not read again.
    cloud.reset_stats()
    await night(service, NORTHWIND, "2026-03-02")
    assert cloud.stats()["armCalls"][NORTHWIND]["GET"] == first_gets - 1

    response = await EvidenceApi.of(service).get(NORTHWIND)
    body = json.loads(response.encoded())
    check_against_openapi("/links/{customerTenantId}/evidence", "GET", 200, "application/json", body)
    (evidence,) = body["links"]
    assert evidence == {
        "tenantId": NORTHWIND,
        "identityType": "ServicePrincipal",
        "credentialType": "federated",
        "objectId": NORTHWIND_OID,
        "appId": FEDERATED_APP,
        "partnerId": "1234567",
        "partnerName": "Contoso Partner",
        "linkCreatedTime": evidence["linkCreatedTime"],
        "linkUpdatedTime": evidence["linkUpdatedTime"],
        "linkVersion": link["version"],
        "outcome": "verified",
        "verifiedSince": evidence["verifiedSince"],
        "verifiedCount": 2,
        "lastCheckedAt": evidence["lastCheckedAt"],
        "earning": "earning",
        "earningSince": evidence["earningSince"],
        "earningCheckedAt": evidence["earningCheckedAt"],
        "earningRoles": [{"role": "Contributor", "scope": f"/subscriptions/{NORTHWIND_SUB}"}],
    }
    assert evidence["earningSince"] < evidence["earningCheckedAt"] == evidence["lastCheckedAt"]

    # The link is removed and healed: a new version, whose record is read that night.
    cloud.delete_link(NORTHWIND, NORTHWIND_OID)
    outcome, healed = await night(service, NORTHWIND, "2026-03-03")
    (link,) = [link for link in cloud.links() if link["tenantId"] == NORTHWIND]
    assert outcome == "healed" and healed.link_record_version == link["version"] == healed.link_version
    assert (
        healed.link_updated_at == datetime.fromisoformat(link["updatedTime"]) > (state.link_updated_at or 0)
    )

    for tenant, status in (("not-a-guid", 400), (TAILSPIN, 404)):
        answer = await EvidenceApi.of(service).get(tenant)
        assert answer.status == status
        check_against_openapi(
            "/links/{customerTenantId}/evidence", "GET", status, "application/problem+json", answer.body
        )


@pytest.fixture
async def http_api(bus_env: dict[str, str]) -> AsyncIterator[Client]:
    await reset_service()
    async with (
        LocalFunctionsHost(settings=bus_env, function_key=KEY) as host,
        aiohttp.ClientSession() as http,
    ):
        yield Client(http, host.base_url)
    await reset_service()


async def test_the_evidence_route_over_http(http_api: Client) -> None:
    api = http_api
    status, problem, _ = await api.call(
        "GET", "/links/{customerTenantId}/evidence", customerTenantId=NORTHWIND
    )
    assert (status, problem["type"].rsplit("/", 1)[1]) == (404, "unknown-tenant")
    status, _, headers = await api.call(
        "POST", "/links/{customerTenantId}/evidence", customerTenantId=NORTHWIND
    )
    assert (status, headers["Allow"]) == (405, "GET")
