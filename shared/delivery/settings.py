"""The delivery's own settings, read from the process environment beside `shared.spine.settings`.

- `DELIVERY_QUEUE` (default `solution-delivery`): the Service Bus queue of delivery messages;
- `DeliveryStorage` (a connection string) or `DeliveryStorage__blobServiceUri` (identity-based: the
  Function App's managed identity holds Storage Blob Data Contributor on the container only);
- `DELIVERY_CONTAINER` (default `deliveries`);
- `DELIVERY_MAX_FILE_BYTES` (default 100 MiB, the Functions host's own request limit): the largest
  file accepted, over HTTP or from Blob Storage;
- `DELIVERY_POLL_SECONDS` (default 120): how long one invocation polls an import before it
  schedules a follow-up message `DELIVERY_POLL_DELAY_SECONDS` (default 30) later instead of sleeping;
  `DELIVERY_MAX_POLLS` (default 120) follow-ups at most, then the delivery fails as unfinished.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared.spine.settings import SettingsError, _Reader

__all__ = ["DeliverySettings"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
MiB = 1024 * 1024


@dataclass(frozen=True)
class DeliverySettings:
    queue: str = "solution-delivery"
    connection_string: str | None = None
    blob_service_uri: str | None = None
    container: str = "deliveries"
    max_file_bytes: int = 100 * MiB
    poll_seconds: float = 120.0
    poll_delay_seconds: float = 30.0
    max_polls: int = 120

    @property
    def configured(self) -> bool:
        return bool(self.connection_string or self.blob_service_uri)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DeliverySettings:
        return _DeliveryReader(env).delivery()


class _DeliveryReader(_Reader):
    """The service's settings reader (its checks and messages), for the delivery's settings; the
    configuration contract test discovers the settings from these calls as from the service's."""

    def delivery(self) -> DeliverySettings:
        queue = self._get("DELIVERY_QUEUE", "solution-delivery")
        container = self._get("DELIVERY_CONTAINER", "deliveries")
        assert queue is not None and container is not None
        if not _NAME.fullmatch(container):
            raise SettingsError("setting DELIVERY_CONTAINER must be a Blob Storage container name")
        return DeliverySettings(
            queue=queue,
            connection_string=self._get("DeliveryStorage"),
            blob_service_uri=self._https_url("DeliveryStorage__blobServiceUri"),
            container=container,
            max_file_bytes=self._int("DELIVERY_MAX_FILE_BYTES", 100 * MiB, 1024, 1024 * MiB),
            poll_seconds=float(self._int("DELIVERY_POLL_SECONDS", 120, 1, 600)),
            poll_delay_seconds=float(self._int("DELIVERY_POLL_DELAY_SECONDS", 30, 1, 3600)),
            max_polls=self._int("DELIVERY_MAX_POLLS", 120, 1, 10_000),
        )
