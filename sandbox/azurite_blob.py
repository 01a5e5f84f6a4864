"""Starts and stops Azurite's Blob service (installed from npm by `make setup`) on a free port, for
the delivery's files (the Table service is `azurite.py`)."""

from __future__ import annotations

import os
import signal
import subprocess
from types import TracebackType

from .azurite import ROOT, free_port, wait_for_port

AZURITE_BLOB = ROOT / "node_modules" / ".bin" / "azurite-blob"
_ACCOUNT = "devstoreaccount1"
_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteBlob:
    """Azurite Blob service, in memory."""

    def __init__(self, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={_ACCOUNT};AccountKey={_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{_ACCOUNT};"
        )

    def start(self) -> AzuriteBlob:
        if not AZURITE_BLOB.exists():
            raise RuntimeError(f"Azurite is not installed ({AZURITE_BLOB} missing): run `make setup` first")
        command = [
            str(AZURITE_BLOB),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
            "--inMemoryPersistence",
        ]
        self._process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "AZURITE_ACCEPT_EULA": "true"},
        )
        wait_for_port(self.port, timeout=30, process=self._process)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> AzuriteBlob:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
