"""One Table Storage table, as every domain's ledger uses it: point reads, ranges, ETag-checked
writes and atomic transactions within a partition.

Writers of one row are serialised by ETags: a writer that lost a race reads again and decides
again after a short random pause (`contention_pauses`), and gives up with `LedgerContention` (a
transient error: the attempt is tried again later) when the race persists.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError, map_error
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.rest import HttpRequest
from azure.data.tables import TransactionOperation, UpdateMode
from azure.data.tables._serialize import _add_entity_properties
from azure.data.tables.aio import TableClient

from shared.spine.errors import TransientError
from shared.spine.settings import Settings
from shared.spine.table_row import TableRow
from shared.spine.transport import drop_idle_policies

__all__ = [
    "LedgerContention",
    "Operation",
    "Table",
    "contention_pauses",
    "create",
    "delete_if_unchanged",
    "write_if_unchanged",
]

Entity = dict[str, Any]
Operation = tuple[TransactionOperation, Entity] | tuple[TransactionOperation, Entity, Mapping[str, Any]]
"""One operation of an entity-group transaction, as the Tables SDK takes it."""

_MAX_WRITE_ATTEMPTS = 8
_CONTENTION_BASE_SECONDS = 0.05
_CONTENTION_MAX_SECONDS = 1.0
_LOST_RACE = frozenset({404, 409, 412})
"""A row created, changed or deleted by another writer since it was read."""


class LedgerContention(TransientError):
    """Too many writers for one row at once, even after backing off: try the attempt again later."""


def lost_race(error: HttpResponseError) -> bool:
    """The write failed because another writer changed the rows first (read again, decide again)."""
    return error.status_code in _LOST_RACE


async def contention_pauses() -> AsyncIterator[int]:
    """Write attempts 0, 1, 2...: full jitter before each retry, so that writers that collided once
    spread out instead of colliding again. Raises LedgerContention when they run out."""
    for number in range(_MAX_WRITE_ATTEMPTS):
        if number:
            await asyncio.sleep(
                random.uniform(0, min(_CONTENTION_MAX_SECONDS, _CONTENTION_BASE_SECONDS * 2**number))
            )
        yield number
    raise LedgerContention("ledger: too many concurrent writers for this row; try again later")


def create(row: TableRow) -> Operation:
    return (TransactionOperation.CREATE, row.to_entity())


def write_if_unchanged(row: TableRow, previous: TableRow | None) -> Operation:
    """Create the row, or replace the previous one if nobody changed it since it was read."""
    if previous is None:
        return create(row)
    return (
        TransactionOperation.UPDATE,
        row.to_entity(),
        {"mode": UpdateMode.REPLACE, "etag": previous.etag, "match_condition": MatchConditions.IfNotModified},
    )


def delete_if_unchanged(row: TableRow) -> Operation:
    keys = {"PartitionKey": row.partition_key, "RowKey": row.row_key}
    return (
        TransactionOperation.DELETE,
        keys,
        {"etag": row.etag, "match_condition": MatchConditions.IfNotModified},
    )


class Table:
    """The ledger's table: created on first use, one client for the process."""

    def __init__(self, client: TableClient) -> None:
        self.client = client
        drop_idle_policies(getattr(client._client, "_client", None))
        self._ready = False
        self._ready_lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        transport: AioHttpTransport | None = None,
        credential: AsyncTokenCredential | None = None,
    ) -> Table:
        extra: dict[str, Any] = {"transport": transport} if transport is not None else {}
        if settings.ledger_connection_string:
            client = TableClient.from_connection_string(
                settings.ledger_connection_string, settings.ledger_table, **extra
            )
        else:
            assert settings.ledger_table_service_uri and credential is not None
            client = TableClient(
                settings.ledger_table_service_uri, settings.ledger_table, credential=credential, **extra
            )
        return cls(client)

    async def ready(self) -> TableClient:
        """The client, once the table exists (created on first use)."""
        if not self._ready:
            async with self._ready_lock:
                if not self._ready:
                    try:
                        await self.client.create_table()
                    except ResourceExistsError:
                        pass
                    self._ready = True
        return self.client

    async def close(self) -> None:
        await self.client.close()

    async def point_reads(self, partition: str, row_keys: Sequence[str]) -> dict[str, Any]:
        """Several rows of one partition in a single request, by RowKey (SDK entities, with ETags)."""
        client = await self.ready()
        clauses = " or ".join(f"RowKey eq @r{index}" for index in range(len(row_keys)))
        parameters = {"pk": partition, **{f"r{index}": key for index, key in enumerate(row_keys)}}
        query = client.query_entities(f"PartitionKey eq @pk and ( {clauses} )", parameters=parameters)
        return {entity["RowKey"]: entity async for entity in query}

    async def range(self, partition: str, prefix: str, *, limit: int | None) -> list[Any]:
        """The partition's rows whose RowKey starts with `prefix`, in RowKey order."""
        client = await self.ready()
        query = client.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": partition, "lo": prefix, "hi": after_prefix(prefix)},
            results_per_page=min(limit or 1000, 1000),
        )
        entities: list[Any] = []
        async for entity in query:
            entities.append(entity)
            if limit is not None and len(entities) >= limit:
                break
        return entities

    async def submit(self, operations: Sequence[Operation]) -> bool:
        """Run the operations atomically; False when another writer changed the rows first."""
        client = await self.ready()
        try:
            await client.submit_transaction(operations)
        except HttpResponseError as err:  # TableTransactionError for a failed batch
            if lost_race(err):
                return False
            raise
        return True

    async def merge_if_unchanged(self, row: TableRow, etag: str | None, columns: Mapping[str, Any]) -> bool:
        """Set some columns of a row if nobody changed it since it was read; False otherwise.

        The request is the SDK's MERGE, sent through the client's own pipeline (its authentication,
        retries and hooks) without the generated operation around it, whose serializer cost as
        much CPU as the request: the nightly run sends one for every verified link."""
        client = await self.ready()
        entity = {"PartitionKey": row.partition_key, "RowKey": row.row_key, **columns}
        if etag:
            response = await client._client.send_request(_merge_request(client.table_name, entity, etag))
            status = response.status_code
            if status == 204:
                return True
            if status in _LOST_RACE:
                return False
            map_error(status_code=status, response=response, error_map={401: ClientAuthenticationError})
            raise HttpResponseError(response=response)
        try:
            await client.update_entity(
                entity, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except HttpResponseError as err:
            if lost_race(err):
                return False
            raise
        return True


def _merge_request(table: str, entity: Mapping[str, Any], etag: str) -> HttpRequest:
    """Table Storage's MERGE of `entity` into its row if the row still has `etag`, as the SDK's
    `update_entity(mode=MERGE, match_condition=IfNotModified)` writes it (URL relative to the account)."""
    partition, row = (_key_in_url(entity[name]) for name in ("PartitionKey", "RowKey"))
    headers = {
        "x-ms-version": "2019-02-02",
        "DataServiceVersion": "3.0",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "If-Match": etag,
    }
    body = json.dumps(_add_entity_properties(entity)).encode()
    path = f"/{quote(table, safe='')}(PartitionKey='{partition}',RowKey='{row}')"
    return HttpRequest("PATCH", path, headers=headers, content=body)


def _key_in_url(key: str) -> str:
    """A PartitionKey or RowKey in an entity's URL: quotes doubled, then percent-encoded."""
    return quote(key.replace("'", "''"), safe="")


def after_prefix(prefix: str) -> str:
    """The smallest key greater than every key that starts with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
