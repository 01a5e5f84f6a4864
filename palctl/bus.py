"""palctl's way to Service Bus: which one (from flags, environment or config file), a client made
by the product's own factory (`shared.spine.servicebus.service_bus_client`), and the SDK's errors
turned into one screened line. The Azure SDKs are imported here only when a command connects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from palctl.configuration import Configuration, Key
from palctl.errors import Failed, UsageError


@dataclass(frozen=True)
class BusTarget:
    """A namespace (Azure sign-in), or a connection string (never shown: it may hold a key)."""

    namespace: str | None = None
    connection_string: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class BusFlags:
    """The command's --namespace and --connection-string (None: not given)."""

    namespace: str | None = None
    connection_string: str | None = field(default=None, repr=False)


def bus_target(config: Configuration, flags: BusFlags) -> BusTarget:
    """The Service Bus to use: the first of flags, environment and config file that names one; within
    one of them a connection string comes before a namespace."""
    namespace, connection_string = flags.namespace, flags.connection_string
    if namespace is not None and connection_string is not None:
        raise UsageError("give --namespace or --connection-string, not both")
    by_string = config.lookup(Key.CONNECTION_STRING, connection_string)
    by_name = config.lookup(Key.NAMESPACE, namespace)
    rank = {"flag": 0, "env": 1, "file": 2}
    string_rank, name_rank = rank.get(by_string.source or "", 9), rank.get(by_name.source or "", 9)
    if string_rank == name_rank == 9:
        raise UsageError(
            "no Service Bus given: use --namespace NAME.servicebus.windows.net (signs in with "
            "DefaultAzureCredential), PAL_SERVICEBUS_NAMESPACE or `palctl config set namespace ...`; "
            "for local development --connection-string or PAL_SERVICEBUS_CONNECTION_STRING"
        )
    if string_rank <= name_rank:
        return BusTarget(connection_string=config.get(Key.CONNECTION_STRING, connection_string))
    return BusTarget(namespace=config.get(Key.NAMESPACE, namespace))


@asynccontextmanager
async def open_bus(target: BusTarget) -> AsyncIterator[Any]:
    """An open async ServiceBusClient (and its credential, for a namespace), closed afterwards."""
    from shared.spine.servicebus import service_bus_client

    if target.connection_string:
        try:
            client = service_bus_client(connection_string=target.connection_string)
        except ValueError:  # the SDK's word for a malformed connection string; it is not echoed
            raise UsageError("the Service Bus connection string is malformed") from None
        async with client:
            yield client
        return
    from azure.identity.aio import DefaultAzureCredential

    async with DefaultAzureCredential() as credential:
        async with service_bus_client(namespace=target.namespace, credential=credential) as client:
            yield client


def bus_errors() -> tuple[type[BaseException], ...]:
    """What a Service Bus call raises when the bus, the network or the sign-in fails."""
    from azure.core.exceptions import AzureError

    return (AzureError, OSError, TimeoutError)


def failure(error: BaseException, doing: str) -> Failed:
    """A Failed naming what was being done and the SDK's reason, screened for credentials."""
    from shared.spine.untrusted import shown

    reason = shown(str(error).strip().splitlines()[0] if str(error).strip() else "", 300)
    return Failed(f"Service Bus: {doing} failed ({type(error).__name__}{': ' + reason if reason else ''})")
