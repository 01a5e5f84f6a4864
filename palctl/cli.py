"""Command line for operators: send onboarding messages (one, or a CSV backfill), work the
dead-letter queue, print a customer's admin-consent link, and retire an identity's ledger record
(over the HTTP API). Every message is validated with the product's own parser before it is sent."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit

from shared.links.message import MessageRejected, parse_onboarding_document
from shared.links.message_builder import request_body
from shared.links.retirement import InvalidReason, retirement_reason
from shared.spine.envelope import REPLAY_OF_PROPERTY
from shared.spine.identifiers import is_guid
from shared.spine.retry import root_message_id
from shared.spine.untrusted import message_id_for_records, printable, shown

DEFAULT_QUEUE = "customer-onboarded"
CSV_COLUMNS = (
    "customerTenantId",
    "clientId",
    "identityType",
    "keyVaultSecretName",
    "partnerId",
    "customerName",
    "correlationId",
)
PUBLIC_AUTHORITY = "https://login.microsoftonline.com"
_LOOPBACK = frozenset({"localhost", "127.0.0.1"})


class UsageError(Exception):
    """Bad input from the operator: printed, exit code 2, nothing sent."""


@dataclass(frozen=True)
class Onboarding:
    message_id: str
    body: bytes
    tenant: str


def onboarding_message_id(
    tenant: str, client_id: str, partner_id: str | None, day: date | None = None
) -> str:
    """Derived from what the message asks for and the day: enqueueing the same customer twice in a
    day sends one message (duplicate detection), while a later day's enqueue is a new attempt (say,
    after the customer granted consent) rather than a no-op."""
    day = day or datetime.now(UTC).date()
    return f"onboard:{tenant.lower()}:{client_id.lower()}:{partner_id or 'default'}:{day.isoformat()}"


def build_onboarding(fields: dict[str, str | None], *, where: str) -> Onboarding:
    """Validate one onboarding with the product's parser, then write its canonical v1 body; raises
    UsageError naming field and reason."""
    identity: dict[str, Any] = {
        "type": fields.get("identityType") or "federated",
        "clientId": fields.get("clientId"),
    }
    if fields.get("keyVaultSecretName"):
        identity["keyVaultSecretName"] = fields["keyVaultSecretName"]
    message: dict[str, Any] = {
        "schemaVersion": 1,
        "customerTenantId": fields.get("customerTenantId"),
        "identity": identity,
    }
    for name in ("partnerId", "customerName", "correlationId"):
        if fields.get(name):
            message[name] = fields[name]
    try:
        request = parse_onboarding_document(message, default_partner_id="000000")
    except MessageRejected as rejection:
        raise UsageError(f"{where}: " + "; ".join(rejection.details)) from None
    partner = None if request.partner_id_defaulted else request.partner_id
    return Onboarding(
        onboarding_message_id(request.customer_tenant_id, request.identity.client_id, partner),
        request_body(request),
        request.customer_tenant_id,
    )


def read_csv(stream: TextIO) -> tuple[list[Onboarding], list[str]]:
    """Every row validated first: (good rows, one line per bad row)."""
    reader = csv.DictReader(stream)
    missing = {"customerTenantId", "clientId"} - set(reader.fieldnames or [])
    if missing:
        raise UsageError(
            f"CSV header: missing column(s) {', '.join(sorted(missing))}; columns: {', '.join(CSV_COLUMNS)}"
        )
    unknown = set(reader.fieldnames or []) - set(CSV_COLUMNS)
    if unknown:
        raise UsageError(
            f"CSV header: unknown column(s) {', '.join(sorted(unknown))}; columns: {', '.join(CSV_COLUMNS)}"
        )
    good: list[Onboarding] = []
    bad: list[str] = []
    seen: set[str] = set()
    for row in reader:
        where = f"row {reader.line_num}"
        fields = {key: (value or "").strip() or None for key, value in row.items() if key is not None}
        try:
            onboarding = build_onboarding(fields, where=where)
        except UsageError as error:
            bad.append(str(error))
            continue
        if onboarding.message_id in seen:
            continue  # the same customer twice in one file: one message
        seen.add(onboarding.message_id)
        good.append(onboarding)
    return good, bad


class Progress:
    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self._stream = total, 0, stream

    def advance(self, count: int) -> None:
        self.done += count
        width = 30
        filled = width * self.done // max(1, self.total)
        self._stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}")
        if self.done >= self.total:
            self._stream.write("\n")
        self._stream.flush()


# --- Service Bus ------------------------------------------------------------------------------


def service_bus_client(args: argparse.Namespace) -> Any:
    from azure.servicebus.aio import ServiceBusClient

    connection = args.connection_string or os.environ.get("PAL_SERVICEBUS_CONNECTION_STRING")
    if connection:
        return ServiceBusClient.from_connection_string(connection)
    namespace = args.namespace or os.environ.get("PAL_SERVICEBUS_NAMESPACE")
    if not namespace:
        raise UsageError(
            "no Service Bus given: use --namespace NAME.servicebus.windows.net (signs in with "
            "DefaultAzureCredential) or --connection-string / PAL_SERVICEBUS_CONNECTION_STRING"
        )
    from azure.identity.aio import DefaultAzureCredential

    return ServiceBusClient(namespace, DefaultAzureCredential())


async def send_onboardings(
    client: Any, queue: str, onboardings: Sequence[Onboarding], progress: Progress
) -> None:
    from azure.servicebus import ServiceBusMessage

    async with client.get_queue_sender(queue) as sender:
        batch = await sender.create_message_batch()
        pending = 0
        for onboarding in onboardings:
            message = ServiceBusMessage(
                onboarding.body, message_id=onboarding.message_id, content_type="application/json"
            )
            try:
                batch.add_message(message)
            except ValueError:  # the batch is full: send it and start another
                await sender.send_messages(batch)
                progress.advance(pending)
                batch, pending = await sender.create_message_batch(), 0
                batch.add_message(message)
            pending += 1
        if pending:
            await sender.send_messages(batch)
            progress.advance(pending)


def _safe_tenant(body: bytes) -> str:
    """The tenant of a dead-lettered body, if it has a valid one: nothing else of it is shown."""
    try:
        tenant = json.loads(body).get("customerTenantId")
    except (ValueError, AttributeError):
        return "-"
    return tenant.lower() if is_guid(tenant) else "-"


def _body(message: Any) -> bytes:
    body = message.body
    return body if isinstance(body, bytes) else b"".join(body)


async def dlq_list(client: Any, queue: str, limit: int, out: TextIO) -> int:
    from azure.servicebus import ServiceBusSubQueue

    async with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
        messages = await receiver.peek_messages(max_message_count=limit)
    rows = [
        {
            "messageId": message_id_for_records(m.message_id),
            "reason": shown(m.dead_letter_reason or "-", 80),
            "description": shown(m.dead_letter_error_description or "-", 80),
            "deliveries": m.delivery_count,
            "enqueued": m.enqueued_time_utc.isoformat(timespec="seconds") if m.enqueued_time_utc else "-",
            "customerTenantId": _safe_tenant(_body(m)),
        }
        for m in messages
    ]
    print_table(rows, out)
    print(f"{len(rows)} dead-lettered message(s) in {queue}", file=out)
    return 0


async def dlq_replay(client: Any, queue: str, chosen: set[str] | None, out: TextIO) -> int:
    """Resubmit chosen dead-lettered messages under a new MessageId, then remove them from the DLQ."""
    from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    replayed: set[str] = set()  # the ids each resubmitted message goes by
    count = 0
    skipped: list[Any] = []
    async with (
        client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver,
        client.get_queue_sender(queue) as sender,
    ):
        while True:
            messages = await receiver.receive_messages(max_message_count=50, max_wait_time=2)
            if not messages:
                break
            for message in messages:
                # chosen by the id `dlq list` shows, or by the raw one
                message_id = message_id_for_records(message.message_id)
                names = {message_id, message.message_id}
                if chosen is not None and not names & chosen:
                    skipped.append(message)
                    continue
                copy = ServiceBusMessage(
                    _body(message),
                    message_id=f"{root_message_id(message_id)}:replay{stamp}",
                    content_type=message.content_type,
                    correlation_id=message.correlation_id,
                    application_properties={REPLAY_OF_PROPERTY: message_id},
                )
                await sender.send_messages(copy)
                await receiver.complete_message(message)
                replayed |= names
                count += 1
                print(f"replayed {message_id}", file=out)
        for message in skipped:
            await receiver.abandon_message(message)
    print(f"{count} message(s) resubmitted to {queue}", file=out)
    not_found = sorted((chosen or set()) - replayed)
    for message_id in not_found:
        print(f"not in the dead-letter queue: {printable(message_id)}", file=out)
    return 1 if not_found else 0


# --- admin consent ----------------------------------------------------------------------------


def _guid_argument(value: str, what: str) -> str:
    if not is_guid(value):
        raise UsageError(f"{what} must be a GUID (for example 53a2a22c-5cbd-47f7-b588-f5bb5f191ead)")
    return value.lower()


def _url_argument(value: str, what: str, *, loopback_http: bool) -> str:
    """An absolute https URL; Entra ID also accepts http redirect URIs on localhost."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        host = None
    if not host or parts.fragment:
        raise UsageError(f"{what} must be an absolute URL without a #fragment")
    if parts.scheme == "https" or (loopback_http and parts.scheme == "http" and host in _LOOPBACK):
        return value
    raise UsageError(
        f"{what} must be an https:// URL" + (" (http only for localhost)" if loopback_http else "")
    )


def admin_consent_url(
    tenant: str, client_id: str, redirect_uri: str | None = None, *, authority: str = PUBLIC_AUTHORITY
) -> str:
    """The link a customer's administrator opens to consent to the partner's app in their tenant.

    Consent creates the app's service principal there, which is the identity that gets linked.
    Without a redirect URI Entra ID returns the administrator to the app's registered one.
    """
    tenant = _guid_argument(tenant, "--tenant")
    client_id = _guid_argument(client_id, "--client-id")
    authority = _url_argument(authority, "--authority", loopback_http=False).rstrip("/")
    query = {"client_id": client_id}
    if redirect_uri:
        query["redirect_uri"] = _url_argument(redirect_uri, "--redirect-uri", loopback_http=True)
    return f"{authority}/{tenant}/adminconsent?{urlencode(query)}"


# --- the operators' HTTP API ------------------------------------------------------------------


@dataclass(frozen=True)
class ApiTarget:
    """The Function App and a function key; the key goes in a header, never on screen."""

    base_url: str
    key: str = field(repr=False)


def api_target(api_url: str | None) -> ApiTarget:
    """From --api-url or PAL_API_URL (https; http only for localhost) and PAL_API_KEY.

    The key is read from the environment only: on a command line it would stay in the shell's
    history and show in the process list.
    """
    url = api_url or os.environ.get("PAL_API_URL")
    if not url:
        raise UsageError("no API given: use --api-url https://<function app host> or PAL_API_URL")
    url = _url_argument(url, "--api-url", loopback_http=True)
    if urlsplit(url).query:
        raise UsageError("--api-url must not have a query; give the function key in PAL_API_KEY")
    key = os.environ.get("PAL_API_KEY")
    if not key:
        raise UsageError("no function key: set PAL_API_KEY (az functionapp keys list ...)")
    return ApiTarget(url.rstrip("/").removesuffix("/api"), key)


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any] | None


async def retire_identity(target: ApiTarget, tenant: str, client_id: str, reason: str | None) -> Response:
    """DELETE /api/links/{tenant}/identities/{clientId}: (status, parsed JSON body or None)."""
    import aiohttp

    url = f"{target.base_url}/api/links/{tenant}/identities/{client_id}"
    body = json.dumps({"reason": reason}).encode() if reason is not None else None
    headers = {"x-functions-key": target.key, "Content-Type": "application/json"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
            # no redirects: the key would follow them to wherever they point
            session.delete(url, data=body, headers=headers, allow_redirects=False) as response,
        ):
            return Response(response.status, _json_object(await response.read()))
    except (aiohttp.ClientError, TimeoutError) as error:
        raise UsageError(f"cannot reach the API ({type(error).__name__})") from None


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def report_retired(response: Response, out: TextIO) -> int:
    """One line, every value from the server escaped; exit code 0 only when retired."""
    body = response.body or {}
    if response.status == 200:
        tenant, client = (printable(body.get(name, "-")) for name in ("customerTenantId", "clientId"))
        print(f"retired: customerTenantId={tenant} clientId={client}", file=out)
        return 0
    if response.status == 401:
        print("palctl: HTTP 401: the function key (PAL_API_KEY) is missing or wrong", file=out)
    elif "title" in body:
        title, detail = printable(body["title"], 100), printable(body.get("detail", ""), 500)
        print(f"palctl: HTTP {response.status} {title}: {detail}", file=out)
    else:
        print(f"palctl: HTTP {response.status}", file=out)
    return 1


async def retire(args: argparse.Namespace, out: TextIO) -> int:
    tenant = _guid_argument(args.tenant, "--tenant")
    client_id = _guid_argument(args.client_id, "--client-id")
    try:
        reason = None if args.reason is None else retirement_reason(args.reason, name="--reason")
    except InvalidReason as error:
        raise UsageError(str(error)) from None
    target = api_target(args.api_url)
    return report_retired(await retire_identity(target, tenant, client_id, reason), out)


def print_table(rows: Iterable[dict[str, Any]], out: TextIO) -> None:
    rows = list(rows)
    if not rows:
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns), file=out)
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns), file=out)


# --- entry point ------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="palctl", description=__doc__)
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument(
        "--namespace", help="Service Bus namespace (signs in with DefaultAzureCredential)"
    )
    connection.add_argument("--connection-string", help="Service Bus connection string (local development)")
    connection.add_argument("--queue", default=os.environ.get("ONBOARDING_QUEUE", DEFAULT_QUEUE))
    commands = root.add_subparsers(dest="command", required=True)

    enqueue = commands.add_parser("enqueue", parents=[connection], help="send onboarding messages")
    source = enqueue.add_mutually_exclusive_group(required=True)
    source.add_argument("--tenant", help="customer tenant ID")
    source.add_argument("--csv", type=Path, help=f"CSV of customers; columns: {', '.join(CSV_COLUMNS)}")
    enqueue.add_argument("--client-id", help="client ID of the partner's app in that tenant")
    enqueue.add_argument(
        "--type", dest="identity_type", default="federated", choices=["federated", "secret", "certificate"]
    )
    enqueue.add_argument("--secret-name", help="Key Vault secret name (secret and certificate identities)")
    enqueue.add_argument("--partner-id", help="partner ID; defaults to the service's PARTNER_ID")
    enqueue.add_argument("--customer-name")
    enqueue.add_argument("--correlation-id")
    enqueue.add_argument(
        "--skip-invalid", action="store_true", help="send the valid CSV rows even if some are bad"
    )
    enqueue.add_argument("--dry-run", action="store_true", help="validate only")

    consent = commands.add_parser(
        "consent-url",
        help="print the admin-consent link for a customer tenant",
        description="Print the link a Global Administrator (or Cloud Application / Application "
        "Administrator) of the customer tenant opens to consent to the partner's multi-tenant app.",
    )
    consent.add_argument("--tenant", required=True, help="customer tenant ID")
    consent.add_argument("--client-id", required=True, help="client ID of the partner's multi-tenant app")
    consent.add_argument(
        "--redirect-uri",
        help="where Entra ID sends the administrator afterwards. It must be registered on the app, or the "
        "administrator gets AADSTS50011: the template registers PARTNER_APP_CONSENT_REDIRECT_URI on the app "
        "it creates and nothing on an existing app (leave it out there: Entra ID then uses the app's own)",
    )
    consent.add_argument(
        "--authority", default=PUBLIC_AUTHORITY, help="Entra ID sign-in endpoint (sovereign clouds)"
    )

    retiring = commands.add_parser(
        "retire",
        help="retire an identity's ledger record (over the HTTP API)",
        description="Remove an identity's link state from the ledger, with a history event saying why "
        "(the history is kept); the nightly re-verification and a body-less relink no longer see it. "
        "Nothing changes in the customer's tenant. The function key is read from PAL_API_KEY.",
    )
    retiring.add_argument("--tenant", required=True, help="customer tenant ID")
    retiring.add_argument("--client-id", required=True, help="client ID of the identity to retire")
    retiring.add_argument("--reason", help="why, kept in the history (1-256 printable characters)")
    retiring.add_argument("--api-url", help="the Function App's URL (default: PAL_API_URL)")

    dlq = commands.add_parser("dlq", help="the dead-letter queue").add_subparsers(
        dest="dlq_command", required=True
    )
    listing = dlq.add_parser("list", parents=[connection], help="show dead-lettered messages and why")
    listing.add_argument("--max", type=int, default=100)
    replay = dlq.add_parser("replay", parents=[connection], help="resubmit dead-lettered messages")
    chosen = replay.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--all", action="store_true")
    chosen.add_argument("--message-id", action="append", help="a MessageId to replay (repeatable)")
    return root


async def _run(args: argparse.Namespace, out: TextIO) -> int:
    if args.command == "retire":
        return await retire(args, out)
    if args.command == "consent-url":
        print(
            admin_consent_url(args.tenant, args.client_id, args.redirect_uri, authority=args.authority),
            file=out,
        )
        if args.redirect_uri:
            # palctl cannot see the app's registration; the operator can (docs/customer-onboarding.md).
            print(
                "palctl: the redirect URI must be registered on the app (otherwise the administrator gets "
                "AADSTS50011); leave --redirect-uri out for an app the template did not create",
                file=sys.stderr,
            )
        return 0
    if args.command == "enqueue":
        if args.csv is not None:
            with args.csv.open(newline="", encoding="utf-8-sig") as stream:
                onboardings, bad = read_csv(stream)
            for line in bad:
                print(f"invalid {line}", file=out)
            if bad and not args.skip_invalid:
                raise UsageError(f"{len(bad)} invalid row(s); nothing sent (fix them, or use --skip-invalid)")
        else:
            if not args.client_id:
                raise UsageError("--client-id is required with --tenant")
            fields = {
                "customerTenantId": args.tenant,
                "clientId": args.client_id,
                "identityType": args.identity_type,
                "keyVaultSecretName": args.secret_name,
                "partnerId": args.partner_id,
                "customerName": args.customer_name,
                "correlationId": args.correlation_id,
            }
            onboardings = [build_onboarding(fields, where="arguments")]
        if args.dry_run:
            print(f"{len(onboardings)} valid message(s); nothing sent (--dry-run)", file=out)
            return 0
        async with service_bus_client(args) as client:
            await send_onboardings(client, args.queue, onboardings, Progress(len(onboardings)))
        print(f"{len(onboardings)} message(s) sent to {args.queue}", file=out)
        return 0
    async with service_bus_client(args) as client:
        if args.dlq_command == "list":
            return await dlq_list(client, args.queue, args.max, out)
        return await dlq_replay(client, args.queue, None if args.all else set(args.message_id), out)


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(_run(args, out))
    except UsageError as error:
        print(f"palctl: {error}", file=sys.stderr)
        return 2
