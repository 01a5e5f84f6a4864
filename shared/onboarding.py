"""Handles one `customer-onboarded` message: validate, link, record. Knows nothing of Azure Functions."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from typing import Any

from .credentials import CredentialCache
from .http import close_transport, shared_transport
from .ledger import Attempt, Ledger
from .linker import Linker
from .message import MessageRejected, OnboardingRequest, parse_onboarding_message
from .outcomes import Outcome, OutcomeKind
from .settings import Settings

logger = logging.getLogger(__name__)

SOURCE_ONBOARDING = "onboarding"


class TransientFailure(RuntimeError):
    """Raised to the host so that Service Bus delivers the message again; the text is safe to log."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        super().__init__(f"transient: {outcome.reason}" + (f" ({outcome.code})" if outcome.code else ""))


class OnboardingService:
    def __init__(self, settings: Settings, ledger: Ledger, linker: Linker, closers: list[Any]) -> None:
        self.settings = settings
        self.ledger = ledger
        self.linker = linker
        self._closers = closers

    @classmethod
    def from_settings(cls, settings: Settings) -> OnboardingService:
        """Build the service; must be called inside the event loop that will use it."""
        transport = shared_transport(settings)
        credentials = CredentialCache(settings, transport)
        ledger_credential = None if settings.ledger_connection_string else credentials.host_credential
        ledger = Ledger.from_settings(settings, credential=ledger_credential)
        linker = Linker(settings, credentials, transport)
        return cls(
            settings, ledger, linker, [ledger.close, credentials.close, lambda: close_transport(transport)]
        )

    async def close(self) -> None:
        for close in self._closers:
            await close()

    async def handle(self, body: bytes, *, message_id: str, delivery_count: int = 1) -> Outcome:
        """Process one message and record its outcome; a transient outcome is returned, not raised."""
        started = time.monotonic()
        # The host always sets a MessageId; should one be missing, the body stands in for it so
        # that redelivery stays idempotent.
        message_id = message_id or "sha256:" + hashlib.sha256(body).hexdigest()
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

        outcome = await self.linker.link(request.customer_tenant_id, request.identity, request.partner_id)
        attempt = _attempt(request, message_id, delivery_count, _elapsed_ms(started))
        recorded = await self.ledger.record(attempt, outcome)
        if recorded.duplicate:
            logger.info("message %s was recorded meanwhile by another delivery", message_id)
        log_outcome(attempt, outcome)
        return outcome


def _elapsed_ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _attempt(request: OnboardingRequest, message_id: str, delivery_count: int, duration_ms: float) -> Attempt:
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
