"""Entra ID's error replies: the AADSTS codes the sandbox knows (HTTP status, OAuth error, description
template) and the OAuth error body, with trace and correlation IDs, scrubbed of every secret value."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from .protocol import ErrorShape, Reply, json_reply
from .state import CloudState

# AADSTS code -> (HTTP status, OAuth error, description). Placeholders are filled from the request,
# never from a client secret or an assertion.
AADSTS: dict[int, tuple[int, str, str]] = {
    # Needs action in the customer tenant.
    700016: (
        400,
        "unauthorized_client",
        "Application with identifier '{client_id}' was not found in the directory '{tenant_name}'. This can "
        "happen if the application has not been installed by the administrator of the tenant or consented to "
        "by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
    ),
    7000229: (
        400,
        "invalid_client",
        "The client application {client_id} is missing service principal in the tenant {tenant}. See "
        "instructions here: https://go.microsoft.com/fwlink/?linkid=2225119",
    ),
    90002: (
        400,
        "invalid_request",
        "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
        "into the correct cloud. Check with your subscription administrator, this may happen if there are "
        "no active subscriptions for the tenant.",
    ),
    500011: (
        400,
        "invalid_resource",
        "The resource principal named {resource} was not found in the tenant named {tenant_name}. This can "
        "happen if the application has not been installed by the administrator of the tenant or consented to "
        "by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
    ),
    7000112: (400, "unauthorized_client", "Application '{client_id}'({app_name}) is disabled."),
    53003: (
        400,
        "invalid_grant",
        "Access has been blocked by Conditional Access policies. The access policy does not allow token "
        "issuance.",
    ),
    # The partner's own credential is broken.
    7000215: (
        401,
        "invalid_client",
        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
        "value, not the client secret ID, for a secret added to app '{client_id}'.",
    ),
    7000222: (
        401,
        "invalid_client",
        "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to "
        "create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate "
        "credentials for added security: https://aka.ms/certCreds.",
    ),
    700027: (401, "invalid_client", "Client assertion failed signature validation."),
    # Transient: retry with backoff.
    50196: (
        400,
        "temporarily_unavailable",
        "The server terminated an operation because it encountered a client request loop. Please contact "
        "your app vendor.",
    ),
    90055: (
        429,
        "temporarily_unavailable",
        "There are too many incoming requests for this tenant. Please try again later.",
    ),
    90024: (503, "temporarily_unavailable", "A transient error has occurred. Please try again."),
    90033: (
        503,
        "temporarily_unavailable",
        "A transient error has occurred. The directory service is temporarily unavailable. Please try again.",
    ),
    90006: (500, "server_error", "The service is temporarily unavailable. Please try again."),
    50033: (400, "temporarily_unavailable", "There was a transient error. Please try the request again."),
    70021: (
        400,
        "invalid_request",
        "No matching federated identity record found for presented assertion. Assertion Issuer: '{issuer}'. "
        "Assertion Subject: '{subject}'. Assertion Audience: '{audience}'. "
        "https://learn.microsoft.com/entra/workload-id/workload-identity-federation",
    ),
    700024: (
        400,
        "invalid_client",
        "Client assertion is not within its valid time range. Current time: {now}, assertion valid from "
        "{nbf}, expiry time of assertion {exp}. Review the documentation at "
        "https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
    ),
    # Malformed requests: the SDKs never send these, a hand-written client might.
    900144: (400, "invalid_request", "The request body must contain the following parameter: '{parameter}'."),
    70003: (400, "unsupported_grant_type", "The app requested an unsupported grant type '{grant_type}'."),
    70011: (
        400,
        "invalid_scope",
        "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid.",
    ),
    7000218: (
        401,
        "invalid_client",
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    ),
    700021: (
        400,
        "invalid_client",
        "Client assertion application identifier doesn't match 'client_id' parameter. Review the "
        "documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
    ),
    50027: (400, "invalid_request", "JWT token is invalid or malformed."),
    # The device authorization grant (a user signing in on another device).
    70016: (
        400,
        "authorization_pending",
        "OAuth 2.0 device flow error. Authorization is still pending. Continue polling.",
    ),
    70020: (
        400,
        "expired_token",
        "The provided value for the input parameter 'device_code' is not valid. This device code has "
        "expired.",
    ),
    70000: (400, "invalid_grant", "Provided grant is invalid or malformed."),
}


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def oauth_error(
    state: CloudState,
    code: int,
    context: dict[str, str],
    *,
    description: str | None = None,
    error: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """Entra's reply for AADSTS`code`, its description filled from `context` (the request's values)."""
    status, default_error, template = AADSTS[code]
    text = f"AADSTS{code}: " + (description or template).format_map(_Blank(context))
    return oauth_reply(state, status, error or default_error, text, [code], context, headers or {})


def oauth_reply(
    state: CloudState,
    status: int,
    error: str,
    text: str,
    codes: list[int],
    context: dict[str, str],
    headers: dict[str, str],
) -> Reply:
    trace_id = str(uuid.uuid4())
    correlation_id = context.get("correlation_id") or str(uuid.uuid4())
    timestamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    # Belt and braces: whatever a caller sent, no secret value leaves in an error.
    for value in state.secret_values():
        text = re.sub(re.escape(value), "***", text, flags=re.IGNORECASE)
    body = {
        "error": error,
        "error_description": f"{text}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\n"
        f"Timestamp: {timestamp}",
        "error_codes": codes,
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
    }
    if codes:
        body["error_uri"] = f"https://login.microsoftonline.com/error?code={codes[0]}"
    return json_reply(status, body, headers)


def oauth_shape(state: CloudState, context: dict[str, str]) -> ErrorShape:
    """How a token endpoint (Entra's or the managed identity's) words an injected HTTP status."""

    def shape(status: int, code: str, message: str, headers: dict[str, str]) -> Reply:
        error = "temporarily_unavailable" if status in (429, 503, 504) else "server_error"
        if status < 500 and status != 429:
            error = "invalid_request"
        return oauth_reply(state, status, error, message, [], context, headers)

    return shape
