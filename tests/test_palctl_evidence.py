"""`palctl evidence` against the local Functions host: one customer, every customer (paged through
`GET /api/links`), and the CSV for an incentive dispute."""

from __future__ import annotations

import asyncio
import csv
import json
from datetime import UTC, datetime
from pathlib import Path

from test_palctl_attribution import api_env, link
from test_palctl_cli import palctl

from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from shared.links.reverify import verify_now
from shared.links.runs import RunSummary
from shared.links.service import LinkService, get_service
from tenants import FEDERATED_APP, NORTHWIND, TAILSPIN

NORTHWIND_OID = "d87199a7-f53b-4dd6-813d-019f7547bffb"


async def nights(service: LinkService, *run_ids: str) -> None:
    """Complete nightly runs over every recorded link, as the timer's runs would record them."""
    for run_id in run_ids:
        started = datetime.now(UTC)
        await service.ledger.runs.create(run_id, total=2, started_at=started)
        for tenant in (NORTHWIND, TAILSPIN):
            for state in await service.ledger.link_states(tenant):
                await verify_now(service, state, run_id)
        await service.ledger.runs.finish(run_id, RunSummary(datetime.now(UTC), 0.1, True, {"verified": 2}))


async def test_evidence_for_one_customer_and_every_customer_with_a_csv(
    host: LocalFunctionsHost, cloud: CloudSandbox, tmp_path: Path
) -> None:
    start = datetime.now(UTC).isoformat()
    service = await get_service()
    await link(service, NORTHWIND, FEDERATED_APP)
    await link(service, TAILSPIN, FEDERATED_APP)
    await nights(service, "2030-02-01", "2030-02-02")
    cloud.delete_link(NORTHWIND, NORTHWIND_OID)
    await nights(service, "2030-02-03")
    env = api_env(host)

    one = await asyncio.to_thread(
        palctl, "evidence", "--tenant", TAILSPIN, "--from", start, "-o", "json", env=env
    )
    assert one.returncode == 0, one.stderr
    rows = json.loads(one.stdout)["rows"]
    assert {(row["customerTenantId"], row["kind"]) for row in rows} >= {(TAILSPIN, "linked")}
    assert [row["reason"] for row in rows if row["kind"] == "gap"] == ["not-onboarded"]

    exported = tmp_path / "evidence.csv"
    every = await asyncio.to_thread(palctl, "evidence", "--from", start, "--csv", str(exported), env=env)
    assert every.returncode == 0, every.stderr
    assert (
        f"{NORTHWIND} {FEDERATED_APP}: NOT linked throughout: 2 gap(s) (not-onboarded, removed)"
        in every.stdout
    )
    assert every.stderr.startswith("palctl: wrote ")
    with exported.open(encoding="utf-8-sig", newline="") as stream:
        written = list(csv.DictReader(stream))
    gaps = [(row["customerTenantId"], row["reason"]) for row in written if row["kind"] == "gap"]
    assert (NORTHWIND, "removed") in gaps and (TAILSPIN, "removed") not in gaps

    refused = await asyncio.to_thread(palctl, "evidence", "--tenant", NORTHWIND, "--from", "soon", env=env)
    assert refused.returncode == 1 and "from: not an ISO 8601 date or date-time" in refused.stderr
