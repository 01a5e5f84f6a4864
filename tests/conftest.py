"""Shared fixtures: Azurite (one per session) and a fresh Entra/ARM/Key Vault sandbox per test."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sandbox.azurite import Azurite
from sandbox.broker import ServiceBusBroker
from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from sandbox.local_env import local_settings
from sandbox.scenario import Scenario, load_scenario
from shared.links.ledger import Ledger
from shared.links.service import LinkService, reset_service
from shared.spine.settings import Settings
from tenants import DEMO_SCENARIO, PARTNER_ID


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
