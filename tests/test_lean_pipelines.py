"""The SDK pipelines are built without the policies that do nothing here (they cost CPU on every
request); retries, redirects, authentication, the user agent and request IDs stay, and so does a
policy that has something to do (a hook, a proxy, HTTP logging an operator turned on)."""

from __future__ import annotations

import logging

from azure.core.pipeline import AsyncPipeline
from azure.core.pipeline.policies import (
    AsyncRedirectPolicy,
    AsyncRetryPolicy,
    CustomHookPolicy,
    DistributedTracingPolicy,
    HttpLoggingPolicy,
    NetworkTraceLoggingPolicy,
    ProxyPolicy,
    RequestIdPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import AioHttpTransport

from shared.spine.settings import Settings
from shared.spine.transport import IdentityPolicies, active, drop_idle_policies


def names(policies: list[object]) -> list[str]:
    return [type(policy).__name__ for policy in policies]


def test_idle_policies_are_left_out_and_the_working_ones_kept() -> None:
    logger = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    level = logger.level
    logger.setLevel(logging.WARNING)  # as the product keeps it (shared.spine.untrusted)
    policies = [
        RequestIdPolicy(),
        UserAgentPolicy(),
        ProxyPolicy(),
        AsyncRedirectPolicy(),
        AsyncRetryPolicy(),
        CustomHookPolicy(),
        NetworkTraceLoggingPolicy(),
        DistributedTracingPolicy(),
        HttpLoggingPolicy(),
        None,
    ]
    try:
        kept = names(active(policies))
    finally:
        logger.setLevel(level)
    assert kept == [
        "RequestIdPolicy",
        "UserAgentPolicy",
        "AsyncRedirectPolicy",
        "AsyncRetryPolicy",
    ]


def test_a_policy_with_something_to_do_stays() -> None:
    logger = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    level = logger.level
    logger.setLevel(logging.INFO)  # an operator turned the SDK's HTTP logging on
    try:
        working = [
            CustomHookPolicy(raw_request_hook=lambda request: None),
            ProxyPolicy(proxies={"https": "http://proxy.invalid:3128"}),
            NetworkTraceLoggingPolicy(logging_enable=True),
            HttpLoggingPolicy(),
        ]
        assert names(active(working)) == names(working)
    finally:
        logger.setLevel(level)


async def test_a_clients_pipeline_is_rebuilt_without_them() -> None:
    class Client:
        _pipeline = AsyncPipeline(
            AioHttpTransport(),
            [UserAgentPolicy(), ProxyPolicy(), AsyncRetryPolicy(), DistributedTracingPolicy()],
        )

    client = Client()
    drop_idle_policies(client)
    kept = [getattr(runner, "_policy", runner) for runner in client._pipeline._impl_policies]
    assert names(kept) == ["UserAgentPolicy", "AsyncRetryPolicy"]
    drop_idle_policies(object())  # another shape: left as it is


def test_a_customer_credential_keeps_retries_and_its_user_agent(settings: Settings) -> None:
    factory = IdentityPolicies(settings)
    policies, others = factory(), factory()
    assert "AsyncRetryPolicy" in names(policies) and "UserAgentPolicy" in names(policies)
    retry = next(policy for policy in policies if isinstance(policy, AsyncRetryPolicy))
    assert retry.total_retries == settings.sdk_retry_total
    agent = next(policy for policy in policies if isinstance(policy, UserAgentPolicy))
    assert agent.user_agent.startswith("azsdk-python-identity/")
    # The stateless policies are shared; the retry policy, linked into one pipeline, is not.
    assert [type(policy) for policy in policies] == [type(policy) for policy in others]
    assert policies[0] is others[0] and retry not in others
