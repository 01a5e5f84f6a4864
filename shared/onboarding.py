"""Handles one `customer-onboarded` message: validate, link, record. Knows nothing of Azure Functions."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from .credentials import CredentialCache
from .http import close_transport, shared_transport
from .ledger import Attempt, Ledger
from .linker import Linker
from .message import MessageRejected, OnboardingRequest, parse_onboarding_message
from .outcomes import Outcome, OutcomeKind
from .queue import QueueSender
from .retry import (
    ATTEMPT_PROPERTY,
    ORIGINAL_ID_PROPERTY,
    PAUSES_PROPERTY,
    CredentialBreaker,
    RetryPolicy,
    retry_message_id,
)
from .settings import Settings

logger = logging.getLogger(__name__)

SOURCE_ONBOARDING = "onboarding"


class TransientFailure(RuntimeError):
    """Raised to the host so that Service Bus delivers the message again; the text is safe to log."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        super().__init__(f"transient: {outcome.reason}" + (f" ({outcome.code})" if outcome.code else ""))


class OnboardingService:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        linker: Linker,
        closers: list[Any],
        *,
        sender: QueueSender | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.linker = linker
        self.sender = sender
        self.policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            base_seconds=settings.retry_base_seconds,
            max_seconds=settings.retry_max_seconds,
            credential_pause_seconds=settings.credential_pause_seconds,
        )
        self.breaker = CredentialBreaker()
        self._closers = closers

    @property
    def schedules_retries(self) -> bool:
        """With Service Bus configured a failure schedules its own retry; without, the caller must."""
        return self.sender is not None

    @classmethod
    def from_settings(cls, settings: Settings) -> OnboardingService:
        """Build the service; must be called inside the event loop that will use it."""
        transport = shared_transport(settings)
        credentials = CredentialCache(settings, transport)
        ledger_credential = None if settings.ledger_connection_string else credentials.host_credential
        ledger = Ledger.from_settings(settings, credential=ledger_credential)
        linker = Linker(settings, credentials, transport)
        sender = None
        if settings.service_bus_connection_string or settings.service_bus_namespace:
            sender = QueueSender(settings, credential=credentials.host_credential)
        closers: list[Any] = [ledger.close, credentials.close, lambda: close_transport(transport)]
        if sender is not None:
            closers.insert(0, sender.close)
        return cls(settings, ledger, linker, closers, sender=sender)

    async def close(self) -> None:
        for close in self._closers:
            await close()

    async def handle(
        self,
        body: bytes,
        *,
        message_id: str,
        delivery_count: int = 1,
        properties: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Process one message: validate, link, record, and schedule the retry a failure calls for.

        Returns the outcome; never raises for a service error. Without a Service Bus sender a
        transient outcome is returned for the caller to retry.
        """
        started = time.monotonic()
        # The host always sets a MessageId; should one be missing, the body stands in for it so
        # that redelivery stays idempotent.
        message_id = message_id or "sha256:" + hashlib.sha256(body).hexdigest()
        retry = _RetryState.read(properties or {}, message_id)
        try:
            request = parse_onboarding_message(
                body, default_partner_id=self.settings.partner_id, max_bytes=self.settings.max_message_bytes
            )
        except MessageRejected as rejection:
            outcome = Outcome(
                OutcomeKind.REJECTED,
                f"message rejected ({rejection.reason.value}): {rejection.details[0]}",
                code=rejection.reason.value,
                remediation="Fix the message in the CRM and send it again; it will not be retried.",
                details=rejection.details,
            )
            attempt = Attempt(
                message_id=message_id,
                source=SOURCE_ONBOARDING,
                customer_tenant_id=rejection.customer_tenant_id,
                delivery_count=delivery_count,
                duration_ms=_elapsed_ms(started),
            )
            await self.ledger.record(attempt, outcome)
            log_outcome(attempt, outcome)
            return outcome

        receipt = await self.ledger.find_receipt(request.customer_tenant_id, message_id)
        if receipt is not None and receipt.is_terminal:
            logger.info(
                "duplicate delivery of message %s: already recorded as %s; nothing done",
                message_id,
                receipt.outcome.value,
                extra={"messageId": message_id, "customerTenantId": request.customer_tenant_id},
            )
            return Outcome(receipt.outcome, receipt.reason, code="duplicate-delivery")

        credential_key = (
            request.identity.type.value,
            request.identity.client_id,
            request.identity.key_vault_secret_name or "",
        )
        paused_for = self.breaker.remaining(credential_key)
        if paused_for and self.sender is not None:
            delay = self.policy.pause_seconds(paused_for)
            await self._schedule(
                body,
                request,
                retry,
                attempt=retry.attempt,
                pauses=retry.pauses + 1,
                at=datetime.now(UTC) + timedelta(seconds=delay),
            )
            logger.info(
                "message %s deferred %.0f s: the partner credential for client %s is broken",
                message_id,
                delay,
                request.identity.client_id,
                extra={"messageId": message_id, "customerTenantId": request.customer_tenant_id},
            )
            return Outcome(
                OutcomeKind.PARTNER_CREDENTIAL_BROKEN,
                "deferred: the partner credential is broken",
                code="deferred",
            )

        outcome = await self.linker.link(request.customer_tenant_id, request.identity, request.partner_id)
        next_attempt: tuple[int, int, float] | None = None
        if outcome.kind is OutcomeKind.PARTNER_CREDENTIAL_BROKEN:
            if self.breaker.trip(credential_key, self.policy.credential_pause_seconds):
                logger.error(
                    "ALERT partner credential broken: client %s (%s) failed with %s; every tenant "
                    "using it is paused for %.0f s. %s",
                    request.identity.client_id,
                    request.identity.type.value,
                    outcome.code,
                    self.policy.credential_pause_seconds,
                    outcome.remediation or "",
                )
            pause = self.policy.pause_seconds(self.policy.credential_pause_seconds)
            next_attempt = (retry.attempt, retry.pauses + 1, pause)
        elif outcome.kind is OutcomeKind.TRANSIENT:
            if retry.attempt >= self.policy.max_attempts:
                outcome = dataclasses.replace(
                    outcome,
                    kind=OutcomeKind.FAILED,
                    reason=f"gave up after {retry.attempt} attempts: {outcome.reason}",
                    remediation="The nightly re-verification will try again; relink by hand to try now.",
                )
            else:
                next_attempt = (
                    retry.attempt + 1,
                    0,
                    self.policy.backoff_seconds(retry.attempt, outcome.retry_after),
                )
        else:
            self.breaker.reset(credential_key)

        if self.sender is None:
            next_attempt = None
        decided_at = datetime.now(UTC)
        next_at = decided_at + timedelta(seconds=next_attempt[2]) if next_attempt else None
        attempt = _attempt(request, message_id, delivery_count, _elapsed_ms(started), retry.attempt, next_at)
        if next_attempt is not None:
            # Scheduled before the outcome is recorded: if we crash in between, the redelivered
            # message schedules the same MessageId again and duplicate detection drops the copy;
            # the other order could record a final outcome whose retry never got sent.
            number, pauses, _ = next_attempt
            assert next_at is not None
            await self._schedule(body, request, retry, attempt=number, pauses=pauses, at=next_at)
        recorded = await self.ledger.record(attempt, outcome, at=decided_at)
        if recorded.duplicate:
            logger.info("message %s was recorded meanwhile by another delivery", message_id)
            return outcome
        log_outcome(attempt, outcome)
        return outcome

    async def _schedule(
        self,
        body: bytes,
        request: OnboardingRequest,
        retry: _RetryState,
        *,
        attempt: int,
        pauses: int,
        at: datetime,
    ) -> None:
        assert self.sender is not None
        await self.sender.schedule(
            self.settings.onboarding_queue,
            body,
            message_id=retry_message_id(retry.original_id, attempt, pauses),
            at=at,
            properties={
                ATTEMPT_PROPERTY: attempt,
                PAUSES_PROPERTY: pauses,
                ORIGINAL_ID_PROPERTY: retry.original_id,
            },
            correlation_id=request.correlation_id,
        )


@dataclasses.dataclass(frozen=True)
class _RetryState:
    original_id: str
    attempt: int
    pauses: int

    @classmethod
    def read(cls, properties: Mapping[str, Any], message_id: str) -> _RetryState:
        def number(name: str, default: int) -> int:
            try:
                return max(default, int(properties.get(name, default)))
            except (TypeError, ValueError):
                return default

        original = properties.get(ORIGINAL_ID_PROPERTY)
        return cls(
            original_id=original if isinstance(original, str) and original else message_id,
            attempt=number(ATTEMPT_PROPERTY, 1),
            pauses=number(PAUSES_PROPERTY, 0),
        )


def _elapsed_ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _attempt(
    request: OnboardingRequest,
    message_id: str,
    delivery_count: int,
    duration_ms: float,
    number: int,
    next_attempt_at: datetime | None,
) -> Attempt:
    return Attempt(
        message_id=message_id,
        source=SOURCE_ONBOARDING,
        customer_tenant_id=request.customer_tenant_id,
        client_id=request.identity.client_id,
        identity_type=request.identity.type.value,
        key_vault_secret_name=request.identity.key_vault_secret_name,
        partner_id=request.partner_id,
        customer_name=request.customer_name,
        correlation_id=request.correlation_id,
        delivery_count=delivery_count,
        duration_ms=duration_ms,
        attempt=number,
        next_attempt_at=next_attempt_at,
    )


def log_outcome(attempt: Attempt, outcome: Outcome) -> None:
    """One structured line per attempt; every field here is validated input or our own text."""
    fields = {
        "source": attempt.source,
        "outcome": outcome.kind.value,
        "customerTenantId": attempt.customer_tenant_id,
        "clientId": attempt.client_id,
        "correlationId": attempt.correlation_id,
        "messageId": attempt.message_id,
        "deliveryCount": attempt.delivery_count,
        "attempt": attempt.attempt,
        "nextAttemptAt": attempt.next_attempt_at.isoformat(timespec="seconds")
        if attempt.next_attempt_at
        else None,
        "partnerId": outcome.partner_id or attempt.partner_id,
        "code": outcome.code,
        "durationMs": round(attempt.duration_ms, 1),
    }
    if outcome.kind is OutcomeKind.PARTNER_CREDENTIAL_BROKEN:
        level = logging.ERROR
    elif outcome.kind.is_success:
        level = logging.INFO
    else:
        level = logging.WARNING
    text = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
    logger.log(level, "%s reason=%r", text, outcome.reason, extra=fields)


_services: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[OnboardingService]] = (
    weakref.WeakKeyDictionary()
)


async def get_service() -> OnboardingService:
    """The service for the running event loop, built from the environment on first use.

    Settings are read here, not at import, so that a bad setting cannot stop the host from
    indexing the functions; it fails every invocation instead, with a message naming the setting.
    """
    loop = asyncio.get_running_loop()
    task = _services.get(loop)
    if task is None or (task.done() and task.exception() is not None):

        async def build() -> OnboardingService:
            return OnboardingService.from_settings(Settings.from_env())

        task = loop.create_task(build())
        _services[loop] = task
    return await task


async def reset_service() -> None:
    """Close and forget the running loop's service (tests, and after settings change)."""
    task = _services.pop(asyncio.get_running_loop(), None)
    if task is not None and task.done() and task.exception() is None:
        await task.result().close()
