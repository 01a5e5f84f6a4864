"""Where palctl writes, and how: a Rich console per stream, colour and a progress bar only on a
terminal.

A stream is *decorated* (colours, styles, a live progress bar) only when it is a terminal, `NO_COLOR`
is unset (or empty) and `TERM` is not `dumb`; otherwise Rich writes plain text, with no ANSI escape
sequence at all (`FORCE_COLOR` and `TTY_COMPATIBLE` are not consulted: palctl's output is decided by
where it goes). Rich's markup and emoji codes are off on every console: a value from outside, such as
a dead-letter reason written as `[bold]`, is printed as it is, never interpreted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

PLAIN_WIDTH = 10_000
"""The width of a console that is not a terminal: tables are never wrapped for a file or a pipe."""


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def decorated(stream: TextIO) -> bool:
    """Colours and live output on this stream: a terminal, without NO_COLOR and not a dumb one."""
    if os.environ.get("NO_COLOR", "") != "":
        return False
    if os.environ.get("TERM", "").lower() in ("dumb", "unknown"):
        return False
    return is_terminal(stream)


def console_for(stream: TextIO) -> Console:
    """A Rich console on `stream` that never interprets markup or emoji codes, and writes no escape
    sequence unless the stream is decorated."""
    from rich.console import Console

    fancy = decorated(stream)
    terminal = is_terminal(stream)
    return Console(
        file=stream,
        force_terminal=fancy,
        force_interactive=fancy,
        color_system="auto" if fancy else None,
        no_color=not fancy,
        markup=False,
        emoji=False,
        highlight=False,
        width=None if terminal else PLAIN_WIDTH,
        soft_wrap=False,
    )


@dataclass
class Session:
    """One invocation's streams: data on `out`, messages and the progress bar on `err`."""

    out: TextIO
    err: TextIO
    _consoles: dict[int, Console] = field(default_factory=dict, repr=False)

    @classmethod
    def default(cls) -> Session:
        return cls(sys.stdout, sys.stderr)

    def console(self, stream: TextIO | None = None) -> Console:
        """The console of `stream` (default: `out`), made once."""
        stream = self.out if stream is None else stream
        if id(stream) not in self._consoles:
            self._consoles[id(stream)] = console_for(stream)
        return self._consoles[id(stream)]

    def show(self, renderable: RenderableType, stream: TextIO | None = None) -> None:
        """Print a Rich renderable; on a file or a pipe without trailing spaces."""
        stream = self.out if stream is None else stream
        console = self.console(stream)
        if is_terminal(stream):
            console.print(renderable)
            return
        with console.capture() as captured:
            console.print(renderable)
        stream.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
        stream.flush()

    def line(self, text: str, *, style: str | None = None, stream: TextIO | None = None) -> None:
        """One line of our own text (values in it escaped by the caller), never wrapped."""
        from rich.text import Text

        stream = self.out if stream is None else stream
        self.console(stream).print(Text(text, style=style or ""), soft_wrap=True)

    def message(self, text: str, *, style: str | None = None) -> None:
        """`palctl: <text>` on standard error, control characters escaped."""
        from shared.spine.untrusted import escape_controls

        self.line(f"palctl: {escape_controls(text)}", style=style, stream=self.err)

    def warn(self, text: str) -> None:
        self.message(f"warning: {text}", style="yellow")

    @contextmanager
    def progress(self, total: int, description: str) -> Iterator[Callable[[int], None]]:
        """A progress bar on standard error while the block runs, if standard error is decorated;
        yields the function that advances it (a no-op without a bar)."""
        if not decorated(self.err) or total <= 0:
            yield lambda _count: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console(self.err)) as bar:
            task = bar.add_task(description, total=total)
            yield lambda count: bar.advance(task, count)
