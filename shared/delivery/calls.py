"""The delivery's HTTP calls as the linked service principal, on the shared transport.

Like the audit's reader (`shared.attribution.inventory`): one token per audience from the link's
credential; 401/403 raise `ApiRefused` (here `Refused`, with Dataverse's error code, so that a
missing application user is told apart); 429 raises `Throttled` with Retry-After; a transient status
(`shared.spine.errors.is_transient_status`) raises the SDK's `HttpResponseError` for the spine to
classify; any other 4xx raises `CallFailed` with the service's error code and its message, screened
and capped (it is the service's text about our request, never the file).
"""

from __future__ import annotations

from typing import Any

from azure.core import AsyncPipelineClient
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline import policies
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.rest import HttpRequest

from shared.attribution.inventory import Api, ApiRefused, Throttled
from shared.spine.errors import is_transient_status
from shared.spine.untrusted import shown

__all__ = ["CallFailed", "Caller", "Refused", "error_of"]

MESSAGE_LIMIT = 300


class Refused(ApiRefused):
    """401/403, with the service's error code when it gave one (Dataverse's 0x80072560: no
    application user for the caller in the environment)."""

    def __init__(self, api: Api, status: int, code: str | None) -> None:
        super().__init__(api, status)
        self.code = code


class CallFailed(Exception):
    """A 4xx other than 401/403/408/429: the request itself was refused; final."""

    def __init__(self, api: Api, status: int, code: str | None, message: str) -> None:
        super().__init__(f"{api.value}: HTTP {status} {code or ''}".strip())
        self.api, self.status, self.code, self.message = api, status, code, message


def error_of(document: Any) -> tuple[str | None, str]:
    """(code, message) of an OData or Power BI error body, screened and capped."""
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return None, ""
    code, message = error.get("code"), error.get("message")
    code_text = shown(code, 60) if isinstance(code, str | int) else None
    return code_text, shown(message, MESSAGE_LIMIT) if isinstance(message, str) else ""


class Caller:
    """Calls one customer tenant's APIs as the partner's identity there."""

    def __init__(self, credential: AsyncTokenCredential, transport: AioHttpTransport) -> None:
        self._credential, self._transport = credential, transport
        self._clients: dict[str, AsyncPipelineClient[HttpRequest, Any]] = {}

    def _client(self, audience: str) -> AsyncPipelineClient[HttpRequest, Any]:
        client = self._clients.get(audience)
        if client is None:
            scope = f"{audience}.default" if audience.endswith("/") else f"{audience}/.default"
            client = AsyncPipelineClient(
                audience,
                policies=[
                    policies.HeadersPolicy({"Accept": "application/json"}),
                    policies.UserAgentPolicy("pal-autopilot"),
                    policies.AsyncBearerTokenCredentialPolicy(self._credential, scope),
                    policies.HttpLoggingPolicy(),
                ],
                transport=self._transport,
            )
            self._clients[audience] = client
        return client

    async def call(
        self,
        api: Api,
        method: str,
        url: str,
        *,
        audience: str,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The JSON answer (None for an empty body), or one of the errors above."""
        request = HttpRequest(method, url, headers=headers or {}, json=json, content=content)
        response = await self._client(audience).send_request(request)
        status = response.status_code
        if status < 400:
            return response.json() if response.content else None
        try:
            document = response.json()
        except ValueError:
            document = None
        code, message = error_of(document)
        if status in (401, 403):
            raise Refused(api, status, code)
        if status == 429:
            raise Throttled(api, _seconds(response.headers.get("Retry-After")))
        if is_transient_status(status):
            raise HttpResponseError(message=f"{api.value}: HTTP {status}", response=response)
        raise CallFailed(api, status, code, message)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
