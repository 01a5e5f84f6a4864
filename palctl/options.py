"""The options several commands share (output format, Service Bus connection, queue), declared once,
and the glue every command uses: its session, the end of the command with an exit code, and errors
turned into a message and an exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer

from palctl.errors import ExitCode, PalctlError
from palctl.output import OutputFormat
from palctl.terminal import Session

P = ParamSpec("P")
R = TypeVar("R")

Output = Annotated[
    OutputFormat,
    typer.Option(
        "--output",
        "-o",
        help="table (for people), json or csv (for scripts); fields in docs/palctl.md",
        case_sensitive=False,
    ),
]
Namespace = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        metavar="HOST",
        help="Service Bus namespace, NAME.servicebus.windows.net; signs in with DefaultAzureCredential "
        "(env PAL_SERVICEBUS_NAMESPACE, config namespace)",
        show_default=False,
    ),
]
ConnectionString = Annotated[
    str | None,
    typer.Option(
        "--connection-string",
        metavar="TEXT",
        help="Service Bus connection string, for local development "
        "(env PAL_SERVICEBUS_CONNECTION_STRING, config connection-string)",
        show_default=False,
    ),
]
Queue = Annotated[
    str | None,
    typer.Option(
        "--queue",
        metavar="NAME",
        help="the queue (env ONBOARDING_QUEUE, config queue; default customer-onboarded)",
        show_default=False,
    ),
]
Tenant = Annotated[
    str, typer.Option("--tenant", metavar="GUID", help="customer tenant ID", show_default=False)
]


def command_app(name: str, **settings: Any) -> typer.Typer:
    """The Typer app of a command module: plain (Click's) help like the root's, no completion options
    of its own (the root has them), no pretty tracebacks (they would show local values)."""
    from palctl.commands import summary

    return typer.Typer(
        name=name,
        short_help=summary(name),
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        add_completion=False,
        **settings,
    )


def session(ctx: typer.Context) -> Session:
    """The invocation's streams: `main()` passes them as the context object."""
    found = ctx.find_object(Session)
    return found if found is not None else Session.default()


def finish(code: ExitCode) -> None:
    """End the command with `code` (returns for 0)."""
    if code is not ExitCode.DONE:
        raise typer.Exit(int(code))


def stop(ctx: typer.Context, error: PalctlError) -> NoReturn:
    """Print the error as `palctl: <message>` on standard error and end with its exit code."""
    session(ctx).message(str(error), style="red")
    raise typer.Exit(int(error.exit_code))


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turns a PalctlError raised by the command into its message and exit code (the command's
    first parameter is its `typer.Context`)."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except PalctlError as error:
            ctx: Any = kwargs.get("ctx", args[0] if args else None)
            stop(ctx, error)

    return run


TENANT_EXAMPLE = "53a2a22c-5cbd-47f7-b588-f5bb5f191ead"
APP_EXAMPLE = "81a6daa3-a704-4f3e-a1ca-45fa036d5a09"


def examples(*lines: str) -> str:
    """A command's epilog: its examples, one a line, kept as written by the help formatter."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)
