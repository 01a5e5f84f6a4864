"""palctl's app: the commands of `palctl.commands` wired into one Typer app, and `main()`, the entry
point (`[project.scripts] palctl = "palctl.cli:main"`).

`main(argv, out)` runs one command line and returns its exit code (0 done, 1 failed, 2 usage error,
3 partially done) instead of exiting, so that tests and other programs can call it; data goes to
`out` (standard output by default), messages to standard error. The help is Click's plain format.
`palctl --help` imports no command module (the root group lists them from `COMMANDS` and imports
one when it is used), nor Rich, nor an Azure SDK (the commands import those when they run).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any, TextIO

import typer
import typer.core

from palctl.commands import COMMANDS
from palctl.errors import ExitCode
from palctl.terminal import Session

HELP = """Operate PAL Autopilot: send onboarding messages (one, or a CSV backfill), work the
dead-letter queue, print a customer's admin-consent link, and retire an identity's ledger record
(over the HTTP API). Every message is validated with the product's own parser before it is sent.
"""
EPILOG = """\b
Exit codes: 0 done, 1 failed, 2 usage error (nothing sent), 3 partially done.
Settings: flag > environment variable > config file (palctl config) > default.
Output: --output table|json|csv on every command that prints data; docs/palctl.md.
Each command's --help has examples.
"""
_COMPATIBLE = {
    # names palctl.cli had before the commands got modules of their own
    "admin_consent_url": "palctl.commands.consent",
    "PUBLIC_AUTHORITY": "palctl.commands.consent",
    "build_onboarding": "palctl.onboarding",
    "onboarding_message_id": "palctl.onboarding",
    "read_csv": "palctl.onboarding",
    "Onboarding": "palctl.onboarding",
    "CSV_COLUMNS": "palctl.onboarding",
    "UsageError": "palctl.errors",
}


def __getattr__(name: str) -> Any:
    if name in _COMPATIBLE:
        return getattr(importlib.import_module(_COMPATIBLE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _LazyCommands(MutableMapping[str, Any]):
    """The root's commands by name: every name of `COMMANDS` is there; a command's module is imported
    the first time the command itself is looked up."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            module = importlib.import_module(COMMANDS[name].module)  # KeyError: no such command
            self._loaded[name] = typer.main.get_command(module.app)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)


class LazyGroup(typer.core.TyperGroup):
    """The root group: lists the commands from the registry and loads one only when it is used."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.commands = _LazyCommands()

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, entry.summary) for name, entry in COMMANDS.items()])


app = typer.Typer(
    name="palctl",
    cls=LazyGroup,
    help=HELP,
    epilog=EPILOG,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root() -> None:
    """The commands are loaded from `palctl.commands` when they are used."""


def _usage_error(error: typer.TyperException, session: Session) -> int:
    """Click's word on the command line (an unknown option, a missing value...), escaped."""
    ctx = getattr(error, "ctx", None)
    if type(error).__name__ == "NoArgsIsHelpError":  # `palctl` or `palctl dlq` alone: the help
        session.err.write(error.format_message() + "\n")
        return int(error.exit_code)
    if ctx is not None:
        session.err.write(f"{ctx.get_usage()}\nTry '{ctx.command_path} --help' for help.\n\n")
    session.message(f"error: {error.format_message()}", style="red")
    return int(error.exit_code)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run one palctl command line (default: the process's arguments); returns the exit code."""
    session = Session(out if out is not None else sys.stdout, sys.stderr)
    command = typer.main.get_command(app)
    try:
        result = command.main(
            args=list(argv) if argv is not None else None,
            prog_name="palctl",
            standalone_mode=False,
            obj=session,
        )
    except typer.Abort:
        session.message("aborted")
        return int(ExitCode.FAILED)
    except typer.TyperException as error:
        return _usage_error(error, session)
    return result if isinstance(result, int) else int(ExitCode.DONE)
