"""Partner Center's PAL attribution against the ledger, compared: pure, on typed inputs (the insights
file as `palctl.insights` reads it, the link states as `GET /api/links` gives them).

Four kinds of mismatch, one row per customer and kind:

- `earning-not-attributed`: the ledger has the customer linked and earning (a verified link whose
  Azure recognition is `earning`) for longer than the reporting delay, and the file has no PAL
  attribution for it at all.
- `attributed-not-linked`: the file attributes the customer through PAL and the ledger has no link
  for it (none recorded, or a record that never linked), or attributes months after the month the
  customer was offboarded.
- `month-not-covered`: a month the file attributes through PAL that the ledger's verified interval
  (`verifiedSince` to `lastCheckedAt`) does not reach into.
- `month-missing`: a month of the file's period that the ledger has the customer linked and earning
  the whole of (give or take the night between two checks), that ended longer than the reporting
  delay ago, and that the file has no PAL attribution for, while it has some for other months.

The ledger keeps each link's current intervals, not every past one (each change is in the history):
a month before a link's interval began counts as not covered, and an offboarded customer's months
up to its offboarding are not compared. A change of the earning roles restarts `earningSince`, so the
earning interval is used only where it makes a mismatch less likely (`earning-not-attributed`,
`month-missing`), never to call a month uncovered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from palctl.insights import Insights, month_name
from shared.spine.outcomes import OutcomeKind

KINDS = ("earning-not-attributed", "attributed-not-linked", "month-not-covered", "month-missing")
KIND_STYLES = {kind: "red" for kind in KINDS[:2]} | {kind: "yellow" for kind in KINDS[2:]}
DEFAULT_DELAY_DAYS = 45
"""Microsoft documents no delay for PAL attribution to show in Partner Center; partners report weeks."""
NIGHT = timedelta(days=1)
"""The nightly check's granularity: a month is whole give or take the night between two checks."""
LINKED = frozenset(kind.value for kind in OutcomeKind if kind.is_success and kind is not OutcomeKind.UNLINKED)
"""The outcomes of a link in place (ours, as the ledger last saw it)."""


@dataclass(frozen=True)
class Interval:
    """From `start` to `end` (UTC)."""

    start: datetime
    end: datetime

    def overlaps(self, month: date) -> bool:
        """The interval reaches into the month."""
        first, after = month_bounds(month)
        return self.start < after and self.end >= first

    def contains(self, month: date) -> bool:
        """The interval holds the whole month, give or take a night at either end."""
        first, after = month_bounds(month)
        return self.start <= first + NIGHT and self.end >= after - NIGHT

    def __and__(self, other: Interval) -> Interval | None:
        """The time both intervals hold (None: they do not meet)."""
        start, end = max(self.start, other.start), min(self.end, other.end)
        return Interval(start, end) if start <= end else None


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """The month's first instant and the next month's (UTC)."""
    first = datetime(month.year, month.month, 1, tzinfo=UTC)
    return first, datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LedgerLink:
    """One link state of the ledger, as far as the reconciliation reads it (values screened)."""

    customer_tenant_id: str
    outcome: str
    customer_name: str | None = None
    verified_since: datetime | None = None
    last_checked_at: datetime | None = None
    last_linked_at: datetime | None = None
    earning: str | None = None
    earning_since: datetime | None = None
    earning_checked_at: datetime | None = None
    offboarded_at: datetime | None = None

    @property
    def active(self) -> bool:
        """Linked now, as the ledger last saw it, and not offboarded."""
        return self.offboarded_at is None and self.outcome in LINKED

    @property
    def ever_linked(self) -> bool:
        """The ledger has seen the link in place at some time (or removed it at offboarding)."""
        return (
            self.outcome in LINKED
            or self.verified_since is not None
            or self.last_linked_at is not None
            or self.offboarded_at is not None
        )

    def verified(self) -> Interval | None:
        """The verified interval: an unbroken run of nightly verifications up to the last check."""
        if self.outcome != OutcomeKind.VERIFIED.value or not (self.verified_since and self.last_checked_at):
            return None
        return Interval(self.verified_since, max(self.verified_since, self.last_checked_at))

    def linked_and_earning(self) -> Interval | None:
        """Verified and earning at once, for a link in place."""
        verified = self.verified()
        if not self.active or verified is None or self.earning != "earning":
            return None
        if not (self.earning_since and self.earning_checked_at):
            return None
        return verified & Interval(self.earning_since, max(self.earning_since, self.earning_checked_at))


@dataclass(frozen=True)
class Mismatch:
    """One customer's mismatch of one kind (the JSON and CSV row)."""

    kind: str = field(metadata={"styles": KIND_STYLES})
    customer_tenant_id: str
    customer_name: str | None
    months: str | None
    """The months concerned, `YYYY-MM`, space-separated (None for `earning-not-attributed`)."""
    earning: str | None
    linked_since: str | None
    earning_since: str | None
    offboarded_at: str | None
    detail: str


@dataclass(frozen=True)
class Context:
    """When the comparison is made, the reporting delay, and the months the file covers."""

    now: datetime
    delay: timedelta
    window: tuple[date, date] | None

    def due(self, month: date) -> bool:
        """The month ended longer than the reporting delay ago."""
        return self.now - month_bounds(month)[1] > self.delay

    def months(self) -> list[date]:
        """Every month from the file's first to its last."""
        if self.window is None:
            return []
        found, month = [], self.window[0]
        while month <= self.window[1]:
            found.append(month)
            month = month_bounds(month)[1].date()
        return found


@dataclass(frozen=True)
class Customer:
    """What both sides say about one customer tenant."""

    tenant: str
    links: Sequence[LedgerLink]
    pal: frozenset[date]
    other: frozenset[str]
    name: str | None

    def verified(self) -> list[Interval]:
        """The verified intervals of the customer's links."""
        return [interval for link in self.links if (interval := link.verified()) is not None]

    def earning(self) -> list[Interval]:
        """The times the customer's links in place are verified and earning."""
        return [interval for link in self.links if (interval := link.linked_and_earning()) is not None]

    def offboarded(self) -> datetime | None:
        """When the customer was offboarded, if every link of it is."""
        dates = [link.offboarded_at for link in self.links]
        return max(d for d in dates if d) if dates and all(dates) else None

    def row(self, kind: str, months: Iterable[date] | None, detail: str) -> Mismatch:
        """The customer's mismatch of `kind`, with what the ledger says of it."""
        earning = self.earning()
        verified = [link.verified_since for link in self.links if link.verified_since]
        recognitions = {link.earning for link in self.links if link.active and link.earning}
        return Mismatch(
            kind=kind,
            customer_tenant_id=self.tenant,
            customer_name=self.name,
            months=" ".join(month_name(m) for m in sorted(months)) if months is not None else None,
            earning="earning" if "earning" in recognitions else min(recognitions, default=None),
            linked_since=_day(min(verified, default=None)),
            earning_since=_day(min((interval.start for interval in earning), default=None)),
            offboarded_at=_day(self.offboarded()),
            detail=detail,
        )


def _start(interval: Interval) -> datetime:
    """The sort key of intervals."""
    return interval.start


def _day(moment: datetime | None) -> str | None:
    """`2025-03-01` (UTC)."""
    return moment.date().isoformat() if moment is not None else None


def compare(
    insights: Insights, links: Iterable[LedgerLink], *, now: datetime, delay_days: int
) -> list[Mismatch]:
    """Every mismatch between the file and the ledger, by kind (in `KINDS` order), then tenant."""
    by_tenant: dict[str, list[LedgerLink]] = {}
    for link in links:
        by_tenant.setdefault(link.customer_tenant_id, []).append(link)
    window = (min(insights.months), max(insights.months)) if insights.months else None
    context = Context(now, timedelta(days=delay_days), window)
    found: list[Mismatch] = []
    for tenant in sorted(set(by_tenant) | insights.tenants):
        ledger = by_tenant.get(tenant, [])
        name = insights.names.get(tenant) or next((x.customer_name for x in ledger if x.customer_name), None)
        pal, other = insights.pal.get(tenant, frozenset()), insights.other.get(tenant, frozenset())
        customer = Customer(tenant, ledger, pal, other, name)
        found += attributed(customer) + earning(customer, context)
    return sorted(found, key=lambda row: (KINDS.index(row.kind), row.customer_tenant_id))


def attributed(customer: Customer) -> list[Mismatch]:
    """The months the file attributes through PAL, against the ledger's links and intervals."""
    if not customer.pal:
        return []
    said = "Partner Center attributes it through PAL"
    if not any(link.ever_linked for link in customer.links):
        outcomes = sorted({link.outcome for link in customer.links})
        ledger = f"a record but no link (outcome {', '.join(outcomes)})" if outcomes else "no link for it"
        return [customer.row(KINDS[1], customer.pal, f"{said}; the ledger has {ledger}")]
    offboarded = customer.offboarded()
    if offboarded is not None:
        after = [month for month in customer.pal if month > offboarded.date().replace(day=1)]
        detail = f"offboarded on {_day(offboarded)}; {said} for months after that"
        return [customer.row(KINDS[1], after, detail)] if after else []
    verified = customer.verified()
    uncovered = [month for month in customer.pal if not any(i.overlaps(month) for i in verified)]
    if not uncovered:
        return []
    intervals = ", ".join(f"{_day(i.start)} to {_day(i.end)}" for i in sorted(verified, key=_start))
    ledger = (
        f"the ledger's verified interval is {intervals}"
        if intervals
        else "the ledger has no verified interval"
    )
    return [customer.row(KINDS[2], uncovered, f"{said} for these months; {ledger}")]


def earning(customer: Customer, context: Context) -> list[Mismatch]:
    """The time the ledger has the customer linked and earning, against the file's PAL months."""
    intervals = customer.earning()
    if not intervals:
        return []
    if not customer.pal:
        start = min(interval.start for interval in intervals)
        days = (context.now - start).days
        covered = context.window is None or start < month_bounds(context.window[1])[1]
        if context.now - start <= context.delay or not covered:
            return []
        detail = (
            f"linked and earning since {_day(start)} ({days} days; the reporting delay is "
            f"{context.delay.days} days), but no PAL attribution in the file"
        )
        if customer.other:
            detail += f"; the file attributes it as {', '.join(sorted(customer.other))}"
        return [customer.row(KINDS[0], None, detail)]
    missing = [
        month
        for month in context.months()
        if month not in customer.pal and context.due(month) and any(i.contains(month) for i in intervals)
    ]
    detail = "linked and earning the whole month in the ledger, but no PAL attribution in the file"
    return [customer.row(KINDS[3], missing, detail)] if missing else []


# --- the ledger as the API gives it -------------------------------------------------------------------


def moment(value: Any) -> datetime | None:
    """An ISO 8601 time from the API (UTC when it names no zone), or None."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def link_of(item: Mapping[str, Any]) -> LedgerLink | None:
    """A link state of `GET /api/links` (None when its tenant is not a GUID); text screened."""
    from shared.spine.identifiers import is_guid
    from shared.spine.untrusted import shown

    tenant = item.get("customerTenantId")
    if not is_guid(tenant):
        return None

    def text(name: str, limit: int) -> str | None:
        """The item's text field, screened (None when absent, empty or not text)."""
        value = item.get(name)
        return shown(value, limit) if isinstance(value, str) and value else None

    return LedgerLink(
        customer_tenant_id=tenant.lower(),
        outcome=text("outcome", 40) or "unknown",
        customer_name=text("customerName", 80),
        verified_since=moment(item.get("verifiedSince")),
        last_checked_at=moment(item.get("lastCheckedAt")),
        last_linked_at=moment(item.get("lastLinkedAt")),
        earning=text("earning", 40),
        earning_since=moment(item.get("earningSince")),
        earning_checked_at=moment(item.get("earningCheckedAt")),
        offboarded_at=moment(item.get("offboardedAt")),
    )
