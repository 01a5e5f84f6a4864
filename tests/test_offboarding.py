"""Offboarding: a `customer-offboarded` message (the onboarding queue, palKind) removes the link in
ARM and records `unlinked`; the nightly run then leaves the customer alone, and onboarding it again
starts anew. Through the real parts: the local broker and Functions host, the Entra/ARM sandbox and
Azurite; and, where one message's path is the point, through the service in this process."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from test_end_to_end import QUEUE, history, send, wait_for_final, wait_until_idle
from test_reverify import wait_for_run

from sandbox.broker import ServiceBusBroker
from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from sandbox.scenario import FaultRule
from shared.links.ledger import UNKNOWN_TENANT
from shared.links.message_builder import OFFBOARDING_PROPERTIES, offboarding_body
from shared.links.offboarding import Offboarding
from shared.links.reverify import NightlyRun, run_id_for, verify_now
from shared.links.service import LinkService, get_service, reset_service
from shared.spine.outcomes import OutcomeKind
from tenants import (
    FABRIKAM,
    FABRIKAM_APP,
    FEDERATED_APP,
    NORTHWIND,
    PARTNER_ID,
    TAILSPIN,
    onboarding_message,
)

NORTHWIND_OID = "d87199a7-f53b-4dd6-813d-019f7547bffb"
TAILSPIN_OID = "70ef3ca8-58d0-4993-a43c-dd744f31c589"


async def send_offboarding(
    env: dict[str, str],
    body: dict[str, Any] | bytes,
    message_id: str,
    properties: dict[str, Any] | None = None,
) -> None:
    """As the CRM sends it: the onboarding queue, with the kind in an application property."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with ServiceBusClient.from_connection_string(env["ServiceBusConnection"]) as client:
        async with client.get_queue_sender(QUEUE) as sender:
            await sender.send_messages(
                ServiceBusMessage(
                    raw,
                    message_id=message_id,
                    application_properties=OFFBOARDING_PROPERTIES if properties is None else properties,
                )
            )


def arm_state(cloud: CloudSandbox, tenant: str) -> list[tuple[str, str]]:
    return [(link["partnerId"], link["state"]) for link in cloud.links() if link["tenantId"] == tenant]


def arm_calls(cloud: CloudSandbox, tenant: str) -> dict[str, int]:
    return dict(cloud.stats()["armCalls"].get(tenant, {}))


# --- through the broker and the host ----------------------------------------------------------------


async def test_offboarded_customer_is_unlinked_skipped_at_night_and_linked_again_when_onboarded(
    host: LocalFunctionsHost, bus_env: dict[str, str], cloud: CloudSandbox, broker: ServiceBusBroker
) -> None:
    await send(bus_env, (onboarding_message(NORTHWIND), "on-n"), (onboarding_message(TAILSPIN), "on-t"))
    assert (await wait_for_final(NORTHWIND, "on-n"))[0].outcome == "linked"
    assert (await wait_for_final(TAILSPIN, "on-t"))[0].outcome == "already-linked"

    await send_offboarding(bus_env, {"schemaVersion": 1, "customerTenantId": NORTHWIND}, "off-n")
    (unlinked,) = await wait_for_final(NORTHWIND, "off-n")
    assert (unlinked.outcome, unlinked.source, unlinked.client_id) == (
        "unlinked",
        "offboarding",
        FEDERATED_APP,
    )
    assert unlinked.previous_partner_id == PARTNER_ID and f"partner ID {PARTNER_ID}" in unlinked.reason
    assert arm_state(cloud, NORTHWIND) == [(PARTNER_ID, "Deleted")]
    (state,) = await (await get_service()).ledger.link_states(NORTHWIND)
    assert (state.outcome, state.linked_partner_id, state.previous_partner_id) == (
        "unlinked",
        None,
        PARTNER_ID,
    )
    assert state.offboarded_at is not None and state.is_offboarded

    # The nightly run checks Tailspin only: its total and its outcomes say so, Northwind gets no event.
    host.fire_timer("reverify_links")
    run = await wait_for_run(run_id_for(datetime.now(UTC)))
    assert (run.total, run.complete, dict(run.counts)) == (1, True, {"verified": 1})
    assert [e.source for e in await history(NORTHWIND)] == ["offboarding", "onboarding"]
    assert arm_state(cloud, NORTHWIND) == [(PARTNER_ID, "Deleted")]  # not healed

    # The customer comes back: a new onboarding links it again and the nightly run checks it again.
    await send(bus_env, (onboarding_message(NORTHWIND), "on-n-again"))
    assert (await wait_for_final(NORTHWIND, "on-n-again"))[0].outcome == "linked"
    assert arm_state(cloud, NORTHWIND) == [(PARTNER_ID, "Active")]
    (state,) = await (await get_service()).ledger.link_states(NORTHWIND)
    assert (state.outcome, state.offboarded_at, state.linked_partner_id) == ("linked", None, PARTNER_ID)
    run_id, sent = await NightlyRun.of(await get_service()).start(now=datetime.now(UTC) + timedelta(days=1))
    assert sent == 2
    second = await wait_for_run(run_id)
    assert (second.total, second.count("verified")) == (2, 2)
    await wait_until_idle(broker, host)
    assert broker.queue_counts(QUEUE)["dead_lettered"] == 0


async def test_identity_gone_is_unlinked_with_the_reason_and_not_retried(
    host: LocalFunctionsHost, bus_env: dict[str, str], cloud: CloudSandbox, broker: ServiceBusBroker
) -> None:
    await send(bus_env, (onboarding_message(TAILSPIN), "on-t"))
    await wait_for_final(TAILSPIN, "on-t")
    cloud.remove_service_principal(TAILSPIN, FEDERATED_APP)  # the customer deleted our identity
    await reset_service()  # no token cached from before: the next one is asked of Entra ID
    calls_before = arm_calls(cloud, TAILSPIN)

    await send_offboarding(bus_env, {"schemaVersion": 1, "customerTenantId": TAILSPIN}, "off-t")
    (event,) = await wait_for_final(TAILSPIN, "off-t")
    assert (event.outcome, event.code, event.attempt, event.next_attempt_at) == (
        "unlinked",
        "AADSTS700016",
        1,
        None,
    )
    assert "can no longer sign in" in event.reason and "went with it" in event.reason
    await wait_until_idle(broker, host)
    invocations = [i for i in host.invocations if i.function == "onboard_customer"]
    assert len(invocations) == 2 and all(i.succeeded for i in invocations)  # onboarding, offboarding
    assert arm_calls(cloud, TAILSPIN) == calls_before  # ARM was never asked
    (state,) = await (await get_service()).ledger.link_states(TAILSPIN)
    assert (state.outcome, state.is_offboarded) == ("unlinked", True)


async def test_a_throttled_offboarding_is_retried_as_an_offboarding(
    host: LocalFunctionsHost, bus_env: dict[str, str], cloud: CloudSandbox, broker: ServiceBusBroker
) -> None:
    await send(bus_env, (onboarding_message(TAILSPIN), "on-t"))
    await wait_for_final(TAILSPIN, "on-t")
    cloud.add_fault(TAILSPIN, FaultRule(target="arm", kind="status", status=429, retry_after=1, count=1))
    body = offboarding_body(TAILSPIN, client_id=FEDERATED_APP, correlation_id="CRM-END-7")
    await send_offboarding(bus_env, body, "off-t")
    unlinked, throttled = await wait_for_final(TAILSPIN, "off-t", timeout=40)
    assert (throttled.outcome, throttled.code, throttled.source) == ("transient", "HTTP429", "offboarding")
    # The scheduled copy kept its kind: it was handled as an offboarding, not parsed as an onboarding.
    assert (unlinked.outcome, unlinked.message_id, unlinked.source) == (
        "unlinked",
        "off-t:retry2",
        "offboarding",
    )
    assert unlinked.correlation_id == "CRM-END-7"
    assert arm_state(cloud, TAILSPIN) == [(PARTNER_ID, "Deleted")]
    await wait_until_idle(broker, host)
    assert broker.queue_counts(QUEUE)["dead_lettered"] == 0


@pytest.mark.parametrize(
    ("body", "properties", "tenant", "code", "details"),
    [
        (
            {"schemaVersion": 1, "customerTenantId": NORTHWIND, "clientId": "app-1", "colour": "blue"},
            None,
            NORTHWIND,
            "invalid-field",
            [
                "colour: unknown field (allowed: clientId, correlationId, customerTenantId, schemaVersion)",
                "clientId: must be a GUID like 00000000-0000-0000-0000-000000000000",
            ],
        ),
        (
            {"schemaVersion": 1, "customerTenantId": NORTHWIND, "clientSecret": "x"},
            None,
            NORTHWIND,
            "secret-in-message",
            [
                "clientSecret: looks like a credential (secret, password, key or token); a message may carry "
                "only a Key Vault secret name, never the credential itself"
            ],
        ),
        (
            {"schemaVersion": 1, "customerTenantId": NORTHWIND},
            {"palKind": "customer-offbaorded"},
            NORTHWIND,
            "unknown-kind",
            [
                "palKind: the application property must be customer-offboarded or customer-onboarded, "
                "or absent"
            ],
        ),
        (
            b'{"schemaVersion": 1, "customerTenantId": "x", "customerTenantId": "y"}',
            None,
            UNKNOWN_TENANT,
            "not-json",
            ["customerTenantId: appears more than once"],
        ),
        (
            {"schemaVersion": 1, "customerTenantId": FABRIKAM},
            None,
            FABRIKAM,
            "unknown-tenant",
            [],
        ),
    ],
)
async def test_a_malformed_offboarding_message_is_rejected_with_details(
    host: LocalFunctionsHost,
    bus_env: dict[str, str],
    cloud: CloudSandbox,
    broker: ServiceBusBroker,
    body: dict[str, Any] | bytes,
    properties: dict[str, Any] | None,
    tenant: str,
    code: str,
    details: list[str],
) -> None:
    await send_offboarding(bus_env, body, "off-bad", properties)
    (event,) = await wait_for_final(tenant, "off-bad")
    assert (event.outcome, event.code, event.source) == ("rejected", code, "offboarding")
    assert sorted((event.details or "").split("\n") if details else []) == sorted(details)
    await wait_until_idle(broker, host)
    assert len(host.invocations) == 1 and host.invocations[0].succeeded
    assert "armCalls" not in cloud.stats() or not cloud.stats()["armCalls"]
    assert "blue" not in json.dumps(await history(tenant), default=str)


# --- one message through the service ------------------------------------------------------------------


async def onboard(service: LinkService, tenant: str, client_id: str = FEDERATED_APP, **fields: Any) -> str:
    body = json.dumps(onboarding_message(tenant, client_id, **fields)).encode()
    return (await service.handle(body, message_id=f"on-{tenant}-{client_id}")).kind.value


async def test_a_redelivered_offboarding_deletes_nothing_twice_and_records_nothing_twice(
    service: LinkService, cloud: CloudSandbox
) -> None:
    assert await onboard(service, NORTHWIND) == "linked"
    offboarding, body = Offboarding(service), offboarding_body(NORTHWIND)
    first = await offboarding.handle(body, message_id="off-1", properties=OFFBOARDING_PROPERTIES)
    again = await offboarding.handle(
        body, message_id="off-1", delivery_count=2, properties=OFFBOARDING_PROPERTIES
    )
    assert first.kind is OutcomeKind.UNLINKED and first.code is None
    assert (again.kind, again.code) == (OutcomeKind.UNLINKED, "duplicate-delivery")
    assert arm_calls(cloud, NORTHWIND).get("DELETE") == 1
    assert [(e.outcome, e.message_id) for e in await service.ledger.history(NORTHWIND)] == [
        ("unlinked", "off-1"),
        ("linked", f"on-{NORTHWIND}-{FEDERATED_APP}"),
    ]

    # A new offboarding message (the CRM sent it twice) finds nothing to remove: unlinked, harmlessly.
    later = await offboarding.handle(body, message_id="off-2", properties=OFFBOARDING_PROPERTIES)
    assert (later.kind, later.reason) == (OutcomeKind.UNLINKED, "no link was in place; nothing to remove")
    assert arm_calls(cloud, NORTHWIND).get("DELETE") == 1
    (state,) = await service.ledger.link_states(NORTHWIND)
    assert state.previous_partner_id == PARTNER_ID  # what was removed stays on the state


async def test_a_verify_message_sent_before_the_offboarding_checks_nothing(
    service: LinkService, cloud: CloudSandbox
) -> None:
    assert await onboard(service, NORTHWIND) == "linked"
    (before,) = await service.ledger.link_states(NORTHWIND)
    await Offboarding(service).handle(
        offboarding_body(NORTHWIND), message_id="off", properties=OFFBOARDING_PROPERTIES
    )
    calls = arm_calls(cloud, NORTHWIND)
    outcome = await verify_now(service, before, "2026-03-01")  # built from the state before offboarding
    assert outcome is not None and (outcome.kind, outcome.code) == (OutcomeKind.UNLINKED, "offboarded")
    assert arm_calls(cloud, NORTHWIND) == calls and arm_state(cloud, NORTHWIND) == [(PARTNER_ID, "Deleted")]
    (state,) = await service.ledger.link_states(NORTHWIND)
    assert (state.outcome, state.is_offboarded, state.last_run_id) == ("unlinked", True, "2026-03-01")


async def test_the_identity_is_chosen_from_the_ledger(service: LinkService, cloud: CloudSandbox) -> None:
    assert (
        await onboard(
            service, FABRIKAM, FABRIKAM_APP, identity_type="secret", secret_name="fabrikam-pal-secret"
        )
        == "reclaimed"
    )
    assert await onboard(service, FABRIKAM) == "needs-customer-action"  # a second identity, never consented
    offboarding = Offboarding(service)

    async def offboard(message_id: str, client_id: str | None = None) -> tuple[str, str | None]:
        body = offboarding_body(FABRIKAM, client_id=client_id)
        outcome = await offboarding.handle(body, message_id=message_id, properties=OFFBOARDING_PROPERTIES)
        return outcome.kind.value, outcome.code

    assert await offboard("off-any") == ("rejected", "identity-required")
    assert await offboard("off-other", "0a1b2c3d-0000-4000-8000-000000000001") == (
        "rejected",
        "unknown-identity",
    )
    # The secret identity signs in with its Key Vault secret, as when it linked.
    assert await offboard("off-secret", FABRIKAM_APP) == ("unlinked", None)
    assert arm_state(cloud, FABRIKAM) == [(PARTNER_ID, "Deleted")]
    # One identity left not offboarded: a message without clientId now means that one.
    # The other identity never got a service principal there: it cannot sign in, so it has no link.
    assert await offboard("off-rest") == ("unlinked", "AADSTS700016")
    states = {state.client_id: state for state in await service.ledger.link_states(FABRIKAM)}
    assert all(state.is_offboarded for state in states.values())
    assert states[FABRIKAM_APP].outcome == "unlinked"


async def test_a_tenant_nobody_linked_is_rejected_and_filed_under_it(service: LinkService) -> None:
    outcome = await Offboarding(service).handle(
        offboarding_body(FABRIKAM), message_id="off", properties=OFFBOARDING_PROPERTIES
    )
    assert (outcome.kind, outcome.code) == (OutcomeKind.REJECTED, "unknown-tenant")
    assert [e.outcome for e in await service.ledger.history(FABRIKAM)] == ["rejected"]
    assert await service.ledger.link_states(FABRIKAM) == []


async def test_a_removal_that_did_not_finish_is_tried_again_the_next_night(
    host: LocalFunctionsHost, bus_env: dict[str, str], cloud: CloudSandbox, broker: ServiceBusBroker
) -> None:
    from shared.links.message import OffboardingRequest

    await send(bus_env, (onboarding_message(TAILSPIN), "on-t"))
    await wait_for_final(TAILSPIN, "on-t")
    service = await get_service()
    cloud.add_fault(TAILSPIN, FaultRule(target="arm", kind="status", status=503, count=3))
    done = await Offboarding(service).offboard(OffboardingRequest(TAILSPIN, FEDERATED_APP))
    assert done.outcome.kind is OutcomeKind.TRANSIENT  # an operator's call is not rescheduled
    assert arm_state(cloud, TAILSPIN) == [(PARTNER_ID, "Active")]
    cloud.clear_faults(TAILSPIN)

    run_id, sent = await NightlyRun.of(service).start(now=datetime.now(UTC) + timedelta(days=1))
    assert sent == 0  # not verified: offboarded...
    (removed, *_) = await wait_for_final(TAILSPIN, f"offboard:{TAILSPIN}:{FEDERATED_APP}:{run_id}")
    assert (removed.outcome, removed.source) == ("unlinked", "offboarding")  # ...but removed at last
    assert arm_state(cloud, TAILSPIN) == [(PARTNER_ID, "Deleted")]

    again, _ = await NightlyRun.of(service).start(now=datetime.now(UTC) + timedelta(days=2))
    await wait_until_idle(broker, host)
    assert [e.message_id for e in await history(TAILSPIN)].count(
        f"offboard:{TAILSPIN}:{FEDERATED_APP}:{again}"
    ) == 0
