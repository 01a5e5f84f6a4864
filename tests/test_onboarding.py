"""Onboarding end to end through the real SDKs: the sandbox over HTTPS for Entra, ARM and Key Vault,
Azurite for the ledger. One test per outcome, plus token reuse, redelivery and concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest

from sandbox.cloud import CloudSandbox
from sandbox.scenario import FaultRule
from shared.links.ledger import UNKNOWN_TENANT, Ledger
from shared.links.service import LinkService
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.settings import OnOtherPartner, Settings
from tenants import (
    FABRIKAM,
    FABRIKAM_APP,
    FEDERATED_APP,
    LITWARE,
    LITWARE_APP,
    NORTHWIND,
    OTHER_PARTNER_ID,
    PARTNER_ID,
    TAILSPIN,
    WOODGROVE,
    bound_to,
    onboarding_message,
)

NORTHWIND_OID = "d87199a7-f53b-4dd6-813d-019f7547bffb"
FABRIKAM_OID = "fad08631-a20d-46eb-9c68-9bb2395042d8"


async def send(service: LinkService, body: dict[str, Any] | bytes, message_id: str = "m-1") -> Outcome:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await service.handle(raw, message_id=message_id)


def sandbox_link(cloud: CloudSandbox, tenant: str) -> dict[str, Any] | None:
    links = [link for link in cloud.links() if link["tenantId"] == tenant and link["state"] == "Active"]
    assert len(links) <= 1
    return links[0] if links else None


async def only_state(ledger: Ledger, tenant: str) -> dict[str, Any]:
    states = await ledger.link_states(tenant)
    assert len(states) == 1, states
    return states[0]


async def test_new_customer_is_linked_and_recorded(service: LinkService, cloud: CloudSandbox) -> None:
    outcome = await send(
        service, onboarding_message(NORTHWIND, customerName="Northwind", correlationId="CRM-1")
    )

    assert outcome.kind is OutcomeKind.LINKED
    assert (outcome.partner_id, outcome.object_id, outcome.link_version) == (PARTNER_ID, NORTHWIND_OID, 1)
    assert sandbox_link(cloud, NORTHWIND)["partnerId"] == PARTNER_ID  # type: ignore[index]

    state = await only_state(service.ledger, NORTHWIND)
    assert state.outcome == "linked"
    assert state.linked_partner_id == PARTNER_ID
    assert state.object_id == NORTHWIND_OID
    assert state.consecutive_failures == 0
    assert state.correlation_id == "CRM-1"
    assert state.last_linked_at == state.last_checked_at
    history = await service.ledger.history(NORTHWIND)
    assert [event.outcome for event in history] == ["linked"]
    assert history[0].message_id == "m-1"


async def test_already_linked_customer_is_left_alone(service: LinkService, cloud: CloudSandbox) -> None:
    before = sandbox_link(cloud, TAILSPIN)
    outcome = await send(service, onboarding_message(TAILSPIN))
    assert outcome.kind is OutcomeKind.ALREADY_LINKED
    assert sandbox_link(cloud, TAILSPIN) == before  # no write: version unchanged
    stats = cloud.stats()
    assert _arm_calls(stats, TAILSPIN, "PUT") == _arm_calls(stats, TAILSPIN, "PATCH") == 0


FABRIKAM_SECRET = onboarding_message(
    FABRIKAM, FABRIKAM_APP, identity_type="secret", secret_name="fabrikam-pal-secret"
)


async def send_with(settings: Settings, body: dict[str, Any], **changes: Any) -> Outcome:
    """Handle one message with a service built from changed settings."""
    other = LinkService.from_settings(dataclasses.replace(settings, **changes))
    try:
        return await send(other, body)
    finally:
        await other.close()


async def test_another_of_our_partner_ids_is_updated_quietly(
    settings: Settings, cloud: CloudSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    created_before = sandbox_link(cloud, FABRIKAM)["createdTime"]  # type: ignore[index]
    ours = frozenset({PARTNER_ID, OTHER_PARTNER_ID})
    outcome = await send_with(settings, FABRIKAM_SECRET, allowed_partner_ids=ours)

    assert outcome.kind is OutcomeKind.UPDATED
    assert (outcome.previous_partner_id, outcome.partner_id) == (OTHER_PARTNER_ID, PARTNER_ID)
    link = sandbox_link(cloud, FABRIKAM)
    assert link is not None and link["partnerId"] == PARTNER_ID and link["createdTime"] == created_before
    assert not [r for r in caplog.records if r.getMessage().startswith("ALERT")]


async def test_a_foreign_partner_id_is_an_alert_and_is_reclaimed(
    service: LinkService, cloud: CloudSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    outcome = await send(service, FABRIKAM_SECRET)

    assert outcome.kind is OutcomeKind.RECLAIMED and outcome.kind.is_success
    assert (outcome.previous_partner_id, outcome.partner_id) == (OTHER_PARTNER_ID, PARTNER_ID)
    assert sandbox_link(cloud, FABRIKAM)["partnerId"] == PARTNER_ID  # type: ignore[index]
    (alert,) = [r for r in caplog.records if r.getMessage().startswith("ALERT foreign partner ID")]
    assert alert.levelname == "ERROR" and OTHER_PARTNER_ID in alert.getMessage()
    state = await only_state(service.ledger, FABRIKAM)
    assert (state.outcome, state.previous_partner_id) == ("reclaimed", OTHER_PARTNER_ID)
    assert state.key_vault_secret_name == "fabrikam-pal-secret"
    (event,) = await service.ledger.history(FABRIKAM)
    assert (event.outcome, event.previous_partner_id) == ("reclaimed", OTHER_PARTNER_ID)


async def test_a_foreign_partner_id_is_an_alert_and_kept_when_configured(
    settings: Settings, cloud: CloudSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    outcome = await send_with(settings, FABRIKAM_SECRET, on_other_partner=OnOtherPartner.KEEP)

    assert outcome.kind is OutcomeKind.FOREIGN_PARTNER and not outcome.kind.is_success
    assert outcome.partner_id == OTHER_PARTNER_ID and outcome.remediation
    assert sandbox_link(cloud, FABRIKAM)["partnerId"] == OTHER_PARTNER_ID  # type: ignore[index]
    assert [r.levelname for r in caplog.records if r.getMessage().startswith("ALERT")] == ["ERROR"]


async def test_another_of_our_partner_ids_is_kept_when_configured(
    settings: Settings, cloud: CloudSandbox
) -> None:
    ours = frozenset({PARTNER_ID, OTHER_PARTNER_ID})
    outcome = await send_with(
        settings, FABRIKAM_SECRET, on_other_partner=OnOtherPartner.KEEP, allowed_partner_ids=ours
    )
    assert outcome.kind is OutcomeKind.KEPT_OTHER_PARTNER
    assert sandbox_link(cloud, FABRIKAM)["partnerId"] == OTHER_PARTNER_ID  # type: ignore[index]


async def test_a_partner_id_that_is_not_ours_is_rejected_and_nothing_is_called(
    service: LinkService, cloud: CloudSandbox
) -> None:
    before = sandbox_link(cloud, TAILSPIN)
    cloud.reset_stats()
    outcome = await send(service, onboarding_message(TAILSPIN, partnerId=OTHER_PARTNER_ID))

    assert (outcome.kind, outcome.code) == (OutcomeKind.REJECTED, "partner-id-not-allowed")
    assert OTHER_PARTNER_ID in outcome.reason and "ALLOWED_PARTNER_IDS" in outcome.reason
    assert sandbox_link(cloud, TAILSPIN) == before
    stats = cloud.stats()
    assert stats["armCalls"] == {} and stats["tokenRequests"] == {}
    assert await service.ledger.link_states(TAILSPIN) == []
    (event,) = await service.ledger.history(TAILSPIN)
    assert (event.outcome, event.code) == ("rejected", "partner-id-not-allowed")


async def test_certificate_identity_is_linked(service: LinkService, cloud: CloudSandbox) -> None:
    body = onboarding_message(
        LITWARE, LITWARE_APP, identity_type="certificate", secret_name="litware-pal-cert"
    )
    outcome = await send(service, body)
    assert outcome.kind is OutcomeKind.LINKED
    assert sandbox_link(cloud, LITWARE)["partnerId"] == PARTNER_ID  # type: ignore[index]


async def test_missing_consent_needs_customer_action(service: LinkService) -> None:
    outcome = await send(service, onboarding_message(WOODGROVE))
    assert outcome.kind is OutcomeKind.NEEDS_CUSTOMER_ACTION
    assert outcome.code == "AADSTS700016"
    assert (
        outcome.remediation
        and "admin consent" in outcome.remediation
        and FEDERATED_APP in outcome.remediation
    )
    state = await only_state(service.ledger, WOODGROVE)
    assert (state.outcome, state.code, state.consecutive_failures) == (
        "needs-customer-action",
        "AADSTS700016",
        1,
    )
    assert state.remediation == outcome.remediation


async def test_disabled_app_and_unknown_tenant_need_customer_action(
    service: LinkService, cloud: CloudSandbox
) -> None:
    cloud.set_service_principal_enabled(NORTHWIND, FEDERATED_APP, False)
    disabled = await send(service, onboarding_message(NORTHWIND), "m-disabled")
    unknown = await send(service, onboarding_message("0d5f3c4e-1111-4a2b-9c3d-0123456789ab"), "m-unknown")
    assert (disabled.kind, disabled.code) == (OutcomeKind.NEEDS_CUSTOMER_ACTION, "AADSTS7000112")
    assert (unknown.kind, unknown.code) == (OutcomeKind.NEEDS_CUSTOMER_ACTION, "AADSTS90002")


async def test_wrong_secret_is_a_broken_partner_credential_and_recovers_after_rotation(
    service: LinkService, cloud: CloudSandbox
) -> None:
    good = cloud.secret_value("fabrikam-pal-secret")
    wrong = "Abc8Q~this-is-not-the-right-secret-value-000"
    cloud.set_secret("fabrikam-pal-secret", wrong, tags=bound_to(FABRIKAM, FABRIKAM_APP))
    body = onboarding_message(
        FABRIKAM, FABRIKAM_APP, identity_type="secret", secret_name="fabrikam-pal-secret"
    )
    broken = await send(service, body, "m-1")
    assert (broken.kind, broken.code) == (OutcomeKind.PARTNER_CREDENTIAL_BROKEN, "AADSTS7000215")
    assert broken.remediation and "fabrikam-pal-secret" in broken.remediation

    # The partner rotates the secret in Key Vault (a new version, tagged again).
    cloud.set_secret("fabrikam-pal-secret", good, tags=bound_to(FABRIKAM, FABRIKAM_APP))
    fixed = await send(service, body, "m-2")
    assert fixed.kind is OutcomeKind.RECLAIMED
    state = await only_state(service.ledger, FABRIKAM)
    assert (state.outcome, state.consecutive_failures) == ("reclaimed", 0)


async def test_missing_key_vault_secret_needs_the_partner_to_create_it(service: LinkService) -> None:
    body = onboarding_message(FABRIKAM, FABRIKAM_APP, identity_type="secret", secret_name="no-such-secret")
    outcome = await send(service, body)
    assert (outcome.kind, outcome.code) == (OutcomeKind.NEEDS_PARTNER_ACTION, "key-vault-secret-missing")
    assert "does not exist" in outcome.reason and "no-such-secret" in (outcome.remediation or "")


async def test_unknown_partner_id_is_invalid(settings: Settings, cloud: CloudSandbox) -> None:
    # Ours by configuration, but Microsoft does not know it (a typo in ALLOWED_PARTNER_IDS).
    ours = frozenset({PARTNER_ID, "1111111"})
    outcome = await send_with(
        settings, onboarding_message(NORTHWIND, partnerId="1111111"), allowed_partner_ids=ours
    )
    assert (outcome.kind, outcome.code) == (OutcomeKind.INVALID_PARTNER_ID, "PartnerIdInvalid")
    assert sandbox_link(cloud, NORTHWIND) is None


async def test_throttling_is_transient_with_the_servers_retry_after(
    service: LinkService, cloud: CloudSandbox
) -> None:
    cloud.add_fault(NORTHWIND, FaultRule(target="arm", kind="status", status=429, retry_after=17, count=1))
    throttled = await send(service, onboarding_message(NORTHWIND), "m-1")
    assert (throttled.kind, throttled.retry_after, throttled.code) == (OutcomeKind.TRANSIENT, 17.0, "HTTP429")

    # Service Bus redelivers the same message: this time it goes through.
    linked = await service.handle(
        json.dumps(onboarding_message(NORTHWIND)).encode(), message_id="m-1", delivery_count=2
    )
    assert linked.kind is OutcomeKind.LINKED
    history = await service.ledger.history(NORTHWIND)
    assert [(event.outcome, event.delivery_count) for event in history] == [
        ("linked", 2),
        ("transient", 1),
    ]


async def test_server_errors_and_dropped_connections_are_transient(
    service: LinkService, cloud: CloudSandbox
) -> None:
    cloud.add_fault(NORTHWIND, FaultRule(target="arm", kind="status", status=503, count=1))
    # aiohttp silently retries a GET once when a kept-alive connection drops: drop every attempt.
    cloud.add_fault(TAILSPIN, FaultRule(target="arm", kind="drop"))
    unavailable = await send(service, onboarding_message(NORTHWIND), "m-1")
    dropped = await send(service, onboarding_message(TAILSPIN), "m-2")
    assert (unavailable.kind, unavailable.code) == (OutcomeKind.TRANSIENT, "HTTP503")
    assert (dropped.kind, dropped.code) == (OutcomeKind.TRANSIENT, "network")


async def test_token_endpoint_faults_are_classified(service: LinkService, cloud: CloudSandbox) -> None:
    cloud.add_fault(NORTHWIND, FaultRule(target="token", kind="aadsts", aadsts=53003, count=1))
    cloud.add_fault(TAILSPIN, FaultRule(target="token", kind="aadsts", aadsts=90033))
    blocked = await send(service, onboarding_message(NORTHWIND), "m-1")
    busy = await send(service, onboarding_message(TAILSPIN), "m-2")
    assert (blocked.kind, blocked.code) == (OutcomeKind.NEEDS_CUSTOMER_ACTION, "AADSTS53003")
    assert "Conditional Access" in (blocked.remediation or "")
    assert (busy.kind, busy.code) == (OutcomeKind.TRANSIENT, "AADSTS90033")


async def test_put_race_is_answered_by_a_fresh_get(service: LinkService, cloud: CloudSandbox) -> None:
    # A link appears between our GET and PUT: the PUT answers 409 and the linker looks again.
    cloud.add_fault(NORTHWIND, FaultRule(target="arm", kind="latency", latency_ms=300, count=1))
    task = asyncio.create_task(send(service, onboarding_message(NORTHWIND)))
    await asyncio.sleep(0.15)
    await asyncio.to_thread(cloud.set_link, NORTHWIND, NORTHWIND_OID, PARTNER_ID)
    outcome = await task
    assert outcome.kind is OutcomeKind.ALREADY_LINKED
    assert _arm_calls(cloud.stats(), NORTHWIND, "PUT") == 1


async def test_put_answering_200_with_a_foreign_link_is_reclaimed(
    service: LinkService, cloud: CloudSandbox
) -> None:
    cloud.set_put_when_linked("ok")
    cloud.add_fault(NORTHWIND, FaultRule(target="arm", kind="latency", latency_ms=300, count=1))
    task = asyncio.create_task(send(service, onboarding_message(NORTHWIND)))
    await asyncio.sleep(0.15)
    await asyncio.to_thread(cloud.set_link, NORTHWIND, NORTHWIND_OID, OTHER_PARTNER_ID)
    outcome = await task
    assert (outcome.kind, outcome.previous_partner_id) == (OutcomeKind.RECLAIMED, OTHER_PARTNER_ID)
    assert sandbox_link(cloud, NORTHWIND)["partnerId"] == PARTNER_ID  # type: ignore[index]


async def test_one_token_per_tenant_however_many_messages(service: LinkService, cloud: CloudSandbox) -> None:
    cloud.reset_stats()
    for number in range(6):
        if number % 2:
            cloud.delete_link(NORTHWIND, NORTHWIND_OID)  # make some of them real writes
        outcome = await send(service, onboarding_message(NORTHWIND), f"m-{number}")
        assert outcome.kind in {OutcomeKind.LINKED, OutcomeKind.ALREADY_LINKED}
    await send(service, onboarding_message(TAILSPIN), "m-tailspin")
    stats = cloud.stats()
    assert _token_requests(stats, NORTHWIND) == 1
    assert _token_requests(stats, TAILSPIN) == 1
    assert _arm_calls(stats, NORTHWIND, "GET") == 6


async def test_redelivered_message_adds_no_second_event(service: LinkService, cloud: CloudSandbox) -> None:
    first = await send(service, onboarding_message(NORTHWIND), "m-same")
    calls_after_first = _arm_calls(cloud.stats(), NORTHWIND, "GET")
    again = await service.handle(
        json.dumps(onboarding_message(NORTHWIND)).encode(), message_id="m-same", delivery_count=2
    )
    assert first.kind is again.kind is OutcomeKind.LINKED
    assert again.code == "duplicate-delivery"
    assert _arm_calls(cloud.stats(), NORTHWIND, "GET") == calls_after_first
    assert len(await service.ledger.history(NORTHWIND)) == 1


async def test_concurrent_deliveries_of_one_message_record_one_event(service: LinkService) -> None:
    body = json.dumps(onboarding_message(NORTHWIND)).encode()
    outcomes = await asyncio.gather(*(service.handle(body, message_id="m-dup") for _ in range(4)))
    assert {outcome.kind for outcome in outcomes} <= {OutcomeKind.LINKED, OutcomeKind.ALREADY_LINKED}
    assert len(await service.ledger.history(NORTHWIND)) == 1


async def test_concurrent_messages_for_one_link_lose_no_update(service: LinkService) -> None:
    body = json.dumps(onboarding_message(NORTHWIND)).encode()
    await asyncio.gather(*(service.handle(body, message_id=f"m-{number}") for number in range(5)))
    history = await service.ledger.history(NORTHWIND)
    assert len(history) == 5
    assert sorted(event.message_id for event in history) == [f"m-{number}" for number in range(5)]
    state = await only_state(service.ledger, NORTHWIND)
    assert state.last_message_id in {f"m-{number}" for number in range(5)}
    assert state.linked_partner_id == PARTNER_ID


async def test_rejections_are_recorded_once_and_filed_by_tenant(service: LinkService) -> None:
    bad_partner = await send(service, onboarding_message(NORTHWIND, partnerId="12-345"), "m-1")
    not_json = await send(service, b"<xml/>", "m-2")
    again = await send(service, b"<xml/>", "m-2")
    assert bad_partner.kind is not_json.kind is again.kind is OutcomeKind.REJECTED
    assert bad_partner.code == "invalid-field" and "partnerId" in bad_partner.reason
    assert not_json.code == "not-json"

    filed = await service.ledger.history(NORTHWIND)
    assert [(event.outcome, event.code) for event in filed] == [("rejected", "invalid-field")]
    assert await service.ledger.link_states(NORTHWIND) == []  # a rejection never changes a link's state
    unknown = await service.ledger.history(UNKNOWN_TENANT)
    assert [(event.outcome, event.code) for event in unknown] == [("rejected", "not-json")]


def _token_requests(stats: dict[str, Any], tenant: str) -> int:
    return int(stats["tokenRequests"].get(tenant, 0))


def _arm_calls(stats: dict[str, Any], tenant: str, method: str) -> int:
    return int(stats["armCalls"].get(tenant, {}).get(method, 0))
