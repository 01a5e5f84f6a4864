"""Delivery as the linked identity (shared/delivery): a managed solution imported into the Dataverse
stand-in and a .pbix published to the Power BI stand-in as the customer's linked service principal,
the files through Blob Storage (Azurite), each failure's outcome, redelivery, and the audit after."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from sandbox.azurite_blob import AzuriteBlob
from sandbox.cloud import CloudSandbox
from sandbox.cloud.power_platform import (
    bot,
    canvas_app,
    connection_reference,
    flow,
    model_driven_app,
    pbix_file,
    solution_zip,
)
from sandbox.scenario import Scenario, load_scenario
from shared.attribution.audit import AttributionAudit
from shared.attribution.store import AttributionLedger
from shared.delivery.api import DeliveryApi
from shared.delivery.blobs import DeliveryBlobs
from shared.delivery.message import DeliveryKind, DeliveryMessage, DeploymentSettings
from shared.delivery.outcome import import_job_id, read_import_log, solution_failure
from shared.delivery.rows import DeliveryRow, DeliveryStatus
from shared.delivery.service import DeliveryService
from shared.delivery.settings import DeliverySettings
from shared.delivery.store import DeliveryLedger
from shared.links.service import LinkService
from tests.test_attribution_audit import ATTRIBUTION_SCENARIO, link
from tests.test_sandbox_power_platform import call
from tests.traces import everything_logged, everything_stored

FABRIKAM = "892ad125-0722-49b7-a665-aea7ede649e4"
FABRIKAM_APP = "3d396df3-d832-4c8b-a51d-91fbcce04b1d"
FABRIKAM_SP = "fad08631-a20d-46eb-9c68-9bb2395042d8"
DEFAULT_ENV = f"Default-{FABRIKAM}"
NO_APP_USER_ENV = "9e82d65f-75ff-4607-aa36-24c9af6d621b"
WORKSPACE = "f2ecf949-91b6-41f5-877f-0c879514e004"
SECRET_WORDS = "Confidential payroll component"


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(ATTRIBUTION_SCENARIO)


@pytest.fixture(scope="module")
def blob_storage() -> Iterator[AzuriteBlob]:
    with AzuriteBlob() as running:
        yield running


@pytest.fixture
def fast_cloud(cloud: CloudSandbox) -> CloudSandbox:
    status, _, _ = call(
        cloud, "PUT", "/_sandbox/power-platform/delivery-delay", body=json.dumps({"seconds": 0.5})
    )
    assert status == 200
    return cloud


@pytest.fixture
def delivery_settings(blob_storage: AzuriteBlob) -> DeliverySettings:
    return DeliverySettings(connection_string=blob_storage.connection_string, poll_seconds=20)


@pytest.fixture
async def parts(
    service: LinkService, fast_cloud: CloudSandbox, delivery_settings: DeliverySettings
) -> AsyncIterator[tuple[DeliveryApi, DeliveryService]]:
    await link(service, FABRIKAM)
    assert service.credentials is not None
    blobs = DeliveryBlobs(delivery_settings)
    ledger = DeliveryLedger(service.ledger.table)
    audit = AttributionAudit(
        service.ledger,
        AttributionLedger(service.ledger.table),
        service.credentials,
        None,
        service.settings,
        service.transport,
    )
    worker = DeliveryService(
        links=service.ledger,
        ledger=ledger,
        blobs=blobs,
        audit=audit,
        credentials=service.credentials,
        sender=None,
        settings=service.settings,
        delivery=delivery_settings,
        transport=service.transport,
    )
    api = DeliveryApi(service.ledger, ledger, blobs, _Sent(), delivery_settings)
    yield api, worker
    await blobs.close()


class _Sent:
    """Stands for the queue's sender in process: keeps what was sent."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def send_batch(self, queue: str, messages: list[Any]) -> int:
        self.messages += messages
        return len(messages)


async def deliver(
    parts: tuple[DeliveryApi, DeliveryService], data: bytes, *, environment: str = DEFAULT_ENV, **extra: Any
) -> tuple[DeliveryRow, str]:
    api, worker = parts
    response = await api.solution(FABRIKAM, {"environment": environment}, data, "application/zip", **extra)
    assert response.status == 202, response.body
    assert response.body is not None
    sent = api._sender.messages[-1]  # type: ignore[union-attr]
    result = await worker.handle(sent.body, message_id=sent.message_id, properties={})
    row = await worker.ledger.get(FABRIKAM, response.body["deliveryId"])
    assert row is not None
    return row, result


ORDERS = [
    flow("cr_orders_flow", "Orders flow"),
    canvas_app("cr_orders_app", "Orders app"),
    bot("cr_helpdesk", "Helpdesk bot"),
    model_driven_app("cr_orders_hub", SECRET_WORDS),
]


# ---- pure -------------------------------------------------------------------------------------------


def test_messages_are_parsed_strictly() -> None:
    sha = "a" * 64
    good = DeliveryMessage(
        "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        FABRIKAM,
        DeliveryKind.SOLUTION,
        DEFAULT_ENV,
        f"{sha}.zip",
        sha,
        10,
    )
    assert DeliveryMessage.parse(good.body(), max_file_bytes=100) == good
    document = json.loads(good.body())
    for change in (
        {"blob": f"{'b' * 64}.zip"},  # not the file the message states
        {"blob": "../other.zip"},
        {"size": 101},
        {"size": True},
        {"extra": 1},
        {"kind": "script"},
        {"customerTenantId": "x"},
        {"target": "a/b"},
        {"datasetName": "x"},  # a solution has no dataset
        {"schemaVersion": 2},
        {"settingsBlob": "x.json"},
    ):
        assert DeliveryMessage.parse(json.dumps(document | change).encode(), max_file_bytes=100) is None, (
            change
        )
    assert DeliveryMessage.parse(b"not json", max_file_bytes=100) is None


def test_deployment_settings_are_validated_and_become_component_parameters() -> None:
    parsed = DeploymentSettings.parse(
        json.dumps(
            {
                "EnvironmentVariables": [{"SchemaName": "cr_url", "Value": "https://x"}],
                "ConnectionReferences": [
                    {
                        "LogicalName": "cr_office",
                        "ConnectionId": "c1",
                        "ConnectorId": "/providers/Microsoft.PowerApps/apis/shared_office365",
                    }
                ],
            }
        ).encode()
    )
    assert isinstance(parsed, DeploymentSettings)
    kinds = [p["@odata.type"] for p in parsed.component_parameters()]
    assert kinds == [
        "Microsoft.Dynamics.CRM.connectionreference",
        "Microsoft.Dynamics.CRM.environmentvariablevalue",
    ]
    assert isinstance(DeploymentSettings.parse(b'{"Other": 1}'), str)
    assert isinstance(DeploymentSettings.parse(b'{"ConnectionReferences": [{"LogicalName": "a b"}]}'), str)


def test_the_import_log_gives_kinds_and_ids_only_and_failures_are_named() -> None:
    log = (
        '<importexportxml><solutionManifests><solutionManifest><result result="success" errorcode="0"/>'
        "</solutionManifest></solutionManifests><workflows>"
        '<workflow id="{11111111-1111-1111-1111-111111111111}" name="Secret">'
        '<result result="success"/></workflow></workflows></importexportxml>'
    )
    report = read_import_log(log)
    assert report.counts() == {"workflow": 1} and report.failure_code is None
    assert read_import_log('<!DOCTYPE x [<!ENTITY a "b">]><x/>').counts() == {}
    assert solution_failure("0x8004801D", "missing").code == "missing-dependency"
    assert solution_failure("0x80048068", "v").code == "version-conflict"
    assert solution_failure("0x80060467", "c").code == "connection-reference-without-connection"
    assert import_job_id(FABRIKAM, "d") == import_job_id(FABRIKAM, "d") != import_job_id(FABRIKAM, "e")


# ---- in process, against the stand-ins and Azurite --------------------------------------------------


async def test_a_solution_is_imported_as_the_linked_service_principal_and_audited(
    parts: tuple[DeliveryApi, DeliveryService], fast_cloud: CloudSandbox
) -> None:
    row, result = await deliver(parts, solution_zip("Orders", "1.0.0.0", components=ORDERS))
    assert row.status is DeliveryStatus.SUCCEEDED, (result, row)
    status, _, body = call(fast_cloud, "GET", f"/_sandbox/environments/{DEFAULT_ENV}/components")
    assert status == 200, body
    delivered = {item["name"]: item for item in body["value"]}
    for name in ("Orders flow", "Orders app", "Helpdesk bot", SECRET_WORDS):
        assert FABRIKAM_SP in json.dumps(delivered[name]), delivered[name]
    public = row.public()
    assert public["components"] == {"appmodule": 1, "bot": 1, "canvasapp": 1, "workflow": 1}
    assert public["attributed"]["workflow"] == 1 and public["attributed"]["canvasapp"] == 1
    assert public["attributed"]["appmodule"] == 1
    assert row.solution_name == "Orders" and row.import_job_id == import_job_id(FABRIKAM, row.delivery_id)
    assert SECRET_WORDS not in json.dumps(public, default=str)


@pytest.mark.parametrize(
    ("package", "code"),
    [
        (
            lambda: solution_zip("Needs", components=ORDERS[:1], missing_dependencies=["BaseSolution"]),
            "missing-dependency",
        ),
        (
            lambda: solution_zip("Conn", components=[connection_reference("cr_mail")]),
            "connection-reference-without-connection",
        ),
    ],
)
async def test_each_import_failure_is_final_and_named(
    parts: tuple[DeliveryApi, DeliveryService], package: Any, code: str
) -> None:
    row, _ = await deliver(parts, package())
    assert (row.status, row.code) == (DeliveryStatus.FAILED, code), row
    assert row.remediation


async def test_a_version_conflict_is_final(parts: tuple[DeliveryApi, DeliveryService]) -> None:
    first, _ = await deliver(parts, solution_zip("Versioned", "2.0.0.0", components=ORDERS[:1]))
    assert first.status is DeliveryStatus.SUCCEEDED
    row, _ = await deliver(parts, solution_zip("Versioned", "1.0.0.0", components=ORDERS[:1]))
    assert (row.status, row.code) == (DeliveryStatus.FAILED, "version-conflict")


async def test_a_redelivered_message_imports_once(
    parts: tuple[DeliveryApi, DeliveryService], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.delivery.calls import Caller

    imports: list[str] = []
    original = Caller.call

    async def counted(self: Caller, api: Any, method: str, url: str, **kwargs: Any) -> Any:
        if url.endswith("/ImportSolutionAsync"):
            imports.append(url)
        return await original(self, api, method, url, **kwargs)

    monkeypatch.setattr(Caller, "call", counted)
    api, worker = parts
    row, _ = await deliver(parts, solution_zip("Once", components=[flow("cr_once", "Once flow")]))
    sent = api._sender.messages[-1]  # type: ignore[union-attr]
    assert await worker.handle(sent.body, message_id=sent.message_id, properties={}) == (
        f"duplicate: delivery {row.delivery_id} is already succeeded"
    )
    # A crash after the import started, before its row said so: the copy finds the import job.
    await worker.ledger.replace(row.replace(status=DeliveryStatus.QUEUED, async_operation_id=None), row)
    assert (await worker.handle(sent.body, message_id=sent.message_id, properties={})).startswith("succeeded")
    assert len(imports) == 1


async def test_without_an_application_user_it_is_added_first(
    parts: tuple[DeliveryApi, DeliveryService],
) -> None:
    row, result = await deliver(
        parts, solution_zip("Fresh", components=[flow("cr_new", "New flow")]), environment=NO_APP_USER_ENV
    )
    assert row.status is DeliveryStatus.SUCCEEDED, (result, row)


async def test_a_large_file_goes_through_blob_storage(
    parts: tuple[DeliveryApi, DeliveryService], delivery_settings: DeliverySettings
) -> None:
    api, worker = parts
    data = solution_zip("Large", components=ORDERS[:1])
    large = data + os.urandom(6 * 1024 * 1024)  # a zip with trailing bytes: still read from its end
    blobs = DeliveryBlobs(delivery_settings)
    try:
        stored = await blobs.put(large, "zip")
        again = await blobs.put(large, "zip")
    finally:
        await blobs.close()
    assert stored == again and stored.size > 6 * 1024 * 1024
    body = json.dumps({"blob": stored.blob}).encode()
    response = await api.solution(FABRIKAM, {"environment": DEFAULT_ENV}, body, "application/json")
    assert response.status == 202 and response.body is not None
    sent = api._sender.messages[-1]  # type: ignore[union-attr]
    assert len(sent.body) < 2048  # a reference, never the file
    result = await worker.handle(sent.body, message_id=sent.message_id, properties={})
    row = await worker.ledger.get(FABRIKAM, response.body["deliveryId"])
    assert row is not None and row.size == stored.size, result


async def test_the_api_refuses_what_it_must(parts: tuple[DeliveryApi, DeliveryService]) -> None:
    api, _ = parts
    small = DeliverySettings(connection_string="x", max_file_bytes=1024)
    tiny = DeliveryApi(api._links, api._ledger, api._blobs, api._sender, small)
    assert (
        await tiny.solution(
            FABRIKAM, {"environment": DEFAULT_ENV}, b"PK\x03\x04" + b"0" * 2000, "application/zip"
        )
    ).status == 413
    assert (
        await api.solution(FABRIKAM, {"environment": DEFAULT_ENV}, b"text", "application/zip")
    ).status == 400
    assert (await api.solution(FABRIKAM, {}, b"PK\x03\x04", "application/zip")).status == 400
    assert (
        await api.solution("not-a-guid", {"environment": "e"}, b"PK\x03\x04", "application/zip")
    ).status == 400
    other = "0b5e9d4c-0000-4000-8000-000000000001"
    assert (await api.solution(other, {"environment": "e"}, b"PK\x03\x04", "application/zip")).status == 404
    missing = json.dumps({"blob": "c" * 64 + ".zip"}).encode()
    assert (await api.solution(FABRIKAM, {"environment": "e"}, missing, "application/json")).status == 400
    assert (await api.status(FABRIKAM, other)).status == 404


async def test_a_pbix_is_published_as_the_service_principal_and_audited(
    parts: tuple[DeliveryApi, DeliveryService], fast_cloud: CloudSandbox
) -> None:
    api, worker = parts
    params = {"workspace": WORKSPACE, "datasetName": "Deliveries"}
    status, _, _ = call(
        fast_cloud, "PUT", f"/_sandbox/tenants/{FABRIKAM}/workspaces/{WORKSPACE}/members/{FABRIKAM_APP}"
    )
    assert status in (200, 204)
    response = await api.report(FABRIKAM, params, pbix_file("Deliveries"), "application/octet-stream")
    assert response.status == 202 and response.body is not None
    assert response.body["nameConflict"] == "CreateOrOverwrite"
    sent = api._sender.messages[-1]  # type: ignore[union-attr]
    result = await worker.handle(sent.body, message_id=sent.message_id, properties={})
    row = await worker.ledger.get(FABRIKAM, response.body["deliveryId"])
    assert row is not None and row.status is DeliveryStatus.SUCCEEDED, result
    assert row.public()["attributed"] == {"dataset": 1}


async def test_a_pbix_to_a_workspace_we_are_not_member_of_needs_the_customer(
    parts: tuple[DeliveryApi, DeliveryService],
) -> None:
    api, worker = parts
    params = {"workspace": "3e00f556-9427-4e6e-bb9d-bf0b6ad058c0", "datasetName": "X"}
    response = await api.report(FABRIKAM, params, pbix_file("X"), "application/octet-stream")
    assert response.body is not None
    sent = api._sender.messages[-1]  # type: ignore[union-attr]
    await worker.handle(sent.body, message_id=sent.message_id, properties={})
    row = await worker.ledger.get(FABRIKAM, response.body["deliveryId"])
    assert row is not None and row.status is DeliveryStatus.NEEDS_CUSTOMER_ACTION
    assert row.remediation and "Member or Contributor" in row.remediation


async def test_no_secret_nor_file_content_is_logged_or_stored(
    parts: tuple[DeliveryApi, DeliveryService], env: dict[str, str], all_logs: pytest.LogCaptureFixture
) -> None:
    all_logs.set_level(logging.DEBUG)
    row, _ = await deliver(parts, solution_zip("Scan", components=[flow("cr_scan", SECRET_WORDS)]))
    assert row.status is DeliveryStatus.SUCCEEDED
    # The audit records each resource's display name (its purpose); the delivery records none, and
    # nothing records the file or the import log.
    assert SECRET_WORDS not in json.dumps(row.to_entity(), default=str)
    stored, logged = await everything_stored(env), everything_logged(all_logs)
    assert SECRET_WORDS not in logged
    for text in (stored, logged):
        assert not re.search(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+", text)  # no bearer token (a JWT)
        assert "importexportxml" not in text and "UEsDB" not in text
        assert "customizations" not in text.lower()
