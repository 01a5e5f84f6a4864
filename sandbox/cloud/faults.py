"""Fault injection: the rules added per tenant ("*" = every tenant) for a target (token, arm,
keyvault, any), taken by each request as it arrives, and the reply a fault makes in the shape of the
service it hits. Probabilities draw from a seeded generator, so a run is reproducible."""

from __future__ import annotations

import http
import random
from dataclasses import dataclass
from typing import cast

from ..scenario import FaultRule
from .oauth import AADSTS, oauth_error
from .protocol import ErrorShape, Reply, Request
from .state import CloudState


@dataclass
class _ActiveFault:
    rule: FaultRule
    remaining: int | None


def status_code_name(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return f"Http{status}"


class Faults:
    def __init__(self, state: CloudState, seed: int = 0) -> None:
        self._state = state  # its lock guards the rules too, its stats count the faults applied
        self._random = random.Random(seed)  # fault probabilities are reproducible run to run
        self._rules: dict[str, list[_ActiveFault]] = {}

    def add(self, tenant_id: str, rule: FaultRule) -> None:
        """Inject `rule` into requests for `tenant_id` ("*" = every tenant)."""
        if rule.kind == "aadsts" and rule.aadsts not in AADSTS:
            raise ValueError(f"aadsts: the sandbox has no AADSTS{rule.aadsts}; known: {sorted(AADSTS)}")
        with self._state.lock:
            self._rules.setdefault(tenant_id.lower(), []).append(_ActiveFault(rule, rule.count))

    def clear(self, tenant_id: str | None = None) -> None:
        with self._state.lock:
            if tenant_id is None:
                self._rules.clear()
            else:
                self._rules.pop(tenant_id.lower(), None)

    def take(self, tenant_id: str, target: str) -> tuple[float, FaultRule | None]:
        """Total latency to add and the first terminal fault that fires; each firing uses up one count."""
        delay_ms, chosen = 0.0, None
        with self._state.lock:
            for key in (tenant_id, "*"):
                for active in self._rules.get(key, []):
                    if not self._fires(active, target, chosen):
                        continue
                    if active.remaining is not None:
                        active.remaining -= 1
                    if active.rule.kind == "latency":
                        delay_ms += active.rule.latency_ms
                    else:
                        chosen = active.rule
                    applied = self._state.stats["faultsApplied"]
                    applied[tenant_id] = applied.get(tenant_id, 0) + 1
                if key in self._rules:
                    self._rules[key] = [active for active in self._rules[key] if active.remaining != 0]
        return delay_ms, chosen

    def _fires(self, active: _ActiveFault, target: str, chosen: FaultRule | None) -> bool:  # lock held
        rule = active.rule
        if rule.target not in (target, "any") or active.remaining == 0:
            return False
        if rule.kind != "latency" and chosen is not None:
            return False
        return not (rule.probability < 1 and self._random.random() >= rule.probability)

    def apply(
        self,
        request: Request,
        tenant_id: str,
        target: str,
        shape: ErrorShape,
        context: dict[str, str] | None = None,
    ) -> Reply | None:
        """The reply an injected fault makes for this request, or None to carry on.

        Latency holds the reply back rather than the processing: what the request sees is the state
        when it arrived, which opens a window for races (a link appearing between a GET and a PUT).
        An HTTP status is worded by `shape`, an AADSTS code as Entra does with `context`.
        """
        delay_ms, rule = self.take(tenant_id, target)
        request.delay_ms += delay_ms
        if rule is None:
            return None
        if rule.kind == "ignore-write":
            request.ignore_write = True
            return None
        if rule.kind == "drop":
            return Reply(0, drop=True)
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
        if rule.kind == "aadsts":
            return oauth_error(self._state, cast(int, rule.aadsts), context or {}, headers=headers)
        status = cast(int, rule.status)
        message = "The service is temporarily unavailable. Please try again later."
        if status == 429:
            message = "The request was throttled. Please retry after the time in the Retry-After header."
        return shape(status, status_code_name(status), message, headers)
