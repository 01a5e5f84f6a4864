"""Nightly re-verification end to end: the timer fans out verify messages through the broker, the
verify function repairs drift, and the run is summarised and compared with the previous one."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from test_end_to_end import send, wait_for_final

from sandbox.broker import ServiceBusBroker
from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from shared.links.reverify import NightlyRun, run_id_for, verify_message, verify_now
from shared.links.rows import HistoryEvent, LinkState
from shared.links.runs import RunRecord
from shared.links.service import LinkService, get_service, reset_service
from shared.spine.outcomes import OutcomeKind
from tenants import FABRIKAM, FABRIKAM_APP, FEDERATED_APP, NORTHWIND, OTHER_PARTNER_ID, TAILSPIN, WOODGROVE
from tenants import onboarding_message as message

NORTHWIND_OID = "d87199a7-f53b-4dd6-813d-019f7547bffb"
FABRIKAM_OID = "fad08631-a20d-46eb-9c68-9bb2395042d8"
TAILSPIN_OID = "70ef3ca8-58d0-4993-a43c-dd744f31c589"


async def onboard_four(bus_env: dict[str, str]) -> None:
    fabrikam = message(FABRIKAM, FABRIKAM_APP, identity_type="secret", secret_name="fabrikam-pal-secret")
    onboardings = [
        (message(NORTHWIND), "n"),
        (message(TAILSPIN), "t"),
        (fabrikam, "f"),
        (message(WOODGROVE), "w"),
    ]
    await send(bus_env, *onboardings)
    for tenant, message_id in ((NORTHWIND, "n"), (TAILSPIN, "t"), (FABRIKAM, "f"), (WOODGROVE, "w")):
        await wait_for_final(tenant, message_id)


async def wait_for_run(run_id: str, timeout: float = 30) -> RunRecord:
    deadline = time.monotonic() + timeout
    while True:
        runs = {run.run_id: run for run in await (await get_service()).ledger.runs.all()}
        if run_id in runs and runs[run_id].ended:
            return runs[run_id]
        assert time.monotonic() < deadline, runs
        await asyncio.sleep(0.2)


async def verify_events(tenant: str) -> list[HistoryEvent]:
    history = await (await get_service()).ledger.history(tenant)
    return [event for event in history if event.source == "verify"]


async def test_nightly_run_verifies_heals_and_summarises(
    host: LocalFunctionsHost, bus_env: dict[str, str], cloud: CloudSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await onboard_four(bus_env)
    cloud.delete_link(NORTHWIND, NORTHWIND_OID)  # someone removed the link
    cloud.set_link(FABRIKAM, FABRIKAM_OID, OTHER_PARTNER_ID)  # a partner ID not ours took it over

    host.fire_timer("reverify_links")
    await asyncio.sleep(0.5)
    host.fire_timer("reverify_links")  # a timer that fires twice does no double work
    run = await wait_for_run(run_id_for(datetime.now(UTC)))

    expected = {
        NORTHWIND: "healed",
        TAILSPIN: "verified",
        FABRIKAM: "reclaimed",
        WOODGROVE: "needs-customer-action",
    }
    for tenant, outcome in expected.items():
        events = await verify_events(tenant)
        assert [e.outcome for e in events] == [outcome], tenant
        assert events[0].run_id == run.run_id
    assert any(link["tenantId"] == NORTHWIND and link["state"] == "Active" for link in cloud.links())
    assert run.total == 4 and run.complete is True
    assert (run.count("verified"), run.count("healed"), run.count("reclaimed")) == (1, 1, 1)
    assert any(r.getMessage().startswith("ALERT foreign partner ID") for r in caplog.records)
    assert run.count("needs-customer-action") == 1
    # Each link put back in place had its Azure recognition checked (demo.json: Contributor in
    # Northwind, Support Request Contributor in Fabrikam, only Reader in Tailspin).
    assert dict(run.earning) == {"earning": 2, "not-earning": 1, "unchecked": 1} and run.stopped_earning == 0
    assert any(
        "re-verification run" in r.getMessage() and "finished" in r.getMessage() for r in caplog.records
    )

    # The next night: consent withdrawn at Tailspin. Fewer verified, more needing action: two warnings.
    cloud.remove_service_principal(TAILSPIN, FEDERATED_APP)
    await reset_service()  # by the next night yesterday's tokens have long expired
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    run_id, sent = await NightlyRun.of(await get_service()).start(now=tomorrow)
    assert sent == 4
    second = await wait_for_run(run_id)
    assert (second.count("needs-customer-action"), second.count("verified")) == (2, 2)
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "run " + run_id in r.getMessage()
    ]
    assert any("links needing customer action rose from 1" in w for w in warnings)
    assert not any(
        "verified links dropped" in w for w in warnings
    )  # 1 verified before, 2 now (healed, updated)


def test_verify_message_is_a_valid_onboarding_message() -> None:
    state = LinkState(
        partition_key=NORTHWIND,
        row_key=f"link~{FABRIKAM_APP}",
        outcome=OutcomeKind.VERIFIED,
        customer_tenant_id=NORTHWIND,
        client_id=FABRIKAM_APP,
        identity_type="secret",
        key_vault_secret_name="fabrikam-pal-secret",
        partner_id="1234567",
        customer_name="Northwind",
    )
    outgoing = verify_message(state, "2026-11-23")
    assert outgoing is not None
    assert outgoing.message_id == f"verify:{NORTHWIND}:{FABRIKAM_APP}:2026-11-23"
    assert len(outgoing.message_id) <= 128
    from shared.links.message import parse_onboarding_message

    request = parse_onboarding_message(outgoing.body, default_partner_id="7654321", max_bytes=65536)
    assert (request.partner_id, request.identity.key_vault_secret_name) == ("1234567", "fabrikam-pal-secret")
    no_identity = LinkState(partition_key=NORTHWIND, row_key="link~", outcome=OutcomeKind.FAILED)
    assert verify_message(no_identity, "2026-11-23") is None


@pytest.mark.parametrize(
    ("state", "body"),
    [
        (
            {
                "CustomerTenantId": NORTHWIND,
                "ClientId": FABRIKAM_APP,
                "IdentityType": "secret",
                "KeyVaultSecretName": "fabrikam-pal-secret",
                "PartnerId": "1234567",
                "CustomerName": "Northwind \u00e9",
                "CorrelationId": "crm-1",
            },
            (
                f'{{"schemaVersion":1,"customerTenantId":"{NORTHWIND}","identity":{{"type":"secret",'
                f'"clientId":"{FABRIKAM_APP}","keyVaultSecretName":"fabrikam-pal-secret"}},'
                '"partnerId":"1234567","customerName":"Northwind \\u00e9","correlationId":"crm-1"}'
            ).encode(),
        ),
        (
            {
                "CustomerTenantId": NORTHWIND,
                "ClientId": FABRIKAM_APP,
                "IdentityType": "federated",
                "KeyVaultSecretName": "",
                "PartnerId": None,
                "CustomerName": "",
            },
            (
                f'{{"schemaVersion":1,"customerTenantId":"{NORTHWIND}",'
                f'"identity":{{"type":"federated","clientId":"{FABRIKAM_APP}"}}}}'
            ).encode(),
        ),
    ],
)
def test_verify_message_body_is_the_canonical_v1_body(state: dict[str, Any], body: bytes) -> None:
    row = LinkState.from_entity(
        {"PartitionKey": NORTHWIND, "RowKey": "link~x", "Outcome": "verified", **state}
    )
    outgoing = verify_message(row, "2026-11-23")
    assert outgoing is not None and outgoing.body == body


VERIFY_QUEUE = "link-verify"
HOSTILE = "MARKER-\x1b[31m\u202e-value"


@pytest.mark.parametrize(
    "properties",
    [
        {"palKind": "run-summary"},
        {"palKind": "run-summary", "palRunId": "2026-11-23", "palCheck": "MARKER-not-a-number"},
        {"palKind": "run-summary", "palRunId": "2026-11-23", "palCheck": -3},
        {"palKind": "run-summary", "palRunId": "2026-11-23", "palCheck": 100_000},
        {"palKind": "run-summary", "palRunId": HOSTILE, "palCheck": 1},
        {"palKind": "run-summary", "palRunId": 20261123, "palCheck": 1},
    ],
)
async def test_malformed_run_summary_check_is_completed_once_with_a_warning(
    host: LocalFunctionsHost,
    bus_env: dict[str, str],
    broker: ServiceBusBroker,
    caplog: pytest.LogCaptureFixture,
    properties: dict[str, Any],
) -> None:
    caplog.set_level(logging.INFO)
    async with ServiceBusClient.from_connection_string(bus_env["ServiceBusConnection"]) as client:
        async with client.get_queue_sender(VERIFY_QUEUE) as sender:
            await sender.send_messages(
                ServiceBusMessage(b"{}", message_id="check-\x1b[2J", application_properties=properties)
            )
    deadline = time.monotonic() + 15
    # Invoked, and the queue idle (nothing active, locked or scheduled): a raising invocation
    # would have left the message active again for redelivery, so none can follow.
    while not [i for i in host.invocations if i.function == "verify_link"] or any(
        broker.queue_counts(VERIFY_QUEUE)[k] for k in ("active", "locked", "scheduled")
    ):
        assert time.monotonic() < deadline, broker.queue_counts(VERIFY_QUEUE)
        await asyncio.sleep(0.1)

    invocations = [i for i in host.invocations if i.function == "verify_link"]
    assert [(i.succeeded, i.error) for i in invocations] == [(True, None)]
    assert broker.queue_counts(VERIFY_QUEUE)["dead_lettered"] == 0
    assert broker.queue_counts(VERIFY_QUEUE)["active"] == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("run-summary check" in w and "ignored" in w for w in warnings), warnings
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "MARKER" not in logged and "\x1b" not in logged and "\u202e" not in logged


async def test_unchanged_nights_extend_the_verified_interval_without_new_events(
    service: LinkService, cloud: CloudSandbox
) -> None:
    linked = await service.handle(json.dumps(message(TAILSPIN)).encode(), message_id="onboard")
    assert linked.kind.value == "already-linked"

    async def night(run_id: str) -> str:
        (state,) = await service.ledger.link_states(TAILSPIN)
        outcome = await verify_now(service, state, run_id)
        assert outcome is not None
        return outcome.kind.value

    assert [await night(run) for run in ("2026-03-01", "2026-03-02", "2026-03-03")] == ["verified"] * 3

    events = await service.ledger.history(TAILSPIN)
    assert [(e.outcome, e.run_id) for e in events] == [
        ("verified", "2026-03-01"),  # the interval starts
        ("already-linked", None),
    ]
    (state,) = await service.ledger.link_states(TAILSPIN)
    assert (state.outcome, state.verified_count, state.last_run_id) == ("verified", 3, "2026-03-03")
    assert state.verified_since == events[0].event_time < state.last_checked_at

    # Something changes (the link is removed and healed): the interval ends, a new one starts later.
    cloud.delete_link(TAILSPIN, TAILSPIN_OID)
    assert await night("2026-03-04") == "healed"
    assert await night("2026-03-05") == "verified"
    (state,) = await service.ledger.link_states(TAILSPIN)
    assert state.verified_count == 1 and state.verified_since > events[0].event_time
    assert [e.outcome for e in await service.ledger.history(TAILSPIN)][:2] == ["verified", "healed"]
