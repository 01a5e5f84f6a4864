"""`palctl reconcile`: the comparison of Partner Center's PAL attribution with the ledger on typed
inputs (each kind of mismatch, the reporting delay's boundary, months), the insights file read as
untrusted input (column names, byte order marks, Excel's ways, bad rows, missing columns), and the
command end to end: against the local Functions host's API with links in the ledger and the synthetic
export in tests/data/, and against a stub of the API for paging and what the real one cannot be made
to answer."""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from test_palctl_cli import CLEARED, plain
from test_palctl_cli import palctl as run_palctl

from palctl.cli import main
from palctl.errors import UsageError
from palctl.insights import Insights, is_pal, parse_month, read_insights
from palctl.output import columns
from palctl.reconciliation import KINDS, LedgerLink, Mismatch, compare
from sandbox.functions_host import LocalFunctionsHost
from shared.links.ledger import Ledger
from shared.links.recognition import Earning
from shared.spine.envelope import Source
from shared.spine.outcomes import OutcomeKind
from tenants import (
    FABRIKAM,
    FABRIKAM_APP,
    FEDERATED_APP,
    LITWARE,
    LITWARE_APP,
    NORTHWIND,
    ROOT,
    TAILSPIN,
    WOODGROVE,
    onboarding_message,
)

EXPORT = ROOT / "tests" / "data" / "partner-center-azure-usage.csv"
CONTOSO = "c0a1e5f2-6b1d-4c3e-9f4a-2d7b8e9c0a11"  # PAL-attributed in the export, never linked
AS_OF = "2025-07-15"
HEADER = "CustomerTenantId,Month,PartnerAttributionType,CustomerName"


@pytest.fixture(autouse=True)
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file of the test's own (not yet written), and none of palctl's variables set."""
    for name in (*CLEARED, "PAL_REPORTING_DELAY_DAYS"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "palctl-config" / "config.toml"
    monkeypatch.setenv("PALCTL_CONFIG", str(path))
    return path


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def earning_link(tenant: str, verified: str, earning: str, checked: str = "2025-07-14T02:00") -> LedgerLink:
    """A link verified every night since `verified`, earning since `earning`, last checked `checked`."""
    return LedgerLink(
        tenant, "verified", verified_since=at(verified), last_checked_at=at(checked), earning="earning",
        earning_since=at(earning), earning_checked_at=at(checked),
    )  # fmt: skip


def insights(pal: dict[str, str], other: dict[str, str] | None = None, period: str = "") -> Insights:
    """The file as `read_insights` gives it: PAL months (`YYYY-MM`, space-separated) per tenant,
    other attribution types per tenant, and months of other customers' rows (the file's period)."""
    pal_months = {tenant: frozenset(map(month, months.split())) for tenant, months in pal.items()}
    every = {month(m) for m in period.split()}.union(*pal_months.values())
    other_types = {tenant: frozenset(types.split()) for tenant, types in (other or {}).items()}
    return Insights(rows=len(every), pal=pal_months, other=other_types, names={}, months=frozenset(every))


def month(text: str) -> date:
    parsed = parse_month(text)
    assert parsed is not None, text
    return parsed


def found(file: Insights, *links: LedgerLink, now: str = AS_OF, delay: int = 45) -> list[tuple[Any, ...]]:
    """(kind, tenant, months) of each mismatch."""
    rows = compare(file, links, now=at(now), delay_days=delay)
    return [(row.kind, row.customer_tenant_id, row.months) for row in rows]


# --- the comparison ---------------------------------------------------------------------------------


def test_earning_longer_than_the_delay_without_pal_is_reported_from_the_boundary_on() -> None:
    link = earning_link(TAILSPIN, "2025-03-01T02:00", "2025-03-01T02:00")
    file = insights({}, other={TAILSPIN: "DPOR"}, period="2025-03 2025-04")
    assert found(file, link, now="2025-04-15T02:00") == []  # 45 days exactly
    (row,) = compare(file, [link], now=at("2025-04-15T02:00:01"), delay_days=45)
    assert (row.kind, row.customer_tenant_id, row.months) == ("earning-not-attributed", TAILSPIN, None)
    assert (row.earning, row.linked_since, row.earning_since) == ("earning", "2025-03-01", "2025-03-01")
    assert "since 2025-03-01 (45 days; the reporting delay is 45 days)" in row.detail
    assert row.detail.endswith("the file attributes it as DPOR")
    assert found(file, link, now="2025-04-16T02:00", delay=60) == []


def test_earning_starts_when_both_the_link_is_verified_and_its_roles_earn() -> None:
    # earning since January, but verified again only since May (the link was healed): May counts
    link = earning_link(TAILSPIN, "2025-05-10T02:00", "2025-01-05T02:00")
    assert found(insights({}, period="2025-05"), link, now="2025-06-20") == []
    (row,) = compare(insights({}, period="2025-05"), [link], now=at("2025-06-25"), delay_days=45)
    assert row.earning_since == "2025-05-10"


def test_an_export_that_ends_before_the_customer_started_earning_finds_nothing_to_miss() -> None:
    link = earning_link(TAILSPIN, "2025-03-01T02:00", "2025-03-01T02:00")
    assert found(insights({}, period="2024-12 2025-01"), link) == []
    # a file with a header only: no period, every customer earning past the delay is missing
    assert found(insights({}), link) == [("earning-not-attributed", TAILSPIN, None)]


NOT_EARNING = [
    LedgerLink(TAILSPIN, "verified", verified_since=at("2025-01-01"), last_checked_at=at("2025-07-14")),
    LedgerLink(
        TAILSPIN,
        "verified",
        verified_since=at("2025-01-01"),
        last_checked_at=at("2025-07-14"),
        earning="not-earning",
        earning_since=at("2025-01-01"),
        earning_checked_at=at("2025-07-14"),
    ),  # fmt: skip
    LedgerLink(TAILSPIN, "needs-customer-action", earning="earning", earning_since=at("2025-01-01")),
]


@pytest.mark.parametrize("link", NOT_EARNING, ids=["never-checked", "not-earning", "not-linked"])
def test_a_customer_linked_but_not_earning_need_not_be_attributed(link: LedgerLink) -> None:
    assert found(insights({}, period="2025-03"), link) == []


def test_pal_attribution_for_a_customer_the_ledger_has_no_link_for() -> None:
    file = insights({CONTOSO: "2025-03 2025-02", WOODGROVE: "2025-05"})
    rows = compare(file, [LedgerLink(WOODGROVE, "needs-customer-action")], now=at(AS_OF), delay_days=45)
    assert [(row.kind, row.customer_tenant_id, row.months) for row in rows] == [
        ("attributed-not-linked", WOODGROVE, "2025-05"),
        ("attributed-not-linked", CONTOSO, "2025-02 2025-03"),
    ]
    assert rows[0].detail.endswith("a record but no link (outcome needs-customer-action)")
    assert rows[1].detail.endswith("the ledger has no link for it")


def test_pal_attribution_after_the_month_a_customer_was_offboarded() -> None:
    gone = LedgerLink(
        FABRIKAM, "unlinked", last_checked_at=at("2025-04-10"), offboarded_at=at("2025-04-10T09:30")
    )
    (row,) = compare(
        insights({FABRIKAM: "2025-02 2025-04 2025-05 2025-06"}), [gone], now=at(AS_OF), delay_days=45
    )
    assert (row.kind, row.months, row.offboarded_at) == (
        "attributed-not-linked",
        "2025-05 2025-06",
        "2025-04-10",
    )
    assert row.detail.startswith("offboarded on 2025-04-10; Partner Center attributes it through PAL")
    assert found(insights({FABRIKAM: "2025-03 2025-04"}), gone) == []


def test_months_the_verified_interval_does_not_reach_into() -> None:
    link = earning_link(FABRIKAM, "2025-04-20T02:00", "2025-04-20T02:00")
    file = insights({FABRIKAM: "2025-02 2025-03 2025-04 2025-05"})
    (row,) = compare(file, [link], now=at(AS_OF), delay_days=45)
    assert (row.kind, row.months) == ("month-not-covered", "2025-02 2025-03")
    assert row.detail.endswith("the ledger's verified interval is 2025-04-20 to 2025-07-14")
    healed = LedgerLink(FABRIKAM, "healed", last_linked_at=at("2025-07-14"), last_checked_at=at("2025-07-14"))
    (row,) = compare(file, [healed], now=at(AS_OF), delay_days=45)
    assert (row.kind, row.months) == ("month-not-covered", "2025-02 2025-03 2025-04 2025-05")
    assert row.detail.endswith("for these months; the ledger has no verified interval")
    # another identity of the customer, verified from January 10th to March 2nd, covers the rest
    first = LedgerLink(
        FABRIKAM, "verified", verified_since=at("2025-01-10"), last_checked_at=at("2025-03-02")
    )
    assert found(insights({FABRIKAM: "2025-01 2025-02 2025-03 2025-04 2025-05"}), first, link) == []


def test_months_missing_are_whole_earning_months_past_the_delay() -> None:
    link = earning_link(NORTHWIND, "2024-11-02T02:00", "2025-01-01T02:00")  # the night of Jan 1st: whole
    file = insights({NORTHWIND: "2025-02 2025-06"}, period="2025-01")  # the period: January to June
    # April ended on May 1st; + 45 days = June 15th: not yet past the delay, then past it
    assert found(file, link, now="2025-06-15T00:00") == [("month-missing", NORTHWIND, "2025-01 2025-03")]
    (row,) = compare(file, [link], now=at("2025-06-15T00:00:01"), delay_days=45)
    assert (row.kind, row.months) == ("month-missing", "2025-01 2025-03 2025-04")
    assert (
        row.detail == "linked and earning the whole month in the ledger, but no PAL attribution in the file"
    )
    mid_january = earning_link(NORTHWIND, "2024-11-02T02:00", "2025-01-03T02:00")
    assert found(file, mid_january, delay=0) == [("month-missing", NORTHWIND, "2025-03 2025-04 2025-05")]


def test_no_mismatch_when_both_sides_agree() -> None:
    link = earning_link(NORTHWIND, "2024-11-02T02:00", "2024-12-05T02:00")
    file = insights({NORTHWIND: "2025-01 2025-02 2025-03 2025-04 2025-05 2025-06"})
    assert found(file, link, LedgerLink(LITWARE, "linked")) == []


# --- the file -----------------------------------------------------------------------------------------


MARCH = (
    "2025-03|2025-03-01|2025-03-01T00:00:00Z|2025/03/01 00:00:00|202503|3/1/2025|3/1/2025 12:00:00 AM|"
    "1/3/2025|3/15/2025|15/3/2025|01.03.2025|01-03-2025|Mar-25|mar 2025|March 2025|45717"
).split("|")
NO_MONTH = ["3/5/2025", "2025-13-01", "1999-03", "Marchy 2025", "", "\x1b[31m", "2025-03-01x"]


@pytest.mark.parametrize("text", MARCH)
def test_months_as_partner_center_and_excel_write_them(text: str) -> None:
    assert parse_month(text) == date(2025, 3, 1)
    assert parse_month("1/1/2025") == date(2025, 1, 1) and parse_month("Sept 2025") == date(2025, 9, 1)


@pytest.mark.parametrize("text", NO_MONTH)
def test_what_is_not_a_month_or_is_ambiguous(text: str) -> None:
    assert parse_month(text) is None


@pytest.mark.parametrize("value", ["PAL", "pal", "Partner Admin Link", "PAL;CSP", "Partner Admin Link (PAL)"])
def test_attribution_types_that_are_pal(value: str) -> None:
    assert is_pal(value)


@pytest.mark.parametrize("value", ["DPOR", "CSP", "CPOR", "", "PALLADIUM", "Digital PoR"])
def test_attribution_types_that_are_not_pal(value: str) -> None:
    assert not is_pal(value)


def test_the_synthetic_export_is_read_as_partner_center_writes_it() -> None:
    raw = EXPORT.read_bytes()
    assert raw.startswith(codecs.BOM_UTF8) and raw.count(b"\r\n") == raw.count(b"\n")
    file = read_insights(raw)
    assert file.rows == 66 and file.bad_rows == ()
    assert sorted(file.pal) == sorted([NORTHWIND, FABRIKAM, WOODGROVE, CONTOSO])
    assert file.other[TAILSPIN] == {"DPOR"} and len(file.months) == 6
    assert file.names[NORTHWIND] == "Northwind Traders"
    assert sorted(file.pal[NORTHWIND]) == [date(2025, m, 1) for m in (1, 2, 4, 5, 6)]


@pytest.mark.parametrize(
    "encoded",
    [
        lambda text: text.encode(),
        lambda text: codecs.BOM_UTF8 + text.encode(),
        lambda text: codecs.BOM_UTF16_LE + text.replace(",", "\t").encode("utf-16-le"),
        lambda text: b'"sep=;"\r\n' + text.replace(",", ";").encode(),
        lambda text: text.replace(",", ";").replace("\n", "\r\n").encode(),
    ],
    ids=["utf-8", "utf-8-bom", "utf-16-tabs", "sep-line", "semicolons-crlf"],
)
def test_encodings_separators_and_excels_cells(encoded: Any) -> None:
    text = (
        "customer tenant id,MONTH,partner_attribution_type,Customer-Name\n"
        f'="{NORTHWIND.upper()}",2025-03-01,PAL,Northwind\n'
        f"{{{TAILSPIN}}},'2025-04,Partner Admin Link,Tailspin\n"
        ",,,\n"
        f"'{FABRIKAM},Apr-25,DPOR,Fabrikam\n"
    )
    file = read_insights(encoded(text))
    assert file.bad_rows == () and file.rows == 3
    assert dict(file.pal) == {NORTHWIND: {date(2025, 3, 1)}, TAILSPIN: {date(2025, 4, 1)}}
    assert file.other == {FABRIKAM: {"DPOR"}}


def test_bad_rows_are_skipped_by_line_number_and_never_echo_control_characters() -> None:
    text = (
        "sep=,\n"
        f"{HEADER},ACR_USD\n"
        f"{NORTHWIND},2025-03-01,PAL,North\u2028wi\x0cnd,12.5\n"
        "\x1b[2J\x1b[31mnot-a-guid,2025-03-01,PAL,Evil,1\n"
        "\n"
        f'"{TAILSPIN}","3/5/2025",PAL,"Tailspin, Ltd",2\n'
        f"00000000-0000-0000-0000-000000000000,2025-03-01,PAL,Nil,3\n"
        f"{FABRIKAM}\n"
        f'"{WOODGROVE}","2025-05-01","PAL","multi\nline\u202ename",4\n'
    )
    file = read_insights(text.encode())
    assert [(bad.line, bad.problem) for bad in file.bad_rows] == [
        (4, 'CustomerTenantId is not a GUID: "\\x1b[2J\\x1b[31mnot-a-guid"'),
        (6, 'Month is not a month: "3/5/2025"'),
        (7, 'CustomerTenantId is not a GUID: "00000000-0000-0000-0000-000000000000"'),
        (8, "Month is not a month: empty"),
    ]
    assert file.rows == 6 and sorted(file.pal) == sorted([NORTHWIND, WOODGROVE])
    assert file.names[WOODGROVE] == "multi\\x0aline\\u202ename"
    assert file.names[NORTHWIND] == "North\\u2028wi\\x0cnd"


NEEDED = b"CustomerTenantId,Month,PartnerAttributionType\n"
REFUSED = {
    "missing": (
        b"CustomerTenantId,CustomerName,Revenue\n",
        "missing column(s) Month, PartnerAttributionType",
    ),
    "missing-one": (b"Month;PartnerAttachType\n2025-03;PAL\n", "missing column(s) CustomerTenantId (columns"),
    "empty": (b"", "--insights: empty: no header"),
    "hostile-header": (
        b"\x1b[31mevil\x07,x\n",
        "Type (columns found: \\x1b[31mevil\\x07, x; the columns are",
    ),
    "twice": (
        b"CustomerTenantId,Month,Month,PartnerAttributionType\n",
        "the column Month is in the header twice",
    ),
    "cp1252": (NEEDED + b"x,caf\xe9,PAL\n", "--insights: line 2 is not UTF-8 text"),
    "xlsx": (b"PK\x03\x04\x14\x00\x06\x00", "an Excel workbook, not a CSV file"),
    "nul": (NEEDED + b"\x00\x00\n", "line 2 has a NUL character"),
}


@pytest.mark.parametrize(("content", "message"), REFUSED.values(), ids=REFUSED)
def test_a_file_that_is_not_an_insights_download_is_refused(content: bytes, message: str) -> None:
    with pytest.raises(UsageError) as refused:
        read_insights(content)
    assert message in str(refused.value) and "\x1b" not in str(refused.value)
    if message.startswith("missing column(s) Month"):
        assert str(refused.value).startswith("--insights: not a Partner Center insights download: missing")
        assert "(columns found: CustomerTenantId, CustomerName, Revenue; the columns are described at" in str(
            refused.value
        )


def test_a_file_over_the_size_cap_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import palctl.insights

    monkeypatch.setattr(palctl.insights, "MAX_BYTES", 100)
    big = tmp_path / "big.csv"
    big.write_text(HEADER + "\n" + f"{NORTHWIND},2025-03,PAL,N\n" * 5, encoding="utf-8")
    out = io.StringIO()
    assert main(["reconcile", "--insights", str(big), "--api-url", "http://localhost:1"], out) == 2
    assert out.getvalue() == ""


# --- the command without a service --------------------------------------------------------------------


def test_reconcile_has_help_with_an_example() -> None:
    result = run_palctl("reconcile", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: palctl reconcile ")
    assert "palctl reconcile --insights " in result.stdout.split("Examples:", 1)[1]
    assert "PAL_REPORTING_DELAY_DAYS" in result.stdout
    plain(result)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--insights", "missing.csv"], {}, "palctl: --insights: no such file"),
        (["--insights", "FILE", "--as-of", "soon"], {}, "palctl: --as-of must be a date"),
        (["--insights", "FILE", "--reporting-delay-days", "-1"], {}, "--reporting-delay-days"),
        (["--insights", "FILE"], {"PAL_REPORTING_DELAY_DAYS": "weeks"}, "--reporting-delay-days"),
        (["--insights", "WRONG"], {}, "missing column(s) CustomerTenantId, Month, PartnerAttributionType"),
        (["--insights", "FILE"], {"PAL_API_KEY": ""}, "palctl: no API given"),
    ],
    ids=["no-file", "as-of", "delay", "delay-env", "columns", "no-api"],
)
def test_bad_input_is_a_usage_error_before_anything_is_called(
    argv: list[str], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("Customer,Revenue\nx,1\n", encoding="utf-8")
    resolved = [str(EXPORT) if a == "FILE" else str(wrong) if a == "WRONG" else a for a in argv]
    result = run_palctl("reconcile", *resolved, env=env)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert message in result.stderr
    plain(result)


# --- end to end, against the local Functions host -----------------------------------------------------


async def onboard(tenant: str, client_id: str, **fields: Any) -> OutcomeKind:
    from shared.links.service import get_service

    body = json.dumps(onboarding_message(tenant, client_id, **fields)).encode()
    service = await get_service()
    outcome = await service.handle(
        body, message_id=f"onboard-{tenant}", properties={}, source=Source.ONBOARDING
    )
    return outcome.kind


async def months_of_nights(ledger: Ledger, tenant: str, verified: str, earning: str) -> None:
    """The tenant's link state as months of nightly runs leave it: verified every night since
    `verified`, earning since `earning`, last checked the night before `AS_OF`."""
    (state,) = await ledger.link_states(tenant)
    checked = at("2025-07-14T02:00")
    nights = state.replace(
        outcome=OutcomeKind.VERIFIED,
        verified_since=at(verified),
        verified_count=(checked - at(verified)).days + 1,
        last_checked_at=checked,
        last_linked_at=checked,
        earning=Earning.EARNING,
        earning_since=at(earning),
        earning_checked_at=checked,
    )
    client = await ledger.table.ready()
    await client.upsert_entity(nights.to_entity())


async def a_ledger_of_months() -> None:
    """Five customers linked through the service, then given the intervals of months of nights."""
    from shared.links.service import get_service

    assert await onboard(NORTHWIND, FEDERATED_APP) is OutcomeKind.LINKED
    assert await onboard(TAILSPIN, FEDERATED_APP) is OutcomeKind.ALREADY_LINKED
    fabrikam = await onboard(
        FABRIKAM, FABRIKAM_APP, identity_type="secret", secret_name="fabrikam-pal-secret"
    )
    assert fabrikam.is_success
    assert (
        await onboard(LITWARE, LITWARE_APP, identity_type="certificate", secret_name="litware-pal-cert")
    ).is_success
    assert await onboard(WOODGROVE, FEDERATED_APP) is OutcomeKind.NEEDS_CUSTOMER_ACTION
    ledger = (await get_service()).ledger
    await months_of_nights(ledger, NORTHWIND, "2024-11-02T02:00", "2024-12-05T02:00")
    await months_of_nights(ledger, TAILSPIN, "2025-02-10T02:00", "2025-03-01T02:00")
    await months_of_nights(ledger, FABRIKAM, "2025-04-20T02:00", "2025-04-20T02:00")
    await months_of_nights(ledger, LITWARE, "2025-06-20T02:00", "2025-06-20T02:00")  # within the delay


async def palctl(*argv: str, env: dict[str, str]) -> Any:
    """`python -m palctl ARGV`, piped, while this test's event loop goes on serving."""
    return await asyncio.to_thread(run_palctl, *argv, env=env)


EXPECTED = [
    ("earning-not-attributed", TAILSPIN, None),
    ("attributed-not-linked", WOODGROVE, "2025-05 2025-06"),
    ("attributed-not-linked", CONTOSO, "2025-02 2025-03 2025-04 2025-05 2025-06"),
    ("month-not-covered", FABRIKAM, "2025-01 2025-02 2025-03"),
    ("month-missing", NORTHWIND, "2025-03"),
]


SUMMARY = {"rows": 66, "customers": 6, "palCustomers": 4, "links": 5, "ledgerCustomers": 5, "total": 5}


def json_document_read(document: dict[str, Any]) -> None:
    """The JSON document of the export against the ledger: every mismatch, and the counts."""
    assert [
        (row["kind"], row["customerTenantId"], row["months"]) for row in document["mismatches"]
    ] == EXPECTED
    tailspin = document["mismatches"][0]
    assert (tailspin["customerName"], tailspin["earning"]) == ("Tailspin Toys", "earning")
    assert (tailspin["linkedSince"], tailspin["earningSince"]) == ("2025-02-10", "2025-03-01")
    assert tailspin["detail"].endswith("but no PAL attribution in the file; the file attributes it as DPOR")
    assert "outcome needs-customer-action" in document["mismatches"][1]["detail"]
    assert {key: document[key] for key in SUMMARY} == SUMMARY
    assert document["months"] == {"from": "2025-01", "to": "2025-06"}
    assert (document["reportingDelayDays"], document["asOf"]) == (45, "2025-07-15T00:00:00+00:00")
    assert list(document["counts"].values()) == [1, 2, 1, 1] and list(document["counts"]) == list(KINDS)
    assert (document["skipped"], document["skippedRows"]) == (0, [])


async def test_an_operator_reconciles_the_partner_center_export_with_the_ledger(
    host: LocalFunctionsHost,
) -> None:
    await a_ledger_of_months()
    env = {"PAL_API_URL": host.base_url, "PAL_API_KEY": host.function_key}
    argv = ("reconcile", "--insights", str(EXPORT), "--as-of", AS_OF)

    result = await palctl(*argv, "-o", "json", env=env)
    assert (result.returncode, result.stderr) == (3, "")
    json_document_read(json.loads(result.stdout))
    assert host.function_key not in result.stdout

    table = await palctl(*argv, env=env)
    assert (table.returncode, table.stderr) == (3, "")
    plain(table)
    for line in (
        "insights: 66 row(s), 6 customer(s), 4 attributed through PAL, 2025-01 to 2025-06",
        "ledger: 5 link state(s) of 5 customer(s); as of 2025-07-15, reporting delay 45 days",
        "mismatches: 1 earning-not-attributed, 2 attributed-not-linked, 1 month-not-covered, 1 month-missing",
        "month-missing: ask Partner Center support about the months, with the link's evidence",
    ):
        assert f"\n{line}\n" in table.stdout
    assert "Contoso Ltd" in table.stdout.split("\ninsights: ")[0]

    exported = await palctl(*argv, "-o", "csv", env=env)
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(row["kind"], row["customerTenantId"], row["months"] or None) for row in rows] == EXPECTED
    assert list(rows[0]) == [column.name for column in columns(Mismatch)]

    # a longer delay (from the environment): Tailspin's 136 days and Northwind's March are within it
    longer = await palctl(*argv, "-o", "json", env=env | {"PAL_REPORTING_DELAY_DAYS": "140"})
    assert [row["kind"] for row in json.loads(longer.stdout)["mismatches"]] == [
        "attributed-not-linked",
        "attributed-not-linked",
        "month-not-covered",
    ]


async def test_agreement_is_exit_0_and_the_api_refusing_is_exit_1(
    host: LocalFunctionsHost, tmp_path: Path
) -> None:
    await a_ledger_of_months()
    agreeing = tmp_path / "agreeing.csv"
    lines = [f"{NORTHWIND},2025-{month:02d}-01,PAL,Northwind Traders" for month in range(1, 7)]
    agreeing.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    env = {"PAL_API_URL": host.base_url, "PAL_API_KEY": host.function_key}
    argv = ("reconcile", "--insights", str(agreeing), "--as-of", "2025-06-01", "--reporting-delay-days", "45")
    # Tailspin earns since March 1st: 92 days > 45, not attributed; Fabrikam since April 20th: 42
    result = await palctl(*argv, "-o", "json", env=env)
    assert [row["customerTenantId"] for row in json.loads(result.stdout)["mismatches"]] == [TAILSPIN]
    early = await palctl(*argv[:-1], "100", env=env)
    assert (early.returncode, early.stderr) == (0, ""), early.stdout
    assert early.stdout.rstrip().endswith("no mismatch: Partner Center and the ledger agree")

    wrong_key = await palctl(*argv, env=env | {"PAL_API_KEY": "wrong-key"})
    assert (wrong_key.returncode, wrong_key.stdout) == (1, "")
    assert wrong_key.stderr == "palctl: HTTP 401: the function key (PAL_API_KEY) is missing or wrong\n"


# --- against a stub of the API --------------------------------------------------------------------


@dataclass
class Stub:
    """What the stub answers `GET /api/links` with: per continuationToken asked with (None: the first
    page), the page's items and the next token."""

    pages: dict[str | None, tuple[list[Any], str | None]] = field(default_factory=dict)
    status: int = 200
    queries: list[dict[str, str]] = field(default_factory=list)
    base_url: str = ""


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    state = Stub()

    async def links(request: web.Request) -> web.Response:
        state.queries.append(dict(request.query))
        if state.status != 200:
            problem = {
                "type": "https://pal/problems/unavailable",
                "title": "Unavailable\x1b[2J",
                "detail": "later",
            }
            return web.json_response(problem, status=state.status)
        items, token = state.pages[request.query.get("continuationToken")]
        return web.json_response({"items": items, "continuationToken": token})

    app = web.Application()
    app.router.add_get("/api/links", links)
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


def api_link(tenant: str, **fields: Any) -> dict[str, Any]:
    """A link state as the API gives it, verified since 2025-02-10 and earning since March 1st."""
    return {
        "customerTenantId": tenant,
        "clientId": FEDERATED_APP,
        "outcome": "verified",
        "verifiedSince": "2025-02-10T02:00:00+00:00",
        "lastCheckedAt": "2025-07-14T02:00:00+00:00",
        "earning": "earning",
        "earningSince": "2025-03-01T02:00:00+00:00",
        "earningCheckedAt": "2025-07-14T02:00:00+00:00",
        **fields,
    }


async def test_every_page_is_read_and_values_from_the_api_and_the_file_are_screened(
    stub: Stub, tmp_path: Path
) -> None:
    hostile = api_link(TAILSPIN, customerName="[bold]Evil[/bold]\x1b[2J\nALERT forged", verifiedSince=12)
    stub.pages = {
        None: ([api_link(NORTHWIND), {"customerTenantId": "not-a-guid\x1b"}, "junk"], "token-1"),
        "token-1": ([hostile, api_link(LITWARE.upper(), earningSince="yesterday")], None),
    }
    file = tmp_path / "pal.csv"
    rows = [
        f"{NORTHWIND},2025-03,PAL,",
        f'{CONTOSO},2025-03,PAL,"=HYPERLINK(""http://x"")"',
        f"{TAILSPIN},2025-03,PAL,Tailspin",
        f"{WOODGROVE},2025-03,=cmd|' /C calc'!A0,Woodgrove",
    ]
    file.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    argv = ("reconcile", "--insights", str(file), "--as-of", AS_OF)
    result = await palctl(*argv, "-o", "json", env=stub_env(stub))
    assert result.returncode == 3, result.stderr
    assert [query.get("continuationToken") for query in stub.queries] == [None, "token-1"]
    assert all(query["top"] == "1000" for query in stub.queries)
    document = json.loads(result.stdout)
    assert document["links"] == 3 and document["ledgerCustomers"] == 3
    assert [(row["kind"], row["customerTenantId"]) for row in document["mismatches"]] == [
        ("attributed-not-linked", CONTOSO),
        ("month-not-covered", TAILSPIN),  # its verifiedSince is not a time: no verified interval
    ]
    contoso, tailspin = document["mismatches"]
    assert contoso["customerName"] == '=HYPERLINK("http://x")'
    assert tailspin["customerName"] == "Tailspin" and tailspin["linkedSince"] is None

    table = await palctl(*argv, env=stub_env(stub))
    plain(table)
    assert '=HYPERLINK("http://x")' in table.stdout

    exported = await palctl(*argv, "-o", "csv", env=stub_env(stub))
    assert next(csv.DictReader(io.StringIO(exported.stdout)))["customerName"] == '\'=HYPERLINK("http://x")'

    stub.pages["token-1"] = ([hostile], None)
    file.write_text(f"{HEADER}\n{NORTHWIND},2025-03,PAL,\n", encoding="utf-8")
    hostile["verifiedSince"] = "2025-02-10T02:00:00+00:00"
    document = json.loads((await palctl(*argv, "-o", "json", env=stub_env(stub))).stdout)
    (row,) = document["mismatches"]
    assert row["customerName"] == "[bold]Evil[/bold]\\x1b[2J\\x0aALERT forged"
    table = await palctl(*argv, env=stub_env(stub))
    plain(table)
    assert "[bold]Evil[/bold]\\x1b[2J\\x0aALERT forged" in table.stdout


async def test_a_token_given_twice_or_a_refusal_is_a_failure(stub: Stub) -> None:
    stub.pages = {None: ([api_link(NORTHWIND)], "again"), "again": ([], "again")}
    argv = ("reconcile", "--insights", str(EXPORT), "--as-of", AS_OF)
    looping = await palctl(*argv, env=stub_env(stub))
    assert (looping.returncode, looping.stdout) == (1, "")
    assert looping.stderr == "palctl: the API's continuationToken is not a new token: paging stopped\n"
    assert len(stub.queries) == 2

    stub.status = 503
    refused = await palctl(*argv, env=stub_env(stub))
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == "palctl: HTTP 503 Unavailable\\x1b[2J: later\n"


async def test_skipped_rows_are_named_on_standard_error_and_make_the_exit_code_3(
    stub: Stub, tmp_path: Path
) -> None:
    stub.pages = {None: ([], None)}
    rows = [f"row-{n}\x1b,2025-03,PAL,x" for n in range(25)]
    file = tmp_path / "bad.csv"
    file.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    result = await palctl("reconcile", "--insights", str(file), "-o", "json", env=stub_env(stub))
    assert result.returncode == 3
    plain(result)
    warnings = result.stderr.splitlines()
    assert warnings[0] == (
        'palctl: warning: --insights line 2 skipped: CustomerTenantId is not a GUID: "row-0\\x1b"'
    )
    assert len(warnings) == 21 and warnings[-1] == (
        "palctl: warning: 5 more row(s) skipped (-o json lists every one under skippedRows)"
    )
    document = json.loads(result.stdout)
    assert document["skipped"] == 25 and document["skippedRows"][-1]["line"] == 26
    assert document["mismatches"] == [] and document["total"] == 0


DOCUMENTED = (
    "rows customers palCustomers months links ledgerCustomers reportingDelayDays asOf total counts skipped "
    "skippedRows mismatches CustomerTenantId Month PartnerAttributionType PAL_REPORTING_DELAY_DAYS"
)


def test_the_docs_name_every_field_kind_and_the_csv_header() -> None:
    text = (ROOT / "docs" / "palctl.md").read_text(encoding="utf-8")
    section = text.split("### `reconcile`", 1)[1].split("\n### ", 1)[0]
    names = [f"`mismatches[].{column.name}`" for column in columns(Mismatch)]
    names += [f"`{name}`" for name in (*DOCUMENTED.split(), *KINDS)]
    assert [name for name in names if name not in section] == []
    assert ",".join(column.name for column in columns(Mismatch)) in section
    assert "https://learn.microsoft.com/partner-center/insights/insights-data-definitions" in section
