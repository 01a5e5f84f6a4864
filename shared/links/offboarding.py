"""Offboarding: remove the partner's link in a customer tenant whose relationship has ended, and stop
checking it.

A `customer-offboarded` message (on the onboarding queue, `palKind = customer-offboarded`) or an
operator's offboard call names the tenant (and, when several identities are recorded there, the
client ID). The identity is the one recorded for the tenant: the flow signs in as it, exactly as
linking does, and deletes its link. It goes through the link service's spine like every other
attempt: the receipt makes a redelivery harmless, the partner credential's breaker holds it back,
`after_attempt` retries a transient failure on a schedule, and the outcome, a history event and the
state (marked offboarded, so the nightly run and a body-less relink leave it alone) are recorded
together. An identity that can no longer sign in at all took its link with it: `unlinked`, with
that reason, not a failure retried for ever. The history is kept; a later onboarding starts anew.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.links.delivery import Delivery
from shared.links.ledger import LedgerView
from shared.links.message import (
    MessageRejected,
    OffboardingRequest,
    OnboardingRequest,
    parse_offboarding_message,
    unknown_kind,
)
from shared.links.rows import LinkState
from shared.links.service import LinkService
from shared.links.step import Step
from shared.links.verdicts import redelivered, rejected
from shared.spine.decision import Decision, after_attempt
from shared.spine.envelope import Source, is_offboarding
from shared.spine.errors import IDENTITY_GONE
from shared.spine.identity import Identity, IdentityType
from shared.spine.outcomes import Outcome, OutcomeKind

__all__ = ["Offboarded", "Offboarding", "choose_identity"]

logger = logging.getLogger(__name__)

UNKNOWN_TENANT = "unknown-tenant"
UNKNOWN_IDENTITY = "unknown-identity"
IDENTITY_REQUIRED = "identity-required"


@dataclass(frozen=True)
class Offboarded:
    """An offboarding's outcome, and the client ID of the identity it was about (None when no
    identity could be chosen)."""

    outcome: Outcome
    client_id: str | None = None


class Offboarding:
    """The offboarding flow on the link service's pieces (ledger, linker, breaker, retry policy)."""

    def __init__(self, service: LinkService) -> None:
        self._service = service

    async def handle(
        self,
        body: bytes,
        *,
        message_id: str,
        delivery_count: int = 1,
        properties: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Process one message of the onboarding queue whose kind is not an onboarding; never raises
        for a service error. A kind other than `customer-offboarded` is rejected."""
        started = time.monotonic()
        properties = properties or {}
        delivery = Delivery.of_message(message_id, Source.OFFBOARDING, delivery_count, properties, body)
        max_bytes = self._service.settings.max_message_bytes
        try:
            if not is_offboarding(properties):
                raise unknown_kind(body, max_bytes=max_bytes)
            request = parse_offboarding_message(body, max_bytes=max_bytes)
        except MessageRejected as rejection:
            tenant = rejection.customer_tenant_id
            return await self._service.record_rejection(
                rejected(rejection), delivery, tenant, body=body, started=started
            )
        return (await self._process(request, delivery, body=body, started=started)).outcome

    async def offboard(self, request: OffboardingRequest) -> Offboarded:
        """An operator's offboard: done now, recorded like any other attempt, never rescheduled. A
        tenant or identity that cannot be chosen is answered, not recorded (as for a relink)."""
        message_id = f"offboard:{uuid.uuid4()}"
        delivery = Delivery(message_id=message_id, original_id=message_id, source=Source.OFFBOARDING)
        return await self._process(request, delivery, body=None, started=time.monotonic())

    async def _process(
        self, request: OffboardingRequest, delivery: Delivery, *, body: bytes | None, started: float
    ) -> Offboarded:
        """Read the receipt, choose the identity, then unlink (or answer why not)."""
        service, tenant = self._service, request.customer_tenant_id
        try:
            # The receipt first: a redelivery is answered before an identity is chosen again.
            view = await service.ledger.view(tenant, delivery.chain_id, None)
            duplicate = redelivered(view, delivery, tenant)
            if duplicate is not None:
                return Offboarded(duplicate, request.client_id)
            chosen = choose_identity(await service.ledger.link_states(tenant), request.client_id)
        except Exception as error:
            outcome = await service.ledger_unavailable(
                error, request.correlation_id, delivery, body, retry_scheduled=False
            )
            return Offboarded(outcome, request.client_id)
        if isinstance(chosen, Outcome):
            if body is None:
                return Offboarded(chosen, request.client_id)
            outcome = await service.record_rejection(chosen, delivery, tenant, body=body, started=started)
            return Offboarded(outcome, request.client_id)
        as_request = _as_request(chosen, request, service.settings.partner_id)
        step = Step(as_request, delivery, body, started, _with_state(view, chosen))
        return Offboarded(await self._unlink(step), chosen.client_id)

    async def _unlink(self, step: Step) -> Outcome:
        """The spine around the DELETE: held back while the breaker is open, else unlinked; then the
        decision after it, scheduled and recorded."""
        service = self._service
        held = service.held_back(step)
        if held is not None:
            return await service.finish(step, held)
        if not step.request.identity.type.unattended:
            return await service.finish(step, Decision(user_unlink_needed(step.request)))
        outcome = await service.linker.unlink(step.request.customer_tenant_id, step.request.identity)
        outcome = gone_with_identity(outcome)
        service.watch_credential(step, outcome)
        decision = after_attempt(
            outcome,
            step.delivery.counters,
            service.policy,
            can_reschedule=step.can_reschedule(service.sender),
        )
        return await service.finish(step, decision)


def choose_identity(states: Sequence[LinkState], client_id: str | None) -> LinkState | Outcome:
    """The recorded identity to offboard: the one with `client_id`; without one, the tenant's only
    identity not yet offboarded (or its only identity). A refusal (final, `rejected`) otherwise."""
    if not states:
        return _refusal(UNKNOWN_TENANT, "no link is recorded for this tenant; nothing was removed")
    if client_id is not None:
        state = next((state for state in states if state.client_id == client_id), None)
        if state is None:
            return _refusal(UNKNOWN_IDENTITY, "no identity with this client ID is recorded for this tenant")
    else:
        active = [state for state in states if not state.is_offboarded] or list(states)
        if len(active) > 1:
            clients = ", ".join(sorted(state.client_id or "" for state in active))
            return _refusal(
                IDENTITY_REQUIRED,
                f"several identities are recorded for this tenant ({clients}); name one (clientId)",
            )
        state = active[0]
    if not (state.client_id and state.identity_type):
        return _refusal(UNKNOWN_IDENTITY, "the recorded identity is incomplete; it cannot sign in")
    return state


def user_unlink_needed(request: OnboardingRequest) -> Outcome:
    """A user account's link cannot be removed unattended: the customer is offboarded (no longer
    checked) and the partner is told how to remove the link by signing in as the account."""
    tenant, partner_id = request.customer_tenant_id, request.partner_id
    return Outcome(
        OutcomeKind.NEEDS_PARTNER_ACTION,
        "the identity is a user account, which only a person can sign in as; its link is still in place",
        code="user-sign-in-required",
        remediation=(
            "Sign in as the account and remove its link: `palctl partner delete --tenant "
            f"{tenant} --partner-id {partner_id}` (the ledger records it as unlinked)."
        ),
    )


def gone_with_identity(outcome: Outcome) -> Outcome:
    """A sign-in refused because the identity no longer exists in the tenant (its service principal
    deleted, consent withdrawn, the tenant gone): the link went with it, so it is `unlinked`."""
    if outcome.kind is not OutcomeKind.NEEDS_CUSTOMER_ACTION or outcome.code not in IDENTITY_GONE:
        return outcome
    return Outcome(
        OutcomeKind.UNLINKED,
        f"the identity can no longer sign in ({outcome.reason}); its link went with it",
        code=outcome.code,
    )


def _refusal(code: str, reason: str) -> Outcome:
    """No identity could be chosen: final, and nothing was called."""
    return Outcome(
        OutcomeKind.REJECTED,
        reason,
        code=code,
        remediation="Check the tenant (and client ID) against GET /api/links/{tenant}; nothing is retried.",
    )


def _as_request(state: LinkState, request: OffboardingRequest, partner_id: str) -> OnboardingRequest:
    """The recorded identity as the request the service's pieces take (what the history shows)."""
    identity = Identity(
        IdentityType(state.identity_type or ""), state.client_id or "", state.key_vault_secret_name or None
    )
    return OnboardingRequest(
        customer_tenant_id=request.customer_tenant_id,
        identity=identity,
        partner_id=state.partner_id or partner_id,
        partner_id_defaulted=False,
        customer_name=state.customer_name,
        correlation_id=request.correlation_id or state.correlation_id,
    )


def _with_state(view: LedgerView, state: LinkState) -> LedgerView:
    """The chain's receipt and intent with the chosen identity's state (read with its ETag)."""
    return dataclasses.replace(view, state=state)
