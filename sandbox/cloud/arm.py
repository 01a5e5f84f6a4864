"""ARM's Microsoft.ManagementPartner (api-version 2018-02-01): the caller's partner link read,
created, updated and soft-deleted, behind ARM's bearer-token check, api-version check and per-principal
token-bucket rate limits (x-ms-ratelimit-remaining-tenant-reads/writes, 429 with Retry-After)."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .faults import Faults
from .protocol import Refusal, Reply, Request, json_reply
from .state import CloudState, Link
from .tokens import TokenIssuer

ARM_API_VERSION = "2018-02-01"
ARM_AUDIENCES = frozenset(
    {"https://management.azure.com", "https://management.azure.com/", "https://management.core.windows.net/"}
)
# ARM's tenant-level token buckets per principal: (burst, refill per second).
RATE_LIMITS = {"reads": (250.0, 25.0), "writes": (200.0, 10.0)}
_NOT_LINKED = (
    404,
    "ManagementPartnerNotFound",
    "This user or service principal is not linked with a Partner ID",
)
_INVALID = (400, "PartnerIdInvalid", "The Partner ID is not valid")
_WRONG_AUDIENCE = (
    "The access token has been obtained for wrong audience or resource '{audience}'. It should exactly "
    "match with one of the allowed audiences 'https://management.core.windows.net/',"
    "'https://management.azure.com/','https://management.azure.com'."
)

OPERATIONS = {
    "value": [
        {
            "name": f"Microsoft.ManagementPartner/partners/{action}",
            "display": {
                "provider": "Microsoft ManagementPartner",
                "resource": "Management Partner",
                "operation": f"{verb} Management Partner",
                "description": f"{verb} ManagementPartner",
            },
            "origin": "user,system",
        }
        for action, verb in (("read", "Get"), ("write", "Create or update"), ("delete", "Delete"))
    ]
}


def arm_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    # ARM's ManagementPartner errors repeat code and message at both levels.
    return json_reply(
        status, {"error": {"code": code, "message": message}, "code": code, "message": message}, headers
    )


def _not_allowed(method: str) -> Reply:
    return arm_error(405, "MethodNotAllowed", f"The method '{method}' is not allowed.")


def _invalid_token(problem: str | None, claims: dict[str, Any] | None) -> str:
    """What ARM says about a token that is expired, for another audience, or not a token at all."""
    if problem == "expired" and claims is not None:
        expiry = datetime.fromtimestamp(float(claims["exp"]), UTC).strftime("%m/%d/%Y %H:%M:%S")
        now = datetime.now(UTC).strftime("%m/%d/%Y %H:%M:%S")
        return f"The access token expiry UTC time '{expiry}' is earlier than current UTC time '{now}'."
    if problem == "audience" and claims is not None:
        return _WRONG_AUDIENCE.format(audience=claims["aud"])
    return "The access token is invalid."


def arm_caller(tokens: TokenIssuer, request: Request, headers: dict[str, str]) -> tuple[str, str]:
    """The caller's (tenant ID, object ID) from an ARM token; adds WWW-Authenticate when refusing."""
    claims, problem = tokens.bearer(request.header("Authorization"))
    authenticate = (
        f'Bearer authorization_uri="{request.base_url}/", error="invalid_token", error_description='
    )
    if problem == "missing":
        headers["WWW-Authenticate"] = (
            authenticate + "\"The authentication failed because of missing 'Authorization' header.\""
        )
        message = "Authentication failed. The 'Authorization' header is missing."
        raise Refusal(arm_error(401, "AuthenticationFailed", message))
    if problem is None and claims is not None and claims["aud"] not in ARM_AUDIENCES:
        problem = "audience"
    if problem is not None or claims is None:
        headers["WWW-Authenticate"] = authenticate + '"The access token is invalid."'
        raise Refusal(arm_error(401, "InvalidAuthenticationToken", _invalid_token(problem, claims)))
    return str(claims["tid"]).lower(), str(claims["oid"]).lower()


class RateLimits:
    """Token buckets per (tenant, principal, reads or writes)."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._buckets: dict[tuple[str, str, str], tuple[float, float]] = {}

    def take(self, tenant_id: str, object_id: str, kind: str, now: float) -> tuple[int, float]:
        """Remaining requests after this one, and how long to wait when the bucket is empty."""
        burst, per_second = RATE_LIMITS[kind]
        with self._lock:
            tokens, stamp = self._buckets.get((tenant_id, object_id, kind), (burst, now))
            tokens = min(burst, tokens + (now - stamp) * per_second)
            if tokens < 1:
                self._buckets[(tenant_id, object_id, kind)] = (tokens, now)
                return 0, (1 - tokens) / per_second
            self._buckets[(tenant_id, object_id, kind)] = (tokens - 1, now)
            return int(tokens - 1), 0.0


@dataclass
class _Target:
    """The caller's link and the partner ID a request names."""

    tenant_id: str
    object_id: str
    partner_id: str
    link: Link | None
    active: Link | None  # the link when it is not soft-deleted


class ManagementPartner:
    def __init__(self, state: CloudState, tokens: TokenIssuer, faults: Faults) -> None:
        self._state, self._tokens, self._faults = state, tokens, faults
        self._rates = RateLimits(state.lock)
        self._actions: dict[str, Callable[[Request, _Target], Reply]] = {
            "GET": self._get,
            "PUT": self._put,
            "PATCH": self._patch,
            "DELETE": self._delete,
        }

    def audiences(self, base_url: str) -> Iterable[str]:
        return ARM_AUDIENCES

    def handle(self, request: Request) -> Reply:
        headers = {
            "x-ms-request-id": str(uuid.uuid4()),
            "x-ms-correlation-request-id": request.header("x-ms-client-request-id") or str(uuid.uuid4()),
        }
        try:
            reply = self._serve(request, headers)
        except Refusal as refusal:
            reply = refusal.reply
        reply.headers.update(headers)  # every reply, errors and faults too, carries ARM's headers
        return reply

    def _serve(self, request: Request, headers: dict[str, str]) -> Reply:
        tenant_id, object_id = self._authenticate(request, headers)
        self._state.count("armCalls", tenant_id, request.method)
        fault = self._faults.apply(request, tenant_id, "arm", arm_error)
        if fault is not None:
            return fault
        api_version = request.query.get("api-version")
        if not api_version:
            message = "The api-version query parameter (?api-version=) is required for all requests."
            return arm_error(400, "MissingApiVersionParameter", message)
        if api_version != ARM_API_VERSION:
            message = (
                f"The api-version '{api_version}' is invalid. The supported versions are '{ARM_API_VERSION}'."
            )
            return arm_error(400, "InvalidApiVersionParameter", message)
        kind = "reads" if request.method == "GET" else "writes"
        remaining, wait = self._rates.take(tenant_id, object_id, kind, time.monotonic())
        headers[f"x-ms-ratelimit-remaining-tenant-{kind}"] = str(remaining)
        if wait:
            headers["Retry-After"] = str(math.ceil(wait))
            return arm_error(429, "TooManyRequests", "The request is being throttled. Retry later.")
        return self._route(request, tenant_id, object_id)

    def _authenticate(self, request: Request, headers: dict[str, str]) -> tuple[str, str]:
        return arm_caller(self._tokens, request, headers)

    def _route(self, request: Request, tenant_id: str, object_id: str) -> Reply:
        parts = [part.lower() for part in request.path]
        if len(parts) < 3 or parts[1] != "microsoft.managementpartner":
            namespace = request.path[1] if len(request.path) > 1 else ""
            message = f"The resource namespace '{namespace}' is invalid."
            return arm_error(404, "InvalidResourceNamespace", message)
        if parts[2:] == ["operations"] and request.method == "GET":
            return json_reply(200, OPERATIONS)
        if parts[2] != "partners" or len(parts) > 4:
            return arm_error(
                404,
                "InvalidResourceType",
                f"The resource type '{'/'.join(request.path[2:])}' could not be found in the namespace "
                f"'Microsoft.ManagementPartner' for api version '{ARM_API_VERSION}'.",
            )
        return self._partners(request, tenant_id, object_id)

    def _partners(self, request: Request, tenant_id: str, object_id: str) -> Reply:
        """/partners (the caller's link, whatever its partner ID) and /partners/{partnerId}."""
        with self._state.lock:
            link = self._state.links.get((tenant_id, object_id))
            active = link if link is not None and link.state == "Active" else None
            if len(request.path) == 3:
                if request.method != "GET":
                    return _not_allowed(request.method)
                return json_reply(200, active.resource()) if active else arm_error(*_NOT_LINKED)
            action = self._actions.get(request.method)
            if action is not None:
                return action(request, _Target(tenant_id, object_id, request.path[3], link, active))
        return _not_allowed(request.method)

    # ---- one partner ID (lock held) --------------------------------------------------------------

    def _known(self, partner_id: str) -> bool:
        return partner_id in self._state.scenario.known_partner_ids

    def _get(self, request: Request, target: _Target) -> Reply:
        active = target.active
        if active is None or active.partner_id != target.partner_id:
            return arm_error(*_NOT_LINKED)
        return json_reply(200, active.resource())

    def _put(self, request: Request, target: _Target) -> Reply:
        link, active = target.link, target.active
        if request.ignore_write and active is not None:
            return json_reply(200, active.resource())
        if not self._known(target.partner_id):
            return arm_error(*_INVALID)
        if link is None:
            link = self._state.new_link(target.tenant_id, target.object_id, target.partner_id)
        elif active is None:
            self._state.write_link(link, partner_id=target.partner_id, state="Active")  # revive the record
        elif self._state.put_when_linked == "conflict":
            message = "The user or service principal is already linked with a Partner ID"
            return arm_error(409, "Conflict", message)
        return json_reply(200, link.resource())

    def _patch(self, request: Request, target: _Target) -> Reply:
        active = target.active
        if request.ignore_write and active is not None:
            return json_reply(200, active.resource())
        if active is None:
            return arm_error(*_NOT_LINKED)
        if not self._known(target.partner_id):
            return arm_error(*_INVALID)
        self._state.write_link(active, partner_id=target.partner_id)
        return json_reply(200, active.resource())

    def _delete(self, request: Request, target: _Target) -> Reply:
        if target.active is not None:
            self._state.write_link(target.active, state="Deleted")
        return Reply(200)
