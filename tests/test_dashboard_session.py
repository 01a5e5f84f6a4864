"""The dashboard's session: `make run ARGS=--serve` serves it until Ctrl-C, and the page renews an
expired sign-in by itself (a silent `prompt=none` round trip to the authority that comes back to the
same view), or asks the person to sign in again when the authority has no session any more.

The browser test reuses tests/test_dashboard.py's fixtures with the demo scenario's tokens made short.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import os
import re
import secrets
import signal
import ssl
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
import test_dashboard
from test_dashboard import OPERATOR, READER, WOODGROVE, _wait, browser, screenshot, seed_fleet

from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from sandbox.scenario import Scenario
from tenants import DEMO_SCENARIO, ROOT

# The fixtures of tests/test_dashboard.py (its partner tenant with the no-role account, its host and
# its Chromium), with tokens that expire while the test watches.
dashboard_host = test_dashboard.dashboard_host
chrome = test_dashboard.chrome
TOKEN_LIFETIME_SECONDS = 15  # the page renews a fifth of that before the end: after 12 s


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    document = json.loads(DEMO_SCENARIO.read_text())
    partner = next(t for t in document["tenants"] if t["tenantId"] == test_dashboard.PARTNER_TENANT)
    partner["users"].append(test_dashboard.NOBODY)
    document["tokenLifetimeSeconds"] = TOKEN_LIFETIME_SECONDS
    return Scenario.from_dict(document)


# ---- make run ARGS=--serve -------------------------------------------------------------------------

_STARTUP_SECONDS = 240  # the whole demo runs first (onboarding with retries, the nightly run)
_STOP_SECONDS = 60


async def _line(stream: asyncio.StreamReader, deadline: float) -> str:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    line = await asyncio.wait_for(stream.readline(), remaining)
    if not line:
        raise EOFError
    return line.decode(errors="replace").rstrip("\n")


async def _sign_in_as(page_url: str, page: str, user: str, ca_path: str) -> str:
    """The page's own flow without a browser, from what the page names: its authority, client ID and
    scope; the sandbox signs the hinted user in at once; the code is redeemed with PKCE."""
    meta = {
        name: html.unescape(value)
        for name, value in re.findall(r'<meta name="pal-([a-z-]+)" content="([^"]*)">', page)
    }
    authority, client_id, scope = meta["authority"], meta["client-id"], meta["scope"]
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    query = {
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": page_url,
        "scope": scope,
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "login_hint": user,
    }
    trust = ssl.create_default_context(cafile=ca_path)
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{authority}/oauth2/v2.0/authorize?{urlencode(query)}", allow_redirects=False, ssl=trust
        ) as answer:
            assert answer.status == 302, await answer.text()
            code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
        form = {
            "grant_type": "authorization_code",
            "client_id": client_id,
            "code": code,
            "redirect_uri": page_url,
            "code_verifier": verifier,
            "scope": scope,
        }
        async with http.post(f"{authority}/oauth2/v2.0/token", data=form, ssl=trust) as answer:
            tokens = await answer.json()
            assert answer.status == 200, tokens
    return str(tokens["access_token"])


async def test_make_run_serve_prints_the_dashboard_and_serves_it_until_ctrl_c(tmp_path: Path) -> None:
    errors = (tmp_path / "stderr.txt").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox.programs.demo",
        "--serve",
        "--port",
        "0",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=errors,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    seen: list[str] = []
    try:
        deadline = time.monotonic() + _STARTUP_SECONDS
        urls: dict[str, str] = {}
        ca_path = ""
        try:
            while "Serving until Ctrl-C." not in seen:
                line = await _line(process.stdout, deadline)
                seen.append(line)
                if match := re.match(r"\s+as the (operator|reader) [^:]+: (http://\S+)$", line):
                    urls[match.group(1)] = match.group(2)
                if match := re.search(r"a test CA made for this run \((.+)\)", line):
                    ca_path = match.group(1)
        except (TimeoutError, EOFError) as error:
            raise AssertionError(f"no dashboard address ({error!r}):\n" + "\n".join(seen)) from None
        assert set(urls) == {"operator", "reader"} and ca_path, seen
        assert urls["operator"].endswith(f"/api/dashboard?login_hint={OPERATOR['userPrincipalName']}")
        assert urls["reader"].endswith(f"/api/dashboard?login_hint={READER['userPrincipalName']}")
        page_url = urls["operator"].split("?")[0]
        base = page_url.removesuffix("/dashboard")

        async with aiohttp.ClientSession() as http:
            async with http.get(urls["operator"]) as answer:
                page = await answer.text()
                assert answer.status == 200 and "Content-Security-Policy" in answer.headers
            async with http.get(f"{base}/dashboard/data/me") as answer:
                assert answer.status == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
            token = await _sign_in_as(page_url, page, OPERATOR["userPrincipalName"], ca_path)
            async with http.get(
                f"{base}/dashboard/data/me", headers={"Authorization": f"Bearer {token}"}
            ) as answer:
                me = await answer.json()
                assert answer.status == 200, me
            assert (me["name"], me["canAct"], me["objectId"]) == ("Megan Bowen", True, OPERATOR["objectId"])
            async with http.get(
                f"{base}/dashboard/data/summary", headers={"Authorization": f"Bearer {token}"}
            ) as answer:
                summary = await answer.json()
                assert answer.status == 200 and summary["total"] > 0, summary  # the demo's links

        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), _STOP_SECONDS)
        assert process.returncode == 0, rest.decode(errors="replace")
        assert "Services stopped." in rest.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        errors.close()


# ---- the page renews an expired sign-in --------------------------------------------------------------


def _token(driver: Any) -> dict[str, Any] | None:
    stored = driver.execute_script("return sessionStorage.getItem('pal.token');")
    return json.loads(stored) if stored else None


def _expired(driver: Any) -> bool:
    return bool(
        driver.execute_script(
            "return Date.now() >= JSON.parse(sessionStorage.getItem('pal.token')).expiresAt;"
        )
    )


def _renewal(driver: Any, host: LocalFunctionsHost, tmp_path: Path) -> dict[str, Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    seen: dict[str, Any] = {}
    test_dashboard._sign_in_and_see_the_fleet(driver, host, OPERATOR["userPrincipalName"])
    driver.find_element(By.CSS_SELECTOR, f'#needs-action button[data-tenant="{WOODGROVE}"]').click()
    _wait(driver, ec.visibility_of_element_located((By.ID, "customer")))
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#history tbody tr td"))
    first = _token(driver)
    assert first is not None

    # The token expires while the operator looks at Woodgrove; coming back (a reload) renews it
    # without the sign-in button, and shows Woodgrove again.
    _wait(driver, _expired, timeout=TOKEN_LIFETIME_SECONDS + 30)
    driver.refresh()
    _wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "fleet")
    _wait(driver, ec.visibility_of_element_located((By.ID, "customer")))
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#history tbody tr td"))
    renewed = _token(driver)
    seen["renewed"] = renewed is not None and renewed["accessToken"] != first["accessToken"]
    seen["url"] = driver.current_url
    seen["who"] = driver.find_element(By.ID, "who").text
    seen["sign-in shown"] = driver.find_element(By.ID, "sign-in").is_displayed()
    seen["renewed screenshot"] = screenshot(driver, tmp_path, "dashboard-renewed")

    # Without the authority's session (its cookie gone, as after a browser restart), the silent
    # sign-in answers login_required and the page asks the person to sign in again.
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    _wait(driver, _expired, timeout=TOKEN_LIFETIME_SECONDS + 30)
    driver.refresh()
    sign_in = _wait(driver, ec.visibility_of_element_located((By.ID, "sign-in")))
    seen["status"] = driver.find_element(By.ID, "status").text
    seen["fleet hidden"] = not driver.find_element(By.ID, "fleet").is_displayed()
    seen["signed-out url"] = driver.current_url
    # Signing in again by hand works (the hint is the page's own address's).
    driver.get(f"{host.base_url}/api/dashboard?login_hint={OPERATOR['userPrincipalName']}")
    sign_in = _wait(driver, ec.element_to_be_clickable((By.ID, "sign-in")))
    sign_in.click()
    _wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "fleet")
    test_dashboard._no_csp_violation(driver)
    return seen


@browser
async def test_an_expired_sign_in_is_renewed_silently_and_falls_back_to_signing_in_again(
    dashboard_host: LocalFunctionsHost, chrome: Any, tmp_path: Path
) -> None:
    await seed_fleet()
    seen = await asyncio.to_thread(_renewal, chrome, dashboard_host, tmp_path)
    assert seen["renewed"], "the page did not get a new token"
    assert seen["url"].endswith(f"/api/dashboard#customer={WOODGROVE}")  # the same view, no code left
    assert seen["who"] == "Megan Bowen (operator)" and not seen["sign-in shown"]
    assert seen["status"] == "Your sign-in has expired. Sign in again." and seen["fleet hidden"]
    assert "error=" not in seen["signed-out url"] and "code=" not in seen["signed-out url"]
    assert seen["renewed screenshot"].stat().st_size > 1000


# ---- the sandbox's silent sign-in (prompt=none) -------------------------------------------------------


async def test_the_sandbox_signs_the_sessions_user_in_silently_or_answers_why_not(
    cloud: CloudSandbox,
) -> None:
    authority = f"{cloud.authority}/{test_dashboard.PARTNER_TENANT}/oauth2/v2.0/authorize"
    query = {
        "client_id": test_dashboard.DASHBOARD_APP,
        "response_type": "code",
        "redirect_uri": test_dashboard.REDIRECT,
        "scope": f"api://{test_dashboard.DASHBOARD_APP}/.default openid profile",
        "state": "s1",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
    }
    trust = ssl.create_default_context(cafile=str(cloud.ca_path))

    async def answer(http: aiohttp.ClientSession, **extra: str) -> dict[str, list[str]]:
        async with http.get(f"{authority}?{urlencode(query | extra)}", allow_redirects=False, ssl=trust) as a:
            assert a.status == 302, await a.text()
            location = urlsplit(a.headers["Location"])
            assert f"{location.scheme}://{location.netloc}{location.path}" == test_dashboard.REDIRECT
            return parse_qs(location.query)

    # The cookie jar keeps the sandbox's session cookie (an IP address host needs unsafe=True).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        refused = await answer(http, prompt="none", login_hint=OPERATOR["userPrincipalName"])
        assert (refused["error"], refused["state"]) == (["login_required"], ["s1"]) and "code" not in refused
        assert (await answer(http, login_hint=OPERATOR["userPrincipalName"]))["code"]  # signs in: a session
        assert (await answer(http, prompt="none"))["code"]  # the session's user, without a page
        assert (await answer(http, prompt="none", login_hint=OPERATOR["userPrincipalName"]))["code"]
        other = await answer(http, prompt="none", login_hint=READER["userPrincipalName"])
        assert other["error"] == ["interaction_required"] and "code" not in other
