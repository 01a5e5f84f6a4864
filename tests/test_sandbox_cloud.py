"""The cloud sandbox driven by the real Azure SDKs, plus raw HTTPS where the exact bytes matter."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity.aio import (
    CertificateCredential,
    ClientAssertionCredential,
    ClientSecretCredential,
    ManagedIdentityCredential,
)
from azure.keyvault.secrets.aio import SecretClient
from azure.mgmt.managementpartner.aio import ACEProvisioningManagementPartnerAPI
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.cloud import AADSTS, CloudSandbox, self_signed_pem
from sandbox.scenario import FaultRule, Scenario, load_scenario
from sandbox.tls import make_tls

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "sandbox" / "scenarios" / "demo.json"
ARM_SCOPE = "https://management.azure.com/.default"
EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"
PARTNER_ID, OTHER_PARTNER_ID = "1234567", "7654321"
PARTNER_TENANT = "06a9217b-0248-4057-ba46-05be61101c37"
MI_CLIENT, MI_PRINCIPAL = "15f2d0f8-8784-4690-b5c7-e45e31452a9a", "481be298-d292-4dd2-a8e4-3e36a28df338"
FEDERATED_APP = "81a6daa3-a704-4f3e-a1ca-45fa036d5a09"
SECRET_APP = "3d396df3-d832-4c8b-a51d-91fbcce04b1d"
CERT_APP = "15e6da4c-256b-441c-a9e3-585cf41b8266"
NORTHWIND, NORTHWIND_OID = "53a2a22c-5cbd-47f7-b588-f5bb5f191ead", "d87199a7-f53b-4dd6-813d-019f7547bffb"
TAILSPIN = "d4dda931-e8e4-4937-8f81-9c578f5d5d03"
FABRIKAM, FABRIKAM_OID = "892ad125-0722-49b7-a665-aea7ede649e4", "fad08631-a20d-46eb-9c68-9bb2395042d8"
WOODGROVE = "a21564c4-fb83-46d4-b1ae-f4675e7d4921"
LITWARE, LITWARE_OID = "ac9630d7-e100-495c-a709-71872a194254", "59ac01ab-453d-4704-902f-7c2e4445a356"


# ---- fixtures and helpers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudSandbox]:
    with CloudSandbox(load_scenario(DEMO), state_dir=tmp_path_factory.mktemp("cloud")) as running:
        yield running


@pytest.fixture(autouse=True)
def _restore(cloud: CloudSandbox) -> Iterator[None]:
    yield
    cloud.clear_faults()
    cloud.set_put_when_linked("conflict")


@pytest.fixture
def managed_identity_env(cloud: CloudSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """What App Service / Azure Functions set for a managed identity."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", cloud.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", cloud.identity_header)
    monkeypatch.delenv("IDENTITY_SERVER_THUMBPRINT", raising=False)


def ca(cloud: CloudSandbox) -> str:
    return str(cloud.ca_path)


def fresh_tenant(cloud: CloudSandbox, client_id: str = SECRET_APP) -> tuple[str, str]:
    """A customer tenant of its own, where `client_id` has a service principal: tests stay independent."""
    tenant_id, object_id = str(uuid.uuid4()), str(uuid.uuid4())
    cloud.add_tenant(tenant_id, f"Test tenant {tenant_id[:8]}")
    cloud.add_service_principal(tenant_id, client_id, object_id)
    return tenant_id, object_id


def secret_credential(
    cloud: CloudSandbox, tenant_id: str, secret: str | None = None, **kwargs: Any
) -> ClientSecretCredential:
    return ClientSecretCredential(
        tenant_id,
        SECRET_APP,
        secret if secret is not None else cloud.secret_value("fabrikam-pal-secret"),
        authority=cloud.authority,
        disable_instance_discovery=True,
        connection_verify=ca(cloud),
        **kwargs,
    )


@contextlib.asynccontextmanager
async def arm_client(
    cloud: CloudSandbox, tenant_id: str, **kwargs: Any
) -> AsyncIterator[ACEProvisioningManagementPartnerAPI]:
    async with secret_credential(cloud, tenant_id, retry_total=0) as credential:
        async with ACEProvisioningManagementPartnerAPI(
            credential,
            base_url=cloud.arm_url,
            credential_scopes=[ARM_SCOPE],
            connection_verify=ca(cloud),
            **kwargs,
        ) as client:
            yield client


async def managed_identity_token(cloud: CloudSandbox, scope: str = EXCHANGE_SCOPE) -> str:
    async with ManagedIdentityCredential(client_id=MI_CLIENT, connection_verify=ca(cloud)) as credential:
        return str((await credential.get_token(scope)).token)


def raw(
    cloud: CloudSandbox,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    context = ssl.create_default_context(cafile=ca(cloud))
    port = int(cloud.base_url.rsplit(":", 1)[1])
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def claims_of(cloud: CloudSandbox, token: str, tenant_id: str) -> dict[str, Any]:
    """Verify a token with the JWKS the tenant's openid-configuration points at."""
    _, _, config = raw(cloud, "GET", f"/{tenant_id}/v2.0/.well-known/openid-configuration")
    jwks_path = json.loads(config)["jwks_uri"].removeprefix(cloud.base_url)
    _, _, jwks = raw(cloud, "GET", jwks_path)
    key = jwt.PyJWK(json.loads(jwks)["keys"][0])
    assert jwt.get_unverified_header(token)["kid"] == key.key_id
    return jwt.decode(token, key, algorithms=["RS256"], options={"verify_aud": False})


def arm_path(partner_id: str | None = None, api_version: str = "2018-02-01") -> str:
    suffix = f"/{partner_id}" if partner_id else ""
    return f"/providers/Microsoft.ManagementPartner/partners{suffix}?api-version={api_version}"


def rsa_pem(common_name: str) -> bytes:
    """A certificate the sandbox has never seen, with its key, as Key Vault would hand it out."""
    return self_signed_pem(common_name)[0].encode()


def aadsts_of(error: ClientAuthenticationError) -> tuple[int | None, dict[str, Any]]:
    assert error.response is not None
    body = json.loads(error.response.text())
    return error.response.status_code, body


# ---- TLS and scenario ---------------------------------------------------------------------------------


def test_make_tls_writes_a_ca_that_the_server_certificate_chains_to(
    tmp_path: Path, cloud: CloudSandbox
) -> None:
    material = make_tls(tmp_path / "tls")
    assert material.ca_path == tmp_path / "tls" / "ca.pem"
    assert material.ca_path.read_text().startswith("-----BEGIN CERTIFICATE-----")

    port = int(cloud.base_url.rsplit(":", 1)[1])
    for host in ("127.0.0.1", "localhost"):  # both names are on the server certificate
        context = ssl.create_default_context(cafile=ca(cloud))
        with context.wrap_socket(socket.create_connection((host, port)), server_hostname=host) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    stranger = ssl.create_default_context(cafile=str(material.ca_path))  # another CA: refused
    with pytest.raises(ssl.SSLCertVerificationError):
        stranger.wrap_socket(
            socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1"
        ).close()


def test_demo_scenario_loads_with_defaults() -> None:
    scenario = load_scenario(DEMO)
    assert (scenario.partner_tenant_id, scenario.put_when_linked, scenario.token_lifetime_seconds) == (
        PARTNER_TENANT,
        "conflict",
        3600,
    )
    assert scenario.managed_identity.principal_id == MI_PRINCIPAL
    assert [tenant.name for tenant in scenario.tenants][0] == "Northwind Traders"
    tailspin = scenario.tenant(TAILSPIN)
    assert tailspin is not None and tailspin.links[0].partner_id == PARTNER_ID
    assert tailspin.service_principals[0].enabled is True
    app = scenario.app(FEDERATED_APP)
    assert app is not None and app.federated_credentials[0].subject == MI_PRINCIPAL
    assert scenario.app(CERT_APP).certificates == ("litware-pal-cert",)  # type: ignore[union-attr]
    assert scenario.app(CERT_APP).tags == {  # type: ignore[union-attr]
        "litware-pal-cert": {"customerTenantId": LITWARE, "clientId": CERT_APP}
    }


def _broken(change: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DEMO.read_text())
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["tenants"][2]["servicePrincipals"][0].update(clientId=str(uuid.uuid4())),
            "tenants[2].servicePrincipals[0].clientId: no app with this clientId",
        ),
        (
            lambda d: d["tenants"][1]["links"][0].update(objectId=str(uuid.uuid4())),
            "tenants[1].links[0].objectId: no service principal with this objectId in this tenant",
        ),
        (
            lambda d: d["tenants"][1]["links"][0].update(partnerId="999999"),
            "tenants[1].links[0].partnerId: not in knownPartnerIds",
        ),
        (lambda d: d["tenants"][1].update(tenantId=NORTHWIND), "tenants[1].tenantId: duplicate tenantId"),
        (lambda d: d.update(partnerTenantId="contoso"), "partnerTenantId: not a GUID"),
        (lambda d: d.update(putWhenLinked="maybe"), "putWhenLinked: expected 'conflict' or 'ok'"),
        (lambda d: d.update(tokenLifetimeSeconds=0), "tokenLifetimeSeconds: expected a positive integer"),
        (lambda d: d["apps"][0].update(clientID="x"), "apps[0].clientID: unknown field"),
        (
            lambda d: d["apps"][2].update(secrets=["fabrikam-pal-secret"]),
            "apps[2].secrets: duplicate Key Vault",
        ),
        (
            lambda d: d["apps"][1].update(secrets=[{"name": "x", "tags": {"clientId": 1}}]),
            "apps[1].secrets[0].tags: expected an object of at most 15 tag names and string values",
        ),
        (
            lambda d: d["apps"][1].update(secrets=[{"name": "x", "tag": {}}]),
            "apps[1].secrets[0].tag: unknown",
        ),
        (lambda d: d["apps"][1].update(secrets=[{"tags": {}}]), "apps[1].secrets[0].name: expected a Key"),
        (
            lambda d: d["tenants"][0].update(faults=[{"target": "arm", "kind": "status", "status": 200}]),
            "tenants[0].faults[0].status: expected an HTTP error status",
        ),
    ],
)
def test_scenario_errors_name_the_field(change: Any, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        Scenario.from_dict(_broken(change))
    assert str(raised.value).startswith(message)


def test_fault_rules_read_camel_case_and_refuse_nonsense() -> None:
    rule = FaultRule.from_dict(
        {"target": "arm", "kind": "status", "status": 429, "retryAfter": 7, "count": 2, "probability": 0.5}
    )
    assert (rule.status, rule.retry_after, rule.count, rule.probability) == (429, 7, 2, 0.5)
    assert FaultRule.from_dict(rule.to_dict()) == rule
    assert FaultRule.from_dict({"target": "any", "kind": "latency", "latencyMs": 5}).latency_ms == 5
    for bad, field_name in [
        ({"target": "arm", "kind": "aadsts", "aadsts": 700016}, "rule.target"),
        ({"target": "token", "kind": "latency"}, "rule.latencyMs"),
        ({"target": "token", "kind": "drop", "probability": 2}, "rule.probability"),
        ({"target": "token", "kind": "drop", "count": 0}, "rule.count"),
        ({"target": "dns", "kind": "drop"}, "rule.target"),
        ({"target": "arm", "kind": "drop", "retry_after": 1}, "rule.retry_after: unknown field"),
    ]:
        with pytest.raises(ValueError, match=f"^{field_name.replace('.', '[.]')}"):
            FaultRule.from_dict(bad, "rule")


def test_unknown_aadsts_fault_is_refused(cloud: CloudSandbox) -> None:
    with pytest.raises(ValueError, match="AADSTS12345"):
        cloud.add_fault(NORTHWIND, FaultRule(target="token", kind="aadsts", aadsts=12345))


# ---- Entra ID discovery, managed identity, Key Vault ------------------------------------------------


def test_openid_configuration_points_at_the_sandbox(cloud: CloudSandbox) -> None:
    status, _, body = raw(cloud, "GET", f"/{NORTHWIND}/v2.0/.well-known/openid-configuration")
    config = json.loads(body)
    assert status == 200
    assert config["issuer"] == f"{cloud.base_url}/{NORTHWIND}/v2.0"
    assert config["token_endpoint"] == f"{cloud.base_url}/{NORTHWIND}/oauth2/v2.0/token"
    assert config["authorization_endpoint"] == f"{cloud.base_url}/{NORTHWIND}/oauth2/v2.0/authorize"
    assert config["jwks_uri"] == f"{cloud.base_url}/{NORTHWIND}/discovery/v2.0/keys"
    assert "code" in config["response_types_supported"]

    status, _, body = raw(cloud, "GET", f"/{uuid.uuid4()}/v2.0/.well-known/openid-configuration")
    error = json.loads(body)
    assert status == 400 and error["error_codes"] == [90002]
    assert error["error_description"].startswith("AADSTS90002: Tenant '")
    assert (
        "\r\nTrace ID: " in error["error_description"]
        and "\r\nCorrelation ID: " in error["error_description"]
    )
    assert set(error) >= {"timestamp", "trace_id", "correlation_id", "error_uri"}


async def test_managed_identity_credential_gets_a_partner_tenant_token(
    cloud: CloudSandbox, managed_identity_env: None
) -> None:
    token = await managed_identity_token(cloud)
    claims = claims_of(cloud, token, NORTHWIND)
    assert claims["iss"] == f"https://login.microsoftonline.com/{PARTNER_TENANT}/v2.0"
    assert claims["sub"] == claims["oid"] == MI_PRINCIPAL
    assert (claims["tid"], claims["aud"]) == (PARTNER_TENANT, "api://AzureADTokenExchange")

    async with ManagedIdentityCredential(client_id=str(uuid.uuid4()), connection_verify=ca(cloud)) as other:
        with pytest.raises(ClientAuthenticationError, match="No User Assigned"):
            await other.get_token(EXCHANGE_SCOPE)
    status, _, _ = raw(
        cloud,
        "GET",
        "/msi/token?api-version=2019-08-01&resource=https://vault.azure.net",
        headers={"X-IDENTITY-HEADER": "wrong"},
    )
    assert status == 401


async def test_key_vault_serves_secrets_to_the_managed_identity(
    cloud: CloudSandbox, managed_identity_env: None
) -> None:
    async with (
        ManagedIdentityCredential(client_id=MI_CLIENT, connection_verify=ca(cloud)) as identity,
        SecretClient(
            vault_url=cloud.key_vault_url,
            credential=identity,
            verify_challenge_resource=False,
            connection_verify=ca(cloud),
        ) as vault,
    ):
        secret = await vault.get_secret("fabrikam-pal-secret")
        certificate = await vault.get_secret("litware-pal-cert")
        pinned = await vault.get_secret("fabrikam-pal-secret", secret.properties.version)
        with pytest.raises(ResourceNotFoundError) as missing:
            await vault.get_secret("no-such-secret")
        with pytest.raises(ResourceNotFoundError):
            await vault.get_secret("fabrikam-pal-secret", "0" * 32)

    value = cloud.secret_value("fabrikam-pal-secret")
    assert secret.value == pinned.value == value
    assert len(value) == 40 and value[3:6] == "8Q~"
    assert secret.id == f"{cloud.base_url}/secrets/fabrikam-pal-secret/{secret.properties.version}"
    assert secret.properties.enabled and secret.properties.recovery_level == "Recoverable+Purgeable"
    assert certificate.properties.content_type == "application/x-pem-file"
    assert "-----BEGIN PRIVATE KEY-----" in (certificate.value or "")
    assert "-----BEGIN CERTIFICATE-----" in (certificate.value or "")
    assert missing.value.error is not None and missing.value.error.code == "SecretNotFound"
    assert "no-such-secret was not found in this key vault" in str(missing.value)


async def test_key_vault_serves_tags_and_attributes_per_version(
    cloud: CloudSandbox, managed_identity_env: None
) -> None:
    shared = {"customerTenantId": "*", "clientId": SECRET_APP}
    first = cloud.set_secret("tagged", "Ab18Q~first-version-value-0000000000000", tags=shared)
    cloud.set_secret("tagged", "Ab18Q~second-version-value-000000000000")  # a version without tags
    cloud.set_secret("expiring", "Ab18Q~expiring-value-00000000000000000000", expires=2_000_000_000)
    cloud.set_secret("switched-off", "Ab18Q~disabled-value-0000000000000000000", enabled=False)
    async with (
        ManagedIdentityCredential(client_id=MI_CLIENT, connection_verify=ca(cloud)) as identity,
        SecretClient(
            cloud.key_vault_url, identity, verify_challenge_resource=False, connection_verify=ca(cloud)
        ) as vault,
    ):
        fabrikam = await vault.get_secret("fabrikam-pal-secret")
        certificate = await vault.get_secret("litware-pal-cert")
        tagged, latest = await vault.get_secret("tagged", first), await vault.get_secret("tagged")
        expiring = await vault.get_secret("expiring")
        with pytest.raises(HttpResponseError) as disabled:
            await vault.get_secret("switched-off")

    assert fabrikam.properties.tags == {"customerTenantId": FABRIKAM, "clientId": SECRET_APP}
    assert certificate.properties.tags == {"customerTenantId": LITWARE, "clientId": CERT_APP}
    assert (tagged.properties.tags, latest.properties.tags or {}) == (shared, {})
    assert expiring.properties.expires_on == datetime.fromtimestamp(2_000_000_000, UTC)
    assert disabled.value.status_code == 403 and disabled.value.error is not None
    assert disabled.value.error.innererror == {"code": "SecretDisabled"}
    assert "Ab18Q~" not in str(disabled.value)


def test_key_vault_challenges_and_checks_the_audience(cloud: CloudSandbox) -> None:
    status, headers, body = raw(cloud, "GET", "/secrets/fabrikam-pal-secret?api-version=7.5")
    assert status == 401
    assert headers["www-authenticate"] == (
        f'Bearer authorization="{cloud.base_url}/{PARTNER_TENANT}", resource="{cloud.base_url}"'
    )
    assert json.loads(body)["error"]["code"] == "Unauthorized"

    arm_token = cloud.issue_token(PARTNER_TENANT, MI_PRINCIPAL, "https://management.azure.com")
    status, _, body = raw(cloud, "GET", "/secrets/fabrikam-pal-secret?api-version=7.5", token=arm_token)
    assert status == 401 and "Invalid audience" in json.loads(body)["error"]["message"]

    customer_token = cloud.issue_token(NORTHWIND, NORTHWIND_OID, cloud.base_url)
    status, _, body = raw(cloud, "GET", "/secrets/fabrikam-pal-secret?api-version=7.5", token=customer_token)
    assert status == 401 and "Invalid issuer" in json.loads(body)["error"]["message"]

    vault_token = cloud.issue_token(PARTNER_TENANT, MI_PRINCIPAL, cloud.base_url)
    status, _, body = raw(cloud, "GET", "/secrets/fabrikam-pal-secret?api-version=7.5", token=vault_token)
    assert status == 200 and json.loads(body)["value"] == cloud.secret_value("fabrikam-pal-secret")


# ---- the three sign-in modes, each through to ARM --------------------------------------------------


async def test_client_secret_from_key_vault_signs_in_to_fabrikam(
    cloud: CloudSandbox, managed_identity_env: None
) -> None:
    async with (
        ManagedIdentityCredential(client_id=MI_CLIENT, connection_verify=ca(cloud)) as identity,
        SecretClient(
            cloud.key_vault_url, identity, verify_challenge_resource=False, connection_verify=ca(cloud)
        ) as vault,
    ):
        secret = (await vault.get_secret("fabrikam-pal-secret")).value
    assert secret is not None
    async with ClientSecretCredential(
        FABRIKAM,
        SECRET_APP,
        secret,
        authority=cloud.authority,
        disable_instance_discovery=True,
        connection_verify=ca(cloud),
    ) as credential:
        token = await credential.get_token(ARM_SCOPE)
        async with ACEProvisioningManagementPartnerAPI(
            credential, base_url=cloud.arm_url, credential_scopes=[ARM_SCOPE], connection_verify=ca(cloud)
        ) as client:
            link = await client.partners.get()

    claims = claims_of(cloud, token.token, FABRIKAM)
    assert claims["iss"] == f"https://sts.windows.net/{FABRIKAM}/"
    assert (claims["tid"], claims["oid"], claims["sub"]) == (FABRIKAM, FABRIKAM_OID, FABRIKAM_OID)
    assert (claims["aud"], claims["appid"], claims["idtyp"]) == (
        "https://management.azure.com",
        SECRET_APP,
        "app",
    )
    assert claims["exp"] - time.time() == pytest.approx(3600, abs=10)
    assert (link.partner_id, link.partner_name, link.tenant_id, link.object_id) == (
        OTHER_PARTNER_ID,
        "Fabrikam Consulting",
        FABRIKAM,
        FABRIKAM_OID,
    )


async def test_certificate_from_key_vault_signs_in_to_litware(cloud: CloudSandbox) -> None:
    pem = cloud.secret_value("litware-pal-cert").encode()
    async with CertificateCredential(
        LITWARE, CERT_APP, certificate_data=pem, authority=cloud.authority, connection_verify=ca(cloud)
    ) as credential:
        token = await credential.get_token(ARM_SCOPE)
    claims = claims_of(cloud, token.token, LITWARE)
    assert (claims["tid"], claims["oid"], claims["appid"]) == (LITWARE, LITWARE_OID, CERT_APP)

    # Litware's PEM presented for another app, and a certificate Litware's app never registered.
    other_tenant, _ = fresh_tenant(cloud)
    for tenant_id, client_id, certificate in (
        (other_tenant, SECRET_APP, pem),
        (LITWARE, CERT_APP, rsa_pem("x")),
    ):
        async with CertificateCredential(
            tenant_id,
            client_id,
            certificate_data=certificate,
            authority=cloud.authority,
            connection_verify=ca(cloud),
        ) as refusing:
            with pytest.raises(ClientAuthenticationError) as refused:
                await refusing.get_token(ARM_SCOPE)
        status, body = aadsts_of(refused.value)
        assert (status, body["error_codes"]) == (401, [700027])
        assert "not registered on application" in body["error_description"]


async def test_federated_assertion_from_the_managed_identity_signs_in_to_northwind(
    cloud: CloudSandbox, managed_identity_env: None
) -> None:
    assertion = await managed_identity_token(cloud)
    async with ClientAssertionCredential(
        NORTHWIND, FEDERATED_APP, lambda: assertion, authority=cloud.authority, connection_verify=ca(cloud)
    ) as credential:
        token = await credential.get_token(ARM_SCOPE)
    claims = claims_of(cloud, token.token, NORTHWIND)
    assert (claims["tid"], claims["oid"], claims["appid"]) == (NORTHWIND, NORTHWIND_OID, FEDERATED_APP)


def test_msal_based_sync_credential_discovers_the_tenant_first(cloud: CloudSandbox) -> None:
    from azure.identity import ClientSecretCredential as SyncClientSecretCredential

    before = cloud.stats()["openidConfigurationRequests"].get(FABRIKAM, 0)
    credential = SyncClientSecretCredential(
        FABRIKAM,
        SECRET_APP,
        cloud.secret_value("fabrikam-pal-secret"),
        authority=cloud.authority,
        disable_instance_discovery=True,
        connection_verify=ca(cloud),
    )
    try:
        token = credential.get_token(ARM_SCOPE)
    finally:
        credential.close()
    assert cloud.stats()["openidConfigurationRequests"][FABRIKAM] == before + 1
    assert claims_of(cloud, token.token, FABRIKAM)["oid"] == FABRIKAM_OID


# ---- ARM semantics ---------------------------------------------------------------------------------


async def test_link_lifecycle_put_get_patch_delete_and_revive(cloud: CloudSandbox) -> None:
    tenant_id, object_id = fresh_tenant(cloud)
    async with arm_client(cloud, tenant_id) as client:
        with pytest.raises(ResourceNotFoundError):
            await client.partners.get()
        created = await client.partner.create(PARTNER_ID)
        assert (created.version, created.etag, created.state) == (1, 1, "Active")
        assert (created.tenant_id, created.object_id, created.partner_name) == (
            tenant_id,
            object_id,
            "Contoso Partner",
        )
        assert created.id == f"/providers/microsoft.managementpartner/partners/{PARTNER_ID}"
        assert (await client.partner.get(PARTNER_ID)).version == 1
        with pytest.raises(ResourceNotFoundError):
            await client.partner.get(OTHER_PARTNER_ID)
        with pytest.raises(ResourceExistsError):
            await client.partner.create(OTHER_PARTNER_ID)

        updated = await client.partner.update(OTHER_PARTNER_ID)
        assert (updated.partner_id, updated.version, updated.created_time) == (
            OTHER_PARTNER_ID,
            2,
            created.created_time,
        )
        assert updated.updated_time and created.updated_time and updated.updated_time >= created.updated_time
        assert (await client.partners.get()).partner_id == OTHER_PARTNER_ID

        await client.partner.delete(OTHER_PARTNER_ID)
        with pytest.raises(ResourceNotFoundError):
            await client.partners.get()
        with pytest.raises(ResourceNotFoundError):
            await client.partner.update(PARTNER_ID)
        await client.partner.delete(PARTNER_ID)  # nothing linked: still 200
        assert [link["state"] for link in cloud.links() if link["tenantId"] == tenant_id] == ["Deleted"]

        revived = await client.partner.create(PARTNER_ID)
        assert (revived.version, revived.state, revived.created_time) == (4, "Active", created.created_time)
        operations = [operation.name async for operation in client.operation.list()]
    assert "Microsoft.ManagementPartner/partners/write" in operations
    assert cloud.stats()["armCalls"][tenant_id]["PUT"] == 3


def test_delete_is_a_write_that_removes_only_the_callers_own_link(cloud: CloudSandbox) -> None:
    """As ARM documents DELETE: 200 with an empty body, also when nothing was ever linked (no record is
    made); a write for the rate limits; it soft-deletes the caller's link only, never another
    principal's in the same tenant."""
    tenant_id, object_id = fresh_tenant(cloud)
    other_id = str(uuid.uuid4())
    cloud.set_link(tenant_id, other_id, PARTNER_ID)  # another principal's link in the same tenant
    token = cloud.issue_token(tenant_id, object_id, "https://management.azure.com/")
    status, headers, body = raw(cloud, "DELETE", arm_path(PARTNER_ID), token=token)
    assert (status, body) == (200, b"")
    assert int(headers["x-ms-ratelimit-remaining-tenant-writes"]) < 200
    assert [(link["objectId"], link["state"]) for link in cloud.links() if link["tenantId"] == tenant_id] == [
        (other_id, "Active")
    ]

    cloud.set_link(tenant_id, object_id, PARTNER_ID)
    status, _, body = raw(cloud, "DELETE", arm_path(PARTNER_ID), token=token)
    assert (status, body) == (200, b"")
    states = {link["objectId"]: (link["state"], link["version"]) for link in cloud.links()}
    assert (states[object_id], states[other_id]) == (("Deleted", 2), ("Active", 1))
    status, _, _ = raw(cloud, "GET", arm_path(), token=token)
    assert status == 404
    assert raw(cloud, "DELETE", arm_path(), token=token)[0] == 405  # only /partners/{partnerId}


async def test_put_when_linked_follows_the_switch(cloud: CloudSandbox) -> None:
    tenant_id, object_id = fresh_tenant(cloud)
    cloud.set_link(tenant_id, object_id, OTHER_PARTNER_ID)
    async with arm_client(cloud, tenant_id) as client:
        with pytest.raises(ResourceExistsError) as conflict:
            await client.partner.create(PARTNER_ID)
        assert conflict.value.status_code == 409
        cloud.set_put_when_linked("ok")
        kept = await client.partner.create(PARTNER_ID)
    assert (kept.partner_id, kept.version) == (OTHER_PARTNER_ID, 1)  # the existing record, unchanged
    assert [link["version"] for link in cloud.links() if link["tenantId"] == tenant_id] == [1]


async def test_unknown_partner_id_is_refused_by_put_and_patch(cloud: CloudSandbox) -> None:
    tenant_id, object_id = fresh_tenant(cloud)
    async with arm_client(cloud, tenant_id) as client:
        with pytest.raises(HttpResponseError) as put:
            await client.partner.create("1111111")
        cloud.set_link(tenant_id, object_id, PARTNER_ID)
        with pytest.raises(HttpResponseError) as patch:
            await client.partner.update("1111111")
    for raised in (put.value, patch.value):
        assert raised.status_code == 400
        assert raised.error is not None and raised.error.code == "PartnerIdInvalid"


def test_arm_error_bodies_repeat_code_and_message_at_both_levels(cloud: CloudSandbox) -> None:
    tenant_id, object_id = fresh_tenant(cloud)
    token = cloud.issue_token(tenant_id, object_id, "https://management.azure.com/")
    cases = [
        ("GET", arm_path(), 404, "ManagementPartnerNotFound", "This user or service principal is not linked"),
        ("PUT", arm_path("1111111"), 400, "PartnerIdInvalid", "The Partner ID is not valid"),
        (
            "GET",
            arm_path(PARTNER_ID, "2020-01-01"),
            400,
            "InvalidApiVersionParameter",
            "The api-version '2020",
        ),
    ]
    for method, path, status, code, message in cases:
        got_status, headers, body = raw(cloud, method, path, token=token)
        error = json.loads(body)
        assert got_status == status
        assert error["code"] == error["error"]["code"] == code
        assert error["message"] == error["error"]["message"] and error["message"].startswith(message)
        assert uuid.UUID(headers["x-ms-request-id"])

    status, headers, _ = raw(cloud, "PUT", arm_path(PARTNER_ID), token=token)
    assert status == 200 and int(headers["x-ms-ratelimit-remaining-tenant-writes"]) < 200
    status, headers, body = raw(
        cloud, "GET", arm_path() + "&extra=1", token=token
    )  # trailing-slash twin below
    assert status == 200 and int(headers["x-ms-ratelimit-remaining-tenant-reads"]) < 250
    assert json.loads(body)["properties"]["partnerId"] == PARTNER_ID
    status, _, slash_body = raw(cloud, "GET", arm_path().replace("partners?", "partners/?"), token=token)
    assert status == 200 and json.loads(slash_body)["name"] == PARTNER_ID
    status, _, body = raw(cloud, "PUT", arm_path(OTHER_PARTNER_ID), token=token)
    conflict = json.loads(body)
    assert status == 409 and conflict["code"] == conflict["error"]["code"] == "Conflict"
    status, _, body = raw(cloud, "DELETE", arm_path(PARTNER_ID), token=token)
    assert (status, body) == (200, b"")


def test_arm_refuses_missing_expired_foreign_and_misaddressed_tokens(cloud: CloudSandbox) -> None:
    tenant_id, object_id = fresh_tenant(cloud)
    foreign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    forged = jwt.encode(
        {"aud": "https://management.azure.com", "tid": tenant_id, "oid": object_id, "exp": now + 600},
        foreign_key,
        algorithm="RS256",
    )
    cases = [
        (None, "AuthenticationFailed", "The 'Authorization' header is missing"),
        (
            cloud.issue_token(tenant_id, object_id, "https://management.azure.com", lifetime_seconds=-60),
            "",
            "expiry",
        ),
        (forged, "InvalidAuthenticationToken", "The access token is invalid"),
        (cloud.issue_token(tenant_id, object_id, cloud.base_url), "", "wrong audience"),
    ]
    for token, code, message in cases:
        status, headers, body = raw(cloud, "GET", arm_path(), token=token)
        error = json.loads(body)
        assert status == 401
        assert error["error"]["code"] == error["code"] == (code or "InvalidAuthenticationToken")
        assert message in error["message"]
        assert "claims" not in headers["www-authenticate"]  # or the SDK would try a claims challenge


async def test_arm_token_for_another_resource_raises_client_authentication_error(cloud: CloudSandbox) -> None:
    tenant_id, _ = fresh_tenant(cloud)
    async with secret_credential(cloud, tenant_id) as credential:
        async with ACEProvisioningManagementPartnerAPI(
            credential,
            base_url=cloud.arm_url,
            credential_scopes=["https://graph.microsoft.com/.default"],
            connection_verify=ca(cloud),
        ) as client:
            with pytest.raises(ClientAuthenticationError) as refused:
                await client.partners.get()
    assert refused.value.status_code == 401
    assert refused.value.error is not None and refused.value.error.code == "InvalidAuthenticationToken"


# ---- Entra ID errors -------------------------------------------------------------------------------


async def _token_error(credential: Any) -> tuple[int | None, dict[str, Any], str]:
    async with credential:
        with pytest.raises(ClientAuthenticationError) as raised:
            await credential.get_token(ARM_SCOPE)
    status, body = aadsts_of(raised.value)
    return status, body, str(raised.value)


async def test_sign_in_failures_carry_their_aadsts_codes(
    cloud: CloudSandbox, managed_identity_env: None
) -> None:
    disabled_tenant, _ = fresh_tenant(cloud)
    cloud.set_service_principal_enabled(disabled_tenant, SECRET_APP, False)
    removed_tenant, _ = fresh_tenant(cloud)
    cloud.remove_service_principal(removed_tenant, SECRET_APP)
    assertion = await managed_identity_token(cloud)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        jwt.decode(assertion, options={"verify_signature": False}), other_key, algorithm="RS256"
    )
    expired = cloud.issue_token(
        PARTNER_TENANT,
        MI_PRINCIPAL,
        "api://AzureADTokenExchange",
        lifetime_seconds=-600,
        issuer=f"https://login.microsoftonline.com/{PARTNER_TENANT}/v2.0",
    )

    def assertion_credential(tenant_id: str, client_id: str, value: str) -> ClientAssertionCredential:
        return ClientAssertionCredential(
            tenant_id, client_id, lambda: value, authority=cloud.authority, connection_verify=ca(cloud)
        )

    cases = [
        (secret_credential(cloud, str(uuid.uuid4())), 90002),
        (assertion_credential(WOODGROVE, FEDERATED_APP, assertion), 700016),  # never consented
        (secret_credential(cloud, removed_tenant), 700016),
        (secret_credential(cloud, disabled_tenant), 7000112),
        (secret_credential(cloud, FABRIKAM, "Abc8Q~not-the-right-secret-value-0000000"), 7000215),
        (
            assertion_credential(FABRIKAM, SECRET_APP, assertion),
            70021,
        ),  # the app trusts no federated identity
        (assertion_credential(NORTHWIND, FEDERATED_APP, forged), 700027),
        (assertion_credential(NORTHWIND, FEDERATED_APP, expired), 700024),
    ]
    for credential, code in cases:
        status, body, text = await _token_error(credential)
        assert (status, body["error"], body["error_codes"]) == (AADSTS[code][0], AADSTS[code][1], [code]), (
            code
        )
        assert f"AADSTS{code}:" in text


@pytest.mark.parametrize("code", sorted(AADSTS))
async def test_every_aadsts_code_can_be_injected(cloud: CloudSandbox, code: int) -> None:
    tenant_id, _ = fresh_tenant(cloud)
    cloud.add_fault(tenant_id, FaultRule(target="token", kind="aadsts", aadsts=code, retry_after=3, count=1))
    status, body, _ = await _token_error(secret_credential(cloud, tenant_id, retry_total=0))
    assert (status, body["error"], body["error_codes"]) == (AADSTS[code][0], AADSTS[code][1], [code])
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    async with secret_credential(cloud, tenant_id) as credential:  # count=1: used up
        assert (await credential.get_token(ARM_SCOPE)).token


# ---- faults ----------------------------------------------------------------------------------------


async def test_latency_delays_and_continues(cloud: CloudSandbox) -> None:
    tenant_id, _ = fresh_tenant(cloud)
    async with arm_client(cloud, tenant_id, retry_total=0) as client:
        with pytest.raises(ResourceNotFoundError):
            await client.partners.get()  # token fetched, connection warm
        cloud.add_fault(tenant_id, FaultRule(target="arm", kind="latency", latency_ms=250, count=1))
        started = time.monotonic()
        with pytest.raises(ResourceNotFoundError):
            await client.partners.get()
        slow = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(ResourceNotFoundError):
            await client.partners.get()
        fast = time.monotonic() - started
    assert slow >= 0.24 and fast < 0.2


async def test_throttling_and_server_errors_reach_the_caller(cloud: CloudSandbox) -> None:
    tenant_id, _ = fresh_tenant(cloud)
    async with arm_client(cloud, tenant_id, retry_total=0) as client:
        cloud.add_fault(
            tenant_id, FaultRule(target="arm", kind="status", status=429, retry_after=17, count=1)
        )
        with pytest.raises(HttpResponseError) as throttled:
            await client.partners.get()
        cloud.add_fault(tenant_id, FaultRule(target="arm", kind="status", status=503, count=2))
        for _ in range(2):
            with pytest.raises(HttpResponseError) as unavailable:
                await client.partners.get()
        with pytest.raises(ResourceNotFoundError):  # count exhausted: the real answer again
            await client.partners.get()
    response = throttled.value.response
    assert response is not None and throttled.value.status_code == 429
    assert response.headers["Retry-After"] == "17"
    assert throttled.value.error is not None and throttled.value.error.code == "TooManyRequests"
    assert unavailable.value.status_code == 503
    assert cloud.stats()["faultsApplied"][tenant_id] == 3


async def test_dropped_connection_is_a_service_error(cloud: CloudSandbox) -> None:
    tenant_id, _ = fresh_tenant(cloud)
    cloud.add_fault("*", FaultRule(target="any", kind="drop", count=1))
    async with secret_credential(cloud, tenant_id, retry_total=0) as credential:
        with pytest.raises((ServiceRequestError, ServiceResponseError)):
            await credential.get_token(ARM_SCOPE)  # the "*" rule hits the token POST
    async with arm_client(cloud, tenant_id, retry_total=0) as client:
        await client.partner.delete(PARTNER_ID)  # token fetched, connection warm
        # aiohttp resends an idempotent request once after a dropped connection (RFC 9112), even
        # with retry_total=0: one drop goes unnoticed, two reach the caller.
        cloud.add_fault(tenant_id, FaultRule(target="arm", kind="drop", count=1))
        with pytest.raises(ResourceNotFoundError):
            await client.partners.get()
        cloud.add_fault(tenant_id, FaultRule(target="arm", kind="drop", count=2))
        with pytest.raises((ServiceRequestError, ServiceResponseError)):
            await client.partners.get()
        cloud.add_fault(tenant_id, FaultRule(target="arm", kind="drop", count=1))
        with pytest.raises((ServiceRequestError, ServiceResponseError)):
            await client.partner.update(PARTNER_ID)  # PATCH is not idempotent: never resent
    assert cloud.stats()["armCalls"][tenant_id] == {"DELETE": 1, "GET": 4, "PATCH": 1}


async def test_token_and_key_vault_status_faults(cloud: CloudSandbox, managed_identity_env: None) -> None:
    tenant_id, _ = fresh_tenant(cloud)
    cloud.add_fault(tenant_id, FaultRule(target="token", kind="status", status=503, retry_after=5, count=1))
    async with secret_credential(cloud, tenant_id, retry_total=0) as credential:
        with pytest.raises(ClientAuthenticationError) as refused:
            await credential.get_token(ARM_SCOPE)
    assert refused.value.response is not None and refused.value.response.status_code == 503
    assert refused.value.response.headers["Retry-After"] == "5"
    assert json.loads(refused.value.response.text())["error"] == "temporarily_unavailable"

    cloud.add_fault(PARTNER_TENANT, FaultRule(target="keyvault", kind="status", status=500, count=1))
    async with (
        ManagedIdentityCredential(client_id=MI_CLIENT, connection_verify=ca(cloud)) as identity,
        SecretClient(
            cloud.key_vault_url,
            identity,
            verify_challenge_resource=False,
            connection_verify=ca(cloud),
            retry_total=0,
        ) as vault,
    ):
        with pytest.raises(HttpResponseError) as failed:
            await vault.get_secret("fabrikam-pal-secret")
        assert (await vault.get_secret("fabrikam-pal-secret")).value  # count used up
    assert failed.value.status_code == 500


def test_fault_probability_applies_a_seeded_fraction(cloud: CloudSandbox, tmp_path: Path) -> None:
    tenant_id, object_id = fresh_tenant(cloud)
    token = cloud.issue_token(tenant_id, object_id, "https://management.azure.com")
    cloud.add_fault(tenant_id, FaultRule(target="arm", kind="status", status=500, probability=0.5))
    cloud.add_fault(
        tenant_id, FaultRule(target="token", kind="status", status=500)
    )  # other target: no effect
    statuses = [raw(cloud, "GET", arm_path(), token=token)[0] for _ in range(40)]
    assert set(statuses) == {404, 500} and 5 < statuses.count(500) < 35
    cloud.clear_faults(tenant_id)
    assert raw(cloud, "GET", arm_path(), token=token)[0] == 404

    def run(seed: int) -> list[int]:
        with CloudSandbox(load_scenario(DEMO), state_dir=tmp_path / str(seed), seed=seed) as fresh:
            fresh.add_fault("*", FaultRule(target="arm", kind="status", status=503, probability=0.5))
            fresh_token = fresh.issue_token(NORTHWIND, NORTHWIND_OID, "https://management.azure.com")
            return [raw(fresh, "GET", arm_path(), token=fresh_token)[0] for _ in range(12)]

    assert run(7) == run(7) != run(8)


# ---- stats, admin API, secret hygiene, CLI --------------------------------------------------------------


async def test_stats_count_token_requests_per_tenant(cloud: CloudSandbox) -> None:
    tenant_id, _ = fresh_tenant(cloud)
    cloud.reset_stats()
    async with arm_client(cloud, tenant_id) as client:
        for _ in range(3):
            with pytest.raises(ResourceNotFoundError):
                await client.partners.get()
        await client.partner.create(PARTNER_ID)
    stats = cloud.stats()
    assert stats["tokenRequests"] == {tenant_id: 1}  # the credential caches its token
    assert stats["armCalls"] == {tenant_id: {"GET": 3, "PUT": 1}}
    stats["armCalls"][tenant_id]["GET"] = 99  # a snapshot, not the live counters
    assert cloud.stats()["armCalls"][tenant_id]["GET"] == 3


def test_admin_api_drives_the_sandbox_from_another_process(cloud: CloudSandbox) -> None:
    tenant_id, object_id = fresh_tenant(cloud)
    token = cloud.issue_token(tenant_id, object_id, "https://management.azure.com")

    def admin(method: str, path: str, body: object = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        status, _, reply = raw(cloud, method, f"/_sandbox/{path}", body=data)
        return status, json.loads(reply)

    rule = {"target": "arm", "kind": "status", "status": 503, "count": 1}
    assert admin("POST", "faults", {"tenantId": tenant_id, "rule": rule})[0] == 200
    assert raw(cloud, "GET", arm_path(), token=token)[0] == 503
    assert admin("POST", "faults", {"tenantId": tenant_id, "rule": {**rule, "status": 200}})[0] == 400
    assert admin("PUT", f"links/{tenant_id}/{object_id}", {"partnerId": PARTNER_ID})[0] == 200
    assert admin("PUT", "settings", {"putWhenLinked": "ok"})[0] == 200
    assert raw(cloud, "PUT", arm_path(OTHER_PARTNER_ID), token=token)[0] == 200  # "ok": the existing link
    status, links = admin("GET", "links")
    assert [link["partnerId"] for link in links if link["tenantId"] == tenant_id] == [PARTNER_ID]
    status, stats = admin("GET", "stats")
    assert stats["armCalls"][tenant_id] == {"GET": 1, "PUT": 1}

    tags = {"customerTenantId": tenant_id, "clientId": SECRET_APP}
    made = {"value": "Xy18Q~admin-made-secret-value-000000000", "tags": tags}
    status, reply = admin("PUT", "secrets/admin-made", made)
    assert status == 200 and "value" not in reply and len(reply["version"]) == 32
    assert cloud.secret_value("admin-made") == "Xy18Q~admin-made-secret-value-000000000"
    vault_token = cloud.issue_token(PARTNER_TENANT, MI_PRINCIPAL, cloud.base_url)
    served = raw(cloud, "GET", "/secrets/admin-made?api-version=7.5", token=vault_token)[2]
    assert json.loads(served)["tags"] == tags
    assert admin("PUT", "secrets/admin-made", {**made, "tags": ["clientId"]})[0] == 400
    assert (
        admin("PATCH", f"tenants/{tenant_id}/service-principals/{SECRET_APP}", {"enabled": False})[0] == 200
    )
    assert admin("DELETE", f"links/{tenant_id}/{object_id}")[1] == {"deleted": True}
    assert admin("DELETE", "faults")[0] == 200
    assert admin("POST", "reset-stats")[0] == 200 and admin("GET", "stats")[1]["armCalls"] == {}


def test_no_secret_value_appears_in_any_error_body(
    cloud: CloudSandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    secret = cloud.secret_value("fabrikam-pal-secret")
    pem_lines = [line for line in cloud.secret_value("litware-pal-cert").splitlines() if "-----" not in line]
    form = "grant_type=client_credentials&scope=https%3A%2F%2Fmanagement.azure.com%2F.default&client_secret="
    bodies = []
    for tenant_id, client_id, scope_secret in [
        (str(uuid.uuid4()), SECRET_APP, secret),  # unknown tenant
        (WOODGROVE, SECRET_APP, secret),  # no service principal
        (NORTHWIND, FEDERATED_APP, secret),  # a secret for an app that has none
        (FABRIKAM, SECRET_APP, secret[::-1]),  # wrong secret
        (FABRIKAM, secret, secret),  # the secret pasted as the client ID
    ]:
        body = f"{form}{scope_secret}&client_id={client_id}".encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        status, _, reply = raw(cloud, "POST", f"/{tenant_id}/oauth2/v2.0/token", body=body, headers=headers)
        assert status in (400, 401)
        bodies.append(reply.decode())
    bodies.append(raw(cloud, "GET", "/secrets/fabrikam-pal-secret?api-version=7.5", token=secret)[2].decode())
    bodies.append(raw(cloud, "GET", arm_path(), token=secret)[2].decode())
    bodies.append(json.dumps([cloud.stats(), cloud.links()]))
    out, err = capfd.readouterr()
    for text in [*bodies, out, err]:
        assert secret not in text and secret[::-1] not in text
        assert not any(line in text for line in pem_lines)
    assert "AADSTS7000215" in bodies[3] and "'***' was not found" in bodies[4]


def test_command_line_prints_one_ready_line_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.cloud", "--scenario", str(DEMO), "--state-dir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert set(ready) == {"url", "caPath", "identityEndpoint", "identityHeader", "keyVaultUrl"}
        assert (
            ready["identityEndpoint"] == ready["url"] + "/msi/token" and ready["keyVaultUrl"] == ready["url"]
        )
        assert Path(ready["caPath"]) == tmp_path / "ca.pem"
        context = ssl.create_default_context(cafile=ready["caPath"])
        host, port = ready["url"].removeprefix("https://").split(":")
        connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
        connection.request("GET", f"/{NORTHWIND}/v2.0/.well-known/openid-configuration")
        assert connection.getresponse().status == 200
        connection.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""  # exactly one line
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_stop_ends_keep_alive_connections(tmp_path: Path) -> None:
    running = CloudSandbox(load_scenario(DEMO), state_dir=tmp_path).start()
    context = ssl.create_default_context(cafile=str(running.ca_path))
    port = int(running.base_url.rsplit(":", 1)[1])
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    connection.request("GET", "/_sandbox/stats")
    assert connection.getresponse().read()
    running.stop()
    with pytest.raises((OSError, http.client.HTTPException)):
        connection.request("GET", "/_sandbox/stats")
        connection.getresponse()
    connection.close()
    with pytest.raises(RuntimeError, match="not running"):
        _ = running.base_url


async def test_concurrent_sdk_clients_are_served_in_parallel(cloud: CloudSandbox) -> None:
    tenants = [fresh_tenant(cloud) for _ in range(8)]
    for tenant_id, _ in tenants:
        cloud.add_fault(tenant_id, FaultRule(target="arm", kind="latency", latency_ms=200, count=1))

    async def link(tenant_id: str) -> int:
        async with arm_client(cloud, tenant_id) as client:
            return (await client.partner.create(PARTNER_ID)).version or 0

    started = time.monotonic()
    assert await asyncio.gather(*(link(tenant_id) for tenant_id, _ in tenants)) == [1] * 8
    assert time.monotonic() - started < 1.5  # eight 200 ms delays overlapped
