"""palctl's attribution commands run as an operator runs them (`python -m palctl`, output piped, or
`palctl.cli.main` for the many small cases): `advise` and `grants`, which need no service; `audit` and
`attribution report` against the local Functions host serving the HTTP API (the broker, the Power
Platform sandbox of sandbox/scenarios/attribution.json, Fabrikam linked); and against a stub server
for what the real API cannot be made to do on demand (hostile values, a run that never ends)."""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import json
import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from test_palctl_cli import CLEARED, in_a_terminal, plain
from test_palctl_cli import palctl as run_palctl

from palctl.cli import main
from palctl.commands.advise import KINDS, PRODUCTS
from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from sandbox.scenario import Scenario, load_scenario
from shared.attribution.advisor import IdentityKind, advice_document, advise
from shared.attribution.rules import Product
from shared.links.service import LinkService
from shared.spine.envelope import Source
from tenants import FABRIKAM, FABRIKAM_APP, LITWARE, ROOT, onboarding_message

ATTRIBUTION_SCENARIO = ROOT / "sandbox" / "scenarios" / "attribution.json"
# Fabrikam's canvas apps in the attribution scenario: one our service principal owns, one a user does
SP_APP = "86e43e11-c4f5-482f-b1a7-bf6a8a962c9e"
USER_APP = "ed260509-95dc-473e-a54e-929496959016"
CSV_HEADER = (
    "customerTenantId,product,environmentId,resourceId,name,status,attributedTo,remedy,checkedAt,statusSince"
)
PLANTED = "Pq98Q~PLANTED-api-secret-0123456789abcdefg"
STUB_TENANT = "d4dda931-e8e4-4937-8f81-9c578f5d5d03"


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(ATTRIBUTION_SCENARIO)


@pytest.fixture(autouse=True)
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file of the test's own (not yet written), and none of palctl's variables set."""
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "palctl-config" / "config.toml"
    monkeypatch.setenv("PALCTL_CONFIG", str(path))
    return path


def in_process(*argv: str) -> tuple[int, str]:
    """`palctl ARGV` through `palctl.cli.main`: the exit code and standard output."""
    out = io.StringIO()
    return main(list(argv), out), out.getvalue()


async def palctl(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m palctl ARGV`, piped, while this test's event loop goes on serving."""
    return await asyncio.to_thread(run_palctl, *argv, env=env)


# --- help ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [["advise"], ["audit"], ["attribution", "report"], ["grants"]], ids=" ".join
)
def test_every_attribution_command_has_help_with_an_example(command: list[str]) -> None:
    result = run_palctl(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: palctl {' '.join(command)} ")
    assert f"palctl {' '.join(command)} " in result.stdout.split("Examples:", 1)[1]
    plain(result)


def test_the_help_names_every_product_and_identity_kind() -> None:
    assert PRODUCTS == tuple(product.value for product in Product)
    assert KINDS == tuple(kind.value for kind in IdentityKind)
    help_text = " ".join(run_palctl("advise", "--help").stdout.split())
    for value in (*PRODUCTS, *KINDS):
        assert value in help_text.replace("- ", "-"), value


def documented(command: str) -> str:
    """The section of docs/palctl.md about `command`'s output."""
    text = (ROOT / "docs" / "palctl.md").read_text(encoding="utf-8")
    return text.split(f"### `{command}`", 1)[1].split("\n### ", 1)[0]


def test_the_docs_name_every_field_and_link_the_customers_guide() -> None:
    from palctl.attribution_data import CustomerCoverage, FindingRow
    from palctl.commands.audit import Audit
    from palctl.commands.grants import Grant
    from palctl.output import columns

    advice = advice_document(advise(Product.CANVAS_APP, IdentityKind.USER_ACCOUNT, True))
    expected = {
        "advise": [f"`{name}`" for name in advice],
        "audit": [f"`{column.name}`" for column in columns(Audit)] + ["`run`"],
        "attribution report": [f"`findings[].{column.name}`" for column in columns(FindingRow)]
        + [f"`customers[].{column.name}`" for column in columns(CustomerCoverage)]
        + ["`run`", "`total`", "`changes`", "`coverageBelow`", "`needsCustomerAction`"],
        "grants": [f"`grants[].{column.name}`" for column in columns(Grant)] + ["`customerTenantId`"],
    }
    for command, names in expected.items():
        section = documented(command)
        assert all(name in section for name in names), (command, [n for n in names if n not in section])
    assert CSV_HEADER in documented("attribution report")
    assert "(customer-grants.md)" in (ROOT / "docs" / "palctl.md").read_text(encoding="utf-8")
    guide = (ROOT / "docs" / "customer-grants.md").read_text(encoding="utf-8")
    for grant in ("pac admin application register", "New-PowerAppManagementApp", "addAppUser"):
        assert grant in guide
    assert "needs-customer-action" in guide and "Service principals can use Fabric APIs" in guide


# --- advise ----------------------------------------------------------------------------------------

EXAMPLE = ["advise", "--product", "canvas-app", "--delivered-by", "service-principal", "--outside-solution"]


def test_advise_a_canvas_app_a_service_principal_delivers_outside_a_solution() -> None:
    result = run_palctl(*EXAMPLE)
    assert (result.returncode, result.stderr) == (0, "")
    plain(result)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("question") and "canvas-app" in lines[0] and "outside a solution" in lines[0]
    assert re.match(
        r"who counts +For a Power Apps canvas app, the PAL-linked identity must be an owner", lines[1]
    )
    assert re.fullmatch(r"verdict +does-not-count-yet", lines[2])
    assert re.match(r"why +A service principal does not make an application outside a solution", lines[3])
    steps = result.stdout.split("\nsteps\n", 1)[1].split("\ncautions\n", 1)[0]
    numbered = re.findall(r"^(\d+)\. ", steps, re.M)
    assert numbered == [str(n) for n in range(1, len(numbered) + 1)] and len(numbered) >= 3
    assert "pac admin application register" in steps and "Deliver it in a managed solution instead" in steps
    cautions = result.stdout.split("\ncautions\n", 1)[1]
    assert re.search(r"^- +Not possible: make the service principal a co-owner", cautions, re.M)


def test_advise_json_is_the_advisors_document() -> None:
    result = run_palctl(*EXAMPLE, "-o", "json")
    assert result.returncode == 0, result.stderr
    expected = advice_document(advise(Product.CANVAS_APP, IdentityKind.SERVICE_PRINCIPAL, False))
    assert json.loads(result.stdout) == expected
    assert expected["verdict"] == "does-not-count-yet" and result.stdout.isascii()


@pytest.mark.parametrize("product", list(Product))
@pytest.mark.parametrize("kind", list(IdentityKind))
def test_every_product_and_identity_is_answered(product: Product, kind: IdentityKind) -> None:
    for placement in ("--in-solution", "--outside-solution"):
        code, output = in_process(
            "advise", "--product", product.value, "--delivered-by", kind.value, placement, "-o", "json"
        )
        assert code == 0
        document = json.loads(output)
        assert (document["product"], document["deliveredBy"]) == (product.value, kind.value)
        assert document["inSolution"] is (placement == "--in-solution")
    code, table = in_process("advise", "--product", product.value.upper(), "--delivered-by", kind.value)
    assert code == 0 and re.search(r"^verdict +(counts|does-not-count-yet|not-covered)$", table, re.M)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--product", "canvas", "--delivered-by", "user-account"], "--product must be one of: canvas-app, "),
        (
            ["--product", "canvas-app", "--delivered-by", "robot"],
            "--delivered-by must be one of: service-princ",
        ),
        (["--product", "canvas-app"], "give --product and --delivered-by (or --all"),
        (["--delivered-by", "user-account"], "give --product and --delivered-by (or --all"),
    ],
)
def test_advise_refuses_what_it_does_not_know_with_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = in_process("advise", *argv)
    assert (code, output) == (2, "")
    assert message in capsys.readouterr().err


def test_advise_all_lists_every_combination_as_csv() -> None:
    result = run_palctl("advise", "--all", "--output", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == [
        "product",
        "deliveredBy",
        "inSolution",
        "verdict",
        "whoCounts",
        "reason",
        "steps",
        "cautions",
    ]
    combinations = {(r["product"], r["deliveredBy"], r["inSolution"]) for r in rows}
    assert len(rows) == len(combinations) == len(Product) * len(IdentityKind) * 2
    example = next(r for r in rows if (r["product"], r["deliveredBy"], r["inSolution"]) == EXAMPLE_ROW)
    assert example["verdict"] == "does-not-count-yet" and example["steps"].startswith("1. ")
    narrowed = json.loads(run_palctl("advise", "--all", "--product", "cloud-flow", "-o", "json").stdout)
    assert [(a["deliveredBy"], a["inSolution"]) for a in narrowed["advice"]] == [
        ("service-principal", False),
        ("service-principal", True),
        ("user-account", False),
        ("user-account", True),
    ]


EXAMPLE_ROW = ("canvas-app", "service-principal", "false")


# --- grants ----------------------------------------------------------------------------------------


def test_grants_print_the_exact_commands_for_the_customers_admin() -> None:
    result = run_palctl("grants", "--tenant", FABRIKAM.upper(), "--client-id", FABRIKAM_APP.upper())
    assert (result.returncode, result.stderr) == (0, "")
    plain(result)
    assert f"pac admin application register --application-id {FABRIKAM_APP}" in result.stdout
    assert f"New-PowerAppManagementApp -ApplicationId {FABRIKAM_APP}" in result.stdout
    assert "Service principals can access read-only admin APIs" in result.stdout
    assert "Service principals can use Fabric APIs" in result.stdout
    assert "docs/customer-grants.md" in result.stdout and FABRIKAM in result.stdout

    document = json.loads(
        run_palctl("grants", "--tenant", FABRIKAM, "--client-id", FABRIKAM_APP, "-o", "json").stdout
    )
    assert (document["customerTenantId"], document["clientId"]) == (FABRIKAM, FABRIKAM_APP)
    grants = document["grants"]
    assert all(set(grant) == {"step", "command", "alternative"} for grant in grants)
    assert grants[0]["command"] == f"pac admin application register --application-id {FABRIKAM_APP}"
    assert grants[0]["alternative"] == f"New-PowerAppManagementApp -ApplicationId {FABRIKAM_APP}"
    assert any("addAppUser" in grant["step"] for grant in grants)
    assert any(
        FABRIKAM_APP in grant["command"] and grant["command"].startswith("az ad group") for grant in grants
    )
    rows = list(
        csv.reader(
            io.StringIO(
                run_palctl("grants", "--tenant", FABRIKAM, "--client-id", FABRIKAM_APP, "-o", "csv").stdout
            )
        )
    )
    assert rows[0] == ["step", "command", "alternative"] and len(rows) == len(grants) + 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tenant", FABRIKAM, "--client-id", "not-a-guid"], "--client-id must be a GUID"),
        (["--tenant", "fabrikam.onmicrosoft.com", "--client-id", FABRIKAM_APP], "--tenant must be a GUID"),
        (
            ["--tenant", FABRIKAM, "--client-id", "00000000-0000-0000-0000-000000000000"],
            "--client-id must be a GUID",
        ),
        (["--tenant", FABRIKAM], "Missing option '--client-id'"),
    ],
)
def test_grants_refuse_a_bad_guid_with_exit_2(argv: list[str], message: str) -> None:
    result = run_palctl("grants", *argv)
    assert (result.returncode, result.stdout) == (2, "")
    assert message in result.stderr
    plain(result)


# --- bad input, before anything is sent ------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit", "--tenant", "nope"], "--tenant must be a GUID"),
        (["audit", "--tenant", FABRIKAM], "no API given"),
        (["attribution", "report", "--tenant", "nope"], "--tenant must be a GUID"),
        (["attribution", "report", "--tenant", FABRIKAM, "--product", "app"], "--product must be one of"),
        (["attribution", "report", "--status", "bad"], "--status must be one of: attributed, not-attributed"),
        (["attribution", "report", "--csv", "/no/such/folder/out.csv"], "--csv must name a file"),
        (["attribution", "report", "--coverage-below", "2"], "--coverage-below"),
    ],
)
def test_bad_input_is_refused_before_sending(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = in_process(*argv)
    assert (code, output) == (2, "")
    assert message in capsys.readouterr().err


# --- against the local Functions host --------------------------------------------------------------


async def link(service: LinkService, tenant: str, client_id: str, **fields: Any) -> None:
    body = json.dumps(onboarding_message(tenant, client_id, **fields)).encode()
    outcome = await service.handle(
        body, message_id=f"onboard-{tenant}", properties={}, source=Source.ONBOARDING
    )
    assert outcome.kind.is_success, outcome


def api_env(host: LocalFunctionsHost) -> dict[str, str]:
    return {"PAL_API_URL": host.base_url, "PAL_API_KEY": host.function_key}


async def test_an_operator_audits_fabrikam_and_exports_its_findings(
    host: LocalFunctionsHost, cloud: CloudSandbox, tmp_path: Path
) -> None:
    from shared.links.service import get_service

    await link(
        await get_service(), FABRIKAM, FABRIKAM_APP, identity_type="secret", secret_name="fabrikam-pal-secret"
    )
    env = api_env(host)
    audited = await palctl("audit", "--tenant", FABRIKAM.upper(), "--wait", "--timeout", "120", env=env)
    run_id = audit_summary_shown(audited)

    report = ("attribution", "report", "--tenant", FABRIKAM)
    document = json.loads((await palctl(*report, "-o", "json", env=env)).stdout)
    findings_read(document, run_id)
    paged = await palctl(*report, "--page-size", "2", "-o", "json", env=env)
    assert json.loads(paged.stdout)["findings"] == document["findings"]

    exported = tmp_path / "out.csv"
    table = await palctl(*report, "--csv", str(exported), env=env)
    assert table.returncode == 0, table.stderr
    plain(table)
    assert f"findings: {document['total']} of {document['total']}" in table.stdout
    assert "Field Inspections" in table.stdout and "what to do:" in table.stdout
    assert table.stderr == f"palctl: wrote {document['total']} finding(s) to {exported}\n"
    csv_file_written(exported, document)

    filtered = await palctl(
        *report, "--product", "canvas-app", "--status", "attributed", "-o", "csv", env=env
    )
    filtered_rows = list(csv.DictReader(io.StringIO(filtered.stdout)))
    assert SP_APP in {row["resourceId"] for row in filtered_rows}
    assert {(row["product"], row["status"]) for row in filtered_rows} == {("canvas-app", "attributed")}

    everyone = json.loads((await palctl("attribution", "report", "-o", "json", env=env)).stdout)
    assert everyone["coverageBelow"] is None  # no threshold: every audited customer
    (customer,) = everyone["customers"]
    assert (customer["customerTenantId"], customer["runId"]) == (FABRIKAM, run_id)
    assert customer["coverage"] == document["run"]["coverage"]
    assert "dataverse" in customer["needsCustomerAction"].split(";")
    every_finding = tmp_path / "all.csv"
    listed = await palctl("attribution", "report", "--csv", str(every_finding), env=env)
    assert listed.returncode == 0 and FABRIKAM in listed.stdout and "%" in listed.stdout
    assert every_finding.read_bytes() == exported.read_bytes()


def audit_summary_shown(audited: subprocess.CompletedProcess[str]) -> str:
    """`palctl audit --wait` printed the run id at once, then the run's summary: the run id."""
    assert audited.returncode == 0, audited.stderr
    plain(audited)
    queued = re.match(rf"audit queued: customerTenantId={FABRIKAM} runId=(manual-\S+)\n", audited.stdout)
    assert queued, audited.stdout
    run_id = queued.group(1)
    assert f"customer {FABRIKAM}: audit run {run_id}, started " in audited.stdout
    assert re.search(r"^coverage: \d+% \(\d+ of \d+ decided resources attributed", audited.stdout, re.M)
    assert re.search(r"^  dataverse +The app needs a Dataverse application user", audited.stdout, re.M)
    return run_id


def findings_read(document: dict[str, Any], run_id: str) -> None:
    """The JSON report: the run just audited, every finding, ours attributed and a user's not."""
    assert document["customerTenantId"] == FABRIKAM
    assert document["run"]["runId"] == run_id and document["run"]["endedAt"]
    assert "dataverse" in document["run"]["needsCustomerAction"]
    assert len(document["findings"]) == document["total"] > 4
    found = {finding["resourceId"]: finding for finding in document["findings"]}
    assert found[SP_APP]["status"] == "attributed" and found[SP_APP]["attributedTo"] == []
    assert found[USER_APP]["status"] == "not-attributed" and found[USER_APP]["attributedTo"]
    assert "palctl advise --product canvas-app" in found[USER_APP]["remedy"]


def csv_file_written(exported: Path, document: dict[str, Any]) -> None:
    """The CSV file: a BOM, CRLF, the header, and one row per finding of the JSON report."""
    raw = exported.read_bytes()
    assert raw.startswith(codecs.BOM_UTF8) and raw.count(b"\r\n") == document["total"] + 1
    text = raw.decode("utf-8-sig")
    assert text.split("\r\n", 1)[0] == CSV_HEADER
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [row["resourceId"] for row in rows] == [finding["resourceId"] for finding in document["findings"]]
    by_id = {row["resourceId"]: row for row in rows}
    user_app = next(finding for finding in document["findings"] if finding["resourceId"] == USER_APP)
    assert by_id[SP_APP]["status"] == "attributed" and by_id[SP_APP]["customerTenantId"] == FABRIKAM
    assert by_id[USER_APP]["attributedTo"] == ";".join(user_app["attributedTo"])
    assert by_id[USER_APP]["checkedAt"] == user_app["checkedAt"]
    assert by_id[USER_APP]["remedy"] == user_app["remedy"]


async def test_the_api_refusing_is_a_failure_with_what_to_do(host: LocalFunctionsHost) -> None:
    env = api_env(host)
    not_linked = await palctl("audit", "--tenant", LITWARE, env=env)
    assert (not_linked.returncode, not_linked.stdout) == (1, "")
    assert not_linked.stderr.startswith("palctl: HTTP 404 Not linked: ")
    assert f"palctl enqueue --tenant {LITWARE}" in not_linked.stderr

    not_audited = await palctl("attribution", "report", "--tenant", LITWARE, env=env)
    assert not_audited.returncode == 1 and "HTTP 404 Not audited" in not_audited.stderr
    assert f"palctl audit --tenant {LITWARE} --wait" in not_audited.stderr

    wrong_key = await palctl("attribution", "report", env=env | {"PAL_API_KEY": "wrong-key"})
    assert wrong_key.returncode == 1 and "wrong-key" not in wrong_key.stderr + wrong_key.stdout
    assert wrong_key.stderr == "palctl: HTTP 401: the function key (PAL_API_KEY) is missing or wrong\n"


# --- against a stub of the API ---------------------------------------------------------------------


@dataclass
class Stub:
    """What the stub answers: a run that ends after `polls_to_end` polls (never: None), and findings."""

    polls_to_end: int | None = 1
    findings: list[dict[str, Any]] = field(default_factory=list)
    polls: int = 0
    queries: list[dict[str, str]] = field(default_factory=list)
    base_url: str = ""

    def run(self) -> dict[str, Any]:
        ended = self.polls_to_end is not None and self.polls >= self.polls_to_end
        return {
            "runId": "manual-1",
            "startedAt": "2026-11-29T10:00:00+00:00",
            "endedAt": "2026-11-29T10:01:00+00:00" if ended else None,
            "units": ["env-1", "powerbi"],
            "unitsDone": ["env-1", "powerbi"] if ended else ["env-1"],
            "counts": {"canvas-app": {"attributed": 1, "not-attributed": 1}},
            "coverage": 0.5 if ended else None,
            "needsCustomerAction": {"powerbi\x1b[31m": "ask for [bold]it[/bold]"},
        }


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    state = Stub()

    async def audit(request: web.Request) -> web.Response:
        return web.json_response({"customerTenantId": STUB_TENANT, "runId": "manual-1"}, status=202)

    async def tenant(request: web.Request) -> web.Response:
        state.polls += 1
        state.queries.append(dict(request.query))
        top, skip = int(request.query.get("top", "100")), int(request.query.get("skip", "0"))
        body = {
            "customerTenantId": STUB_TENANT,
            "run": state.run(),
            "total": len(state.findings),
            "findings": state.findings[skip : skip + top],
            "changes": [],
        }
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/api/attribution/{tenant}/audit", audit)
    app.router.add_get("/api/attribution/{tenant}", tenant)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.base_url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


def stub_env(stub: Stub) -> dict[str, str]:
    return {"PAL_API_URL": stub.base_url, "PAL_API_KEY": "stub-key"}


HOSTILE = {
    "product": "canvas-app",
    "environmentId": "env-1",
    "resourceId": "app-1",
    "name": "[bold]Evil[/bold]\x1b[2J\nALERT forged",
    "status": "not-attributed",
    "attributedTo": ['=HYPERLINK("http://x")', "user\u202eevil"],
    "remedy": f"call us with {PLANTED}",
    "checkedAt": "2026-11-29T10:00:30+00:00",
    "statusSince": "2026-11-29T10:00:30+00:00",
}


async def test_values_from_the_api_are_escaped_screened_and_never_markup(stub: Stub, tmp_path: Path) -> None:
    stub.findings = [HOSTILE, {**HOSTILE, "resourceId": "app-2", "name": "-1+1"}]
    exported = tmp_path / "hostile.csv"
    argv = ("attribution", "report", "--tenant", STUB_TENANT, "--page-size", "1")
    table = await palctl(*argv, "--csv", str(exported), env=stub_env(stub))
    assert table.returncode == 0, table.stderr
    plain(table)
    assert "[bold]Evil[/bold]\\x1b[2J\\x0aALERT forged" in table.stdout
    assert "powerbi\\x1b[31m" in table.stdout and "ask for [bold]it[/bold]" in table.stdout
    assert "user\\u202eevil" in table.stdout
    assert (
        PLANTED not in table.stdout + table.stderr and "<redacted: looks like a credential>" in table.stdout
    )
    assert [query["skip"] for query in stub.queries] == ["0", "1"]  # paged, one finding at a time

    rows = list(csv.DictReader(io.StringIO(exported.read_text(encoding="utf-8-sig"), newline="")))
    assert rows[0]["name"] == "[bold]Evil[/bold]\\x1b[2J\\x0aALERT forged"
    assert rows[0]["attributedTo"] == '\'=HYPERLINK("http://x");user\\u202eevil'
    assert rows[1]["name"] == "'-1+1"
    assert rows[0]["remedy"] == "<redacted: looks like a credential>"

    document = json.loads((await palctl(*argv, "-o", "json", env=stub_env(stub))).stdout)
    assert document["findings"][0]["attributedTo"] == ['=HYPERLINK("http://x")', "user\\u202eevil"]
    assert list(document["run"]["needsCustomerAction"]) == ["powerbi\\x1b[31m"]


async def test_audit_wait_gives_up_after_the_timeout_with_exit_3(stub: Stub) -> None:
    stub.polls_to_end = None
    result = await palctl(
        "audit", "--tenant", STUB_TENANT, "--wait", "--timeout", "1", "-o", "json", env=stub_env(stub)
    )
    assert result.returncode == 3, result.stderr
    document = json.loads(result.stdout)
    assert (document["runId"], document["finished"], document["run"]["endedAt"]) == ("manual-1", False, None)
    assert "did not finish within 1s" in result.stderr
    assert f"palctl attribution report --tenant {STUB_TENANT}" in result.stderr
    assert stub.polls >= 2 and all(query == {"top": "1"} for query in stub.queries)

    queued = await palctl("audit", "--tenant", STUB_TENANT, "-o", "csv", env=stub_env(stub))
    assert queued.returncode == 0
    assert queued.stdout.splitlines() == [
        "customerTenantId,runId,finished,coverage,units,unitsDone",
        f"{STUB_TENANT},manual-1,false,,,",
    ]
    table = await palctl("audit", "--tenant", STUB_TENANT, env=stub_env(stub))
    assert (table.returncode, table.stdout) == (
        0,
        f"audit queued: customerTenantId={STUB_TENANT} runId=manual-1\n",
    )
    assert f"palctl attribution report --tenant {STUB_TENANT} when it has ended" in table.stderr


async def test_audit_wait_shows_a_spinner_on_a_terminal_only(stub: Stub) -> None:
    stub.polls_to_end = 3
    argv = ("audit", "--tenant", STUB_TENANT, "--wait")
    code, received = await asyncio.to_thread(in_a_terminal, *argv, env=stub_env(stub))
    assert code == 0, received
    assert "audit run manual-1: 1 of 2 units done" in received and "\x1b[" in received
    assert "coverage: 50% (1 of 2 decided resources attributed; 0 unknown)" in received

    stub.polls = 0
    piped = await palctl(*argv, env=stub_env(stub))
    assert piped.returncode == 0 and piped.stderr == ""
    plain(piped)
    assert "coverage: 50%" in piped.stdout
