"""A Key Vault secret serves only the customer its tags name, and a customer's own secret problems end
in one precise, final outcome. Through the real SDKs against the sandbox, plus the pure checks."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sandbox.cloud import CloudSandbox, self_signed_pem
from sandbox.scenario import FaultRule
from shared.links.service import LinkService
from shared.spine.identity import IdentityType
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.settings import Settings
from shared.spine.vault_secret import (
    CertificateNotPem,
    SecretDisabled,
    SecretEmpty,
    SecretExpired,
    SecretIsPem,
    SecretNotBound,
    SecretUse,
    check_attributes,
    check_binding,
    check_value,
)
from tenants import FABRIKAM, FABRIKAM_APP, LITWARE, LITWARE_APP, NORTHWIND, bound_to, onboarding_message
from traces import everything_logged, everything_stored

PLANTED = "Kv47Q~PLANTED-kv-binding-0123456789abcdefg"
NORTHWIND_FABRIKAM_APP_OID = "0b6f1c52-7d1e-4a51-9a43-5d3e8f0a9c11"
"""The secret app's service principal in Northwind, so that Fabrikam's secret *would* sign in there."""


def secret_message(tenant: str, client_id: str, name: str, identity_type: str = "secret") -> dict[str, Any]:
    return onboarding_message(tenant, client_id, identity_type=identity_type, secret_name=name)


async def send(
    service: LinkService, body: dict[str, Any], message_id: str, delivery_count: int = 1
) -> Outcome:
    return await service.handle(
        json.dumps(body).encode(), message_id=message_id, delivery_count=delivery_count
    )


def fragments(value: str) -> list[str]:
    """The value and each of its long lines (a PEM's base64 lines), to look for in logs and tables."""
    return [value, *(line for line in value.splitlines() if len(line) >= 16 and "-----" not in line)]


async def assert_nowhere(
    values: list[str], env: dict[str, str], logs: pytest.LogCaptureFixture, outcome: Outcome
) -> None:
    places = {
        "logs": everything_logged(logs),
        "ledger": await everything_stored(env),
        "outcome": repr(outcome),
    }
    for value in values:
        for place, text in places.items():
            assert value not in text, place


@pytest.fixture(autouse=True)
def _azure_sdk_logs_at_debug(all_logs: pytest.LogCaptureFixture) -> Iterator[None]:
    """The SDK's own request and response logging is scanned too."""
    sdk = logging.getLogger("azure")
    level = sdk.level
    sdk.setLevel(logging.DEBUG)
    yield
    sdk.setLevel(level)


# ---- binding: customerTenantId and clientId tags ------------------------------------------------------


async def test_another_customers_secret_is_refused_before_entra_id_is_asked(
    service: LinkService, cloud: CloudSandbox, env: dict[str, str], all_logs: pytest.LogCaptureFixture
) -> None:
    # Fabrikam's secret would sign in to Northwind too: the app has a service principal there.
    cloud.add_service_principal(NORTHWIND, FABRIKAM_APP, NORTHWIND_FABRIKAM_APP_OID)
    cloud.reset_stats()

    outcome = await send(service, secret_message(NORTHWIND, FABRIKAM_APP, "fabrikam-pal-secret"), "m-1")

    assert (outcome.kind, outcome.code) == (OutcomeKind.REJECTED, "secret-not-bound")
    assert "customerTenantId" in outcome.reason and NORTHWIND in outcome.reason
    remediation = outcome.remediation or ""
    for named in ("fabrikam-pal-secret", "customerTenantId", "clientId", NORTHWIND, FABRIKAM_APP):
        assert named in remediation, named
    assert cloud.stats()["tokenRequests"] == {}
    assert [link for link in cloud.links() if link["tenantId"] == NORTHWIND] == []
    history = await service.ledger.history(NORTHWIND)
    assert [(event.outcome, event.code) for event in history] == [("rejected", "secret-not-bound")]
    await assert_nowhere(fragments(cloud.secret_value("fabrikam-pal-secret")), env, all_logs, outcome)


@pytest.mark.parametrize(
    "tags",
    [
        {},
        {"customerTenantId": FABRIKAM},
        {"clientId": FABRIKAM_APP},
        {"customerTenantId": FABRIKAM, "clientId": LITWARE_APP},
        {"customerTenantId": "*", "clientId": "*"},
        {"customerTenantId": "fabrikam.onmicrosoft.com", "clientId": FABRIKAM_APP},
    ],
    ids=["untagged", "no-client", "no-tenant", "other-client", "star-client", "tenant-not-a-guid"],
)
async def test_a_secret_not_tagged_for_this_customer_and_app_is_refused(
    tags: dict[str, str], service: LinkService, cloud: CloudSandbox
) -> None:
    cloud.set_secret("fabrikam-pal-secret", cloud.secret_value("fabrikam-pal-secret"), tags=tags)
    cloud.reset_stats()
    outcome = await send(service, secret_message(FABRIKAM, FABRIKAM_APP, "fabrikam-pal-secret"), "m-1")
    assert (outcome.kind, outcome.code) == (OutcomeKind.REJECTED, "secret-not-bound")
    assert cloud.stats()["tokenRequests"] == {}
    assert "fabrikam.onmicrosoft.com" not in outcome.reason  # a tag value is shown only when it is a GUID


async def test_a_secret_tagged_for_every_tenant_serves_each_and_ignores_case(
    service: LinkService, cloud: CloudSandbox
) -> None:
    cloud.add_service_principal(NORTHWIND, FABRIKAM_APP, NORTHWIND_FABRIKAM_APP_OID)
    value = cloud.secret_value("fabrikam-pal-secret")
    cloud.set_secret("shared-pal-secret", value, tags=bound_to("*", FABRIKAM_APP.upper()))

    fabrikam = await send(service, secret_message(FABRIKAM, FABRIKAM_APP, "shared-pal-secret"), "m-1")
    northwind = await send(service, secret_message(NORTHWIND, FABRIKAM_APP, "shared-pal-secret"), "m-2")

    assert fabrikam.kind.is_success and northwind.kind is OutcomeKind.LINKED  # Fabrikam had a link
    assert cloud.stats()["tokenRequests"] == {FABRIKAM: 1, NORTHWIND: 1}


async def test_a_tenant_tag_in_upper_case_binds_the_certificate(
    service: LinkService, cloud: CloudSandbox
) -> None:
    pem = cloud.secret_value("litware-pal-cert")
    cloud.set_secret("litware-pal-cert", pem, tags=bound_to(LITWARE.upper(), LITWARE_APP.upper()))
    outcome = await send(
        service, secret_message(LITWARE, LITWARE_APP, "litware-pal-cert", "certificate"), "m-1"
    )
    assert outcome.kind is OutcomeKind.LINKED


# ---- a customer's own secret is missing, empty or malformed: final, for that customer alone ------------

_CERTIFICATE_ONLY = "certificate-only"
_PEM = "the litware PEM"


@pytest.mark.parametrize(
    ("tenant", "client_id", "identity_type", "value", "extra", "code"),
    [
        (FABRIKAM, FABRIKAM_APP, "secret", None, {}, "key-vault-secret-missing"),
        (FABRIKAM, FABRIKAM_APP, "secret", "", {}, "key-vault-secret-empty"),
        (FABRIKAM, FABRIKAM_APP, "secret", " \n", {}, "key-vault-secret-empty"),
        (LITWARE, LITWARE_APP, "certificate", "", {}, "key-vault-secret-empty"),
        (LITWARE, LITWARE_APP, "certificate", PLANTED, {}, "certificate-not-pem"),
        (LITWARE, LITWARE_APP, "certificate", _CERTIFICATE_ONLY, {}, "certificate-not-pem"),
        (FABRIKAM, FABRIKAM_APP, "secret", _PEM, {}, "secret-is-pem"),
        (FABRIKAM, FABRIKAM_APP, "secret", PLANTED, {"enabled": False}, "key-vault-secret-disabled"),
        (FABRIKAM, FABRIKAM_APP, "secret", PLANTED, {"expires": 1_000_000_000}, "key-vault-secret-expired"),
    ],
    ids=[
        "missing",
        "empty",
        "blank",
        "empty-certificate",
        "certificate-not-pem",
        "certificate-without-key",
        "pem-as-client-secret",
        "disabled",
        "expired",
    ],
)
async def test_a_customers_own_secret_problem_is_final_and_named(
    tenant: str,
    client_id: str,
    identity_type: str,
    value: str | None,
    extra: dict[str, Any],
    code: str,
    service: LinkService,
    cloud: CloudSandbox,
    env: dict[str, str],
    all_logs: pytest.LogCaptureFixture,
) -> None:
    name = "customer-pal-credential"
    if value == _PEM:
        value = cloud.secret_value("litware-pal-cert")
    elif value == _CERTIFICATE_ONLY:
        pem = cloud.secret_value("litware-pal-cert")
        value = pem[pem.index("-----BEGIN CERTIFICATE-----") :]
    if value is not None:
        cloud.set_secret(name, value, tags=bound_to(tenant, client_id), **extra)
    cloud.reset_stats()
    body = secret_message(tenant, client_id, name, identity_type)

    outcome = await send(service, body, "m-1")

    assert (outcome.kind, outcome.code) == (OutcomeKind.NEEDS_PARTNER_ACTION, code)
    assert name in (outcome.remediation or "") and name in outcome.reason
    assert "Key Vault Secrets User" not in (outcome.remediation or "")
    assert cloud.stats()["tokenRequests"] == {}
    # Final: recorded once, and a redelivery of the same message does nothing more.
    again = await send(service, body, "m-1", delivery_count=2)
    assert again.code == "duplicate-delivery"
    history = await service.ledger.history(tenant)
    assert [(event.outcome, event.code) for event in history] == [("needs-partner-action", code)]
    (state,) = await service.ledger.link_states(tenant)
    assert (state.outcome, state.code) == ("needs-partner-action", code)
    await assert_nowhere(fragments(value) if value and value.strip() else [], env, all_logs, outcome)


async def test_a_fixed_secret_links_on_the_next_attempt(service: LinkService, cloud: CloudSandbox) -> None:
    good = cloud.secret_value("fabrikam-pal-secret")
    cloud.set_secret("fabrikam-pal-secret", "", tags=bound_to(FABRIKAM, FABRIKAM_APP))
    body = secret_message(FABRIKAM, FABRIKAM_APP, "fabrikam-pal-secret")
    assert (await send(service, body, "m-1")).code == "key-vault-secret-empty"
    cloud.set_secret("fabrikam-pal-secret", good, tags=bound_to(FABRIKAM, FABRIKAM_APP))
    assert (await send(service, body, "m-2")).kind.is_success


async def test_no_key_vault_role_is_our_broken_credential_with_the_role_to_grant(
    service: LinkService, cloud: CloudSandbox
) -> None:
    cloud.add_fault("*", FaultRule(target="keyvault", kind="status", status=403))
    outcome = await send(service, secret_message(FABRIKAM, FABRIKAM_APP, "fabrikam-pal-secret"), "m-1")
    assert outcome.kind is OutcomeKind.PARTNER_CREDENTIAL_BROKEN
    assert "Key Vault Secrets User" in (outcome.remediation or "")


async def test_key_vault_not_configured_is_our_broken_credential(env: dict[str, str]) -> None:
    service = LinkService.from_settings(
        Settings.from_env({k: v for k, v in env.items() if k != "KEY_VAULT_URL"})
    )
    try:
        outcome = await send(service, secret_message(FABRIKAM, FABRIKAM_APP, "fabrikam-pal-secret"), "m-1")
    finally:
        await service.close()
    assert outcome.kind is OutcomeKind.PARTNER_CREDENTIAL_BROKEN
    assert "KEY_VAULT_URL" in (outcome.remediation or "")


# ---- the checks themselves (pure) -------------------------------------------------------------------

SECRET_USE = SecretUse("fabrikam-pal-secret", FABRIKAM, FABRIKAM_APP, IdentityType.SECRET)
CERTIFICATE_USE = SecretUse("litware-pal-cert", LITWARE, LITWARE_APP, IdentityType.CERTIFICATE)


@pytest.mark.parametrize(
    "tags",
    [
        {"customerTenantId": FABRIKAM, "clientId": FABRIKAM_APP},
        {"customerTenantId": FABRIKAM.upper(), "clientId": FABRIKAM_APP.upper()},
        {"CustomerTenantID": f" {FABRIKAM} ", "CLIENTID": FABRIKAM_APP, "owner": "delivery"},
        {"customerTenantId": "*", "clientId": FABRIKAM_APP},
    ],
)
def test_tags_that_bind_the_secret(tags: dict[str, str]) -> None:
    check_binding(SECRET_USE, tags)  # serves Fabrikam's identity...
    elsewhere = dataclasses.replace(SECRET_USE, client_id=LITWARE_APP)
    with pytest.raises(SecretNotBound) as raised:  # ...and no other application
        check_binding(elsewhere, tags)
    assert any(problem.startswith("tags.clientId") for problem in raised.value.problems)


def test_missing_tags_are_each_named() -> None:
    for tags in (None, {}):
        with pytest.raises(SecretNotBound) as raised:
            check_binding(SECRET_USE, tags)
        assert raised.value.problems == ("tags.customerTenantId: missing", "tags.clientId: missing")


def test_a_wrong_tag_shows_what_was_found_only_when_it_is_a_guid() -> None:
    with pytest.raises(SecretNotBound) as raised:
        check_binding(SECRET_USE, {"customerTenantId": NORTHWIND.upper(), "clientId": PLANTED})
    assert raised.value.problems == (
        f"tags.customerTenantId: {NORTHWIND}, expected {FABRIKAM}",
        f"tags.clientId: not a GUID, expected {FABRIKAM_APP}",
    )
    assert PLANTED not in str(raised.value)


def test_star_binds_every_tenant_but_not_every_app() -> None:
    with pytest.raises(SecretNotBound) as raised:
        check_binding(SECRET_USE, {"customerTenantId": "*", "clientId": "*"})
    assert raised.value.problems == (f"tags.clientId: not a GUID, expected {FABRIKAM_APP}",)


def test_disabled_and_expired_secrets() -> None:
    now = datetime.now(UTC)
    check_attributes(SECRET_USE, enabled=None, expires_on=None)
    check_attributes(SECRET_USE, enabled=True, expires_on=now + timedelta(days=1))
    with pytest.raises(SecretDisabled):
        check_attributes(SECRET_USE, enabled=False, expires_on=None)
    with pytest.raises(SecretExpired) as expired:
        check_attributes(SECRET_USE, enabled=True, expires_on=datetime(2024, 5, 1, 12, 30, tzinfo=UTC))
    assert expired.value.detail == "it expired on 2024-05-01 12:30 UTC"


def _certificate_variants() -> dict[str, str]:
    pem, certificate = self_signed_pem("test")
    other_pem, _ = self_signed_pem("other")
    key_pem = pem[: pem.index("-----BEGIN CERTIFICATE-----")]
    certificate_pem = pem[len(key_pem) :]
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass"),
    ).decode()
    ec_key = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    other_key = other_pem[: other_pem.index("-----BEGIN CERTIFICATE-----")]
    return {
        "a client secret": PLANTED,
        "certificate only": certificate_pem,
        "key only": key_pem,
        "encrypted key": encrypted + certificate_pem,
        "damaged key": key_pem.replace(key_pem.splitlines()[3], "A" * 64) + certificate_pem,
        "EC key": ec_key + certificate_pem,
        "another certificate's key": other_key + certificate_pem,
    }


@pytest.mark.parametrize(
    ("variant", "problem"),
    [
        ("a client secret", "it is not PEM"),
        ("certificate only", "the PEM holds no private key"),
        ("key only", "the PEM holds no readable certificate"),
        ("encrypted key", "the PEM's private key cannot be read"),
        ("damaged key", "the PEM's private key cannot be read"),
        ("EC key", "the private key is not RSA"),
        ("another certificate's key", "the certificate does not belong to the private key"),
    ],
)
def test_a_certificate_must_be_a_pem_with_its_rsa_key(variant: str, problem: str) -> None:
    value = _certificate_variants()[variant]
    with pytest.raises(CertificateNotPem) as raised:
        check_value(CERTIFICATE_USE, value)
    assert raised.value.detail.startswith(problem)
    assert all(line not in str(raised.value) for line in fragments(value))


def test_values_that_fit_their_identity() -> None:
    pem, _ = self_signed_pem("test")
    assert check_value(CERTIFICATE_USE, pem) == pem
    assert check_value(SECRET_USE, PLANTED) == PLANTED
    with pytest.raises(SecretIsPem):
        check_value(SECRET_USE, pem)
    for blank in (None, "", " \n\t"):
        with pytest.raises(SecretEmpty):
            check_value(SECRET_USE, blank)
