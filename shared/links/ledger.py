"""The links ledger in Table Storage: every link's current state and an append-only history per
tenant, written so that a state change, its history event and the receipt that makes redelivery
harmless agree (one entity-group transaction per partition; the rows are in `shared.links.rows`).

A verification that finds everything as the last one left it only extends the link's verified
interval (one ETag-checked MERGE of the state row): the evidence is kept as intervals, not as one
event per night.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.pipeline.transport import AioHttpTransport

from shared.links.earning import note
from shared.links.message import OnboardingRequest
from shared.links.recognition import Recognition
from shared.links.retirement import RETIRE_SOURCE, retirement_reason
from shared.links.rows import (
    EVENT_PREFIX,
    STATE_PREFIX,
    HistoryEvent,
    IntentRow,
    LinkState,
    event_row_key,
    intent_row_key,
    state_row_key,
)
from shared.links.runs import Runs
from shared.links.transitions import changes_state, extends_verification, history_event, link_state
from shared.spine.actor import current_actor
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.receipts import Receipt, chain_id, receipt_row_key
from shared.spine.settings import Settings
from shared.spine.table import (
    LedgerContention,
    Operation,
    Table,
    after_prefix,
    contention_pauses,
    create,
    delete_if_unchanged,
    write_if_unchanged,
)
from shared.spine.table_row import TableRow, column_name
from shared.spine.write_intent import WriteIntent

__all__ = ["Attempt", "Ledger", "LedgerContention", "LedgerView", "Recorded", "UNKNOWN_TENANT"]

logger = logging.getLogger(__name__)

UNKNOWN_TENANT = "unknown-tenant"
"""Partition for rejected messages that did not even carry a valid customer tenant ID."""

_ALL_STATES = "RowKey ge @lo and RowKey lt @hi"
_ALL_STATES_PARAMETERS = {"lo": STATE_PREFIX, "hi": after_prefix(STATE_PREFIX)}


@dataclass(frozen=True)
class Attempt:
    """What one processing attempt was about (the safe, validated parts of a message)."""

    message_id: str
    source: str
    customer_tenant_id: str | None = None
    client_id: str | None = None
    identity_type: str | None = None
    key_vault_secret_name: str | None = None
    user_principal_name: str | None = None
    """A user account's sign-in name (palctl's interactive records only)."""
    partner_id: str | None = None
    customer_name: str | None = None
    correlation_id: str | None = None
    delivery_count: int = 1
    duration_ms: float = 0.0
    attempt: int = 1
    """1 for the message as sent, n for its (n-1)th scheduled retry."""
    next_attempt_at: datetime | None = None
    run_id: str | None = None
    """The re-verification run this attempt belongs to, if any."""
    original_message_id: str | None = None
    """The message this one is a scheduled retry of (itself when it is the original)."""
    next_attempt: int | None = None
    """The number of the retry this attempt scheduled, if any."""
    body_digest: str | None = None
    """Digest of the message body (none for a relink): part of the chain's identity."""
    actor: str | None = dataclasses.field(default_factory=current_actor)
    """The person who asked for this attempt (an operator's action in the dashboard), if any."""

    @property
    def chain_id(self) -> str:
        return chain_id(self.original_message_id or self.message_id, self.body_digest)

    def about(self, request: OnboardingRequest) -> Attempt:
        """This attempt, with what the validated request says about the customer and identity."""
        identity = request.identity
        return dataclasses.replace(
            self,
            customer_tenant_id=request.customer_tenant_id,
            client_id=identity.client_id,
            identity_type=identity.type.value,
            key_vault_secret_name=identity.key_vault_secret_name,
            partner_id=request.partner_id,
            customer_name=request.customer_name,
            correlation_id=request.correlation_id,
        )


@dataclass(frozen=True)
class LedgerView:
    """What one read of a partition found for a message: its receipt, a pending write intent, and
    the link's state."""

    partition: str
    receipt: Receipt | None = None
    intent_row: IntentRow | None = None
    state: LinkState | None = None

    @property
    def intent(self) -> WriteIntent | None:
        """What an earlier attempt of this message was about to change in ARM, if its record was lost."""
        return self.intent_row.intent if self.intent_row is not None else None


@dataclass(frozen=True)
class Recorded:
    event_row_key: str | None
    duplicate: bool
    recognition_change: Outcome | None = None
    """The outcome of the event that recorded a change of the link's Azure recognition, if any."""


class Ledger:
    """Reads and writes the links ledger; `runs` holds the nightly runs' records."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.runs = Runs(table)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        transport: AioHttpTransport | None = None,
        credential: AsyncTokenCredential | None = None,
    ) -> Ledger:
        return cls(Table.from_settings(settings, transport=transport, credential=credential))

    async def ensure_table(self) -> None:
        await self.table.ready()

    async def close(self) -> None:
        await self.table.close()

    @staticmethod
    def partition(attempt: Attempt) -> str:
        return attempt.customer_tenant_id or UNKNOWN_TENANT

    async def view(self, customer_tenant_id: str | None, chain: str, client_id: str | None) -> LedgerView:
        """One request for the chain's receipt and intent and the link's state: reused by `record`."""
        return await self._view(customer_tenant_id or UNKNOWN_TENANT, chain, client_id)

    async def _view(self, partition: str, chain: str, client_id: str | None) -> LedgerView:
        keys = [receipt_row_key(chain), intent_row_key(chain)] + (
            [state_row_key(client_id)] if client_id else []
        )
        rows = await self.table.point_reads(partition, keys)
        receipt, intent = rows.get(keys[0]), rows.get(keys[1])
        state = rows.get(keys[2]) if client_id else None
        return LedgerView(
            partition,
            Receipt.from_entity(receipt) if receipt is not None else None,
            IntentRow.from_entity(intent) if intent is not None else None,
            LinkState.from_entity(state) if state is not None else None,
        )

    async def record_intent(self, customer_tenant_id: str, chain: str, intent: WriteIntent) -> None:
        """Say what is about to change in ARM before changing it (removed by `record`)."""
        client = await self.table.ready()
        row = IntentRow(
            partition_key=customer_tenant_id,
            row_key=intent_row_key(chain),
            original_message_id=chain,
            client_id=intent.client_id,
            requested_partner_id=intent.requested_partner_id,
            previous_partner_id=intent.previous_partner_id,
            previous_is_ours=intent.previous_is_ours,
            recorded_at=datetime.now(UTC),
        )
        await client.upsert_entity(row.to_entity())

    async def record(
        self,
        attempt: Attempt,
        outcome: Outcome,
        *,
        at: datetime | None = None,
        view: LedgerView | None = None,
        recognition: Recognition | None = None,
    ) -> Recorded:
        """Write the outcome: state (unless rejected), history event and receipt, atomically; with
        the link's Azure recognition when it was checked (`shared.links.earning`).

        A receipt that blocks this attempt means a redelivery: nothing is written. Concurrent
        writers for the same link are serialised by ETags; the loser reads again and decides again
        after a short random pause, and raises LedgerContention when contention persists.
        """
        partition = self.partition(attempt)
        async for number in contention_pauses():
            if number == 0 and view is not None and view.partition == partition:
                found = view  # read just before linking: no second read
            else:
                found = await self._view(partition, attempt.chain_id, attempt.client_id)
            if found.receipt is not None and found.receipt.blocks(attempt.attempt):
                return Recorded(event_row_key=found.receipt.event_row_key or None, duplicate=True)
            now = at or datetime.now(UTC)
            if found.state is not None and extends_verification(attempt, outcome, found):
                written, change = await self._extend_verification(found.state, attempt, now, recognition)
                if written:
                    return Recorded(event_row_key=None, duplicate=False, recognition_change=change)
                continue  # the state changed meanwhile: read again and decide again
            event_key = event_row_key(now)
            operations, change = _operations(partition, attempt, outcome, found, event_key, now, recognition)
            if await self.table.submit(operations):
                return Recorded(event_row_key=event_key, duplicate=False, recognition_change=change)
        raise AssertionError("unreachable: contention_pauses raises when it runs out")

    async def extend_steady(self, attempt: Attempt, etag: str, columns: dict[str, Any]) -> bool:
        """A steady night's MERGE of the link's state row, unread (`shared.links.snapshot`): False
        when the row is no longer the one with `etag`."""
        row = TableRow(partition_key=self.partition(attempt), row_key=state_row_key(attempt.client_id or ""))
        return await self.table.merge_if_unchanged(row, etag, columns)

    async def _extend_verification(
        self, previous: LinkState, attempt: Attempt, now: datetime, recognition: Recognition | None
    ) -> tuple[bool, Outcome | None]:
        """One more night in the link's verified interval: the state row alone, ETag-checked (no
        history event, no receipt: verifying again is harmless); the whole row, with one event when
        its recognition changed. False when the row changed meanwhile."""
        extension = {
            "last_checked_at": now,
            "last_linked_at": now,
            "verified_count": (previous.verified_count or 1) + 1,
            "last_message_id": attempt.message_id,
            **({"last_run_id": attempt.run_id} if attempt.run_id else {}),
        }
        noted = note(previous.replace(**extension), previous, recognition, at=now, run_id=attempt.run_id)
        if not noted.rewrite:
            columns = {column_name(name): value for name, value in (extension | noted.checked).items()}
            return await self.table.merge_if_unchanged(previous, previous.etag, columns), None
        change = noted.change
        event = (
            history_event(previous.partition_key, event_row_key(now), attempt, change, now)
            if change
            else None
        )
        operations = [write_if_unchanged(noted.state, previous), *([create(event)] if event else [])]
        return await self.table.submit(operations), change

    async def retire(
        self, customer_tenant_id: str, client_id: str, reason: str, *, at: datetime | None = None
    ) -> bool:
        """An operator retires an identity: in one transaction its state row goes (ETag-checked)
        and a `retired` event with the reason joins the history, which is kept.

        The nightly run and a body-less relink no longer see the identity. The reason is checked
        (shared.links.retirement) before anything is read. False when there is no such row.
        """
        reason = retirement_reason(reason)
        state_key = state_row_key(client_id)
        async for _ in contention_pauses():
            found = (await self.table.point_reads(customer_tenant_id, [state_key])).get(state_key)
            if found is None:
                return False
            state = LinkState.from_entity(found)
            now = at or datetime.now(UTC)
            event = history_event(
                customer_tenant_id, event_row_key(now), _retirement(state), _retired(state, reason), now
            )
            if await self.table.submit([create(event), delete_if_unchanged(state)]):
                return True
        raise AssertionError("unreachable: contention_pauses raises when it runs out")

    async def link_states(self, customer_tenant_id: str) -> list[LinkState]:
        entities = await self.table.range(customer_tenant_id, STATE_PREFIX, limit=None)
        return [LinkState.from_entity(entity) for entity in entities]

    async def history(self, customer_tenant_id: str, *, limit: int = 50) -> list[HistoryEvent]:
        """The tenant's history, newest first."""
        entities = await self.table.range(customer_tenant_id, EVENT_PREFIX, limit=limit)
        return [HistoryEvent.from_entity(entity) for entity in entities]

    async def all_link_states(self) -> AsyncIterator[LinkState]:
        """Every link's current state, across all tenants, page by page."""
        client = await self.table.ready()
        async for entity in client.query_entities(_ALL_STATES, parameters=_ALL_STATES_PARAMETERS):
            yield LinkState.from_entity(entity)

    async def link_states_page(
        self,
        *,
        outcome: str | None,
        top: int,
        continuation: dict[str, Any] | None,
        identity_type: str | None = None,
    ) -> tuple[list[LinkState], dict[str, Any] | None]:
        """One page of link states across tenants, optionally of one outcome and one identity type
        (parameters, never string concatenation, build the filter)."""
        client = await self.table.ready()
        query, parameters = _ALL_STATES, dict(_ALL_STATES_PARAMETERS)
        if outcome is not None:
            query += " and Outcome eq @outcome"
            parameters["outcome"] = outcome
        if identity_type is not None:
            query += " and IdentityType eq @identityType"
            parameters["identityType"] = identity_type
        # The Tables SDK's continuation token is a dict (next PartitionKey/RowKey), typed as str.
        token: Any = continuation
        pages: Any = client.query_entities(query, parameters=parameters, results_per_page=top).by_page(
            continuation_token=token
        )
        async for page in pages:
            items = [LinkState.from_entity(entity) async for entity in page]
            return items, pages.continuation_token
        return [], None

    async def states_of_run(self, run_id: str) -> AsyncIterator[LinkState]:
        """The states last checked by this run (only the columns a run summary needs)."""
        client = await self.table.ready()
        query = client.query_entities(
            f"LastRunId eq @run and {_ALL_STATES}",
            parameters={"run": run_id, **_ALL_STATES_PARAMETERS},
            select=[
                "PartitionKey",
                "RowKey",
                "Outcome",
                "LastCheckedAt",
                "LastRunId",
                "Earning",
                "EarningChange",
                "EarningChangedRunId",
            ],
        )
        async for entity in query:
            yield LinkState.from_entity(entity)


def _operations(
    partition: str,
    attempt: Attempt,
    outcome: Outcome,
    found: LedgerView,
    event_key: str,
    now: datetime,
    recognition: Recognition | None,
) -> tuple[list[Operation], Outcome | None]:
    """The transaction: the history event, the chain's receipt, the removal of a settled intent,
    the link's state when the outcome changes it, and the event of a change in its recognition."""
    receipt = Receipt(
        partition_key=partition,
        row_key=receipt_row_key(attempt.chain_id),
        message_id=attempt.message_id,
        original_message_id=attempt.chain_id,
        next_attempt=attempt.next_attempt,
        outcome=outcome.kind,
        reason=outcome.reason,
        event_row_key=event_key,
        recorded_at=now,
    )
    operations = [
        create(history_event(partition, event_key, attempt, outcome, now)),
        write_if_unchanged(receipt, found.receipt),
    ]
    if found.intent_row is not None:
        operations.append(delete_if_unchanged(found.intent_row))
    if not (attempt.client_id and changes_state(attempt, outcome, found.state)):
        return operations, None
    state = link_state(partition, attempt, outcome, now, found.state)
    noted = note(state, found.state, recognition, at=now, run_id=attempt.run_id)
    operations.append(write_if_unchanged(noted.state, found.state))
    if noted.change is not None:  # listed after the attempt's own event (newest first)
        later = event_row_key(now + timedelta(microseconds=1))
        operations.append(create(history_event(partition, later, attempt, noted.change, now)))
    return operations, noted.change


def _retirement(state: LinkState) -> Attempt:
    """The retirement as an attempt on the identity the state row records, for its history event."""
    return Attempt(
        message_id=f"{RETIRE_SOURCE}:{uuid.uuid4()}",
        source=RETIRE_SOURCE,
        customer_tenant_id=state.customer_tenant_id,
        client_id=state.client_id,
        identity_type=state.identity_type,
        user_principal_name=state.user_principal_name,
        partner_id=state.partner_id,
        customer_name=state.customer_name,
        correlation_id=state.correlation_id,
    )


def _retired(state: LinkState, reason: str) -> Outcome:
    """What the identity was last linked to stays on record with the reason."""
    return Outcome(OutcomeKind.RETIRED, reason, partner_id=state.linked_partner_id, object_id=state.object_id)
