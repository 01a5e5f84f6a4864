"""The operators' dashboard: Entra ID sign-in (the authorization code flow with PKCE against the
sandbox's Entra ID), the app's own token validation, the JSON data behind it, and a real headless
Chromium driving the page against the local Functions host.

The scenario is the demo's, whose partner tenant has users holding the dashboard's app roles on the
partner's app registration (an operator and a reader), plus an account with no role.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import shutil
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from test_http_api import KEY, Client, check_against_openapi

from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from sandbox.scenario import Scenario
from shared.dashboard.auth import DashboardSettings, Refused, Role, TokenValidator
from shared.dashboard.page import MODULES, STATIC_FILES, static_file
from shared.links.service import get_service, reset_service
from shared.spine.envelope import Source
from tenants import DEMO_SCENARIO, FEDERATED_APP, NORTHWIND, ROOT, TAILSPIN, WOODGROVE, onboarding_message

PARTNER_TENANT = "06a9217b-0248-4057-ba46-05be61101c37"
DASHBOARD_APP = FEDERATED_APP  # the partner's app registration carries the dashboard's app roles
OPERATOR: dict[str, Any] = {
    "objectId": "5b0f3f7e-8a53-4bd4-9d3a-7c0d2f1e6a11",
    "userPrincipalName": "megan@contoso.example",
    "displayName": "Megan Bowen",
    "roles": ["PalAutopilot.Operator"],
}
READER: dict[str, Any] = {
    "objectId": "7c2d4e6f-1a3b-4c5d-8e9f-0a1b2c3d4e5f",
    "userPrincipalName": "adele@contoso.example",
    "displayName": "Adele Vance",
    "roles": ["PalAutopilot.Reader"],
}
NOBODY: dict[str, Any] = {
    "objectId": "9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a",
    "userPrincipalName": "guest@contoso.example",
    "displayName": "Guest",
}
REDIRECT = "http://127.0.0.1:7071/api/dashboard"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SCREENSHOTS = ROOT / ".sandbox" / "screenshots"


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    document = json.loads(DEMO_SCENARIO.read_text())
    (partner,) = [tenant for tenant in document["tenants"] if tenant["tenantId"] == PARTNER_TENANT]
    assert partner["users"] == [OPERATOR, READER]  # the demo's (make run ARGS=--serve)
    partner["users"].append(NOBODY)
    return Scenario.from_dict(document)


def dashboard_env(cloud: CloudSandbox) -> dict[str, str]:
    return {
        "AZURE_AUTHORITY_HOST": cloud.authority,
        "ARM_ENDPOINT": cloud.arm_url,
        "ARM_AUDIENCE": "https://management.azure.com",
        "ALLOW_CUSTOM_ENDPOINTS": "true",
        "PAL_CA_BUNDLE": str(cloud.ca_path),
        "DASHBOARD_TENANT_ID": PARTNER_TENANT,
        "DASHBOARD_CLIENT_ID": DASHBOARD_APP,
    }


def _ssl(cloud: CloudSandbox) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cloud.ca_path))


async def sign_in(
    cloud: CloudSandbox, user: str, *, tenant: str = PARTNER_TENANT, verifier: str | None = None
) -> str:
    """The browser's flow without a browser: authorize with a login hint, redeem the code with PKCE."""
    verifier = verifier or secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    scope = f"api://{DASHBOARD_APP}/.default openid profile"
    query = {
        "client_id": DASHBOARD_APP,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "s1",
        "nonce": "n1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "login_hint": user,
    }
    authority = f"{cloud.authority}/{tenant}/oauth2/v2.0"
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{authority}/authorize?{urlencode(query)}", allow_redirects=False, ssl=_ssl(cloud)
        ) as answer:
            assert answer.status == 302, await answer.text()
            location = urlsplit(answer.headers["Location"])
        returned = parse_qs(location.query)
        assert location.path == "/api/dashboard" and returned["state"] == ["s1"]
        form = {
            "grant_type": "authorization_code",
            "client_id": DASHBOARD_APP,
            "code": returned["code"][0],
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "scope": scope,
        }
        async with http.post(
            f"{authority}/token", data=form, ssl=_ssl(cloud), headers={"Origin": "http://127.0.0.1:7071"}
        ) as answer:
            tokens = await answer.json()
            assert answer.status == 200, tokens
            assert answer.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:7071"
    return str(tokens["access_token"])


def validator_for(cloud: CloudSandbox) -> TokenValidator:
    return TokenValidator(DashboardSettings.from_env(dashboard_env(cloud)))


async def refusal(validator: TokenValidator, authorization: str | None, role: Role = Role.READER) -> Refused:
    with pytest.raises(Refused) as refused:
        await validator.operator(authorization, role)
    return refused.value


# ---- token validation, with tokens the sandbox issues -----------------------------------------------


async def test_an_operator_and_a_reader_signed_in_by_the_sandbox_are_accepted(cloud: CloudSandbox) -> None:
    validator = validator_for(cloud)
    operator = await validator.operator(f"Bearer {await sign_in(cloud, OPERATOR['userPrincipalName'])}")
    assert (operator.object_id, operator.name, operator.can_act) == (
        OPERATOR["objectId"],
        "Megan Bowen",
        True,
    )
    await validator.operator(f"Bearer {await sign_in(cloud, OPERATOR['objectId'])}", Role.OPERATOR)

    reader_token = await sign_in(cloud, READER["userPrincipalName"])
    reader = await validator.operator(f"Bearer {reader_token}")
    assert (reader.name, reader.can_see, reader.can_act) == ("Adele Vance", True, False)
    refused = await refusal(validator, f"Bearer {reader_token}", Role.OPERATOR)
    assert refused.response.status == 403 and "PalAutopilot.Operator" in refused.response.body["detail"]  # type: ignore[index]
    assert reader_token not in json.dumps(refused.response.body)


async def test_an_account_without_an_app_role_is_forbidden(cloud: CloudSandbox) -> None:
    token = await sign_in(cloud, NOBODY["userPrincipalName"])
    refused = await refusal(validator_for(cloud), f"Bearer {token}")
    assert refused.response.status == 403
    assert "WWW-Authenticate" not in refused.response.headers


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", None),
        ("not-bearer", "Authorization: Bearer"),
        ("garbage", "not a JWT"),
        ("wrong-issuer", "another issuer"),
        ("wrong-audience", "another audience"),
        ("expired", "expired"),
        ("bad-signature", "signature does not verify"),
        ("other-tenant", "another issuer"),
    ],
)
async def test_bad_tokens_are_refused_with_401_and_a_bearer_challenge(
    cloud: CloudSandbox, case: str, reason: str | None
) -> None:
    v2_issuer = f"{cloud.authority}/{PARTNER_TENANT}/v2.0"
    oid = OPERATOR["objectId"]
    good = await sign_in(cloud, OPERATOR["userPrincipalName"])
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["PalAutopilot.Operator", "Everything"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    authorizations: dict[str, str | None] = {
        "missing": None,
        "not-bearer": f"Basic {good}",
        "garbage": "Bearer not.a.token",
        "wrong-issuer": "Bearer "
        + cloud.issue_token(PARTNER_TENANT, oid, DASHBOARD_APP, issuer="https://sts.example/v2.0"),
        "wrong-audience": "Bearer "
        + cloud.issue_token(PARTNER_TENANT, oid, "https://management.azure.com", issuer=v2_issuer),
        "expired": "Bearer "
        + cloud.issue_token(PARTNER_TENANT, oid, DASHBOARD_APP, issuer=v2_issuer, lifetime_seconds=-600),
        "bad-signature": f"Bearer {header}.{forged}.{signature}",
        "other-tenant": f"Bearer {await sign_in(cloud, 'pal-service@northwind.example', tenant=NORTHWIND)}",
    }
    refused = await refusal(validator_for(cloud), authorizations[case])
    response = refused.response
    assert response.status == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    if reason is None:
        assert "error=" not in challenge
    else:
        assert 'error="invalid_token"' in challenge and reason in response.body["detail"]  # type: ignore[index]
    assert good not in json.dumps(response.body) + challenge


async def test_the_keys_are_fetched_once_and_again_only_for_an_unknown_key(cloud: CloudSandbox) -> None:
    fetched: list[str] = []
    settings = DashboardSettings.from_env(dashboard_env(cloud))
    real = TokenValidator(settings)

    async def counting(url: str) -> dict[str, Any]:
        fetched.append(url)
        return await real._fetch(url)  # noqa: SLF001 - the real HTTPS fetch, counted

    validator = TokenValidator(settings, fetch=counting)
    token = await sign_in(cloud, READER["userPrincipalName"])
    for _ in range(3):
        await validator.operator(f"Bearer {token}")
    assert [url.rsplit("/", 1)[-1] for url in fetched] == ["openid-configuration", "keys"]
    header, _, _ = token.partition(".")
    unknown_kid = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "kid": "rolled"}).encode()).decode()
    await refusal(validator, f"Bearer {unknown_kid.rstrip('=')}.{token.split('.', 1)[1]}")
    assert len(fetched) == 2  # refetched at most once a minute, not for every stranger's kid


async def test_the_sandbox_refuses_a_wrong_verifier_and_a_used_code(cloud: CloudSandbox) -> None:
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    query = {
        "client_id": DASHBOARD_APP,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": f"api://{DASHBOARD_APP}/.default openid",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "login_hint": OPERATOR["userPrincipalName"],
    }
    authority = f"{cloud.authority}/{PARTNER_TENANT}/oauth2/v2.0"
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{authority}/authorize?{urlencode(query)}", allow_redirects=False, ssl=_ssl(cloud)
        ) as a:
            code = parse_qs(urlsplit(a.headers["Location"]).query)["code"][0]
        form = {
            "grant_type": "authorization_code",
            "client_id": DASHBOARD_APP,
            "code": code,
            "redirect_uri": REDIRECT,
        }
        async with http.post(
            f"{authority}/token", data=form | {"code_verifier": "wrong"}, ssl=_ssl(cloud)
        ) as a:
            assert a.status == 400 and "PKCE" in (await a.json())["error_description"]
        async with http.post(
            f"{authority}/token", data=form | {"code_verifier": verifier}, ssl=_ssl(cloud)
        ) as a:
            assert a.status == 400 and (await a.json())["error"] == "invalid_grant"  # a code is used once
        without_hint = {k: v for k, v in query.items() if k != "login_hint"}
        async with http.get(f"{authority}/authorize?{urlencode(without_hint)}", ssl=_ssl(cloud)) as a:
            page = await a.text()
            assert a.status == 200 and "Megan Bowen" in page and "PalAutopilot.Operator" in page


# ---- the data API through the local host -----------------------------------------------------------


@pytest.fixture
async def dashboard_host(
    bus_env: dict[str, str], cloud: CloudSandbox, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[LocalFunctionsHost]:
    settings = bus_env | {
        "DASHBOARD_TENANT_ID": PARTNER_TENANT,
        "DASHBOARD_CLIENT_ID": DASHBOARD_APP,
    }
    for name in ("DASHBOARD_TENANT_ID", "DASHBOARD_CLIENT_ID"):
        monkeypatch.setenv(name, settings[name])
    await reset_service()
    host = LocalFunctionsHost(settings=settings, function_key=KEY)
    await host.start()
    yield host
    await host.stop(grace_seconds=5)
    await reset_service()


async def seed_fleet() -> None:
    """Northwind linked, Tailspin already linked, Woodgrove waiting for admin consent (the service)."""
    service = await get_service()
    names = {NORTHWIND: "Northwind Traders", TAILSPIN: "Tailspin Toys", WOODGROVE: "Woodgrove Bank"}
    for tenant in (NORTHWIND, TAILSPIN, WOODGROVE):
        body = json.dumps(onboarding_message(tenant, customerName=names[tenant])).encode()
        await service.handle(body, message_id=f"onboard-{tenant}", properties={}, source=Source.ONBOARDING)


async def data(
    http: aiohttp.ClientSession,
    host: LocalFunctionsHost,
    method: str,
    template: str,
    token: str | None,
    **path: str,
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = host.base_url + "/api" + template.format(**path)
    async with http.request(method, url, headers=headers) as response:
        payload = await response.json(content_type=None)
        check_against_openapi(template, method, response.status, response.headers["Content-Type"], payload)
        return response.status, payload, dict(response.headers)


async def test_the_data_api_answers_readers_and_lets_only_operators_act(
    dashboard_host: LocalFunctionsHost, cloud: CloudSandbox
) -> None:
    await seed_fleet()
    operator = await sign_in(cloud, OPERATOR["userPrincipalName"])
    reader = await sign_in(cloud, READER["userPrincipalName"])
    host = dashboard_host
    async with aiohttp.ClientSession() as http:
        for method, template in [
            ("GET", "/dashboard/data/me"),
            ("GET", "/dashboard/data/summary"),
            ("GET", "/dashboard/data/links"),
            ("GET", "/dashboard/data/customers/{customerTenantId}"),
            ("POST", "/dashboard/data/customers/{customerTenantId}/relink"),
        ]:  # every data route, without a token
            status, _, headers = await data(http, host, method, template, None, customerTenantId=NORTHWIND)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), template
        status, me, _ = await data(http, host, "GET", "/dashboard/data/me", reader)
        assert (status, me["canAct"], me["roles"]) == (200, False, ["PalAutopilot.Reader"])
        status, summary, _ = await data(http, host, "GET", "/dashboard/data/summary", reader)
        assert (status, summary["total"], summary["needingAction"]) == (200, 3, 1)
        assert summary["byOutcome"] == {"already-linked": 1, "linked": 1, "needs-customer-action": 1}

        status, page, _ = await data(http, host, "GET", "/dashboard/data/links?top=2", reader)
        assert status == 200 and len(page["items"]) == 2 and page["continuationToken"]
        status, rest, _ = await data(
            http,
            host,
            "GET",
            "/dashboard/data/links?top=2&continuationToken={page}",
            reader,
            page=page["continuationToken"],
        )
        tenants = {item["customerTenantId"] for item in page["items"] + rest["items"]}
        assert tenants == {NORTHWIND, TAILSPIN, WOODGROVE} and rest["continuationToken"] is None
        status, found, _ = await data(
            http,
            host,
            "GET",
            "/dashboard/data/links?tenant={customerTenantId}",
            reader,
            customerTenantId=WOODGROVE.upper(),
        )
        assert [(item["customerTenantId"], item["outcome"]) for item in found["items"]] == [
            (WOODGROVE, "needs-customer-action")
        ]
        assert found["items"][0]["remediation"]
        status, bad, _ = await data(http, host, "GET", "/dashboard/data/links?tenant=contoso", reader)
        assert status == 400 and bad["detail"].startswith("tenant:")

        status, refused, _ = await data(
            http,
            host,
            "POST",
            "/dashboard/data/customers/{customerTenantId}/relink",
            reader,
            customerTenantId=NORTHWIND,
        )
        assert status == 403 and "PalAutopilot.Operator" in refused["detail"]
        status, done, _ = await data(
            http,
            host,
            "POST",
            "/dashboard/data/customers/{customerTenantId}/relink",
            operator,
            customerTenantId=NORTHWIND,
        )
        assert (status, done["outcome"]) == (200, "already-linked")
        assert done["actor"] == f"Megan Bowen ({OPERATOR['objectId']})"

        status, customer, _ = await data(
            http,
            host,
            "GET",
            "/dashboard/data/customers/{customerTenantId}",
            reader,
            customerTenantId=NORTHWIND,
        )
        assert status == 200 and customer["coverage"]["identities"][0]["clientId"] == FEDERATED_APP
        relinks = [event for event in customer["history"] if event["source"] == "relink"]
        assert [event.get("actor") for event in relinks] == [
            done["actor"]
        ]  # the reader's refusal recorded nothing
        assert all("actor" not in event for event in customer["history"] if event["source"] != "relink")

        # The operators' API shows the same actor (function key).
        status, link, _ = await Client(http, host.base_url).call(
            "GET", "/links/{customerTenantId}", customerTenantId=NORTHWIND
        )
        assert status == 200 and link["history"][0]["actor"] == done["actor"]

        async with http.get(f"{host.base_url}/api/dashboard") as answer:
            html = await answer.text()
            csp = answer.headers["Content-Security-Policy"]
        assert answer.status == 200 and f'content="{cloud.authority}/{PARTNER_TENANT}"' in html
        assert (
            "default-src 'self'; script-src 'self'; style-src 'self'" in csp
            and "frame-ancestors 'none'" in csp
        )
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        # Each module, as the page's relative URLs name it, with its content type; nothing else.
        for name in (*MODULES, "dashboard.css"):
            async with http.get(f"{host.base_url}/api/dashboard/static/{name}") as answer:
                assert answer.status == 200, name
                assert answer.headers["Content-Type"] == STATIC_FILES[name], name
                assert answer.headers["X-Content-Type-Options"] == "nosniff", name
                assert await answer.read() == (ROOT / "dashboard" / name).read_bytes(), name
        assert STATIC_FILES["main.js"] == "text/javascript; charset=utf-8"
        for name in ("dashboard.js", "nope.js", "index.html", "..%2Findex.html", "x.py", "Main.js"):
            async with http.get(f"{host.base_url}/api/dashboard/static/{name}") as answer:
                assert answer.status == 404, name


# ---- a real browser --------------------------------------------------------------------------------

browser = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Debian's chromium and chromium-driver are not installed (make setup installs them)",
)


def leaf_spki_hash(cloud: CloudSandbox) -> str:
    """The base64 SHA-256 of the sandbox server certificate's public key: Chromium trusts that one
    certificate (and no other error) for the sandbox's Entra ID, which uses a CA made at start."""
    parts = urlsplit(cloud.base_url)
    pem = ssl.get_server_certificate(
        (parts.hostname or "127.0.0.1", parts.port or 443), ca_certs=str(cloud.ca_path)
    )
    public = x509.load_pem_x509_certificate(pem.encode()).public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture
def chrome(cloud: CloudSandbox, tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        f"--ignore-certificate-errors-spki-list={leaf_spki_hash(cloud)}",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any, timeout: float = 30) -> Any:
    """Until the condition holds (an element replaced while being read is read again)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=[StaleElementReferenceException]).until(
        condition
    )


def _sign_in_and_see_the_fleet(driver: Any, host: LocalFunctionsHost, user: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.get(f"{host.base_url}/api/dashboard?login_hint={user}")
    _wait(driver, ec.element_to_be_clickable((By.ID, "sign-in"))).click()
    _wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "fleet")


def _no_csp_violation(driver: Any) -> None:
    messages = [entry["message"] for entry in driver.get_log("browser")]
    assert not [m for m in messages if "Content Security Policy" in m or "Refused to" in m], messages


def screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    """Saved under the test's tmp dir and, for a person to look at, under .sandbox/screenshots/."""
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, SCREENSHOTS / path.name)
    return SCREENSHOTS / path.name


def _operator_session(driver: Any, host: LocalFunctionsHost, tmp_path: Path) -> dict[str, Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    seen: dict[str, Any] = {}
    _sign_in_and_see_the_fleet(driver, host, OPERATOR["userPrincipalName"])
    assert "code=" not in driver.current_url  # the code left the address bar once redeemed
    assert driver.find_element(By.ID, "who").text == "Megan Bowen (operator)"
    tiles = {
        tile.get_attribute("data-outcome"): tile.find_element(By.TAG_NAME, "strong").text
        for tile in driver.find_elements(By.CSS_SELECTOR, "#outcomes li[data-outcome]")
    }
    assert tiles == {"already-linked": "1", "linked": "1", "needs-customer-action": "1"}
    needing = driver.find_elements(By.CSS_SELECTOR, "#needs-action tbody tr")
    assert len(needing) == 1
    cells = needing[0].find_elements(By.TAG_NAME, "td")
    assert cells[1].text == "needs-customer-action" and "consent" in cells[2].text.lower()
    assert cells[3].find_element(By.TAG_NAME, "button").text == "Copy"
    seen["fleet"] = screenshot(driver, tmp_path, "dashboard-fleet")

    # Search by tenant ID (server-side), with the keyboard.
    search = driver.find_element(By.ID, "tenant")
    search.send_keys(NORTHWIND.upper(), Keys.ENTER)
    _wait(
        driver,
        lambda d: (
            [b.get_attribute("data-tenant") for b in d.find_elements(By.CSS_SELECTOR, "#links tbody button")]
            == [NORTHWIND]
        ),
    )

    # Drill down, relink: cancel first, then confirm.
    driver.find_element(By.CSS_SELECTOR, f'#links tbody button[data-tenant="{NORTHWIND}"]').click()
    _wait(driver, ec.visibility_of_element_located((By.ID, "customer")))
    assert driver.current_url.endswith(f"#customer={NORTHWIND}")
    relink = _wait(driver, ec.element_to_be_clickable((By.ID, "relink")))
    relink.click()
    _wait(driver, lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
    driver.find_element(By.ID, "confirm-cancel").click()
    _wait(driver, lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is None)
    _wait(driver, lambda d: d.switch_to.active_element.get_attribute("id") == "relink")  # focus came back
    relink.click()
    _wait(driver, lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
    driver.find_element(By.ID, "confirm-ok").click()
    _wait(
        driver, lambda d: d.find_element(By.ID, "action-result").text.startswith("Relinked: already-linked")
    )
    seen["history"] = _wait(
        driver,
        lambda d: [
            cell.text for cell in d.find_elements(By.CSS_SELECTOR, "#history tbody tr:first-child td")
        ],
    )
    seen["customer"] = screenshot(driver, tmp_path, "dashboard-customer")
    driver.set_window_size(390, 844)  # a phone
    seen["phone"] = screenshot(driver, tmp_path, "dashboard-customer-phone")
    _no_csp_violation(driver)
    return seen


def _reader_session(driver: Any, host: LocalFunctionsHost) -> int:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    _sign_in_and_see_the_fleet(driver, host, READER["userPrincipalName"])
    assert driver.find_element(By.ID, "who").text == "Adele Vance (reader)"
    driver.find_element(By.CSS_SELECTOR, f'#needs-action button[data-tenant="{WOODGROVE}"]').click()
    _wait(driver, ec.visibility_of_element_located((By.ID, "customer")))
    for action in ("relink", "audit", "offboard"):
        button = driver.find_element(By.ID, action)
        assert not button.is_displayed() and button.get_attribute("disabled") is not None, action
    assert driver.find_element(By.ID, "relink-note").is_displayed()
    # The page hides the button; the API refuses the action anyway (the reader's own token).
    status = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const token = JSON.parse(sessionStorage.getItem("pal.token")).accessToken;
        fetch(arguments[0], {method: "POST", headers: {Authorization: "Bearer " + token}})
          .then((r) => done(r.status), () => done(-1));
        """,
        f"dashboard/data/customers/{WOODGROVE}/relink",
    )
    _no_csp_violation(driver)
    return int(status)


@browser
async def test_an_operator_signs_in_sees_the_fleet_drills_down_and_relinks(
    dashboard_host: LocalFunctionsHost, chrome: Any, tmp_path: Path
) -> None:
    await seed_fleet()
    seen = await asyncio.to_thread(_operator_session, chrome, dashboard_host, tmp_path)
    time_cell, source, outcome, actor, _ = seen["history"]
    assert (source, outcome, actor) == ("relink", "already-linked", f"Megan Bowen ({OPERATOR['objectId']})")
    history = await (await get_service()).ledger.history(NORTHWIND)
    relinks = [event for event in history if event.source == "relink"]
    assert [event.actor for event in relinks] == [actor]  # one relink: the cancelled dialog sent nothing
    for name in ("fleet", "customer", "phone"):
        assert seen[name].stat().st_size > 1000, seen[name]


@browser
async def test_a_reader_sees_but_is_refused_the_action(
    dashboard_host: LocalFunctionsHost, chrome: Any
) -> None:
    await seed_fleet()
    status = await asyncio.to_thread(_reader_session, chrome, dashboard_host)
    assert status == 403
    history = await (await get_service()).ledger.history(WOODGROVE)
    assert [event.source for event in history] == ["onboarding"]


def test_the_page_ships_no_inline_script_or_style_and_nothing_from_elsewhere() -> None:
    page = (ROOT / "dashboard" / "index.html").read_text()
    assert "<style" not in page and "style=" not in page and not re.search(r"\son[a-z]+=", page)
    assert '<script type="module" src="dashboard/static/main.js"></script>' in page
    assert page.count("<script") == 1
    for name in ("index.html", "dashboard.css", *MODULES):
        # The SVG namespace names the element kind the chart creates; nothing is fetched from it.
        text = (ROOT / "dashboard" / name).read_text().replace('"http://www.w3.org/2000/svg"', "")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
    for name in MODULES:
        text = (ROOT / "dashboard" / name).read_text()
        assert "innerHTML" not in text and "outerHTML" not in text and "insertAdjacentHTML" not in text, name
        assert "document.write" not in text and "eval(" not in text, name


IMPORT = re.compile(r'^\s*(?:import|export)\b[^;"\']*?\bfrom\s+"([^"]+)";', re.MULTILINE | re.DOTALL)


def test_every_module_is_allow_listed_and_imports_only_allow_listed_modules() -> None:
    """The modules on disk are exactly the allow-list, and every import is a sibling on it: resolved
    against /api/dashboard/static/<module>.js, "./name.js" is /api/dashboard/static/name.js."""
    on_disk = {path.name for path in (ROOT / "dashboard").glob("*.js")}
    assert on_disk == set(MODULES)
    assert all(STATIC_FILES[name] == "text/javascript; charset=utf-8" for name in MODULES)
    imported: set[str] = set()
    for name in MODULES:
        text = (ROOT / "dashboard" / name).read_text()
        assert "import(" not in text, name  # no dynamic import: every module is named up front
        specifiers = IMPORT.findall(text)
        assert len(specifiers) == len(re.findall(r"^\s*import\b", text, re.MULTILINE)), name
        for specifier in specifiers:
            assert re.fullmatch(r"\./[a-z]+\.js", specifier), (name, specifier)
            assert specifier[2:] in MODULES, (name, specifier)
            imported.add(specifier[2:])
    assert imported | {"main.js"} == set(MODULES)  # each module is reached from main.js's imports


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_every_module_parses_as_an_es_module() -> None:
    import subprocess

    for name in MODULES:
        text = (ROOT / "dashboard" / name).read_text()
        done = subprocess.run(
            ["node", "--input-type=module", "--check"], input=text, capture_output=True, text=True
        )
        assert done.returncode == 0, (name, done.stderr)


def test_the_static_allow_list_serves_modules_as_javascript_and_nothing_else() -> None:
    settings = DashboardSettings(
        tenant_id=PARTNER_TENANT,
        client_id="client",
        audience="api://x",
        authority="https://login.example",
        ca_bundle=None,
    )
    for name in MODULES:
        response = static_file(name, settings)
        assert (response.status, response.content_type) == (200, "text/javascript; charset=utf-8"), name
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    for name in ("dashboard.js", "nope.js", "../index.html", "index.html", "MAIN.JS", ""):
        assert static_file(name, settings).status == 404, name
