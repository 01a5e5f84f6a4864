"""Nightly re-verification: fan out one verify message per known link, then summarise the run."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.links.earning import stopped_in
from shared.links.message_builder import OFFBOARDING_PROPERTIES, offboarding_body, onboarding_body
from shared.links.rows import LinkState
from shared.links.runs import RunSummary
from shared.links.snapshot import snapshot_properties
from shared.spine.envelope import (
    CHECK_PROPERTY,
    KIND_PROPERTY,
    MAX_COUNTER,
    RUN_ID_PROPERTY,
    RUN_SUMMARY,
    Source,
    valid_run_id,
    whole_number,
)
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.servicebus import OutgoingMessage, QueueSender, ServiceBusNotConfigured
from shared.spine.settings import Settings

if TYPE_CHECKING:
    from shared.links.ledger import Ledger
    from shared.links.service import LinkService

logger = logging.getLogger(__name__)

_BATCH = 500
_RUN_DEADLINE = timedelta(hours=20)  # a run that never finishes is summarised as incomplete


def run_id_for(moment: datetime) -> str:
    """One run per UTC day: a timer that fires twice that day sends the same MessageIds again."""
    return moment.astimezone(UTC).date().isoformat()


def verify_message(state: LinkState, run_id: str) -> OutgoingMessage | None:
    """A customer-onboarded v1 body for a known link, so verification goes through the same parser;
    None when the state row holds no identity the service can sign in as (none, or a user account).

    A verified row's snapshot travels with it (`shared.links.snapshot`), unless this run has
    already checked the link (the run was started twice): that message reads the ledger and finds
    its receipt."""
    tenant, identity = state.customer_tenant_id, state.identity
    if not (tenant and identity):
        return None
    body = onboarding_body(
        tenant,
        identity,
        partner_id=state.partner_id,
        customer_name=state.customer_name,
        correlation_id=state.correlation_id,
    )
    return OutgoingMessage(
        body,
        message_id=f"verify:{tenant}:{identity.client_id}:{run_id}",
        properties={
            RUN_ID_PROPERTY: run_id,
            **(snapshot_properties(state) if state.last_run_id != run_id else {}),
        },
    )


def offboarding_retry(state: LinkState, run_id: str) -> OutgoingMessage | None:
    """A `customer-offboarded` message for an offboarded link whose removal did not finish (it failed,
    or its retries ran out), so that each night tries again until the link is gone; None when the
    removal finished (`unlinked`) or the service cannot sign in as the identity (a user account)."""
    tenant, identity = state.customer_tenant_id, state.identity
    if not (tenant and identity and state.is_offboarded) or state.outcome is OutcomeKind.UNLINKED:
        return None
    return OutgoingMessage(
        offboarding_body(tenant, client_id=identity.client_id, correlation_id=state.correlation_id),
        message_id=f"offboard:{tenant}:{identity.client_id}:{run_id}",
        properties=dict(OFFBOARDING_PROPERTIES),
    )


async def verify_now(service: LinkService, state: LinkState, run_id: str) -> Outcome | None:
    """Verify one recorded link in this process, as its verify message would (the benchmark and
    the tests); None when the state row holds no identity."""
    outgoing = verify_message(state, run_id)
    if outgoing is None:
        return None
    return await service.handle(
        outgoing.body, message_id=outgoing.message_id, properties=outgoing.properties, source=Source.VERIFY
    )


@dataclass(frozen=True)
class SummaryCheck:
    """A run-summary check message's application properties, once validated."""

    run_id: str
    number: int

    @classmethod
    def of(cls, properties: Mapping[str, Any]) -> SummaryCheck | list[str]:
        """The check, or what is wrong with it (property names only, never their values)."""
        run_id = valid_run_id(properties.get(RUN_ID_PROPERTY))
        number = whole_number(properties.get(CHECK_PROPERTY, 1), low=1)
        if run_id is not None and number is not None:
            return cls(run_id, number)
        problems = []
        if run_id is None:
            problems.append(f"{RUN_ID_PROPERTY}: missing or not a run id")
        if number is None:
            problems.append(f"{CHECK_PROPERTY}: not a whole number from 1 to {MAX_COUNTER}")
        return problems


@dataclass
class FanOut:
    """What one night's read of the ledger found: verify messages sent, offboarded links (with the
    removals to try again) and user accounts due for a manual check."""

    sent: int = 0
    offboarded: int = 0
    unfinished: list[OutgoingMessage] = field(default_factory=list)
    manual: list[LinkState] = field(default_factory=list)

    def sort(self, state: LinkState, run_id: str) -> OutgoingMessage | None:
        """The link's verify message, or None when it is counted, retried or listed instead."""
        if state.is_offboarded:
            self.offboarded += 1  # the customer is gone: neither checked nor healed...
            retry = offboarding_retry(state, run_id)
            self.unfinished += [retry] if retry else []  # ...but a removal that failed is tried again
            return None
        if state.is_user:
            self.manual.append(state)  # only a person can sign in as it: listed, never sent
            return None
        message = verify_message(state, run_id)
        if message is None:
            logger.warning(
                "link %s/%s has no valid identity recorded; skipped", state.partition_key, state.row_key
            )
        return message


class NightlyRun:
    """The nightly run's fan-out and summary. Takes only what it uses: the ledger, the sender of
    the verify queue, and the settings."""

    def __init__(self, ledger: Ledger, sender: QueueSender | None, settings: Settings) -> None:
        self._ledger = ledger
        self._sender = sender
        self._settings = settings

    @classmethod
    def of(cls, service: LinkService) -> NightlyRun:
        return cls(service.ledger, service.sender, service.settings)

    def _queue(self) -> QueueSender:
        if self._sender is None:
            raise ServiceBusNotConfigured(
                "re-verification needs Service Bus (ServiceBusConnection__fullyQualifiedNamespace)"
            )
        return self._sender

    async def start(self, *, now: datetime | None = None) -> tuple[str, int]:
        """Send a verify message for every link in the ledger (failed and needs-customer-action too),
        except the links of offboarded customers (an unfinished removal is tried again instead) and
        user accounts (listed as due for a manual check)."""
        started = now or datetime.now(UTC)
        run_id = run_id_for(started)
        fan_out = await self._fan_out(run_id)
        manual = len(fan_out.manual)
        if await self._ledger.runs.create(
            run_id, total=fan_out.sent, started_at=started, manual_checks=manual
        ):
            await self._schedule_check(run_id, 1)
            logger.info(
                "re-verification run %s started: %d verify messages sent to %s (%d offboarded, not "
                "checked, %d unfinished removals tried again; %d user accounts due for a manual check)",
                run_id,
                fan_out.sent,
                self._settings.verify_queue,
                fan_out.offboarded,
                len(fan_out.unfinished),
                manual,
            )
            log_manual_checks(run_id, fan_out.manual)
        else:
            logger.info("re-verification run %s was already started; duplicate messages are dropped", run_id)
        return run_id, fan_out.sent

    async def _fan_out(self, run_id: str) -> FanOut:
        """Read every link once: send its verify message (in batches), or its removal again, or list it."""
        sender, queue = self._queue(), self._settings.verify_queue
        fan_out, pending = FanOut(), list[OutgoingMessage]()
        async for state in self._ledger.all_link_states():
            message = fan_out.sort(state, run_id)
            if message is not None:
                pending.append(message)
            if len(pending) >= _BATCH:
                fan_out.sent += await sender.send_batch(queue, pending)
                pending = []
        if pending:
            fan_out.sent += await sender.send_batch(queue, pending)
        if fan_out.unfinished:
            await sender.send_batch(self._settings.onboarding_queue, fan_out.unfinished)
        return fan_out

    async def _schedule_check(self, run_id: str, number: int) -> None:
        await self._queue().schedule(
            self._settings.verify_queue,
            b"{}",
            message_id=f"{RUN_SUMMARY}:{run_id}:{number}",
            at=datetime.now(UTC) + timedelta(seconds=self._settings.run_summary_check_seconds),
            properties={KIND_PROPERTY: RUN_SUMMARY, RUN_ID_PROPERTY: run_id, CHECK_PROPERTY: number},
        )

    async def handle_summary_check(self, properties: Mapping[str, Any]) -> None:
        """A run-summary check from the verify queue; a malformed one is logged and dropped, never
        raised (raising would only have Service Bus deliver it again until it is dead-lettered)."""
        check = SummaryCheck.of(properties)
        if isinstance(check, list):
            logger.warning("run-summary check message ignored: %s", "; ".join(check))
            return
        await self.check(check.run_id, check.number)

    async def check(self, run_id: str, number: int) -> RunSummary | None:
        """Summarise the run once every link has a final outcome; otherwise look again later."""
        runs = await self._ledger.runs.all()
        run = next((record for record in runs if record.run_id == run_id), None)
        if run is None or run.ended:
            return None
        counts, earning, stopped = Counter[str](), Counter[str](), set[str]()
        ended = run.started_at
        async for state in self._ledger.states_of_run(run_id):
            if state.outcome is not OutcomeKind.TRANSIENT:
                counts[state.outcome.value] += 1
                earning[state.earning.value if state.earning else "unchecked"] += 1
                stopped.update([state.partition_key] if stopped_in(state, run_id) else [])
                ended = max(ended, state.last_checked_at or ended)
        complete = sum(counts.values()) >= run.total
        overdue = datetime.now(UTC) - run.started_at > _RUN_DEADLINE
        if not (complete or overdue):
            await self._schedule_check(run_id, number + 1)
            return None

        duration = round((ended - run.started_at).total_seconds(), 1)
        summary = RunSummary(ended, duration, complete, counts, earning=earning, stopped_earning=len(stopped))
        await self._ledger.runs.finish(run_id, summary)
        logger.info(
            "re-verification run %s %s: %d links in %.1f s: %s; Azure recognition: %s",
            run_id,
            "finished" if complete else "stopped waiting (incomplete)",
            run.total,
            summary.duration_seconds,
            json.dumps(dict(sorted(counts.items()))),
            json.dumps(dict(sorted(earning.items()))),
        )
        if summary.stopped_earning:
            logger.warning(
                "re-verification run %s: %d customers stopped earning last night (Azure recognition "
                "lost: no qualifying role left; see each link's history)",
                run_id,
                summary.stopped_earning,
            )
        earlier = [record for record in runs if record.run_id < run_id and record.ended]
        if earlier:
            _compare(run_id, counts, Counter(earlier[-1].counts), earlier[-1].run_id)
        return summary


MANUAL_CHECKS_LOGGED = 50
"""The user-account links named one by one in a run's log (the oldest checked first); the rest are
counted: `GET /api/links?identityType=user` lists them all."""


def due_for_manual_check(states: list[LinkState]) -> list[LinkState]:
    """User-account links, the longest unchecked first (never checked at all before any)."""
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(states, key=lambda state: (state.last_linked_at or oldest, state.partition_key))


def log_manual_checks(run_id: str, states: list[LinkState]) -> None:
    """Name the user-account links due for a manual check: a person signs in as each one with
    `palctl verify-user`. Never a failure: the service cannot sign in as a user account."""
    due = due_for_manual_check(states)
    for state in due[:MANUAL_CHECKS_LOGGED]:
        last = state.last_linked_at.isoformat() if state.last_linked_at else "never"
        logger.info(
            "re-verification run %s: user account %s of tenant %s is due for a manual check (last "
            "verified %s): palctl verify-user --tenant %s",
            run_id,
            state.client_id,
            state.partition_key,
            last,
            state.partition_key,
        )
    if len(due) > MANUAL_CHECKS_LOGGED:
        logger.info(
            "re-verification run %s: %d more user accounts are due for a manual check "
            "(GET /api/links?identityType=user lists them)",
            run_id,
            len(due) - MANUAL_CHECKS_LOGGED,
        )


def _compare(run_id: str, now: Counter[str], before: Counter[str], before_id: str) -> None:
    verified = OutcomeKind.VERIFIED.value
    action = OutcomeKind.NEEDS_CUSTOMER_ACTION.value
    if now[verified] < before[verified]:
        logger.warning(
            "re-verification run %s: verified links dropped from %d (run %s) to %d",
            run_id,
            before[verified],
            before_id,
            now[verified],
        )
    if now[action] > before[action]:
        logger.warning(
            "re-verification run %s: links needing customer action rose from %d (run %s) to %d",
            run_id,
            before[action],
            before_id,
            now[action],
        )
