"""Retiring an identity's ledger record: the ledger's one-transaction delete-and-record, the HTTP
route through the local host (every response checked against the OpenAPI document), `palctl retire`,
and what changes afterwards: the nightly run and a body-less relink no longer see the identity."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from test_http_api import KEY, PLANTED, Client
from test_reverify import verify_events, wait_for_run

from palctl.cli import main as palctl
from sandbox.functions_host import LocalFunctionsHost
from shared.links.ledger import Ledger
from shared.links.retirement import InvalidReason
from shared.links.reverify import run_id_for
from shared.links.service import reset_service
from tenants import FEDERATED_APP, NORTHWIND, TAILSPIN

ROUTE = "/links/{customerTenantId}/identities/{clientId}"
RELINK = "/links/{customerTenantId}/relink"
FEDERATED = {"identity": {"type": "federated", "clientId": FEDERATED_APP}}


@pytest.fixture
async def served(bus_env: dict[str, str]) -> AsyncIterator[tuple[LocalFunctionsHost, Client]]:
    await reset_service()
    async with (
        LocalFunctionsHost(settings=bus_env, function_key=KEY) as host,
        aiohttp.ClientSession() as http,
    ):
        yield host, Client(http, host.base_url)
    await reset_service()


async def run_palctl(*argv: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """palctl in a thread of its own (it runs its own event loop), as an operator would run it."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    code = await asyncio.to_thread(palctl, list(argv), out)
    return code, out.getvalue()


async def test_retiring_a_phantom_identity_takes_it_out_of_relink_and_the_nightly_run(
    served: tuple[LocalFunctionsHost, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, api = served
    phantom = str(uuid.uuid4())
    status, _, _ = await api.call("POST", RELINK, customerTenantId=NORTHWIND, body=FEDERATED)
    assert status == 200
    status, _, _ = await api.call(
        "POST",
        RELINK,
        customerTenantId=NORTHWIND,
        body={"identity": {"type": "federated", "clientId": phantom}},
    )
    assert status == 200
    status, problem, _ = await api.call("POST", RELINK, customerTenantId=NORTHWIND)
    assert status == 400 and "several identities" in problem["detail"]

    code, output = await run_palctl(
        "retire",
        "--tenant",
        NORTHWIND,
        "--client-id",
        phantom.upper(),
        "--reason",
        "CRM sent a client ID that never existed (ticket 4711)",
        env={"PAL_API_URL": host.base_url, "PAL_API_KEY": KEY},
        monkeypatch=monkeypatch,
    )
    assert code == 0, output
    assert output == f"retired: customerTenantId={NORTHWIND} clientId={phantom}\n"
    assert KEY not in output

    status, state, _ = await api.call("GET", "/links/{customerTenantId}", customerTenantId=NORTHWIND)
    assert [link["clientId"] for link in state["links"]] == [FEDERATED_APP]
    newest = state["history"][0]
    assert (newest["source"], newest["outcome"], newest["clientId"]) == ("retire", "retired", phantom)
    assert newest["reason"] == "CRM sent a client ID that never existed (ticket 4711)"
    assert len(state["history"]) == 3  # history is kept: two relinks and the retirement

    status, again, _ = await api.call("POST", RELINK, customerTenantId=NORTHWIND)
    assert (status, again["clientId"], again["outcome"]) == (200, FEDERATED_APP, "already-linked")

    host.fire_timer("reverify_links")
    run = await wait_for_run(run_id_for(datetime.now(UTC)))
    assert run.total == 1
    assert [event.client_id for event in await verify_events(NORTHWIND)] == [FEDERATED_APP]

    status, problem, _ = await api.call("DELETE", ROUTE, customerTenantId=NORTHWIND, clientId=phantom)
    assert (status, problem["type"].rsplit("/", 1)[1]) == (404, "unknown-identity")


async def test_retire_answers_200_with_the_outcome_and_a_default_reason(
    served: tuple[LocalFunctionsHost, Client],
) -> None:
    _, api = served
    await api.call("POST", RELINK, customerTenantId=TAILSPIN, body=FEDERATED)
    status, result, _ = await api.call(
        "DELETE", ROUTE, customerTenantId=TAILSPIN.upper(), clientId=FEDERATED_APP.upper()
    )
    assert (status, result) == (
        200,
        {"customerTenantId": TAILSPIN, "clientId": FEDERATED_APP, "outcome": "retired"},
    )
    status, state, _ = await api.call("GET", "/links/{customerTenantId}", customerTenantId=TAILSPIN)
    assert state["links"] == []
    assert state["history"][0]["reason"] == "retired by an operator (no reason given)"


@pytest.mark.parametrize(
    ("tenant", "client", "body", "status", "kind", "detail"),
    [
        ("not-a-guid", FEDERATED_APP, None, 400, "invalid-tenant-id", "customerTenantId: must be a GUID"),
        (NORTHWIND, "x", None, 400, "invalid-client-id", "clientId: must be a GUID"),
        (NORTHWIND, "00000000-0000-0000-0000-000000000000", None, 400, "invalid-client-id", "clientId"),
        (NORTHWIND, FEDERATED_APP, None, 404, "unknown-identity", "no identity"),
        (NORTHWIND, FEDERATED_APP, {"reason": ""}, 400, "invalid-body", "reason: must not be empty"),
        (NORTHWIND, FEDERATED_APP, {"reason": "x" * 257}, 400, "invalid-body", "at most 256"),
        (NORTHWIND, FEDERATED_APP, {"reason": "a\x1b[2Jb"}, 400, "invalid-body", "printable"),
        (NORTHWIND, FEDERATED_APP, {"reason": "a\u202eb"}, 400, "invalid-body", "printable"),
        (NORTHWIND, FEDERATED_APP, {"reason": 7}, 400, "invalid-body", "reason: must be a string"),
        (NORTHWIND, FEDERATED_APP, {"reason": PLANTED}, 400, "secret-in-request", "reason: looks like"),
        (NORTHWIND, FEDERATED_APP, {"why": "x"}, 400, "invalid-body", "why: unknown field"),
        (NORTHWIND, FEDERATED_APP, ["x"], 400, "invalid-body", "must be a JSON object"),
        (NORTHWIND, FEDERATED_APP, {"reason": "x" * 20000}, 413, "body-too-large", "at most"),
    ],
)
async def test_bad_retire_requests_get_precise_problems(
    served: tuple[LocalFunctionsHost, Client],
    tenant: str,
    client: str,
    body: Any,
    status: int,
    kind: str,
    detail: str,
) -> None:
    _, api = served
    got, problem, headers = await api.call(
        "DELETE", ROUTE, customerTenantId=tenant, clientId=client, body=body
    )
    assert (got, problem["type"].rsplit("/", 1)[1]) == (status, kind)
    assert detail in problem["detail"]
    assert headers["Content-Type"].startswith("application/problem+json")
    text = json.dumps(problem)
    assert PLANTED not in text and "\x1b" not in text and "\u202e" not in text


async def test_retire_route_methods_and_keys(served: tuple[LocalFunctionsHost, Client]) -> None:
    _, api = served
    for method in ("GET", "POST", "PUT", "PATCH"):
        status, _, headers = await api.call(method, ROUTE, customerTenantId=NORTHWIND, clientId=FEDERATED_APP)
        assert (status, headers["Allow"]) == (405, "DELETE")
    for key in (None, "wrong-key"):
        status, _, _ = await api.call(
            "DELETE", ROUTE, key=key, customerTenantId=NORTHWIND, clientId=FEDERATED_APP
        )
        assert status == 401


async def test_retiring_the_same_identity_twice_at_once_retires_it_once(
    ledger: Ledger, api_relinked: None
) -> None:
    results = await asyncio.gather(*(ledger.retire(NORTHWIND, FEDERATED_APP, f"race {n}") for n in range(4)))
    assert sorted(results) == [False, False, False, True]
    assert await ledger.link_states(NORTHWIND) == []
    retired = [e for e in await ledger.history(NORTHWIND) if e.outcome == "retired"]
    assert len(retired) == 1 and retired[0].source == "retire"
    assert await ledger.retire(NORTHWIND, FEDERATED_APP, "again") is False


@pytest.mark.parametrize("reason", ["", " ", "x" * 257, "tab\there", "\ud800", PLANTED, "password=hunter2"])
async def test_the_ledger_refuses_a_bad_reason_before_writing(ledger: Ledger, reason: str) -> None:
    with pytest.raises(InvalidReason) as caught:
        await ledger.retire(NORTHWIND, FEDERATED_APP, reason)
    assert PLANTED not in str(caught.value) and "hunter2" not in str(caught.value)
    assert await ledger.history(NORTHWIND) == []


@pytest.fixture
async def api_relinked(service: Any) -> None:
    from shared.links.api import LinksApi

    response = await LinksApi.of(service).relink(NORTHWIND, json.dumps(FEDERATED).encode())
    assert response.status == 200


# --- palctl retire without a server ---------------------------------------------------------------


def palctl_now(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return palctl(list(argv), out), out.getvalue()


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--tenant", "nope", "--client-id", FEDERATED_APP], {}, "--tenant must be a GUID"),
        (["--tenant", NORTHWIND, "--client-id", "nope"], {}, "--client-id must be a GUID"),
        (["--tenant", NORTHWIND, "--client-id", FEDERATED_APP], {"PAL_API_KEY": "k"}, "PAL_API_URL"),
        (
            ["--tenant", NORTHWIND, "--client-id", FEDERATED_APP],
            {"PAL_API_URL": "https://func.example"},
            "PAL_API_KEY",
        ),
        (
            ["--tenant", NORTHWIND, "--client-id", FEDERATED_APP, "--api-url", "http://func.example"],
            {"PAL_API_KEY": "k"},
            "--api-url must be an https:// URL",
        ),
        (
            ["--tenant", NORTHWIND, "--client-id", FEDERATED_APP, "--reason", PLANTED],
            {"PAL_API_URL": "https://func.example", "PAL_API_KEY": "k"},
            "--reason: looks like a credential",
        ),
        (
            ["--tenant", NORTHWIND, "--client-id", FEDERATED_APP, "--reason", "a\x1bb"],
            {"PAL_API_URL": "https://func.example", "PAL_API_KEY": "k"},
            "--reason: must be printable",
        ),
    ],
)
def test_palctl_retire_refuses_bad_input_before_sending(
    argv: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("PAL_API_URL", raising=False)
    monkeypatch.delenv("PAL_API_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, output = palctl_now("retire", *argv)
    error = capsys.readouterr().err
    assert code == 2 and output == ""
    assert message in error, error
    assert PLANTED not in error and "\x1b" not in error


async def test_palctl_retire_reports_problems_safely_and_never_prints_the_key(
    served: tuple[LocalFunctionsHost, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, _ = served
    base = ["retire", "--tenant", NORTHWIND, "--client-id", FEDERATED_APP]
    code, output = await run_palctl(
        *base, env={"PAL_API_URL": host.base_url, "PAL_API_KEY": KEY}, monkeypatch=monkeypatch
    )
    assert code == 1
    assert output.startswith("palctl: HTTP 404 Unknown identity: no identity ")
    code, output = await run_palctl(
        *base, env={"PAL_API_URL": host.base_url + "/", "PAL_API_KEY": "wrong-key"}, monkeypatch=monkeypatch
    )
    assert code == 1 and "wrong-key" not in output
    assert output == "palctl: HTTP 401: the function key (PAL_API_KEY) is missing or wrong\n"
