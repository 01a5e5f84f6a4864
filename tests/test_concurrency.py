"""Concurrent writers to one link: two verify messages and an operator's relink at the same time.
ETag-checked writes mean no update is lost and every attempt is in the history exactly once."""

from __future__ import annotations

import asyncio
import json

from sandbox.cloud import CloudSandbox
from sandbox.scenario import FaultRule
from shared.links.api import LinksApi
from shared.links.service import LinkService, Source
from tenants import FEDERATED_APP, NORTHWIND, PARTNER_ID, onboarding_message

NORTHWIND_OID = "d87199a7-f53b-4dd6-813d-019f7547bffb"


async def test_two_verifies_and_a_relink_at_once(service: LinkService, cloud: CloudSandbox) -> None:
    body = json.dumps(onboarding_message(NORTHWIND)).encode()
    assert (await service.handle(body, message_id="onboard")).kind.value == "linked"
    cloud.delete_link(NORTHWIND, NORTHWIND_OID)  # drift: all three will find the link missing
    # Hold every ARM reply a little so that the three attempts really overlap.
    cloud.add_fault(NORTHWIND, FaultRule(target="arm", kind="latency", latency_ms=150))

    api = LinksApi.of(service)
    relink_body = json.dumps({"identity": {"type": "federated", "clientId": FEDERATED_APP}}).encode()
    results = await asyncio.gather(
        service.handle(body, message_id="verify-a", source=Source.VERIFY),
        service.handle(body, message_id="verify-b", source=Source.VERIFY),
        api.relink(NORTHWIND, relink_body),
    )

    verify_outcomes = {results[0].kind.value, results[1].kind.value}
    assert verify_outcomes <= {"healed", "verified"}
    assert results[2].status == 200 and results[2].body is not None
    assert results[2].body["outcome"] in {"linked", "already-linked"}
    links = [link for link in cloud.links() if link["tenantId"] == NORTHWIND and link["state"] == "Active"]
    assert len(links) == 1 and links[0]["partnerId"] == PARTNER_ID

    history = await service.ledger.history(NORTHWIND)
    ids = [event.message_id for event in history]
    assert sorted(i for i in ids if not i.startswith("relink:")) == ["onboard", "verify-a", "verify-b"]
    assert len([i for i in ids if i.startswith("relink:")]) == 1
    assert len(ids) == len(set(ids)) == 4

    (state,) = await service.ledger.link_states(NORTHWIND)
    assert state.linked_partner_id == PARTNER_ID and state.consecutive_failures == 0
    assert state.last_message_id in ids
    # The state is the one written last: its outcome is that of the attempt it names.
    named = next(event for event in history if event.message_id == state.last_message_id)
    assert state.outcome == named.outcome


async def test_concurrent_failures_count_every_attempt(service: LinkService, cloud: CloudSandbox) -> None:
    cloud.add_fault(NORTHWIND, FaultRule(target="arm", kind="status", status=503))
    body = json.dumps(onboarding_message(NORTHWIND)).encode()
    await asyncio.gather(*(service.handle(body, message_id=f"m-{n}") for n in range(6)))
    (state,) = await service.ledger.link_states(NORTHWIND)
    # Six failed attempts, six increments: a lost update would leave fewer.
    assert state.consecutive_failures == 6
    assert len(await service.ledger.history(NORTHWIND)) == 6
