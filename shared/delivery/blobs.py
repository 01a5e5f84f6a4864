"""The delivered files in Blob Storage, one blob per content: the name is the file's SHA-256, so an
upload of the same file twice is one blob (and a message cannot name a file other than the one it
states). Reads are capped and checked against the SHA-256 and size the message states."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from shared.delivery.message import blob_name
from shared.delivery.settings import DeliverySettings

__all__ = ["BlobMismatch", "DeliveryBlobs", "StoredFile", "sha256_of"]


class BlobMismatch(Exception):
    """The blob is missing, larger than allowed, or not the file the message states."""


@dataclass(frozen=True)
class StoredFile:
    blob: str
    sha256: str
    size: int


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class DeliveryBlobs:
    """One container of one account: by connection string, or by URL with a token credential."""

    def __init__(self, settings: DeliverySettings, credential: AsyncTokenCredential | None = None) -> None:
        from azure.storage.blob.aio import BlobServiceClient

        self._settings = settings
        if settings.connection_string:
            service = BlobServiceClient.from_connection_string(settings.connection_string)
        elif settings.blob_service_uri and credential is not None:
            service = BlobServiceClient(settings.blob_service_uri, credential=credential)
        else:
            raise RuntimeError(
                "Blob Storage for deliveries is not configured: set DeliveryStorage__blobServiceUri "
                "(or DeliveryStorage for a connection string)"
            )
        self._service: Any = service
        self._container: Any = service.get_container_client(settings.container)
        self._ready = False

    async def _ensure(self) -> None:
        if not self._ready:
            try:
                await self._container.create_container()
            except ResourceExistsError:
                pass
            self._ready = True

    async def put(self, data: bytes, extension: str) -> StoredFile:
        """Store the file under its SHA-256 (once)."""
        await self._ensure()
        digest = sha256_of(data)
        name = blob_name(digest, extension)
        try:
            await self._container.upload_blob(name, data, overwrite=False)
        except ResourceExistsError:
            pass  # the same content, uploaded before
        return StoredFile(name, digest, len(data))

    async def stat(self, name: str) -> int | None:
        """The blob's size, or None when there is no such blob."""
        await self._ensure()
        try:
            properties = await self._container.get_blob_client(name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        return int(properties.size)

    async def read(self, name: str, *, sha256: str, size: int) -> bytes:
        """The blob's content, once its size and SHA-256 are those stated."""
        actual = await self.stat(name)
        if actual is None:
            raise BlobMismatch("the file is not in Blob Storage")
        if actual != size or actual > self._settings.max_file_bytes:
            raise BlobMismatch("the file in Blob Storage is not the size stated")
        downloader = await self._container.get_blob_client(name).download_blob()
        data: bytes = await downloader.readall()
        if len(data) != size or sha256_of(data) != sha256:
            raise BlobMismatch("the file in Blob Storage is not the one stated (SHA-256 differs)")
        return data

    async def close(self) -> None:
        await self._service.close()
