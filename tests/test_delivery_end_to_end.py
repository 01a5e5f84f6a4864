"""Delivery as the linked identity end to end: `palctl deliver` over real HTTP to the local Functions
host, the delivery message through the local Service Bus broker (AMQP) to the host's `deliver`
trigger, the file through Blob Storage (Azurite) when large, against the sandbox's Dataverse and
Power BI stand-ins; then the owners the stand-ins hold and the audit the worker ran. Failures, a
redelivered message, the follow-up poll, a transient fault retried, the dead-letter trigger, and no
file content nor token in any log, stored row or palctl output."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from sandbox.azurite_blob import AzuriteBlob
from sandbox.broker import ServiceBusBroker
from sandbox.cloud import CloudSandbox
from sandbox.cloud.power_platform import bot, canvas_app, flow, model_driven_app, pbix_file, solution_zip
from sandbox.functions_host import LocalFunctionsHost
from sandbox.scenario import FaultRule, Scenario, load_scenario
from shared.delivery.dead_letter import record_dead_letter
from shared.delivery.message import DeliveryMessage
from shared.delivery.rows import DeliveryRow, DeliveryStatus
from shared.delivery.store import DeliveryLedger
from shared.links.service import get_service, reset_service
from tests.test_attribution_audit import ATTRIBUTION_SCENARIO, link
from tests.test_palctl_cli import palctl
from tests.test_sandbox_power_platform import call
from tests.traces import everything_logged, everything_stored

FABRIKAM = "892ad125-0722-49b7-a665-aea7ede649e4"
FABRIKAM_APP = "3d396df3-d832-4c8b-a51d-91fbcce04b1d"
FABRIKAM_SP = "fad08631-a20d-46eb-9c68-9bb2395042d8"
DEFAULT_ENV = f"Default-{FABRIKAM}"
WORKSPACE = "f2ecf949-91b6-41f5-877f-0c879514e004"
QUEUE = "solution-delivery"
SECRET_WORDS = "Confidential payroll component"
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")
ORDERS = [
    flow("cr_orders_flow", "Orders flow"),
    canvas_app("cr_orders_app", "Orders app"),
    model_driven_app("cr_orders_hub", SECRET_WORDS),
]


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(ATTRIBUTION_SCENARIO)


@pytest.fixture(scope="module")
def blob_storage() -> Iterator[AzuriteBlob]:
    from azure.storage.blob import BlobServiceClient

    with AzuriteBlob() as running:
        # The deliveries container exists, as infra creates it: palctl never creates one.
        with BlobServiceClient.from_connection_string(running.connection_string) as service:
            service.create_container("deliveries")
        yield running


@pytest.fixture
def delivery_overrides() -> dict[str, str]:
    """Settings a test changes (parametrize it)."""
    return {}


@pytest.fixture
def delivery_env(
    bus_env: dict[str, str],
    blob_storage: AzuriteBlob,
    delivery_overrides: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    extra = {
        "DeliveryStorage": blob_storage.connection_string,
        "DELIVERY_POLL_SECONDS": "20",
        "DELIVERY_POLL_DELAY_SECONDS": "1",
    } | delivery_overrides
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    return bus_env | extra


@pytest.fixture
async def host(delivery_env: dict[str, str], cloud: CloudSandbox) -> AsyncIterator[LocalFunctionsHost]:
    await reset_service()  # a new service: the delivery's settings and Blob client are built anew with it
    delay(cloud, 0.3)
    running = LocalFunctionsHost(settings=delivery_env)
    await running.start()
    await link(await get_service(), FABRIKAM)
    yield running
    await running.stop(grace_seconds=5)
    await reset_service()  # closes the Blob client with the service


def delay(cloud: CloudSandbox, seconds: float) -> None:
    body = json.dumps({"seconds": seconds})
    status, _, _ = call(cloud, "PUT", "/_sandbox/power-platform/delivery-delay", body=body)
    assert status == 200


def palctl_env(host: LocalFunctionsHost, blob_storage: AzuriteBlob | None) -> dict[str, str]:
    env = {"PAL_API_URL": host.base_url, "PAL_API_KEY": host.function_key}
    env["PAL_DELIVERY_STORAGE"] = blob_storage.connection_string if blob_storage else ""
    return env


async def deliver(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(palctl, "deliver", *argv, env=env)


def solution_file(tmp_path: Path, data: bytes, name: str = "managed.zip") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


async def row_of(delivery_id: str) -> DeliveryRow:
    row = await DeliveryLedger((await get_service()).ledger.table).get(FABRIKAM, delivery_id)
    assert row is not None
    return row


async def wait_until_idle(broker: ServiceBusBroker, host: LocalFunctionsHost, invocations: int) -> None:
    """The delivery queue holds nothing (active, locked or scheduled) and the `deliver` function ran
    `invocations` times: nothing more is coming."""
    deadline = time.monotonic() + 60
    while True:
        counts = broker.queue_counts(QUEUE)
        ran = sum(1 for i in host.invocations if i.function == "deliver")
        if ran >= invocations and not any(counts[k] for k in ("active", "locked", "scheduled")):
            return
        assert time.monotonic() < deadline, (counts, ran)
        await asyncio.sleep(0.2)


def padded(package: bytes, size: int) -> bytes:
    """The solution zip with an incompressible file of `size` bytes added (a solution's web resources
    and images make real ones large)."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item))
        target.writestr("WebResources/cr_logo.png", os.urandom(size))
    return out.getvalue()


def components_in(cloud: CloudSandbox, environment: str = DEFAULT_ENV) -> dict[str, Any]:
    status, _, body = call(cloud, "GET", f"/_sandbox/environments/{environment}/components")
    assert status == 200, body
    return {item["name"]: item for item in body["value"]}


def clean(*texts: str) -> None:
    """No file content, import log, token or key in what was printed, logged or stored."""
    for text in texts:
        assert SECRET_WORDS not in text
        assert "UEsDB" not in text and "PK\x03\x04" not in text and "importexportxml" not in text
        assert "customizations" not in text.lower()
        assert not JWT.search(text)
        assert "AccountKey=" not in text


# ---- a solution, a .pbix, a failure ----------------------------------------------------------------


async def test_a_large_solution_is_delivered_with_palctl_and_owned_by_the_linked_service_principal(
    host: LocalFunctionsHost,
    cloud: CloudSandbox,
    broker: ServiceBusBroker,
    blob_storage: AzuriteBlob,
    delivery_env: dict[str, str],
    tmp_path: Path,
    all_logs: pytest.LogCaptureFixture,
) -> None:
    # Larger than the host's 1 MB request limit: palctl uploads it and sends a reference.
    data = padded(solution_zip("Orders", "1.0.0.0", components=ORDERS), 2 * 1024 * 1024)
    file = solution_file(tmp_path, data)
    env = palctl_env(host, blob_storage)
    argv = ("solution", "--tenant", FABRIKAM, "--environment", DEFAULT_ENV, "--file", file)
    done = await deliver(env, *argv, "--wait", "--timeout", "120", "-o", "json")
    assert done.returncode == 0, (done.stdout, done.stderr)
    document = json.loads(done.stdout)
    assert (document["status"], document["viaBlob"], document["size"]) == ("succeeded", True, len(data))
    assert document["components"] == {"appmodule": 1, "canvasapp": 1, "workflow": 1}
    assert document["attributed"] == {"appmodule": 1, "canvasapp": 1, "workflow": 1}
    assert (document["componentsImported"], document["componentsAttributed"], document["notAttributed"]) == (
        3,
        3,
        0,
    )
    delivered = components_in(cloud)
    for name in ("Orders flow", "Orders app", SECRET_WORDS):
        assert FABRIKAM_SP in json.dumps(delivered[name]), delivered[name]
    row = await row_of(document["deliveryId"])
    assert row.audit.startswith("audited") and row.blob == document["sha256"] + ".zip"
    await wait_until_idle(broker, host, 1)
    assert broker.queue_counts(QUEUE)["dead_lettered"] == 0

    # The same file sent as the body is refused by the host's request limit, and palctl says what to do.
    refused = await deliver(palctl_env(host, None), *argv)
    assert (
        refused.returncode == 1 and "HTTP 413" in refused.stderr and "PAL_DELIVERY_STORAGE" in refused.stderr
    )
    clean(done.stdout, done.stderr, refused.stderr, everything_logged(all_logs))
    # The audit records each resource's display name (its purpose); the delivery's rows record none.
    stored = (await everything_stored(delivery_env)).splitlines()
    deliveries = [line for line in stored if '"RowKey": "delivery~' in line]
    assert deliveries
    clean(*deliveries)
    assert not any(JWT.search(line) or "UEsDB" in line for line in stored)


async def test_a_solution_with_a_bot_is_delivered_and_its_attribution_shown(
    host: LocalFunctionsHost, tmp_path: Path
) -> None:
    file = solution_file(tmp_path, solution_zip("Helpdesk", components=[bot("cr_helpdesk", "Helpdesk bot")]))
    env = palctl_env(host, None)
    shown = await deliver(
        env, "solution", "--tenant", FABRIKAM, "--environment", DEFAULT_ENV, "--file", file, "--wait"
    )
    assert shown.returncode == 0, (shown.stdout, shown.stderr)
    lines = shown.stdout.splitlines()
    assert re.match(
        r"delivery [0-9a-f-]{36}: succeeded: solution Helpdesk 1\.0\.0\.0 to " + DEFAULT_ENV, lines[0]
    )
    assert "  imported: 1 (bot 1)" in lines
    assert "  attributed to the linked service principal: 1 (bot 1)" in lines
    assert not any(line.startswith("  NOT ATTRIBUTED") for line in lines)


async def test_delivered_but_not_shown_attributed_is_exit_3(
    host: LocalFunctionsHost, cloud: CloudSandbox, tmp_path: Path
) -> None:
    # The flows' API fails while the worker audits: the import stands, its attribution is not shown.
    cloud.add_fault(FABRIKAM, FaultRule(target="flow", kind="status", status=403))
    file = solution_file(tmp_path, solution_zip("Unseen", components=ORDERS[:1]))
    argv = ("solution", "--tenant", FABRIKAM, "--environment", DEFAULT_ENV, "--file", file, "--wait")
    shown = await deliver(palctl_env(host, None), *argv)
    assert shown.returncode == 3, (shown.stdout, shown.stderr)
    lines = shown.stdout.splitlines()
    assert ": succeeded: solution Unseen" in lines[0] and "  imported: 1 (workflow 1)" in lines
    assert any(line.startswith(("  NOT ATTRIBUTED: 1", "  attributed: not audited yet")) for line in lines), (
        lines
    )


async def test_a_pbix_is_published_with_palctl_as_the_linked_service_principal(
    host: LocalFunctionsHost, cloud: CloudSandbox, tmp_path: Path
) -> None:
    status, _, _ = call(
        cloud, "PUT", f"/_sandbox/tenants/{FABRIKAM}/workspaces/{WORKSPACE}/members/{FABRIKAM_APP}"
    )
    assert status in (200, 204)
    path = tmp_path / "Deliveries.pbix"
    path.write_bytes(pbix_file("Deliveries"))
    env = palctl_env(host, None)
    argv = ("pbix", "--tenant", FABRIKAM, "--workspace", WORKSPACE, "--file", str(path), "--wait")
    shown = await deliver(env, *argv)
    assert shown.returncode == 0, (shown.stdout, shown.stderr)
    lines = shown.stdout.splitlines()
    assert re.match(r"delivery [0-9a-f-]{36}: succeeded: pbix Deliveries to " + WORKSPACE, lines[0]), lines
    assert "  attributed to the linked service principal: 1 (dataset 1)" in lines
    document = json.loads((await deliver(env, *argv, "--name-conflict", "Overwrite", "-o", "json")).stdout)
    assert (document["status"], document["kind"], document["viaBlob"]) == ("succeeded", "pbix", False)
    csv_lines = (await deliver(env, *argv, "-o", "csv")).stdout.splitlines()
    assert csv_lines[0].startswith("customerTenantId,deliveryId,kind,target,status,") and len(csv_lines) == 2


async def test_a_missing_dependency_is_shown_by_palctl_with_exit_1_and_its_code(
    host: LocalFunctionsHost, tmp_path: Path
) -> None:
    data = solution_zip("Needs", components=ORDERS[:1], missing_dependencies=["BaseSolution"])
    file = solution_file(tmp_path, data)
    env = palctl_env(host, None)
    argv = ("solution", "--tenant", FABRIKAM, "--environment", DEFAULT_ENV, "--file", file, "--wait")
    shown = await deliver(env, *argv)
    assert shown.returncode == 1, (shown.stdout, shown.stderr)
    assert ": failed: solution " in shown.stdout.splitlines()[0]
    assert "  missing-dependency: " in shown.stdout and "  what to do: " in shown.stdout
    document = json.loads((await deliver(env, *argv, "-o", "json")).stdout)
    assert (document["status"], document["code"]) == ("failed", "missing-dependency")


async def test_bad_input_is_refused_before_anything_is_sent(host: LocalFunctionsHost, tmp_path: Path) -> None:
    env = palctl_env(host, None)
    text = tmp_path / "notes.zip"
    text.write_text("not a zip")
    base = ("solution", "--tenant", FABRIKAM, "--environment", DEFAULT_ENV)
    cases = [
        ((*base, "--file", str(tmp_path / "absent.zip")), "no such file"),
        ((*base, "--file", str(text)), "is not a zip archive"),
        (
            ("solution", "--tenant", "nope", "--environment", "e", "--file", str(text)),
            "--tenant must be a GUID",
        ),
        ((*base, "--environment", "a/b", "--file", str(text)), "--environment"),
        ((*base, "--file", str(text), "--settings", str(text)), "--settings"),
        (
            ("pbix", "--tenant", FABRIKAM, "--workspace", "x", "--file", str(text)),
            "--workspace must be a GUID",
        ),
        (
            (
                "pbix",
                "--tenant",
                FABRIKAM,
                "--workspace",
                WORKSPACE,
                "--file",
                str(text),
                "--name-conflict",
                "X",
            ),
            "--name-conflict",
        ),
    ]
    for argv, words in cases:
        out = await deliver(env, *argv)
        assert out.returncode == 2 and words in out.stderr, (argv, out.stderr)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"EnvironmentVariables": []}))
    good = solution_file(tmp_path, solution_zip("S", components=ORDERS[:1]))
    out = await deliver(env, *base, "--file", good, "--settings", str(settings))
    assert out.returncode == 2 and "PAL_DELIVERY_STORAGE" in out.stderr
    assert not [i for i in host.invocations if i.function == "deliver"]


async def test_deployment_settings_go_with_a_reference_through_blob_storage(
    host: LocalFunctionsHost, blob_storage: AzuriteBlob, tmp_path: Path
) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(
        json.dumps({"EnvironmentVariables": [{"SchemaName": "cr_url", "Value": "https://x"}]})
    )
    file = solution_file(tmp_path, solution_zip("Configured", components=ORDERS[:1]))
    env = palctl_env(host, blob_storage)
    argv = ("solution", "--tenant", FABRIKAM, "--environment", DEFAULT_ENV, "--file", file)
    out = await deliver(env, *argv, "--settings", str(settings), "--wait", "-o", "json")
    assert out.returncode == 0, (out.stdout, out.stderr)
    document = json.loads(out.stdout)
    assert (document["status"], document["viaBlob"]) == ("succeeded", True)
    assert (await row_of(document["deliveryId"])).settings_blob


# ---- redelivery, the follow-up poll, a transient fault, the dead-letter queue -----------------------


def count_imports(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from shared.delivery.calls import Caller

    imports: list[str] = []
    original = Caller.call

    async def counted(self: Caller, api: Any, method: str, url: str, **kwargs: Any) -> Any:
        if url.endswith("/ImportSolutionAsync"):
            imports.append(url)
        return await original(self, api, method, url, **kwargs)

    monkeypatch.setattr(Caller, "call", counted)
    return imports


async def send(env: dict[str, str], body: bytes, *message_ids: str) -> None:
    async with ServiceBusClient.from_connection_string(env["ServiceBusConnection"]) as client:
        async with client.get_queue_sender(QUEUE) as sender:
            await sender.send_messages([ServiceBusMessage(body, message_id=m) for m in message_ids])


def message_of(row: DeliveryRow) -> DeliveryMessage:
    return DeliveryMessage(
        row.delivery_id,
        row.partition_key,
        row.kind,
        row.target,
        row.blob,
        row.sha256,
        row.size,
        row.settings_blob,
    )


async def test_a_delivery_message_sent_twice_through_the_broker_imports_once(
    host: LocalFunctionsHost,
    broker: ServiceBusBroker,
    delivery_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    imports = count_imports(monkeypatch)
    file = solution_file(tmp_path, solution_zip("Once", components=ORDERS[:1]))
    argv = ("solution", "--tenant", FABRIKAM, "--environment", DEFAULT_ENV, "--file", file, "--wait")
    out = await deliver(palctl_env(host, None), *argv, "-o", "json")
    assert out.returncode == 0, (out.stdout, out.stderr)
    row = await row_of(json.loads(out.stdout)["deliveryId"])
    await wait_until_idle(broker, host, 1)

    body = message_of(row).body()
    await send(delivery_env, body, "again-1", "again-2")
    await wait_until_idle(broker, host, 3)
    assert len(imports) == 1
    assert (await row_of(row.delivery_id)).status is DeliveryStatus.SUCCEEDED
    assert broker.queue_counts(QUEUE)["dead_lettered"] == 0


@pytest.mark.parametrize("delivery_overrides", [{"DELIVERY_POLL_SECONDS": "1"}])
async def test_a_long_import_is_polled_again_by_a_follow_up_message(
    host: LocalFunctionsHost, cloud: CloudSandbox, broker: ServiceBusBroker, tmp_path: Path
) -> None:
    delay(cloud, 3)
    file = solution_file(tmp_path, solution_zip("Slow", components=ORDERS[:1]))
    argv = ("solution", "--tenant", FABRIKAM, "--environment", DEFAULT_ENV, "--file", file, "--wait")
    out = await deliver(palctl_env(host, None), *argv, "-o", "json")
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert json.loads(out.stdout)["status"] == "succeeded"
    await wait_until_idle(broker, host, 2)
    ran = [i for i in host.invocations if i.function == "deliver"]
    assert len(ran) >= 2 and all(i.succeeded for i in ran)  # the first scheduled a follow-up, not a sleep


async def test_a_transient_fault_is_retried(
    host: LocalFunctionsHost, cloud: CloudSandbox, broker: ServiceBusBroker, tmp_path: Path
) -> None:
    cloud.add_fault(FABRIKAM, FaultRule(target="dataverse", kind="status", status=503, count=1))
    file = solution_file(tmp_path, solution_zip("Retried", components=ORDERS[:1]))
    argv = ("solution", "--tenant", FABRIKAM, "--environment", DEFAULT_ENV, "--file", file, "--wait")
    out = await deliver(palctl_env(host, None), *argv, "-o", "json")
    assert out.returncode == 0, (out.stdout, out.stderr)
    document = json.loads(out.stdout)
    assert (document["status"], document["attempt"]) == ("succeeded", 2)
    await wait_until_idle(broker, host, 2)


async def test_a_dead_lettered_delivery_message_ends_its_delivery_as_failed(
    host: LocalFunctionsHost,
    broker: ServiceBusBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.delivery.service import DeliveryService

    async def broken(self: DeliveryService, body: bytes, **_: Any) -> str:
        raise RuntimeError("a bug")

    monkeypatch.setattr(DeliveryService, "handle", broken)
    file = solution_file(tmp_path, solution_zip("Doomed", components=ORDERS[:1]))
    env = palctl_env(host, None)
    argv = ("solution", "--tenant", FABRIKAM, "--environment", DEFAULT_ENV, "--file", file)
    out = await deliver(env, *argv, "--wait", "--timeout", "60", "-o", "json")
    assert out.returncode == 1, (out.stdout, out.stderr)
    document = json.loads(out.stdout)
    assert (document["status"], document["code"]) == ("failed", "dead-lettered")
    assert "dead-lettered" in document["reason"]
    recorded = [i for i in host.invocations if i.function == "record_dead_lettered_delivery"]
    assert [i.succeeded for i in recorded] == [True]


async def test_recording_a_dead_letter_leaves_a_final_delivery_and_ignores_strangers(
    host: LocalFunctionsHost, tmp_path: Path
) -> None:
    file = solution_file(tmp_path, solution_zip("Final", components=ORDERS[:1]))
    argv = ("solution", "--tenant", FABRIKAM, "--environment", DEFAULT_ENV, "--file", file, "--wait")
    out = await deliver(palctl_env(host, None), *argv, "-o", "json")
    row = await row_of(json.loads(out.stdout)["deliveryId"])
    ledger = DeliveryLedger((await get_service()).ledger.table)
    body = message_of(row).body()
    kept = await record_dead_letter(ledger, body, message_id="m", delivery_count=10, max_file_bytes=1 << 30)
    assert kept == f"delivery {row.delivery_id} is already succeeded"
    assert await record_dead_letter(ledger, b"{}", message_id="m", delivery_count=1, max_file_bytes=1) == (
        "not a delivery message"
    )
    stranger = message_of(row.replace(row_key="delivery~6f1c1a1e-0000-4000-8000-000000000001")).body()
    assert await record_dead_letter(
        ledger, stranger, message_id="m", delivery_count=1, max_file_bytes=1 << 30
    ) == ("no such delivery recorded")
