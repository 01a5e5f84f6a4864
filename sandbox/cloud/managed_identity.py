"""The App Service managed-identity endpoint (GET /msi/token with X-IDENTITY-HEADER), issuing the
scenario's user-assigned identity a token in the partner tenant for any resource asked."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable

from ..scenario import ManagedIdentity as Identity
from .faults import Faults
from .oauth import oauth_shape
from .protocol import Refusal, Reply, Request, json_reply
from .state import CloudState
from .tokens import TokenIssuer

MI_API_VERSION = "2019-08-01"
_NO_SUCH_IDENTITY = (
    "No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId."
)


def _refuse(status: int, message: str) -> Refusal:
    return Refusal(json_reply(status, {"statusCode": status, "message": message}))


class ManagedIdentity:
    def __init__(self, state: CloudState, tokens: TokenIssuer, faults: Faults) -> None:
        self._state, self._tokens, self._faults = state, tokens, faults
        self.header = ""  # IDENTITY_HEADER, new at each start

    def new_header(self) -> None:
        self.header = secrets.token_urlsafe(32)

    def audiences(self, base_url: str) -> Iterable[str]:
        return ()

    def handle(self, request: Request) -> Reply:
        self._state.count("managedIdentityRequests")
        identity = self._state.scenario.managed_identity
        resource = self._check(request, identity)
        partner = self._state.scenario.partner_tenant_id
        context = {"tenant": partner, "client_id": identity.client_id}
        fault = self._faults.apply(request, partner, "token", oauth_shape(self._state, context), context)
        if fault is not None:
            return fault
        token, expires_on = self._tokens.access_token(
            partner,
            identity.principal_id,
            resource,
            identity.client_id,
            self._state.scenario.token_lifetime_seconds,
            issuer=f"https://login.microsoftonline.com/{partner}/v2.0",
            extra={"azp": identity.client_id, "azpacr": "2", "appidacr": "2", "ver": "2.0"},
        )
        body = {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
        }
        return json_reply(200, body)

    def _check(self, request: Request, identity: Identity) -> str:
        """The resource asked for by a well-formed request from the app (it knows the header)."""
        if request.method != "GET" or [part.lower() for part in request.path] != ["msi", "token"]:
            raise _refuse(404, "Not found.")
        offered = request.header("X-IDENTITY-HEADER").encode()
        if not hmac.compare_digest(offered, self.header.encode()):
            raise _refuse(401, "Unauthorized: X-IDENTITY-HEADER is missing or wrong.")
        if request.query.get("api-version") != MI_API_VERSION:
            raise _refuse(400, f"api-version must be {MI_API_VERSION}.")
        resource = request.query.get("resource", "")
        if not resource:
            raise _refuse(400, "The resource query parameter is required.")
        asked = [request.query.get(name, "").lower() for name in ("client_id", "principal_id", "object_id")]
        if (asked[0] and asked[0] != identity.client_id) or any(
            value and value != identity.principal_id for value in asked[1:]
        ):
            raise _refuse(400, _NO_SUCH_IDENTITY)
        return resource
