"""What a message cannot do to a healthy link, and what the ledger keeps whatever happens: ARM's
replies are checked, a new identity must prove itself, a lost record cannot relabel a change,
a corrected body is never dropped as a duplicate, and contention never ends in a bare error."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.azurite import Azurite
from sandbox.cloud import CloudSandbox
from sandbox.scenario import FaultRule
from shared.links.api import LinksApi
from shared.links.service import LinkService
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.settings import Settings
from tenants import (
    FABRIKAM,
    FABRIKAM_APP,
    NORTHWIND,
    OTHER_PARTNER_ID,
    PARTNER_ID,
    TAILSPIN,
    onboarding_message,
)

FABRIKAM_SECRET = onboarding_message(
    FABRIKAM, FABRIKAM_APP, identity_type="secret", secret_name="fabrikam-pal-secret"
)


async def send(
    service: LinkService, body: dict[str, Any] | bytes, message_id: str, count: int = 1
) -> Outcome:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await service.handle(raw, message_id=message_id, delivery_count=count)


async def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


def partner_in_sandbox(cloud: CloudSandbox, tenant: str) -> str | None:
    active = [link for link in cloud.links() if link["tenantId"] == tenant and link["state"] == "Active"]
    return active[0]["partnerId"] if active else None


async def test_a_write_that_arm_answers_without_making_it_is_not_believed(
    service: LinkService, cloud: CloudSandbox
) -> None:
    cloud.add_fault(FABRIKAM, FaultRule(target="arm", kind="ignore-write"))
    outcome = await send(service, FABRIKAM_SECRET, "m-ignored")

    assert (outcome.kind, outcome.code) == (OutcomeKind.TRANSIENT, "arm-reply-mismatch")
    assert partner_in_sandbox(cloud, FABRIKAM) == OTHER_PARTNER_ID
    (state,) = await service.ledger.link_states(FABRIKAM)
    assert state.outcome == "transient"


async def test_a_new_identity_for_a_healthy_link_is_recorded_only_once_it_works(
    service: LinkService, cloud: CloudSandbox
) -> None:
    assert (await send(service, FABRIKAM_SECRET, "m-1")).kind is OutcomeKind.RECLAIMED
    wrong_secret = onboarding_message(FABRIKAM, FABRIKAM_APP, identity_type="secret", secret_name="no-such")
    wrong_type = onboarding_message(FABRIKAM, FABRIKAM_APP)  # federated: the app has no such trust
    for n, body in enumerate((wrong_secret, wrong_type)):
        outcome = await send(service, body, f"m-wrong-{n}")
        assert not outcome.kind.is_success

    (state,) = await service.ledger.link_states(FABRIKAM)
    assert (state.identity_type, state.key_vault_secret_name) == ("secret", "fabrikam-pal-secret")
    assert state.outcome == "reclaimed"
    history = [e.outcome for e in await service.ledger.history(FABRIKAM)]
    assert len(history) == 3  # the failed attempts are evidence, not state


async def test_a_corrected_body_under_a_used_message_id_is_processed(service: LinkService) -> None:
    bad = onboarding_message(NORTHWIND, partnerId="12ab")
    first = await send(service, bad, "crm-42")
    again = await send(service, bad, "crm-42", count=2)  # the same message again: no second event
    corrected = await send(service, onboarding_message(NORTHWIND), "crm-42")

    assert first.kind is again.kind is OutcomeKind.REJECTED
    assert corrected.kind is OutcomeKind.LINKED
    assert [e.outcome for e in await service.ledger.history(NORTHWIND)] == ["linked", "rejected"]


async def test_concurrent_relinks_of_one_link_never_fail_with_a_bare_error(service: LinkService) -> None:
    api = LinksApi.of(service)
    body = json.dumps(
        {"identity": {"type": "federated", "clientId": onboarding_message(TAILSPIN)["identity"]["clientId"]}}
    )
    responses = await asyncio.gather(*(api.relink(TAILSPIN, body.encode()) for _ in range(40)))

    statuses = sorted({response.status for response in responses})
    assert set(statuses) <= {200, 503}, statuses
    assert all("Retry-After" in r.headers for r in responses if r.status == 503)
    recorded = await service.ledger.history(TAILSPIN, limit=100)
    assert len(recorded) == sum(1 for r in responses if r.status == 200)


@pytest.fixture
def own_azurite(tmp_path: Path) -> Iterator[Azurite]:
    """An Azurite of this test's own, to stop mid-attempt without disturbing the others."""
    with Azurite(location=tmp_path / "azurite") as running:
        yield running


async def test_a_takeover_whose_record_was_lost_is_recorded_by_the_retry(
    settings: Settings, cloud: CloudSandbox, own_azurite: Azurite
) -> None:
    service = LinkService.from_settings(
        dataclasses.replace(settings, ledger_connection_string=own_azurite.connection_string)
    )
    try:
        await service.ledger.ensure_table()
        # ARM holds its replies back, so the PATCH is made while we still wait for its answer.
        cloud.add_fault(FABRIKAM, FaultRule(target="arm", kind="latency", latency_ms=1500, count=2))
        attempt = asyncio.create_task(send(service, FABRIKAM_SECRET, "crm-takeover"))
        await wait_until(lambda: partner_in_sandbox(cloud, FABRIKAM) == PARTNER_ID)
        own_azurite.stop()  # Table Storage goes away before the outcome is written
        with pytest.raises(Exception):  # noqa: B017, PT011 - no Service Bus here: the host redelivers
            await attempt
        own_azurite.start()

        redelivered = await send(service, FABRIKAM_SECRET, "crm-takeover", count=2)
    finally:
        await service.close()
    assert redelivered.kind is OutcomeKind.RECLAIMED
    assert redelivered.previous_partner_id == OTHER_PARTNER_ID
    assert "earlier attempt" in redelivered.reason


async def test_a_bodyless_relink_never_asks_for_a_partner_id_that_is_no_longer_ours(
    settings: Settings, service: LinkService, cloud: CloudSandbox
) -> None:
    # Recorded while OTHER_PARTNER_ID was one of ours (or before ALLOWED_PARTNER_IDS existed).
    both = LinkService.from_settings(
        dataclasses.replace(settings, allowed_partner_ids=frozenset({PARTNER_ID, OTHER_PARTNER_ID}))
    )
    try:
        assert (await send(both, onboarding_message(NORTHWIND, partnerId=OTHER_PARTNER_ID), "m-1")).kind is (
            OutcomeKind.LINKED
        )
    finally:
        await both.close()

    response = await LinksApi.of(service).relink(NORTHWIND, b"")

    assert response.status == 200 and response.body is not None
    assert (response.body["outcome"], response.body["partnerId"]) == ("reclaimed", PARTNER_ID)
    assert partner_in_sandbox(cloud, NORTHWIND) == PARTNER_ID
