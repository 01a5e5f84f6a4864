"""What `palctl deliver` does, without the command line: check the file, send it to the Function
App's HTTP API (the file as the body, or first to Blob Storage and then a reference naming it), and
read the delivery's status until it ends.

- The file is checked before anything is sent: it exists, it is a zip archive by its first bytes (a
  managed solution and a .pbix both are), and it is at most `MAX_FILE_BYTES` (100 MiB, the API's
  default DELIVERY_MAX_FILE_BYTES; a Function App set lower answers 413, which palctl shows).
- The file goes as the request's body when it is small enough for any host (`DIRECT_MAX_BYTES`),
  and through Blob Storage when deployment settings are given (the API takes them only beside a
  reference) or the file is larger and a deliveries storage is configured: palctl uploads it to the
  deliveries container under its SHA-256 (`PAL_DELIVERY_STORAGE`, a connection string, or
  `PAL_DELIVERY_BLOB_URL`, signing in with DefaultAzureCredential; `PAL_DELIVERY_CONTAINER`, default
  `deliveries`), then posts `{"blob": "<sha256>.zip", "settings": {...}}`.
- Nothing of the file's content is ever printed; only its SHA-256 and size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from palctl.api import ApiTarget, Response, call, json_object
from palctl.errors import Failed, UsageError

MiB = 1024 * 1024
MAX_FILE_BYTES = 100 * MiB
DIRECT_MAX_BYTES = MiB
MAX_SETTINGS_BYTES = MiB
ZIP_MAGIC = b"PK\x03\x04"
STORAGE_ENV = "PAL_DELIVERY_STORAGE"
BLOB_URL_ENV = "PAL_DELIVERY_BLOB_URL"
CONTAINER_ENV = "PAL_DELIVERY_CONTAINER"
DEFAULT_CONTAINER = "deliveries"
FINAL = ("succeeded", "failed", "needs-customer-action")
UPLOAD_SECONDS = 600


@dataclass(frozen=True)
class DeliveryFile:
    """A checked file: its content stays here, never on screen."""

    path: Path
    extension: str
    data: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def blob(self) -> str:
        return f"{self.sha256}.{self.extension}"


def read_file(path: Path, extension: str, flag: str = "--file") -> DeliveryFile:
    """The file, once it exists, is a zip archive and is not too large (UsageError otherwise)."""
    if not path.is_file():
        raise UsageError(f"{flag}: no such file: {path}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UsageError(f"{flag}: {size} bytes, larger than the API's limit of {MAX_FILE_BYTES} bytes")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UsageError(f"{flag}: cannot read {path} ({type(error).__name__})") from None
    if not data.startswith(ZIP_MAGIC):
        what = "a managed solution" if extension == "zip" else "a .pbix"
        raise UsageError(f"{flag}: {path} is not a zip archive ({what} is one)")
    return DeliveryFile(path, extension, data, hashlib.sha256(data).hexdigest())


def read_settings(path: Path) -> dict[str, Any]:
    """Deployment settings (`pac solution create-settings`): a JSON object of at most 1 MiB."""
    if not path.is_file():
        raise UsageError(f"--settings: no such file: {path}")
    if path.stat().st_size > MAX_SETTINGS_BYTES:
        raise UsageError(f"--settings: larger than {MAX_SETTINGS_BYTES} bytes")
    document = json_object(path.read_bytes())
    allowed = {"EnvironmentVariables", "ConnectionReferences"}
    if document is None or not set(document) <= allowed:
        raise UsageError(
            "--settings: a JSON object with EnvironmentVariables and/or ConnectionReferences "
            "(pac solution create-settings)"
        )
    return document


@dataclass(frozen=True)
class Storage:
    """Where palctl uploads a file the API is to read: the deliveries container."""

    connection_string: str | None
    blob_url: str | None
    container: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Storage | None:
        connection, url = env.get(STORAGE_ENV) or None, env.get(BLOB_URL_ENV) or None
        if connection is None and url is None:
            return None
        if url is not None and not url.startswith("https://"):
            raise UsageError(f"{BLOB_URL_ENV}: the storage account's https:// blob endpoint")
        return cls(connection, url, env.get(CONTAINER_ENV) or DEFAULT_CONTAINER)

    def upload(self, file: DeliveryFile | bytes, name: str) -> None:
        """Upload once (the name is the content's SHA-256: an existing blob is the same file)."""
        from azure.core.exceptions import AzureError, ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        data = file.data if isinstance(file, DeliveryFile) else file
        credential: Any = None
        if self.connection_string:
            service = BlobServiceClient.from_connection_string(self.connection_string)
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
            service = BlobServiceClient(str(self.blob_url), credential=credential)
        try:
            with service:
                service.get_blob_client(self.container, name).upload_blob(data, overwrite=False)
        except ResourceExistsError:
            pass  # uploaded before: the same content
        except (AzureError, ValueError) as error:
            missing = getattr(error, "error_code", None) == "ContainerNotFound"
            hint = f": no such container (set {CONTAINER_ENV})" if missing else ""
            raise Failed(
                f"cannot upload to Blob Storage container {self.container} ({_code(error)}){hint}"
            ) from None
        finally:
            if credential is not None:
                credential.close()


def _code(error: Exception) -> str:
    code = getattr(error, "error_code", None) or getattr(error, "status_code", None)
    return f"{type(error).__name__} {code}" if code else type(error).__name__


def needs_blob(file: DeliveryFile, settings: dict[str, Any] | None, storage: Storage | None) -> bool:
    """Whether the file goes through Blob Storage (UsageError when it must and cannot)."""
    if settings is not None and storage is None:
        raise UsageError(
            f"--settings: the file goes through Blob Storage: set {STORAGE_ENV} (a connection string) "
            f"or {BLOB_URL_ENV} (signs in with DefaultAzureCredential)"
        )
    return settings is not None or (storage is not None and file.size > DIRECT_MAX_BYTES)


@asynccontextmanager
async def upload_session() -> AsyncIterator[Any]:
    """An aiohttp session whose calls may carry a large file (ten minutes a call at most)."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=UPLOAD_SECONDS)) as http:
        yield http


async def post_file(http: Any, target: ApiTarget, path: str, file: DeliveryFile) -> Response:
    """POST the file itself as the body (application/zip), the key in a header."""
    import aiohttp

    headers = {"x-functions-key": target.key, "Content-Type": "application/zip"}
    try:
        async with http.request(
            "POST", f"{target.base_url}/api{path}", data=file.data, headers=headers, allow_redirects=False
        ) as response:
            return Response(response.status, json_object(await response.read()))
    except (aiohttp.ClientError, TimeoutError) as error:
        raise Failed(f"cannot reach the API ({type(error).__name__})") from None


async def submit(
    target: ApiTarget,
    path: str,
    file: DeliveryFile,
    settings: dict[str, Any] | None,
    storage: Storage | None,
) -> tuple[Response, bool]:
    """Send the delivery: the API's answer, and whether the file went through Blob Storage."""
    import asyncio

    via_blob = needs_blob(file, settings, storage)
    async with upload_session() as http:
        if not via_blob:
            return await post_file(http, target, path, file), False
        assert storage is not None
        await asyncio.to_thread(storage.upload, file, file.blob)
        body: dict[str, Any] = {"blob": file.blob}
        if settings is not None:
            body["settings"] = settings
        return await call(http, target, "POST", path, body), True


async def wait_for(
    http: Any, target: ApiTarget, path: str, patience: float, update: Callable[[str], None]
) -> dict[str, Any]:
    """Poll GET `path` until the delivery's status is final or `patience` seconds have passed: the
    delivery as last read."""
    import asyncio
    import time

    deadline, delay = time.monotonic() + patience, 0.5
    while True:
        response = await call(http, target, "GET", path)
        if response.status != 200 or response.body is None:
            raise Failed(refusal(response))
        if response.body.get("status") in FINAL:
            return response.body
        update(progress(response.body))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return response.body
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 1.5, 5.0)


def progress(body: dict[str, Any]) -> str:
    from shared.spine.untrusted import shown

    return (
        f"delivery {shown(body.get('deliveryId') or '-', 64)}: "
        f"{shown(body.get('status') or '-', 40)} (attempt {body.get('attempt') or 1})"
    )


def refusal(response: Response) -> str:
    """The API's refusal in one screened line."""
    from shared.spine.untrusted import shown

    if response.status == 401:
        return "HTTP 401: the function key (PAL_API_KEY) is missing or wrong"
    body = response.body or {}
    title, detail = body.get("title") or "", body.get("detail") or ""
    line = f"HTTP {response.status} {shown(title, 100)}: {shown(detail, 500)}".rstrip(": ")
    kind = str(body.get("type") or "").rsplit("/", 1)[-1]
    if response.status == 413 and not (os.environ.get(STORAGE_ENV) or os.environ.get(BLOB_URL_ENV)):
        line += (
            f": too large for a request (set {STORAGE_ENV} or {BLOB_URL_ENV} to send it through Blob Storage)"
        )
    elif kind == "not-linked":
        line += " (link the customer first: palctl enqueue --tenant T --client-id C)"
    return line
