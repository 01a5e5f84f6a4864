"""What a delivery attempt came to, and what an import reported, without I/O."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from xml.etree import ElementTree

from shared.delivery.rows import DeliveryStatus
from shared.spine.untrusted import shown

__all__ = ["Finished", "ImportReport", "import_job_id", "read_import_log", "solution_failure"]

_JOB_IDS = uuid.UUID("5f0f3c8e-6a1d-4e7b-9c2a-3b4d5e6f7a80")
MAX_LOG_CHARACTERS = 8 * 1024 * 1024
MISSING_DEPENDENCY = "0x8004801D"
VERSION_CONFLICT = "0x80048068"
NO_CONNECTION = "0x80060467"
_GUID_IN_BRACES = re.compile(r"^\{?([0-9a-fA-F-]{36})\}?$")

_FAILURES = {
    MISSING_DEPENDENCY: (
        "missing-dependency",
        "Install the solutions the message names in the environment first (or deliver them first), "
        "then deliver this one again.",
    ),
    VERSION_CONFLICT: (
        "version-conflict",
        "The environment holds a higher version of this managed solution: deliver a higher version.",
    ),
    NO_CONNECTION: (
        "connection-reference-without-connection",
        "Give the connection reference a connection: create the connection in the environment and "
        "name it in the deployment settings (--settings, ConnectionReferences[].ConnectionId).",
    ),
}


def import_job_id(tenant: str, delivery_id: str) -> str:
    """The ImportJobId of a delivery: the same for every delivery of its message, so a redelivered
    message finds the import it started instead of importing twice."""
    return str(uuid.uuid5(_JOB_IDS, f"{tenant}/{delivery_id}"))


def hex_code(value: object) -> str | None:
    """Dataverse's error code (a signed int, or already hex) as 0xXXXXXXXX."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return f"0x{value & 0xFFFFFFFF:08X}"
    if isinstance(value, str) and re.fullmatch(r"0x[0-9a-fA-F]{1,8}", value):
        return "0x" + value[2:].upper().rjust(8, "0")
    return None


@dataclass(frozen=True)
class Finished:
    """A delivery's final outcome."""

    status: DeliveryStatus
    code: str | None
    reason: str
    remediation: str | None = None


def solution_failure(code: str | None, message: object) -> Finished:
    """A failed import: named precisely when its code is known; the message screened and capped."""
    kind, remediation = _FAILURES.get(code or "", ("import-failed", None))
    text = shown(message, 300) if message else "the import failed"
    return Finished(DeliveryStatus.FAILED, kind, f"{code or 'no code'}: {text}", remediation)


@dataclass(frozen=True)
class ImportReport:
    """What an import log lists: components by kind (their ids), and whether any failed."""

    components: dict[str, list[str]] = field(default_factory=dict)
    failure_code: str | None = None

    def counts(self) -> dict[str, int]:
        return {kind: len(ids) for kind, ids in sorted(self.components.items())}


def read_import_log(data: object) -> ImportReport:
    """The components and their results from an import job's `data`, read in memory and dropped:
    only kinds, ids and error codes leave this function."""
    if not isinstance(data, str) or len(data) > MAX_LOG_CHARACTERS or "<!DOCTYPE" in data.upper():
        return ImportReport()
    try:
        # Dataverse's own log, capped, and refused with a DTD: no entity can expand.
        root = ElementTree.fromstring(data)  # noqa: S314
    except ElementTree.ParseError:
        return ImportReport()
    found: dict[str, list[str]] = {}
    failure = None
    for section in root:
        if section.tag == "solutionManifests":
            failure = failure or _failed(section.iter("result"))
            continue
        for element in section:
            match = _GUID_IN_BRACES.fullmatch(element.get("id") or "")
            if match is not None:
                found.setdefault(element.tag, []).append(match.group(1).lower())
            failure = failure or _failed(element.findall("result"))
    return ImportReport(found, failure)


def _failed(results: object) -> str | None:
    for result in results:  # type: ignore[attr-defined]
        if result.get("result") == "failure":
            return hex_code(result.get("errorcode")) or "import-failed"
    return None


def tally(kinds: list[str]) -> dict[str, int]:
    return dict(Counter(kinds))
