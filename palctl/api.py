"""palctl's way to the Function App's HTTP API: which one (--api-url, PAL_API_URL or the config
file), the function key (PAL_API_KEY or the config file, never a flag: a command line stays in the
shell's history and shows in the process list), and calls that carry the key in a header, never on
screen, and follow no redirect (the key would follow it). aiohttp is imported when a command calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from palctl.configuration import Configuration, Key
from palctl.errors import Failed, UsageError


@dataclass(frozen=True)
class ApiTarget:
    """The Function App and a function key; the key goes in a header, never on screen."""

    base_url: str
    key: str = field(repr=False)


def api_target(config: Configuration, api_url: str | None) -> ApiTarget:
    """The API URL (flag, environment, config file) and the function key (environment, config file)."""
    url = config.get(Key.API_URL, api_url)
    if not url:
        raise UsageError(
            "no API given: use --api-url https://<function app host>, PAL_API_URL or "
            "`palctl config set api-url URL`"
        )
    key = config.get(Key.API_KEY)
    if not key:
        raise UsageError(
            "no function key: set PAL_API_KEY (az functionapp keys list ...) or `palctl config set api-key -`"
        )
    return ApiTarget(url, key)


@dataclass(frozen=True)
class Response:
    """An answer of the API: the status and the parsed JSON object (None when it sent none)."""

    status: int
    body: dict[str, Any] | None


def json_object(payload: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None (not JSON, or not an object)."""
    import json

    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


@asynccontextmanager
async def api_session() -> AsyncIterator[Any]:
    """An aiohttp session for a command's calls (a minute per call at most)."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        yield http


async def call(
    http: Any, target: ApiTarget, method: str, path: str, body: dict[str, Any] | None = None
) -> Response:
    """`method` `{base_url}/api{path}` with the key in a header; Failed when the API cannot be reached."""
    import json

    import aiohttp

    data = json.dumps(body).encode() if body is not None else None
    headers = {"x-functions-key": target.key, "Content-Type": "application/json"}
    try:
        async with http.request(
            method, f"{target.base_url}/api{path}", data=data, headers=headers, allow_redirects=False
        ) as response:
            return Response(response.status, json_object(await response.read()))
    except (aiohttp.ClientError, TimeoutError) as error:
        raise Failed(f"cannot reach the API ({type(error).__name__})") from None
