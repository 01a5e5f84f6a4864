"""palctl run as an operator runs it (`python -m palctl` in a subprocess, output piped), where no
Azure service is needed: help and its examples, shell completion, what `--help` imports, the output
formats and their documented fields, exit codes, settings and their precedence, plain output when
piped or with NO_COLOR, and values from outside printed safely. The Service Bus and API side is in
tests/test_palctl_services.py."""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

import pytest

from palctl.commands import COMMANDS
from palctl.output import Report, columns, render
from tenants import FEDERATED_APP, NORTHWIND, TAILSPIN

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "palctl.md"
CLEARED = (
    "PAL_SERVICEBUS_NAMESPACE",
    "PAL_SERVICEBUS_CONNECTION_STRING",
    "ONBOARDING_QUEUE",
    "PAL_API_URL",
    "PAL_API_KEY",
    "NO_COLOR",
    "FORCE_COLOR",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "COLUMNS",
)
LEAF_COMMANDS = [
    ["enqueue"],
    ["consent-url"],
    ["retire"],
    ["offboard"],
    ["evidence"],
    ["link", "show"],
    ["dlq", "list"],
    ["dlq", "replay"],
    ["config", "set"],
    ["config", "unset"],
    ["config", "show"],
]
SECRET_KEY = "PLANTEDsharedAccessKey0123456789abcdefghijklmnopq="
# The fields docs/palctl.md promises, per command: (top-level fields, row fields)
FIELDS = {
    "enqueue": (
        {"queue", "dryRun", "total", "valid", "invalid", "duplicates", "sent", "rows"},
        ["row", "customerTenantId", "clientId", "messageId", "status", "error"],
    ),
    "dlq list": (
        {"queue", "count", "messages"},
        ["messageId", "reason", "description", "deliveries", "enqueued", "customerTenantId"],
    ),
    "dlq replay": ({"queue", "replayed", "notFound", "messages"}, ["messageId", "newMessageId", "status"]),
    "retire": (set(), ["status", "retired", "customerTenantId", "clientId", "outcome", "title", "detail"]),
    "offboard": (
        {"dryRun", "total", "valid", "invalid", "duplicates", "offboarded", "rows"},
        ["row", "customerTenantId", "clientId", "status", "httpStatus", "outcome", "code", "detail"],
    ),
    "evidence": (
        {"rows"},
        [
            "customerTenantId",
            "clientId",
            "linkedThroughout",
            "kind",
            "start",
            "end",
            "partnerId",
            "reason",
            "detail",
        ],
    ),
    "link show": (
        {"customerTenantId", "inStep", "outOfStep", "rows"},
        [
            "customerTenantId",
            "clientId",
            "inStep",
            "ledgerOutcome",
            "ledgerPartnerId",
            "ledgerCheckedAt",
            "offboardedAt",
            "azureLinked",
            "azurePartnerId",
            "azurePartnerName",
            "azureVersion",
            "azureUpdatedAt",
            "azureState",
            "azureErrorCode",
            "azureError",
            "difference",
        ],
    ),
    "consent-url": (set(), ["url", "customerTenantId", "clientId", "redirectUri", "authority"]),
    "config show": ({"file", "settings"}, ["key", "value", "source", "env"]),
}


@pytest.fixture(autouse=True)
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file of the test's own (not yet written), and none of palctl's variables set."""
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "palctl-config" / "config.toml"
    monkeypatch.setenv("PALCTL_CONFIG", str(path))
    return path


def palctl(
    *argv: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m palctl ARGV` with standard input, output and error piped."""
    return subprocess.run(
        [sys.executable, "-m", "palctl", *argv],
        cwd=ROOT,
        env=os.environ | (env or {}),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def in_a_terminal(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`python -m palctl ARGV` with standard output and error on a pseudo-terminal: (exit code, what
    the terminal got)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "palctl", *argv],
        cwd=ROOT,
        env=os.environ | {"TERM": "xterm-256color", "COLUMNS": "150"} | (env or {}),
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    received = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        received += chunk
    os.close(controller)
    return process.wait(timeout=120), received.decode("utf-8", "replace")


def plain(result: subprocess.CompletedProcess[str]) -> None:
    """No ANSI escape sequence (nor any other control character but the line end) anywhere."""
    for stream in (result.stdout, result.stderr):
        assert "\x1b" not in stream, stream
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", stream), stream


def write_csv(
    path: Path, *rows: str, header: str = "customerTenantId,clientId,identityType,partnerId"
) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


# --- help, completion, import cost ---------------------------------------------------------------


@pytest.mark.parametrize("command", LEAF_COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = palctl(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: palctl {' '.join(command)} ")
    examples = result.stdout.split("Examples:", 1)[1]
    assert f"palctl {' '.join(command)} " in examples
    plain(result)


def test_the_root_help_lists_every_command_and_the_exit_codes() -> None:
    result = palctl("--help")
    assert result.returncode == 0
    listed = result.stdout.split("Commands:", 1)[1]
    for name, entry in COMMANDS.items():
        assert re.search(rf"^  {re.escape(name)} +{re.escape(entry.summary)}$", listed, re.M), name
    assert "Exit codes: 0 done, 1 failed, 2 usage error (nothing sent), 3 partially done." in result.stdout
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout
    nothing = palctl()
    assert nothing.returncode == 2 and "Commands:" in nothing.stderr  # the help, as a usage error


def test_each_summary_is_its_commands_own_short_help() -> None:
    from typer.main import get_command

    from palctl.cli import app

    root = get_command(app)
    ctx = root.make_context("palctl", ["--help"], resilient_parsing=True)
    for name, entry in COMMANDS.items():
        command = root.get_command(ctx, name)  # type: ignore[attr-defined]
        assert command is not None and command.get_short_help_str(200) == entry.summary, name


def test_help_imports_no_command_module_rich_or_azure_sdk() -> None:
    probe = (
        "import io, json, sys\n"
        "from palctl.cli import main\n"
        "sys.stdout = io.StringIO()\n"
        "code = main([{args}])\n"
        "sys.stdout = sys.__stdout__\n"
        "heavy = ('palctl.commands.', 'rich', 'azure', 'aiohttp', 'pydantic', 'asyncio')\n"
        "print(json.dumps([code, sorted(m for m in sys.modules if m.startswith(heavy))]))\n"
    )
    for args, allowed in (("'--help'", set()), ("'dlq', 'list', '--help'", {"palctl.commands.dlq"})):
        result = subprocess.run(
            [sys.executable, "-c", probe.format(args=args)], cwd=ROOT, capture_output=True, text=True
        )
        code, loaded = json.loads(result.stdout)
        assert code == 0
        assert {m for m in loaded if not m.startswith("pydantic")} == allowed, loaded


def test_shell_completion_completes_commands_options_and_setting_names() -> None:
    script = palctl("--show-completion", "bash")
    assert script.returncode == 0 and "_PALCTL_COMPLETE=complete_bash" in script.stdout

    def complete(words: str) -> list[str]:
        index = len(words.split()) - (0 if words.endswith(" ") else 1)  # the word being completed
        env = {"_PALCTL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(index)}
        result = palctl(env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("palctl dl") == ["dlq"]
    assert "--output" in complete("palctl dlq list --ou")
    assert complete("palctl config set ") == ["namespace", "connection-string", "queue", "api-url", "api-key"]


# --- output formats and their documented fields --------------------------------------------------


def documented(command: str) -> str:
    """The section of docs/palctl.md about `command`'s output."""
    return DOCS.read_text(encoding="utf-8").split(f"### `{command}`", 1)[1].split("\n### ", 1)[0]


@pytest.mark.parametrize("command", FIELDS)
def test_docs_name_every_json_field(command: str) -> None:
    section = documented(command)
    top, rows = FIELDS[command]
    items = next((name for name in top if name in ("rows", "messages", "settings")), None)
    for name in top:
        assert f"| `{name}` |" in section, (command, name)
    for name in rows:
        assert (f"`{items}[].{name}`" if items else f"`{name}`") in section, (command, name)


def test_consent_url_in_every_format() -> None:
    argv = ["consent-url", "--tenant", NORTHWIND.upper(), "--client-id", FEDERATED_APP]
    url = f"https://login.microsoftonline.com/{NORTHWIND}/adminconsent?client_id={FEDERATED_APP}"
    table = palctl(*argv)
    assert (table.returncode, table.stdout, table.stderr) == (0, url + "\n", "")
    document = json.loads(palctl(*argv, "-o", "json").stdout)
    assert list(document) == FIELDS["consent-url"][1]
    assert document == {
        "url": url,
        "customerTenantId": NORTHWIND,
        "clientId": FEDERATED_APP,
        "redirectUri": None,
        "authority": "https://login.microsoftonline.com",
    }
    lines = palctl(*argv, "--output", "CSV").stdout.splitlines()
    assert lines[0] == ",".join(FIELDS["consent-url"][1])
    assert lines[1] == f"{url},{NORTHWIND},{FEDERATED_APP},,https://login.microsoftonline.com"


def test_enqueue_dry_run_reports_every_row_in_json_and_csv(tmp_path: Path) -> None:
    customers = write_csv(
        tmp_path / "customers.csv",
        f"{NORTHWIND},{FEDERATED_APP},federated,",
        f"not-a-guid,{FEDERATED_APP},federated,",
        f"{NORTHWIND.upper()},{FEDERATED_APP},federated,",
        f"{TAILSPIN},{FEDERATED_APP},federated,1234567",
    )
    result = palctl("enqueue", "--csv", str(customers), "--dry-run", "--skip-invalid", "-o", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    top, row_fields = FIELDS["enqueue"]
    assert set(document) == top and all(list(row) == row_fields for row in document["rows"])
    summary = {k: v for k, v in document.items() if k != "rows"}
    assert summary == {
        "queue": "customer-onboarded",
        "dryRun": True,
        "total": 4,
        "valid": 3,
        "invalid": 1,
        "duplicates": 1,
        "sent": 0,
    }
    assert [(r["row"], r["status"]) for r in document["rows"]] == [
        (2, "valid"),
        (3, "invalid"),
        (4, "duplicate"),
        (5, "valid"),
    ]
    assert (
        document["rows"][1]["error"]
        == "row 3: customerTenantId: must be a GUID like 00000000-0000-0000-0000-000000000000"
    )
    assert document["rows"][3]["messageId"].startswith(f"onboard:{TAILSPIN}:{FEDERATED_APP}:1234567:")

    as_csv = palctl(
        "enqueue", "--csv", "-", "--dry-run", "--skip-invalid", "-o", "csv", stdin=customers.read_text()
    )
    assert as_csv.returncode == 0
    lines = as_csv.stdout.splitlines()
    assert lines[0] == ",".join(row_fields) and len(lines) == 5
    assert lines[2].startswith("3,not-a-guid,") and lines[2].endswith(
        ",invalid,row 3: customerTenantId: must be a GUID like 00000000-0000-0000-0000-000000000000"
    )
    plain(as_csv)


def test_enqueue_table_lists_the_problems_and_a_summary(tmp_path: Path) -> None:
    customers = write_csv(
        tmp_path / "c.csv",
        f"{NORTHWIND},{FEDERATED_APP},federated,",
        f"{NORTHWIND},{FEDERATED_APP},federated,",
    )
    result = palctl("enqueue", "--csv", str(customers), "--dry-run")
    assert result.returncode == 0
    assert (
        result.stdout
        == "row 3: the same message as row 2 (sent once)\n1 valid message(s); nothing sent (--dry-run)\n"
    )


# --- exit codes and bad input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["enqueue"], "give --tenant (one customer) or --csv FILE (many)"),
        (["enqueue", "--tenant", NORTHWIND], "--client-id is required with --tenant"),
        (["enqueue", "--csv", "x.csv", "--client-id", FEDERATED_APP], "--client-id: for --tenant only"),
        (["enqueue", "--csv", "no-such-file.csv"], "--csv: no such file"),
        (
            ["enqueue", "--tenant", NORTHWIND, "--client-id", FEDERATED_APP, "--type", "magic"],
            "'magic' is not one of",
        ),
        (["enqueue", "--tenant", NORTHWIND, "--client-id", FEDERATED_APP], "no Service Bus given"),
        (
            ["enqueue", "--tenant", NORTHWIND, "--client-id", FEDERATED_APP, "--namespace", "sb://x/"],
            "--namespace must be a host name",
        ),
        (
            [
                "dlq",
                "list",
                "--namespace",
                "a.servicebus.windows.net",
                "--connection-string",
                "Endpoint=sb://a/",
            ],
            "give --namespace or --connection-string, not both",
        ),
        (
            ["dlq", "list", "--connection-string", "Endpoint=sb://a/", "--queue", "bad queue"],
            "--queue must be a queue name",
        ),
        (["dlq", "list", "--max", "0"], "Invalid value for '--max'"),
        (["dlq", "replay", "--connection-string", "Endpoint=sb://a/"], "give --all or --message-id ID"),
        (["dlq", "lsit"], "No such command 'lsit'. Did you mean 'list'?"),
        (
            ["consent-url", "--tenant", NORTHWIND, "--client-id", FEDERATED_APP, "-o", "xml"],
            "'xml' is not one of",
        ),
        (["retire", "--tenant", NORTHWIND, "--client-id", FEDERATED_APP], "no API given"),
        (["offboard"], "give --tenant (one customer) or --csv FILE (many)"),
        (["offboard", "--tenant", "contoso.com"], "arguments: customerTenantId: must be a GUID"),
        (["offboard", "--tenant", NORTHWIND, "--client-id", "app"], "arguments: clientId: must be a GUID"),
        (["offboard", "--csv", "x.csv", "--client-id", FEDERATED_APP], "--client-id: for --tenant only"),
        (["offboard", "--csv", "no-such-file.csv"], "--csv: no such file"),
        (["offboard", "--tenant", NORTHWIND], "no API given"),
        (["config", "set", "queue", "two words"], "queue must be a queue name"),
        (["config", "set", "colour", "red"], "'colour' is not one of"),
    ],
)
def test_bad_input_is_a_usage_error_with_a_clear_message(argv: list[str], message: str) -> None:
    result = palctl(*argv)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert message in result.stderr
    plain(result)


def test_invalid_rows_send_nothing_and_exit_2(tmp_path: Path) -> None:
    customers = write_csv(
        tmp_path / "c.csv", f"{NORTHWIND},{FEDERATED_APP},secret,", f"{TAILSPIN},{FEDERATED_APP},federated,"
    )
    result = palctl(
        "enqueue", "--csv", str(customers), "-o", "json", "--connection-string", "Endpoint=sb://unused/"
    )
    assert result.returncode == 2
    assert "1 invalid row(s); nothing sent (fix them, or use --skip-invalid)" in result.stderr
    document = json.loads(result.stdout)
    assert (document["sent"], [r["status"] for r in document["rows"]]) == (0, ["invalid", "valid"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"customerTenantId,clientId\n", "--csv: the file has a header and no rows"),
        (b"tenant,app\nx,y\n", "CSV header: missing column(s) clientId, customerTenantId"),
        (b"customerTenantId,clientId,colour\nx,y,z\n", "CSV header: unknown column(s) colour"),
        (b"customerTenantId,clientId\n\xff\xfe,x\n", "not UTF-8 text"),
    ],
)
def test_a_bad_csv_file_is_a_usage_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = palctl("enqueue", "--csv", str(path), "--dry-run")
    assert (result.returncode, result.stdout) == (2, "")
    assert message in result.stderr


def test_a_row_with_more_values_than_columns_is_invalid(tmp_path: Path) -> None:
    customers = write_csv(tmp_path / "c.csv", f"{NORTHWIND},{FEDERATED_APP},federated,,extra")
    result = palctl("enqueue", "--csv", str(customers), "--dry-run")
    assert result.returncode == 2
    assert "invalid row 2: more values than columns" in result.stdout


def test_offboard_validates_every_row_before_calling_anything(tmp_path: Path) -> None:
    ended = write_csv(
        tmp_path / "ended.csv",
        f"{NORTHWIND},,CRM-1",
        f"not-a-guid,{FEDERATED_APP},",
        f"{NORTHWIND.upper()},,CRM-2",
        f"{TAILSPIN},{FEDERATED_APP},",
        header="customerTenantId,clientId,correlationId",
    )
    env = {"PAL_API_URL": "https://unused.example", "PAL_API_KEY": "k1"}
    refused = palctl("offboard", "--csv", str(ended), "-o", "json", env=env)
    assert refused.returncode == 2
    assert "1 invalid row(s); nothing called (fix them first)" in refused.stderr
    document = json.loads(refused.stdout)
    top, row_fields = FIELDS["offboard"]
    assert set(document) == top and all(list(row) == row_fields for row in document["rows"])
    assert [(r["row"], r["status"], r["httpStatus"]) for r in document["rows"]] == [
        (2, "valid", None),
        (3, "invalid", None),
        (4, "duplicate", None),
        (5, "valid", None),
    ]
    assert document["rows"][1]["detail"] == (
        "row 3: customerTenantId: must be a GUID like 00000000-0000-0000-0000-000000000000"
    )
    assert document["rows"][2]["detail"] == "the same as row 2"

    fixed = ended.read_text().replace("not-a-guid", TAILSPIN.upper())  # now a repeat of row 5 as well
    dry = palctl("offboard", "--csv", "-", "--dry-run", "-o", "csv", stdin=fixed)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == ",".join(row_fields) and len(lines) == 5
    assert lines[3] == f"4,{NORTHWIND.upper()},,duplicate,,,,the same as row 2"
    table = palctl("offboard", "--csv", "-", "--dry-run", stdin=fixed)
    assert table.stdout.splitlines()[-1] == "2 valid offboarding(s); nothing called (--dry-run)"
    plain(table)


def test_offboard_against_an_unreachable_api_offboards_nothing_exit_1() -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        result = palctl(
            "offboard", "--tenant", NORTHWIND, "-o", "json", env={"PAL_API_URL": url, "PAL_API_KEY": "k1"}
        )
    assert result.returncode == 1
    (row,) = json.loads(result.stdout)["rows"]
    assert (row["status"], row["httpStatus"], row["detail"]) == (
        "not-offboarded",
        None,
        "cannot reach the API (ClientConnectorError)",
    )


def test_an_unreachable_api_is_a_failure_exit_1() -> None:
    with socket.socket() as bound:  # a port of ours that nobody listens on: the connection is refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        result = palctl(
            "retire",
            "--tenant",
            NORTHWIND,
            "--client-id",
            FEDERATED_APP,
            env={"PAL_API_URL": url, "PAL_API_KEY": "k1"},
        )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == "palctl: cannot reach the API (ClientConnectorError)\n"


# --- settings -----------------------------------------------------------------------------------


def test_config_set_show_unset(config_file: Path) -> None:
    assert palctl("config", "set", "queue", "link-verify").returncode == 0
    assert palctl("config", "set", "api-url", "https://func-pal.example.com/api/").returncode == 0
    stored = palctl("config", "set", "api-key", "-", stdin="PLANTED-function-key-42\n")
    assert stored.returncode == 0 and "warning: the function key is a secret" in stored.stderr
    connection = (
        f"Endpoint=sb://pal.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={SECRET_KEY}"
    )
    stored = palctl("config", "set", "connection-string", connection)
    assert stored.returncode == 0
    assert "warning: the connection string holds a key (SharedAccessKey)" in stored.stderr
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600

    shown = json.loads(
        palctl("config", "show", "-o", "json", env={"PAL_API_URL": "http://localhost:7071"}).stdout
    )
    assert shown["file"] == str(config_file)
    assert {s["key"]: (s["value"], s["source"]) for s in shown["settings"]} == {
        "namespace": (None, None),
        "connection-string": (
            "Endpoint=sb://pal.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=****",
            "file",
        ),
        "queue": ("link-verify", "file"),
        "api-url": ("http://localhost:7071", "env"),
        "api-key": ("****", "file"),
    }
    for output in ("table", "json", "csv"):
        printed = palctl("config", "show", "-o", output)
        assert SECRET_KEY not in printed.stdout and "PLANTED-function-key-42" not in printed.stdout
        assert "****" in printed.stdout

    assert palctl("config", "unset", "queue").returncode == 0
    assert "was not set" in palctl("config", "unset", "queue").stderr
    text = config_file.read_text()
    assert 'api-url = "https://func-pal.example.com"' in text and "queue" not in text


def test_precedence_flag_then_environment_then_file_then_default(tmp_path: Path) -> None:
    customers = write_csv(tmp_path / "c.csv", f"{NORTHWIND},{FEDERATED_APP},federated,")
    dry_run = ["enqueue", "--csv", str(customers), "--dry-run", "-o", "json"]

    def queue(*extra: str, env: dict[str, str] | None = None) -> str:
        result = palctl(*dry_run, *extra, env=env)
        assert result.returncode == 0, result.stderr
        return str(json.loads(result.stdout)["queue"])

    assert queue() == "customer-onboarded"
    assert palctl("config", "set", "queue", "from-file").returncode == 0
    assert queue() == "from-file"
    assert queue(env={"ONBOARDING_QUEUE": "from-env"}) == "from-env"
    assert queue("--queue", "from-flag", env={"ONBOARDING_QUEUE": "from-env"}) == "from-flag"


def test_the_service_bus_comes_from_the_first_level_that_names_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from palctl.bus import BusFlags, bus_target
    from palctl.configuration import Configuration, Key, write_file

    config = Configuration()
    write_file(config.path, {Key.NAMESPACE: "file.servicebus.windows.net"})
    assert bus_target(Configuration(), BusFlags()).namespace == "file.servicebus.windows.net"
    monkeypatch.setenv("PAL_SERVICEBUS_CONNECTION_STRING", "Endpoint=sb://env/;SharedAccessKey=k")
    assert bus_target(Configuration(), BusFlags()).connection_string == "Endpoint=sb://env/;SharedAccessKey=k"
    flagged = bus_target(Configuration(), BusFlags(namespace="Flag.servicebus.windows.net"))
    assert (flagged.namespace, flagged.connection_string) == ("flag.servicebus.windows.net", None)
    assert "SharedAccessKey" not in repr(bus_target(Configuration(), BusFlags()))


def test_a_malformed_config_file_or_setting_is_a_usage_error_naming_where(config_file: Path) -> None:
    config_file.parent.mkdir(parents=True)
    config_file.write_text('queue = "ok"\ncolour = "red"\n')
    result = palctl("config", "show")
    assert result.returncode == 2 and f"config file {config_file}: 'colour' is not a setting" in result.stderr
    config_file.write_text("queue = [unclosed\n")
    assert "cannot be read (TOMLDecodeError" in palctl("config", "show").stderr
    config_file.write_text('api-url = "http://func.example.com"\n')
    result = palctl("retire", "--tenant", NORTHWIND, "--client-id", FEDERATED_APP, env={"PAL_API_KEY": "k"})
    assert result.returncode == 2
    assert f"api-url in {config_file} must be an https:// URL" in result.stderr
    result = palctl(
        "retire", "--tenant", NORTHWIND, "--client-id", FEDERATED_APP, env={"PAL_API_URL": "ftp://x"}
    )
    assert "PAL_API_URL must be an https:// URL" in result.stderr


# --- terminals and untrusted values --------------------------------------------------------------


def test_colour_only_on_a_terminal_without_no_color() -> None:
    code, screen = in_a_terminal("config", "show")
    assert code == 0 and "\x1b[" in screen and "customer-onboarded" in screen  # styled on a terminal
    code, screen = in_a_terminal("config", "show", env={"NO_COLOR": "1"})
    assert code == 0 and "\x1b" not in screen and "customer-onboarded" in screen
    code, screen = in_a_terminal("config", "show", env={"TERM": "dumb"})
    assert code == 0 and "\x1b" not in screen
    plain(palctl("config", "show"))


def test_values_from_a_csv_file_are_escaped_screened_and_never_markup(tmp_path: Path) -> None:
    planted = "Qz87Q~PLANTED-secret-in-a-csv-0123456789abc"
    forged = '"=HYPERLINK(""x"")\x1b[2J[bold red]forged[/]\x85ALERT"'
    customers = write_csv(
        tmp_path / "c.csv", f"{forged},{FEDERATED_APP},federated,", f"{NORTHWIND},{planted},federated,"
    )
    for output in ("table", "json", "csv"):
        result = palctl("enqueue", "--csv", str(customers), "--dry-run", "-o", output)
        assert result.returncode == 2
        plain(result)
        assert "\x85" not in result.stdout and planted not in result.stdout + result.stderr
        assert not any(line.startswith("ALERT") for line in result.stdout.splitlines())
    document = json.loads(palctl("enqueue", "--csv", str(customers), "--dry-run", "-o", "json").stdout)
    tenant = document["rows"][0]["customerTenantId"]
    assert tenant == '=HYPERLINK("x")\\x1b[2J[bold red]forged[/]\\x85ALERT'
    assert document["rows"][1]["clientId"] == "<redacted: looks like a credential>"
    as_csv = palctl("enqueue", "--csv", str(customers), "--dry-run", "-o", "csv").stdout.splitlines()
    assert as_csv[1].startswith('2,"\'=HYPERLINK(""x"")\\x1b[2J[bold red]forged[/]\\x85ALERT",')


# --- the renderer --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    message_id: str
    count: int | None = field(metadata={"justify": "right"})
    ok: bool


def test_render_writes_typed_rows_in_each_format() -> None:
    rows = [Sample("[bold]m1[/bold]", 3, True), Sample("-1+2", None, False)]
    report = Report(Sample, rows, "items", {"queue": "q"}, ["2 item(s)"])
    assert [c.name for c in columns(Sample)] == ["messageId", "count", "ok"]

    out = StringIO()
    render(report, "json", out)
    assert json.loads(out.getvalue()) == {
        "queue": "q",
        "items": [
            {"messageId": "[bold]m1[/bold]", "count": 3, "ok": True},
            {"messageId": "-1+2", "count": None, "ok": False},
        ],
    }
    out = StringIO()
    render(report, "csv", out)
    assert out.getvalue() == "messageId,count,ok\n[bold]m1[/bold],3,true\n'-1+2,,false\n"
    out = StringIO()
    render(report, "table", out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["messageId", "count", "ok"]
    assert lines[2].split() == ["[bold]m1[/bold]", "3", "true"] and lines[3].split() == ["-1+2", "-", "false"]
    assert lines[-1] == "2 item(s)" and "\x1b" not in out.getvalue()

    empty = StringIO()
    render(Report(Sample, [], "items"), "csv", empty)
    assert empty.getvalue() == "messageId,count,ok\n"
    with pytest.raises(TypeError):
        columns(str)
