"""Repair, opt-in, end to end: an operator audits Fabrikam through the local Functions host (the
broker, the Power Platform stand-ins of sandbox/scenarios/attribution.json with a few flows added),
then runs `palctl repair plan`, reviews the file, `palctl repair apply` and `palctl repair undo` as
subprocesses over real HTTP; the owners the stand-ins hold and the re-audit show what changed. The
repair routes' answers are checked against api/openapi.json, and no secret, bearer token or call
body is in any log, stored row or palctl output."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from sandbox.scenario import Scenario, load_scenario
from shared.links.service import get_service
from shared.repair.store import RepairLedger
from tenants import FABRIKAM, FABRIKAM_APP
from tests.test_http_api import Client, check_against_openapi
from tests.test_palctl_attribution import api_env, link
from tests.test_palctl_cli import CLEARED, plain
from tests.test_palctl_cli import palctl as run_palctl
from tests.test_repair import (
    ALEX,
    ATTRIBUTION_SCENARIO,
    LICENSED_FLOW,
    MEGAN,
    MEGANS_DATASET_PREFIX,
    PLAIN_FLOW,
    PREMIUM_FLOW,
    USER_APP,
    fabrikam_section,
)
from tests.test_sandbox_power_platform import APPS, FLOW, POWERAPPS, dataverse, fabrikam
from tests.traces import everything_logged, everything_stored

ORPHAN_APP = "37140a80-3d29-4dfc-ae04-4dae24867f84"  # "Old Timesheets": its owner is deleted
SITE_SURVEY = "89d642ac-88ee-4462-9b02-fba611730331"  # owned by Alex
ASSET_REGISTER = "227d7b0c-d1cd-4c60-b9f4-20dd563f48cf"  # a model-driven app Megan created
WEEKLY_DIGEST = "0a7dbd92-28e3-41ab-acb3-739f612c1162"  # a flow outside a solution
EXPENSE_APPROVALS = "d21fc4f8-23b3-4f40-8e18-451915357abb"  # Megan created it, our principal owns it
DEFAULT_ENV = f"Default-{FABRIKAM}"
PLAN_CSV_HEADER = (
    "customerTenantId,planId,changeId,product,kind,environmentId,resourceId,name,refused,reason,evidence,"
    "risk,beforeOwner,afterOwner,call,undo,undoable"
)
APPLY_CSV_HEADER = (
    "customerTenantId,applyId,planId,changeId,product,kind,environmentId,resourceId,name,status,reason,"
    "evidence,beforeOwner,afterOwner,attributedAfter,changedAt,undoneAt"
)
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(ATTRIBUTION_SCENARIO)


@pytest.fixture(autouse=True)
def no_palctl_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PALCTL_CONFIG", str(tmp_path / "palctl-config" / "config.toml"))


async def palctl(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m palctl ARGV`, piped, while this test's event loop goes on serving."""
    return await asyncio.to_thread(run_palctl, *argv, env=env)


async def audited(host: LocalFunctionsHost, cloud: CloudSandbox) -> dict[str, str]:
    """Fabrikam linked and audited through the host; palctl's environment."""
    cloud.install_power_platform(FABRIKAM, fabrikam_section())
    await link(
        await get_service(), FABRIKAM, FABRIKAM_APP, identity_type="secret", secret_name="fabrikam-pal-secret"
    )
    env = api_env(host)
    done = await palctl("audit", "--tenant", FABRIKAM, "--wait", "--timeout", "120", env=env)
    assert done.returncode == 0, done.stderr
    return env


def by_resource(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {change["resourceId"]: change for change in document["changes"]}


def canvas_owner(cloud: CloudSandbox, app_id: str) -> str:
    """The app's owner, as the Power Apps admin API shows it to Fabrikam's app."""
    url = APPS.format(env=DEFAULT_ENV) + "?api-version=2016-11-01"
    apps = [app for page in fabrikam(cloud).pages(url, POWERAPPS) for app in page["value"]]
    return str(next(app for app in apps if app["name"] == app_id)["properties"]["owner"]["id"])


def flow_of(cloud: CloudSandbox, flow_id: str) -> tuple[str, str, str]:
    """(owner, creator, state) of a solution-aware flow: Dataverse's systemusers and the Flow API's state."""
    app = fabrikam(cloud)
    status, _, row = app.get(*dataverse(cloud, DEFAULT_ENV, f"workflows({flow_id})"))
    assert status == 200, row
    admin = "/providers/Microsoft.ProcessSimple/scopes/admin/environments"
    status, _, detail = app.get(f"{admin}/{DEFAULT_ENV}/flows/{flow_id}?api-version=2016-11-01", FLOW)
    assert status == 200, detail
    return row["_ownerid_value"], row["_createdby_value"], detail["properties"]["state"]


async def findings(env: dict[str, str]) -> dict[str, str]:
    report = await palctl("attribution", "report", "--tenant", FABRIKAM, "-o", "json", env=env)
    assert report.returncode == 0, report.stderr
    return {f["resourceId"]: f["status"] for f in json.loads(report.stdout)["findings"]}


def clean(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text and "Bearer " not in text and not JWT.search(text)
        assert "client_secret" not in text and "AccountKey=" not in text


def plan_read(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The plan as an operator reviews it: each kind the scenario allows, refusals with reasons."""
    check_against_openapi("/repairs/{customerTenantId}/plan", "POST", 200, "application/json", plan)
    assert plan["customerTenantId"] == FABRIKAM and plan["includeUnverified"] is True
    changes = by_resource(plan)
    dataset = next(c for r, c in changes.items() if r.startswith(MEGANS_DATASET_PREFIX))
    assert (dataset["kind"], dataset["refused"], dataset["evidence"]) == (
        "power-bi-takeover",
        False,
        "verified",
    )
    assert "rebinding" in dataset["risk"] and dataset["undoable"] is False

    flow = changes[PLAIN_FLOW]
    assert (flow["kind"], flow["refused"], flow["evidence"]) == ("flow-owner", False, "inferred")
    assert "creator" in flow["risk"] and "not attributed" in flow["risk"]
    assert f"palctl deliver solution --tenant T --environment {DEFAULT_ENV}" in flow["risk"]
    assert flow["undoable"] is True and flow["call"].startswith("PATCH https://")
    premium = changes[PREMIUM_FLOW]
    assert premium["refused"] and "shared_sql" in premium["reason"] and "Process" in premium["reason"]
    assert changes[LICENSED_FLOW]["refused"] is False

    canvas = changes[USER_APP]
    assert (canvas["kind"], canvas["refused"], canvas["evidence"]) == ("canvas-app-owner", False, "inferred")
    assert canvas["beforeOwner"] == MEGAN and canvas["undoable"] is True and "UNVERIFIED" in canvas["risk"]
    orphan = changes[ORPHAN_APP]
    assert orphan["undoable"] is False and "UNDO MAY BE IMPOSSIBLE" in orphan["risk"]

    model_driven = changes[ASSET_REGISTER]
    assert (model_driven["kind"], model_driven["refused"]) == ("redeliver-solution", True)
    assert "palctl deliver solution" in model_driven["reason"]
    owned = changes[EXPENSE_APPROVALS]  # an owner change could not help: no no-op PATCH is planned
    assert (owned["kind"], owned["refused"], owned["call"]) == ("redeliver-solution", True, None)
    assert "already owns this flow" in owned["reason"] and "palctl deliver solution" in owned["reason"]
    outside = changes[WEEKLY_DIGEST]
    assert (outside["kind"], outside["refused"]) == ("not-repairable", True)
    assert "outside a solution" in outside["reason"]
    assert all(c["reason"] for c in plan["changes"] if c["refused"])
    return changes


async def test_an_operator_plans_reviews_applies_and_undoes_a_repair(
    host: LocalFunctionsHost,
    cloud: CloudSandbox,
    tmp_path: Path,
    all_logs: pytest.LogCaptureFixture,
    bus_env: dict[str, str],
) -> None:
    env = await audited(host, cloud)
    assert (await findings(env))[USER_APP] == "not-attributed"

    # The plan, through the HTTP API (checked against OpenAPI) and through palctl into a file.
    async with aiohttp.ClientSession() as http:
        client = Client(http, host.base_url)
        status, answer, _ = await client.call(
            "POST",
            "/repairs/{customerTenantId}/plan?includeUnverified=true",
            key=host.function_key,
            customerTenantId=FABRIKAM,
        )
    assert status == 200 and answer["includeUnverified"] is True
    planned = await palctl(
        "repair", "plan", "--tenant", FABRIKAM, "--include-unverified", "-o", "json", env=env
    )
    assert planned.returncode == 0, planned.stderr
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(planned.stdout, encoding="utf-8")
    plan = json.loads(planned.stdout)
    changes = plan_read(plan)
    assert {c["resourceId"] for c in plan["changes"]} == {c["resourceId"] for c in answer["changes"]}

    # For people: the risk (whether it earns credit), evidence, reasons and the undo warning.
    table = await palctl("repair", "plan", "--tenant", FABRIKAM, "--include-unverified", env=env)
    assert table.returncode == 0, table.stderr
    plain(table)
    flat = " ".join(table.stdout.split())
    assert "INFERRED CREDIT" in flat and "palctl deliver solution" in flat and "[inferred]" in flat
    assert "UNDO MAY BE IMPOSSIBLE" in flat and "undo: not possible by us" in flat
    assert "reason: Refused: the flow uses premium connectors (shared_sql)" in flat

    # CSV: real CSV, one row per change, the plan document's names.
    as_csv = await palctl(
        "repair", "plan", "--tenant", FABRIKAM, "--include-unverified", "-o", "csv", env=env
    )
    assert as_csv.returncode == 0, as_csv.stderr
    assert as_csv.stdout.splitlines()[0] == PLAN_CSV_HEADER
    rows = {row["resourceId"]: row for row in csv.DictReader(io.StringIO(as_csv.stdout))}
    assert len(rows) == len(changes)
    assert (rows[PREMIUM_FLOW]["refused"], rows[PLAIN_FLOW]["evidence"]) == ("true", "inferred")
    assert rows[ORPHAN_APP]["undoable"] == "false" and rows[USER_APP]["beforeOwner"] == MEGAN

    # Nothing is changed without --yes when there is no terminal to confirm on.
    refused = await palctl("repair", "apply", "--plan", str(plan_file), env=env)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert "--yes" in refused.stderr
    assert canvas_owner(cloud, USER_APP) == MEGAN
    assert await RepairLedger((await get_service()).ledger.table).applies(FABRIKAM) == []

    # Apply exactly the plan; the re-audit shows what changed.
    applied = await palctl("repair", "apply", "--plan", str(plan_file), "--yes", "-o", "json", env=env)
    assert applied.returncode == 0, applied.stderr
    result = json.loads(applied.stdout)
    check_against_openapi("/repairs/{customerTenantId}/apply", "POST", 200, "application/json", result)
    rows_after = by_resource(result)
    assert result["planId"] == plan["planId"] and result["audit"].startswith("re-audited ")
    for resource in (USER_APP, SITE_SURVEY, ORPHAN_APP):
        assert rows_after[resource]["status"] == "applied" and rows_after[resource]["attributedAfter"] is True
    dataset = next(r for r in rows_after if r.startswith(MEGANS_DATASET_PREFIX))
    assert rows_after[dataset]["status"] == "applied" and rows_after[dataset]["attributedAfter"] is True
    # The flow's owner changed, its creator did not: the audit still does not credit it, as planned.
    assert (
        rows_after[PLAIN_FLOW]["status"] == "applied" and rows_after[PLAIN_FLOW]["attributedAfter"] is False
    )
    owner, creator, _ = flow_of(cloud, PLAIN_FLOW)
    assert owner == changes[PLAIN_FLOW]["afterOwner"] != creator
    assert rows_after[PREMIUM_FLOW]["status"] == "refused" and flow_of(cloud, PREMIUM_FLOW)[2] == "Started"
    assert rows_after[ASSET_REGISTER]["status"] == "refused"
    assert canvas_owner(cloud, USER_APP) == changes[USER_APP]["afterOwner"]
    after = await findings(env)
    assert after[USER_APP] == after[SITE_SURVEY] == after[dataset] == "attributed"
    assert after[PLAIN_FLOW] == "not-attributed"

    async with aiohttp.ClientSession() as http:
        client = Client(http, host.base_url)
        status, stored, _ = await client.call(
            "GET",
            "/repairs/{customerTenantId}/{applyId}",
            key=host.function_key,
            customerTenantId=FABRIKAM,
            applyId=result["applyId"],
        )
    assert status == 200 and stored["counts"] == result["counts"] and stored["undoneAt"] is None

    # Undo: the previous owners back where the API allows.
    undone = await palctl("repair", "undo", "--plan", str(plan_file), "-o", "json", env=env)
    assert undone.returncode == 0, undone.stderr
    back = json.loads(undone.stdout)
    check_against_openapi("/repairs/{customerTenantId}/undo", "POST", 200, "application/json", back)
    statuses = {r: c["status"] for r, c in by_resource(back).items()}
    assert statuses[USER_APP] == statuses[SITE_SURVEY] == statuses[PLAIN_FLOW] == "undone"
    assert statuses[dataset] == "undo-refused"  # a takeover is the previous owner's to take back
    assert statuses[ORPHAN_APP] == "undo-failed"  # as the plan warned: its owner is gone
    assert back["undoneAt"] and back["applyId"] == result["applyId"]
    assert canvas_owner(cloud, USER_APP) == MEGAN and canvas_owner(cloud, SITE_SURVEY) == ALEX
    assert (await findings(env))[USER_APP] == "not-attributed"
    replanned = await palctl("repair", "plan", "--tenant", FABRIKAM, "-o", "json", env=env)
    assert (
        by_resource(json.loads(replanned.stdout))[PLAIN_FLOW]["beforeOwner"]
        == changes[PLAIN_FLOW]["beforeOwner"]
    )

    as_csv = await palctl(
        "repair", "undo", "--tenant", FABRIKAM, "--apply-id", result["applyId"], "-o", "csv", env=env
    )
    assert as_csv.returncode == 0, as_csv.stderr
    assert as_csv.stdout.splitlines()[0] == APPLY_CSV_HEADER
    assert len(list(csv.DictReader(io.StringIO(as_csv.stdout)))) == len(plan["changes"])

    secret = cloud.secret_value("fabrikam-pal-secret")
    outputs = (planned, table, applied, undone, refused)
    clean(secret, *(p.stdout + p.stderr for p in outputs), everything_logged(all_logs))
    clean(secret, await everything_stored(bus_env))


async def test_a_stale_plan_is_refused_per_change_and_bad_requests_get_problems(
    host: LocalFunctionsHost, cloud: CloudSandbox, tmp_path: Path
) -> None:
    env = await audited(host, cloud)
    planned = await palctl(
        "repair", "plan", "--tenant", FABRIKAM, "--include-unverified", "-o", "json", env=env
    )
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(planned.stdout, encoding="utf-8")
    plan = json.loads(planned.stdout)

    # Alex takes the app over in the customer's tenant after planning.
    section = fabrikam_section()
    app = next(a for a in section["environments"][0]["canvasApps"] if a["id"] == USER_APP)
    app.update(owner=ALEX, createdBy=ALEX, coOwners=[])
    cloud.install_power_platform(FABRIKAM, section)

    applied = await palctl("repair", "apply", "--plan", str(plan_file), "--yes", env=env)
    assert applied.returncode == 0, applied.stderr
    plain(applied)
    line = next(line for line in applied.stdout.splitlines() if "Expense Tracker" in line)
    assert " refused " in line
    assert "changed since planning: the owner is no longer the plan's before-owner" in applied.stdout
    assert canvas_owner(cloud, USER_APP) == ALEX
    site = by_resource(plan)[SITE_SURVEY]
    assert canvas_owner(cloud, SITE_SURVEY) == site["afterOwner"]

    # A plan whose afterOwner is not our service principal is refused per change, never applied.
    tampered = json.loads(planned.stdout)
    for change in tampered["changes"]:
        if change["resourceId"] == SITE_SURVEY:
            change["afterOwner"] = MEGAN
    async with aiohttp.ClientSession() as http:
        client = Client(http, host.base_url)
        key = host.function_key
        path = "/repairs/{customerTenantId}"
        status, answer, _ = await client.call(
            "POST", f"{path}/apply", key=key, body=tampered, customerTenantId=FABRIKAM
        )
        assert status == 200
        site = by_resource(answer)[SITE_SURVEY]
        assert site["status"] == "refused" and "not our service principal" in site["reason"]
        assert canvas_owner(cloud, SITE_SURVEY) != MEGAN

        bad = [
            ("POST", f"{path}/apply", {"raw": b"not json"}, 400),
            ("POST", f"{path}/apply", {"body": {**plan, "version": 2}}, 400),
            ("POST", f"{path}/undo", {"body": {"applyId": plan["planId"], "planId": plan["planId"]}}, 400),
            ("POST", f"{path}/undo", {"body": {"planId": "0f6e2c1a-2b3c-4d5e-8f90-112233445566"}}, 404),
            ("GET", f"{path}/{{applyId}}", {"applyId": "not-a-guid"}, 400),
            ("GET", f"{path}/{{applyId}}", {"applyId": "0f6e2c1a-2b3c-4d5e-8f90-112233445566"}, 404),
            ("GET", f"{path}/plan", {}, 405),
            ("POST", f"{path}/plan?includeUnverified=yes", {}, 400),
        ]
        for method, template, extra, expected in bad:
            status, problem, headers = await client.call(
                method, template, key=key, customerTenantId=FABRIKAM, **extra
            )
            assert status == expected, (template, problem)
            assert headers["Content-Type"].startswith("application/problem+json")
        status, problem, _ = await client.call(
            "POST", f"{path}/plan", key=key, customerTenantId="0f6e2c1a-2b3c-4d5e-8f90-112233445566"
        )
        assert status == 404 and problem["title"] == "Not linked"
