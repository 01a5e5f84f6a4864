"""`make run`: feed the sample customer-onboarded messages through the real onboarding function,
called exactly as the Functions host calls it, against the local sandbox and Azurite; print what
happened and the ledger."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.functions.servicebus import ServiceBusMessage

from sandbox.azurite import Azurite
from sandbox.cloud import CloudSandbox
from sandbox.local_env import local_settings
from sandbox.scenario import FaultRule, Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[1]


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    rule = "  ".join("-" * widths[c] for c in columns)
    body = ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join([line, rule, *body])


def _host_message(body: bytes, message_id: str, delivery_count: int) -> ServiceBusMessage:
    return ServiceBusMessage(
        body=body,
        message_id=message_id,
        delivery_count=delivery_count,
        content_type="application/json",
        enqueued_time_utc=datetime.now(UTC),
        application_properties={},
        user_properties={},
    )


async def _deliver(handler: Any, body: bytes, message_id: str, max_deliveries: int = 3) -> tuple[str, int]:
    """What the host does: call, complete on return, redeliver at once on an exception."""
    for delivery in range(1, max_deliveries + 1):
        try:
            await handler(_host_message(body, message_id, delivery))
            return "completed", delivery
        except Exception as error:  # noqa: BLE001 - the host abandons the message
            print(
                f"  delivery {delivery} of {message_id} raised {type(error).__name__}: {error} -> abandoned"
            )
    return "dead-lettered", max_deliveries


async def _run(scenario: Scenario, samples: list[Path]) -> int:
    import function_app
    from shared.ledger import UNKNOWN_TENANT
    from shared.onboarding import get_service, reset_service

    (function,) = [f for f in function_app.app.get_functions() if f.get_function_name() == "onboard_customer"]
    handler = function.get_user_function()
    service = await get_service()
    settings = service.settings
    print(f"Partner ID {settings.partner_id}; ON_OTHER_PARTNER={settings.on_other_partner.value}\n")

    deliveries = []
    for sample in samples:
        body = sample.read_bytes()
        message_id = f"{sample.stem}:{uuid.uuid4().hex[:8]}"
        result, count = await _deliver(handler, body, message_id)
        deliveries.append((sample, message_id, body, result, count))

    # At-least-once delivery: the first message arrives a second time and changes nothing.
    sample, message_id, body, _, _ = deliveries[0]
    print(f"Redelivering {sample.name} with the same MessageId (at-least-once delivery)...")
    await _deliver(handler, body, message_id)

    rows = []
    for sample, message_id, body, result, count in deliveries:
        tenant = json.loads(body).get("customerTenantId") if body.strip().startswith(b"{") else None
        partition = tenant.lower() if isinstance(tenant, str) and len(tenant) == 36 else UNKNOWN_TENANT
        events = [
            e for e in await service.ledger.history(partition, limit=100) if e.get("MessageId") == message_id
        ]
        if not events and partition != UNKNOWN_TENANT:
            events = [
                e
                for e in await service.ledger.history(UNKNOWN_TENANT, limit=100)
                if e["MessageId"] == message_id
            ]
        event = events[0] if events else {}
        rows.append(
            {
                "sample": sample.stem,
                "host": f"{result} after {count}",
                "outcome": event.get("Outcome", "?"),
                "code": event.get("Code", ""),
                "reason": event.get("Reason", "")[:90],
            }
        )
    print("\nOutcomes")
    print(_table(rows, ["sample", "host", "outcome", "code", "reason"]))

    states = [state async for state in service.ledger.all_link_states()]
    print("\nLedger: current state of each link")
    print(
        _table(
            [
                {
                    "customer": s.get("CustomerName", ""),
                    "tenant": s["CustomerTenantId"][:8] + "…",
                    "identity": s.get("IdentityType", ""),
                    "outcome": s["Outcome"],
                    "partner": s.get("LinkedPartnerId", ""),
                    "previous": s.get("PreviousPartnerId", ""),
                    "failures": s.get("ConsecutiveFailures", 0),
                    "last checked": s["LastCheckedAt"].strftime("%H:%M:%S"),
                }
                for s in states
            ],
            ["customer", "tenant", "identity", "outcome", "partner", "previous", "failures", "last checked"],
        )
    )
    for state in states:
        if state.get("Remediation"):
            print(f"  {state.get('CustomerName', state['CustomerTenantId'])}: {state['Remediation']}")

    print("\nLedger: history (newest first)")
    events = []
    for partition in sorted({s["CustomerTenantId"] for s in states} | {UNKNOWN_TENANT}):
        events += await service.ledger.history(partition, limit=100)
    events.sort(key=lambda e: e["EventTime"], reverse=True)
    print(
        _table(
            [
                {
                    "time": e["EventTime"].strftime("%H:%M:%S.%f")[:-3],
                    "tenant": str(e["PartitionKey"])[:8] + "…",
                    "message": e["MessageId"][:32],
                    "try": e.get("DeliveryCount", 1),
                    "outcome": e["Outcome"],
                    "code": e.get("Code", ""),
                }
                for e in events
            ],
            ["time", "tenant", "message", "try", "outcome", "code"],
        )
    )
    await reset_service()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", type=Path, default=ROOT / "sandbox" / "scenarios" / "demo.json")
    parser.add_argument("--samples", type=Path, default=ROOT / "sandbox" / "samples")
    parser.add_argument("--verbose", action="store_true", help="show the product's log lines")
    args = parser.parse_args()

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("azure").setLevel(logging.WARNING if args.verbose else logging.ERROR)
    scenario = load_scenario(args.scenario)
    samples = sorted(args.samples.glob("*.json"))
    with tempfile.TemporaryDirectory(prefix="pal-sandbox-") as state_dir, Azurite() as azurite:
        with CloudSandbox(scenario, state_dir=Path(state_dir)) as cloud:
            print(f"Azurite on 127.0.0.1:{azurite.port}; Entra/ARM/Key Vault sandbox on {cloud.base_url}")
            os.environ.update(
                local_settings(
                    cloud,
                    azurite.connection_string,
                    managed_identity_client_id=scenario.managed_identity.client_id,
                )
            )
            # One transient fault, to show a failed delivery and the host's redelivery.
            litware = next(t.tenant_id for t in scenario.tenants if t.name.startswith("Litware"))
            # Three 503s outlast the SDK's two in-call retries.
            cloud.add_fault(litware, FaultRule(target="arm", kind="status", status=503, count=3))
            code = asyncio.run(_run(scenario, samples))
    print("\nServices stopped.")
    return code


if __name__ == "__main__":
    sys.exit(main())
