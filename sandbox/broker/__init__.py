"""A local Service Bus broker speaking AMQP 1.0 on loopback, for the unmodified azure-servicebus SDK.

The rooms: `queues` (the queue rules, pure: peek-lock, delivery counts, dead-lettering, scheduling,
duplicate detection, deferral), `codec` (AMQP messages as stored and forwarded), `management` (a
queue's $management operations) and `amqp` (the proton handler). `ServiceBusBroker` runs them on a
thread; `python -m sandbox.broker` runs it as a process. Queues come from `queues.json` here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from proton.reactor import ApplicationEvent, Container, EventInjector

from .amqp import AmqpHandler
from .queues import QueueConfig, load_queue_config

__all__ = ["DEFAULT_CONFIG", "QueueConfig", "ServiceBusBroker", "load_queue_config", "main"]

_log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).with_name("queues.json")
_DEV_KEY = "SAS_KEY_VALUE"  # any key works: the broker accepts every CBS token


class ServiceBusBroker:
    """Runs the broker on a background thread; `port=0` picks a free port, kept across stop/start.

    Queues only (no topics, sessions or message expiry), state in memory. Unlike Service Bus, a receiver
    that disconnects (or a broker that stops) returns its unsettled messages at once, delivery count +1,
    instead of holding them until their locks expire.
    """

    load_queue_config = staticmethod(load_queue_config)

    def __init__(
        self, queues: list[QueueConfig] | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.host = host
        self.port = port
        self._core = AmqpHandler(load_queue_config(DEFAULT_CONFIG) if queues is None else queues)
        self._thread: threading.Thread | None = None
        self._injector: EventInjector | None = None

    @property
    def connection_string(self) -> str:
        return (
            f"Endpoint=sb://{self.host}:{self.port};SharedAccessKeyName=RootManageSharedAccessKey;"
            f"SharedAccessKey={_DEV_KEY};UseDevelopmentEmulator=true"
        )

    def start(self) -> ServiceBusBroker:
        if self._thread is not None:
            raise RuntimeError("the broker is already running")
        container = Container(self._core)
        acceptor = container.listen(f"{self.host}:{self.port}")  # binds now, so a busy port fails here
        self.port = int(acceptor._selectable.getsockname()[1])  # proton has no public accessor for port 0
        self._core.bind(container, acceptor)
        self._injector = EventInjector()  # the one thread-safe way into the reactor
        container.selectable(self._injector)
        self._thread = threading.Thread(
            target=container.run, name=f"servicebus-broker-{self.port}", daemon=True
        )
        self._thread.start()
        _log.info("Service Bus broker listening on %s:%s", self.host, self.port)
        return self

    def stop(self) -> None:
        if self._thread is None or self._injector is None:
            return
        self._injector.trigger(ApplicationEvent("broker_stop"))
        self._thread.join(timeout=10)
        for fd in self._injector.pipe:
            os.close(fd)
        self._thread, self._injector = None, None

    def __enter__(self) -> ServiceBusBroker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def queue_counts(self, name: str) -> dict[str, int]:
        with self._core.lock:
            self._core.store.sweep(time.time())
            return self._core.store.counts(name)

    def dead_letters(self, name: str) -> list[dict[str, Any]]:
        with self._core.lock:
            _, dead_letter = self._core.store.queue(name)
            return [
                {
                    "message_id": m.message_id,
                    "reason": m.dead_letter[0] if m.dead_letter else None,
                    "description": m.dead_letter[1] if m.dead_letter else None,
                    "body": m.payload.body,
                }
                for m in dead_letter.messages.values()
            ]

    def purge(self, name: str) -> None:
        """Empties the queue, its dead-letter queue and its duplicate-detection history."""
        with self._core.lock:
            self._core.store.purge(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.broker", description=__doc__)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="JSON list of queues")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The SDK closes its socket without waiting for the broker's close frame; proton logs that as an error.
    logging.getLogger("proton").setLevel(logging.CRITICAL)
    stopped = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stopped.set())
    with ServiceBusBroker(load_queue_config(args.config), host=args.host, port=args.port) as broker:
        print(json.dumps({"connectionString": broker.connection_string, "port": broker.port}), flush=True)
        while not stopped.wait(0.5):
            pass
    return 0
