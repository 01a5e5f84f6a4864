"""Benchmark of the nightly re-verification: `make bench` (or `python -m bench.reverify_bench`).

Seeds N links in the sandbox (a separate process) and in the ledger (Azurite), adds latency to
every token and ARM call (and, with --realistic, to every Table request), and re-verifies every link
through the verify path: a first night, then a steady night at the host's concurrency (host.json
maxConcurrentCalls; with --realistic at 32 and 128). Then runs a baseline the way today's scripts
work: tenant after tenant, a new credential, a token and a GET each, no concurrency, and times the
cold start (`import function_app`). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.pipeline.transport import AioHttpTransport

from sandbox.fleet import APP, MI_CLIENT, PARTNER_ID, fleet_scenario, fleet_tenants

ROOT = Path(__file__).resolve().parents[1]
PROFILE_TO: str | None = None
"""--profile FILE: the first steady night's CPU profile goes there (pstats format)."""


class SlowTransport(AioHttpTransport):
    """Table Storage as far away as Azure's: each request waits before it is sent. Its session is
    made as the product's shared transport makes one (no proxy or netrc lookup from the environment
    on every request, no cookies, no decompression), so the ledger costs what it costs in Azure."""

    def __init__(self, delay_seconds: float) -> None:
        import aiohttp

        session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
        super().__init__(session=session, session_owner=False)
        self._delay = delay_seconds

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def send(self, request: Any, **kwargs: Any) -> Any:
        if self._delay:
            await asyncio.sleep(self._delay)
        return await super().send(request, **kwargs)


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
            await ledger.table.client.upsert_entity(
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


async def reverify(
    env: dict[str, str], tenants: list[str], concurrencies: list[int], table_ms: float
) -> list[dict[str, Any]]:
    """Nights over the seeded links: the first after onboarding (each link's verified interval
    starts: a history event), then one night on which nothing changed (the steady state) at each
    concurrency. Each night starts with a fresh service, as a new day's run does: no token is left
    from the night before."""
    from shared.links.ledger import Ledger
    from shared.spine.settings import Settings

    settings = Settings.from_env(env)
    seeding = Ledger.from_settings(settings)
    await seed_ledger(seeding, tenants)
    await seeding.close()
    plan = [("first night (intervals start)", concurrencies[0])]
    plan += [("steady night (nothing changed)", concurrency) for concurrency in concurrencies]
    nights = []
    for number, (title, concurrency) in enumerate(plan, start=1):
        night = await one_night(settings, concurrency, f"bench-{number}", table_ms)
        nights.append(night | {"title": title, "concurrency": concurrency})
    return nights


async def one_night(settings: Any, concurrency: int, run_id: str, table_ms: float) -> dict[str, Any]:
    from azure.data.tables.aio import TableClient

    from shared.links.ledger import Ledger
    from shared.links.reverify import verify_now
    from shared.links.service import LinkService
    from shared.spine.outcomes import OutcomeKind
    from shared.spine.table import Table

    table_requests = Counter[str]()

    def count(request: Any) -> None:
        table_requests[request.http_request.method] += 1

    service = LinkService.from_settings(settings)
    await service.ledger.close()
    service.ledger = Ledger(
        Table(
            TableClient.from_connection_string(
                settings.ledger_connection_string or "",
                settings.ledger_table,
                raw_request_hook=count,
                transport=SlowTransport(table_ms / 1000),
            )
        )
    )
    states = [state async for state in service.ledger.all_link_states()]
    table_requests.clear()

    outcomes = Counter[str]()
    pending = iter(states)

    async def worker() -> None:
        # As the host does: maxConcurrentCalls messages in flight, the next taken when one is done.
        for state in pending:
            outcome = await verify_now(service, state, run_id)
            assert outcome is not None
            outcomes[outcome.kind.value] += 1

    profile = cProfile.Profile() if PROFILE_TO and run_id == "bench-2" else None
    started, cpu_started = time.perf_counter(), time.process_time()
    if profile is not None:
        profile.enable()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if profile is not None:
        profile.disable()
        profile.dump_stats(PROFILE_TO)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    await service.ledger.close()
    await service.close()
    assert outcomes[OutcomeKind.VERIFIED.value] == len(states), outcomes
    return {
        "seconds": elapsed,
        "cpuSeconds": cpu,
        "outcomes": dict(outcomes),
        "tableRequests": sum(table_requests.values()),
        "profiled": profile is not None,
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


@dataclass(frozen=True)
class Latency:
    """Added to every call of each kind: by the sandbox (token, ARM) and by our transport (Table)."""

    token_ms: float
    arm_ms: float
    table_ms: float

    @property
    def per_link_ms(self) -> float:
        """What one link waits for at the least: a token, the link's ARM GET, the recognition check's
        list of subscriptions (the fleet's identities see none, so no role assignments are read), a
        ledger read and a write."""
        return self.token_ms + 2 * self.arm_ms + 2 * self.table_ms


REALISTIC = Latency(token_ms=150, arm_ms=250, table_ms=10)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--links", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="token and ARM latency (uniform)")
    parser.add_argument(
        "--realistic",
        action="store_true",
        help="token 150 ms, ARM 250 ms, Table 10 ms, steady nights at concurrency 32 and 128",
    )
    parser.add_argument(
        "--baseline-links", type=int, default=200, help="the baseline runs on this many links"
    )
    parser.add_argument("--profile", metavar="FILE", help="the first steady night's CPU profile (pstats)")
    return parser.parse_args()


def cold_start(runs: int = 5) -> tuple[float, float]:
    """Median seconds of a whole process importing function_app, and azure.functions alone."""

    def median(code: str) -> float:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
            times.append(time.perf_counter() - started)
        return sorted(times)[runs // 2]

    return median("import function_app"), median("import azure.functions")


def main() -> int:
    global PROFILE_TO
    args = parse_args()
    PROFILE_TO = args.profile
    host_json = json.loads((ROOT / "host.json").read_text())
    host_concurrency = int(host_json["extensions"]["serviceBus"]["maxConcurrentCalls"])
    latency = REALISTIC if args.realistic else Latency(args.latency_ms, args.latency_ms, 0)
    concurrencies = [32, 128] if args.realistic else [host_concurrency]

    from sandbox.azurite import Azurite
    from sandbox.local_env import local_settings

    tenants = fleet_tenants(args.links, series=1)
    document = fleet_scenario(tenants, linked=True)
    print(
        f"Seeding {args.links} links; latency: token {latency.token_ms:.0f} ms, ARM {latency.arm_ms:.0f} ms, "
        f"Table {latency.table_ms:.0f} ms; concurrency {', '.join(map(str, concurrencies))} "
        f"(host.json maxConcurrentCalls is {host_concurrency})",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="pal-bench-") as work, Azurite() as azurite:
        scenario_file = Path(work) / "scenario.json"
        scenario_file.write_text(json.dumps(document))
        sandbox = Sandbox(scenario_file, Path(work) / "cloud")
        try:
            arm_ms = latency.arm_ms  # role assignments are ARM too (the recognition check)
            for target, milliseconds in (
                ("token", latency.token_ms),
                ("arm", arm_ms),
                ("authorization", arm_ms),
            ):
                rule = {"target": target, "kind": "latency", "latencyMs": milliseconds}
                sandbox.admin("POST", "faults", {"tenantId": "*", "rule": rule})

            class Cloud:
                authority = arm_url = key_vault_url = power_platform_url = sandbox.ready["url"]
                ca_path = sandbox.ready["caPath"]
                identity_endpoint = sandbox.ready["identityEndpoint"]
                identity_header = sandbox.ready["identityHeader"]

            env = local_settings(
                Cloud(), azurite.connection_string, managed_identity_client_id=MI_CLIENT, ledger_table="Bench"
            )
            os.environ.update(env)
            sandbox.admin("POST", "reset-stats")
            nights = asyncio.run(reverify(env, tenants, concurrencies, latency.table_ms))
            stats = sandbox.admin("GET", "stats")
            peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

            sample = tenants[: args.baseline_links]
            baseline_seconds = asyncio.run(baseline(env, sample))
        finally:
            sandbox.stop()

    links = args.links
    tokens = stats["tokenRequests"]
    arm_calls = sum(sum(methods.values()) for methods in stats["armCalls"].values())
    baseline_per_link = baseline_seconds / len(sample)
    with_app, bare = cold_start()
    print(f"token requests per tenant     {sum(tokens.values()) / links / len(nights):.2f} a night")
    print(f"ARM calls per link            {arm_calls / links / len(nights):.2f} a night")
    print(f"peak RSS (this process)       {peak_rss_mb:.0f} MB")
    print(f"baseline ({len(sample)} links, one by one) {baseline_per_link * 1000:.0f} ms per link")
    print(
        f"cold start                    import function_app {with_app * 1000:.0f} ms, azure.functions "
        f"{bare * 1000:.0f} ms: +{(with_app - bare) * 1000:.0f} ms (median of 5 processes)"
    )
    for night in nights:
        print_night(night, links, latency, baseline_per_link)
    return 0


def print_night(night: dict[str, Any], links: int, latency: Latency, baseline_per_link: float) -> None:
    seconds, concurrency = night["seconds"], night["concurrency"]
    ideal = links * latency.per_link_ms / 1000 / concurrency
    rate = links / seconds
    print(f"{night['title']} at concurrency {concurrency}:")
    print(f"  outcomes                    {night['outcomes']}")
    print(f"  wall time                   {seconds:.1f} s, {rate:.0f} links/s")
    limit = f"limit {ideal:.1f} s, {links / ideal:.0f} links/s"
    print(f"  share of the latency limit  {ideal / seconds:.0%} ({limit})")
    print(f"  table requests per link     {night['tableRequests'] / links:.2f}")
    profiled = " (under cProfile: inflated, compare unprofiled runs)" if night["profiled"] else ""
    print(f"  CPU per link (this process) {night['cpuSeconds'] / links * 1000:.1f} ms{profiled}")
    print(f"  speed-up over the baseline  {baseline_per_link / (seconds / links):.0f}x")
    print(
        f"  projected per instance      10,000 links {10_000 / rate / 60:.1f} min, "
        f"100,000 links {100_000 / rate / 60:.1f} min"
    )


if __name__ == "__main__":
    sys.exit(main())
