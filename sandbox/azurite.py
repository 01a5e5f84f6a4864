"""Starts and stops Azurite's Table service (installed from npm by `make setup`) on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from azure.data.tables._base_client import _DEV_CONN_STRING  # Azurite's published well-known account

ROOT = Path(__file__).resolve().parents[1]
AZURITE_TABLE = ROOT / "node_modules" / ".bin" / "azurite-table"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


class Azurite:
    """Azurite Table service; in memory unless `location` is given (then data survives a restart)."""

    def __init__(self, *, port: int | None = None, location: Path | None = None) -> None:
        self.port = port or free_port()
        self.location = location
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return _DEV_CONN_STRING.replace("127.0.0.1:10002", f"127.0.0.1:{self.port}")

    def start(self) -> Azurite:
        if not AZURITE_TABLE.exists():
            raise RuntimeError(f"Azurite is not installed ({AZURITE_TABLE} missing): run `make setup` first")
        storage = ["--location", str(self.location)] if self.location else ["--inMemoryPersistence"]
        command = [
            str(AZURITE_TABLE),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(self.port),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
            *storage,
        ]
        self._process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() takes node's children too
            env={**os.environ, "AZURITE_ACCEPT_EULA": "true"},
        )
        wait_for_port(self.port, timeout=30, process=self._process)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        # SIGINT is Azurite's graceful stop: it saves its database (with --location) before exiting.
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
