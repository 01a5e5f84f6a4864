"""Reliability run: many onboarding messages through the broker and the local host while the sandbox
injects faults, Azurite goes down and comes back, and the host is restarted; then checks that every
message has exactly one final outcome, nothing is doubled, nothing is left in the queues.

`make soak` runs it long and prints the figures; the test suite runs a short one.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.azurite import Azurite
from sandbox.cloud import CloudSandbox
from sandbox.fleet import APP, MI_CLIENT, fleet_scenario, fleet_tenants
from sandbox.functions_host import LocalFunctionsHost
from sandbox.local_env import local_settings
from sandbox.scenario import FaultRule, Scenario
from sandbox.servicebus import ServiceBusBroker

ROOT = Path(__file__).resolve().parents[1]
QUEUE = "customer-onboarded"

# About 20% of ARM calls and 5% of token requests meet a fault.
ARM_FAULTS = [
    FaultRule(target="arm", kind="status", status=429, retry_after=1, probability=0.05),
    FaultRule(target="arm", kind="status", status=500, probability=0.05),
    FaultRule(target="arm", kind="status", status=503, probability=0.04),
    FaultRule(target="arm", kind="drop", probability=0.03),
    FaultRule(target="arm", kind="latency", latency_ms=2500, probability=0.03),  # past the 2 s client timeout
]
TOKEN_FAULTS = [
    FaultRule(target="token", kind="aadsts", aadsts=90033, probability=0.03),
    FaultRule(target="token", kind="status", status=503, probability=0.02),
]


@dataclass
class SoakReport:
    messages: int
    seconds: float = 0.0
    faults_injected: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    without_final_outcome: list[str] = field(default_factory=list)
    with_several_final_outcomes: list[str] = field(default_factory=list)
    duplicated_events: int = 0
    left_in_queue: dict[str, int] = field(default_factory=dict)
    dead_lettered: list[dict[str, Any]] = field(default_factory=list)
    azurite_outage_seconds: float = 0.0
    host_restarts: int = 0

    def lines(self) -> list[str]:
        return [
            f"messages                  {self.messages} in {self.seconds:.1f} s",
            f"faults injected           {self.faults_injected}",
            f"azurite outage            {self.azurite_outage_seconds:.1f} s",
            f"host restarts             {self.host_restarts}",
            f"attempts recorded         {self.attempts}",
            f"final outcomes            {dict(sorted(self.outcomes.items()))}",
            f"lost (no final outcome)   {len(self.without_final_outcome)}",
            f"doubled (2+ final)        {len(self.with_several_final_outcomes)}",
            f"duplicated history events {self.duplicated_events}",
            f"left in the queue         {self.left_in_queue}",
            f"dead-lettered             {len(self.dead_lettered)} {[d['reason'] for d in self.dead_lettered]}"
            if self.dead_lettered
            else "dead-lettered             0",
        ]


async def _send(connection: str, tenants: list[str]) -> list[str]:
    from azure.servicebus import ServiceBusMessage
    from azure.servicebus.aio import ServiceBusClient

    from shared.links.message_builder import onboarding_body
    from shared.spine.identity import Identity, IdentityType

    ids = []
    async with (
        ServiceBusClient.from_connection_string(connection) as client,
        client.get_queue_sender(QUEUE) as sender,
    ):
        batch = await sender.create_message_batch()
        for n, tenant in enumerate(tenants):
            body = onboarding_body(tenant, Identity(IdentityType.FEDERATED, APP))
            message_id = f"soak-{n}"
            message = ServiceBusMessage(body, message_id=message_id)
            try:
                batch.add_message(message)
            except ValueError:
                await sender.send_messages(batch)
                batch = await sender.create_message_batch()
                batch.add_message(message)
            ids.append(message_id)
        await sender.send_messages(batch)
    return ids


async def run_soak(
    messages: int,
    *,
    work: Path,
    outage_seconds: float = 3.0,
    restart_host: bool = True,
    give_up_after: float = 600,
) -> SoakReport:
    """One run; the caller's process must not hold another local host for the same app."""
    from shared.links.service import get_service, reset_service

    report = SoakReport(messages)
    tenants = fleet_tenants(messages, series=4)
    azurite = Azurite(location=work / "azurite").start()
    cloud = CloudSandbox(
        Scenario.from_dict(fleet_scenario(tenants, linked=False)), state_dir=work / "cloud", seed=7
    ).start()
    broker = ServiceBusBroker().start()
    host: LocalFunctionsHost | None = None
    try:
        for rule in ARM_FAULTS + TOKEN_FAULTS:
            cloud.add_fault("*", rule)
        env = local_settings(
            cloud,
            azurite.connection_string,
            managed_identity_client_id=MI_CLIENT,
            service_bus_connection_string=broker.connection_string,
            ledger_table="Soak",
        )
        env |= {
            "RETRY_BASE_SECONDS": "1",
            "RETRY_MAX_SECONDS": "4",
            "MAX_ATTEMPTS": "10",
            "HTTP_TIMEOUT_SECONDS": "2",
            "SDK_RETRY_TOTAL": "1",
        }
        await reset_service()
        host = await LocalFunctionsHost(settings=env).start()
        started = time.monotonic()
        ids = await _send(broker.connection_string, tenants)

        restart_done = not restart_host
        outage_done = outage_seconds <= 0
        idle_since: float | None = None
        while time.monotonic() - started < give_up_after:
            await asyncio.sleep(0.5)
            done = len(host.invocations) + report.attempts
            if not outage_done and done >= messages * 0.3:
                azurite.stop()  # Table Storage goes away for a while
                await asyncio.sleep(outage_seconds)
                azurite.start()
                report.azurite_outage_seconds, outage_done = outage_seconds, True
            if not restart_done and done >= messages * 0.6:
                report.attempts += len(host.invocations)
                await host.stop(grace_seconds=5)
                await reset_service()
                host = await LocalFunctionsHost(settings=env).start()
                report.host_restarts, restart_done = 1, True
            counts = broker.queue_counts(QUEUE)
            busy = counts["active"] + counts["scheduled"] + counts["locked"]
            if busy == 0 and outage_done and restart_done:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 2:
                    break
            else:
                idle_since = None
        report.seconds = time.monotonic() - started
        report.attempts += len(host.invocations)

        ledger = (await get_service()).ledger
        for message_id, tenant in zip(ids, tenants, strict=True):
            events = [
                e
                for e in await ledger.history(tenant, limit=1000)
                if (e.message_id or "").split(":")[0] == message_id
            ]
            finals = [e for e in events if e.is_final]
            keys = Counter((e.message_id, e.delivery_count) for e in events)
            report.duplicated_events += sum(count - 1 for count in keys.values())
            if not finals:
                report.without_final_outcome.append(message_id)
            elif len(finals) > 1:
                report.with_several_final_outcomes.append(message_id)
            for event in finals[:1]:
                report.outcomes[event.outcome.value] += 1
        report.left_in_queue = {k: v for k, v in broker.queue_counts(QUEUE).items() if v}
        report.dead_lettered = broker.dead_letters(QUEUE)
        report.faults_injected = sum(cloud.stats().get("faultsApplied", {}).values())
        return report
    finally:
        if host is not None:
            await host.stop(grace_seconds=2)
        await reset_service()
        broker.stop()
        cloud.stop()
        azurite.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--outage-seconds", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    logging.getLogger("azure").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="pal-soak-") as work:
        report = asyncio.run(run_soak(args.messages, work=Path(work), outage_seconds=args.outage_seconds))
    print("\n".join(report.lines()))
    healthy = not (
        report.without_final_outcome or report.with_several_final_outcomes or report.duplicated_events
    )
    return 0 if healthy and not report.left_in_queue else 1


if __name__ == "__main__":
    sys.exit(main())
