"""What the cloud sandbox's server and its stand-in services exchange.

A `Request` (parsed once by the server), the `Reply` to send back, the `Refusal` a service raises to
answer at once, the `ErrorShape` each service gives its errors, and the `Service` protocol every
stand-in implements.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Protocol


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering


def json_reply(status: int, payload: object, headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Reply(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


# (status, error code, message, headers) -> the error reply in a service's own body shape.
ErrorShape = Callable[[int, str, str, dict[str, str]], Reply]


class Refusal(Exception):
    """Raised by a service to answer with `reply` at once (most often an error); the router sends it."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


@dataclass
class Request:
    method: str
    path: list[str]
    query: dict[str, str]  # keys lower-cased: ARM's query parameter names are case-insensitive
    headers: Message
    body: bytes
    base_url: str = ""  # the sandbox's own origin (https://host:port), as its clients reach it
    delay_ms: float = 0.0  # injected latency: the reply is held back this long
    ignore_write: bool = False  # injected: a PUT or PATCH answers 200 with the link as it was

    def header(self, name: str) -> str:
        return str(self.headers.get(name) or "")

    def json(self) -> dict[str, Any]:
        value = json.loads(self.body or b"{}")
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object")
        return value


class Service(Protocol):
    """One stand-in service, given the shared state when it is made and mounted on the router."""

    def audiences(self, base_url: str) -> Iterable[str]:
        """The token audiences (resources) it accepts: Entra ID issues access tokens for these."""
        ...

    def handle(self, request: Request) -> Reply:
        """The reply to a request the router sent here; may raise `Refusal` instead."""
        ...
