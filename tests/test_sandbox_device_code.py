"""The Entra stand-in's device authorization grant, driven by azure-identity's DeviceCodeCredential
(its prompt callback completes the code through the sandbox's admin hook, no person needed), and
over raw HTTPS where the protocol's exact answers matter."""

from __future__ import annotations

import http.client
import json
import ssl
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import DeviceCodeCredential

from sandbox.cloud import CloudSandbox
from sandbox.scenario import Scenario
from tenants import NORTHWIND, NORTHWIND_UPN, NORTHWIND_USER, PARTNER_ID

ARM_SCOPE = "https://management.azure.com/.default"
PUBLIC_CLIENT = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"  # azure-identity's default (Azure CLI's)
GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def https(
    cloud: CloudSandbox, method: str, path: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, Any]]:
    """One request to the sandbox over HTTPS, trusting its CA; the JSON answer."""
    context = ssl.create_default_context(cafile=str(cloud.ca_path))
    port = int(cloud.base_url.rsplit(":", 1)[1])
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        return response.status, json.loads(answer) if answer else {}
    finally:
        connection.close()


def form(cloud: CloudSandbox, path: str, **fields: str) -> tuple[int, dict[str, Any]]:
    return https(
        cloud,
        "POST",
        path,
        urlencode(fields).encode(),
        **{"Content-Type": "application/x-www-form-urlencoded"},
    )


def completing_as(cloud: CloudSandbox, tenant: str, user: str) -> Callable[[str, str, datetime], None]:
    """A prompt callback that, instead of a person, completes the code through the admin hook."""

    def prompt(verification_uri: str, user_code: str, expires_on: datetime) -> None:
        body = json.dumps({"user": user}).encode()
        status, answer = https(
            cloud, "POST", f"/_sandbox/tenants/{tenant}/device-codes/{user_code}/complete", body
        )
        assert status == 200, answer

    return prompt


def credential(
    cloud: CloudSandbox, tenant: str, prompt: Callable[[str, str, datetime], None]
) -> DeviceCodeCredential:
    return DeviceCodeCredential(
        tenant_id=tenant,
        authority=cloud.authority,
        disable_instance_discovery=True,
        connection_verify=str(cloud.ca_path),
        prompt_callback=prompt,
        timeout=30,
    )


def test_device_code_credential_signs_in_as_the_tenants_user(cloud: CloudSandbox) -> None:
    prompts: list[str] = []

    def prompt(verification_uri: str, user_code: str, expires_on: datetime) -> None:
        prompts.append(verification_uri)
        completing_as(cloud, NORTHWIND, NORTHWIND_UPN)(verification_uri, user_code, expires_on)

    signed_in = credential(cloud, NORTHWIND, prompt)
    token = signed_in.get_token(ARM_SCOPE)
    claims = jwt.decode(
        token.token, cloud._tokens.public_key, algorithms=["RS256"], audience="https://management.azure.com"
    )
    assert (claims["oid"], claims["upn"], claims["tid"], claims["idtyp"]) == (
        NORTHWIND_USER,
        NORTHWIND_UPN,
        NORTHWIND,
        "user",
    )
    assert prompts == ["https://microsoft.com/devicelogin"]
    record = signed_in.authenticate(scopes=[ARM_SCOPE])  # from the cache: no second prompt
    assert (record.username, record.tenant_id) == (NORTHWIND_UPN, NORTHWIND)
    assert prompts == ["https://microsoft.com/devicelogin"]
    # ARM takes the user's token: the user links the partner ID as itself.
    status, link = https(
        cloud,
        "PUT",
        f"/providers/Microsoft.ManagementPartner/partners/{PARTNER_ID}?api-version=2018-02-01",
        b"{}",
        Authorization=f"Bearer {token.token}",
        **{"Content-Type": "application/json"},
    )
    assert status == 200, link
    assert link["properties"]["objectId"] == NORTHWIND_USER


def test_a_user_added_at_run_time_signs_in_by_object_id(cloud: CloudSandbox) -> None:
    tenant, user = str(uuid.uuid4()), str(uuid.uuid4())
    cloud.add_tenant(tenant, "Contoso")
    status, _ = https(
        cloud,
        "PUT",
        f"/_sandbox/tenants/{tenant}/users/{user}",
        json.dumps({"userPrincipalName": "Ops@Contoso.example", "displayName": "Ops"}).encode(),
    )
    assert status == 200
    token = credential(cloud, tenant, completing_as(cloud, tenant, user)).get_token(ARM_SCOPE)
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert (claims["oid"], claims["upn"]) == (user, "ops@contoso.example")


def test_the_protocol_pending_slow_down_then_tokens(cloud: CloudSandbox) -> None:
    cloud.set_device_code_timing(interval=2)
    status, started = form(
        cloud, f"/{NORTHWIND}/oauth2/v2.0/devicecode", client_id=PUBLIC_CLIENT, scope=ARM_SCOPE
    )
    assert status == 200
    assert set(started) == {
        "device_code",
        "user_code",
        "verification_uri",
        "expires_in",
        "interval",
        "message",
    }
    assert (started["interval"], started["expires_in"]) == (2, 900)
    assert started["user_code"] in started["message"]
    poll = {"grant_type": GRANT, "client_id": PUBLIC_CLIENT, "device_code": started["device_code"]}
    token_path = f"/{NORTHWIND}/oauth2/v2.0/token"
    status, pending = form(cloud, token_path, **poll)
    assert (status, pending["error"], pending["error_codes"]) == (400, "authorization_pending", [70016])
    status, slow = form(cloud, token_path, **poll)  # at once: too soon
    assert (status, slow["error"]) == (400, "slow_down")
    cloud.complete_device_code(NORTHWIND, started["user_code"], NORTHWIND_USER)
    status, tokens = form(cloud, token_path, **poll, client_info="1")
    assert status == 200, tokens
    assert {"access_token", "id_token", "client_info", "expires_in"} <= set(tokens)
    identity = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert (identity["aud"], identity["preferred_username"], identity["iss"]) == (
        PUBLIC_CLIENT,
        NORTHWIND_UPN,
        f"{cloud.base_url}/{NORTHWIND}/v2.0",
    )
    status, again = form(cloud, token_path, **poll)  # redeemed once
    assert (status, again["error"]) == (400, "invalid_grant")


def test_an_expired_code_answers_expired_token(cloud: CloudSandbox) -> None:
    cloud.set_device_code_timing(interval=0, expires_in=1)
    _, started = form(cloud, f"/{NORTHWIND}/oauth2/v2.0/devicecode", client_id=PUBLIC_CLIENT, scope=ARM_SCOPE)
    time.sleep(1.1)
    status, expired = form(
        cloud,
        f"/{NORTHWIND}/oauth2/v2.0/token",
        grant_type=GRANT,
        client_id=PUBLIC_CLIENT,
        device_code=started["device_code"],
    )
    assert (status, expired["error"], expired["error_codes"]) == (400, "expired_token", [70020])
    body = json.dumps({"user": NORTHWIND_UPN}).encode()
    status, refused = https(
        cloud, "POST", f"/_sandbox/tenants/{NORTHWIND}/device-codes/{started['user_code']}/complete", body
    )
    assert status == 400


def test_the_credential_fails_when_nobody_completes_the_code(cloud: CloudSandbox) -> None:
    cloud.set_device_code_timing(interval=0, expires_in=1)
    with pytest.raises(ClientAuthenticationError):
        credential(cloud, NORTHWIND, lambda uri, code, expires: None).get_token(ARM_SCOPE)


def test_only_the_tenants_users_complete_a_code(cloud: CloudSandbox) -> None:
    _, started = form(cloud, f"/{NORTHWIND}/oauth2/v2.0/devicecode", client_id=PUBLIC_CLIENT, scope=ARM_SCOPE)
    path = f"/_sandbox/tenants/{NORTHWIND}/device-codes/{started['user_code']}/complete"
    for body in ({"user": "someone@elsewhere.example"}, {"user": NORTHWIND_UPN, "extra": 1}, {}):
        status, refused = https(cloud, "POST", path, json.dumps(body).encode())
        assert status == 400, body
    status, _ = https(
        cloud,
        "POST",
        f"/_sandbox/tenants/{uuid.uuid4()}/device-codes/{started['user_code']}/complete",
        b'{"user": "x@y.z"}',
    )
    assert status == 400
    status, unknown = form(
        cloud, f"/{uuid.uuid4()}/oauth2/v2.0/devicecode", client_id=PUBLIC_CLIENT, scope=ARM_SCOPE
    )
    assert (status, unknown["error_codes"]) == (400, [90002])
    status, missing = form(cloud, f"/{NORTHWIND}/oauth2/v2.0/devicecode", client_id=PUBLIC_CLIENT)
    assert (status, missing["error_codes"]) == (400, [900144])


@pytest.mark.parametrize(
    ("user", "problem"),
    [
        (
            {"objectId": NORTHWIND_USER, "userPrincipalName": "a@b.c", "displayName": "A", "role": "x"},
            "unknown field",
        ),
        ({"objectId": "not-a-guid", "userPrincipalName": "a@b.c", "displayName": "A"}, "not a GUID"),
        ({"objectId": NORTHWIND_USER, "userPrincipalName": "no-at-sign", "displayName": "A"}, "name@domain"),
        ({"objectId": NORTHWIND_USER, "userPrincipalName": "a@b.c"}, "displayName"),
        (
            {
                "objectId": "d87199a7-f53b-4dd6-813d-019f7547bffb",
                "userPrincipalName": "a@b.c",
                "displayName": "A",
            },
            "service principal",
        ),
        (
            {"objectId": str(uuid.uuid4()), "userPrincipalName": NORTHWIND_UPN.upper(), "displayName": "A"},
            "duplicate",
        ),
    ],
)
def test_scenario_users_are_validated_strictly(
    scenario: Scenario, user: dict[str, Any], problem: str
) -> None:
    from tenants import DEMO_SCENARIO

    data = json.loads(DEMO_SCENARIO.read_text(encoding="utf-8"))
    data["tenants"][0]["users"].append(user)
    with pytest.raises(ValueError, match=problem):
        Scenario.from_dict(data)
