"""The attribution audit: for a customer with a linked identity, read what its Power Platform holds
and record, per resource, whether it credits us.

It fans out through the audit queue with the spine's envelope: one `audit-customer` message per
customer and run lists the environments and sends one `audit-unit` message per environment (and
one for Power BI). A unit reads its APIs, decides each resource (`findings.decide`), and writes the
unit (`store.write_unit`: idempotent, so a redelivery or a retry changes nothing twice). An API the
customer has not granted is recorded with the grant to ask for and never hides the other APIs'
results; a throttled or failing call schedules the unit again with the spine's backoff.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError, ClientAuthenticationError

from shared.attribution.findings import Finding, Ours, decide, refusal_remedy
from shared.attribution.inventory import Api, ApiRefused, Environment, InventoryReader, Resource, Throttled
from shared.attribution.rows import POWER_BI_UNIT, AuditRow, Tally
from shared.attribution.store import AttributionLedger
from shared.links.ledger import Ledger
from shared.links.rows import LinkState
from shared.spine.credentials import CredentialCache
from shared.spine.decision import Counters, after_attempt
from shared.spine.envelope import ATTEMPT_PROPERTY, KIND_PROPERTY, ORIGINAL_ID_PROPERTY, counter
from shared.spine.errors import Stage, classify_error, transient
from shared.spine.identifiers import is_guid
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.retry import RetryPolicy, retry_message_id
from shared.spine.servicebus import OutgoingMessage, QueueSender
from shared.spine.settings import Settings
from shared.spine.untrusted import message_id_for_records

__all__ = ["AUDIT_CUSTOMER", "AUDIT_UNIT", "AttributionAudit", "AuditMessage", "NotLinked", "audit_message"]

logger = logging.getLogger(__name__)

AUDIT_CUSTOMER = "audit-customer"
AUDIT_UNIT = "audit-unit"
_PLAIN_ID = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class NotLinked(Exception):
    """The customer has no healthy link of ours: there is no identity to audit as."""


@dataclass(frozen=True)
class AuditMessage:
    """An audit message's body, once validated: whose, which run, and which unit (none: the customer)."""

    tenant: str
    run_id: str
    unit: str | None = None

    def body(self) -> bytes:
        document = {"customerTenantId": self.tenant, "runId": self.run_id}
        return json.dumps(document | ({"unit": self.unit} if self.unit else {})).encode()

    @classmethod
    def parse(cls, body: bytes) -> AuditMessage | None:
        """None for anything but the three known fields with plain values."""
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(document, dict) or not set(document) <= {"customerTenantId", "runId", "unit"}:
            return None
        tenant, run_id, unit = document.get("customerTenantId"), document.get("runId"), document.get("unit")
        if not (isinstance(tenant, str) and is_guid(tenant) and _plain(run_id)):
            return None
        if unit is not None and not _plain(unit):
            return None
        return cls(tenant.lower(), str(run_id), unit)


def _plain(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 128 and set(value) <= _PLAIN_ID


def audit_message(message: AuditMessage) -> OutgoingMessage:
    kind = AUDIT_UNIT if message.unit else AUDIT_CUSTOMER
    parts = ["audit", message.tenant, *([message.unit] if message.unit else []), message.run_id]
    return OutgoingMessage(message.body(), ":".join(parts), {KIND_PROPERTY: kind})


@dataclass
class _Unit:
    """What one unit's audit found: findings of the products it could read, and refused APIs."""

    findings: list[Finding] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


class AttributionAudit:
    """Takes the links ledger (who is linked), its own ledger, the credentials, a sender and settings."""

    def __init__(
        self,
        links: Ledger,
        ledger: AttributionLedger,
        credentials: CredentialCache,
        sender: QueueSender | None,
        settings: Settings,
        transport: Any,
    ) -> None:
        self._links, self.ledger, self._credentials = links, ledger, credentials
        self._sender, self._settings, self._transport = sender, settings, transport
        self._policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            base_seconds=settings.retry_base_seconds,
            max_seconds=settings.retry_max_seconds,
            credential_pause_seconds=settings.credential_pause_seconds,
        )

    # ---- the queue ------------------------------------------------------------------------------

    async def handle(self, body: bytes, *, message_id: str, properties: dict[str, Any]) -> str:
        """One audit message; returns what became of it, for the log (a retry is already scheduled
        when it says so). Raises only for a bug, or when a retry is needed that nobody can schedule."""
        message = AuditMessage.parse(body)
        if message is None:
            logger.warning(
                "audit message %s ignored: not a valid audit message", message_id_for_records(message_id)
            )
            return "rejected: not a valid audit message"
        try:
            await (
                self.start(message.tenant, message.run_id)
                if message.unit is None
                else self.audit_unit(message)
            )
            return "audited"
        except NotLinked:
            return "skipped: no healthy link of ours in this tenant"
        except Throttled as throttled:
            outcome = transient(
                f"{throttled.api.value}: throttled", code="HTTP429", retry_after=throttled.retry_after
            )
        except (TimeoutError, AzureError, OSError) as error:
            stage = Stage.TOKEN if isinstance(error, ClientAuthenticationError) else Stage.ARM
            outcome = classify_error(error, stage=stage, client_id="")
            if outcome.kind is not OutcomeKind.TRANSIENT:
                return await self._give_up(message, outcome)
        return await self._retry(message, message_id, properties, outcome)

    async def dead_lettered(self, body: bytes) -> str:
        """A message Service Bus gave up on: a unit is finished as not read; a customer's is only
        reported (its run was never started, or its units are on their way)."""
        message = AuditMessage.parse(body)
        if message is None:
            return "not a valid audit message; dropped"
        if message.unit is None:
            return f"the audit of tenant {message.tenant} (run {message.run_id}) was not started"
        reason = Outcome(OutcomeKind.FAILED, "dead-lettered by Service Bus", code="dead-lettered")
        return await self._give_up(message, reason)

    async def _give_up(self, message: AuditMessage, outcome: Outcome) -> str:
        """The unit is done with what it could not read (the run still completes)."""
        if message.unit is not None:
            note = outcome.reason + (f" {outcome.remediation}" if outcome.remediation else "")
            await self._finish(message, _Unit(refused={"error": note}))
        return f"{outcome.kind.value}: {outcome.reason}"

    async def _retry(
        self, message: AuditMessage, message_id: str, properties: dict[str, Any], outcome: Outcome
    ) -> str:
        counters = Counters(counter(properties, ATTEMPT_PROPERTY, 1), 0)
        decision = after_attempt(outcome, counters, self._policy, can_reschedule=self._sender is not None)
        if decision.next_attempt is None or self._sender is None:
            return await self._give_up(message, decision.outcome)
        original = message_id_for_records(str(properties.get(ORIGINAL_ID_PROPERTY) or message_id))
        outgoing = audit_message(message)
        await self._sender.schedule(
            self._settings.audit_queue,
            outgoing.body,
            message_id=retry_message_id(original, decision.next_attempt.number),
            at=datetime.now(UTC) + timedelta(seconds=decision.next_attempt.delay),
            properties={
                **outgoing.properties,
                ATTEMPT_PROPERTY: decision.next_attempt.number,
                ORIGINAL_ID_PROPERTY: original,
            },
        )
        return (
            f"retry {decision.next_attempt.number} in {decision.next_attempt.delay:.0f} s: {outcome.reason}"
        )

    # ---- the fleet ------------------------------------------------------------------------------

    async def start_week(self, *, now: datetime | None = None) -> tuple[str, int]:
        """One audit message per customer with a healthy link; the run is the day's (a timer that
        fires twice sends the same MessageIds, which the queue drops)."""
        run_id = (now or datetime.now(UTC)).date().isoformat()
        tenants = sorted(
            {state.partition_key async for state in self._links.all_link_states() if state.is_healthy}
        )
        await self._send_customers([AuditMessage(tenant, run_id) for tenant in tenants])
        return run_id, len(tenants)

    async def _send_customers(self, messages: list[AuditMessage]) -> None:
        if self._sender is None:
            for message in messages:
                await self.start(message.tenant, message.run_id)
            return
        await self._sender.send_batch(self._settings.audit_queue, [audit_message(m) for m in messages])

    # ---- a customer -----------------------------------------------------------------------------

    async def start(self, tenant: str, run_id: str) -> list[str]:
        """List the customer's environments, record the run, and send one message per unit."""
        states = await self._linked(tenant)
        reader = await self._reader(tenant, states[0])
        refused: dict[str, str] = {}
        try:
            environments = await reader.environments()
        except ApiRefused as error:
            environments = []
            refused[error.api.value] = refusal_remedy(error.api, client_id=states[0].client_id or "")
        finally:
            await reader.close()
        units = [environment.id for environment in environments] + [POWER_BI_UNIT]
        await self.ledger.start_run(tenant, run_id, units, datetime.now(UTC))
        if refused:  # idempotent, like every step here: a redelivered customer message repeats them
            await self.ledger.finish_unit(tenant, run_id, "-", Tally(), refused, datetime.now(UTC))
        await self._send([AuditMessage(tenant, run_id, unit) for unit in units])
        return units

    async def _send(self, messages: list[AuditMessage]) -> None:
        if self._sender is None:
            for message in messages:  # no queue (a local run): audit in this process
                await self.audit_unit(message)
            return
        await self._sender.send_batch(self._settings.audit_queue, [audit_message(m) for m in messages])

    async def _linked(self, tenant: str) -> list[LinkState]:
        states = [
            state
            for state in await self._links.link_states(tenant)
            if state.is_healthy and state.identity is not None
        ]
        if not states:
            raise NotLinked(tenant)
        return states

    async def _reader(self, tenant: str, state: LinkState) -> InventoryReader:
        assert state.identity is not None  # chosen by _linked
        credential = await self._credentials.get(tenant, state.identity)
        return InventoryReader(self._settings, credential, self._transport)

    # ---- a unit ---------------------------------------------------------------------------------

    async def audit_unit(self, message: AuditMessage) -> None:
        states = await self._linked(message.tenant)
        ours = Ours.of(
            object_ids=[s.object_id or "" for s in states], client_ids=[s.client_id or "" for s in states]
        )
        reader = await self._reader(message.tenant, states[0])
        try:
            if message.unit == POWER_BI_UNIT:
                unit = await _power_bi(reader, ours, states[0].client_id or "")
            else:
                unit = await self._environment(reader, message, ours, states[0].client_id or "")
        finally:
            await reader.close()
        await self._finish(message, unit)

    async def _environment(
        self, reader: InventoryReader, message: AuditMessage, ours: Ours, client_id: str
    ) -> _Unit:
        try:
            environments = {environment.id: environment for environment in await reader.environments()}
        except ApiRefused as refused:
            return _Unit(refused={refused.api.value: refusal_remedy(refused.api, client_id=client_id)})
        environment = environments.get(message.unit or "")
        if environment is None:
            return _Unit()  # gone since the run started: its findings are removed as deleted
        unit = _Unit()
        await _read(
            unit, Api.POWER_APPS, client_id, environment, lambda: reader.canvas_apps(environment), ours
        )
        await _read(unit, Api.FLOW, client_id, environment, lambda: reader.flows(environment), ours)
        if environment.dataverse_url:
            await _dataverse(unit, reader, environment, ours, client_id)
        return unit

    async def _finish(self, message: AuditMessage, unit: _Unit) -> None:
        now = datetime.now(UTC)
        unit_name = message.unit or "-"
        refused_products = _products_of(unit.refused)
        written = await self.ledger.write_unit(
            message.tenant, unit_name, message.run_id, unit.findings, now, keep=refused_products
        )
        logger.info(
            "attribution audit %s: tenant %s unit %s: %d resources, %d changes",
            message.run_id,
            message.tenant,
            unit_name,
            written.findings,
            written.changes,
        )
        run = await self.ledger.finish_unit(
            message.tenant, message.run_id, unit_name, Tally().add(unit.findings), unit.refused, now
        )
        if run is not None:
            await self._summarise(message.tenant, run)

    async def _summarise(self, tenant: str, run: AuditRow) -> None:
        runs = [r for r in await self.ledger.runs(tenant) if r.ended_at and r.run_id != run.run_id]
        previous = runs[-1].coverage if runs else None
        current = run.coverage
        logger.info("attribution audit %s of tenant %s finished: coverage %s", run.run_id, tenant, current)
        if previous is not None and current is not None and current < previous:
            logger.warning(
                "attribution coverage of tenant %s dropped from %.0f%% (run %s) to %.0f%% (run %s)",
                tenant,
                previous * 100,
                runs[-1].run_id,
                current * 100,
                run.run_id,
            )


async def _read(
    unit: _Unit, api: Api, client_id: str, environment: Environment, read: Any, ours: Ours
) -> None:
    """Read one API's resources into the unit, or record that the customer has not granted it."""
    try:
        resources: list[Resource] = await read()
    except ApiRefused:
        unit.refused[api.value] = refusal_remedy(api, client_id=client_id, environment=environment.id)
        return
    unit.findings += [decide(resource, ours) for resource in resources]


async def _dataverse(
    unit: _Unit, reader: InventoryReader, environment: Environment, ours: Ours, client_id: str
) -> None:
    try:
        systemuser = await reader.dataverse_user(environment, client_id)
    except ApiRefused:
        unit.refused[Api.DATAVERSE.value] = refusal_remedy(
            Api.DATAVERSE, client_id=client_id, environment=environment.id
        )
        return
    with_user = ours.with_dataverse_user(systemuser)
    await _read(
        unit,
        Api.DATAVERSE,
        client_id,
        environment,
        lambda: reader.dataverse_resources(environment),
        with_user,
    )


async def _power_bi(reader: InventoryReader, ours: Ours, client_id: str) -> _Unit:
    unit = _Unit()
    try:
        resources = await reader.power_bi_datasets()
    except ApiRefused:
        unit.refused[Api.POWER_BI.value] = refusal_remedy(Api.POWER_BI, client_id=client_id)
        return unit
    unit.findings = [decide(resource, ours) for resource in resources]
    return unit


_API_PRODUCTS = {
    Api.POWER_APPS.value: ("canvas-app",),
    Api.FLOW.value: ("cloud-flow",),
    Api.DATAVERSE.value: ("model-driven-app", "copilot-studio-bot"),
    Api.POWER_BI.value: ("power-bi-dataset",),
}


def _products_of(refused: dict[str, str]) -> frozenset[str]:
    """The products whose findings stay as they were: their API was not read this time."""
    if "error" in refused:
        return frozenset(product for products in _API_PRODUCTS.values() for product in products)
    return frozenset(product for api in refused for product in _API_PRODUCTS.get(api, ()))
