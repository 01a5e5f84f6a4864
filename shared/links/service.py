"""The link service: validate a request, link, record, and arrange the retry a failure calls for.

One path for the three ways a link is worked on: a `customer-onboarded` message, a nightly
verify message, and an operator's relink over HTTP. Knows nothing of Azure Functions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.pipeline.transport import AioHttpTransport

from shared.links.alerts import alert_credential_broken, alert_foreign_partner, log_deferral, log_outcome
from shared.links.delivery import Delivery
from shared.links.earning import log_change
from shared.links.ledger import Attempt, Ledger
from shared.links.linker import BeforeWriteFailed, Linker
from shared.links.message import MessageRejected, OnboardingRequest, parse_onboarding_message
from shared.links.recognition_arm import RecognitionCheck
from shared.links.snapshot import StateSnapshot, steady_columns
from shared.links.step import Step, attempt_of, credential_key, elapsed_ms, snapshot_of
from shared.links.verdicts import as_verification, not_checked, partner_not_allowed, redelivered, rejected
from shared.spine.credentials import CredentialCache
from shared.spine.decision import DEFERRED, Decision, after_attempt, before_attempt
from shared.spine.envelope import (
    ATTEMPT_PROPERTY,
    KIND_PROPERTY,
    OFFBOARDED,
    ORIGINAL_ID_PROPERTY,
    PAUSES_PROPERTY,
    RUN_ID_PROPERTY,
    Source,
)
from shared.spine.errors import is_unavailable
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.retry import CredentialBreaker, RetryPolicy, retry_message_id
from shared.spine.servicebus import QueueSender
from shared.spine.settings import Settings
from shared.spine.transport import close_transport, shared_transport
from shared.spine.write_intent import WriteIntent, settle

logger = logging.getLogger(__name__)


class TransientFailure(RuntimeError):
    """Raised to the host so that Service Bus delivers the message again; the text is safe to log."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        super().__init__(f"transient: {outcome.reason}" + (f" ({outcome.code})" if outcome.code else ""))


class StaleSnapshot(Exception):
    """The link's state row is no longer what the nightly run saw: read the ledger, decide again."""


class LinkService:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        linker: Linker,
        closers: list[Any],
        *,
        sender: QueueSender | None = None,
        credentials: CredentialCache | None = None,
        transport: AioHttpTransport | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.linker = linker
        self.sender = sender
        self.credentials = credentials
        """The customer credentials, one per (tenant, identity): another domain signs in with them."""
        self.transport = transport
        self.recognition = RecognitionCheck(settings, credentials, transport)
        """Whether a verified link earns Azure recognition (shared.links.recognition_arm)."""
        self.policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            base_seconds=settings.retry_base_seconds,
            max_seconds=settings.retry_max_seconds,
            credential_pause_seconds=settings.credential_pause_seconds,
            credential_broken_max_seconds=settings.credential_broken_max_seconds,
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
        return cls(
            settings, ledger, linker, closers, sender=sender, credentials=credentials, transport=transport
        )

    async def close(self) -> None:
        for close in self._closers:
            await close()

    def closes(self, close: Any) -> None:
        """Close `close` (an async callable) with the service: a part another domain built on it."""
        self._closers.insert(0, close)

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
        delivery = Delivery.of_message(message_id, source, delivery_count, properties or {}, body)
        try:
            request = parse_onboarding_message(
                body, default_partner_id=self.settings.partner_id, max_bytes=self.settings.max_message_bytes
            )
        except MessageRejected as rejection:
            outcome = rejected(rejection)
            tenant = rejection.customer_tenant_id
            return await self.record_rejection(outcome, delivery, tenant, body=body, started=started)
        snapshot = snapshot_of(delivery, properties or {})
        return await self._process(request, delivery, body=body, started=started, snapshot=snapshot)

    async def record_rejection(
        self, outcome: Outcome, delivery: Delivery, tenant: str | None, *, body: bytes, started: float
    ) -> Outcome:
        """Record a message refused before any work (no identity to attach it to), under its tenant
        when it names a valid one; a redelivery writes nothing."""
        attempt = Attempt(
            message_id=delivery.message_id,
            source=delivery.source.value,
            customer_tenant_id=tenant,
            delivery_count=delivery.delivery_count,
            duration_ms=elapsed_ms(started),
            run_id=delivery.run_id,
            original_message_id=delivery.original_id,
            body_digest=delivery.body_digest,
        )
        try:
            await self.ledger.record(attempt, outcome)
        except Exception as error:
            return await self.ledger_unavailable(error, None, delivery, body, retry_scheduled=False)
        log_outcome(attempt, outcome)
        return outcome

    async def relink(self, request: OnboardingRequest) -> Outcome:
        """An operator's relink: linked now, recorded like any other attempt, never rescheduled."""
        message_id = f"relink:{uuid.uuid4()}"
        delivery = Delivery(message_id=message_id, original_id=message_id, source=Source.RELINK)
        return await self._process(request, delivery, body=None, started=time.monotonic())

    async def _process(
        self,
        request: OnboardingRequest,
        delivery: Delivery,
        *,
        body: bytes | None,
        started: float,
        snapshot: StateSnapshot | None = None,
    ) -> Outcome:
        request = self._partner_for(request, delivery)
        if snapshot is not None:
            # A steady night's verify message: the nightly run read the row just now (no read here).
            try:
                return await self._decide(Step(request, delivery, body, started, None, snapshot))
            except StaleSnapshot:
                logger.info(
                    "message %s: the link's state changed since the nightly run read it; read again",
                    delivery.message_id,
                    extra={"messageId": delivery.message_id},
                )
        try:
            view = await self.ledger.view(
                request.customer_tenant_id, delivery.chain_id, request.identity.client_id
            )
        except Exception as error:
            return await self.ledger_unavailable(
                error, request.correlation_id, delivery, body, retry_scheduled=False
            )
        duplicate = redelivered(view, delivery, request.customer_tenant_id)
        if duplicate is not None:
            return duplicate
        return await self._decide(Step(request, delivery, body, started, view))

    async def _decide(self, step: Step) -> Outcome:
        """Decide what the attempt needs before linking (nothing, or a final or deferred outcome)."""
        request, delivery, view = step.request, step.delivery, step.view
        if request.partner_id not in self.settings.allowed_partner_ids:
            # Recorded as evidence of the attempt, with no free text from the message: a rejection
            # stores only identifiers.
            step.request = dataclasses.replace(request, customer_name=None, correlation_id=None)
            return await self.finish(step, Decision(partner_not_allowed(request.partner_id)))
        if delivery.source is Source.VERIFY and view and view.state is not None and view.state.is_offboarded:
            # A verify message sent before the customer was offboarded: nothing is called.
            return await self.finish(step, Decision(not_checked(view.state)))
        held = self.held_back(step)
        return await self.finish(step, held) if held is not None else await self._link(step)

    def held_back(self, step: Step) -> Decision | None:
        """The decision before an attempt (`before_attempt`): None to go on; otherwise the attempt
        waited too long for a broken partner credential, or is deferred while its breaker is open."""
        held = before_attempt(
            step.delivery.counters,
            self.policy,
            paused_for=self.breaker.remaining(credential_key(step.request)),
            can_reschedule=step.can_reschedule(self.sender),
        )
        if held is not None and held.outcome.code == DEFERRED.code:
            log_deferral(step.delivery.message_id, step.request, held)
        return held

    async def _link(self, step: Step) -> Outcome:
        request, delivery = step.request, step.delivery

        async def before_write(intent: WriteIntent) -> None:
            if step.snapshot is not None:
                await self._confirm_snapshot(step)
            await self.ledger.record_intent(request.customer_tenant_id, delivery.chain_id, intent)
            step.view = None  # the ledger changed since it was read: `record` reads it again

        try:
            outcome = await self.linker.link(
                request.customer_tenant_id, request.identity, request.partner_id, before_write=before_write
            )
        except BeforeWriteFailed as failed:
            if isinstance(failed.__cause__, StaleSnapshot):
                raise failed.__cause__ from None
            error = failed.__cause__ if isinstance(failed.__cause__, Exception) else failed
            return await self.ledger_unavailable(
                error, request.correlation_id, delivery, step.body, retry_scheduled=False
            )
        outcome = settle(outcome, step.intent)
        if delivery.source is Source.VERIFY:
            outcome = as_verification(outcome)
            step.recognition = await self.recognition.after_verification(
                request.customer_tenant_id, request.identity, outcome, delivery.run_id, step.known_version
            )
        self.watch_credential(step, outcome)
        decision = after_attempt(
            outcome, delivery.counters, self.policy, can_reschedule=step.can_reschedule(self.sender)
        )
        if outcome.kind in (OutcomeKind.RECLAIMED, OutcomeKind.FOREIGN_PARTNER):
            alert_foreign_partner(request, outcome)
        return await self.finish(step, decision)

    def watch_credential(self, step: Step, outcome: Outcome) -> None:
        """Open the credential's breaker when it is found broken (one ALERT), close it when it works."""
        key = credential_key(step.request)
        if outcome.kind is OutcomeKind.PARTNER_CREDENTIAL_BROKEN:
            if self.breaker.trip(key, self.policy.credential_pause_seconds):
                alert_credential_broken(step.request, outcome, self.policy.credential_pause_seconds)
        elif outcome.kind is not OutcomeKind.TRANSIENT:
            self.breaker.reset(key)

    def _partner_for(self, request: OnboardingRequest, delivery: Delivery) -> OnboardingRequest:
        """A nightly check of a link whose recorded partner ID is not (or no longer) ours checks
        it against PARTNER_ID: the nightly run repairs, it never confirms a foreign ID."""
        if delivery.source is Source.VERIFY and request.partner_id not in self.settings.allowed_partner_ids:
            return dataclasses.replace(
                request, partner_id=self.settings.partner_id, partner_id_defaulted=True
            )
        return request

    async def finish(self, step: Step, decision: Decision) -> Outcome:
        """Schedule the next attempt (if any), then record the outcome and log it."""
        if step.snapshot is not None:
            steady = await self._steady(step, decision)
            if steady is not None:
                return steady
        request, delivery = step.request, step.delivery
        outcome, next_attempt = decision.outcome, decision.next_attempt
        decided_at = datetime.now(UTC)
        attempt = attempt_of(step, decided_at, next_attempt)
        if next_attempt is not None:
            # Scheduled before the outcome is recorded: if we crash in between, the redelivered
            # message schedules the same MessageId again and duplicate detection drops the copy;
            # the other order could record a final outcome whose retry never got sent.
            assert step.body is not None
            await self._schedule(
                request.correlation_id,
                delivery,
                step.body,
                attempt=next_attempt.number,
                pauses=next_attempt.pauses,
                delay=next_attempt.delay,
            )
        try:
            recorded = await self.ledger.record(
                attempt, outcome, at=decided_at, view=step.view, recognition=step.recognition
            )
        except Exception as error:
            # The link may already be made: the retry finds it in place and, from the intent
            # recorded before the change, records what was changed, once.
            return await self.ledger_unavailable(
                error, request.correlation_id, delivery, step.body, retry_scheduled=next_attempt is not None
            )
        if recorded.duplicate:
            logger.info("message %s was recorded meanwhile by another delivery", delivery.message_id)
            return outcome
        log_outcome(attempt, outcome)
        log_change(attempt, recorded.recognition_change)
        return outcome

    async def _confirm_snapshot(self, step: Step) -> None:
        """Before ARM is changed: read the ledger after all, and go on only if the row is still the
        one the nightly run saw, with no receipt or intent of this chain (else StaleSnapshot)."""
        snapshot, step.snapshot = step.snapshot, None
        assert snapshot is not None
        view = await self.ledger.view(
            step.request.customer_tenant_id, step.delivery.chain_id, step.request.identity.client_id
        )
        if not snapshot.holds(view):
            raise StaleSnapshot()
        step.view = view

    async def _steady(self, step: Step, decision: Decision) -> Outcome | None:
        """A steady night ends here with one MERGE conditioned on the snapshot's ETag; anything else
        reads the ledger for `finish` to go on with (None). StaleSnapshot when the row changed."""
        snapshot, step.snapshot = step.snapshot, None
        assert snapshot is not None
        request, delivery, outcome = step.request, step.delivery, decision.outcome
        decided_at = datetime.now(UTC)
        attempt = attempt_of(step, decided_at, None)
        columns = None
        if decision.next_attempt is None:
            columns = steady_columns(snapshot, attempt, outcome, step.recognition, decided_at)
        try:
            if columns is not None:
                written = await self.ledger.extend_steady(attempt, snapshot.etag, columns)
            else:
                step.view = await self.ledger.view(
                    request.customer_tenant_id, delivery.chain_id, request.identity.client_id
                )
        except Exception as error:
            return await self.ledger_unavailable(
                error, request.correlation_id, delivery, step.body, retry_scheduled=False
            )
        if columns is None:
            if step.view is None or not snapshot.holds(step.view):
                raise StaleSnapshot()
            return None
        if not written:
            raise StaleSnapshot()
        log_outcome(attempt, outcome)
        return outcome

    async def ledger_unavailable(
        self,
        error: Exception,
        correlation_id: str | None,
        delivery: Delivery,
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
        delivery: Delivery,
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
        if delivery.source is Source.OFFBOARDING:
            properties[KIND_PROPERTY] = OFFBOARDED  # the copy is an offboarding message too
        await self.sender.schedule(
            self.queue_of(delivery.source),
            body,
            message_id=retry_message_id(delivery.original_id, attempt, pauses),
            at=datetime.now(UTC) + timedelta(seconds=delay),
            properties=properties,
            correlation_id=correlation_id,
        )


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
