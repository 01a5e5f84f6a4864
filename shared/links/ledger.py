"""The ledger in Table Storage: the current state of every link and an append-only history per tenant.

One table, partitioned by customer tenant, so that a state change, its history event and the
message receipt that makes redelivery harmless are written in one atomic transaction:
- `link~{clientId}`: current state of the identity's link in that tenant;
- `event~{inverted time}~{id}`: history, newest first;
- `receipt~{hash of message id}`: which message produced which event;
- `intent~{hash of message id}`: what an attempt is about to change in ARM, written before the
  write call and removed with the outcome (shared/write_intent.py).
Nothing secret is ever put in an entity: outcomes carry no secret by construction, and only
Key Vault secret *names* are stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import random
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.core.pipeline.transport import AioHttpTransport
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.links.message import OnboardingRequest
from shared.links.retirement import RETIRE_SOURCE, retirement_reason
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.settings import Settings
from shared.spine.write_intent import WriteIntent

logger = logging.getLogger(__name__)

UNKNOWN_TENANT = "unknown-tenant"
"""Partition for rejected messages that did not even carry a valid customer tenant ID."""

_STATE = "link~"
_EVENT = "event~"
_RECEIPT = "receipt~"
_INTENT = "intent~"
_INVERT = 10**20 - 1
_MAX_WRITE_ATTEMPTS = 8
_CONTENTION_BASE_SECONDS = 0.05
_CONTENTION_MAX_SECONDS = 1.0
_SUCCESS_KINDS = {
    OutcomeKind.LINKED,
    OutcomeKind.UPDATED,
    OutcomeKind.ALREADY_LINKED,
    OutcomeKind.VERIFIED,
    OutcomeKind.HEALED,
}
RUNS_PARTITION = "pal-runs"
"""Partition of the re-verification run records (one entity per nightly run)."""


class LedgerContention(RuntimeError):
    """Too many writers for one link at once, even after backing off: try the attempt again later."""


@dataclass(frozen=True)
class Attempt:
    """What one processing attempt was about (the safe, validated parts of a message)."""

    message_id: str
    source: str
    customer_tenant_id: str | None = None
    client_id: str | None = None
    identity_type: str | None = None
    key_vault_secret_name: str | None = None
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


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


def chain_id(original_message_id: str, digest: str | None) -> str:
    """A message, its scheduled retries and its body: what one receipt stands for."""
    return f"{original_message_id}#{digest}" if digest else original_message_id


def is_final(outcome: OutcomeKind, *, retry_scheduled: bool) -> bool:
    """A recorded outcome is its message's last: not worth another attempt, and none scheduled (a
    paused or backed-off attempt records its outcome with the next attempt already scheduled)."""
    return not outcome.is_retryable and not retry_scheduled


def is_final_event(event: Mapping[str, Any]) -> bool:
    """A history event (a `Ledger.history` row) is the final outcome of its message's chain."""
    return is_final(OutcomeKind(event["Outcome"]), retry_scheduled=bool(event.get("NextAttemptAt")))


@dataclass(frozen=True)
class Receipt:
    """The latest recorded attempt of a message and its scheduled retries (one chain).

    A final outcome closes the chain: every later delivery of any of its messages is a duplicate.
    While a retry is scheduled, only copies of that attempt may go on (a deferred copy has its own
    MessageId but the same attempt number); a redelivered earlier copy would make a second,
    parallel attempt.
    """

    message_id: str
    outcome: OutcomeKind
    reason: str
    event_row_key: str
    next_attempt: int | None = None

    @property
    def is_terminal(self) -> bool:
        return is_final(self.outcome, retry_scheduled=self.next_attempt is not None)

    def blocks(self, attempt: int) -> bool:
        """True when attempt number `attempt` of this chain must not be processed (again)."""
        if self.is_terminal:
            return True
        return self.next_attempt is not None and self.next_attempt != attempt


@dataclass(frozen=True)
class LedgerView:
    """What one read of a partition found for a message: its receipt and the link's state row."""

    partition: str
    receipt: Receipt | None
    rows: dict[str, dict[str, Any]]
    intent: WriteIntent | None = None
    """What an earlier attempt of this message was about to change in ARM, if its record was lost."""


@dataclass(frozen=True)
class Recorded:
    event_row_key: str | None
    duplicate: bool


def receipt_row_key(message_id: str) -> str:
    # Message ids may hold characters a RowKey may not ('/', '#', '?'): store a digest.
    return _RECEIPT + hashlib.sha256(message_id.encode("utf-8")).hexdigest()[:40]


def intent_row_key(message_id: str) -> str:
    return _INTENT + hashlib.sha256(message_id.encode("utf-8")).hexdigest()[:40]


def _event_row_key(now: datetime) -> str:
    micros = int(now.timestamp() * 1_000_000)
    return f"{_EVENT}{_INVERT - micros:020d}~{uuid.uuid4().hex[:8]}"


def _clean(entity: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entity.items() if value is not None}


class Ledger:
    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._ready = False
        self._ready_lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        transport: AioHttpTransport | None = None,
        credential: AsyncTokenCredential | None = None,
    ) -> Ledger:
        extra: dict[str, Any] = {"transport": transport} if transport is not None else {}
        if settings.ledger_connection_string:
            table = TableClient.from_connection_string(
                settings.ledger_connection_string, settings.ledger_table, **extra
            )
        else:
            assert settings.ledger_table_service_uri and credential is not None
            table = TableClient(
                settings.ledger_table_service_uri, settings.ledger_table, credential=credential, **extra
            )
        return cls(table)

    async def ensure_table(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                try:
                    await self._table.create_table()
                except ResourceExistsError:
                    pass
                self._ready = True

    async def close(self) -> None:
        await self._table.close()

    @staticmethod
    def partition(attempt: Attempt) -> str:
        return attempt.customer_tenant_id or UNKNOWN_TENANT

    async def view(self, customer_tenant_id: str | None, chain_id: str, client_id: str | None) -> LedgerView:
        """One request for the chain's receipt and the link's state: reused by `record`."""
        await self.ensure_table()
        partition = customer_tenant_id or UNKNOWN_TENANT
        keys = [receipt_row_key(chain_id), intent_row_key(chain_id)]
        keys += [f"{_STATE}{client_id}"] if client_id else []
        rows = await self._point_reads(partition, keys)
        entity, intent = rows.get(keys[0]), rows.get(keys[1])
        return LedgerView(
            partition, _receipt(entity) if entity else None, rows, _intent(intent) if intent else None
        )

    async def record_intent(self, customer_tenant_id: str, chain_id: str, intent: WriteIntent) -> None:
        """Say what is about to change in ARM before changing it (removed by `record`)."""
        await self.ensure_table()
        entity = {
            "PartitionKey": customer_tenant_id,
            "RowKey": intent_row_key(chain_id),
            "OriginalMessageId": chain_id,
            "ClientId": intent.client_id,
            "RequestedPartnerId": intent.requested_partner_id,
            "PreviousPartnerId": intent.previous_partner_id,
            "PreviousIsOurs": intent.previous_is_ours,
            "RecordedAt": datetime.now(UTC),
        }
        await self._table.upsert_entity(_clean(entity), mode=UpdateMode.REPLACE)

    async def _point_reads(self, partition: str, row_keys: list[str]) -> dict[str, dict[str, Any]]:
        """Fetch several rows of one partition in a single request."""
        clauses = " or ".join(f"RowKey eq @r{index}" for index in range(len(row_keys)))
        parameters = {"pk": partition, **{f"r{index}": key for index, key in enumerate(row_keys)}}
        found: dict[str, dict[str, Any]] = {}
        async for entity in self._table.query_entities(
            f"PartitionKey eq @pk and ( {clauses} )", parameters=parameters
        ):
            found[entity["RowKey"]] = dict(entity) | {"_etag": entity.metadata["etag"]}
        return found

    async def record(
        self,
        attempt: Attempt,
        outcome: Outcome,
        *,
        at: datetime | None = None,
        view: LedgerView | None = None,
    ) -> Recorded:
        """Write the outcome: state (unless rejected), history event and receipt, atomically.

        A terminal receipt for the same message means this is a redelivery: nothing is written.
        Concurrent writers for the same link are serialised by ETags; the loser re-reads and retries
        after a short random pause, and raises LedgerContention when contention persists.
        """
        await self.ensure_table()
        partition = self.partition(attempt)
        receipt_key = receipt_row_key(attempt.chain_id)
        intent_key = intent_row_key(attempt.chain_id)
        state_key = f"{_STATE}{attempt.client_id}" if attempt.client_id else None
        keys = [receipt_key, intent_key] + ([state_key] if state_key else [])

        for number in range(_MAX_WRITE_ATTEMPTS):
            if number:
                await asyncio.sleep(_contention_pause(number))
            if view is not None and view.partition == partition:
                rows, view = view.rows, None  # read just before linking: no second read
            else:
                rows = await self._point_reads(partition, keys)
            existing_receipt = rows.get(receipt_key)
            if existing_receipt is not None and _receipt(existing_receipt).blocks(attempt.attempt):
                return Recorded(event_row_key=existing_receipt.get("EventRowKey"), duplicate=True)

            now = at or datetime.now(UTC)
            previous = rows.get(state_key) if state_key else None
            if previous is not None and extends_verification(
                attempt, outcome, previous, rows.keys() - {state_key}
            ):
                if await self._extend_verification(previous, attempt, now):
                    return Recorded(event_row_key=None, duplicate=False)
                continue  # the state changed meanwhile: read again and decide again
            event_key = _event_row_key(now)
            operations = self._operations(attempt, outcome, rows, event_key, now)
            try:
                await self._table.submit_transaction(operations)
            except HttpResponseError as err:  # TableTransactionError for a failed batch
                if err.status_code in (409, 412):
                    continue  # another writer got there first: read again and decide again
                raise
            return Recorded(event_row_key=event_key, duplicate=False)
        raise LedgerContention("ledger: too many concurrent writers for this link; try again later")

    def _operations(
        self,
        attempt: Attempt,
        outcome: Outcome,
        rows: dict[str, dict[str, Any]],
        event_key: str,
        now: datetime,
    ) -> list[Any]:
        """The transaction: the history event, the chain's receipt, the removal of a settled intent,
        and the link's state when the outcome changes it."""
        partition = self.partition(attempt)
        receipt_key, intent_key = receipt_row_key(attempt.chain_id), intent_row_key(attempt.chain_id)
        state_key = f"{_STATE}{attempt.client_id}" if attempt.client_id else None
        receipt = _clean(
            {
                "PartitionKey": partition,
                "RowKey": receipt_key,
                "MessageId": attempt.message_id,
                "OriginalMessageId": attempt.chain_id,
                "NextAttempt": attempt.next_attempt,
                "Outcome": outcome.kind.value,
                "Reason": outcome.reason,
                "EventRowKey": event_key,
                "RecordedAt": now,
            }
        )
        operations: list[Any] = [
            ("create", self._event(partition, event_key, attempt, outcome, now)),
            _write(receipt, rows.get(receipt_key)),
        ]
        if intent_key in rows:
            operations.append(_delete(rows[intent_key]))
        previous = rows.get(state_key) if state_key else None
        if state_key and changes_state(attempt, outcome, previous):
            operations.append(_write(_state(partition, state_key, attempt, outcome, now, previous), previous))
        return operations

    async def _extend_verification(self, previous: dict[str, Any], attempt: Attempt, now: datetime) -> bool:
        """One more night in the link's verified interval: the state row alone, ETag-checked (no
        history event, no receipt: verifying again is harmless). False when the row changed."""
        entity = {
            "PartitionKey": previous["PartitionKey"],
            "RowKey": previous["RowKey"],
            "LastCheckedAt": now,
            "LastLinkedAt": now,
            "VerifiedCount": int(previous.get("VerifiedCount", 1)) + 1,
            "LastMessageId": attempt.message_id,
            **({"LastRunId": attempt.run_id} if attempt.run_id else {}),
        }
        try:
            await self._table.update_entity(
                entity,
                mode=UpdateMode.MERGE,
                etag=previous["_etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError as err:
            if err.status_code in (404, 409, 412):
                return False
            raise
        return True

    @staticmethod
    def _event(
        partition: str, row_key: str, attempt: Attempt, outcome: Outcome, now: datetime
    ) -> dict[str, Any]:
        return _clean(
            {
                "PartitionKey": partition,
                "RowKey": row_key,
                "EventTime": now,
                "Source": attempt.source,
                "MessageId": attempt.message_id,
                "DeliveryCount": attempt.delivery_count,
                "Attempt": attempt.attempt,
                "NextAttemptAt": attempt.next_attempt_at,
                "ClientId": attempt.client_id,
                "IdentityType": attempt.identity_type,
                "CustomerName": attempt.customer_name,
                "CorrelationId": attempt.correlation_id,
                "RequestedPartnerId": attempt.partner_id,
                "RunId": attempt.run_id,
                "Outcome": outcome.kind.value,
                "Reason": outcome.reason,
                "Code": outcome.code,
                "Remediation": outcome.remediation,
                "Details": "\n".join(outcome.details) or None,
                "PartnerId": outcome.partner_id,
                "PreviousPartnerId": outcome.previous_partner_id,
                "ObjectId": outcome.object_id,
                "LinkVersion": outcome.link_version,
                "RetryAfterSeconds": outcome.retry_after,
                "DurationMs": round(attempt.duration_ms, 1),
            }
        )

    async def link_states(self, customer_tenant_id: str) -> list[dict[str, Any]]:
        return await self._range(customer_tenant_id, _STATE, limit=None)

    async def retire(
        self, customer_tenant_id: str, client_id: str, reason: str, *, at: datetime | None = None
    ) -> bool:
        """An operator retires an identity: in one transaction its state row goes (ETag-checked)
        and a `retired` event with the reason joins the history, which is kept.

        The nightly run and a body-less relink no longer see the identity. The reason is checked
        (shared.links.retirement) before anything is read. False when there is no such row.
        """
        reason = retirement_reason(reason)
        await self.ensure_table()
        state_key = f"{_STATE}{client_id}"
        for number in range(_MAX_WRITE_ATTEMPTS):
            if number:
                await asyncio.sleep(_contention_pause(number))
            state = (await self._point_reads(customer_tenant_id, [state_key])).get(state_key)
            if state is None:
                return False
            now = at or datetime.now(UTC)
            event = self._event(
                customer_tenant_id, _event_row_key(now), _retirement(state), _retired(state, reason), now
            )
            try:
                await self._table.submit_transaction([("create", event), _delete(state)])
            except HttpResponseError as err:
                if err.status_code in (404, 409, 412):
                    continue  # changed or retired meanwhile: read again and decide again
                raise
            return True
        raise LedgerContention("ledger: too many concurrent writers for this link; try again later")

    async def history(self, customer_tenant_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        return await self._range(customer_tenant_id, _EVENT, limit=limit)

    async def _range(self, partition: str, prefix: str, *, limit: int | None) -> list[dict[str, Any]]:
        await self.ensure_table()
        entities: list[dict[str, Any]] = []
        query = self._table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": partition, "lo": prefix, "hi": prefix[:-1] + chr(ord(prefix[-1]) + 1)},
            results_per_page=min(limit or 1000, 1000),
        )
        async for entity in query:
            entities.append(dict(entity))
            if limit is not None and len(entities) >= limit:
                break
        return entities

    async def all_link_states(self) -> AsyncIterator[dict[str, Any]]:
        """Every link's current state, across all tenants, page by page."""
        await self.ensure_table()
        query = self._table.query_entities(
            "RowKey ge @lo and RowKey lt @hi", parameters={"lo": _STATE, "hi": "link\x7f"}
        )
        async for entity in query:
            yield dict(entity)

    async def link_states_page(
        self, *, outcome: str | None, top: int, continuation: dict[str, Any] | None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One page of link states across tenants, optionally of one outcome (parameters, never
        string concatenation, build the filter)."""
        await self.ensure_table()
        query = "RowKey ge @lo and RowKey lt @hi"
        parameters: dict[str, Any] = {"lo": _STATE, "hi": "link\x7f"}
        if outcome is not None:
            query += " and Outcome eq @outcome"
            parameters["outcome"] = outcome
        # The Tables SDK's continuation token is a dict (next PartitionKey/RowKey), typed as str.
        token: Any = continuation
        pages: Any = self._table.query_entities(query, parameters=parameters, results_per_page=top).by_page(
            continuation_token=token
        )
        async for page in pages:
            items = [dict(entity) async for entity in page]
            return items, pages.continuation_token
        return [], None

    async def states_of_run(self, run_id: str) -> AsyncIterator[dict[str, Any]]:
        await self.ensure_table()
        query = self._table.query_entities(
            "LastRunId eq @run and RowKey ge @lo and RowKey lt @hi",
            parameters={"run": run_id, "lo": _STATE, "hi": "link\x7f"},
            select=["Outcome", "LastCheckedAt", "LastRunId"],
        )
        async for entity in query:
            yield dict(entity)

    async def create_run(self, run_id: str, *, total: int, started_at: datetime) -> bool:
        """Record the start of a run; False when this run already exists (the timer fired twice)."""
        await self.ensure_table()
        entity = {"PartitionKey": RUNS_PARTITION, "RowKey": run_id, "Total": total, "StartedAt": started_at}
        try:
            await self._table.create_entity(entity)
        except ResourceExistsError:
            return False
        return True

    async def runs(self) -> list[dict[str, Any]]:
        await self.ensure_table()
        query = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": RUNS_PARTITION})
        return sorted([dict(entity) async for entity in query], key=lambda run: run["RowKey"])

    async def finish_run(self, run_id: str, summary: dict[str, Any]) -> None:
        await self.ensure_table()
        entity = {"PartitionKey": RUNS_PARTITION, "RowKey": run_id, **summary}
        await self._table.upsert_entity(entity, mode=UpdateMode.MERGE)


def _write(entity: dict[str, Any], previous: dict[str, Any] | None) -> tuple[Any, ...]:
    if previous is None:
        return ("create", entity)
    return (
        "update",
        entity,
        {
            "mode": UpdateMode.REPLACE,
            "etag": previous["_etag"],
            "match_condition": MatchConditions.IfNotModified,
        },
    )


def _delete(entity: dict[str, Any]) -> tuple[Any, ...]:
    return ("delete", entity, {"etag": entity["_etag"], "match_condition": MatchConditions.IfNotModified})


def _contention_pause(number: int) -> float:
    """Full jitter: writers that collided once spread out instead of colliding again."""
    return random.uniform(0, min(_CONTENTION_MAX_SECONDS, _CONTENTION_BASE_SECONDS * 2**number))


def extends_verification(
    attempt: Attempt, outcome: Outcome, previous: dict[str, Any], other_rows: Iterable[str]
) -> bool:
    """A verification that finds everything as the last one left it only extends the link's
    verified interval (`VerifiedSince` .. `LastCheckedAt`): no event, no receipt. Anything else
    (the first verification after a change, a retry that closes a chain, an intent to settle, a
    different identity or link) is written as an event."""
    if outcome.kind is not OutcomeKind.VERIFIED or any(other_rows):
        return False
    recorded = (
        previous.get("Outcome"),
        previous.get("IdentityType"),
        previous.get("KeyVaultSecretName"),
        previous.get("LinkedPartnerId"),
        previous.get("ObjectId"),
        previous.get("LinkVersion"),
        previous.get("PartnerId"),
    )
    found = (
        OutcomeKind.VERIFIED.value,
        attempt.identity_type,
        attempt.key_vault_secret_name,
        outcome.partner_id,
        outcome.object_id,
        outcome.link_version,
        attempt.partner_id,
    )
    return recorded == found


def changes_state(attempt: Attempt, outcome: Outcome, previous: dict[str, Any] | None) -> bool:
    """Whether this attempt's outcome becomes the link's recorded state.

    A rejection never does. A different identity (type or Key Vault secret) for a healthy link
    must prove itself: it replaces the recorded one only once it has signed in and linked, so a
    message with a wrong identity cannot break a link that works.
    """
    if outcome.kind is OutcomeKind.REJECTED:
        return False
    if previous is None or outcome.kind.is_success:
        return True
    healthy = OutcomeKind(previous.get("Outcome", OutcomeKind.FAILED.value)).is_success
    same_identity = (previous.get("IdentityType"), previous.get("KeyVaultSecretName")) == (
        attempt.identity_type,
        attempt.key_vault_secret_name,
    )
    return same_identity or not healthy


def _intent(entity: dict[str, Any]) -> WriteIntent:
    return WriteIntent(
        client_id=entity.get("ClientId", ""),
        requested_partner_id=entity.get("RequestedPartnerId", ""),
        previous_partner_id=entity.get("PreviousPartnerId"),
        previous_is_ours=bool(entity.get("PreviousIsOurs", True)),
    )


def _retirement(state: dict[str, Any]) -> Attempt:
    """The retirement as an attempt on the identity the state row records, for its history event."""
    return Attempt(
        message_id=f"{RETIRE_SOURCE}:{uuid.uuid4()}",
        source=RETIRE_SOURCE,
        customer_tenant_id=state.get("CustomerTenantId"),
        client_id=state.get("ClientId"),
        identity_type=state.get("IdentityType"),
        partner_id=state.get("PartnerId"),
        customer_name=state.get("CustomerName"),
        correlation_id=state.get("CorrelationId"),
    )


def _retired(state: dict[str, Any], reason: str) -> Outcome:
    """What the identity was last linked to stays on record with the reason."""
    return Outcome(
        OutcomeKind.RETIRED,
        reason,
        partner_id=state.get("LinkedPartnerId"),
        object_id=state.get("ObjectId"),
    )


def _receipt(entity: dict[str, Any]) -> Receipt:
    return Receipt(
        message_id=entity.get("MessageId", ""),
        outcome=OutcomeKind(entity["Outcome"]),
        reason=entity.get("Reason", ""),
        event_row_key=entity.get("EventRowKey", ""),
        next_attempt=entity.get("NextAttempt"),
    )


def _state(
    partition: str,
    row_key: str,
    attempt: Attempt,
    outcome: Outcome,
    now: datetime,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    before = previous or {}
    succeeded = outcome.kind.is_success
    verified = outcome.kind is OutcomeKind.VERIFIED
    continued = verified and before.get("Outcome") == OutcomeKind.VERIFIED.value
    verified_now, verified_count = (now, 1) if verified else (None, None)
    return _clean(
        {
            "PartitionKey": partition,
            "RowKey": row_key,
            "CustomerTenantId": attempt.customer_tenant_id,
            "ClientId": attempt.client_id,
            "IdentityType": attempt.identity_type,
            "KeyVaultSecretName": attempt.key_vault_secret_name,
            "CustomerName": attempt.customer_name or before.get("CustomerName"),
            "CorrelationId": attempt.correlation_id or before.get("CorrelationId"),
            "PartnerId": attempt.partner_id,
            # What Microsoft holds for this identity, as far as we last saw.
            "LinkedPartnerId": outcome.partner_id or before.get("LinkedPartnerId"),
            "PreviousPartnerId": outcome.previous_partner_id or before.get("PreviousPartnerId"),
            "ObjectId": outcome.object_id or before.get("ObjectId"),
            "LinkVersion": outcome.link_version or before.get("LinkVersion"),
            "Outcome": outcome.kind.value,
            "Reason": outcome.reason,
            "Code": outcome.code,
            "Remediation": outcome.remediation,
            "LastCheckedAt": now,
            "LastLinkedAt": now if outcome.kind in _SUCCESS_KINDS else before.get("LastLinkedAt"),
            # The verified interval: from the first of an unbroken run of verifications.
            "VerifiedSince": (before.get("VerifiedSince") or now) if continued else verified_now,
            "VerifiedCount": int(before.get("VerifiedCount", 1)) + 1 if continued else verified_count,
            "ConsecutiveFailures": 0 if succeeded else int(before.get("ConsecutiveFailures", 0)) + 1,
            "LastMessageId": attempt.message_id,
            "LastRunId": attempt.run_id or before.get("LastRunId"),
            "FirstSeenAt": before.get("FirstSeenAt", now),
        }
    )
