"""Shared fixtures: Azurite (one per session) and a fresh Entra/ARM/Key Vault sandbox per test."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables.aio import TableClient

from sandbox.azurite import Azurite
from sandbox.broker import ServiceBusBroker
from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from sandbox.local_env import local_settings
from sandbox.scenario import Scenario, load_scenario
from shared.links.ledger import Ledger
from shared.links.service import LinkService, reset_service
from shared.spine.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEMO_SCENARIO = ROOT / "sandbox" / "scenarios" / "demo.json"
SAMPLES = ROOT / "sandbox" / "samples"

PARTNER_ID = "1234567"
OTHER_PARTNER_ID = "7654321"
FEDERATED_APP = "81a6daa3-a704-4f3e-a1ca-45fa036d5a09"
NORTHWIND = "53a2a22c-5cbd-47f7-b588-f5bb5f191ead"
TAILSPIN = "d4dda931-e8e4-4937-8f81-9c578f5d5d03"
FABRIKAM = "892ad125-0722-49b7-a665-aea7ede649e4"
FABRIKAM_APP = "3d396df3-d832-4c8b-a51d-91fbcce04b1d"
WOODGROVE = "a21564c4-fb83-46d4-b1ae-f4675e7d4921"
LITWARE = "ac9630d7-e100-495c-a709-71872a194254"
LITWARE_APP = "15e6da4c-256b-441c-a9e3-585cf41b8266"


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as running:
        yield running


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    return load_scenario(DEMO_SCENARIO)


@pytest.fixture
def cloud(scenario: Scenario, tmp_path: Path) -> Iterator[CloudSandbox]:
    with CloudSandbox(scenario, state_dir=tmp_path / "cloud") as running:
        yield running


@pytest.fixture
def env(
    cloud: CloudSandbox, azurite: Azurite, scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The process environment of a local run, with a ledger table of the test's own."""
    values = local_settings(
        cloud,
        azurite.connection_string,
        managed_identity_client_id=scenario.managed_identity.client_id,
        partner_id=PARTNER_ID,
        ledger_table="T" + uuid.uuid4().hex[:16],
    )
    values["SDK_RETRY_TOTAL"] = "0"
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[LinkService]:
    built = LinkService.from_settings(settings)
    yield built
    await built.close()


@pytest.fixture
def ledger(service: LinkService) -> Ledger:
    return service.ledger


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record from every logger, at DEBUG, for secret scans."""
    caplog.set_level(logging.DEBUG)
    return caplog


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record's message, attributes and exception, for secret scans."""
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        lines.append(json.dumps({k: str(v) for k, v in record.__dict__.items()}))
        if record.exc_info and record.exc_info[1] is not None:
            lines.append(repr(record.exc_info[1]))
    return "\n".join(lines)


async def everything_stored(env: dict[str, str]) -> str:
    """Every entity of the test's ledger table, for secret scans."""
    async with TableClient.from_connection_string(env["LedgerStorage"], env["LEDGER_TABLE"]) as table:
        return "\n".join([json.dumps(entity, default=str) async for entity in table.list_entities()])


def bound_to(tenant: str, client_id: str) -> dict[str, str]:
    """Key Vault tags that bind a secret to one customer tenant ("*": every tenant) and app."""
    return {"customerTenantId": tenant, "clientId": client_id}


def onboarding_message(tenant: str, client_id: str = FEDERATED_APP, **fields: Any) -> dict[str, Any]:
    identity: dict[str, Any] = {"type": fields.pop("identity_type", "federated"), "clientId": client_id}
    if "secret_name" in fields:
        identity["keyVaultSecretName"] = fields.pop("secret_name")
    return {"schemaVersion": 1, "customerTenantId": tenant, "identity": identity, **fields}


@pytest.fixture
def broker() -> Iterator[ServiceBusBroker]:
    with ServiceBusBroker() as running:
        yield running


@pytest.fixture
def bus_env(env: dict[str, str], broker: ServiceBusBroker, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """`env` plus the local broker, with retry delays short enough for a test."""
    extra = {
        "ServiceBusConnection": broker.connection_string,
        "RETRY_BASE_SECONDS": "1",
        "RETRY_MAX_SECONDS": "2",
        "CREDENTIAL_BROKEN_PAUSE_SECONDS": "2",
        "RUN_SUMMARY_CHECK_SECONDS": "1",
    }
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    return env | extra


@pytest.fixture
async def host(bus_env: dict[str, str]) -> AsyncIterator[LocalFunctionsHost]:
    """The local Functions host running function_app, with a fresh service for this test's settings."""
    await reset_service()
    running = LocalFunctionsHost(settings=bus_env)
    await running.start()
    yield running
    await running.stop(grace_seconds=5)
    await reset_service()
