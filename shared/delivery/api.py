"""The deliveries' part of the operators' HTTP API, without Azure Functions.

- `POST /api/deliveries/{customerTenantId}/solutions?environment=E`: a managed solution for the
  environment. The body is the solution file itself (`application/zip` or
  `application/octet-stream`, at most DELIVERY_MAX_FILE_BYTES, 100 MiB by default, the Functions
  host's own request limit: larger is 413), or `application/json` naming a file already uploaded to
  the deliveries container under its SHA-256 (`{"blob": "<sha256>.zip", "settings": {...}}`, as
  `palctl deliver` does: the only way to give deployment settings, and the way for large files).
- `POST /api/deliveries/{customerTenantId}/reports?workspace=W&datasetName=N[&nameConflict=M]`: a
  .pbix, the same two ways (`{"blob": "<sha256>.pbix"}`); nameConflict defaults to CreateOrOverwrite.
- `GET /api/deliveries/{customerTenantId}/{deliveryId}`: the delivery's row.

Both POSTs store the file in Blob Storage (once per content), record the delivery (`queued`) and
send one message naming it; they answer 202 with the delivery's id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shared.delivery.blobs import DeliveryBlobs, StoredFile
from shared.delivery.message import (
    DEFAULT_NAME_CONFLICT,
    NAME_CONFLICTS,
    DeliveryKind,
    DeliveryMessage,
    DeploymentSettings,
    blob_name,
    dataset_name_ok,
    plain_environment,
)
from shared.delivery.rows import DeliveryRow, DeliveryStatus, delivery_row_key
from shared.delivery.settings import DeliverySettings
from shared.delivery.store import DeliveryLedger
from shared.links.ledger import Ledger
from shared.spine.identifiers import is_guid
from shared.spine.outages import answers_outages
from shared.spine.problem import ApiResponse, problem
from shared.spine.servicebus import OutgoingMessage, QueueSender

__all__ = ["DeliveryApi"]

_ZIP_MAGIC = b"PK\x03\x04"
_FILE_TYPES = ("application/zip", "application/octet-stream", "application/x-zip-compressed")


class DeliveryApi:
    def __init__(
        self,
        links: Ledger,
        ledger: DeliveryLedger,
        blobs: DeliveryBlobs | None,
        sender: QueueSender | None,
        delivery: DeliverySettings,
    ) -> None:
        self._links, self._ledger, self._blobs, self._sender = links, ledger, blobs, sender
        self._delivery = delivery

    @answers_outages
    async def solution(
        self, tenant: str, parameters: Mapping[str, str], body: bytes, content_type: str
    ) -> ApiResponse:
        unknown = sorted(set(parameters) - {"environment"})
        environment = parameters.get("environment")
        if unknown or not plain_environment(environment):
            detail = (
                f"{', '.join(unknown)}: unknown parameter" if unknown else "environment: the environment's id"
            )
            return problem(400, "invalid-query", "Invalid query", detail)
        return await self._submit(tenant, DeliveryKind.SOLUTION, str(environment), body, content_type, {})

    @answers_outages
    async def report(
        self, tenant: str, parameters: Mapping[str, str], body: bytes, content_type: str
    ) -> ApiResponse:
        problems = [
            f"{name}: unknown parameter"
            for name in sorted(set(parameters) - {"workspace", "datasetName", "nameConflict"})
        ]
        workspace, name = parameters.get("workspace"), parameters.get("datasetName")
        conflict = parameters.get("nameConflict", DEFAULT_NAME_CONFLICT)
        if not is_guid(workspace):
            problems.append("workspace: the workspace's id (a GUID)")
        if not dataset_name_ok(name):
            problems.append("datasetName: 1 to 200 printable characters")
        if conflict not in NAME_CONFLICTS:
            problems.append(f"nameConflict: one of {', '.join(NAME_CONFLICTS)}")
        if problems:
            return problem(400, "invalid-query", "Invalid query", "; ".join(problems), errors=problems)
        extra = {"dataset_name": name, "name_conflict": conflict}
        return await self._submit(
            tenant, DeliveryKind.PBIX, str(workspace).lower(), body, content_type, extra
        )

    @answers_outages
    async def status(self, tenant: str, delivery_id: str) -> ApiResponse:
        if not is_guid(tenant):
            return _bad_tenant()
        if not is_guid(delivery_id):
            return problem(400, "invalid-delivery-id", "Invalid delivery ID", "deliveryId: must be a GUID")
        row = await self._ledger.get(tenant.lower(), delivery_id.lower())
        if row is None:
            return problem(
                404, "not-found", "No such delivery", "no delivery with this id is recorded for this tenant"
            )
        return ApiResponse(200, row.public())

    # ---- submitting -----------------------------------------------------------------------------

    async def _submit(
        self,
        tenant: str,
        kind: DeliveryKind,
        target: str,
        body: bytes,
        content_type: str,
        extra: dict[str, Any],
    ) -> ApiResponse:
        if not is_guid(tenant):
            return _bad_tenant()
        tenant = tenant.lower()
        if len(body) > self._delivery.max_file_bytes:
            return _too_large(self._delivery.max_file_bytes)
        if self._sender is None or self._blobs is None:
            return problem(
                503,
                "no-delivery",
                "Delivery unavailable",
                "Service Bus or Blob Storage for deliveries is not configured",
            )
        if not any(s.is_healthy and s.identity is not None for s in await self._links.link_states(tenant)):
            return problem(
                404,
                "not-linked",
                "Not linked",
                "no healthy link of a service principal of ours is recorded for this tenant",
            )
        stored = await self._file(kind, body, content_type)
        if isinstance(stored, ApiResponse):
            return stored
        file, settings_blob = stored
        message = DeliveryMessage(
            str(uuid.uuid4()), tenant, kind, target, file.blob, file.sha256, file.size, settings_blob, **extra
        )
        now = datetime.now(UTC)
        row = DeliveryRow(
            partition_key=tenant,
            row_key=delivery_row_key(message.delivery_id),
            kind=kind,
            target=target,
            blob=file.blob,
            sha256=file.sha256,
            size=file.size,
            status=DeliveryStatus.QUEUED,
            settings_blob=settings_blob,
            reason="queued",
            created_at=now,
            updated_at=now,
            **extra,
        )
        await self._ledger.create(row)
        await self._sender.send_batch(
            self._delivery.queue, [OutgoingMessage(message.body(), message.message_id, {})]
        )
        return ApiResponse(202, row.public())

    async def _file(
        self, kind: DeliveryKind, body: bytes, content_type: str
    ) -> tuple[StoredFile, str | None] | ApiResponse:
        assert self._blobs is not None
        media = content_type.split(";")[0].strip().lower()
        if media == "application/json":
            return await self._named(kind, body)
        if media not in _FILE_TYPES:
            return problem(
                415,
                "unsupported-media-type",
                "Unsupported media type",
                "send the file as application/zip or application/octet-stream, "
                "or JSON naming an uploaded blob",
            )
        if not body.startswith(_ZIP_MAGIC):
            return problem(
                400,
                "not-a-zip",
                "Not a zip file",
                f"a {kind.extension} file is a zip archive; this body is not one",
            )
        return await self._blobs.put(body, kind.extension), None

    async def _named(self, kind: DeliveryKind, body: bytes) -> tuple[StoredFile, str | None] | ApiResponse:
        assert self._blobs is not None
        try:
            document = json.loads(body) if len(body) <= 1024 * 1024 else None
        except (ValueError, UnicodeDecodeError):
            document = None
        allowed = {"blob", "settings"} if kind is DeliveryKind.SOLUTION else {"blob"}
        if (
            not isinstance(document, dict)
            or not set(document) <= allowed
            or not isinstance(document.get("blob"), str)
        ):
            fields = " and optional settings" if kind is DeliveryKind.SOLUTION else ""
            return problem(400, "invalid-body", "Invalid body", f"a JSON body holds blob{fields}")
        name = document["blob"]
        digest = name.removesuffix(f".{kind.extension}")
        if (
            name != blob_name(digest, kind.extension)
            or len(digest) != 64
            or not all(c in "0123456789abcdef" for c in digest)
        ):
            return problem(
                400,
                "invalid-body",
                "Invalid body",
                f"blob: <sha256 of the file, lowercase hex>.{kind.extension}",
            )
        size = await self._blobs.stat(name)
        if size is None:
            return problem(
                400, "blob-not-found", "File not uploaded", "no such blob in the deliveries container"
            )
        if size > self._delivery.max_file_bytes:
            return _too_large(self._delivery.max_file_bytes)
        settings_blob = None
        if "settings" in document:
            raw = json.dumps(document["settings"]).encode()
            parsed = DeploymentSettings.parse(raw)
            if isinstance(parsed, str):
                return problem(400, "invalid-settings", "Invalid deployment settings", parsed)
            settings_blob = (await self._blobs.put(raw, "json")).blob
        return StoredFile(name, digest, size), settings_blob


def _bad_tenant() -> ApiResponse:
    return problem(400, "invalid-tenant-id", "Invalid customer tenant ID", "customerTenantId: must be a GUID")


def _too_large(limit: int) -> ApiResponse:
    return problem(
        413,
        "file-too-large",
        "File too large",
        f"the file is larger than {limit} bytes (DELIVERY_MAX_FILE_BYTES)",
    )
