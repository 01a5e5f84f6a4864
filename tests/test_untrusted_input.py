"""Broker metadata is untrusted input: MessageIds, the `palOriginalMessageId` property and dead-letter
reasons are screened like message bodies before they are logged, stored, returned or printed, and no
control character from input reaches a log line or the operator's terminal."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import subprocess
import sys
import types
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from test_secret_scan import log_texts, table_texts

from palctl.cli import main as palctl
from sandbox import functions_host
from sandbox.broker import ServiceBusBroker
from shared.links.api import LinksApi
from shared.links.service import LinkService
from shared.spine.untrusted import (
    SDK_LOGGERS,
    ControlCharacterFilter,
    configure_logging,
    message_id_for_records,
    printable,
)
from tenants import NORTHWIND, ROOT, onboarding_message

CLIENT_SECRET = "Mid4Q~PLANTED-message-id-value-0123456789"
ENCODED_SECRET = CLIENT_SECRET.replace("~", "%7E")
ORIGINAL_SECRET = "Org3Q~PLANTED-original-id-value-012345678"
ACCOUNT_KEY = "PLANTEDdlqAccountKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ+/=="
FORGED = "m-forged\nALERT partner credential broken: client all (secret) failed"
ESCAPE = "\x1b[2J"
CONTROL = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]]


def digest_id(raw: str) -> str:
    return "unsafe-id:" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@pytest.fixture
def logging_state() -> Iterator[None]:
    """configure_logging() changes process-wide state: put it back for the other tests."""
    factory = logging.getLogRecordFactory()
    levels = {name: logging.getLogger(name).level for name in ("", *SDK_LOGGERS)}
    yield
    logging.setLogRecordFactory(factory)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def formatted_lines(records: list[logging.LogRecord]) -> list[str]:
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    return [line for record in records for line in formatter.format(record).splitlines()]


# --- message ids --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "m-1",
        "x" * 128,
        "onboard:53a2a22c-5cbd-47f7-b588-f5bb5f191ead:81a6daa3-a704-4f3e-a1ca-45fa036d5a09:default:2024-05-01",
        "verify:53a2a22c-5cbd-47f7-b588-f5bb5f191ead:81a6daa3-a704-4f3e-a1ca-45fa036d5a09:2024-05-01",
        "m-1:retry2p1",
        "sha256:" + "0" * 64,
        "{D6F5A1B2-0000-4C3D-9E8F-123456789ABC}",
    ],
)
def test_a_plain_message_id_is_kept(raw: str) -> None:
    assert message_id_for_records(raw) == raw


@pytest.mark.parametrize(
    "raw",
    [
        CLIENT_SECRET,
        ENCODED_SECRET,
        quote(ENCODED_SECRET, safe=""),
        f"sv=2022-11-02&se=2030-01-01&sig={'a' * 43}%3D",
        "x" * 129,
        "m 1",
        "m-1\n",
        FORGED,
        f"m-{ESCAPE}",
        "m-\x00",
        "Müller",
        "m-\ud800",
    ],
)
def test_an_unsafe_message_id_is_replaced_by_a_stable_digest(raw: str) -> None:
    replaced = message_id_for_records(raw)
    assert replaced == digest_id(raw) == message_id_for_records(raw)
    assert message_id_for_records(replaced) == replaced


def test_no_message_id_is_empty() -> None:
    assert message_id_for_records(None) == message_id_for_records("") == ""
    assert message_id_for_records(42) == "42"


# --- printable ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, Café", "plain text, Café"),
        ("a\nb\r\tc", "a\\x0ab\\x0d\\x09c"),
        (f"{ESCAPE}red", "\\x1b[2Jred"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("del\x7f c1\x85\x9b", "del\\x7f c1\\x85\\x9b"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("lone \ud800 \udfff", "lone \\ud800 \\udfff"),
        ("bidi \u202egnp.exe", "bidi \\u202egnp.exe"),
        (b"bytes\n", "b'bytes\\n'"),
        (None, "None"),
    ],
)
def test_printable_escapes_every_control_character(text: object, shown: str) -> None:
    assert printable(text) == shown


def test_printable_truncates_with_an_ellipsis_and_never_splits_an_escape() -> None:
    assert printable("x" * 300) == "x" * 199 + "…"
    assert printable("x" * 200) == "x" * 200
    assert printable("abcdef", limit=4) == "abc…"
    assert printable("ab\ncd", limit=5) == "ab…"
    assert all(len(printable(ESCAPE * 50, limit=n)) <= n for n in range(1, 60))


def test_printable_leaves_no_control_character() -> None:
    text = printable("".join(CONTROL) + "\ud800", limit=10_000)
    assert not any(c in text for c in CONTROL)
    assert text.isprintable()


# --- logging ------------------------------------------------------------------------------------


def test_the_filter_escapes_arguments_not_the_format_string() -> None:
    class Shouting(Exception):
        def __str__(self) -> str:
            return "boom\nALERT forged"

    record = logging.LogRecord(
        "shared.links.service",
        logging.INFO,
        __file__,
        1,
        "one %s\ntwo %r %s %d",
        ("a\nb", "c\x1bd", Shouting(), 7),
        None,
    )
    assert ControlCharacterFilter().filter(record)
    assert record.getMessage() == "one a\\x0ab\ntwo 'c\\\\x1bd' boom\\x0aALERT forged 7"

    mapping = logging.LogRecord("shared", logging.INFO, __file__, 1, "%(id)s", ({"id": "x\ny"},), None)
    ControlCharacterFilter().filter(mapping)
    assert mapping.getMessage() == "x\\x0ay"


@pytest.mark.usefixtures("logging_state")
@pytest.mark.parametrize(
    "name", ["shared", "shared.links.service", "shared.deep.child", "functions.onboarding"]
)
def test_configure_logging_escapes_every_product_record_whatever_the_handler(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging()
    configure_logging()  # idempotent: escaped once, not twice
    handler = logging.Handler()  # attached after configure_logging(), as a host or exporter would
    seen: list[logging.LogRecord] = []
    handler.emit = seen.append  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)
    try:
        with caplog.at_level(logging.INFO):
            logging.getLogger(name).warning("message %s done", FORGED)
    finally:
        logging.getLogger().removeHandler(handler)
    for records in (seen, caplog.records):
        assert [record.getMessage() for record in records] == [
            "message " + FORGED.replace("\n", "\\x0a") + " done"
        ]
        assert not any(line.startswith("ALERT") for line in formatted_lines(records))


@pytest.mark.usefixtures("logging_state")
def test_configure_logging_quiets_the_azure_sdk() -> None:
    logging.getLogger().setLevel(logging.DEBUG)  # as the Functions worker's root logger may be
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    configure_logging()
    names = [
        "azure",
        "azure.core.pipeline.policies.http_logging_policy",
        "azure.identity",
        "azure.identity.aio._internal",
        "azure.servicebus",
        "azure.servicebus._pyamqp",
        "uamqp",
        "azure.data.tables",
        "azure.keyvault.secrets",
    ]
    expected = {
        name: logging.ERROR if name.startswith("azure.identity") else logging.WARNING for name in names
    }
    assert {name: logging.getLogger(name).getEffectiveLevel() for name in names} == expected


def test_the_functions_entry_point_configures_logging() -> None:
    script = """
import logging, sys
import function_app
from shared.spine.untrusted import SDK_LOGGERS
print({logging.getLogger(name).level for name in SDK_LOGGERS} == {logging.WARNING, logging.ERROR})
logging.basicConfig(stream=sys.stdout, format="%(message)s")
logging.getLogger("functions.onboarding").warning("id %s", "a\\nALERT b")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.splitlines() == ["True", "id a\\x0aALERT b"]


# --- the service --------------------------------------------------------------------------------


async def scanned(service: LinkService, env: dict[str, str], all_logs: pytest.LogCaptureFixture) -> str:
    response = await LinksApi.of(service).get_link(NORTHWIND)
    assert response.status == 200
    return "\n".join(
        [*log_texts(all_logs.records), *await table_texts(env), response.encoded().decode("utf-8")]
    )


@pytest.mark.parametrize("raw", [CLIENT_SECRET, ENCODED_SECRET])
async def test_a_secret_message_id_is_never_logged_stored_or_returned(
    raw: str, service: LinkService, env: dict[str, str], all_logs: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(onboarding_message(NORTHWIND)).encode()
    first = await service.handle(body, message_id=raw)
    again = await service.handle(body, message_id=raw)  # redelivery: still recognised
    assert again.code == "duplicate-delivery" and again.kind is first.kind

    assert [event.message_id for event in await service.ledger.history(NORTHWIND)] == [digest_id(raw)]
    text = await scanned(service, env, all_logs)
    assert digest_id(raw) in text
    assert CLIENT_SECRET not in text and raw not in text


async def test_a_secret_original_message_id_property_is_not_believed(
    service: LinkService, env: dict[str, str], all_logs: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(onboarding_message(NORTHWIND)).encode()
    await service.handle(
        body, message_id="m-orig:retry2", properties={"palOriginalMessageId": ORIGINAL_SECRET}
    )

    assert [event.message_id for event in await service.ledger.history(NORTHWIND)] == ["m-orig:retry2"]
    assert ORIGINAL_SECRET not in await scanned(service, env, all_logs)


async def test_a_newline_in_a_message_id_forges_no_log_line(
    service: LinkService, all_logs: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(onboarding_message(NORTHWIND)).encode()
    await service.handle(body, message_id=FORGED)
    await service.handle(b"not json", message_id=FORGED + "-2")
    lines = formatted_lines(all_logs.records)
    assert any(digest_id(FORGED) in line for line in lines)
    assert [line for line in lines if line.startswith("ALERT")] == []


# --- palctl dlq list ----------------------------------------------------------------------------

DEAD_LETTERS = [
    # (MessageId, reason, description)
    (f"dl-{ESCAPE}-escape", f"Bad{ESCAPE}reason\nALERT forged", "desc \x1b]0;title\x07 and\nALERT forged"),
    (CLIENT_SECRET, CLIENT_SECRET, f"DefaultEndpointsProtocol=https;AccountName=x;AccountKey={ACCOUNT_KEY}"),
    (ENCODED_SECRET, "MaxDeliveryCountExceeded", quote(f"AccountKey={ACCOUNT_KEY}", safe="")),
]


async def dead_letter(broker: ServiceBusBroker, queue: str) -> None:
    async with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        async with client.get_queue_sender(queue) as sender:
            for message_id, _, _ in DEAD_LETTERS:
                body = json.dumps(onboarding_message(NORTHWIND)).encode()
                await sender.send_messages(ServiceBusMessage(body, message_id=message_id))
        async with client.get_queue_receiver(queue, max_wait_time=5) as receiver:
            pending = {message_id: (reason, description) for message_id, reason, description in DEAD_LETTERS}
            while pending:
                for message in await receiver.receive_messages(max_message_count=10, max_wait_time=5):
                    reason, description = pending.pop(str(message.message_id))
                    await receiver.dead_letter_message(message, reason=reason, error_description=description)


def assert_safe_for_a_terminal(printed: str) -> None:
    assert not any(c in printed for c in CONTROL if c != "\n"), repr(printed)
    assert not any(line.startswith("ALERT") for line in printed.splitlines())
    for secret in (CLIENT_SECRET, ENCODED_SECRET, ACCOUNT_KEY, quote(ACCOUNT_KEY, safe="")):
        assert secret not in printed


async def test_dlq_list_escapes_control_characters_and_redacts_credentials(broker: ServiceBusBroker) -> None:
    queue = "customer-onboarded"
    await dead_letter(broker, queue)
    assert broker.queue_counts(queue)["dead_lettered"] == len(DEAD_LETTERS)

    out = io.StringIO()
    connection = ["--connection-string", broker.connection_string, "--queue", queue]
    assert await asyncio.to_thread(palctl, ["dlq", "list", *connection], out) == 0
    printed = out.getvalue()
    assert_safe_for_a_terminal(printed)
    assert digest_id(f"dl-{ESCAPE}-escape") in printed and "Bad\\x1b[2Jreason\\x0aALERT forged" in printed
    assert digest_id(CLIENT_SECRET) in printed and digest_id(ENCODED_SECRET) in printed
    assert printed.count("<redacted: looks like a credential>") == 3
    assert f"3 dead-lettered message(s) in {queue}" in printed


async def test_dlq_replay_takes_the_id_dlq_list_shows_and_prints_no_secret(broker: ServiceBusBroker) -> None:
    queue = "customer-onboarded"
    await dead_letter(broker, queue)
    out = io.StringIO()
    connection = ["--connection-string", broker.connection_string, "--queue", queue]
    chosen = ["--message-id", digest_id(CLIENT_SECRET), "--message-id", f"dl-{ESCAPE}-escape"]
    assert await asyncio.to_thread(palctl, ["dlq", "replay", *chosen, *connection], out) == 0
    printed = out.getvalue()
    assert_safe_for_a_terminal(printed)
    assert "2 message(s) resubmitted" in printed

    async with ServiceBusClient.from_connection_string(broker.connection_string) as client:
        async with client.get_queue_receiver(queue) as receiver:
            copies = await receiver.peek_messages(max_message_count=10)
        async with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
            left = await receiver.peek_messages(max_message_count=10)
    metadata = [repr((m.message_id, m.application_properties)) for m in copies]
    assert len(copies) == 2 and not any(CLIENT_SECRET in text or ESCAPE in text for text in metadata)
    assert [m.message_id for m in left] == [ENCODED_SECRET]


# --- the local Functions host -------------------------------------------------------------------


async def test_the_local_host_logs_no_raw_message_id(
    monkeypatch: pytest.MonkeyPatch, all_logs: pytest.LogCaptureFixture
) -> None:
    async def invoked(*_: object) -> None:
        return None

    class LockLost:
        async def complete_message(self, _: object) -> None:
            raise RuntimeError(f"lock lost{ESCAPE}\nALERT forged")

    host = functions_host.LocalFunctionsHost()
    monkeypatch.setattr(functions_host, "to_host_message", lambda message: message)
    monkeypatch.setattr(host, "_invoke", invoked)
    message = types.SimpleNamespace(message_id=FORGED + ESCAPE + CLIENT_SECRET)
    await host._handle_message("onboard_customer", None, LockLost(), message)  # noqa: SLF001

    (warning,) = [r for r in all_logs.records if r.name == functions_host.logger.name and r.levelno >= 30]
    text = "\n".join(log_texts([warning]))
    assert digest_id(message.message_id) in warning.getMessage()
    assert ESCAPE not in text and CLIENT_SECRET not in text
    assert not any(line.startswith("ALERT") for line in formatted_lines([warning]))
