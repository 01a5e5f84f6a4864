"""Azurite's Blob service, for the delivery's files (the same runner as the ledger's Table service)."""

from __future__ import annotations

from .azurite import Azurite


class AzuriteBlob(Azurite):
    """Azurite Blob service, in memory."""

    def __init__(self, *, port: int | None = None) -> None:
        super().__init__(port=port, service="blob")
