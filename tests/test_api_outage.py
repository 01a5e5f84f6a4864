"""A Table Storage outage answers 503 problem details with Retry-After on every route, through the local
host over HTTP, with the ledger pointed at a port nobody listens on (real SDK calls, no mock)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from test_http_api import KEY, Client

from sandbox.azurite import Azurite, free_port
from sandbox.functions_host import LocalFunctionsHost
from shared.links.service import reset_service
from tenants import FEDERATED_APP, NORTHWIND


@pytest.fixture
async def dead_ledger_api(bus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    dead = Azurite(port=free_port()).connection_string  # never started: connections are refused
    monkeypatch.setenv("LedgerStorage", dead)
    await reset_service()
    async with (
        LocalFunctionsHost(settings={**bus_env, "LedgerStorage": dead}, function_key=KEY) as host,
        aiohttp.ClientSession() as http,
    ):
        yield Client(http, host.base_url)
    await reset_service()


@pytest.mark.parametrize(
    ("method", "template", "path"),
    [
        ("GET", "/links", {}),
        ("GET", "/links?outcome=linked&top=5", {}),
        ("GET", "/links/{customerTenantId}", {"customerTenantId": NORTHWIND}),
        ("POST", "/links/{customerTenantId}/relink", {"customerTenantId": NORTHWIND}),
        ("GET", "/links/{customerTenantId}/live", {"customerTenantId": NORTHWIND}),
        (
            "DELETE",
            "/links/{customerTenantId}/identities/{clientId}",
            {"customerTenantId": NORTHWIND, "clientId": FEDERATED_APP},
        ),
    ],
)
async def test_a_storage_outage_is_503_problem_details_with_retry_after(
    dead_ledger_api: Client, method: str, template: str, path: dict[str, str]
) -> None:
    status, problem, headers = await dead_ledger_api.call(method, template, **path)
    assert status == 503
    assert headers["Content-Type"].startswith("application/problem+json")
    assert headers["Retry-After"] == "10"
    assert problem["retryAfterSeconds"] == 10
    assert problem["type"].endswith("/storage-unavailable")
    assert problem["detail"] == "the ledger (Table Storage) is unavailable; try again later"


async def test_validation_still_answers_before_storage_is_touched(dead_ledger_api: Client) -> None:
    status, problem, _ = await dead_ledger_api.call(
        "GET", "/links/{customerTenantId}", customerTenantId="not-a-guid"
    )
    assert status == 400 and "customerTenantId" in problem["detail"]
