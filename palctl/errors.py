"""Exit codes and the two errors a command ends with: bad input (2) and a failure (1).

| code | meaning |
|---|---|
| 0 | done |
| 1 | failed: nothing (or nothing more) was done |
| 2 | usage error: bad flags, values, CSV rows or settings; nothing was sent |
| 3 | partially done: some of the work was done and some not (the output says which) |
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    DONE = 0
    FAILED = 1
    USAGE = 2
    PARTIAL = 3


class PalctlError(Exception):
    """Ends a command: the message goes to standard error as `palctl: <message>`, escaped."""

    exit_code = ExitCode.FAILED


class UsageError(PalctlError):
    """Bad input from the operator (flags, a CSV file, a setting): printed, exit code 2, nothing sent."""

    exit_code = ExitCode.USAGE


class Failed(PalctlError):
    """The command could not do its work (Service Bus or the API unreachable, refused): exit code 1."""

    exit_code = ExitCode.FAILED
