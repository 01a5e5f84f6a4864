"""Everything a test run logged or stored, as text, for the secret scans."""

from __future__ import annotations

import json

import pytest
from azure.data.tables.aio import TableClient


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record's message, attributes and exception, for secret scans."""
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        lines.append(json.dumps({k: str(v) for k, v in record.__dict__.items()}))
        if record.exc_info and record.exc_info[1] is not None:
            lines.append(repr(record.exc_info[1]))
    return "\n".join(lines)


async def everything_stored(env: dict[str, str]) -> str:
    """Every entity of the test's ledger table, for secret scans."""
    async with TableClient.from_connection_string(env["LedgerStorage"], env["LEDGER_TABLE"]) as table:
        return "\n".join([json.dumps(entity, default=str) async for entity in table.list_entities()])
