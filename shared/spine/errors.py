"""The one place that turns SDK exceptions and AADSTS codes into outcomes.

Outcome reasons are written here, from codes and statuses, never from exception text: an SDK
message can quote a response body, and what we store and log must not depend on what a server
chose to echo.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from enum import StrEnum

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.spine.identity import IdentityType
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.vault_secret import (
    CLIENT_TAG,
    TENANT_TAG,
    CertificateNotPem,
    SecretDisabled,
    SecretEmpty,
    SecretExpired,
    SecretIsPem,
    SecretMissing,
    SecretNotBound,
    UnusableSecret,
)

_AADSTS = re.compile(r"AADSTS(\d{5,7})")


class TransientError(RuntimeError):
    """A passing condition (contention, an outage) that is worth trying again later."""


def is_transient_status(status: int | None) -> bool:
    """The HTTP statuses worth retrying: 408, 429 and every 5xx. Decided here only."""
    return status is not None and (status >= 500 or status in (408, 429))


def is_unavailable(error: BaseException) -> bool:
    """A storage or network outage (worth waiting for), as opposed to a bug or a refused request."""
    if isinstance(error, ServiceRequestError | ServiceResponseError | OSError | TransientError):
        return True
    status = getattr(error, "status_code", None)
    return isinstance(error, HttpResponseError) and (status is None or is_transient_status(status))


class KeyVaultNotConfigured(RuntimeError):
    """A secret or certificate identity needs Key Vault, but KEY_VAULT_URL is not set."""


class Stage(StrEnum):
    """Where in a link attempt an error happened; the same status means different things in each."""

    KEY_VAULT = "key-vault"
    TOKEN = "token"
    ARM = "arm"


_CONSENT = (
    "Ask a Global Administrator of the customer tenant to grant admin consent to the partner's app "
    "(client ID {client_id}); consent creates its service principal there. Then relink."
)
# AADSTS code -> (kind, short reason, remediation or None).
_AADSTS_CODES: dict[int, tuple[OutcomeKind, str, str | None]] = {
    700016: (OutcomeKind.NEEDS_CUSTOMER_ACTION, "the partner's app is not in the customer tenant", _CONSENT),
    7000229: (OutcomeKind.NEEDS_CUSTOMER_ACTION, "the app has no service principal in the tenant", _CONSENT),
    65001: (
        OutcomeKind.NEEDS_CUSTOMER_ACTION,
        "consent to the partner's app was not granted or was withdrawn",
        _CONSENT,
    ),
    90002: (
        OutcomeKind.NEEDS_CUSTOMER_ACTION,
        "the customer tenant was not found",
        "Check the customer tenant ID in the CRM record against the customer's Microsoft Entra "
        "tenant (directory) ID, correct it and send the customer again.",
    ),
    500011: (
        OutcomeKind.NEEDS_CUSTOMER_ACTION,
        "Azure Resource Manager has no service principal in the customer tenant",
        "Ask the customer's administrator to sign in to the Azure portal once (this registers Azure "
        "Resource Manager in their tenant), then relink.",
    ),
    7000112: (
        OutcomeKind.NEEDS_CUSTOMER_ACTION,
        "the partner's app is disabled in the customer tenant",
        "Ask the customer's administrator to enable the enterprise application (client ID {client_id}) "
        "in Microsoft Entra ID, then relink.",
    ),
    53003: (
        OutcomeKind.NEEDS_CUSTOMER_ACTION,
        "blocked by a Conditional Access policy in the customer tenant",
        "Ask the customer's administrator to exclude the partner's service principal (client ID "
        "{client_id}) from the Conditional Access policy that blocks it, then relink.",
    ),
    7000215: (
        OutcomeKind.PARTNER_CREDENTIAL_BROKEN,
        "the client secret is not valid",
        "Put the current client secret value (not its ID) into Key Vault secret {secret_name}, or move "
        "this customer to the federated identity.",
    ),
    7000222: (
        OutcomeKind.PARTNER_CREDENTIAL_BROKEN,
        "the client secret has expired",
        "Create a new client secret for the app (client ID {client_id}), store it in Key Vault secret "
        "{secret_name}, or move this customer to the federated identity.",
    ),
    700027: (
        OutcomeKind.PARTNER_CREDENTIAL_BROKEN,
        "the client assertion signature is not valid",
        "Check that the app (client ID {client_id}) trusts the certificate in Key Vault secret "
        "{secret_name}, or that its federated credential trusts the Function App's managed identity.",
    ),
    50196: (OutcomeKind.TRANSIENT, "Entra ID detected a request loop", None),
    90055: (OutcomeKind.TRANSIENT, "Entra ID is throttling token requests", None),
    90024: (OutcomeKind.TRANSIENT, "Entra ID had a transient error", None),
    90033: (OutcomeKind.TRANSIENT, "Entra ID is temporarily unavailable", None),
    90006: (OutcomeKind.TRANSIENT, "Entra ID had an internal error", None),
    50033: (OutcomeKind.TRANSIENT, "Entra ID asked for a retry", None),
    70021: (
        OutcomeKind.TRANSIENT,
        "no matching federated identity credential (normal for a few minutes after one is created)",
        "If this persists, check the app's federated credential: issuer, subject (the managed "
        "identity's principal ID) and audience api://AzureADTokenExchange.",
    ),
    700024: (OutcomeKind.TRANSIENT, "the client assertion is outside its valid time range", None),
}

IDENTITY_GONE = frozenset({"AADSTS700016", "AADSTS7000229", "AADSTS65001", "AADSTS90002"})
"""Sign-in refusals that mean the identity no longer exists for the tenant (its service principal
deleted, consent withdrawn, the tenant gone): a link belongs to its identity, so it went with it.
Not a disabled app (AADSTS7000112) or a Conditional Access block (AADSTS53003): those identities
and their links still exist."""

_TAGGED = f"tagged {TENANT_TAG}={{tenant_id}} {CLIENT_TAG}={{client_id}}"
# UnusableSecret code -> (kind, reason, remediation); a secret's name, GUIDs and our words only.
_UNUSABLE_SECRETS: dict[str, tuple[OutcomeKind, str, str]] = {
    SecretNotBound.code: (
        OutcomeKind.REJECTED,
        "Key Vault secret {secret_name} is not bound to customer tenant {tenant_id} and client ID "
        "{client_id} ({detail}); it was not used",
        "If Key Vault secret {secret_name} is meant for this customer, set its tags "
        f"{TENANT_TAG}={{tenant_id}} (or * for a multi-tenant app's secret shared by every customer) and "
        f"{CLIENT_TAG}={{client_id}} (az keyvault secret set-attributes --vault-name <vault> --name "
        f"{{secret_name}} --tags {TENANT_TAG}={{tenant_id}} {CLIENT_TAG}={{client_id}}), then relink; "
        "otherwise correct the secret name in the CRM record.",
    ),
    SecretMissing.code: (
        OutcomeKind.NEEDS_PARTNER_ACTION,
        "Key Vault secret {secret_name} does not exist",
        "Create Key Vault secret {secret_name} holding {holding}, " + _TAGGED + ", or correct the secret "
        "name in the CRM record; then relink.",
    ),
    SecretEmpty.code: (
        OutcomeKind.NEEDS_PARTNER_ACTION,
        "Key Vault secret {secret_name} is empty",
        "Store {holding} as a new version of Key Vault secret {secret_name}, " + _TAGGED + " (tags belong "
        "to a version), then relink.",
    ),
    SecretDisabled.code: (
        OutcomeKind.NEEDS_PARTNER_ACTION,
        "Key Vault secret {secret_name} is disabled",
        "Enable Key Vault secret {secret_name} (az keyvault secret set-attributes --enabled true) or store "
        "a new version holding {holding}, " + _TAGGED + "; then relink.",
    ),
    SecretExpired.code: (
        OutcomeKind.NEEDS_PARTNER_ACTION,
        "Key Vault secret {secret_name} has expired ({detail})",
        "Store a current credential, {holding}, as a new version of Key Vault secret {secret_name} with a "
        "later expiry, " + _TAGGED + "; then relink.",
    ),
    CertificateNotPem.code: (
        OutcomeKind.NEEDS_PARTNER_ACTION,
        "Key Vault secret {secret_name} is not a usable certificate: {detail}",
        "Store the app's certificate in Key Vault secret {secret_name} as PEM (content type "
        "application/x-pem-file): the unencrypted RSA private key followed by its certificate, "
        + _TAGGED
        + "; then relink.",
    ),
    SecretIsPem.code: (
        OutcomeKind.NEEDS_PARTNER_ACTION,
        "Key Vault secret {secret_name} holds a PEM key or certificate where a client secret belongs; "
        "it was not sent",
        "Put the app's client secret value into Key Vault secret {secret_name}, " + _TAGGED + ", or send "
        "this customer with identity type certificate; then relink.",
    ),
}
_HOLDING = {
    IdentityType.SECRET: "the app's client secret value",
    IdentityType.CERTIFICATE: "the app's PEM private key and certificate",
}

_ARM_FORBIDDEN = (
    "Ask the customer's administrator why the partner's service principal (client ID {client_id}) "
    "may not call Azure Resource Manager (a policy or a deny assignment), then relink."
)


def aadsts_code(error: BaseException) -> int | None:
    match = _AADSTS.search(str(error))
    return int(match.group(1)) if match else None


def retry_after_seconds(error: BaseException, *, now: float | None = None) -> float | None:
    """The server's Retry-After (or retry-after-ms) as seconds, when the error carries one."""
    response = getattr(error, "response", None)
    raw_headers = getattr(response, "headers", None)
    if not raw_headers:
        return None
    headers = {str(name).lower(): str(value) for name, value in raw_headers.items()}
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        if headers.get(name):
            try:
                return max(0.0, float(headers[name]) / 1000)
            except ValueError:
                pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def _status(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    if status is None:
        status = getattr(getattr(error, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _arm_error_code(error: BaseException) -> str | None:
    inner = getattr(error, "error", None)
    code = getattr(inner, "code", None)
    return code if isinstance(code, str) else None


def transient(reason: str, *, code: str | None = None, retry_after: float | None = None) -> Outcome:
    return Outcome(OutcomeKind.TRANSIENT, reason, code=code, retry_after=retry_after)


def classify_error(
    error: BaseException, *, stage: Stage, client_id: str, secret_name: str | None = None
) -> Outcome:
    """Map an exception raised while linking to the outcome it means."""
    names = {"client_id": client_id, "secret_name": secret_name or "(none: federated identity)"}
    if isinstance(error, UnusableSecret):
        return _unusable_secret(error)

    passing = _passing_or_sign_in(error, stage, names)
    if passing is not None:
        return passing
    status = _status(error)
    if stage is Stage.KEY_VAULT:
        return _key_vault_outcome(error, status, names)
    if stage is Stage.TOKEN:
        # No AADSTS code: our side could not even produce a credential (managed identity missing,
        # unreadable certificate, ...). That breaks every tenant using this identity.
        return Outcome(
            OutcomeKind.PARTNER_CREDENTIAL_BROKEN,
            f"could not get a token for the customer tenant ({type(error).__name__})",
            code=type(error).__name__,
            remediation="Check the Function App's managed identity (AZURE_CLIENT_ID) and the app's "
            "credentials; see the operations runbook.",
        )

    return _arm_outcome(error, status, names)


def _passing_or_sign_in(error: BaseException, stage: Stage, names: dict[str, str]) -> Outcome | None:
    """A network error or a transient status (try again), or a sign-in refused with an AADSTS code."""
    if isinstance(error, ServiceRequestError | ServiceResponseError | asyncio.TimeoutError | OSError):
        return transient(f"{stage.value}: network error ({type(error).__name__})", code="network")
    code = aadsts_code(error) if stage is Stage.TOKEN else None
    if code is not None:
        kind, reason, remediation = _AADSTS_CODES.get(code, _unknown_aadsts(error))
        return Outcome(
            kind,
            f"sign-in to the customer tenant failed: {reason}",
            code=f"AADSTS{code}",
            remediation=remediation.format(**names) if remediation else None,
            retry_after=retry_after_seconds(error) if kind is OutcomeKind.TRANSIENT else None,
        )
    status = _status(error)
    if is_transient_status(status):
        return transient(
            f"{stage.value}: HTTP {status} from the service",
            code=f"HTTP{status}",
            retry_after=retry_after_seconds(error),
        )
    return None


def _key_vault_outcome(error: BaseException, status: int | None, names: dict[str, str]) -> Outcome:
    """Key Vault could not be read: our side (the vault's setting, the Function App's role), so
    every tenant using Key Vault is affected."""
    if isinstance(error, KeyVaultNotConfigured):
        reason = "Key Vault is not configured (KEY_VAULT_URL is not set)"
        remediation = "Set KEY_VAULT_URL to the vault of the customers' secrets (azd provision does)."
    elif status in (401, 403):
        reason = f"the Function App may not read Key Vault secrets (HTTP {status})"
        remediation = (
            "Grant the Function App's managed identity the Key Vault Secrets User role on the vault "
            "(azd provision restores it)."
        )
    else:
        failure = f"HTTP {status}" if status else type(error).__name__
        reason = f"could not read Key Vault secret {{secret_name}} ({failure})"
        remediation = "Check KEY_VAULT_URL and the vault; see the operations runbook."
    return Outcome(
        OutcomeKind.PARTNER_CREDENTIAL_BROKEN,
        reason.format(**names),
        code="KeyVault" + (f"HTTP{status}" if status else type(error).__name__),
        remediation=remediation.format(**names),
    )


def _arm_outcome(error: BaseException, status: int | None, names: dict[str, str]) -> Outcome:
    """What an ARM error that is neither a network error nor a retryable status means."""
    arm_code = _arm_error_code(error)
    if arm_code == "PartnerIdInvalid":
        return Outcome(
            OutcomeKind.INVALID_PARTNER_ID,
            "Microsoft does not recognise the partner ID",
            code=arm_code,
            remediation="Use the Associated Partner ID (location MPN ID) shown in Partner Center, "
            "not the global (virtual organisation) ID.",
        )
    if isinstance(error, ClientAuthenticationError) and status == 403:
        return Outcome(
            OutcomeKind.NEEDS_CUSTOMER_ACTION,
            "Azure Resource Manager refused the call (forbidden)",
            code=arm_code or "HTTP403",
            remediation=_ARM_FORBIDDEN.format(**names),
        )
    if status == 401:
        # Wrong audience or an expired token: a fresh token on the next attempt fixes the latter.
        return transient("arm: the access token was refused", code=arm_code or "HTTP401")
    if isinstance(error, HttpResponseError):
        return transient(f"arm: unexpected HTTP {status} ({arm_code or 'no error code'})", code=arm_code)

    return transient(f"arm: unexpected error ({type(error).__name__})", code=type(error).__name__)


def _unusable_secret(error: UnusableSecret) -> Outcome:
    """A customer's own Key Vault secret cannot serve it: final for that customer alone."""
    kind, reason, remediation = _UNUSABLE_SECRETS[error.code]
    use = error.use
    names = {
        "secret_name": use.name,
        "tenant_id": use.tenant_id,
        "client_id": use.client_id,
        "detail": error.detail,
        "holding": _HOLDING.get(use.identity_type, "the credential"),
    }
    return Outcome(
        kind,
        reason.format(**names),
        code=error.code,
        remediation=remediation.format(**names),
        details=error.problems if isinstance(error, SecretNotBound) else (),
    )


def _unknown_aadsts(error: BaseException) -> tuple[OutcomeKind, str, str | None]:
    status = _status(error)
    if is_transient_status(status):
        return OutcomeKind.TRANSIENT, "Entra ID returned a retryable error", None
    return (
        OutcomeKind.NEEDS_CUSTOMER_ACTION,
        "Entra ID refused the sign-in",
        "Look up the AADSTS code in Microsoft's error reference and resolve it with the customer's "
        "administrator, then relink.",
    )
