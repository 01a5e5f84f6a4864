"""Benchmark of the attribution audit on one large tenant: `python -m bench.audit_bench`.

A customer with 20 Power Platform environments, 1,000 canvas apps and 1,000 flows (a tenth owned by
the linked service principal), Dataverse apps and bots, and Power BI datasets; 50 ms added to every
Power Platform call by the stand-ins. The audit goes the production way: a customer message on the
audit queue (local broker), one message per environment and one for Power BI, run by the local
Functions host at its maxConcurrentCalls. Prints the wall time, the calls per API and the findings;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sandbox.azurite import Azurite
from sandbox.broker import ServiceBusBroker
from sandbox.cloud import CloudSandbox
from sandbox.fleet import APP, MI_CLIENT, power_platform_scenario
from sandbox.functions_host import LocalFunctionsHost
from sandbox.local_env import local_settings
from sandbox.scenario import FaultRule, Scenario

_TARGETS = ("bap", "powerapps", "flow", "dataverse", "powerbi")
_CALLS = {
    "bap": "bapCalls",
    "powerapps": "powerAppsCalls",
    "flow": "flowCalls",
    "dataverse": "dataverseCalls",
}


async def audit_once(cloud: CloudSandbox, env: dict[str, str], tenant: str, run_id: str) -> dict[str, Any]:
    from shared.attribution.audit import AuditMessage, audit_message
    from shared.attribution.store import AttributionLedger
    from shared.links.service import get_service
    from shared.spine.envelope import Source

    service = await get_service()
    body = json.dumps(
        {"schemaVersion": 1, "customerTenantId": tenant, "identity": {"type": "federated", "clientId": APP}}
    )
    await service.handle(body.encode(), message_id=f"bench-{tenant}", properties={}, source=Source.ONBOARDING)
    cloud.reset_stats()
    assert service.sender is not None
    started = time.perf_counter()
    await service.sender.send_batch(
        service.settings.audit_queue, [audit_message(AuditMessage(tenant, run_id))]
    )
    ledger = AttributionLedger(service.ledger.table)
    while True:
        runs = {run.run_id: run for run in await ledger.runs(tenant)}
        if run_id in runs and runs[run_id].ended_at is not None:
            break
        await asyncio.sleep(0.2)
    seconds = time.perf_counter() - started
    run = runs[run_id]
    findings = await ledger.findings(tenant)
    return {"seconds": seconds, "run": run, "findings": len(findings), "stats": cloud.stats()}


async def main_async(latency_ms: float, work: Path) -> None:
    document = power_platform_scenario()
    tenant = document["tenants"][0]["tenantId"]
    with Azurite(location=work / "azurite") as azurite, ServiceBusBroker() as broker:
        cloud = CloudSandbox(Scenario.from_dict(document), state_dir=work / "cloud").start()
        try:
            for target in _TARGETS:
                rule = FaultRule(target=target, kind="latency", latency_ms=latency_ms)  # type: ignore[arg-type]
                cloud.add_fault("*", rule)
            env = local_settings(
                cloud,
                azurite.connection_string,
                managed_identity_client_id=MI_CLIENT,
                service_bus_connection_string=broker.connection_string,
                ledger_table="AuditBench",
            )
            async with LocalFunctionsHost(settings=env):
                result = await audit_once(cloud, env, tenant, "bench-1")
        finally:
            from shared.links.service import reset_service

            await reset_service()
            cloud.stop()
    report(result, latency_ms)


def report(result: dict[str, Any], latency_ms: float) -> None:
    run, stats = result["run"], result["stats"]
    environments = len(run.unit_list()) - 1
    print(f"large tenant: {environments} environments + Power BI; {latency_ms:.0f} ms per call")
    print(f"  wall time                   {result['seconds']:.1f} s (queue to summary)")
    for target, key in _CALLS.items():
        calls = sum(sum(methods.values()) for methods in stats.get(key, {}).values())
        print(f"  {target + ' calls':<27} {calls}")
    power_bi = sum(sum(m.values()) for m in stats.get("powerBiCalls", {}).values())
    print(f"  {'powerbi calls':<27} {power_bi} (the admin API allows 5 a minute per tenant)")
    print(f"  findings                    {result['findings']}")
    print(
        f"  coverage                    {run.coverage:.1%}" if run.coverage is not None else "  coverage   -"
    )
    print(f"  needs customer action       {run.refused_map() or 'none'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pal-audit-bench-") as work:
        asyncio.run(main_async(args.latency_ms, Path(work)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
