"""A .pbix into a Power BI workspace as the linked service principal (power-platform.md: "publish
as the service principal"): `POST /v1.0/myorg/groups/{workspace}/imports?datasetDisplayName=&
nameConflict=` with the file as multipart/form-data (202 with the import's id), then `GET
.../imports/{id}` until it leaves Publishing. The publisher becomes the dataset's `configuredBy`.

`nameConflict` is always sent, never left to Power BI's default (Ignore, which makes a second
dataset of the same name): the default here is CreateOrOverwrite, so a pipeline that publishes the
same report again replaces it, and a redelivered message that imports again changes nothing more.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shared.attribution.inventory import Api
from shared.delivery.calls import Caller, error_of
from shared.delivery.outcome import Finished
from shared.delivery.rows import DeliveryStatus
from shared.spine.settings import Settings

__all__ = ["Published", "ReportDelivery"]

_AUDIENCE = "https://analysis.windows.net/powerbi/api"
_FIRST_POLL, _LONGEST_POLL = 1.0, 10.0


@dataclass(frozen=True)
class Published:
    finished: Finished
    datasets: tuple[str, ...] = ()
    reports: tuple[str, ...] = ()


class ReportDelivery:
    def __init__(self, caller: Caller, settings: Settings, workspace: str) -> None:
        self._caller, self._workspace = caller, workspace
        self._base = f"{settings.power_platform.powerbi}/v1.0/myorg/groups/{quote(workspace)}/imports"

    async def start(self, data: bytes, dataset_name: str, name_conflict: str) -> str | None:
        boundary = "pal-" + secrets.token_hex(16)
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="report.pbix"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        body = head + data + f"\r\n--{boundary}--\r\n".encode()
        url = f"{self._base}?datasetDisplayName={quote(dataset_name)}&nameConflict={name_conflict}"
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        answer = await self._caller.call(
            Api.POWER_BI, "POST", url, audience=_AUDIENCE, content=body, headers=headers
        )
        found = answer.get("id") if isinstance(answer, dict) else None
        return found if isinstance(found, str) and found else None

    async def poll(self, import_id: str, budget: float) -> Published | None:
        deadline = time.monotonic() + budget
        delay = _FIRST_POLL
        while True:
            state = await self._caller.call(
                Api.POWER_BI, "GET", f"{self._base}/{quote(import_id)}", audience=_AUDIENCE
            )
            if isinstance(state, dict) and state.get("importState") in ("Succeeded", "Failed"):
                return _published(state)
            if time.monotonic() + delay > deadline:
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, _LONGEST_POLL)


def _published(state: dict[str, Any]) -> Published:
    if state.get("importState") == "Failed":
        code, _ = error_of(state)
        return Published(
            Finished(
                DeliveryStatus.FAILED,
                "powerbi-import-failed",
                f"Power BI refused the import: {code or 'no code'}",
                "Check that the file is a .pbix Power BI Desktop saved, and the nameConflict chosen.",
            )
        )
    return Published(
        Finished(DeliveryStatus.SUCCEEDED, "published", "the report was published"),
        _ids(state.get("datasets")),
        _ids(state.get("reports")),
    )


def _ids(items: Any) -> tuple[str, ...]:
    if not isinstance(items, list):
        return ()
    return tuple(
        str(item["id"]).lower()
        for item in items
        if isinstance(item, dict) and isinstance(item.get("id"), str)
    )
