"""`palctl dlq list` and `palctl dlq replay`: the dead-letter queue of a queue.

`list` peeks (nothing changes) and shows each message's id, reason, description, deliveries, time and
tenant, never its body; broker metadata is untrusted, so an unsafe MessageId is shown as a digest and
reasons and descriptions are escaped, capped and redacted when credential-shaped
(`shared.spine.untrusted`). `replay` resubmits chosen messages under a new MessageId (with
`palReplayOf` naming the original) and removes them from the dead-letter queue. Exit codes: 0 done,
1 nothing replayed (none of the chosen ids found, or Service Bus failed), 3 some replayed and others
not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

import typer

from palctl.bus import BusFlags
from palctl.configuration import Configuration, Key
from palctl.errors import ExitCode, Failed, UsageError
from palctl.options import (
    ConnectionString,
    Namespace,
    Output,
    Queue,
    command_app,
    examples,
    finish,
    handles_errors,
    session,
)
from palctl.output import OutputFormat, Report, render

app = command_app(
    "dlq", help="The dead-letter queue: list what is in it and why, replay messages.", no_args_is_help=True
)
LIST_EPILOG = examples(
    "palctl dlq list",
    "palctl dlq list --queue link-verify --max 20",
    "palctl dlq list -o json | jq -r '.messages[].messageId'",
)
REPLAY_EPILOG = examples(
    "palctl dlq replay --message-id onboard:53a2a22c-...:default:2026-11-24",
    "palctl dlq replay --message-id ID1 --message-id ID2 -o json",
    "palctl dlq replay --all --queue link-verify",
)


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    reason: str
    description: str
    deliveries: int | None = field(metadata={"justify": "right"})
    enqueued: str | None
    customer_tenant_id: str | None


class ReplayStatus(StrEnum):
    REPLAYED = "replayed"
    NOT_FOUND = "not-found"


@dataclass(frozen=True)
class Replay:
    message_id: str
    new_message_id: str | None
    status: ReplayStatus = field(metadata={"styles": {"replayed": "green", "not-found": "red"}})


def _body(message: Any) -> bytes:
    body = message.body
    return body if isinstance(body, bytes) else b"".join(body)


def _safe_tenant(body: bytes) -> str | None:
    """The tenant of a dead-lettered body, if it has a valid one: nothing else of the body is shown."""
    import json

    from shared.spine.identifiers import is_guid

    try:
        tenant = json.loads(body).get("customerTenantId")
    except (ValueError, AttributeError, RecursionError):
        return None
    return tenant.lower() if is_guid(tenant) else None


def dead_letter_row(message: Any) -> DeadLetter:
    from shared.spine.untrusted import message_id_for_records, shown

    enqueued = message.enqueued_time_utc
    return DeadLetter(
        message_id_for_records(message.message_id),
        shown(message.dead_letter_reason or "-", 80),
        shown(message.dead_letter_error_description or "-", 200),
        message.delivery_count,
        enqueued.isoformat(timespec="seconds") if enqueued else None,
        _safe_tenant(_body(message)),
    )


async def peek(flags: BusFlags, queue: str, limit: int) -> list[DeadLetter]:
    from azure.servicebus import ServiceBusSubQueue

    from palctl.bus import bus_errors, bus_target, failure, open_bus

    target = bus_target(Configuration(), flags)
    try:
        async with (
            open_bus(target) as client,
            client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver,
        ):
            return [dead_letter_row(m) for m in await receiver.peek_messages(max_message_count=limit)]
    except bus_errors() as error:
        raise failure(error, f"reading the dead-letter queue of {queue}") from None


@app.command("list", epilog=LIST_EPILOG)
@handles_errors
def list_dead_letters(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--max", min=1, max=5000, help="show at most this many")] = 100,
    namespace: Namespace = None,
    connection_string: ConnectionString = None,
    queue: Queue = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Show dead-lettered messages and why (never their bodies).

    Peeks at the dead-letter queue: nothing changes there.
    """
    import asyncio

    name = Configuration().get(Key.QUEUE, queue) or ""
    rows = asyncio.run(peek(BusFlags(namespace, connection_string), name, limit))
    lines = [f"{len(rows)} dead-lettered message(s) in {name}"]
    summary = {"queue": name, "count": len(rows)}
    current = session(ctx)
    render(Report(DeadLetter, rows, "messages", summary, lines), output, current.out, session=current)


@dataclass
class Replaying:
    """What a replay did so far, and why it stopped early (if it did)."""

    chosen: set[str] | None
    rows: list[Replay] = field(default_factory=list)
    found: set[str] = field(default_factory=set)
    failure: Failed | None = None


async def _replay_one(sender: Any, receiver: Any, message: Any, stamp: str, done: Replaying) -> bool:
    """Resubmit `message` if it is chosen, then remove it from the dead-letter queue; False if not chosen."""
    from shared.spine.envelope import REPLAY_OF_PROPERTY
    from shared.spine.retry import root_message_id
    from shared.spine.servicebus import OutgoingMessage
    from shared.spine.untrusted import message_id_for_records

    message_id = message_id_for_records(message.message_id)  # chosen by the id `dlq list` shows,
    names = {message_id, str(message.message_id)}  # or by the raw one
    if done.chosen is not None and not names & done.chosen:
        return False
    new_id = f"{root_message_id(message_id)}:replay{stamp}"
    copy = OutgoingMessage(_body(message), new_id, {REPLAY_OF_PROPERTY: message_id}, message.correlation_id)
    outgoing = copy.to_service_bus()
    outgoing.content_type = message.content_type
    await sender.send_messages(outgoing)
    await receiver.complete_message(message)
    done.found |= names
    done.rows.append(Replay(message_id, new_id, ReplayStatus.REPLAYED))
    return True


async def replay(flags: BusFlags, queue: str, done: Replaying) -> None:
    """Receive the whole dead-letter queue, replay the chosen messages and put the others back."""
    from datetime import UTC, datetime

    from azure.servicebus import ServiceBusSubQueue

    from palctl.bus import bus_errors, bus_target, failure, open_bus

    target = bus_target(Configuration(), flags)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    try:
        async with (
            open_bus(target) as client,
            client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver,
            client.get_queue_sender(queue) as sender,
        ):
            skipped: list[Any] = []
            while messages := await receiver.receive_messages(max_message_count=50, max_wait_time=2):
                for message in messages:
                    if not await _replay_one(sender, receiver, message, stamp, done):
                        skipped.append(message)
            for message in skipped:
                await receiver.abandon_message(message)
    except bus_errors() as error:
        done.failure = failure(error, f"replaying from the dead-letter queue of {queue}")


def replay_report(done: Replaying, queue: str) -> tuple[Report, ExitCode]:
    from shared.spine.untrusted import shown

    missing = sorted((done.chosen or set()) - done.found) if done.failure is None else []
    rows = done.rows + [Replay(shown(m, 200), None, ReplayStatus.NOT_FOUND) for m in missing]
    lines = [f"{len(done.rows)} message(s) resubmitted to {queue}"]
    lines += [f"not in the dead-letter queue: {shown(m, 200)}" for m in missing]
    summary = {"queue": queue, "replayed": len(done.rows), "notFound": len(missing)}
    report = Report(Replay, rows, "messages", summary, lines, table_rows=done.rows)
    if not (missing or done.failure):
        return report, ExitCode.DONE
    return report, ExitCode.PARTIAL if done.rows else ExitCode.FAILED


def _chosen(replay_all: bool, message_ids: Sequence[str] | None) -> set[str] | None:
    if replay_all == bool(message_ids):
        raise UsageError("give --all or --message-id ID (repeatable), not both and not neither")
    return None if replay_all else set(message_ids or ())


@app.command("replay", epilog=REPLAY_EPILOG)
@handles_errors
def replay_dead_letters(
    ctx: typer.Context,
    message_id: Annotated[
        list[str] | None,
        typer.Option("--message-id", metavar="ID", help="a MessageId as `dlq list` shows it (repeatable)"),
    ] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="every dead-lettered message")] = False,
    namespace: Namespace = None,
    connection_string: ConnectionString = None,
    queue: Queue = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Resubmit chosen dead-lettered messages under a new MessageId.

    Each replayed message is removed from the dead-letter queue; the others stay there.
    """
    import asyncio

    done = Replaying(_chosen(replay_all, message_id))
    name = Configuration().get(Key.QUEUE, queue) or ""
    asyncio.run(replay(BusFlags(namespace, connection_string), name, done))
    report, code = replay_report(done, name)
    current = session(ctx)
    render(report, output, current.out, session=current)
    if done.failure is not None:
        current.message(str(done.failure), style="red")
    finish(code)
