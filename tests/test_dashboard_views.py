"""The dashboard's customer view complete, the fleet's trends and changes, attribution coverage and the
name search, through the local host and checked against api/openapi.json (tests/test_dashboard.py
has the sign-in, the browser and the fixtures these reuse)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import test_dashboard
from test_dashboard import OPERATOR, READER, data, seed_fleet, sign_in

from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from shared.attribution.findings import Finding, FindingStatus
from shared.attribution.rows import Tally
from shared.attribution.rules import Product
from shared.attribution.store import AttributionLedger
from shared.links.reverify import verify_message
from shared.links.runs import RunSummary
from shared.links.service import LinkService, get_service
from shared.links.user_api import UserLinksApi
from shared.spine.envelope import Source
from tenants import FEDERATED_APP, NORTHWIND, NORTHWIND_UPN, NORTHWIND_USER, PARTNER_ID, TAILSPIN

# The fixtures of tests/test_dashboard.py: its scenario (with the partner's tenant) and its host.
scenario = test_dashboard.scenario
dashboard_host = test_dashboard.dashboard_host

ACTOR = f"Megan Bowen ({OPERATOR['objectId']})"


async def seed_user_account(service: LinkService) -> None:
    """Northwind's service account, linked by palctl (a user account: identityType user)."""
    record = {
        "action": "link",
        "userPrincipalName": NORTHWIND_UPN,
        "outcome": "linked",
        "partnerId": PARTNER_ID,
        "linkedPartnerId": PARTNER_ID,
    }
    answer = await UserLinksApi.of(service).record(NORTHWIND, NORTHWIND_USER, json.dumps(record).encode())
    assert answer.status == 200, answer.body


async def seed_runs(service: LinkService) -> None:
    """Two nightly runs: the second verifies every link (its events are what changed)."""
    runs, start = service.ledger.runs, datetime.now(UTC) - timedelta(days=1)
    await runs.create("2026-11-24", total=3, started_at=start - timedelta(days=1))
    counts = {"linked": 2, "needs-customer-action": 1}
    await runs.finish("2026-11-24", RunSummary(start - timedelta(days=1), 5.0, True, counts))
    await runs.create("2026-11-25", total=3, started_at=start)
    for state in [s async for s in service.ledger.all_link_states()]:
        message = verify_message(state, "2026-11-25")
        if message is None:
            continue
        await service.handle(
            message.body,
            message_id=message.message_id,
            properties=dict(message.properties),
            source=Source.VERIFY,
        )
    counts = {"verified": 2, "needs-customer-action": 1}
    await runs.finish("2026-11-25", RunSummary(start, 6.0, True, counts))


async def seed_audits(service: LinkService) -> None:
    """Northwind audited twice: every app attributed, then one lost (coverage dropped)."""
    ledger = AttributionLedger(service.ledger.table)
    env = "env-northwind"

    def findings(second_status: FindingStatus) -> list[Finding]:
        return [
            Finding(Product.CANVAS_APP, env, "app-1", "Expenses", FindingStatus.ATTRIBUTED),
            Finding(
                Product.CANVAS_APP,
                env,
                "app-2",
                "Timesheets",
                second_status,
                ("someone@northwind.example",) if second_status is FindingStatus.NOT_ATTRIBUTED else (),
                "make the linked identity an owner"
                if second_status is FindingStatus.NOT_ATTRIBUTED
                else None,
            ),
            Finding(Product.CLOUD_FLOW, env, "flow-1", "Approvals", FindingStatus.UNKNOWN),
        ]

    for number, status in ((1, FindingStatus.ATTRIBUTED), (2, FindingStatus.NOT_ATTRIBUTED)):
        now = datetime.now(UTC) - timedelta(hours=10 - number)
        run_id = f"audit-{number}"
        found = findings(status)
        assert await ledger.start_run(NORTHWIND, run_id, [env], now)
        await ledger.write_unit(NORTHWIND, env, run_id, found, now)
        assert await ledger.finish_unit(NORTHWIND, run_id, env, Tally().add(found), {}, now) is not None


async def test_the_customer_view_its_actions_and_who_did_them(
    dashboard_host: LocalFunctionsHost, cloud: CloudSandbox
) -> None:
    await seed_fleet()
    service = await get_service()
    await seed_user_account(service)
    await seed_audits(service)
    operator = await sign_in(cloud, OPERATOR["userPrincipalName"])
    reader = await sign_in(cloud, READER["userPrincipalName"])
    host = dashboard_host
    customer_routes = [
        ("GET", "/dashboard/data/customers/{customerTenantId}/live"),
        ("GET", "/dashboard/data/customers/{customerTenantId}/attribution"),
        ("POST", "/dashboard/data/customers/{customerTenantId}/audit"),
        ("POST", "/dashboard/data/customers/{customerTenantId}/offboard"),
        ("GET", "/dashboard/data/trends"),
        ("GET", "/dashboard/data/attribution"),
    ]
    async with aiohttp.ClientSession() as http:
        for method, template in customer_routes:
            status, _, headers = await data(http, host, method, template, None, customerTenantId=NORTHWIND)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), template

        # Identities: the service principal and the user account, with their types.
        status, customer, _ = await data(
            http,
            host,
            "GET",
            "/dashboard/data/customers/{customerTenantId}",
            reader,
            customerTenantId=NORTHWIND,
        )
        assert status == 200 and customer["actions"] == []
        types = {(link["identityType"], link.get("userPrincipalName")) for link in customer["links"]}
        assert types == {("federated", None), ("user", NORTHWIND_UPN)}

        # The live state: read as each identity (a user account is not signed in as, and says so).
        status, live, _ = await data(
            http,
            host,
            "GET",
            "/dashboard/data/customers/{customerTenantId}/live",
            reader,
            customerTenantId=NORTHWIND,
        )
        assert status == 200
        by_client = {identity["clientId"]: identity for identity in live["identities"]}
        assert by_client[FEDERATED_APP]["azure"]["linked"] and by_client[FEDERATED_APP]["inStep"]
        user = next(i for i in live["identities"] if i["clientId"] != FEDERATED_APP)
        assert user["azure"]["error"]["code"] == "user-sign-in-required"

        # Attribution: coverage per product and the findings with who holds them.
        status, attribution, _ = await data(
            http,
            host,
            "GET",
            "/dashboard/data/customers/{customerTenantId}/attribution?status=not-attributed",
            reader,
            customerTenantId=NORTHWIND,
        )
        assert status == 200 and attribution["audited"] and attribution["run"]["runId"] == "audit-2"
        assert attribution["run"]["counts"]["canvas-app"] == {"attributed": 1, "not-attributed": 1}
        assert [(f["name"], f["attributedTo"]) for f in attribution["findings"]] == [
            ("Timesheets", ["someone@northwind.example"])
        ]
        status, none, _ = await data(
            http,
            host,
            "GET",
            "/dashboard/data/customers/{customerTenantId}/attribution",
            reader,
            customerTenantId=TAILSPIN,
        )
        assert (status, none["audited"], none["findings"]) == (200, False, [])

        # A reader is refused each action: nothing done, nothing recorded.
        for action in ("relink", "audit", "offboard"):
            status, refused, _ = await data(
                http,
                host,
                "POST",
                "/dashboard/data/customers/{customerTenantId}/" + action,
                reader,
                customerTenantId=NORTHWIND,
            )
            assert status == 403 and "PalAutopilot.Operator" in refused["detail"], action

        # Audit now and offboard, as the operator: each records the operator.
        status, audit, _ = await data(
            http,
            host,
            "POST",
            "/dashboard/data/customers/{customerTenantId}/audit",
            operator,
            customerTenantId=NORTHWIND,
        )
        assert status == 202 and audit["actor"] == ACTOR and audit["runId"].startswith("manual-")
        status, offboarded, _ = await _offboard(http, host, operator, NORTHWIND, FEDERATED_APP)
        assert status == 200 and (offboarded["outcome"], offboarded["actor"]) == ("unlinked", ACTOR)

        status, customer, _ = await data(
            http,
            host,
            "GET",
            "/dashboard/data/customers/{customerTenantId}",
            reader,
            customerTenantId=NORTHWIND,
        )
        assert [(a["source"], a["outcome"], a["actor"], a["runId"]) for a in customer["actions"]] == [
            ("audit", "requested", ACTOR, audit["runId"])
        ]
        offboardings = [event for event in customer["history"] if event["source"] == "offboarding"]
        assert [(event["outcome"], event.get("actor")) for event in offboardings] == [("unlinked", ACTOR)]
        assert all(
            event.get("actor") is None for event in customer["history"] if event["source"] == "onboarding"
        )


async def _offboard(
    http: aiohttp.ClientSession, host: LocalFunctionsHost, token: str, tenant: str, client_id: str
) -> tuple[int, Any, dict[str, str]]:
    """The offboard with a body naming the identity (two are recorded: the user account too)."""
    from test_http_api import check_against_openapi

    template = "/dashboard/data/customers/{customerTenantId}/offboard"
    async with http.post(
        host.base_url + "/api" + template.format(customerTenantId=tenant),
        headers={"Authorization": f"Bearer {token}"},
        json={"clientId": client_id},
    ) as response:
        payload = await response.json(content_type=None)
        check_against_openapi(template, "POST", response.status, response.headers["Content-Type"], payload)
        return response.status, payload, dict(response.headers)


async def test_the_fleet_trends_what_changed_and_coverage_drops(
    dashboard_host: LocalFunctionsHost, cloud: CloudSandbox
) -> None:
    await seed_fleet()
    service = await get_service()
    await seed_runs(service)
    await seed_audits(service)
    reader = await sign_in(cloud, READER["userPrincipalName"])
    async with aiohttp.ClientSession() as http:
        status, trends, _ = await data(http, dashboard_host, "GET", "/dashboard/data/trends", reader)
        assert status == 200
        assert [run["runId"] for run in trends["runs"]] == ["2026-11-24", "2026-11-25"]
        assert (trends["latestRunId"], trends["previousRunId"]) == ("2026-11-25", "2026-11-24")
        assert trends["differences"] == {"linked": -2, "verified": 2}
        changed = {item["customerTenantId"]: item for item in trends["changed"]}
        assert set(changed) == {NORTHWIND, TAILSPIN} and not trends["moreChanged"]  # Woodgrove: the same
        assert (changed[NORTHWIND]["previousOutcome"], changed[NORTHWIND]["outcome"]) == (
            "linked",
            "verified",
        )
        assert changed[TAILSPIN]["customerName"] == "Tailspin Toys"

        status, coverage, _ = await data(http, dashboard_host, "GET", "/dashboard/data/attribution", reader)
        assert status == 200 and (coverage["audited"], coverage["dropped"]) == (1, 1)
        (northwind,) = coverage["customers"]
        assert (northwind["customerTenantId"], northwind["dropped"]) == (NORTHWIND, True)
        assert (northwind["coverage"], northwind["previousCoverage"]) == (0.5, 1.0)
        assert northwind["byProduct"]["canvas-app"] == {"attributed": 1, "notAttributed": 1, "unknown": 0}
        assert northwind["byProduct"]["cloud-flow"] == {"attributed": 0, "notAttributed": 0, "unknown": 1}


NAMES = ("Contoso", "Contoso Pharma", "contoso lower", "Fabrikam", "Northwind Traders")


async def write_link_states(service: LinkService, count: int) -> None:
    """`count` link states of made-up customers (names cycling through NAMES with a number), written
    straight to the ledger's table, fifty at a time."""
    client = await service.ledger.table.ready()
    now = datetime.now(UTC)

    async def one(number: int) -> None:
        tenant = f"00000000-0000-4000-8000-{number:012d}"
        await client.create_entity(
            {
                "PartitionKey": tenant,
                "RowKey": f"link~{FEDERATED_APP}",
                "CustomerTenantId": tenant,
                "ClientId": FEDERATED_APP,
                "IdentityType": "federated",
                "CustomerName": f"{NAMES[number % len(NAMES)]} {number:05d}",
                "PartnerId": PARTNER_ID,
                "LinkedPartnerId": PARTNER_ID,
                "Outcome": "linked" if number % 7 else "needs-customer-action",
                "Reason": "seeded",
                "LastCheckedAt": now,
            }
        )

    for start in range(0, count, 50):
        await asyncio.gather(*(one(n) for n in range(start, min(count, start + 50))))


async def test_the_name_search_is_a_server_side_prefix_paged(
    dashboard_host: LocalFunctionsHost, cloud: CloudSandbox
) -> None:
    service = await get_service()
    await write_link_states(service, 2000)
    reader = await sign_in(cloud, READER["userPrincipalName"])
    async with aiohttp.ClientSession() as http:
        found: list[dict[str, Any]] = []
        query = "/dashboard/data/links?name=Contoso%20Pharma&top=100"
        while True:
            status, page, _ = await data(http, dashboard_host, "GET", query, reader)
            assert status == 200, page
            found += page["items"]
            if not page["continuationToken"]:
                break
            query = "/dashboard/data/links?name=Contoso%20Pharma&top=100&continuationToken={token}"
            query = query.replace("{token}", page["continuationToken"])
        assert len(found) == 400 and all(item["customerName"].startswith("Contoso Pharma") for item in found)

        status, page, _ = await data(
            http,
            dashboard_host,
            "GET",
            "/dashboard/data/links?name=Cont&outcome=needs-customer-action",
            reader,
        )
        names = [item["customerName"] for item in page["items"]]
        assert status == 200 and names and all(n.startswith("Contoso") for n in names)  # case-sensitive
        assert all(item["outcome"] == "needs-customer-action" for item in page["items"])

        status, page, _ = await data(http, dashboard_host, "GET", "/dashboard/data/links?name=Zzz", reader)
        assert (status, page["items"], page["continuationToken"]) == (200, [], None)
        for query, detail in (
            ("/dashboard/data/links?name=Contoso&tenant=" + NORTHWIND, "tenant, name"),
            ("/dashboard/data/links?name=" + "x" * 65, "name:"),
        ):
            status, bad, _ = await data(http, dashboard_host, "GET", query, reader)
            assert status == 400 and bad["detail"].startswith(detail), bad


# ---- in the browser --------------------------------------------------------------------------------

chrome = test_dashboard.chrome


def _confirm(driver: Any, action: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait = test_dashboard._wait  # noqa: SLF001 - the shared wait
    wait(driver, ec.element_to_be_clickable((By.ID, action))).click()
    wait(driver, lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
    driver.find_element(By.ID, "confirm-ok").click()
    wait(driver, lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is None)


def _first_history_row(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    cells = driver.find_elements(By.CSS_SELECTOR, "#history tbody tr:first-child td")
    return [cell.text for cell in cells]


def _operator_complete_session(driver: Any, host: LocalFunctionsHost, tmp_path: Any) -> dict[str, Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait = test_dashboard._wait  # noqa: SLF001 - the shared wait
    seen: dict[str, Any] = {}
    test_dashboard._sign_in_and_see_the_fleet(driver, host, OPERATOR["userPrincipalName"])  # noqa: SLF001
    bars = driver.find_elements(By.CSS_SELECTOR, "#trend g.run")
    seen["bars"] = [bar.get_attribute("data-run") for bar in bars]
    seen["differences"] = {
        tile.get_attribute("data-outcome"): tile.find_element(By.TAG_NAME, "strong").text
        for tile in driver.find_elements(By.CSS_SELECTOR, "#differences li[data-outcome]")
    }
    seen["dropped"] = [
        row.find_element(By.TAG_NAME, "button").get_attribute("data-tenant")
        for row in driver.find_elements(By.CSS_SELECTOR, "#attribution-fleet tbody tr.dropped")
    ]
    seen["fleet"] = test_dashboard.screenshot(driver, tmp_path, "dashboard-fleet-trends")

    # The name search as one types (debounced, server-side).
    driver.find_element(By.ID, "tenant").send_keys("Northw")
    wait(
        driver,
        lambda d: (
            [b.get_attribute("data-tenant") for b in d.find_elements(By.CSS_SELECTOR, "#links tbody button")]
            == [NORTHWIND]
        ),
    )
    driver.find_element(By.CSS_SELECTOR, f'#links tbody button[data-tenant="{NORTHWIND}"]').click()
    wait(driver, ec.visibility_of_element_located((By.ID, "customer")))
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#findings tbody tr"))
    seen["findings"] = [
        [cell.text for cell in tr.find_elements(By.TAG_NAME, "td")]
        for tr in driver.find_elements(By.CSS_SELECTOR, "#findings tbody tr")
    ]
    seen["products"] = [
        tile.get_attribute("data-product")
        for tile in driver.find_elements(By.CSS_SELECTOR, "#customer-coverage li")
    ]
    driver.find_element(By.ID, "read-live").click()
    wait(driver, ec.visibility_of_element_located((By.ID, "live")))
    seen["live"] = [
        [cell.text for cell in tr.find_elements(By.TAG_NAME, "td")]
        for tr in driver.find_elements(By.CSS_SELECTOR, "#live tbody tr")
    ]

    _confirm(driver, "audit")
    wait(driver, lambda d: d.find_element(By.ID, "action-result").text.startswith("Audit queued: manual-"))
    seen["audit"] = wait(driver, _first_history_row)
    _confirm(driver, "offboard")
    wait(driver, lambda d: d.find_element(By.ID, "action-result").text.startswith("Offboarded: unlinked"))
    seen["offboard"] = wait(driver, _first_history_row)
    seen["customer"] = test_dashboard.screenshot(driver, tmp_path, "dashboard-customer-complete")
    driver.set_window_size(390, 844)
    seen["phone"] = test_dashboard.screenshot(driver, tmp_path, "dashboard-customer-complete-phone")
    test_dashboard._no_csp_violation(driver)  # noqa: SLF001
    return seen


@test_dashboard.browser
async def test_an_operator_sees_trends_searches_by_name_reads_azure_audits_and_offboards(
    dashboard_host: LocalFunctionsHost, chrome: Any, tmp_path: Any
) -> None:
    await seed_fleet()
    service = await get_service()
    await seed_runs(service)
    await seed_audits(service)
    seen = await asyncio.to_thread(_operator_complete_session, chrome, dashboard_host, tmp_path)
    assert seen["bars"] == ["2026-11-24", "2026-11-25"]
    assert seen["differences"] == {"linked": "-2", "verified": "+2"}
    assert seen["dropped"] == [NORTHWIND]
    assert seen["products"] == ["canvas-app", "cloud-flow"]
    assert ["canvas-app", "Timesheets", "not-attributed", "someone@northwind.example"] in [
        row[:4] for row in seen["findings"]
    ]
    assert seen["live"][0][0] == FEDERATED_APP and seen["live"][0][3] == "in step"
    _, source, outcome, actor, _ = seen["audit"]
    assert (source, outcome, actor) == ("audit", "requested", ACTOR)
    _, source, outcome, actor, _ = seen["offboard"]
    assert (source, outcome, actor) == ("offboarding", "unlinked", ACTOR)
    for name in ("fleet", "customer", "phone"):
        assert seen[name].stat().st_size > 1000
