"""The live view (`GET /api/links/{customerTenantId}/live` and `palctl link show`) through the local
host over real HTTP against the sandbox's Entra ID and ARM, every response checked against the
committed OpenAPI document: in step after linking, out of step after the link is removed or
re-pointed in Azure, the identity gone; the ledger never written."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from test_http_api import KEY, Client
from test_palctl_attribution import api_env
from test_palctl_cli import palctl

from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from shared.links.service import get_service, reset_service
from tenants import FABRIKAM_APP, FEDERATED_APP, NORTHWIND, OTHER_PARTNER_ID, PARTNER_ID, TAILSPIN

LIVE = "/links/{customerTenantId}/live"
RELINK = "/links/{customerTenantId}/relink"
NORTHWIND_OID = "d87199a7-f53b-4dd6-813d-019f7547bffb"
FEDERATED = {"identity": {"type": "federated", "clientId": FEDERATED_APP}}


@pytest.fixture
async def api(bus_env: dict[str, str]) -> AsyncIterator[Client]:
    await reset_service()
    async with (
        LocalFunctionsHost(settings=bus_env, function_key=KEY) as host,
        aiohttp.ClientSession() as http,
    ):
        yield Client(http, host.base_url)
    await reset_service()


async def ledger_of(tenant: str) -> tuple[Any, Any]:
    """The tenant's link states and history, to prove a live read wrote nothing."""
    ledger = (await get_service()).ledger
    return await ledger.link_states(tenant), await ledger.history(tenant, limit=50)


async def live(api: Client, tenant: str = NORTHWIND) -> dict[str, Any]:
    status, answer, _ = await api.call("GET", LIVE, customerTenantId=tenant)
    assert status == 200, answer
    return answer  # type: ignore[no-any-return]


async def test_in_step_after_linking_then_out_of_step_when_azure_changes(
    api: Client, cloud: CloudSandbox
) -> None:
    status, _, _ = await api.call("POST", RELINK, customerTenantId=NORTHWIND, body=FEDERATED)
    assert status == 200
    (identity,) = (await live(api))["identities"]
    assert (identity["clientId"], identity["inStep"], identity["difference"]) == (FEDERATED_APP, True, None)
    assert identity["ledger"]["outcome"] == "linked" and identity["ledger"]["linkedPartnerId"] == PARTNER_ID
    azure = identity["azure"]
    assert (azure["linked"], azure["partnerId"], azure["version"], azure["state"]) == (
        True,
        PARTNER_ID,
        1,
        "Active",
    )
    assert azure["objectId"] == NORTHWIND_OID and azure["updatedTime"]

    before = await ledger_of(NORTHWIND)
    cloud.delete_link(NORTHWIND, NORTHWIND_OID)
    (removed,) = (await live(api))["identities"]
    assert (removed["inStep"], removed["azure"]["linked"]) == (False, False)
    assert removed["difference"].startswith(
        f"the ledger says linked to {PARTNER_ID}, but Azure holds no link"
    )

    cloud.set_link(NORTHWIND, NORTHWIND_OID, OTHER_PARTNER_ID)
    status, answer, _ = await api.call(
        "GET", LIVE + "?clientId={client}", customerTenantId=NORTHWIND.upper(), client=FEDERATED_APP.upper()
    )
    assert status == 200
    (moved,) = answer["identities"]
    assert (moved["inStep"], moved["azure"]["partnerId"]) == (False, OTHER_PARTNER_ID)
    assert moved["difference"] == (
        f"the ledger says linked to {PARTNER_ID}, but Azure holds a link to {OTHER_PARTNER_ID}"
    )
    assert await ledger_of(NORTHWIND) == before  # read-only: nothing recorded


async def test_an_identity_gone_is_an_azure_error_and_the_ledger_is_untouched(
    api: Client, cloud: CloudSandbox
) -> None:
    status, _, _ = await api.call("POST", RELINK, customerTenantId=NORTHWIND, body=FEDERATED)
    assert status == 200
    before = await ledger_of(NORTHWIND)
    cloud.remove_service_principal(NORTHWIND, FEDERATED_APP)
    await reset_service()  # no token cached from the relink: the next one is asked of Entra ID

    (identity,) = (await live(api))["identities"]
    error = identity["azure"]["error"]
    assert (error["outcome"], error["code"]) == ("needs-customer-action", "AADSTS700016")
    assert error["reason"] and error["remediation"]
    assert identity["inStep"] is False
    assert identity["difference"].startswith(f"the ledger says linked to {PARTNER_ID}, but Azure could not")
    assert identity["ledger"]["outcome"] == "linked"
    assert await ledger_of(NORTHWIND) == before


async def test_bad_and_unknown_requests(api: Client) -> None:
    status, _, _ = await api.call("POST", RELINK, customerTenantId=NORTHWIND, body=FEDERATED)
    assert status == 200
    cases = [
        (LIVE, "not-a-guid", 400, "invalid-tenant-id"),
        (LIVE + "?clientId=nope", NORTHWIND, 400, "invalid-client-id"),
        (LIVE + "?since=today", NORTHWIND, 400, "invalid-query"),
        (LIVE, TAILSPIN, 404, "unknown-tenant"),
        (LIVE + "?clientId=" + FABRIKAM_APP, NORTHWIND, 404, "unknown-identity"),
    ]
    for template, tenant, expected, kind in cases:
        status, problem, _ = await api.call("GET", template, customerTenantId=tenant)
        assert (status, problem["type"].rsplit("/", 1)[1]) == (expected, kind), template
    status, _, headers = await api.call("POST", LIVE, customerTenantId=NORTHWIND)
    assert (status, headers["Allow"]) == (405, "GET")
    status, _, _ = await api.call("GET", LIVE, key="wrong", customerTenantId=NORTHWIND)
    assert status == 401


async def test_palctl_link_show_in_step_out_of_step_and_failures(
    host: LocalFunctionsHost, cloud: CloudSandbox
) -> None:
    from test_palctl_attribution import link

    await link(await get_service(), NORTHWIND, FEDERATED_APP)
    env = api_env(host)

    shown = await asyncio.to_thread(palctl, "link", "show", "--tenant", NORTHWIND, env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"{FEDERATED_APP}: ledger: linked to {PARTNER_ID} at ")
    assert f"; Azure: linked to {PARTNER_ID}, version 1, updated " in shown.stdout
    assert "OUT OF STEP" not in shown.stdout

    cloud.set_link(NORTHWIND, NORTHWIND_OID, OTHER_PARTNER_ID)
    argv = ["link", "show", "--tenant", NORTHWIND, "--client-id", FEDERATED_APP]
    out = await asyncio.to_thread(palctl, *argv, env=env)
    assert out.returncode == 3, out.stderr
    assert f"Azure: linked to {OTHER_PARTNER_ID}, version 2, updated " in out.stdout
    assert f"  OUT OF STEP: the ledger says linked to {PARTNER_ID}, but Azure holds a link to" in out.stdout

    document = json.loads((await asyncio.to_thread(palctl, *argv, "-o", "json", env=env)).stdout)
    assert (document["inStep"], document["outOfStep"], document["customerTenantId"]) == (False, 1, NORTHWIND)
    (row,) = document["rows"]
    assert (row["ledgerPartnerId"], row["azurePartnerId"], row["azureVersion"]) == (
        PARTNER_ID,
        OTHER_PARTNER_ID,
        2,
    )
    csv_lines = (await asyncio.to_thread(palctl, *argv, "-o", "csv", env=env)).stdout.splitlines()
    assert csv_lines[0].startswith("customerTenantId,clientId,inStep,") and len(csv_lines) == 2

    unknown = await asyncio.to_thread(palctl, "link", "show", "--tenant", TAILSPIN, env=env)
    assert unknown.returncode == 1 and "HTTP 404 Unknown customer tenant" in unknown.stderr
    bad = await asyncio.to_thread(palctl, "link", "show", "--tenant", "nope", env=env)
    assert bad.returncode == 2 and "--tenant must be a GUID" in bad.stderr


def test_compare_says_what_the_ledger_already_knows_is_in_step() -> None:
    from datetime import UTC, datetime

    from shared.links.linker import LiveLink
    from shared.links.live_api import compare
    from shared.links.rows import LinkState
    from shared.spine.outcomes import Outcome, OutcomeKind

    def state(outcome: OutcomeKind, **fields: Any) -> LinkState:
        return LinkState(partition_key=NORTHWIND, row_key=f"link~{FEDERATED_APP}", outcome=outcome, **fields)

    gone = Outcome(OutcomeKind.NEEDS_CUSTOMER_ACTION, "consent withdrawn", code="AADSTS700016")
    offboarded = state(OutcomeKind.UNLINKED, offboarded_at=datetime.now(UTC), code="AADSTS700016")
    assert compare(offboarded, gone) == (True, None)  # its link went with the identity
    assert compare(state(OutcomeKind.NEEDS_CUSTOMER_ACTION, code="AADSTS700016"), gone) == (True, None)
    assert compare(offboarded, LiveLink(linked=False)) == (True, None)
    in_step, difference = compare(offboarded, LiveLink(linked=True, partner_id=PARTNER_ID))
    assert (
        not in_step
        and difference == f"the ledger says offboarded (no link), but Azure holds a link to {PARTNER_ID}"
    )
    failed = state(OutcomeKind.FAILED, linked_partner_id=PARTNER_ID)
    in_step, difference = compare(failed, LiveLink(linked=True, partner_id=PARTNER_ID))
    assert (
        not in_step
        and difference == f"the ledger records failed, but Azure answered now: linked to {PARTNER_ID}"
    )
