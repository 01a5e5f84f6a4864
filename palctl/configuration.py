"""palctl's settings, given once: a flag, an environment variable, or palctl's config file.

Precedence, for each setting on its own: the command's flag, then the environment variable, then the
config file, then the default. The config file is TOML (`key = "value"` lines), at `$PALCTL_CONFIG`
or `config.toml` in the platform's configuration folder (`~/.config/palctl/` on Linux, honouring
`XDG_CONFIG_HOME`), written by `palctl config set` with permissions for its owner alone. A value that
holds a key (a connection string with `SharedAccessKey=`, the function key) is stored only with a
warning and is masked wherever palctl shows it.

Every value is checked when it is used (a wrong one names where it came from: the flag, the
environment variable or the file, never echoing the value) and when `palctl config set` stores it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from palctl import checks
from palctl.errors import UsageError

CONFIG_ENV = "PALCTL_CONFIG"
DEFAULT_QUEUE = "customer-onboarded"
MASK = "****"
_KEY_PART = re.compile(r"(?i)\b(SharedAccessKey|SharedAccessSignature|AccountKey)=[^;]*")


class Key(StrEnum):
    """The settings `palctl config` manages."""

    NAMESPACE = "namespace"
    CONNECTION_STRING = "connection-string"
    QUEUE = "queue"
    API_URL = "api-url"
    API_KEY = "api-key"


@dataclass(frozen=True)
class Setting:
    key: Key
    env: str
    flag: str | None
    check: Callable[[str, str], str]
    default: str | None = None
    secret: bool = False
    """Shown masked; stored with a warning (always for a key, when it holds a key for a string)."""


SETTINGS: Mapping[Key, Setting] = {
    setting.key: setting
    for setting in (
        Setting(Key.NAMESPACE, "PAL_SERVICEBUS_NAMESPACE", "--namespace", checks.namespace),
        Setting(
            Key.CONNECTION_STRING,
            "PAL_SERVICEBUS_CONNECTION_STRING",
            "--connection-string",
            checks.connection_string,
            secret=True,
        ),
        Setting(Key.QUEUE, "ONBOARDING_QUEUE", "--queue", checks.queue, default=DEFAULT_QUEUE),
        Setting(Key.API_URL, "PAL_API_URL", "--api-url", checks.api_url),
        Setting(Key.API_KEY, "PAL_API_KEY", None, checks.api_key, secret=True),
    )
}


def config_path() -> Path:
    """`$PALCTL_CONFIG`, else `config.toml` in the platform's configuration folder for palctl."""
    chosen = os.environ.get(CONFIG_ENV, "")
    if chosen:
        return Path(chosen).expanduser()
    from typer import get_app_dir

    return Path(get_app_dir("palctl")) / "config.toml"


def masked(key: Key, value: str) -> str:
    """A value as palctl shows it: a connection string's key parts and the function key masked."""
    if key is Key.API_KEY:
        return MASK
    if key is Key.CONNECTION_STRING:
        return _KEY_PART.sub(lambda m: f"{m.group(1)}={MASK}", value)
    return value


def holds_a_key(key: Key, value: str) -> bool:
    return key is Key.API_KEY or (key is Key.CONNECTION_STRING and _KEY_PART.search(value) is not None)


def read_file(path: Path) -> dict[Key, str]:
    """The settings in the config file ({} when there is none); UsageError for a malformed one."""
    import tomllib

    try:
        with path.open("rb") as stream:
            document = tomllib.load(stream)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"config file {path}: cannot be read ({type(error).__name__}: {error})") from None
    values: dict[Key, str] = {}
    for name, value in document.items():
        if name not in Key.__members__.values() or not isinstance(value, str):
            known = ", ".join(Key)
            raise UsageError(f"config file {path}: {name!r} is not a setting (a string of one of: {known})")
        values[Key(name)] = value
    return values


def _toml_string(value: str) -> str:
    escaped = []
    for char in value:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def write_file(path: Path, values: Mapping[Key, str]) -> None:
    """Write the settings, readable and writable by the owner alone, replacing the file at once."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = "# palctl settings (palctl config set/unset/show)\n" + "".join(
        f"{key.value} = {_toml_string(values[key])}\n" for key in Key if key in values
    )
    partial = path.with_name(path.name + ".tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(partial, path)


@dataclass(frozen=True)
class Resolved:
    """A setting's value and where it came from: `flag`, `env`, `file`, `default`, or None (unset)."""

    key: Key
    value: str | None
    source: str | None
    where: str
    """How to name the source in a message: the flag, the variable, or the key in the file."""


@dataclass
class Configuration:
    """The settings of one invocation; the config file is read when a setting is not given otherwise."""

    path: Path = field(default_factory=config_path)
    _file: dict[Key, str] | None = field(default=None, repr=False)

    def file_values(self) -> dict[Key, str]:
        if self._file is None:
            self._file = read_file(self.path)
        return self._file

    def lookup(self, key: Key, flag_value: str | None = None) -> Resolved:
        """Where the value comes from, unchecked: flag > environment > config file > default."""
        setting = SETTINGS[key]
        if flag_value is not None and setting.flag:
            return Resolved(key, flag_value, "flag", setting.flag)
        if os.environ.get(setting.env, ""):
            return Resolved(key, os.environ[setting.env], "env", setting.env)
        stored = self.file_values().get(key)
        if stored is not None:
            return Resolved(key, stored, "file", f"{key.value} in {self.path}")
        source = "default" if setting.default else None
        return Resolved(key, setting.default, source, setting.flag or setting.env)

    def get(self, key: Key, flag_value: str | None = None) -> str | None:
        """The checked value of a setting, or None if it is set nowhere."""
        found = self.lookup(key, flag_value)
        if found.value is None:
            return None
        return SETTINGS[key].check(found.value, found.where)
