"""`make run`: the whole service on one machine. Starts Azurite, the Entra/ARM/Key Vault sandbox, the
Service Bus broker and the local Functions host; sends the sample customer-onboarded messages
through the azure-servicebus SDK as the CRM would; waits until each has a final outcome; prints
the outcomes and the ledger; stops everything.

`--serve` (`make run ARGS=--serve`): the same, with the dashboard's sign-in set for the sandbox (the
scenario's partner tenant and the partner's app registration, whose users hold its app roles); then
prints the dashboard's local address for the scenario's operator and reader (`?login_hint=UPN`: the
sandbox's Entra ID signs that user in at once) and keeps the host and the sandbox serving until
Ctrl-C (SIGINT) or SIGTERM, and stops them cleanly (exit code 0)."""

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
from sandbox.scenario import FaultRule, Scenario, UserAccount, load_scenario
from shared.links.earning import grants_of
from shared.links.rows import HistoryEvent

ROOT = Path(__file__).resolve().parents[2]
_FINAL_WAIT_SECONDS = 90
_OPERATOR_ROLE, _READER_ROLE = "PalAutopilot.Operator", "PalAutopilot.Reader"


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


def dashboard_app(scenario: Scenario) -> str:
    """The partner's app registration: the one that trusts the Function App's managed identity."""
    principal = scenario.managed_identity.principal_id
    for app in scenario.apps:
        if any(credential.subject == principal for credential in app.federated_credentials):
            return app.client_id
    raise SystemExit("the scenario has no app registration trusting the managed identity (the partner's app)")


def dashboard_users(scenario: Scenario) -> tuple[UserAccount, UserAccount]:
    """An operator and a reader of the partner's own tenant (users with the dashboard's app roles)."""
    partner = scenario.tenant(scenario.partner_tenant_id)
    users = list(partner.users) if partner is not None else []
    operator = next((user for user in users if _OPERATOR_ROLE in user.roles), None)
    reader = next(
        (user for user in users if _READER_ROLE in user.roles and _OPERATOR_ROLE not in user.roles), None
    )
    if operator is None or reader is None:
        raise SystemExit(
            "--serve needs the scenario's partner tenant to have a user with the app role "
            f"{_OPERATOR_ROLE} and one with {_READER_ROLE}"
        )
    return operator, reader


def _print_dashboard(host: LocalFunctionsHost, cloud: CloudSandbox, scenario: Scenario) -> None:
    operator, reader = dashboard_users(scenario)
    page = f"{host.base_url}/api/dashboard"
    print(
        f"\nDashboard: {page}\n"
        f"  as the operator {operator.display_name}: {page}?login_hint={operator.user_principal_name}\n"
        f"  as the reader {reader.display_name}: {page}?login_hint={reader.user_principal_name}\n"
        f"Sign-in is the sandbox's Entra ID on {cloud.base_url}, whose certificate comes from a test CA made "
        f"for this run ({cloud.ca_path}): open {cloud.base_url} once and accept it in your browser.\n"
        "Serving until Ctrl-C.",
        flush=True,
    )


async def _run(
    env: dict[str, str],
    scenario: Scenario,
    samples: list[Path],
    broker: ServiceBusBroker,
    cloud: CloudSandbox,
    serve_port: int | None = None,
) -> int:
    from shared.links.ledger import UNKNOWN_TENANT
    from shared.links.service import get_service, reset_service

    partitions = {tenant.tenant_id for tenant in scenario.tenants} | {UNKNOWN_TENANT}
    # Ctrl-C or SIGTERM cancels this task (the finally blocks stop the host, then the services); while
    # serving (--serve) they end the serving instead, which is the way a served run ends.
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None
    serving = asyncio.Event()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _interrupt, task, serving, stop)
    host = LocalFunctionsHost(settings=env, http_port=serve_port or 0)
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
        if serve_port is not None:
            serving.set()
            _print_dashboard(host, cloud, scenario)
            await stop.wait()
            print("\nStopping...", flush=True)
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


def _interrupt(task: asyncio.Task[int], serving: asyncio.Event, stop: asyncio.Event) -> None:
    if serving.is_set():
        stop.set()  # the end of a served run, not an interruption
        return
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
    parser.add_argument(
        "--serve",
        action="store_true",
        help="then keep the dashboard (and everything behind it) serving until Ctrl-C, and print its address",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=7071,
        help="the local Functions host's port with --serve (0: any free one)",
    )
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
    if args.serve:
        dashboard_users(scenario)  # refused before anything starts when it has no operator or reader
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
                # The dashboard's sign-in (--serve): the partner's tenant and app in the scenario.
                dashboard_tenant_id=scenario.partner_tenant_id if args.serve else None,
                dashboard_client_id=dashboard_app(scenario) if args.serve else None,
            )
            env["RETRY_BASE_SECONDS"] = "1"  # a demo should not wait 30 s for a retry
            env["RUN_SUMMARY_CHECK_SECONDS"] = "1"
            # Litware is throttled once: its message is retried after the server's Retry-After.
            litware = next(t.tenant_id for t in scenario.tenants if t.name.startswith("Litware"))
            cloud.add_fault(
                litware, FaultRule(target="arm", kind="status", status=429, retry_after=2, count=3)
            )
            code = asyncio.run(
                _run(env, scenario, samples, broker, cloud, serve_port=args.port if args.serve else None)
            )
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\nInterrupted: services stopped.")
        return 130
    print("\nServices stopped.")
    return code


if __name__ == "__main__":
    sys.exit(main())
