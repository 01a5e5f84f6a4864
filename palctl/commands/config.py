"""`palctl config set|unset|show`: the settings palctl reads when a flag does not give them.

Precedence: flag > environment variable > config file > default. The file is at `$PALCTL_CONFIG` or
`config.toml` in the platform's configuration folder (see `palctl.configuration`). A value is checked
before it is stored; one that holds a key is stored with a warning, and `show` masks it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Annotated

import typer

from palctl.configuration import SETTINGS, Configuration, Key, holds_a_key, masked, read_file, write_file
from palctl.options import Output, command_app, examples, handles_errors, session
from palctl.output import OutputFormat, Report, render
from palctl.terminal import Session, is_terminal

app = command_app(
    "config", help="palctl's settings (precedence: flag > env > config file > default).", no_args_is_help=True
)
SET_EPILOG = examples(
    "palctl config set namespace pal-prod.servicebus.windows.net",
    "palctl config set api-url https://func-pal.azurewebsites.net",
    "palctl config set api-key -        # reads the key from standard input, not the command line",
)
UNSET_EPILOG = examples("palctl config unset connection-string")
SHOW_EPILOG = examples("palctl config show", "palctl config show -o json")
KeyArgument = Annotated[Key, typer.Argument(metavar="KEY", help="the setting", show_default=False)]


@dataclass(frozen=True)
class SettingRow:
    key: str
    value: str | None
    source: str | None = field(metadata={"styles": {"flag": "cyan", "env": "cyan", "file": "green"}})
    env: str


def _read_value(key: Key) -> str:
    """The value of `config set KEY -`: typed without echo on a terminal, else standard input's first line."""
    if is_terminal(sys.stdin):
        return str(typer.prompt(f"{key.value}", hide_input=True, err=True))
    return sys.stdin.readline().rstrip("\r\n")


def _warn_if_secret(current: Session, config: Configuration, key: Key, value: str) -> None:
    if not holds_a_key(key, value):
        return
    if key is Key.CONNECTION_STRING:
        what = "the connection string holds a key (SharedAccessKey)"
        instead = "`palctl config set namespace NAME.servicebus.windows.net` (Azure sign-in) holds none"
    else:
        what = "the function key is a secret"
        instead = "PAL_API_KEY in the environment keeps it out of files"
    current.warn(f"{what}; it is stored in plain text in {config.path} (readable by you alone); {instead}")


@app.command("set", epilog=SET_EPILOG)
@handles_errors
def set_value(
    ctx: typer.Context,
    key: KeyArgument,
    value: Annotated[
        str,
        typer.Argument(
            metavar="VALUE", help="the value; '-' reads it from standard input", show_default=False
        ),
    ],
) -> None:
    """Store a setting in the config file (checked first)."""
    current, config = session(ctx), Configuration()
    if value == "-":
        value = _read_value(key)
    checked = SETTINGS[key].check(value, key.value)
    values = read_file(config.path)
    _warn_if_secret(current, config, key, checked)
    values[key] = checked
    write_file(config.path, values)
    current.message(f"{key.value} set in {config.path}")


@app.command("unset", epilog=UNSET_EPILOG)
@handles_errors
def unset_value(ctx: typer.Context, key: KeyArgument) -> None:
    """Remove a setting from the config file."""
    current, config = session(ctx), Configuration()
    values = read_file(config.path)
    if values.pop(key, None) is None:
        current.message(f"{key.value} was not set in {config.path}")
        return
    write_file(config.path, values)
    current.message(f"{key.value} removed from {config.path}")


def setting_rows(config: Configuration) -> list[SettingRow]:
    from shared.spine.untrusted import printable, shown

    rows = []
    for key, setting in SETTINGS.items():
        found = config.lookup(key)
        # a masked connection string still reads like one with a key: escaped, not screened again
        screen = printable if key is Key.CONNECTION_STRING else shown
        value = None if found.value is None else screen(masked(key, found.value), 300)
        rows.append(SettingRow(key.value, value, found.source, setting.env))
    return rows


@app.command("show", epilog=SHOW_EPILOG)
@handles_errors
def show(ctx: typer.Context, output: Output = OutputFormat.TABLE) -> None:
    """Show each setting's value (keys masked) and where it comes from: env, file or default."""
    current, config = session(ctx), Configuration()
    report = Report(
        SettingRow,
        setting_rows(config),
        "settings",
        {"file": str(config.path)},
        [f"config file: {config.path}"],
    )
    render(report, output, current.out, session=current)
