"""The deliveries' rows in the ledger table: created once by the API, then replaced under their
ETag by the worker (a writer that lost a race reads again: `contention_pauses`)."""

from __future__ import annotations

from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.data.tables import UpdateMode

from shared.delivery.rows import DeliveryRow, delivery_row_key
from shared.spine.table import Table, lost_race

__all__ = ["DeliveryLedger"]


class DeliveryLedger:
    def __init__(self, table: Table) -> None:
        self.table = table

    async def get(self, tenant: str, delivery_id: str) -> DeliveryRow | None:
        key = delivery_row_key(delivery_id)
        found = (await self.table.point_reads(tenant, [key])).get(key)
        return None if found is None else DeliveryRow.from_entity(found)

    async def create(self, row: DeliveryRow) -> bool:
        client = await self.table.ready()
        try:
            await client.create_entity(row.to_entity())
        except ResourceExistsError:
            return False
        return True

    async def replace(self, row: DeliveryRow, previous: DeliveryRow) -> DeliveryRow | None:
        """The row written if nobody changed it since `previous` was read, else None."""
        client = await self.table.ready()
        try:
            metadata: Any = await client.update_entity(
                row.to_entity(),
                mode=UpdateMode.REPLACE,
                etag=previous.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError as error:
            if lost_race(error):
                return None
            raise
        etag = metadata.get("etag") if isinstance(metadata, dict) else None
        return row.replace(etag=etag)
