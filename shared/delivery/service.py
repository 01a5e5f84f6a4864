"""The delivery queue's worker: one message, one step of a delivery, on the spine.

A message is a reference (`message.DeliveryMessage`); the delivery's row, written by the API before
the message was sent, must exist and agree with it, else the message is refused. A final row makes
any later copy a duplicate; while a copy is scheduled (a retry, or a follow-up poll) only that copy
goes on. The import itself is idempotent under redelivery: its ImportJobId is derived from the
delivery id, and the import job is read before anything is staged. A Power BI import has no id of
ours: its id is recorded as soon as Power BI answers, and a copy polls it instead of importing again.

Failures: a refused API (401/403, also after the application user was added) is
needs-customer-action with the grant to ask for; a refused request or a failed import is final with
its code; 429, 5xx and network errors are transient and scheduled again by `after_attempt`. An
import that runs longer than DELIVERY_POLL_SECONDS is polled again by a scheduled copy.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError

from shared.attribution.audit import AttributionAudit, AuditMessage, NotLinked, audit_message
from shared.attribution.findings import FindingStatus, refusal_remedy
from shared.attribution.inventory import Api, ApiRefused, Environment, InventoryReader, Throttled
from shared.attribution.rows import POWER_BI_UNIT
from shared.attribution.store import AttributionLedger
from shared.delivery.blobs import BlobMismatch, DeliveryBlobs
from shared.delivery.calls import Caller, CallFailed
from shared.delivery.message import DeliveryKind, DeliveryMessage, DeploymentSettings
from shared.delivery.outcome import Finished, import_job_id
from shared.delivery.pbix import ReportDelivery
from shared.delivery.rows import DeliveryRow, DeliveryStatus
from shared.delivery.settings import DeliverySettings
from shared.delivery.solution import SolutionDelivery, Started
from shared.delivery.store import DeliveryLedger
from shared.links.ledger import Ledger
from shared.links.rows import LinkState
from shared.spine.credentials import CredentialCache
from shared.spine.decision import Counters, after_attempt
from shared.spine.envelope import ATTEMPT_PROPERTY, ORIGINAL_ID_PROPERTY, PAUSES_PROPERTY, counter
from shared.spine.errors import Stage, classify_error, transient
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.retry import RetryPolicy, retry_message_id
from shared.spine.servicebus import QueueSender
from shared.spine.settings import Settings
from shared.spine.table import contention_pauses
from shared.spine.untrusted import message_id_for_records

__all__ = ["DeliveryService"]

logger = logging.getLogger(__name__)
_AUDITED_KINDS = {"workflow", "canvasapp", "appmodule", "bot"}
_MAX_LISTED = 50


@dataclass(frozen=True)
class _Later:
    """The import is still running: poll it again in a scheduled copy."""


@dataclass(frozen=True)
class _Context:
    message: DeliveryMessage
    state: LinkState
    caller: Caller


class DeliveryService:
    def __init__(
        self,
        *,
        links: Ledger,
        ledger: DeliveryLedger,
        blobs: DeliveryBlobs | None,
        audit: AttributionAudit,
        credentials: CredentialCache,
        sender: QueueSender | None,
        settings: Settings,
        delivery: DeliverySettings,
        transport: Any,
    ) -> None:
        self._links, self.ledger, self._blobs, self._audit = links, ledger, blobs, audit
        self._credentials, self._sender, self._settings = credentials, sender, settings
        self._delivery, self._transport = delivery, transport
        self._policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            base_seconds=settings.retry_base_seconds,
            max_seconds=settings.retry_max_seconds,
            credential_pause_seconds=settings.credential_pause_seconds,
        )

    @property
    def delivery(self) -> DeliverySettings:
        return self._delivery

    # ---- the queue ------------------------------------------------------------------------------

    async def handle(self, body: bytes, *, message_id: str, properties: dict[str, Any]) -> str:
        """One delivery message; what became of it, for the log. Raises only for a bug or when a
        needed copy cannot be scheduled (Service Bus then delivers the message again)."""
        message = DeliveryMessage.parse(body, max_file_bytes=self._delivery.max_file_bytes)
        if message is None:
            logger.warning(
                "delivery message %s refused: not a valid delivery message",
                message_id_for_records(message_id),
            )
            return "rejected: not a valid delivery message"
        attempt, polls = counter(properties, ATTEMPT_PROPERTY, 1), counter(properties, PAUSES_PROPERTY, 0)
        refusal = await self._not_now(message, message_id, attempt, polls)
        if refusal is not None:
            return refusal
        original = message_id_for_records(str(properties.get(ORIGINAL_ID_PROPERTY) or message_id))
        step = await self._attempt(message, polls)
        if isinstance(step, Finished):
            await self._finish(message, step)
            return f"{step.status.value}: {step.reason}"
        if isinstance(step, _Later):
            return await self._poll_later(message, original, attempt, polls)
        return await self._retry(message, original, attempt, step)

    async def _not_now(
        self, message: DeliveryMessage, message_id: str, attempt: int, polls: int
    ) -> str | None:
        """Why this copy must not go on (no such delivery, done, or a later copy scheduled), or None."""
        row = await self.ledger.get(message.tenant, message.delivery_id)
        if row is None or not _agrees(row, message):
            logger.warning(
                "delivery message %s refused: no such delivery recorded", message_id_for_records(message_id)
            )
            return "rejected: no such delivery recorded"
        if row.status.is_final:
            return f"duplicate: delivery {message.delivery_id} is already {row.status.value}"
        if row.expected_attempt is not None and (row.expected_attempt, row.expected_polls or 0) != (
            attempt,
            polls,
        ):
            return f"duplicate: a later copy of delivery {message.delivery_id} is scheduled"
        return None

    async def _attempt(self, message: DeliveryMessage, polls: int) -> Finished | _Later | Outcome:
        """The step, or the transient outcome to retry."""
        try:
            return await self._step(message, polls)
        except (NotLinked, ApiRefused, CallFailed, BlobMismatch, Throttled) as error:
            return await self._failure(message, error)
        except (TimeoutError, AzureError, OSError) as error:
            outcome = classify_error(error, stage=Stage.ARM, client_id="")
            if outcome.kind is OutcomeKind.TRANSIENT:
                return outcome
            return Finished(
                DeliveryStatus.FAILED, outcome.code or "failed", outcome.reason, outcome.remediation
            )

    async def _failure(self, message: DeliveryMessage, error: Exception) -> Finished | Outcome:
        result: Finished | Outcome
        if isinstance(error, NotLinked):
            result = Finished(
                DeliveryStatus.NEEDS_CUSTOMER_ACTION,
                "not-linked",
                "no healthy link of a service principal of ours in this tenant",
                "Link the customer first (palctl enqueue); a user account's link is never used to deliver.",
            )
        elif isinstance(error, ApiRefused):
            result = _refused(error, message, await self._client_id(message.tenant))
        elif isinstance(error, CallFailed):
            reason = f"{error.api.value}: HTTP {error.status} {error.code or ''}: {error.message}"
            result = Finished(DeliveryStatus.FAILED, error.code or f"HTTP{error.status}", reason)
        elif isinstance(error, Throttled):
            result = transient(f"{error.api.value}: throttled", code="HTTP429", retry_after=error.retry_after)
        else:
            result = Finished(DeliveryStatus.FAILED, "file-mismatch", str(error))
        return result

    async def _step(self, message: DeliveryMessage, polls: int) -> Finished | _Later:
        state = await self._linked(message.tenant)
        assert state.identity is not None
        credential = await self._credentials.get(message.tenant, state.identity)
        caller = Caller(credential, self._transport)
        try:
            context = _Context(message, state, caller)
            if message.kind is DeliveryKind.SOLUTION:
                return await self._solution(context, polls, credential)
            return await self._report(context)
        finally:
            await caller.close()

    async def _client_id(self, tenant: str) -> str:
        try:
            return (await self._linked(tenant)).client_id or ""
        except NotLinked:
            return ""

    async def _linked(self, tenant: str) -> LinkState:
        """The tenant's healthy link of a service principal (never a user account's)."""
        for state in await self._links.link_states(tenant):
            if state.is_healthy and state.identity is not None:
                return state
        raise NotLinked(tenant)

    # ---- a solution -----------------------------------------------------------------------------

    async def _solution(self, context: _Context, polls: int, credential: Any) -> Finished | _Later:
        message = context.message
        environment = await self._environment(message.target, credential)
        if isinstance(environment, Finished):
            return environment
        delivery = SolutionDelivery(
            context.caller, self._settings, environment, context.state.client_id or ""
        )
        job_id = import_job_id(message.tenant, message.delivery_id)
        row = await self._row(message)
        if row.status is DeliveryStatus.QUEUED:
            started = await self._start_import(delivery, message, job_id)
            if isinstance(started, Finished):
                return started
            row = await self._update(
                message,
                status=DeliveryStatus.IMPORTING,
                import_job_id=job_id,
                async_operation_id=started.async_operation_id,
                solution_name=started.solution_name,
                solution_version=started.solution_version,
                reason="importing",
            )
        imported = await delivery.poll(row.async_operation_id, job_id, self._delivery.poll_seconds)
        if imported is None:
            return _Later()
        await self._update(message, components=json.dumps(imported.report.counts()))
        if imported.finished.status is DeliveryStatus.SUCCEEDED:
            await self._attribution(message, environment.id, imported.report.components)
        return imported.finished

    async def _environment(self, environment_id: str, credential: Any) -> Environment | Finished:
        reader = InventoryReader(self._settings, credential, self._transport)
        try:
            environments = {e.id.lower(): e for e in await reader.environments()}
        finally:
            await reader.close()
        environment = environments.get(environment_id.lower())
        if environment is None:
            return Finished(
                DeliveryStatus.FAILED, "environment-not-found", "no such environment in the tenant"
            )
        if not environment.dataverse_url:
            return Finished(
                DeliveryStatus.FAILED, "no-dataverse", "the environment has no Dataverse database"
            )
        if not self._settings.power_platform.dataverse_allowed(environment.dataverse_url):
            return Finished(
                DeliveryStatus.FAILED,
                "not-dataverse",
                "the environment's instance URL is not a Dataverse host",
            )
        return environment

    async def _start_import(
        self, delivery: SolutionDelivery, message: DeliveryMessage, job_id: str
    ) -> Started | Finished:
        if await delivery.job(job_id) is not None:
            return Started(None)  # an earlier copy started it: poll its import job
        blobs = self._require_blobs()
        data = await blobs.read(message.blob, sha256=message.sha256, size=message.size)
        parameters: list[dict[str, str]] = []
        if message.settings_blob is not None:
            settings = await self._settings_of(blobs, message.settings_blob)
            if isinstance(settings, Finished):
                return settings
            parameters = settings.component_parameters()
        return await delivery.start(data, parameters, job_id)

    async def _settings_of(self, blobs: DeliveryBlobs, name: str) -> DeploymentSettings | Finished:
        size = await blobs.stat(name)
        if size is None or size > 1024 * 1024:
            return Finished(
                DeliveryStatus.FAILED, "settings-missing", "the deployment settings are not in Blob Storage"
            )
        parsed = DeploymentSettings.parse(
            await blobs.read(name, sha256=name.removesuffix(".json"), size=size)
        )
        if isinstance(parsed, str):
            return Finished(DeliveryStatus.FAILED, "invalid-settings", parsed)
        return parsed

    def _require_blobs(self) -> DeliveryBlobs:
        if self._blobs is None:
            raise BlobMismatch("Blob Storage for deliveries is not configured")
        return self._blobs

    # ---- a report -------------------------------------------------------------------------------

    async def _report(self, context: _Context) -> Finished | _Later:
        message = context.message
        delivery = ReportDelivery(context.caller, self._settings, message.target)
        row = await self._row(message)
        import_id = row.powerbi_import_id
        if import_id is None:
            data = await self._require_blobs().read(message.blob, sha256=message.sha256, size=message.size)
            import_id = await delivery.start(data, message.dataset_name or "", message.name_conflict or "")
            if import_id is None:
                return Finished(
                    DeliveryStatus.FAILED, "powerbi-no-import", "Power BI answered without an import id"
                )
            await self._update(
                message, status=DeliveryStatus.IMPORTING, powerbi_import_id=import_id, reason="importing"
            )
        published = await delivery.poll(import_id, self._delivery.poll_seconds)
        if published is None:
            return _Later()
        if published.finished.status is DeliveryStatus.SUCCEEDED:
            components = {"dataset": list(published.datasets), "report": list(published.reports)}
            await self._update(message, components=json.dumps({k: len(v) for k, v in components.items()}))
            await self._attribution(message, POWER_BI_UNIT, {"dataset": list(published.datasets)})
        return published.finished

    # ---- the audit afterwards -------------------------------------------------------------------

    async def _attribution(
        self, message: DeliveryMessage, unit: str, components: dict[str, list[str]]
    ) -> None:
        """Audit the unit now and record how many delivered components are attributed to us; when
        the audit cannot run now, its message is queued and the row says so."""
        audit_run = f"delivery-{message.delivery_id}"
        try:
            await self._audit.audit_unit(AuditMessage(message.tenant, audit_run, unit))
        except (Throttled, NotLinked, AzureError, OSError, TimeoutError) as error:
            note = await self._queue_audit(message, audit_run, unit, error)
            await self._update(message, audit=note)
            return
        findings = await AttributionLedger(self._audit.ledger.table).findings(message.tenant, unit)
        statuses = {row.resource_id.lower(): row.status for row in findings}
        attributed: dict[str, int] = {}
        missing: list[str] = []
        for kind, ids in components.items():
            if kind not in _AUDITED_KINDS and kind != "dataset":
                continue
            attributed[kind] = sum(1 for i in ids if statuses.get(i) is FindingStatus.ATTRIBUTED)
            missing += [i for i in ids if statuses.get(i) is not FindingStatus.ATTRIBUTED]
        await self._update(
            message,
            attributed=json.dumps(attributed),
            not_attributed=json.dumps(missing[:_MAX_LISTED]),
            audit=f"audited ({audit_run})",
        )

    async def _queue_audit(self, message: DeliveryMessage, run: str, unit: str, error: BaseException) -> str:
        if self._sender is None:
            return f"not audited: {type(error).__name__}"
        await self._sender.send_batch(
            self._settings.audit_queue, [audit_message(AuditMessage(message.tenant, run, unit))]
        )
        return f"queued ({run}): the audit could not run at once"

    # ---- what comes next ------------------------------------------------------------------------

    async def _finish(self, message: DeliveryMessage, finished: Finished) -> None:
        await self._update(
            message,
            status=finished.status,
            code=finished.code,
            reason=finished.reason,
            remediation=finished.remediation,
            expected_attempt=None,
            expected_polls=None,
        )
        logger.info(
            "delivery %s of tenant %s: %s (%s)",
            message.delivery_id,
            message.tenant,
            finished.status.value,
            finished.code,
        )

    async def _poll_later(self, message: DeliveryMessage, original: str, attempt: int, polls: int) -> str:
        if self._sender is None or polls + 1 > self._delivery.max_polls:
            unfinished = Finished(
                DeliveryStatus.FAILED,
                "import-unfinished",
                f"the import had not finished after {polls + 1} polls",
                "Look at the import in the environment's solution history; deliver again when it ended.",
            )
            await self._finish(message, unfinished)
            return f"failed: {unfinished.reason}"
        delay = self._delivery.poll_delay_seconds
        await self._schedule(message, original, attempt, polls + 1, delay)
        await self._update(message, expected_attempt=attempt, expected_polls=polls + 1)
        return f"importing: polled again in {delay:.0f} s"

    async def _retry(self, message: DeliveryMessage, original: str, attempt: int, outcome: Outcome) -> str:
        decision = after_attempt(
            outcome, Counters(attempt, 0), self._policy, can_reschedule=self._sender is not None
        )
        if decision.next_attempt is None:
            gave_up = Finished(
                DeliveryStatus.FAILED, decision.outcome.code or "failed", decision.outcome.reason
            )
            await self._finish(message, gave_up)
            return f"failed: {gave_up.reason}"
        following = decision.next_attempt
        await self._schedule(message, original, following.number, 0, following.delay)
        await self._update(
            message,
            attempt=following.number,
            reason=outcome.reason,
            expected_attempt=following.number,
            expected_polls=0,
        )
        return f"retry {following.number} in {following.delay:.0f} s: {outcome.reason}"

    async def _schedule(
        self, message: DeliveryMessage, original: str, attempt: int, polls: int, delay: float
    ) -> None:
        assert self._sender is not None
        await self._sender.schedule(
            self._delivery.queue,
            message.body(),
            message_id=retry_message_id(original, attempt, polls),
            at=datetime.now(UTC) + timedelta(seconds=delay),
            properties={ATTEMPT_PROPERTY: attempt, PAUSES_PROPERTY: polls, ORIGINAL_ID_PROPERTY: original},
        )

    # ---- the row --------------------------------------------------------------------------------

    async def _row(self, message: DeliveryMessage) -> DeliveryRow:
        row = await self.ledger.get(message.tenant, message.delivery_id)
        assert row is not None  # checked by handle; rows are never deleted
        return row

    async def _update(self, message: DeliveryMessage, **changes: Any) -> DeliveryRow:
        async for _ in contention_pauses():
            row = await self._row(message)
            written = await self.ledger.replace(row.replace(**changes, updated_at=datetime.now(UTC)), row)
            if written is not None:
                return written
        raise AssertionError("unreachable: contention_pauses raises when it runs out")


def _agrees(row: DeliveryRow, message: DeliveryMessage) -> bool:
    """The message names what the API recorded (a message nobody recorded is refused)."""
    return (row.kind, row.target.lower(), row.blob, row.sha256, row.size, row.settings_blob) == (
        message.kind,
        message.target.lower(),
        message.blob,
        message.sha256,
        message.size,
        message.settings_blob,
    ) and (row.dataset_name, row.name_conflict) == (message.dataset_name, message.name_conflict)


def _refused(refused: ApiRefused, message: DeliveryMessage, client_id: str) -> Finished:
    environment = message.target if message.kind is DeliveryKind.SOLUTION else None
    remedy = refusal_remedy(refused.api, client_id=client_id, environment=environment)
    if refused.api is Api.POWER_BI and message.kind is DeliveryKind.PBIX:
        remedy += (
            f" To publish, the service principal must also be a Member or Contributor of workspace "
            f"{message.target}."
        )
    reason = f"{refused.api.value} refused the service principal (HTTP {refused.status})"
    return Finished(DeliveryStatus.NEEDS_CUSTOMER_ACTION, f"{refused.api.value}-refused", reason, remedy)
