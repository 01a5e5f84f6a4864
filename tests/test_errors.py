"""The error classifier (pure logic): AADSTS codes, HTTP statuses and network errors to outcomes.

End-to-end tests drive the same paths through the real SDKs and the sandbox; this file pins the
whole table, including codes the sandbox is not asked to produce elsewhere.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
)

from shared.spine.errors import KeyVaultNotConfigured, Stage, classify_error, retry_after_seconds
from shared.spine.identity import IdentityType
from shared.spine.outcomes import OutcomeKind
from shared.spine.vault_secret import SecretNotBound, SecretUse, UnusableSecret

APP = "81a6daa3-a704-4f3e-a1ca-45fa036d5a09"
TENANT = "892ad125-0722-49b7-a665-aea7ede649e4"


class _Response:
    """The few attributes azure-core exceptions read from a response."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        self.headers = headers or {}
        self.reason = "reason"
        self.request = None

    def text(self, encoding: str | None = None) -> str:
        return ""


def entra_error(code: int, status: int = 400) -> ClientAuthenticationError:
    message = f"Microsoft Entra ID error '(invalid_client) AADSTS{code}: description'"
    return ClientAuthenticationError(message=message, response=_Response(status))


def classify(error: BaseException, stage: Stage = Stage.TOKEN) -> Any:
    return classify_error(error, stage=stage, client_id=APP, secret_name="fabrikam-pal-secret")


@pytest.mark.parametrize("code", [700016, 7000229, 90002, 500011, 7000112, 53003])
def test_customer_side_sign_in_failures_need_customer_action(code: int) -> None:
    outcome = classify(entra_error(code))
    assert outcome.kind is OutcomeKind.NEEDS_CUSTOMER_ACTION
    assert outcome.code == f"AADSTS{code}"
    assert outcome.remediation and "description" not in outcome.reason


@pytest.mark.parametrize("code", [7000215, 7000222, 700027])
def test_our_own_credential_broken(code: int) -> None:
    outcome = classify(entra_error(code, 401))
    assert outcome.kind is OutcomeKind.PARTNER_CREDENTIAL_BROKEN
    assert outcome.remediation is not None


@pytest.mark.parametrize("code", [50196, 90055, 90024, 90033, 90006, 50033, 70021, 700024])
def test_transient_sign_in_failures(code: int) -> None:
    assert classify(entra_error(code)).kind is OutcomeKind.TRANSIENT


def test_consent_remediation_names_the_app() -> None:
    assert APP in (classify(entra_error(700016)).remediation or "")


def test_unknown_aadsts_code() -> None:
    assert classify(entra_error(123456)).kind is OutcomeKind.NEEDS_CUSTOMER_ACTION
    assert classify(entra_error(123456, 503)).kind is OutcomeKind.TRANSIENT


def test_throttling_carries_retry_after() -> None:
    error = HttpResponseError(response=_Response(429, {"Retry-After": "7"}))
    outcome = classify(error, Stage.ARM)
    assert (outcome.kind, outcome.retry_after, outcome.code) == (OutcomeKind.TRANSIENT, 7.0, "HTTP429")


def test_retry_after_forms() -> None:
    assert retry_after_seconds(HttpResponseError(response=_Response(503, {"retry-after-ms": "1500"}))) == 1.5
    http_date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert (
        retry_after_seconds(HttpResponseError(response=_Response(503, {"Retry-After": http_date})), now=0) > 0
    )
    assert retry_after_seconds(HttpResponseError(response=_Response(503, {"Retry-After": "soon"}))) is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_transient(status: int) -> None:
    assert classify(HttpResponseError(response=_Response(status)), Stage.ARM).kind is OutcomeKind.TRANSIENT


def test_network_errors_are_transient() -> None:
    assert classify(ServiceRequestError("connection reset"), Stage.ARM).kind is OutcomeKind.TRANSIENT
    assert classify(TimeoutError(), Stage.TOKEN).kind is OutcomeKind.TRANSIENT


def test_reaching_key_vault_at_all_is_ours() -> None:
    forbidden = classify(HttpResponseError(response=_Response(403)), Stage.KEY_VAULT)
    assert forbidden.kind is OutcomeKind.PARTNER_CREDENTIAL_BROKEN
    assert "Key Vault Secrets User" in (forbidden.remediation or "")
    not_configured = classify(KeyVaultNotConfigured("x"), Stage.KEY_VAULT)
    assert not_configured.kind is OutcomeKind.PARTNER_CREDENTIAL_BROKEN
    assert "KEY_VAULT_URL" in (not_configured.remediation or "")
    odd = classify(HttpResponseError(response=_Response(400)), Stage.KEY_VAULT)
    assert odd.kind is OutcomeKind.PARTNER_CREDENTIAL_BROKEN
    assert "fabrikam-pal-secret" in odd.reason and "Key Vault Secrets User" not in (odd.remediation or "")


_USE = SecretUse("fabrikam-pal-secret", TENANT, APP, IdentityType.SECRET)


@pytest.mark.parametrize(
    "error",
    [kind(_USE, "detail") for kind in UnusableSecret.__subclasses__() if kind is not SecretNotBound]
    + [SecretNotBound(_USE, ("tags.clientId: missing",))],
    ids=lambda error: error.code,
)
def test_a_customers_own_unusable_secret_is_final_and_named(error: UnusableSecret) -> None:
    outcome = classify(error, Stage.KEY_VAULT)
    expected = OutcomeKind.REJECTED if isinstance(error, SecretNotBound) else OutcomeKind.NEEDS_PARTNER_ACTION
    assert (outcome.kind, outcome.code) == (expected, error.code)
    remediation = outcome.remediation or ""
    assert "fabrikam-pal-secret" in outcome.reason and "fabrikam-pal-secret" in remediation
    assert f"customerTenantId={TENANT}" in remediation and f"clientId={APP}" in remediation
    assert "Key Vault Secrets User" not in remediation


def test_arm_forbidden_and_unauthorised() -> None:
    forbidden = ClientAuthenticationError(response=_Response(403))
    assert classify(forbidden, Stage.ARM).kind is OutcomeKind.NEEDS_CUSTOMER_ACTION
    unauthorised = ClientAuthenticationError(response=_Response(401))
    assert classify(unauthorised, Stage.ARM).kind is OutcomeKind.TRANSIENT


def test_token_failure_without_a_code_is_a_broken_partner_credential() -> None:
    outcome = classify(ValueError("could not load certificate"), Stage.TOKEN)
    assert outcome.kind is OutcomeKind.PARTNER_CREDENTIAL_BROKEN
    assert "certificate" not in outcome.reason  # exception text never becomes the reason
