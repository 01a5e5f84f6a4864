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
from sandbox.broker import ServiceBusBroker
from sandbox.cloud import CloudSandbox
from sandbox.fleet import APP, MI_CLIENT, fleet_scenario, fleet_tenants
from sandbox.functions_host import LocalFunctionsHost
from sandbox.local_env import local_settings
from sandbox.scenario import FaultRule, Scenario

ROOT = Path(__file__).resolve().parents[2]
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


_SOAK_SETTINGS = {
    "RETRY_BASE_SECONDS": "1",
    "RETRY_MAX_SECONDS": "4",
    "MAX_ATTEMPTS": "10",
    "HTTP_TIMEOUT_SECONDS": "2",
    "SDK_RETRY_TOTAL": "1",
}


async def run_soak(
    messages: int,
    *,
    work: Path,
    outage_seconds: float = 3.0,
    restart_host: bool = True,
    give_up_after: float = 600,
) -> SoakReport:
    """One run; the caller's process must not hold another local host for the same app."""
    from shared.links.service import reset_service

    report = SoakReport(messages)
    tenants = fleet_tenants(messages, series=4)
    soak = _Soak(work, tenants, report)
    try:
        await soak.start()
        started = time.monotonic()
        ids = await _send(soak.broker.connection_string, tenants)
        await soak.drive(started, outage_seconds, restart_host, give_up_after)
        report.seconds = time.monotonic() - started
        await soak.tally(ids)
        return report
    finally:
        await soak.stop()
        await reset_service()


class _Soak:
    """The local services of one soak run, the host under test, and the disturbances."""

    def __init__(self, work: Path, tenants: list[str], report: SoakReport) -> None:
        self.tenants, self.report = tenants, report
        self.azurite = Azurite(location=work / "azurite").start()
        scenario = Scenario.from_dict(fleet_scenario(tenants, linked=False))
        self.cloud = CloudSandbox(scenario, state_dir=work / "cloud", seed=7).start()
        self.broker = ServiceBusBroker().start()
        self.host: LocalFunctionsHost | None = None
        self.env: dict[str, str] = {}

    async def start(self) -> None:
        from shared.links.service import reset_service

        for rule in ARM_FAULTS + TOKEN_FAULTS:
            self.cloud.add_fault("*", rule)
        self.env = local_settings(
            self.cloud,
            self.azurite.connection_string,
            managed_identity_client_id=MI_CLIENT,
            service_bus_connection_string=self.broker.connection_string,
            ledger_table="Soak",
        )
        self.env |= _SOAK_SETTINGS
        await reset_service()
        self.host = await LocalFunctionsHost(settings=self.env).start()

    async def drive(
        self, started: float, outage_seconds: float, restart_host: bool, give_up_after: float
    ) -> None:
        """Wait for the queue to drain, taking Table Storage away at 30% and restarting the host
        at 60% of the invocations."""
        assert self.host is not None
        messages, report = self.report.messages, self.report
        restart_done, outage_done = not restart_host, outage_seconds <= 0
        idle_since: float | None = None
        while time.monotonic() - started < give_up_after:
            await asyncio.sleep(0.5)
            done = len(self.host.invocations) + report.attempts
            if not outage_done and done >= messages * 0.3:
                await self._outage(outage_seconds)
                outage_done = True
            if not restart_done and done >= messages * 0.6:
                await self._restart()
                restart_done = True
            if not (outage_done and restart_done and self._idle()):
                idle_since = None
            elif time.monotonic() - (idle_since := idle_since or time.monotonic()) > 2:
                break
        report.attempts += len(self.host.invocations)

    def _idle(self) -> bool:
        counts = self.broker.queue_counts(QUEUE)
        return counts["active"] + counts["scheduled"] + counts["locked"] == 0

    async def _outage(self, seconds: float) -> None:
        """Table Storage goes away for a while."""
        self.azurite.stop()
        await asyncio.sleep(seconds)
        self.azurite.start()
        self.report.azurite_outage_seconds = seconds

    async def _restart(self) -> None:
        from shared.links.service import reset_service

        assert self.host is not None
        self.report.attempts += len(self.host.invocations)
        await self.host.stop(grace_seconds=5)
        await reset_service()
        self.host = await LocalFunctionsHost(settings=self.env).start()
        self.report.host_restarts = 1

    async def tally(self, ids: list[str]) -> None:
        """Each message's recorded events: one final outcome each, no event twice."""
        from shared.links.service import get_service

        ledger, report = (await get_service()).ledger, self.report
        for message_id, tenant in zip(ids, self.tenants, strict=True):
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
        report.left_in_queue = {k: v for k, v in self.broker.queue_counts(QUEUE).items() if v}
        report.dead_lettered = self.broker.dead_letters(QUEUE)
        report.faults_injected = sum(self.cloud.stats().get("faultsApplied", {}).values())

    async def stop(self) -> None:
        if self.host is not None:
            await self.host.stop(grace_seconds=2)
        self.broker.stop()
        self.cloud.stop()
        self.azurite.stop()


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
