"""Nightly re-verification: fan out one verify message per known link, then summarise the run."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.links.earning import stopped_in
from shared.links.message_builder import onboarding_body
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
from shared.spine.identity import Identity, IdentityType
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.servicebus import OutgoingMessage, QueueSender, ServiceBusNotConfigured
from shared.spine.settings import Settings

if TYPE_CHECKING:
    from shared.links.ledger import Ledger
    from shared.links.service import LinkService

logger = logging.getLogger(__name__)

_BATCH = 500
_RUN_DEADLINE = timedelta(hours=20)  # a run that never finishes is summarised as incomplete
_IDENTITY_TYPES = frozenset(kind.value for kind in IdentityType)


def run_id_for(moment: datetime) -> str:
    """One run per UTC day: a timer that fires twice that day sends the same MessageIds again."""
    return moment.astimezone(UTC).date().isoformat()


def verify_message(state: LinkState, run_id: str) -> OutgoingMessage | None:
    """A customer-onboarded v1 body for a known link, so verification goes through the same parser;
    None when the state row holds no identity (or an identity type the parser has never accepted).

    A verified row's snapshot travels with it (`shared.links.snapshot`), unless this run has
    already checked the link (the run was started twice): that message reads the ledger and finds
    its receipt."""
    tenant, client_id, identity_type = state.customer_tenant_id, state.client_id, state.identity_type
    if not (tenant and client_id and identity_type in _IDENTITY_TYPES):
        return None
    identity = Identity(IdentityType(identity_type), client_id, state.key_vault_secret_name or None)
    body = onboarding_body(
        tenant,
        identity,
        partner_id=state.partner_id,
        customer_name=state.customer_name,
        correlation_id=state.correlation_id,
    )
    return OutgoingMessage(
        body,
        message_id=f"verify:{tenant}:{client_id}:{run_id}",
        properties={
            RUN_ID_PROPERTY: run_id,
            **(snapshot_properties(state) if state.last_run_id != run_id else {}),
        },
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
        except the links of offboarded customers."""
        sender, queue = self._queue(), self._settings.verify_queue
        started = now or datetime.now(UTC)
        run_id = run_id_for(started)
        sent, offboarded, pending = 0, 0, []
        async for state in self._ledger.all_link_states():
            if state.is_offboarded:
                offboarded += 1  # the customer is gone: neither checked nor healed
                continue
            message = verify_message(state, run_id)
            if message is None:
                logger.warning(
                    "link %s/%s has no valid identity recorded; skipped", state.partition_key, state.row_key
                )
                continue
            pending.append(message)
            if len(pending) >= _BATCH:
                sent += await sender.send_batch(queue, pending)
                pending = []
        if pending:
            sent += await sender.send_batch(queue, pending)

        if await self._ledger.runs.create(run_id, total=sent, started_at=started):
            await self._schedule_check(run_id, 1)
            logger.info(
                "re-verification run %s started: %d verify messages sent to %s (%d offboarded, not checked)",
                run_id,
                sent,
                queue,
                offboarded,
            )
        else:
            logger.info("re-verification run %s was already started; duplicate messages are dropped", run_id)
        return run_id, sent

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
