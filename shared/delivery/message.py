"""The delivery queue's message: a reference to a file already in Blob Storage, never the file.

A message is believed only when every field is present, known and well formed; the blob's name
must be the SHA-256 the message states, so a message cannot point at another file; the worker then
reads the blob and checks its size and SHA-256 again (`blobs.read_checked`), and the delivery row
the API wrote must agree with the message (`service`). The deployment settings (connection
references and environment variables, the `pac solution create-settings` format) travel as a blob
of their own, checked the same way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.spine.identifiers import is_guid

__all__ = [
    "NAME_CONFLICTS",
    "DeliveryKind",
    "DeliveryMessage",
    "DeploymentSettings",
    "blob_name",
    "plain_environment",
]

SCHEMA_VERSION = 1
NAME_CONFLICTS = ("Abort", "Overwrite", "CreateOrOverwrite", "GenerateUniqueName", "Ignore")
DEFAULT_NAME_CONFLICT = "CreateOrOverwrite"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_DATASET_NAME_MAX = 200
_FIELDS = {
    "schemaVersion",
    "deliveryId",
    "customerTenantId",
    "kind",
    "target",
    "blob",
    "sha256",
    "size",
    "settingsBlob",
    "datasetName",
    "nameConflict",
}


class DeliveryKind(StrEnum):
    SOLUTION = "solution"
    """A managed solution into a Dataverse environment (`target`: the environment's id)."""
    PBIX = "pbix"
    """A .pbix into a Power BI workspace (`target`: the workspace's id)."""

    @property
    def extension(self) -> str:
        return "zip" if self is DeliveryKind.SOLUTION else "pbix"


def blob_name(sha256: str, extension: str) -> str:
    """Content-addressed: the same file uploaded twice is one blob."""
    return f"{sha256}.{extension}"


def plain_environment(value: Any) -> bool:
    return isinstance(value, str) and bool(_ENVIRONMENT.fullmatch(value))


def dataset_name_ok(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= _DATASET_NAME_MAX
        and value.isprintable()
        and value.strip() == value
    )


@dataclass(frozen=True)
class DeliveryMessage:
    delivery_id: str
    tenant: str
    kind: DeliveryKind
    target: str
    blob: str
    sha256: str
    size: int
    settings_blob: str | None = None
    dataset_name: str | None = None
    name_conflict: str | None = None

    def body(self) -> bytes:
        document: dict[str, Any] = {
            "schemaVersion": SCHEMA_VERSION,
            "deliveryId": self.delivery_id,
            "customerTenantId": self.tenant,
            "kind": self.kind.value,
            "target": self.target,
            "blob": self.blob,
            "sha256": self.sha256,
            "size": self.size,
        }
        optional = {
            "settingsBlob": self.settings_blob,
            "datasetName": self.dataset_name,
            "nameConflict": self.name_conflict,
        }
        document |= {key: value for key, value in optional.items() if value is not None}
        return json.dumps(document).encode()

    @property
    def message_id(self) -> str:
        return f"delivery:{self.delivery_id}"

    @classmethod
    def parse(cls, body: bytes, *, max_file_bytes: int) -> DeliveryMessage | None:
        """None for anything but a well-formed message of this schema."""
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(document, dict) or not set(document) <= _FIELDS:
            return None
        if document.get("schemaVersion") != SCHEMA_VERSION:
            return None
        try:
            kind = DeliveryKind(str(document.get("kind")))
        except ValueError:
            return None
        message = _fields(document, kind)
        if message is None or not 0 < message.size <= max_file_bytes:
            return None
        return message


def _fields(document: dict[str, Any], kind: DeliveryKind) -> DeliveryMessage | None:
    delivery_id, tenant = document.get("deliveryId"), document.get("customerTenantId")
    sha256, size, blob = document.get("sha256"), document.get("size"), document.get("blob")
    target, settings_blob = document.get("target"), document.get("settingsBlob")
    name, conflict = document.get("datasetName"), document.get("nameConflict")
    solution = kind is DeliveryKind.SOLUTION
    checks = (
        is_guid(delivery_id) and is_guid(tenant),
        isinstance(sha256, str) and bool(_SHA256.fullmatch(sha256)),
        isinstance(sha256, str) and blob == blob_name(sha256, kind.extension),
        isinstance(size, int) and not isinstance(size, bool),
        plain_environment(target) if solution else is_guid(target),
        settings_blob is None or (solution and _settings_blob(settings_blob)),
        name is None and conflict is None
        if solution
        else dataset_name_ok(name) and conflict in NAME_CONFLICTS,
    )
    if not all(checks):
        return None
    return DeliveryMessage(
        str(delivery_id).lower(),
        str(tenant).lower(),
        kind,
        str(target) if solution else str(target).lower(),
        str(blob),
        str(sha256),
        int(str(size)),
        settings_blob,
        name,
        conflict,
    )


def _settings_blob(value: Any) -> bool:
    return (
        isinstance(value, str)
        and value.endswith(".json")
        and bool(_SHA256.fullmatch(value.removesuffix(".json")))
    )


# ---- deployment settings ------------------------------------------------------------------------

_SETTINGS_MAX_ITEMS = 500
_LOGICAL_NAME = re.compile(r"^[A-Za-z0-9_.]{1,200}$")
_CONNECTION_ID = re.compile(r"^[A-Za-z0-9_.:/-]{0,400}$")


@dataclass(frozen=True)
class DeploymentSettings:
    """Connection references and environment variables, as `pac solution create-settings` writes
    them: `{"EnvironmentVariables": [{"SchemaName", "Value"}], "ConnectionReferences":
    [{"LogicalName", "ConnectionId", "ConnectorId"}]}`."""

    connections: tuple[tuple[str, str, str], ...] = ()
    variables: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, raw: bytes) -> DeploymentSettings | str:
        """The settings, or what is wrong with them (never their values)."""
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return "the settings are not JSON"
        if not isinstance(document, dict) or not set(document) <= {
            "EnvironmentVariables",
            "ConnectionReferences",
        }:
            return "the settings hold only EnvironmentVariables and ConnectionReferences"
        variables = _variables(document.get("EnvironmentVariables") or [])
        connections = _connections(document.get("ConnectionReferences") or [])
        if isinstance(variables, str):
            return variables
        if isinstance(connections, str):
            return connections
        return cls(connections, variables)

    def component_parameters(self) -> list[dict[str, str]]:
        """ImportSolutionAsync's ComponentParameters."""
        parameters = [
            {
                "@odata.type": "Microsoft.Dynamics.CRM.connectionreference",
                "connectionreferencelogicalname": name,
                "connectionid": connection,
                "connectorid": connector,
            }
            for name, connection, connector in self.connections
        ]
        parameters += [
            {
                "@odata.type": "Microsoft.Dynamics.CRM.environmentvariablevalue",
                "schemaname": name,
                "value": value,
            }
            for name, value in self.variables
        ]
        return parameters


def _variables(items: Any) -> tuple[tuple[str, str], ...] | str:
    if not isinstance(items, list) or len(items) > _SETTINGS_MAX_ITEMS:
        return "EnvironmentVariables must be a list"
    found = []
    for item in items:
        if not (isinstance(item, dict) and set(item) <= {"SchemaName", "Value"}):
            return "each environment variable is {SchemaName, Value}"
        name, value = item.get("SchemaName"), item.get("Value", "")
        if not (isinstance(name, str) and _LOGICAL_NAME.fullmatch(name) and isinstance(value, str)):
            return "an environment variable's SchemaName or Value is malformed"
        if len(value) > 2000:
            return "an environment variable's Value is longer than 2000 characters"
        found.append((name, value))
    return tuple(found)


def _connections(items: Any) -> tuple[tuple[str, str, str], ...] | str:
    if not isinstance(items, list) or len(items) > _SETTINGS_MAX_ITEMS:
        return "ConnectionReferences must be a list"
    found = []
    for item in items:
        if not (isinstance(item, dict) and set(item) <= {"LogicalName", "ConnectionId", "ConnectorId"}):
            return "each connection reference is {LogicalName, ConnectionId, ConnectorId}"
        name, connection, connector = (
            item.get(k, "") for k in ("LogicalName", "ConnectionId", "ConnectorId")
        )
        if not (isinstance(name, str) and _LOGICAL_NAME.fullmatch(name)):
            return "a connection reference's LogicalName is malformed"
        if not all(isinstance(v, str) and _CONNECTION_ID.fullmatch(v) for v in (connection, connector)):
            return "a connection reference's ConnectionId or ConnectorId is malformed"
        found.append((name, str(connection), str(connector)))
    return tuple(found)
