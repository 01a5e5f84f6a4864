"""What the dashboard reads about the whole fleet, built to stay cheap at 10,000 customers.

- **Summary** (links by outcome now): counting every link state is a full read of the ledger's link
  rows, so each Function App instance keeps the answer for `SUMMARY_SECONDS` and says when it was
  counted (`asOf`); a page refreshed a hundred times in a minute reads the ledger once.
- **Trends**: the nightly runs' records (one row each in `pal-runs`, counts per outcome per run), the
  newest `TREND_RUNS` of them; "what changed since last night" is the latest finished run's counts
  against the one before, and the customers with a history event of the latest run (a run writes an
  event only when a link's outcome or recognition is not simply verified again): of its first
  `CHANGED_SCAN` events, those whose outcome differs from the identity's event before, at most
  `CHANGED_LIMIT` (`moreChanged` says when there may be more).
- **Name search**: a case-sensitive prefix of the customer's name, filtered by Table Storage itself
  (`CustomerName ge @p and CustomerName lt @p⁺`) and paged with its continuation token; a page of
  no match reads on for at most `SEARCH_PAGES` of the server's pages, then hands back the token.
- **Attribution coverage**: every customer's two newest finished audit runs (the audit rows only),
  kept per instance like the summary; the customers whose coverage dropped come first.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from shared.links.rows import EVENT_PREFIX, STATE_PREFIX, HistoryEvent, LinkState
from shared.spine.table import after_prefix

if TYPE_CHECKING:
    from shared.attribution.rows import AuditRow
    from shared.attribution.store import AttributionLedger
    from shared.links.ledger import Ledger
    from shared.links.runs import RunRecord

SUMMARY_SECONDS = 60.0
TREND_RUNS = 30
CHANGED_LIMIT = 25
CHANGED_SCAN = 100
SEARCH_PAGES = 5
COVERAGE_LIMIT = 200
NEEDS_ACTION = ("needs-customer-action", "needs-partner-action")

_cache: dict[tuple[str, str], tuple[float, Any]] = {}
_locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)


async def cached(table_key: str, name: str, compute: Callable[[], Awaitable[Any]]) -> Any:
    """The value computed at most once per SUMMARY_SECONDS per instance (and per ledger table)."""
    key = (table_key, name)
    async with _locks[key]:
        found = _cache.get(key)
        if found is not None and time.monotonic() - found[0] < SUMMARY_SECONDS:
            return found[1]
        value = await compute()
        _cache[key] = (time.monotonic(), value)
        return value


def forget_cached() -> None:
    """Drop what this instance keeps (tests, and after an operator's action changed the fleet)."""
    _cache.clear()


def table_key(ledger: Ledger) -> str:
    client = ledger.table.client
    return f"{client.url}|{client.table_name}"


async def summary(ledger: Ledger, as_of: str) -> dict[str, Any]:
    """Links by outcome now (offboarded ones apart): one read of every link state."""
    outcomes: Counter[str] = Counter()
    offboarded = 0
    async for state in ledger.all_link_states():
        if state.is_offboarded:
            offboarded += 1
        else:
            outcomes[state.outcome.value] += 1
    return {
        "total": sum(outcomes.values()),
        "offboarded": offboarded,
        "needingAction": sum(outcomes[kind] for kind in NEEDS_ACTION),
        "byOutcome": dict(sorted(outcomes.items())),
        "asOf": as_of,
    }


def _run_view(run: RunRecord) -> dict[str, Any]:
    return {
        "runId": run.run_id,
        "startedAt": run.started_at,
        "endedAt": run.ended_at,
        "total": run.total,
        "complete": run.complete,
        "counts": dict(sorted(run.counts.items())),
    }


def _differences(latest: RunRecord, previous: RunRecord | None) -> dict[str, int]:
    """Outcome -> change in count since the previous run (only the outcomes that moved)."""
    before = previous.counts if previous else {}
    kinds = set(latest.counts) | set(before)
    moved = {kind: latest.count(kind) - int(before.get(kind, 0)) for kind in kinds}
    return {kind: delta for kind, delta in sorted(moved.items()) if delta}


async def trends(ledger: Ledger) -> dict[str, Any]:
    """The newest runs' counts, and what the latest finished run changed."""
    runs = (await ledger.runs.all())[-TREND_RUNS:]
    ended = [run for run in runs if run.ended]
    latest = ended[-1] if ended else None
    previous = ended[-2] if len(ended) > 1 else None
    changed: list[dict[str, Any]] = []
    more = False
    if latest is not None:
        changed, more = await _changed_customers(ledger, latest.run_id)
    return {
        "runs": [_run_view(run) for run in runs],
        "latestRunId": latest.run_id if latest else None,
        "previousRunId": previous.run_id if previous else None,
        "differences": _differences(latest, previous) if latest else {},
        "changed": changed,
        "moreChanged": more,
    }


async def _changed_customers(ledger: Ledger, run_id: str) -> tuple[list[dict[str, Any]], bool]:
    """The run's events whose outcome differs from the identity's event before (bounded)."""
    client = await ledger.table.ready()
    query = client.query_entities(
        "RunId eq @run and RowKey ge @lo and RowKey lt @hi",
        parameters={"run": run_id, "lo": EVENT_PREFIX, "hi": after_prefix(EVENT_PREFIX)},
        results_per_page=CHANGED_SCAN,
    )
    events: list[HistoryEvent] = []
    async for entity in query:
        events.append(HistoryEvent.from_entity(entity))
        if len(events) >= CHANGED_SCAN:
            break
    befores = await asyncio.gather(*(_before(ledger, event) for event in events))
    changed = []
    for event, before in zip(events, befores, strict=True):
        if before == event.outcome.value:
            continue  # the same outcome again (a failure that persists): not a change
        item: dict[str, Any] = {
            "customerTenantId": event.partition_key,
            "clientId": event.client_id,
            "outcome": event.outcome.value,
            "previousOutcome": before,
            "time": event.event_time,
            "reason": event.reason,
        }
        if event.customer_name:
            item["customerName"] = event.customer_name
        changed.append({key: value for key, value in item.items() if value is not None})
    more = len(events) >= CHANGED_SCAN or len(changed) > CHANGED_LIMIT
    return changed[:CHANGED_LIMIT], more


async def _before(ledger: Ledger, event: HistoryEvent) -> str | None:
    """The outcome of the same identity's event just before this one, if the recent history has it."""
    history = await ledger.history(event.partition_key, limit=20)
    older = [e for e in history if e.row_key > event.row_key and e.client_id == event.client_id]
    return older[0].outcome.value if older else None


async def names_page(
    ledger: Ledger, prefix: str, outcome: str | None, top: int, continuation: dict[str, Any] | None
) -> tuple[list[LinkState], dict[str, Any] | None]:
    """Link states whose customer name starts with `prefix` (case-sensitive), filtered server-side."""
    client = await ledger.table.ready()
    query = "RowKey ge @lo and RowKey lt @hi and CustomerName ge @name and CustomerName lt @beyond"
    parameters: dict[str, Any] = {
        "lo": STATE_PREFIX,
        "hi": after_prefix(STATE_PREFIX),
        "name": prefix,
        "beyond": after_prefix(prefix),
    }
    if outcome is not None:
        query += " and Outcome eq @outcome"
        parameters["outcome"] = outcome
    token: Any = continuation
    pages: Any = client.query_entities(query, parameters=parameters, results_per_page=top).by_page(
        continuation_token=token
    )
    read = 0
    async for page in pages:
        items = [LinkState.from_entity(entity) async for entity in page]
        read += 1
        if items or read >= SEARCH_PAGES or not pages.continuation_token:
            return items, pages.continuation_token
    return [], None


def _by_product(counts: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    return {
        product: {
            "attributed": int(statuses.get("attributed", 0)),
            "notAttributed": int(statuses.get("not-attributed", 0)),
            "unknown": sum(int(n) for s, n in statuses.items() if s not in ("attributed", "not-attributed")),
        }
        for product, statuses in sorted(counts.items())
    }


async def coverage(attribution: AttributionLedger, as_of: str) -> dict[str, Any]:
    """Per customer: the latest finished audit's coverage per product, and the one before."""
    finished: dict[str, list[AuditRow]] = defaultdict(list)
    async for run in attribution.latest_runs():
        if run.ended_at is not None:
            finished[run.partition_key].append(run)
    customers = []
    for tenant, runs in finished.items():
        runs.sort(key=lambda run: run.started_at)
        latest, previous = runs[-1], (runs[-2] if len(runs) > 1 else None)
        before = previous.coverage if previous else None
        dropped = before is not None and latest.coverage is not None and latest.coverage < before
        customers.append(
            {
                "customerTenantId": tenant,
                "runId": latest.run_id,
                "endedAt": latest.ended_at,
                "coverage": latest.coverage,
                "previousCoverage": before,
                "dropped": dropped,
                "byProduct": _by_product(latest.count_map()),
            }
        )
    customers.sort(
        key=lambda c: (
            not c["dropped"],
            c["coverage"] if c["coverage"] is not None else 2.0,
            c["customerTenantId"],
        )
    )
    return {
        "audited": len(customers),
        "dropped": sum(1 for c in customers if c["dropped"]),
        "customers": customers[:COVERAGE_LIMIT],
        "asOf": as_of,
    }
