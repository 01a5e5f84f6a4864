"""HTTP answers of the operators' API: a response, and RFC 9457 problem details for errors.

Light to import, so that the HTTP trigger adapters can answer a wrong method before the core is
loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "ApiResponse",
    "STORAGE_RETRY_AFTER_SECONDS",
    "method_not_allowed",
    "problem",
    "storage_unavailable",
]

_PROBLEM_BASE = "https://pal-autopilot.example/problems/"
STORAGE_RETRY_AFTER_SECONDS = 10


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        return "application/problem+json" if self.status >= 400 else "application/json"

    def encoded(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body, default=_json_default).encode()


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> ApiResponse:
    return ApiResponse(
        status,
        {"type": _PROBLEM_BASE + kind, "title": title, "status": status, "detail": detail, **extra},
    )


def method_not_allowed(method: str, allowed: list[str]) -> ApiResponse:
    response = problem(405, "method-not-allowed", "Method not allowed", f"{method} is not allowed here")
    response.headers["Allow"] = ", ".join(allowed)
    return response


def storage_unavailable() -> ApiResponse:
    """503 with Retry-After: Table Storage cannot be reached; nothing was changed."""
    response = problem(
        503,
        "storage-unavailable",
        "Try again later",
        "the ledger (Table Storage) is unavailable; try again later",
        retryAfterSeconds=STORAGE_RETRY_AFTER_SECONDS,
    )
    response.headers["Retry-After"] = str(STORAGE_RETRY_AFTER_SECONDS)
    return response


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)
