"""`make run`: the whole service on one machine. Starts Azurite, the Entra/ARM/Key Vault sandbox, the
Service Bus broker and the local Functions host; sends the sample customer-onboarded messages
through the azure-servicebus SDK as the CRM would; waits until each has a final outcome; prints
the outcomes and the ledger; stops everything."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sandbox.azurite import Azurite
from sandbox.broker import ServiceBusBroker
from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from sandbox.local_env import local_settings
from sandbox.scenario import FaultRule, Scenario, load_scenario
from shared.links.earning import grants_of
from shared.links.rows import HistoryEvent

ROOT = Path(__file__).resolve().parents[2]
_FINAL_WAIT_SECONDS = 90


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    widths = {c: max([len(c), *(len(str(r.get(c, ""))) for r in rows)]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


async def _events(ledger: Any, partitions: set[str]) -> list[HistoryEvent]:
    events: list[HistoryEvent] = []
    for partition in sorted(partitions):
        events += await ledger.history(partition, limit=1000)
    return sorted(events, key=lambda e: e.event_time, reverse=True)


def _final(events: list[HistoryEvent], message_id: str) -> HistoryEvent | None:
    """The newest event of a message or its scheduled retries, if it is final."""
    mine = [
        e for e in events if e.message_id == message_id or (e.message_id or "").startswith(message_id + ":")
    ]
    if mine and mine[0].is_final:
        return mine[0]
    return None


async def _send_as_crm(connection_string: str, queue: str, samples: list[Path]) -> list[tuple[Path, str]]:
    from azure.servicebus import ServiceBusMessage
    from azure.servicebus.aio import ServiceBusClient

    sent = []
    async with ServiceBusClient.from_connection_string(connection_string) as client:
        async with client.get_queue_sender(queue) as sender:
            batch = await sender.create_message_batch()
            for sample in samples:
                message_id = f"crm-{sample.stem}"
                batch.add_message(
                    ServiceBusMessage(
                        sample.read_bytes(), message_id=message_id, content_type="application/json"
                    )
                )
                sent.append((sample, message_id))
            await sender.send_messages(batch)
    return sent


async def _run(
    env: dict[str, str],
    scenario: Scenario,
    samples: list[Path],
    broker: ServiceBusBroker,
    cloud: CloudSandbox,
) -> int:
    from shared.links.ledger import UNKNOWN_TENANT
    from shared.links.service import get_service, reset_service

    partitions = {tenant.tenant_id for tenant in scenario.tenants} | {UNKNOWN_TENANT}
    # Ctrl-C or SIGTERM cancels this task (the finally blocks stop the host, then the services).
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _interrupt, task)
    host = LocalFunctionsHost(settings=env)
    try:
        await host.start()
        print(f"Local Functions host running: {', '.join(host.function_names)}")
        sent = await _send_as_crm(env["ServiceBusConnection"], env["ONBOARDING_QUEUE"], samples)
        print(f"Sent {len(sent)} customer-onboarded messages to the queue; waiting for their outcomes...")
        service = await get_service()
        deadline = time.monotonic() + _FINAL_WAIT_SECONDS
        while True:
            events = await _events(service.ledger, partitions)
            finals = {message_id: _final(events, message_id) for _, message_id in sent}
            if all(finals.values()) or time.monotonic() > deadline:
                break
            _check_interrupted()
            await asyncio.sleep(0.25)
        _check_interrupted()
        await _print_onboarding(service, sent, finals, events, broker, env)
        await _nightly_run(service, host, cloud, scenario)
    finally:
        await host.stop()
    await reset_service()
    return 0 if all(finals.values()) else 1


def _outcome_rows(
    sent: list[tuple[Path, str]], finals: dict[str, HistoryEvent | None], events: list[HistoryEvent]
) -> list[dict[str, Any]]:
    """One row per sample message: its final outcome and how many attempts it took."""
    rows = []
    for _, message_id in sent:
        final = finals[message_id]
        attempts = [e for e in events if (e.message_id or "").startswith(message_id)]
        rows.append(
            {
                "message": message_id,
                "outcome": final.outcome.value if final else "(no final outcome yet)",
                "code": (final.code if final else None) or "",
                "attempts": len(attempts),
                "reason": ((final.reason if final else None) or "")[:80],
            }
        )
    return rows


async def _print_onboarding(
    service: Any,
    sent: list[tuple[Path, str]],
    finals: dict[str, HistoryEvent | None],
    events: list[HistoryEvent],
    broker: ServiceBusBroker,
    env: dict[str, str],
) -> None:
    rows = _outcome_rows(sent, finals, events)
    print("\nOutcomes")
    print(table(rows, ["message", "outcome", "code", "attempts", "reason"]))

    states = [state async for state in service.ledger.all_link_states()]
    print("\nLedger: current state of each link")
    state_rows = [
        {
            "customer": s.customer_name or "",
            "tenant": (s.customer_tenant_id or "")[:8] + "…",
            "identity": s.identity_type or "",
            "outcome": s.outcome.value,
            "partner": s.linked_partner_id or "",
            "previous": s.previous_partner_id or "",
            "failures": s.consecutive_failures,
            "last checked": s.last_checked_at.strftime("%H:%M:%S") if s.last_checked_at else "",
        }
        for s in states
    ]
    print(table(state_rows, list(state_rows[0]) if state_rows else ["customer"]))
    for state in states:
        if state.remediation:
            customer = state.customer_name or state.customer_tenant_id
            print(f"  what to do for {customer}: {state.remediation}")

    print("\nLedger: history (newest first)")
    history_rows = [
        {
            "time": e.event_time.strftime("%H:%M:%S.%f")[:-3],
            "tenant": e.partition_key[:8] + "…",
            "message": e.message_id or "",
            "attempt": e.attempt or 1,
            "outcome": e.outcome.value,
            "code": e.code or "",
            "next attempt": e.next_attempt_at.strftime("%H:%M:%S") if e.next_attempt_at else "",
        }
        for e in events
    ]
    print(table(history_rows, list(history_rows[0]) if history_rows else ["time"]))

    counts = broker.queue_counts(env["ONBOARDING_QUEUE"])
    print(f"\nQueue {env['ONBOARDING_QUEUE']} afterwards: {json.dumps(counts)}")


async def _nightly_run(
    service: Any, host: LocalFunctionsHost, cloud: CloudSandbox, scenario: Scenario
) -> None:
    """Someone removes Northwind's link; the nightly timer notices and heals it."""
    northwind = scenario.tenants[0]
    cloud.delete_link(northwind.tenant_id, northwind.service_principals[0].object_id)
    print(f"\nNight: the link in {northwind.name} was removed by hand. Firing the re-verification timer...")
    host.fire_timer("reverify_links")
    deadline = time.monotonic() + _FINAL_WAIT_SECONDS
    while time.monotonic() < deadline:
        finished = [run for run in await service.ledger.runs.all() if run.ended]
        if finished:
            run = finished[-1]
            counts = json.dumps(dict(sorted(run.counts.items())))
            print(f"Run {run.run_id}: {run.total} links in {run.duration_seconds} s: {counts}")
            await _print_recognition(service, scenario)
            break
        _check_interrupted()
        await asyncio.sleep(0.25)
    else:
        print("The re-verification run did not finish in time.")
    links = [link for link in cloud.links() if link["tenantId"] == northwind.tenant_id]
    print(f"{northwind.name}'s link now: partner ID {links[0]['partnerId']}, {links[0]['state']}")


async def _print_recognition(service: Any, scenario: Scenario) -> None:
    """Each checked link's Azure recognition: its qualifying roles, or what to ask the customer for."""
    print("Azure recognition of the verified links:")
    for tenant in scenario.tenants:
        for state in await service.ledger.link_states(tenant.tenant_id):
            if state.earning is None:
                continue
            roles = ", ".join(grant.label for grant in grants_of(state) if grant.qualifies)
            print(f"  {tenant.name}: {state.earning.value} ({roles or state.earning_reason})")
            if state.earning_remediation:
                print(f"    what to ask for: {state.earning_remediation}")


_INTERRUPTED: list[bool] = []


def _interrupt(task: asyncio.Task[int]) -> None:
    _INTERRUPTED.append(True)
    task.cancel()


def _check_interrupted() -> None:
    # Some SDK code swallows a cancellation; the flag makes sure the demo still stops.
    if _INTERRUPTED:
        raise asyncio.CancelledError


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # outside the event loop: the same clean shutdown as Ctrl-C


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", type=Path, default=ROOT / "sandbox" / "scenarios" / "demo.json")
    parser.add_argument("--samples", type=Path, default=ROOT / "sandbox" / "samples")
    parser.add_argument("--verbose", action="store_true", help="show the host's and the product's log lines")
    args = parser.parse_args()

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("azure", "uamqp"):
        logging.getLogger(noisy).setLevel(logging.WARNING if args.verbose else logging.ERROR)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    scenario = load_scenario(args.scenario)
    samples = sorted(args.samples.glob("*.json"))
    try:
        with (
            tempfile.TemporaryDirectory(prefix="pal-sandbox-") as state_dir,
            Azurite() as azurite,
            CloudSandbox(scenario, state_dir=Path(state_dir)) as cloud,
            ServiceBusBroker() as broker,
        ):
            print(
                f"Azurite on 127.0.0.1:{azurite.port}; Entra/ARM/Key Vault sandbox on {cloud.base_url}; ",
                end="",
            )
            print(f"Service Bus broker on 127.0.0.1:{broker.port}")
            env = local_settings(
                cloud,
                azurite.connection_string,
                managed_identity_client_id=scenario.managed_identity.client_id,
                service_bus_connection_string=broker.connection_string,
            )
            env["RETRY_BASE_SECONDS"] = "1"  # a demo should not wait 30 s for a retry
            env["RUN_SUMMARY_CHECK_SECONDS"] = "1"
            # Litware is throttled once: its message is retried after the server's Retry-After.
            litware = next(t.tenant_id for t in scenario.tenants if t.name.startswith("Litware"))
            cloud.add_fault(
                litware, FaultRule(target="arm", kind="status", status=429, retry_after=2, count=3)
            )
            code = asyncio.run(_run(env, scenario, samples, broker, cloud))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\nInterrupted: services stopped.")
        return 130
    print("\nServices stopped.")
    return code


if __name__ == "__main__":
    sys.exit(main())
