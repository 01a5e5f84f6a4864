"""Starts and stops one of Azurite's services (installed from npm by `make setup`) on a free port: the
Table service (the ledger) or the Blob service (the files to deliver)."""

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
_WELL_KNOWN = _DEV_CONN_STRING.split(";TableEndpoint=")[0]
"""Azurite's published development account (protocol, name and key), without an endpoint."""


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
    """One Azurite service, `table` (default) or `blob`; in memory unless `location` is given (then
    data survives a restart)."""

    def __init__(
        self, *, port: int | None = None, location: Path | None = None, service: str = "table"
    ) -> None:
        if service not in ("table", "blob"):
            raise ValueError("service: table or blob")
        self.port = port or free_port()
        self.location = location
        self.service = service
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        endpoint = "TableEndpoint" if self.service == "table" else "BlobEndpoint"
        return f"{_WELL_KNOWN};{endpoint}=http://127.0.0.1:{self.port}/devstoreaccount1"

    def start(self) -> Azurite:
        program = ROOT / "node_modules" / ".bin" / f"azurite-{self.service}"
        if not program.exists():
            raise RuntimeError(f"Azurite is not installed ({program.name} missing): run `make setup` first")
        storage = ["--location", str(self.location)] if self.location else ["--inMemoryPersistence"]
        command = [
            str(program),
            f"--{self.service}Host",
            "127.0.0.1",
            f"--{self.service}Port",
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
