"""The ledger's conditional MERGE is sent without the SDK's generated operation: the same request
(URL, headers, typed body), the same answers (True when written, False when another writer changed
or removed the row, the SDK's errors otherwise)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from azure.core.exceptions import HttpResponseError

from shared.links.ledger import Ledger
from shared.spine.table import _merge_request
from shared.spine.table_row import TableRow

MOMENT = datetime(2026, 3, 2, 3, 4, 5, 678000, tzinfo=UTC)


def test_the_request_is_the_sdks_merge() -> None:
    entity = {"PartitionKey": "it's/a?key#", "RowKey": "link~x", "LastCheckedAt": MOMENT, "VerifiedCount": 5}
    request = _merge_request("Links", entity, "W/\"datetime'2026'\"")
    assert request.method == "PATCH"
    assert request.url == "/Links(PartitionKey='it%27%27s%2Fa%3Fkey%23',RowKey='link~x')"
    assert request.headers["If-Match"] == "W/\"datetime'2026'\""
    assert request.headers["DataServiceVersion"] == "3.0" and request.headers["x-ms-version"] == "2019-02-02"
    assert json.loads(request.content) == {
        "PartitionKey": "it's/a?key#",
        "PartitionKey@odata.type": "Edm.String",
        "RowKey": "link~x",
        "RowKey@odata.type": "Edm.String",
        "LastCheckedAt": "2026-03-02T03:04:05.678000Z",
        "LastCheckedAt@odata.type": "Edm.DateTime",
        "VerifiedCount": 5,
    }


async def test_a_merge_writes_only_an_unchanged_row(ledger: Ledger) -> None:
    client = await ledger.table.ready()
    key = {"PartitionKey": "merge-test", "RowKey": "it's a row"}
    await client.upsert_entity({**key, "Outcome": "verified", "VerifiedCount": 1})
    read = await client.get_entity(key["PartitionKey"], key["RowKey"])
    row = TableRow(partition_key=key["PartitionKey"], row_key=key["RowKey"])
    etag = read.metadata["etag"]

    assert await ledger.table.merge_if_unchanged(row, etag, {"VerifiedCount": 2, "LastCheckedAt": MOMENT})
    merged = await client.get_entity(key["PartitionKey"], key["RowKey"])
    assert (merged["Outcome"], merged["VerifiedCount"], merged["LastCheckedAt"]) == ("verified", 2, MOMENT)
    # The row changed since `etag` was read: nothing is written.
    assert not await ledger.table.merge_if_unchanged(row, etag, {"VerifiedCount": 9})
    assert (await client.get_entity(key["PartitionKey"], key["RowKey"]))["VerifiedCount"] == 2
    # The row is gone: nothing is written either.
    gone = TableRow(partition_key="merge-test", row_key="no such row")
    assert not await ledger.table.merge_if_unchanged(gone, etag, {"VerifiedCount": 9})


async def test_any_other_refusal_is_raised_as_the_sdk_raises_it(ledger: Ledger) -> None:
    await ledger.table.ready()
    row = TableRow(partition_key="merge-test", row_key="bad")
    with pytest.raises(HttpResponseError) as raised:
        await ledger.table.merge_if_unchanged(row, "not an etag", {"VerifiedCount": 1})
    assert raised.value.status_code == 400
