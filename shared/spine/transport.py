"""One HTTP connection pool shared by every Azure SDK client the product creates."""

from __future__ import annotations

import ssl

import aiohttp
from azure.core.pipeline.transport import AioHttpTransport

from shared.spine.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The system trust store, plus the extra CA bundle when one is configured (local sandbox)."""
    context = ssl.create_default_context()
    if settings.ca_bundle:
        context.load_verify_locations(cafile=settings.ca_bundle)
    return context


def shared_transport(settings: Settings) -> AioHttpTransport:
    """A transport that many SDK clients can share; closing a client leaves the pool open.

    The TLS context is built once here: passing a CA file per client makes azure-core build a new
    SSL context for every request.
    """
    connector = aiohttp.TCPConnector(ssl=ssl_context(settings), limit=256, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=settings.http_timeout_seconds)
    session = aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
    )
    return AioHttpTransport(session=session, session_owner=False)


async def close_transport(transport: AioHttpTransport) -> None:
    if transport.session is not None:
        await transport.session.close()
