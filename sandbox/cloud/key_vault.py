"""Key Vault secrets (GET /secrets/{name}[/{version}]) for the managed identity only, with the vault's
challenge, AKV error codes, disabled secrets and per-version tags and content types."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from .faults import Faults
from .protocol import Refusal, Reply, Request, json_reply
from .state import CloudState, SecretVersion
from .tokens import TokenIssuer

_NOT_FOUND = (
    "A secret with (name/id) {shown} was not found in this key vault. If you recently deleted this secret "
    "you may be able to recover it using the correct recovery command. For help resolving this issue, "
    "please see https://go.microsoft.com/fwlink/?linkid=2125182"
)


def kv_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return json_reply(status, {"error": {"code": code, "message": message}}, headers)


def _forbidden(message: str, inner: str) -> Refusal:
    return Refusal(
        json_reply(403, {"error": {"code": "Forbidden", "message": message, "innererror": {"code": inner}}})
    )


class KeyVault:
    """The vault's audience is the sandbox's own URL, so its tokens come from the same authority."""

    def __init__(self, state: CloudState, tokens: TokenIssuer, faults: Faults) -> None:
        self._state, self._tokens, self._faults = state, tokens, faults

    def audiences(self, base_url: str) -> Iterable[str]:
        return (base_url, base_url + "/")

    def handle(self, request: Request) -> Reply:
        self._state.count("keyVaultRequests")
        claims = self._authorize(request)
        fault = self._faults.apply(request, str(claims["tid"]), "keyvault", kv_error)
        if fault is not None:
            return fault
        if not request.query.get("api-version"):
            return kv_error(400, "BadParameter", "The 'api-version' query parameter is missing.")
        if request.method != "GET" or len(request.path) not in (2, 3):
            return kv_error(
                405, "MethodNotAllowed", "The sandbox vault only serves GET /secrets/{name}[/{version}]."
            )
        name, wanted = request.path[1], (request.path[2] if len(request.path) == 3 else None)
        found = self._state.find_secret(name, wanted)
        if found is None:
            shown = f"{name}/{wanted}" if wanted else name
            return kv_error(404, "SecretNotFound", _NOT_FOUND.format(shown=shown))
        if not found.enabled:
            raise _forbidden("Operation get is not allowed on a disabled secret.", "SecretDisabled")
        return json_reply(
            200,
            _secret_bundle(request.base_url, name, found),
            {"x-ms-request-id": str(uuid.uuid4()), "x-ms-keyvault-service-version": "1.9.0.0"},
        )

    def _authorize(self, request: Request) -> dict[str, Any]:
        """The claims of the managed identity's token for this vault; refuses any other caller."""
        partner, base = self._state.scenario.partner_tenant_id, request.base_url
        challenge = {"WWW-Authenticate": f'Bearer authorization="{base}/{partner}", resource="{base}"'}
        claims, problem = self._tokens.bearer(request.header("Authorization"))
        if problem == "missing":
            message = "AKV10000: Request is missing a Bearer or PoP token."
            raise Refusal(kv_error(401, "Unauthorized", message, challenge))
        if problem is not None or claims is None:
            raise Refusal(
                kv_error(401, "Unauthorized", f"AKV10022: The access token is {problem}.", challenge)
            )
        if str(claims["aud"]).rstrip("/") != base:
            message = f"AKV10022: Invalid audience. Expected {base}, found: {claims['aud']}."
            raise Refusal(kv_error(401, "Unauthorized", message, challenge))
        if claims["tid"] != partner:
            expected = f"https://sts.windows.net/{partner}/"
            message = f"AKV10032: Invalid issuer. Expected one of {expected}, found: {claims['iss']}."
            raise Refusal(kv_error(401, "Unauthorized", message, challenge))
        if claims["oid"] != self._state.scenario.managed_identity.principal_id:
            raise _forbidden(
                "Caller is not authorized to perform action on resource.\r\n"
                f"Caller: appid={claims.get('appid', '')};oid={claims['oid']}\r\n"
                "Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'",
                "ForbiddenByRbac",
            )
        return claims


def _secret_bundle(base_url: str, name: str, found: SecretVersion) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "enabled": True,
        "created": found.created,
        "updated": found.created,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    }
    if found.expires is not None:
        attributes["exp"] = found.expires
    body: dict[str, Any] = {
        "value": found.value,
        "id": f"{base_url}/secrets/{name}/{found.version}",
        "attributes": attributes,
        "tags": dict(found.tags),
    }
    if found.content_type:
        body["contentType"] = found.content_type
    return body
