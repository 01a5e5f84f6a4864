"""The link service: validate a request, link, record, and arrange the retry a failure calls for.

One path for the three ways a link is worked on: a `customer-onboarded` message, a nightly
verify message, and an operator's relink over HTTP. Knows nothing of Azure Functions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
import time
import uuid
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from .credentials import CredentialCache
from .dead_letters import DeadLetter, broker_reason, dead_letter_attempt
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

RUN_ID_PROPERTY = "palRunId"
_MAX_COUNTER = 10_000
_SAFE_ID = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, as long as a MessageId may be
_RUN_ID = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}|[A-Za-z0-9-]{1,40}")


class Source(StrEnum):
    ONBOARDING = "onboarding"
    VERIFY = "verify"
    RELINK = "relink"


class TransientFailure(RuntimeError):
    """Raised to the host so that Service Bus delivers the message again; the text is safe to log."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        super().__init__(f"transient: {outcome.reason}" + (f" ({outcome.code})" if outcome.code else ""))


@dataclasses.dataclass(frozen=True)
class _Delivery:
    """Where a request came from and how many times it has been tried."""

    message_id: str
    original_id: str
    source: Source
    delivery_count: int = 1
    attempt: int = 1
    pauses: int = 0
    run_id: str | None = None

    @classmethod
    def of_message(
        cls, message_id: str, source: Source, delivery_count: int, properties: Mapping[str, Any]
    ) -> _Delivery:
        # Application properties are set by our own scheduling, but anyone who can send to the
        # queue can set them too: only well-formed values are believed.
        def number(name: str, default: int) -> int:
            try:
                return min(_MAX_COUNTER, max(default, int(properties.get(name, default))))
            except (TypeError, ValueError, OverflowError):
                return default

        original = properties.get(ORIGINAL_ID_PROPERTY)
        run_id = properties.get(RUN_ID_PROPERTY)
        if not (isinstance(original, str) and _SAFE_ID.fullmatch(original)):
            original = None
        if not (isinstance(run_id, str) and _RUN_ID.fullmatch(run_id)):
            run_id = None
        return cls(
            message_id=message_id,
            original_id=original or message_id,
            source=source,
            delivery_count=delivery_count,
            attempt=number(ATTEMPT_PROPERTY, 1),
            pauses=number(PAUSES_PROPERTY, 0),
            run_id=run_id,
        )


class LinkService:
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

    def raise_for_redelivery(self, outcome: Outcome) -> None:
        """For a queue trigger: raise when a retry is called for that nobody scheduled, so that
        Service Bus delivers the message again."""
        if outcome.kind.is_retryable and not self.schedules_retries:
            raise TransientFailure(outcome)

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkService:
        """Build the service; must be called inside the event loop that will use it."""
        transport = shared_transport(settings)
        credentials = CredentialCache(settings, transport)
        ledger_credential = None if settings.ledger_connection_string else credentials.host_credential
        ledger = Ledger.from_settings(settings, transport=transport, credential=ledger_credential)
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

    def queue_of(self, source: Source) -> str:
        return self.settings.verify_queue if source is Source.VERIFY else self.settings.onboarding_queue

    async def handle(
        self,
        body: bytes,
        *,
        message_id: str,
        delivery_count: int = 1,
        properties: Mapping[str, Any] | None = None,
        source: Source = Source.ONBOARDING,
    ) -> Outcome:
        """Process one queue message; returns the outcome and never raises for a service error.

        Without a Service Bus sender a transient outcome is returned for the caller to retry.
        """
        started = time.monotonic()
        # The host always sets a MessageId; should one be missing, the body stands in for it so
        # that redelivery stays idempotent.
        message_id = message_id or "sha256:" + hashlib.sha256(body).hexdigest()
        delivery = _Delivery.of_message(message_id, source, delivery_count, properties or {})
        try:
            request = parse_onboarding_message(
                body, default_partner_id=self.settings.partner_id, max_bytes=self.settings.max_message_bytes
            )
        except MessageRejected as rejection:
            outcome = Outcome(
                OutcomeKind.REJECTED,
                f"message rejected ({rejection.reason.value}): {rejection.details[0]}",
                code=rejection.reason.value,
                remediation="Fix the message at its source and send it again; it will not be retried.",
                details=rejection.details,
            )
            attempt = Attempt(
                message_id=message_id,
                source=source.value,
                customer_tenant_id=rejection.customer_tenant_id,
                delivery_count=delivery_count,
                duration_ms=_elapsed_ms(started),
                run_id=delivery.run_id,
                original_message_id=delivery.original_id,
            )
            try:
                await self.ledger.record(attempt, outcome)
            except Exception as error:
                return await self._ledger_unavailable(error, None, delivery, body, retry_scheduled=False)
            log_outcome(attempt, outcome)
            return outcome
        return await self._process(request, delivery, body=body, started=started)

    async def relink(self, request: OnboardingRequest) -> Outcome:
        """An operator's relink: linked now, recorded like any other attempt, never rescheduled."""
        message_id = f"relink:{uuid.uuid4()}"
        delivery = _Delivery(message_id=message_id, original_id=message_id, source=Source.RELINK)
        return await self._process(request, delivery, body=None, started=time.monotonic())

    async def record_dead_letter(
        self,
        body: bytes,
        *,
        message_id: str,
        delivery_count: int,
        properties: Mapping[str, Any],
        source: Source,
    ) -> Outcome:
        """Record a dead-lettered message as a final `failed` attempt, once.

        Raises when the ledger cannot be written, so that the message stays in the dead-letter
        queue; nothing else about the message can make it raise.
        """
        delivery = _Delivery.of_message(message_id, source, delivery_count, properties)
        letter = DeadLetter(
            body=body,
            message_id=delivery.message_id,
            original_id=delivery.original_id,
            delivery_count=delivery_count,
            reason=broker_reason(properties),
            attempt=delivery.attempt,
        )
        attempt, outcome = dead_letter_attempt(
            letter,
            source=source.value,
            default_partner_id=self.settings.partner_id,
            max_bytes=self.settings.max_message_bytes,
        )
        recorded = await self.ledger.record(attempt, outcome)
        if recorded.duplicate:
            logger.info(
                "dead-lettered message %s already has a final outcome; nothing recorded",
                delivery.message_id,
                extra={"messageId": delivery.message_id},
            )
            return outcome
        log_outcome(attempt, outcome)
        return outcome

    async def _process(
        self, request: OnboardingRequest, delivery: _Delivery, *, body: bytes | None, started: float
    ) -> Outcome:
        identity = request.identity
        try:
            view = await self.ledger.view(
                request.customer_tenant_id, delivery.original_id, identity.client_id
            )
        except Exception as error:
            return await self._ledger_unavailable(
                error, request.correlation_id, delivery, body, retry_scheduled=False
            )
        if view.receipt is not None and view.receipt.blocks(delivery.attempt):
            logger.info(
                "duplicate delivery of message %s: already recorded as %s; nothing done",
                delivery.message_id,
                view.receipt.outcome.value,
                extra={"messageId": delivery.message_id, "customerTenantId": request.customer_tenant_id},
            )
            return Outcome(view.receipt.outcome, view.receipt.reason, code="duplicate-delivery")

        can_reschedule = body is not None and self.sender is not None
        credential_key = (identity.type.value, identity.client_id, identity.key_vault_secret_name or "")
        paused_for = self.breaker.remaining(credential_key)
        if paused_for and body is not None and can_reschedule:
            delay = self.policy.pause_seconds(paused_for)
            await self._schedule(
                request.correlation_id,
                delivery,
                body,
                attempt=delivery.attempt,
                pauses=delivery.pauses + 1,
                delay=delay,
            )
            logger.info(
                "message %s deferred %.0f s: the partner credential for client %s is broken",
                delivery.message_id,
                delay,
                identity.client_id,
                extra={"messageId": delivery.message_id, "customerTenantId": request.customer_tenant_id},
            )
            return Outcome(
                OutcomeKind.PARTNER_CREDENTIAL_BROKEN,
                "deferred: the partner credential is broken",
                code="deferred",
            )

        outcome = await self.linker.link(request.customer_tenant_id, identity, request.partner_id)
        if delivery.source is Source.VERIFY:
            outcome = _as_verification(outcome)
        next_attempt: tuple[int, int, float] | None = None
        if outcome.kind is OutcomeKind.PARTNER_CREDENTIAL_BROKEN:
            if self.breaker.trip(credential_key, self.policy.credential_pause_seconds):
                logger.error(
                    "ALERT partner credential broken: client %s (%s) failed with %s; every tenant "
                    "using it is paused for %.0f s. %s",
                    identity.client_id,
                    identity.type.value,
                    outcome.code,
                    self.policy.credential_pause_seconds,
                    outcome.remediation or "",
                )
            pause = self.policy.pause_seconds(self.policy.credential_pause_seconds)
            next_attempt = (delivery.attempt, delivery.pauses + 1, pause)
        elif outcome.kind is OutcomeKind.TRANSIENT and can_reschedule:
            if delivery.attempt >= self.policy.max_attempts:
                outcome = dataclasses.replace(
                    outcome,
                    kind=OutcomeKind.FAILED,
                    reason=f"gave up after {delivery.attempt} attempts: {outcome.reason}",
                    remediation="The nightly re-verification will try again; relink by hand to try now.",
                )
            else:
                backoff = self.policy.backoff_seconds(delivery.attempt, outcome.retry_after)
                next_attempt = (delivery.attempt + 1, 0, backoff)
        elif outcome.kind is not OutcomeKind.TRANSIENT:
            self.breaker.reset(credential_key)

        if not can_reschedule:
            next_attempt = None
        decided_at = datetime.now(UTC)
        next_at = decided_at + timedelta(seconds=next_attempt[2]) if next_attempt else None
        attempt = Attempt(
            message_id=delivery.message_id,
            source=delivery.source.value,
            customer_tenant_id=request.customer_tenant_id,
            client_id=identity.client_id,
            identity_type=identity.type.value,
            key_vault_secret_name=identity.key_vault_secret_name,
            partner_id=request.partner_id,
            customer_name=request.customer_name,
            correlation_id=request.correlation_id,
            delivery_count=delivery.delivery_count,
            duration_ms=_elapsed_ms(started),
            attempt=delivery.attempt,
            next_attempt_at=next_at,
            run_id=delivery.run_id,
            original_message_id=delivery.original_id,
            next_attempt=next_attempt[0] if next_attempt else None,
        )
        if next_attempt is not None:
            # Scheduled before the outcome is recorded: if we crash in between, the redelivered
            # message schedules the same MessageId again and duplicate detection drops the copy;
            # the other order could record a final outcome whose retry never got sent.
            number, pauses, delay = next_attempt
            assert body is not None
            await self._schedule(
                request.correlation_id, delivery, body, attempt=number, pauses=pauses, delay=delay
            )
        try:
            recorded = await self.ledger.record(attempt, outcome, at=decided_at, view=view)
        except Exception as error:
            # The link may already be made: the retry finds it in place and records that, once.
            return await self._ledger_unavailable(
                error, request.correlation_id, delivery, body, retry_scheduled=next_attempt is not None
            )
        if recorded.duplicate:
            logger.info("message %s was recorded meanwhile by another delivery", delivery.message_id)
            return outcome
        log_outcome(attempt, outcome)
        return outcome

    async def _ledger_unavailable(
        self,
        error: Exception,
        correlation_id: str | None,
        delivery: _Delivery,
        body: bytes | None,
        *,
        retry_scheduled: bool,
    ) -> Outcome:
        """Table Storage cannot be reached: try the whole message again later, not at once.

        Raising would make Service Bus redeliver at once and burn the delivery count while the
        outage lasts; a scheduled copy waits with backoff instead. Anything else is a bug: raise.
        """
        if not is_unavailable(error):
            raise error
        outcome = Outcome(
            OutcomeKind.TRANSIENT, "the ledger (Table Storage) is unavailable", code="ledger-unavailable"
        )
        if body is not None and self.sender is not None and not retry_scheduled:
            delay = self.policy.backoff_seconds(delivery.pauses + 1, None)
            await self._schedule(
                correlation_id,
                delivery,
                body,
                attempt=delivery.attempt,
                pauses=delivery.pauses + 1,
                delay=delay,
            )
        elif body is not None and not retry_scheduled:
            raise error  # no Service Bus sender: let the host redeliver
        logger.warning(
            "message %s: the ledger is unavailable (%s); it will be processed again later",
            delivery.message_id,
            type(error).__name__,
            extra={"messageId": delivery.message_id},
        )
        return outcome

    async def _schedule(
        self,
        correlation_id: str | None,
        delivery: _Delivery,
        body: bytes,
        *,
        attempt: int,
        pauses: int,
        delay: float,
    ) -> None:
        assert self.sender is not None
        properties: dict[str, str | int | float | bool] = {
            ATTEMPT_PROPERTY: attempt,
            PAUSES_PROPERTY: pauses,
            ORIGINAL_ID_PROPERTY: delivery.original_id,
        }
        if delivery.run_id:
            properties[RUN_ID_PROPERTY] = delivery.run_id
        await self.sender.schedule(
            self.queue_of(delivery.source),
            body,
            message_id=retry_message_id(delivery.original_id, attempt, pauses),
            at=datetime.now(UTC) + timedelta(seconds=delay),
            properties=properties,
            correlation_id=correlation_id,
        )


def is_unavailable(error: BaseException) -> bool:
    """A storage or network outage (worth waiting for), as opposed to a bug or a refused request."""
    if isinstance(error, ServiceRequestError | ServiceResponseError | OSError):
        return True
    status = getattr(error, "status_code", None)
    return isinstance(error, HttpResponseError) and (status is None or status >= 500 or status in (408, 429))


def _as_verification(outcome: Outcome) -> Outcome:
    """In a re-verification, a link already in place is `verified` and one made again is `healed`."""
    if outcome.kind is OutcomeKind.ALREADY_LINKED:
        return dataclasses.replace(outcome, kind=OutcomeKind.VERIFIED, reason=f"in place: {outcome.reason}")
    if outcome.kind is OutcomeKind.LINKED:
        return dataclasses.replace(
            outcome,
            kind=OutcomeKind.HEALED,
            reason=f"the link was missing and is made again: {outcome.reason}",
        )
    return outcome


def _elapsed_ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


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
        "runId": attempt.run_id,
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


_services: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[LinkService]] = (
    weakref.WeakKeyDictionary()
)


async def get_service() -> LinkService:
    """The service for the running event loop, built from the environment on first use.

    Settings are read here, not at import, so that a bad setting cannot stop the host from
    indexing the functions; it fails every invocation instead, with a message naming the setting.
    """
    loop = asyncio.get_running_loop()
    task = _services.get(loop)
    if task is None or (task.done() and task.exception() is not None):

        async def build() -> LinkService:
            return LinkService.from_settings(Settings.from_env())

        task = loop.create_task(build())
        _services[loop] = task
    return await task


async def reset_service() -> None:
    """Close and forget the running loop's service (tests, and after settings change)."""
    task = _services.pop(asyncio.get_running_loop(), None)
    if task is not None and task.done() and task.exception() is None:
        await task.result().close()
