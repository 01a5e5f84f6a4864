"""A person signs in as a user account in a customer tenant (the device-code flow: MFA and
Conditional Access happen in their browser), and palctl acts as that account with the service's own
linker. The sign-in gives palctl the account's ARM token, nothing else: no password, no refresh token
is kept, and nothing of the token is printed or sent to the API (only the object ID and sign-in name
read from it).

The endpoints are the service's settings (AZURE_AUTHORITY_HOST, ARM_ENDPOINT, and for the local
sandbox ARM_AUDIENCE, ALLOW_CUSTOM_ENDPOINTS, PAL_CA_BUNDLE), checked by the same reader.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from palctl.errors import Failed
from shared.spine.identity import Identity, IdentityType
from shared.spine.settings import SignInCloud

PUBLIC_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
"""The public client the sign-in is made with by default: the Azure CLI's, which every tenant knows
(as `az login --use-device-code`); `--public-client-id` or PAL_PUBLIC_CLIENT_ID names the partner's own."""
SIGN_IN_SECONDS = 300
"""How long the person has to complete the sign-in (Entra's codes last 15 minutes)."""

Prompt = Callable[[str, str, datetime], None]
"""Shows the person where to sign in and the code to enter: (verification URI, user code, expiry)."""


@dataclass(frozen=True)
class SignedInUser:
    """The account a person signed in as: who it is, and its credential for ARM (never shown)."""

    tenant_id: str
    object_id: str
    user_principal_name: str
    credential: Any = field(repr=False)
    """An async token credential over the signed-in device-code credential."""

    @property
    def identity(self) -> Identity:
        return Identity(IdentityType.USER, self.object_id)


def sign_in(tenant_id: str, cloud: SignInCloud, prompt: Prompt, *, public_client_id: str) -> SignedInUser:
    """Sign in to the tenant with a device code (blocks until the person completes it or it expires);
    Failed when the sign-in is refused or lands in another tenant."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DeviceCodeCredential

    credential = DeviceCodeCredential(
        tenant_id=tenant_id,
        client_id=public_client_id,
        authority=cloud.authority,
        disable_instance_discovery=cloud.allow_custom,
        connection_verify=cloud.ca_bundle or True,
        prompt_callback=prompt,
        timeout=SIGN_IN_SECONDS,
    )
    try:
        token = credential.get_token(cloud.arm_scope)
    except ClientAuthenticationError as error:
        raise Failed(f"the sign-in did not complete: {_sign_in_error(error)}") from None
    claims = token_claims(token.token)
    who = signed_in(claims, tenant_id)
    return SignedInUser(tenant_id, who[0], who[1], InThread(credential))


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT the sign-in just returned (read, not verified: it came from Entra ID over
    TLS and is only read for who signed in; ARM verifies it)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
        raise Failed("the sign-in returned a token palctl cannot read") from None
    if not isinstance(claims, dict):
        raise Failed("the sign-in returned a token palctl cannot read")
    return claims


def signed_in(claims: dict[str, Any], tenant_id: str) -> tuple[str, str]:
    """The account's object ID and sign-in name from its token's claims; Failed when the token is not
    a user's of that tenant."""
    from shared.spine.identifiers import is_guid
    from shared.spine.untrusted import shown

    tenant = claims.get("tid")
    if not isinstance(tenant, str) or tenant.lower() != tenant_id.lower():
        raise Failed(f"the sign-in is for another tenant ({shown(tenant, 40)}), not {tenant_id}")
    object_id = claims.get("oid")
    name = claims.get("upn") or claims.get("unique_name") or claims.get("preferred_username")
    if not (isinstance(object_id, str) and is_guid(object_id)) or claims.get("idtyp", "user") != "user":
        raise Failed("the sign-in is not a user account's (no user object ID in its token)")
    if not isinstance(name, str) or not name:
        raise Failed("the sign-in gave no sign-in name (upn) for the account")
    return object_id.lower(), name


def _sign_in_error(error: Exception) -> str:
    """Entra ID's error code and first line, screened (never a token: azure-identity puts none there)."""
    from shared.spine.untrusted import shown

    message = getattr(error, "message", None) or str(error)
    return shown(str(message).splitlines()[0] if message else type(error).__name__, 300)


class InThread:
    """A synchronous credential as an asynchronous one: each token asked in a worker thread, so the
    event loop keeps running (azure-identity's device-code credential is synchronous only)."""

    def __init__(self, credential: Any) -> None:
        self._credential = credential

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._credential.get_token, *scopes, **kwargs)

    async def close(self) -> None:
        await asyncio.to_thread(self._credential.close)

    async def __aenter__(self) -> InThread:
        return self

    async def __aexit__(self, *args: object) -> None:
        await self.close()


class OneSignedInUser:
    """The linker's credential source for palctl: the signed-in account's credential, and no other."""

    def __init__(self, user: SignedInUser) -> None:
        self._user = user

    async def get(self, tenant_id: str, identity: Identity) -> Any:
        if (tenant_id, identity) != (self._user.tenant_id, self._user.identity):
            raise Failed("palctl signs in as one account at a time")
        return self._user.credential

    async def forget(self, tenant_id: str, identity: Identity) -> None:
        """Nothing to forget: the sign-in is the person's, not a stored secret."""
