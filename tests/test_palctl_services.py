"""palctl against the real local services, run as an operator runs it (`python -m palctl` in a
subprocess): a CSV backfill piped into the local Service Bus broker (no progress bar, no ANSI), the
progress bar on a terminal, each exit code reached by a real scenario (0 sent, 1 nothing sent,
3 partly sent or replayed), the dead-letter queue in every output format with hostile broker
metadata, and `retire -o json` against the local Functions host."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from test_palctl_cli import FIELDS, in_a_terminal, palctl, plain, write_csv

from tenants import FEDERATED_APP, NORTHWIND, TAILSPIN, WOODGROVE, onboarding_message

if TYPE_CHECKING:
    from sandbox.functions_host import LocalFunctionsHost

QUEUE = "customer-onboarded"
PLANTED = "Mid4Q~PLANTED-dead-letter-secret-0123456789"
HOSTILE_REASON = "[bold red]forged[/] \x1b[2J\nALERT partner credential broken"


@pytest.fixture(autouse=True)
def own_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A config file of the test's own and none of palctl's variables (as in test_palctl_cli)."""
    from test_palctl_cli import CLEARED

    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PALCTL_CONFIG", str(tmp_path / "config.toml"))
    yield


@pytest.fixture
def bus(broker: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The local broker's connection string, given to palctl the way an operator would: the env."""
    connection = str(broker.connection_string)
    monkeypatch.setenv("PAL_SERVICEBUS_CONNECTION_STRING", connection)
    return connection


def customers(tmp_path: Path, *extra: str) -> Path:
    return write_csv(
        tmp_path / "customers.csv",
        f"{NORTHWIND},{FEDERATED_APP},federated,",
        f"{TAILSPIN},{FEDERATED_APP},federated,",
        f"{WOODGROVE},{FEDERATED_APP},federated,1234567",
        *extra,
    )


def test_a_csv_backfill_piped_sends_every_row_without_progress_bar_or_colour(
    bus: str, broker: Any, tmp_path: Path
) -> None:
    csv_file = customers(tmp_path)
    result = palctl("enqueue", "--csv", "-", stdin=csv_file.read_text())
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"3 message(s) sent to {QUEUE}\n"
    assert result.stderr == ""  # no progress bar: standard error is a pipe
    plain(result)
    assert broker.queue_counts(QUEUE)["active"] == 3

    again = palctl("enqueue", "--csv", str(csv_file), "-o", "json")
    assert again.returncode == 0
    document = json.loads(again.stdout)
    assert (document["sent"], {r["status"] for r in document["rows"]}) == (3, {"sent"})
    assert broker.queue_counts(QUEUE)["active"] == 3  # the same MessageIds: duplicates


def test_the_progress_bar_shows_on_a_terminal_and_not_with_no_color(
    bus: str, broker: Any, tmp_path: Path
) -> None:
    csv_file = customers(tmp_path)
    code, screen = in_a_terminal("enqueue", "--csv", str(csv_file))
    assert code == 0, screen
    assert "3/3" in screen and "━" in screen and "\x1b[" in screen
    code, screen = in_a_terminal("enqueue", "--csv", str(csv_file), env={"NO_COLOR": "1"})
    assert code == 0, screen
    assert "\x1b" not in screen and "3/3" not in screen and "━" not in screen
    assert f"3 message(s) sent to {QUEUE}" in screen


def test_skipped_invalid_rows_make_a_partial_backfill_exit_3(bus: str, broker: Any, tmp_path: Path) -> None:
    csv_file = customers(tmp_path, f"not-a-guid,{FEDERATED_APP},federated,")
    result = palctl("enqueue", "--csv", str(csv_file), "--skip-invalid")
    assert result.returncode == 3, result.stderr
    assert result.stdout == (
        "invalid row 5: customerTenantId: must be a GUID like 00000000-0000-0000-0000-000000000000\n"
        f"3 message(s) sent to {QUEUE}\n"
    )
    assert broker.queue_counts(QUEUE)["active"] == 3


def test_a_queue_the_broker_does_not_have_sends_nothing_exit_1(bus: str, broker: Any, tmp_path: Path) -> None:
    result = palctl("enqueue", "--csv", str(customers(tmp_path)), "--queue", "no-such-queue", "-o", "csv")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == ",".join(FIELDS["enqueue"][1]) and len(lines) == 4
    assert all(
        ",not-sent,Service Bus: sending to no-such-queue failed (MessagingEntityNotFoundError" in x
        for x in lines[1:]
    )
    assert result.stderr.startswith(
        "palctl: Service Bus: sending to no-such-queue failed (MessagingEntityNotFoundError"
    )
    assert bus not in result.stdout + result.stderr
    assert broker.queue_counts(QUEUE)["active"] == 0


def test_settings_from_the_config_file_reach_the_broker(
    bus: str, broker: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAL_SERVICEBUS_CONNECTION_STRING")
    stored = palctl("config", "set", "connection-string", bus)
    assert stored.returncode == 0 and "warning: the connection string holds a key" in stored.stderr
    result = palctl("enqueue", "--tenant", NORTHWIND, "--client-id", FEDERATED_APP)
    assert (result.returncode, result.stdout) == (0, f"1 message(s) sent to {QUEUE}\n")
    assert broker.queue_counts(QUEUE)["active"] == 1


# --- the dead-letter queue ------------------------------------------------------------------------


async def dead_letter(connection: str, *messages: tuple[str, str, str]) -> None:
    """Send (MessageId, reason, description) messages and dead-letter them with those reasons."""
    async with ServiceBusClient.from_connection_string(connection) as client:
        async with client.get_queue_sender(QUEUE) as sender:
            for message_id, _, _ in messages:
                body = json.dumps(onboarding_message(NORTHWIND)).encode()
                await sender.send_messages(ServiceBusMessage(body, message_id=message_id))
        pending = {message_id: (reason, description) for message_id, reason, description in messages}
        async with client.get_queue_receiver(QUEUE, max_wait_time=5) as receiver:
            while pending:
                for message in await receiver.receive_messages(max_message_count=10, max_wait_time=5):
                    reason, description = pending.pop(str(message.message_id))
                    await receiver.dead_letter_message(message, reason=reason, error_description=description)


def test_dlq_list_in_every_format_shows_hostile_metadata_safely(bus: str, broker: Any) -> None:
    asyncio.run(dead_letter(bus, ("m-plain", HOSTILE_REASON, "[link=x]y[/link]"), (PLANTED, "r", PLANTED)))
    table = palctl("dlq", "list")
    assert table.returncode == 0, table.stderr
    plain(table)
    assert "[bold red]forged[/] \\x1b[2J\\x0aALERT partner credential broken" in table.stdout  # as written
    assert "[link=x]y[/link]" in table.stdout
    assert not any(line.startswith("ALERT") for line in table.stdout.splitlines())
    assert PLANTED not in table.stdout and table.stdout.endswith(f"2 dead-lettered message(s) in {QUEUE}\n")

    document = json.loads(palctl("dlq", "list", "-o", "json").stdout)
    top, row_fields = FIELDS["dlq list"]
    assert set(document) == top and (document["queue"], document["count"]) == (QUEUE, 2)
    by_reason = {m["reason"]: m for m in document["messages"]}
    assert all(list(m) == row_fields for m in document["messages"])
    assert by_reason["r"]["messageId"].startswith("unsafe-id:")
    assert by_reason["r"]["description"] == "<redacted: looks like a credential>"
    hostile = by_reason["[bold red]forged[/] \\x1b[2J\\x0aALERT partner credential broken"]
    assert (hostile["messageId"], hostile["customerTenantId"]) == ("m-plain", NORTHWIND)
    assert isinstance(hostile["deliveries"], int) and hostile["enqueued"].endswith("+00:00")

    as_csv = palctl("dlq", "list", "-o", "csv")
    plain(as_csv)
    assert as_csv.stdout.splitlines()[0] == ",".join(row_fields) and len(as_csv.stdout.splitlines()) == 3
    assert broker.queue_counts(QUEUE)["dead_lettered"] == 2  # listing changes nothing


def test_dlq_replay_exit_codes_done_partial_failed(bus: str, broker: Any) -> None:
    asyncio.run(dead_letter(bus, ("m-1", "r", "d"), ("m-2", "r", "d"), ("m-3", "r", "d")))
    partial = palctl("dlq", "replay", "--message-id", "m-1", "--message-id", "nope\x1b[2J", "-o", "json")
    assert partial.returncode == 3, partial.stderr
    plain(partial)
    document = json.loads(partial.stdout)
    top, row_fields = FIELDS["dlq replay"]
    assert set(document) == top and (document["replayed"], document["notFound"]) == (1, 1)
    assert [(m["messageId"], m["status"]) for m in document["messages"]] == [
        ("m-1", "replayed"),
        ("nope\\x1b[2J", "not-found"),
    ]
    assert document["messages"][0]["newMessageId"].startswith("m-1:replay")

    failed = palctl("dlq", "replay", "--message-id", "gone")
    assert failed.returncode == 1
    assert failed.stdout == f"0 message(s) resubmitted to {QUEUE}\nnot in the dead-letter queue: gone\n"

    done = palctl("dlq", "replay", "--all")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"2 message(s) resubmitted to {QUEUE}"
    counts = broker.queue_counts(QUEUE)
    assert (counts["active"], counts["dead_lettered"]) == (3, 0)


# --- retire, over the local Functions host --------------------------------------------------------


async def test_retire_reports_in_json_and_exits_1_when_refused(host: LocalFunctionsHost) -> None:
    env = {"PAL_API_URL": host.base_url, "PAL_API_KEY": host.function_key}
    argv = ["retire", "--tenant", NORTHWIND, "--client-id", FEDERATED_APP, "-o", "json"]

    refused = await asyncio.to_thread(palctl, *argv, env=env)
    assert refused.returncode == 1
    document = json.loads(refused.stdout)
    assert list(document) == FIELDS["retire"][1]
    assert (document["status"], document["retired"], document["title"]) == (404, False, "Unknown identity")

    relink = f"{host.base_url}/api/links/{NORTHWIND}/relink"
    body = {"identity": {"type": "federated", "clientId": FEDERATED_APP}}
    async with (
        aiohttp.ClientSession() as http,
        http.post(relink, json=body, headers={"x-functions-key": host.function_key}) as response,
    ):
        assert response.status == 200

    retired = await asyncio.to_thread(palctl, *argv[:-2], "-o", "csv", env=env)
    assert retired.returncode == 0, retired.stderr
    assert retired.stdout.splitlines() == [
        ",".join(FIELDS["retire"][1]),
        f"200,true,{NORTHWIND},{FEDERATED_APP},retired,,",
    ]
    assert host.function_key not in refused.stdout + refused.stderr + retired.stdout + retired.stderr


# --- offboard, over the local Functions host -------------------------------------------------------


async def relink(host: LocalFunctionsHost, tenant: str) -> None:
    url = f"{host.base_url}/api/links/{tenant}/relink"
    body = {"identity": {"type": "federated", "clientId": FEDERATED_APP}}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json=body, headers={"x-functions-key": host.function_key}) as response,
    ):
        assert response.status == 200


async def test_offboard_one_customer_then_a_csv_partly_exit_0_then_3(
    host: LocalFunctionsHost, tmp_path: Path, cloud: Any
) -> None:
    env = {"PAL_API_URL": host.base_url, "PAL_API_KEY": host.function_key}
    for tenant in (NORTHWIND, TAILSPIN):
        await relink(host, tenant)

    single = await asyncio.to_thread(
        palctl, "offboard", "--tenant", NORTHWIND, "--correlation-id", "TICKET-1", "-o", "json", env=env
    )
    assert single.returncode == 0, single.stderr
    document = json.loads(single.stdout)
    assert (document["offboarded"], document["total"]) == (1, 1)
    (row,) = document["rows"]
    assert (row["row"], row["status"], row["httpStatus"], row["outcome"], row["clientId"]) == (
        None,
        "offboarded",
        200,
        "unlinked",
        FEDERATED_APP,
    )
    assert [link["state"] for link in cloud.links() if link["tenantId"] == NORTHWIND] == ["Deleted"]

    # Tailspin is offboarded, Woodgrove was never onboarded, Northwind is offboarded again (harmless).
    ended = write_csv(
        tmp_path / "ended.csv",
        f"{TAILSPIN},{FEDERATED_APP},CRM-2",
        f"{WOODGROVE},,",
        f"{NORTHWIND},,",
        header="customerTenantId,clientId,correlationId",
    )
    many = await asyncio.to_thread(palctl, "offboard", "--csv", str(ended), "-o", "csv", env=env)
    assert many.returncode == 3, many.stderr
    lines = many.stdout.splitlines()
    assert lines[0] == ",".join(FIELDS["offboard"][1])
    assert lines[1].startswith(f"2,{TAILSPIN},{FEDERATED_APP},offboarded,200,unlinked,,removed the link")
    assert lines[2] == (
        f"3,{WOODGROVE},,not-offboarded,404,,unknown-tenant,"
        "Unknown customer tenant: no link is recorded for this tenant; nothing was removed"
    )
    assert lines[3] == (
        f"4,{NORTHWIND},{FEDERATED_APP},offboarded,200,unlinked,,no link was in place; nothing to remove"
    )
    plain(many)
    table = await asyncio.to_thread(palctl, "offboard", "--csv", str(ended), env=env)
    assert table.returncode == 3 and table.stdout.splitlines()[-1] == "2 of 3 customer(s) offboarded"
    outputs = single.stdout + single.stderr + many.stdout + many.stderr + table.stdout + table.stderr
    assert host.function_key not in outputs

    # On a terminal a progress bar counts the calls (here, in the same table for people).
    code, screen = await asyncio.to_thread(in_a_terminal, "offboard", "--csv", str(ended), env=env)
    assert code == 3 and "3/3" in screen and "━" in screen and "2 of 3 customer(s) offboarded" in screen

    wrong_key = await asyncio.to_thread(
        palctl, "offboard", "--tenant", TAILSPIN, "-o", "json", env=env | {"PAL_API_KEY": "wrong"}
    )
    assert wrong_key.returncode == 1
    (row,) = json.loads(wrong_key.stdout)["rows"]
    assert (row["httpStatus"], row["detail"]) == (401, "the function key (PAL_API_KEY) is missing or wrong")
