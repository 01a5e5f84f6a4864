"""The Functions entry point: what the host indexes, and the trigger called the way the host calls it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.functions.servicebus import ServiceBusMessage

from sandbox.cloud import CloudSandbox
from sandbox.functions_host import indexed_functions
from sandbox.scenario import FaultRule
from shared.links.ledger import UNKNOWN_TENANT
from shared.links.service import TransientFailure, get_service, reset_service
from shared.spine.settings import SettingsError
from tenants import NORTHWIND, WOODGROVE, onboarding_message


def functions() -> dict[str, Any]:
    import function_app

    return {function.get_function_name(): function for function in indexed_functions(function_app.app)}


def host_message(body: dict[str, Any] | bytes, message_id: str, delivery_count: int = 1) -> ServiceBusMessage:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ServiceBusMessage(
        body=raw,
        message_id=message_id,
        delivery_count=delivery_count,
        content_type="application/json",
        enqueued_time_utc=datetime.now(UTC),
        application_properties={},
        user_properties={},
    )


@pytest.fixture
async def fresh_service(env: dict[str, str]) -> AsyncIterator[None]:
    await reset_service()
    yield
    await reset_service()


def test_bindings_are_indexed_as_the_host_expects() -> None:
    indexed = {name: json.loads(f.get_function_json())["bindings"] for name, f in functions().items()}
    service_bus = {
        "direction": "IN",
        "type": "serviceBusTrigger",
        "name": "message",
        "connection": "ServiceBusConnection",
    }
    assert indexed["onboard_customer"] == [{**service_bus, "queueName": "%ONBOARDING_QUEUE%"}]
    assert indexed["verify_link"] == [{**service_bus, "queueName": "%VERIFY_QUEUE%"}]
    assert indexed["audit_customer"] == [{**service_bus, "queueName": "%AUDIT_QUEUE%"}]
    assert indexed["deliver"] == [{**service_bus, "queueName": "%DELIVERY_QUEUE%"}]
    assert indexed["record_dead_lettered_delivery"] == [
        {**service_bus, "queueName": "%DELIVERY_QUEUE%/$DeadLetterQueue"}
    ]
    assert indexed["audit_attribution"] == [
        {
            "direction": "IN",
            "type": "timerTrigger",
            "name": "timer",
            "schedule": "%AUDIT_SCHEDULE%",
            "runOnStartup": False,
        }
    ]
    assert indexed["reverify_links"] == [
        {
            "direction": "IN",
            "type": "timerTrigger",
            "name": "timer",
            "schedule": "%REVERIFY_SCHEDULE%",
            "runOnStartup": False,
        }
    ]
    routes = {
        name: (bindings[0]["route"], bindings[0]["authLevel"], bindings[1])
        for name, bindings in indexed.items()
        if bindings[0]["type"] == "httpTrigger"
    }
    out = {"direction": "OUT", "type": "http", "name": "$return"}
    assert routes == {
        "relink_customer": ("links/{customerTenantId}/relink", "FUNCTION", out),
        "offboard_customer": ("links/{customerTenantId}/offboard", "FUNCTION", out),
        "list_links": ("links", "FUNCTION", out),
        "get_link": ("links/{customerTenantId}", "FUNCTION", out),
        "link_evidence": ("links/{customerTenantId}/evidence", "FUNCTION", out),
        "link_coverage": ("links/{customerTenantId}/coverage", "FUNCTION", out),
        "link_live": ("links/{customerTenantId}/live", "FUNCTION", out),
        "retire_identity": ("links/{customerTenantId}/identities/{clientId}", "FUNCTION", out),
        "record_user_link": ("links/{customerTenantId}/users/{objectId}", "FUNCTION", out),
        "partner_ids": ("partner", "FUNCTION", out),
        "attribution_rules": ("attribution/rules", "FUNCTION", out),
        "attribution_below": ("attribution", "FUNCTION", out),
        "attribution_of_customer": ("attribution/{customerTenantId}", "FUNCTION", out),
        "audit_now": ("attribution/{customerTenantId}/audit", "FUNCTION", out),
        "deliver_solution": ("deliveries/{customerTenantId}/solutions", "FUNCTION", out),
        "deliver_report": ("deliveries/{customerTenantId}/reports", "FUNCTION", out),
        "delivery_status": ("deliveries/{customerTenantId}/{deliveryId}", "FUNCTION", out),
        "repair_plan": ("repairs/{customerTenantId}/plan", "FUNCTION", out),
        "repair_apply": ("repairs/{customerTenantId}/apply", "FUNCTION", out),
        "repair_undo": ("repairs/{customerTenantId}/undo", "FUNCTION", out),
        "repair_status": ("repairs/{customerTenantId}/{applyId}", "FUNCTION", out),
        "dashboard_page": ("dashboard", "ANONYMOUS", out),
        "dashboard_static": ("dashboard/static/{name}", "ANONYMOUS", out),
        "dashboard_me": ("dashboard/data/me", "ANONYMOUS", out),
        "dashboard_summary": ("dashboard/data/summary", "ANONYMOUS", out),
        "dashboard_links": ("dashboard/data/links", "ANONYMOUS", out),
        "dashboard_customer": ("dashboard/data/customers/{customerTenantId}", "ANONYMOUS", out),
        "dashboard_relink": ("dashboard/data/customers/{customerTenantId}/relink", "ANONYMOUS", out),
        "dashboard_trends": ("dashboard/data/trends", "ANONYMOUS", out),
        "dashboard_attribution_fleet": ("dashboard/data/attribution", "ANONYMOUS", out),
        "dashboard_live": ("dashboard/data/customers/{customerTenantId}/live", "ANONYMOUS", out),
        "dashboard_attribution": (
            "dashboard/data/customers/{customerTenantId}/attribution",
            "ANONYMOUS",
            out,
        ),
        "dashboard_audit": ("dashboard/data/customers/{customerTenantId}/audit", "ANONYMOUS", out),
        "dashboard_offboard": ("dashboard/data/customers/{customerTenantId}/offboard", "ANONYMOUS", out),
    }


def test_core_and_adapters_do_not_import_the_sandbox_or_functions_sdk() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for path in [
        root / "function_app.py",
        *(root / "functions").rglob("*.py"),
        *(root / "shared").rglob("*.py"),
    ]:
        text = path.read_text()
        assert "import sandbox" not in text and "from sandbox" not in text, path
        if "shared" in path.relative_to(root).parts:
            assert "azure.functions" not in text, path


async def test_trigger_links_and_completes(fresh_service: None, cloud: CloudSandbox) -> None:
    handler = functions()["onboard_customer"].get_user_function()
    await handler(host_message(onboarding_message(NORTHWIND), "m-1"))  # returning = the host completes it
    assert any(link["tenantId"] == NORTHWIND for link in cloud.links())
    (event,) = await (await get_service()).ledger.history(NORTHWIND)
    assert (event.outcome, event.message_id) == ("linked", "m-1")


async def test_permanent_failures_complete_and_transient_ones_raise(
    fresh_service: None, cloud: CloudSandbox
) -> None:
    handler = functions()["onboard_customer"].get_user_function()
    await handler(host_message(onboarding_message(WOODGROVE), "m-consent"))
    await handler(host_message(b"not json", "m-bad"))
    ledger = (await get_service()).ledger
    consent = [(event.outcome, event.message_id) for event in await ledger.history(WOODGROVE)]
    assert consent == [("needs-customer-action", "m-consent")]
    rejected = [(event.outcome, event.code) for event in await ledger.history(UNKNOWN_TENANT)]
    assert ("rejected", "not-json") in rejected

    cloud.add_fault(NORTHWIND, FaultRule(target="arm", kind="status", status=503))
    with pytest.raises(TransientFailure, match="HTTP503"):
        await handler(host_message(onboarding_message(NORTHWIND), "m-2"))


async def test_a_missing_setting_fails_the_invocation_naming_it(
    fresh_service: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    await reset_service()
    monkeypatch.delenv("PARTNER_ID")
    handler = functions()["onboard_customer"].get_user_function()
    with pytest.raises(SettingsError, match="PARTNER_ID"):
        await handler(host_message(onboarding_message(NORTHWIND), "m-1"))
