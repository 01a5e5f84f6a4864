"""Benchmark of the nightly re-verification: `make bench` (or `python -m bench.reverify_bench`).

Seeds N links in the sandbox (a separate process) and in the ledger (Azurite), adds latency to
every token and ARM call, and re-verifies every link through the verify path with the host's
concurrency (host.json maxConcurrentCalls). Then runs a baseline the way today's scripts work:
tenant after tenant, a new credential, a token and a GET each, no concurrency. Prints figures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from sandbox.fleet import APP, MI_CLIENT, PARTNER_ID, fleet_scenario, fleet_tenants

ROOT = Path(__file__).resolve().parents[1]


class Sandbox:
    """The Entra/ARM sandbox in its own process, so its memory is not counted as ours."""

    def __init__(self, scenario_file: Path, state_dir: Path) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sandbox.cloud",
                "--scenario",
                str(scenario_file),
                "--state-dir",
                str(state_dir),
            ],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        self.ready = json.loads(self.process.stdout.readline())
        self.context = ssl.create_default_context(cafile=self.ready["caPath"])

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.ready['url']}/_sandbox/{path}", data=data, method=method)
        with urllib.request.urlopen(request, context=self.context) as response:
            return json.loads(response.read() or b"null")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


async def seed_ledger(ledger: Any, tenants: list[str]) -> None:
    from datetime import UTC, datetime

    await ledger.ensure_table()
    gate = asyncio.Semaphore(64)
    now = datetime.now(UTC)

    async def one(tenant: str) -> None:
        async with gate:
            await ledger._table.upsert_entity(  # noqa: SLF001 - seeding, not product code
                {
                    "PartitionKey": tenant,
                    "RowKey": f"link~{APP}",
                    "CustomerTenantId": tenant,
                    "ClientId": APP,
                    "IdentityType": "federated",
                    "PartnerId": PARTNER_ID,
                    "Outcome": "linked",
                    "Reason": "seeded",
                    "LastCheckedAt": now,
                    "ConsecutiveFailures": 0,
                }
            )

    await asyncio.gather(*(one(tenant) for tenant in tenants))


async def reverify(env: dict[str, str], tenants: list[str], concurrency: int) -> list[dict[str, Any]]:
    """Two nights over the seeded links: the first after onboarding (each link's verified interval
    starts: a history event), then a night on which nothing changed (the steady state). Each night
    starts with a fresh service, as a new day's run does: no token is left from the night before."""
    from shared.ledger import Ledger
    from shared.settings import Settings

    settings = Settings.from_env(env)
    seeding = Ledger.from_settings(settings)
    await seed_ledger(seeding, tenants)
    await seeding.close()
    return [await one_night(settings, concurrency, run_id) for run_id in ("bench-1", "bench-2")]


async def one_night(settings: Any, concurrency: int, run_id: str) -> dict[str, Any]:
    from azure.data.tables.aio import TableClient

    from shared.ledger import Ledger
    from shared.outcomes import OutcomeKind
    from shared.reverify import verify_message
    from shared.service import LinkService, Source

    table_requests = Counter[str]()

    def count(request: Any) -> None:
        table_requests[request.http_request.method] += 1

    service = LinkService.from_settings(settings)
    await service.ledger.close()
    service.ledger = Ledger(
        TableClient.from_connection_string(
            settings.ledger_connection_string or "", settings.ledger_table, raw_request_hook=count
        )
    )
    states = [state async for state in service.ledger.all_link_states()]
    table_requests.clear()

    outcomes = Counter[str]()
    pending = iter(states)

    async def worker() -> None:
        # As the host does: maxConcurrentCalls messages in flight, the next taken when one is done.
        for state in pending:
            outgoing = verify_message(state, run_id)
            assert outgoing is not None
            outcome = await service.handle(
                outgoing.body,
                message_id=outgoing.message_id,
                properties=outgoing.properties,
                source=Source.VERIFY,
            )
            outcomes[outcome.kind.value] += 1

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    await service.ledger.close()
    await service.close()
    assert outcomes[OutcomeKind.VERIFIED.value] == len(states), outcomes
    return {
        "seconds": elapsed,
        "cpuSeconds": cpu,
        "outcomes": dict(outcomes),
        "tableRequests": sum(table_requests.values()),
    }


async def baseline(env: dict[str, str], tenants: list[str]) -> float:
    """Today's scripts: per tenant, a new credential and client, one token, one GET; one at a time."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.identity.aio import ClientAssertionCredential, ManagedIdentityCredential
    from azure.mgmt.managementpartner.aio import ACEProvisioningManagementPartnerAPI

    ca = env["PAL_CA_BUNDLE"]
    started = time.perf_counter()
    for tenant in tenants:
        async with ManagedIdentityCredential(client_id=MI_CLIENT, connection_verify=ca) as identity:
            assertion = (await identity.get_token("api://AzureADTokenExchange/.default")).token
        async with ClientAssertionCredential(
            tenant, APP, lambda a=assertion: a, authority=env["AZURE_AUTHORITY_HOST"], connection_verify=ca
        ) as credential:
            async with ACEProvisioningManagementPartnerAPI(
                credential,
                base_url=env["ARM_ENDPOINT"],
                credential_scopes=["https://management.azure.com/.default"],
                connection_verify=ca,
            ) as client:
                try:
                    await client.partners.get()
                except ResourceNotFoundError:
                    pass
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--links", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument(
        "--baseline-links", type=int, default=200, help="the baseline runs on this many links"
    )
    args = parser.parse_args()
    host_json = json.loads((ROOT / "host.json").read_text())
    concurrency = int(host_json["extensions"]["serviceBus"]["maxConcurrentCalls"])

    from sandbox.azurite import Azurite
    from sandbox.local_env import local_settings

    tenants = fleet_tenants(args.links, series=1)
    document = fleet_scenario(tenants, linked=True)
    with tempfile.TemporaryDirectory(prefix="pal-bench-") as work, Azurite() as azurite:
        scenario_file = Path(work) / "scenario.json"
        scenario_file.write_text(json.dumps(document))
        print(
            f"Seeding {args.links} links; latency {args.latency_ms:.0f} ms on every token and ARM call; ",
            end="",
        )
        print(f"concurrency {concurrency} (host.json maxConcurrentCalls)", flush=True)
        sandbox = Sandbox(scenario_file, Path(work) / "cloud")
        try:
            for target in ("token", "arm"):
                rule = {"target": target, "kind": "latency", "latencyMs": args.latency_ms}
                sandbox.admin("POST", "faults", {"tenantId": "*", "rule": rule})

            class Cloud:
                authority = arm_url = key_vault_url = sandbox.ready["url"]
                ca_path = sandbox.ready["caPath"]
                identity_endpoint = sandbox.ready["identityEndpoint"]
                identity_header = sandbox.ready["identityHeader"]

            env = local_settings(
                Cloud(), azurite.connection_string, managed_identity_client_id=MI_CLIENT, ledger_table="Bench"
            )
            os.environ.update(env)
            sandbox.admin("POST", "reset-stats")
            nights = asyncio.run(reverify(env, tenants, concurrency))
            stats = sandbox.admin("GET", "stats")
            peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

            sample = tenants[: args.baseline_links]
            baseline_seconds = asyncio.run(baseline(env, sample))
        finally:
            sandbox.stop()

    links = args.links
    calls_per_link = 2  # a token (once per tenant) and one ARM GET
    ideal = links * calls_per_link * args.latency_ms / 1000 / concurrency
    tokens = stats["tokenRequests"]
    arm_calls = sum(sum(methods.values()) for methods in stats["armCalls"].values())
    baseline_per_link = baseline_seconds / len(sample)
    print(f"token requests per tenant     {sum(tokens.values()) / links / len(nights):.2f} a night")
    print(f"ARM calls per link            {arm_calls / links / len(nights):.2f} a night")
    print(f"peak RSS (this process)       {peak_rss_mb:.0f} MB")
    print(f"ideal for this latency        {ideal:.1f} s ({links / ideal:.0f} links/s)")
    print(f"baseline ({len(sample)} links, one by one) {baseline_per_link * 1000:.0f} ms per link")
    titles = ("first night (intervals start)", "steady night (nothing changed)")
    for title, night in zip(titles, nights, strict=True):
        seconds = night["seconds"]
        print(f"{title}:")
        print(f"  outcomes                    {night['outcomes']}")
        print(f"  wall time                   {seconds:.1f} s, {links / seconds:.0f} links/s")
        print(f"  share of ideal throughput   {ideal / seconds:.0%}")
        print(f"  table requests per link     {night['tableRequests'] / links:.2f}")
        print(f"  CPU per link (this process) {night['cpuSeconds'] / links * 1000:.1f} ms")
        print(f"  speed-up over the baseline  {baseline_per_link / (seconds / links):.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
