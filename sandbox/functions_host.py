"""A local stand-in for the Azure Functions host: runs the functions of `function_app.py` the way the
host does (Service Bus triggers in peek-lock, timers on NCRONTAB schedules, HTTP routes with keys).

Functions Core Tools cannot be installed here; this runs the same function objects, from the same
`app.get_functions()` index the host reads, with the settings of `local.settings.json` or the
environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import logging
import os
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import azure.functions as func
from aiohttp import web
from azure.functions.servicebus import ServiceBusMessage as HostServiceBusMessage
from azure.functions.timer import TimerRequest

from shared.spine.untrusted import message_id_for_records, printable

logger = logging.getLogger("sandbox.host")
ROOT = Path(__file__).resolve().parents[1]
_SETTING = re.compile(r"%([^%]+)%")


def resolve(value: str, settings: Mapping[str, str]) -> str:
    """Replace %NAME% with the setting's value, as the host does for binding expressions."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings:
            raise KeyError(f"binding expression %{name}%: setting {name} is not defined")
        return settings[name]

    return _SETTING.sub(lookup, value)


def load_local_settings(path: Path) -> dict[str, str]:
    """The `Values` of a local.settings.json file (absent file: no values)."""
    if not path.exists():
        return {}
    values = json.loads(path.read_text()).get("Values", {})
    return {str(key): str(value) for key, value in values.items()}


def timespan_seconds(value: str) -> float:
    """A .NET timespan ("00:05:00" or "1.00:00:00") as seconds."""
    days = 0
    if "." in value.split(":")[0]:
        day_part, value = value.split(".", 1)
        days = int(day_part)
    hours, minutes, seconds = value.split(":")
    return days * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def indexed_functions(app: Any) -> list[Any]:
    """`app.get_functions()`, which may be called only once per app object, cached on the app."""
    functions = getattr(app, "_sandbox_indexed_functions", None)
    if functions is None:
        functions = app.get_functions()
        app._sandbox_indexed_functions = functions
    return list(functions)


# --- NCRONTAB -------------------------------------------------------------------------------

_CRON_RANGES = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]


def _cron_field(text: str, lowest: int, highest: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part == "*":
            start, end = lowest, highest
        elif "-" in part:
            start_text, end_text = part.split("-", 1)
            start, end = int(start_text), int(end_text)
        else:
            start = int(part)
            end = highest if "/" in text else start
        if not (lowest <= start <= highest and lowest <= end <= highest and step > 0):
            raise ValueError(f"NCRONTAB field {text!r} is outside {lowest}-{highest}")
        values.update(range(start, end + 1, step))
    return values


@dataclass(frozen=True)
class Schedule:
    """A six-field NCRONTAB expression: second minute hour day month day-of-week."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        fields = expression.split()
        if len(fields) != 6:
            raise ValueError(f"NCRONTAB {expression!r}: expected 6 fields (with seconds), got {len(fields)}")
        sets = [frozenset(_cron_field(f, lo, hi)) for f, (lo, hi) in zip(fields, _CRON_RANGES, strict=True)]
        return cls(*sets)

    def next_after(self, moment: datetime) -> datetime:
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        for _ in range(366 * 24 * 60 * 2):  # whole minutes: at most two years of search
            day_ok = (
                candidate.month in self.months
                and candidate.day in self.days
                and (candidate.weekday() + 1) % 7 in self.weekdays
            )
            if day_ok and candidate.hour in self.hours and candidate.minute in self.minutes:
                for second in sorted(self.seconds):
                    if second >= candidate.second:
                        return candidate.replace(second=second)
            candidate = (candidate + timedelta(minutes=1)).replace(second=0)
        raise ValueError("NCRONTAB schedule never fires")


# --- the host -------------------------------------------------------------------------------


@dataclass
class Invocation:
    function: str
    invocation_id: str
    started: datetime
    duration_ms: float
    succeeded: bool
    error: str | None = None


class LocalFunctionsHost:
    """Runs every function of an app; `start()` and `stop()` inside one event loop."""

    def __init__(
        self,
        *,
        app_module: str = "function_app",
        host_json: Path = ROOT / "host.json",
        settings: Mapping[str, str] | None = None,
        http_port: int = 0,
        function_key: str | None = None,
    ) -> None:
        self.settings = {**os.environ, **(settings or {})}
        self._app_module = app_module
        self.host_config: dict[str, Any] = json.loads(host_json.read_text())
        service_bus = self.host_config.get("extensions", {}).get("serviceBus", {})
        self.max_concurrent_calls = int(service_bus.get("maxConcurrentCalls", 16))
        self.max_lock_renewal = timespan_seconds(service_bus.get("maxAutoLockRenewalDuration", "00:05:00"))
        self.function_key = function_key or secrets.token_urlsafe(24)
        self.http_port = http_port
        self.invocations: list[Invocation] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._timer_tasks: list[asyncio.Task[None]] = []
        self._closers: list[Callable[[], Awaitable[Any]]] = []
        self._functions: dict[str, Any] = {}
        self._stopping = asyncio.Event()
        self._timer_fired: dict[str, asyncio.Event] = {}
        self._runner: web.AppRunner | None = None

    # The app is imported with the settings in the process environment, as in the worker.
    def _load(self) -> dict[str, Any]:
        os.environ.update({k: v for k, v in self.settings.items() if isinstance(v, str)})
        app = importlib.import_module(self._app_module).app
        return {function.get_function_name(): function for function in indexed_functions(app)}

    @property
    def function_names(self) -> list[str]:
        return sorted(self._functions)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def start(self) -> LocalFunctionsHost:
        self._functions = self._load()
        routes: list[tuple[str, list[str], str, Any]] = []
        for name, function in self._functions.items():
            binding = json.loads(function.get_function_json())["bindings"]
            trigger = next(
                b for b in binding if b.get("direction", "").upper() == "IN" and "Trigger" in b["type"]
            )
            kind = trigger["type"]
            if kind == "serviceBusTrigger":
                self._tasks.append(asyncio.create_task(self._service_bus_loop(name, function, trigger)))
            elif kind == "timerTrigger":
                self._timer_fired[name] = asyncio.Event()
                self._timer_tasks.append(asyncio.create_task(self._timer_loop(name, function, trigger)))
            elif kind == "httpTrigger":
                methods = [m.upper() for m in trigger.get("methods") or ["GET", "POST"]]
                routes.append(
                    (trigger.get("route") or name, methods, trigger.get("authLevel", "FUNCTION"), function)
                )
            else:
                raise ValueError(f"{name}: trigger type {kind} is not supported by the local host")
            logger.info("Found function %s (%s)", name, kind)
        if routes:
            await self._start_http(routes)
        return self

    async def stop(self, *, grace_seconds: float = 10.0) -> None:
        """Stop receiving, let running invocations finish (up to the grace period), then close."""
        self._stopping.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace_seconds)
        tasks = self._tasks + self._timer_tasks
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._timer_tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                await close()
        self._closers.clear()

    async def __aenter__(self) -> LocalFunctionsHost:
        return await self.start()

    async def __aexit__(self, *args: object) -> None:
        await self.stop()

    async def _invoke(self, name: str, function: Any, argument: Any) -> Any:
        invocation_id = str(uuid.uuid4())
        started = datetime.now(UTC)
        clock = time.monotonic()
        logger.info("Executing 'Functions.%s' (Id=%s)", name, invocation_id)
        user_function = function.get_user_function()
        try:
            if inspect.iscoroutinefunction(user_function):
                result = await user_function(argument)
            else:
                result = await asyncio.to_thread(user_function, argument)
        except Exception as error:
            duration = (time.monotonic() - clock) * 1000
            self.invocations.append(
                Invocation(name, invocation_id, started, duration, False, type(error).__name__)
            )
            logger.warning(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms): %s: %s",
                name,
                invocation_id,
                duration,
                type(error).__name__,
                error,
            )
            raise
        duration = (time.monotonic() - clock) * 1000
        self.invocations.append(Invocation(name, invocation_id, started, duration, True))
        logger.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms)", name, invocation_id, duration
        )
        return result

    # --- Service Bus ---------------------------------------------------------------------------

    def _service_bus_client(self, connection: str) -> Any:
        from azure.servicebus.aio import ServiceBusClient

        if self.settings.get(connection):  # empty means unset, as in shared.spine.settings
            return ServiceBusClient.from_connection_string(self.settings[connection])
        namespace = self.settings.get(f"{connection}__fullyQualifiedNamespace")
        if namespace is None:
            raise KeyError(
                f"connection {connection}: set {connection} or {connection}__fullyQualifiedNamespace"
            )
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential(
            managed_identity_client_id=self.settings.get(f"{connection}__clientId")
        )
        self._closers.append(credential.close)
        return ServiceBusClient(namespace, credential)

    async def _service_bus_loop(self, name: str, function: Any, trigger: dict[str, Any]) -> None:
        from azure.servicebus.aio import AutoLockRenewer

        queue = resolve(trigger["queueName"], self.settings)
        client = self._service_bus_client(trigger["connection"])
        self._closers.append(client.close)
        renewer = AutoLockRenewer(max_lock_renewal_duration=self.max_lock_renewal)
        self._closers.append(renewer.close)
        running: set[asyncio.Task[None]] = set()
        async with client.get_queue_receiver(queue, prefetch_count=0) as receiver:
            while not self._stopping.is_set():
                if len(running) >= self.max_concurrent_calls:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    messages = await receiver.receive_messages(
                        max_message_count=self.max_concurrent_calls - len(running), max_wait_time=1
                    )
                except Exception:
                    logger.exception("receive from %s failed; retrying", queue)
                    await asyncio.sleep(1)
                    continue
                for message in messages:
                    renewer.register(receiver, message)
                    task = asyncio.create_task(self._handle_message(name, function, receiver, message))
                    running.add(task)
                    task.add_done_callback(running.discard)
            if running:
                await asyncio.wait(running)

    async def _handle_message(self, name: str, function: Any, receiver: Any, message: Any) -> None:
        try:
            await self._invoke(name, function, to_host_message(message))
        except Exception:
            with contextlib.suppress(Exception):
                await receiver.abandon_message(message)
            return
        try:
            await receiver.complete_message(message)
        except Exception as error:  # the lock was lost: Service Bus will deliver it again
            logger.warning(
                "complete of %s failed (%s): it will be redelivered",
                message_id_for_records(message.message_id),
                printable(error),
            )

    # --- timers --------------------------------------------------------------------------------

    async def _timer_loop(self, name: str, function: Any, trigger: dict[str, Any]) -> None:
        schedule = Schedule.parse(resolve(trigger["schedule"], self.settings))
        fired = self._timer_fired[name]
        due = schedule.next_after(datetime.now(UTC))
        while not self._stopping.is_set():
            wait = max(0.0, (due - datetime.now(UTC)).total_seconds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fired.wait(), timeout=wait)
            on_demand = fired.is_set()
            fired.clear()
            past_due = not on_demand and (datetime.now(UTC) - due).total_seconds() > 1
            with contextlib.suppress(Exception):
                await self._invoke(name, function, TimerRequest(past_due=past_due))
            if not on_demand:
                due = schedule.next_after(datetime.now(UTC))

    def fire_timer(self, name: str) -> None:
        """Run a timer function now, as the host's admin API can."""
        self._timer_fired[name].set()

    # --- HTTP ----------------------------------------------------------------------------------

    async def _start_http(self, routes: list[tuple[str, list[str], str, Any]]) -> None:
        prefix = self.host_config.get("extensions", {}).get("http", {}).get("routePrefix", "api")
        app = web.Application(client_max_size=1024 * 1024)
        for route, methods, auth_level, function in routes:
            path = "/" + "/".join(part for part in (prefix, route) if part)
            handler = self._http_handler(function, auth_level)
            for method in methods:
                app.router.add_route(method, path, handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.http_port)
        await site.start()
        server = cast(asyncio.Server | None, site._server)  # noqa: SLF001 - the port bound for port 0
        if server is not None and server.sockets:
            self.http_port = server.sockets[0].getsockname()[1]

    def _http_handler(
        self, function: Any, auth_level: str
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        name = function.get_function_name()

        async def handle(request: web.Request) -> web.Response:
            if auth_level.upper() != "ANONYMOUS":
                key = request.headers.get("x-functions-key") or request.query.get("code")
                if not key or not secrets.compare_digest(key, self.function_key):
                    return web.Response(status=401)
            body = await request.read()
            http_request = func.HttpRequest(
                request.method,
                str(request.url),
                headers=dict(request.headers),
                params={k: v for k, v in request.query.items() if k != "code"},
                route_params=dict(request.match_info),
                body=body,
            )
            try:
                result = await self._invoke(name, function, http_request)
            except Exception:
                return web.Response(status=500)
            if isinstance(result, func.HttpResponse):
                headers = dict(result.headers)
                if result.mimetype and "content-type" not in {k.lower() for k in headers}:
                    headers["Content-Type"] = result.mimetype + (
                        f"; charset={result.charset}" if result.charset else ""
                    )
                return web.Response(status=result.status_code, body=result.get_body(), headers=headers)
            return web.Response(
                status=204 if result is None else 200, text=None if result is None else str(result)
            )

        return handle


def to_host_message(message: Any) -> HostServiceBusMessage:
    """An azure-servicebus received message as the host hands it to a Python function."""
    properties = {
        (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else v)
        for k, v in (message.application_properties or {}).items()
    }
    body = b"".join(message.body) if not isinstance(message.body, bytes | str) else message.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    return HostServiceBusMessage(
        body=body,
        message_id=message.message_id,
        # The SDK reports AMQP's count of earlier failed deliveries (0 the first time); the host, a
        # .NET program, hands functions the 1-based DeliveryCount.
        delivery_count=(message.delivery_count or 0) + 1,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        enqueued_time_utc=message.enqueued_time_utc,
        enqueued_sequence_number=message.sequence_number,
        sequence_number=message.sequence_number,
        locked_until=message.locked_until_utc,
        lock_token=str(message.lock_token) if message.lock_token else None,
        subject=message.subject,
        application_properties=properties,
        user_properties=properties,
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m sandbox.functions_host [--settings local.settings.json]`: run until SIGINT/SIGTERM."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--settings", type=Path, default=ROOT / "local.settings.json")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--function-key", default=os.environ.get("PAL_FUNCTION_KEY"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("uamqp").setLevel(logging.WARNING)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        host = LocalFunctionsHost(
            settings=load_local_settings(args.settings), http_port=args.port, function_key=args.function_key
        )
        async with host:
            print(json.dumps({"httpUrl": host.base_url, "functions": host.function_names}), flush=True)
            await stop.wait()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
