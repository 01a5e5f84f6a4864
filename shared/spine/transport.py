"""One HTTP connection pool shared by every Azure SDK client the product creates, and the SDK
pipelines without the policies that do nothing here (each costs CPU on every request)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable
from typing import Any

import aiohttp
from azure.core.pipeline import AsyncPipeline
from azure.core.pipeline.policies import (
    AsyncRetryPolicy,
    ContentDecodePolicy,
    CustomHookPolicy,
    DistributedTracingPolicy,
    HeadersPolicy,
    HttpLoggingPolicy,
    NetworkTraceLoggingPolicy,
    ProxyPolicy,
    RequestIdPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.settings import settings as core_settings

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


def is_idle(policy: Any) -> bool:
    """A policy that does nothing in this process, as configured when the pipeline is built:
    distributed tracing with no tracer; network trace logging without `logging_enable` (never set
    here: it would log bodies); HTTP logging while its logger is off (the SDK's loggers are kept at
    WARNING, `shared.spine.untrusted`; when an operator turns it on, the policy and its redaction
    stay); a proxy policy without proxies; a custom hook policy without hooks."""
    if isinstance(policy, DistributedTracingPolicy):
        return not core_settings.tracing_enabled() and core_settings.tracing_implementation() is None
    if isinstance(policy, NetworkTraceLoggingPolicy):
        return not policy.enable_http_logger
    if isinstance(policy, HttpLoggingPolicy):
        return not policy.logger.isEnabledFor(logging.INFO)
    if isinstance(policy, ProxyPolicy):
        return not policy.proxies
    if isinstance(policy, CustomHookPolicy):
        return policy._request_callback is None and policy._response_callback is None
    return False


def active(policies: Iterable[Any]) -> list[Any]:
    """The policies, in order, without the idle ones (retries, redirects, authentication, the user
    agent and request IDs are never idle)."""
    return [policy for policy in policies if policy is not None and not is_idle(policy)]


def drop_idle_policies(client: Any) -> None:
    """Rebuild an SDK pipeline client's pipeline (`client._pipeline`) without its idle policies; a
    client of another shape is left as it is."""
    pipeline = getattr(client, "_pipeline", None)
    runners = getattr(pipeline, "_impl_policies", None)
    if not isinstance(pipeline, AsyncPipeline) or not isinstance(runners, list):
        return
    policies = [getattr(runner, "_policy", runner) for runner in runners]
    client._pipeline = AsyncPipeline(pipeline._transport, active(policies))


class IdentityPolicies:
    """azure-identity's token-request policies (its `_get_policies`, in its order, with its user
    agent) without the idle ones, for each customer credential: the stateless ones are built once
    and shared by every credential's pipeline, the retry policy (linked into one pipeline) is built
    for each; building a credential per tenant then builds nothing it would not use."""

    def __init__(self, settings: Settings) -> None:
        from azure.identity._internal.user_agent import USER_AGENT

        self._retry_total = settings.sdk_retry_total
        self._before = (
            RequestIdPolicy(),
            HeadersPolicy(),
            UserAgentPolicy(base_user_agent=USER_AGENT),
            ContentDecodePolicy(),
        )
        self._after = tuple(active([DistributedTracingPolicy(), HttpLoggingPolicy()]))

    def __call__(self) -> list[Any]:
        return [*self._before, AsyncRetryPolicy(retry_total=self._retry_total), *self._after]
