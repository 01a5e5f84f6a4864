"""The local Functions host: NCRONTAB schedules, timers, HTTP routes and keys, Service Bus abandon
and dead-lettering, and the operators' CLI against the dead-letter queue."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from palctl.cli import main as palctl
from sandbox.broker import QueueConfig, ServiceBusBroker
from sandbox.functions_host import LocalFunctionsHost, Schedule, resolve, timespan_seconds
from tenants import FEDERATED_APP, NORTHWIND
from tests.hostapp import sample_app

APP = "tests.hostapp.sample_app"


def test_ncrontab_schedules() -> None:
    nightly = Schedule.parse("0 30 2 * * *")
    assert nightly.next_after(datetime(2026, 11, 23, 22, 0, tzinfo=UTC)) == datetime(
        2026, 11, 24, 2, 30, tzinfo=UTC
    )
    every_five = Schedule.parse("*/5 * * * * *")
    assert every_five.next_after(datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC)).second == 5
    weekdays = Schedule.parse("0 0 9 * * 1-5")
    saturday = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert weekdays.next_after(saturday) == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # Monday
    for bad in ("0 0 * * *", "61 * * * * *", "* * * * * 9"):
        with pytest.raises(ValueError):
            Schedule.parse(bad)


def test_binding_expressions_and_timespans() -> None:
    assert resolve("%QUEUE%", {"QUEUE": "customer-onboarded"}) == "customer-onboarded"
    with pytest.raises(KeyError, match="MISSING"):
        resolve("%MISSING%", {})
    assert timespan_seconds("00:05:00") == 300
    assert timespan_seconds("1.00:00:30") == 86430


@pytest.fixture
def flaky_broker() -> Iterator[ServiceBusBroker]:
    queues = [
        QueueConfig("flaky", lock_duration_seconds=5, max_delivery_count=3, requires_duplicate_detection=True)
    ]
    with ServiceBusBroker(queues) as running:
        yield running


@pytest.fixture
async def sample_host(flaky_broker: ServiceBusBroker) -> AsyncIterator[LocalFunctionsHost]:
    sample_app.CALLS.clear()
    settings = {
        "TICK_SCHEDULE": "*/1 * * * * *",
        "FLAKY_QUEUE": "flaky",
        "ServiceBusConnection": flaky_broker.connection_string,
    }
    async with LocalFunctionsHost(app_module=APP, settings=settings, function_key="test-key") as host:
        yield host


async def test_timer_fires_on_schedule_and_on_demand(sample_host: LocalFunctionsHost) -> None:
    await asyncio.sleep(2.2)
    on_schedule = [call for call in sample_app.CALLS if call[0] == "tick"]
    assert len(on_schedule) >= 1 and all(past_due is False for _, past_due in on_schedule)
    sample_host.fire_timer("tick")
    await asyncio.sleep(0.2)
    assert len([call for call in sample_app.CALLS if call[0] == "tick"]) > len(on_schedule)


async def test_http_routes_keys_and_methods(sample_host: LocalFunctionsHost) -> None:
    url = f"{sample_host.base_url}/api/echo/contoso"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=b"hi") as response:
            assert response.status == 401
        async with http.post(url, data=b"hi", headers={"x-functions-key": "wrong"}) as response:
            assert response.status == 401
        async with http.post(url, data=b"hi", headers={"x-functions-key": "test-key"}) as response:
            assert response.status == 201
            assert response.headers["Content-Type"].startswith("application/json")
            assert await response.json() == {"name": "contoso", "body": "hi", "q": {}}
        async with http.post(url + "?code=test-key&x=1", data=b"") as response:
            assert response.status == 201
            assert (await response.json())["q"] == {"x": "1"}
        async with http.get(url, headers={"x-functions-key": "test-key"}) as response:
            assert response.status == 405
        async with http.get(f"{sample_host.base_url}/api/open") as response:
            assert (response.status, await response.text()) == (200, "open")
    assert any(i.function == "echo" and i.succeeded for i in sample_host.invocations)


async def test_failing_function_is_abandoned_then_dead_lettered_and_can_be_replayed(
    sample_host: LocalFunctionsHost, flaky_broker: ServiceBusBroker
) -> None:
    async with ServiceBusClient.from_connection_string(flaky_broker.connection_string) as client:
        async with client.get_queue_sender("flaky") as sender:
            await sender.send_messages(ServiceBusMessage(b'{"n": 1}', message_id="flaky-1"))
    deadline = time.monotonic() + 20
    while flaky_broker.queue_counts("flaky")["dead_lettered"] == 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert [c[1] for c in sample_app.CALLS if c[0] == "always_fails"] == [1, 2, 3]
    (dead,) = flaky_broker.dead_letters("flaky")
    assert (dead["message_id"], dead["reason"]) == ("flaky-1", "MaxDeliveryCountExceeded")

    out = io.StringIO()
    connection = ["--connection-string", flaky_broker.connection_string, "--queue", "flaky"]
    assert await asyncio.to_thread(palctl, ["dlq", "list", *connection], out) == 0
    assert "flaky-1" in out.getvalue() and "MaxDeliveryCountExceeded" in out.getvalue()

    await sample_host.stop()  # so the replayed copy stays in the queue for us to see
    out = io.StringIO()
    assert await asyncio.to_thread(palctl, ["dlq", "replay", "--message-id", "nope", *connection], out) == 1
    assert "not in the dead-letter queue: nope" in out.getvalue()
    assert (
        await asyncio.to_thread(palctl, ["dlq", "replay", "--message-id", "flaky-1", *connection], out) == 0
    )
    counts = flaky_broker.queue_counts("flaky")
    assert (counts["active"], counts["dead_lettered"]) == (1, 0)


def test_enqueue_validates_every_row_and_names_the_bad_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text(
        "customerTenantId,clientId,identityType,keyVaultSecretName,partnerId\n"
        f"{NORTHWIND},{FEDERATED_APP},federated,,\n"
        f"not-a-guid,{FEDERATED_APP},federated,,\n"
        f"{NORTHWIND},{FEDERATED_APP},secret,,\n"
        f"{NORTHWIND},{FEDERATED_APP},federated,,12AB\n"
    )
    out = io.StringIO()
    code = palctl(["enqueue", "--csv", str(csv_file), "--dry-run", "--connection-string", "unused"], out)
    assert code == 2
    printed = out.getvalue()
    assert "row 3: customerTenantId: must be a GUID" in printed
    assert "row 4: identity.keyVaultSecretName: required for a secret identity" in printed
    assert "row 5: partnerId: must be 6 to 10 digits" in printed
    assert "nothing sent" in capsys.readouterr().err

    out = io.StringIO()
    code = palctl(["enqueue", "--csv", str(csv_file), "--dry-run", "--skip-invalid"], out)
    assert code == 0 and "1 valid message(s)" in out.getvalue()


def test_enqueue_refuses_a_secret_and_never_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    planted = "Xy98Q~PLANTED-secret-for-the-cli-0123456789"
    out = io.StringIO()
    code = palctl(
        ["enqueue", "--tenant", NORTHWIND, "--client-id", FEDERATED_APP, "--customer-name", planted], out
    )
    captured = capsys.readouterr()
    assert code == 2
    assert "looks like a credential" in captured.err
    assert planted not in captured.err + captured.out + out.getvalue()


def test_enqueue_needs_a_service_bus(capsys: pytest.CaptureFixture[str]) -> None:
    code = palctl(["enqueue", "--tenant", NORTHWIND, "--client-id", FEDERATED_APP])
    assert code == 2
    assert "--namespace" in capsys.readouterr().err


def test_csv_header_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("tenant,app\nx,y\n")
    assert palctl(["enqueue", "--csv", str(csv_file), "--dry-run"]) == 2
    assert "missing column(s) clientId, customerTenantId" in capsys.readouterr().err
