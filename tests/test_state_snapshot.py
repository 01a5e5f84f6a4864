"""A verify message carries what the nightly run saw of a verified link's state row: a steady night
writes with one MERGE conditioned on that row's ETag and reads nothing; anything else (no snapshot,
a redelivery, a row changed since, a night that found something else) reads the ledger and decides
as before."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from sandbox.cloud import CloudSandbox
from shared.links.ledger import Attempt, LedgerView
from shared.links.recognition import Earning, LinkRecord, Recognition, RoleGrant
from shared.links.reverify import verify_message, verify_now
from shared.links.rows import LinkState
from shared.links.service import LinkService
from shared.links.snapshot import StateSnapshot, snapshot_properties, steady_columns
from shared.spine.envelope import RUN_ID_PROPERTY, STATE_PROPERTY, Source
from shared.spine.outcomes import Outcome, OutcomeKind
from shared.spine.receipts import Receipt
from tenants import FEDERATED_APP, PARTNER_ID, TAILSPIN
from tenants import onboarding_message as message

OBJECT_ID = "70ef3ca8-58d0-4993-a43c-dd744f31c589"
NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
GRANT = RoleGrant("Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c", "/subscriptions/x", True)
RECOGNITION = Recognition(Earning.EARNING, (GRANT,), "earning through Contributor")


def verified_row(**changes: Any) -> LinkState:
    row = LinkState(
        partition_key=TAILSPIN,
        row_key=f"link~{FEDERATED_APP}",
        etag="W/\"datetime'2026-03-01T03%3A00%3A00.1234567Z'\"",
        outcome=OutcomeKind.VERIFIED,
        customer_tenant_id=TAILSPIN,
        client_id=FEDERATED_APP,
        identity_type="federated",
        partner_id=PARTNER_ID,
        linked_partner_id=PARTNER_ID,
        object_id=OBJECT_ID,
        link_version=1,
        verified_count=4,
        last_run_id="2026-03-01",
        earning=Earning.EARNING,
        earning_roles='[{"role":"Contributor","roleDefinitionId":"b24988ac-6180-42a0-ab88-20f7382dd24c",'
        '"scope":"/subscriptions/x","qualifies":true}]',
        earning_reason="earning through Contributor",
        earning_since=NOW,
        link_record_version=1,
    )
    return row.replace(**changes)


def attempt_for(**changes: Any) -> Attempt:
    attempt = Attempt(
        message_id="verify:x",
        source="verify",
        customer_tenant_id=TAILSPIN,
        client_id=FEDERATED_APP,
        identity_type="federated",
        partner_id=PARTNER_ID,
        run_id="2026-03-02",
    )
    return dataclasses.replace(attempt, **changes)


IN_PLACE = Outcome(
    OutcomeKind.VERIFIED, "in place", partner_id=PARTNER_ID, object_id=OBJECT_ID, link_version=1
)


def snapshot_of(row: LinkState) -> StateSnapshot:
    snapshot = StateSnapshot.of_state(row)
    assert snapshot is not None
    return snapshot


def test_the_snapshot_travels_as_one_validated_property() -> None:
    row = verified_row()
    properties = snapshot_properties(row)
    assert StateSnapshot.of_properties(properties) == snapshot_of(row)
    as_bytes = {STATE_PROPERTY: properties[STATE_PROPERTY].encode()}  # as the AMQP SDK may give it
    assert StateSnapshot.of_properties(as_bytes) == snapshot_of(row)
    assert snapshot_of(row).verified_count == 4 and snapshot_of(row).etag == row.etag


@pytest.mark.parametrize(
    "changes",
    [
        {"outcome": OutcomeKind.HEALED},  # not a verified row: the next night is not a steady one
        {"etag": None},
        {"etag": 'W/"with a space"'},
        {"offboarded_at": NOW},
    ],
)
def test_a_row_a_steady_night_cannot_extend_carries_no_snapshot(changes: dict[str, Any]) -> None:
    assert snapshot_properties(verified_row(**changes)) == {}


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "not json",
        "[]",
        '{"etag":"x","count":1,"record":1,"link":"00000000000000000000000000000000"}',  # a key missing
        '{"etag":"x","count":1,"record":1,"link":"0","earning":null}',
        '{"etag":"x","count":-1,"record":1,"link":"00000000000000000000000000000000","earning":null}',
        '{"etag":"x","count":true,"record":1,"link":"00000000000000000000000000000000","earning":null}',
        '{"etag":"a b","count":1,"record":1,"link":"00000000000000000000000000000000","earning":null}',
        '{"etag":"x","count":1,"record":1,"link":"00000000000000000000000000000000","earning":7}',
        '{"etag":"x","count":1,"record":1,"link":"00000000000000000000000000000000","earning":null,"x":1}',
        "x" * 600,
        42,
    ],
)
def test_a_malformed_snapshot_is_not_believed(value: Any) -> None:
    assert StateSnapshot.of_properties({STATE_PROPERTY: value} if value is not None else {}) is None


def test_a_steady_night_merges_what_a_read_would_have_written() -> None:
    columns = steady_columns(snapshot_of(verified_row()), attempt_for(), IN_PLACE, RECOGNITION, NOW)
    assert columns == {
        "LastCheckedAt": NOW,
        "LastLinkedAt": NOW,
        "VerifiedCount": 5,
        "LastMessageId": "verify:x",
        "LastRunId": "2026-03-02",
        "EarningCheckedAt": NOW,
    }
    unchecked = steady_columns(snapshot_of(verified_row()), attempt_for(), IN_PLACE, None, NOW)
    assert unchecked is not None and "EarningCheckedAt" not in unchecked


@pytest.mark.parametrize(
    ("row", "attempt", "outcome", "recognition"),
    [
        (verified_row(), attempt_for(), dataclasses.replace(IN_PLACE, kind=OutcomeKind.HEALED), RECOGNITION),
        (verified_row(), attempt_for(), dataclasses.replace(IN_PLACE, link_version=2), RECOGNITION),
        (verified_row(), attempt_for(), dataclasses.replace(IN_PLACE, object_id="other"), RECOGNITION),
        (verified_row(), attempt_for(identity_type="secret"), IN_PLACE, RECOGNITION),
        (verified_row(), attempt_for(), IN_PLACE, dataclasses.replace(RECOGNITION, grants=())),
        (verified_row(), attempt_for(), IN_PLACE, dataclasses.replace(RECOGNITION, status=Earning.UNKNOWN)),
        (
            verified_row(),
            attempt_for(),
            IN_PLACE,
            dataclasses.replace(RECOGNITION, record=LinkRecord(PARTNER_ID, OBJECT_ID, None, None, None, 2)),
        ),
        (verified_row(earning=None), attempt_for(), IN_PLACE, RECOGNITION),  # a first check
        (verified_row(earning_since=None), attempt_for(), IN_PLACE, RECOGNITION),
        (verified_row(earning_changed_run_id="2026-02-01"), attempt_for(), IN_PLACE, RECOGNITION),
    ],
)
def test_a_night_that_found_something_else_is_not_steady(
    row: LinkState, attempt: Attempt, outcome: Outcome, recognition: Recognition
) -> None:
    assert steady_columns(snapshot_of(row), attempt, outcome, recognition, NOW) is None


def test_the_snapshot_holds_only_for_the_same_row_without_receipt_or_intent() -> None:
    row = verified_row()
    snapshot = snapshot_of(row)
    assert snapshot.holds(LedgerView(TAILSPIN, state=row))
    assert not snapshot.holds(LedgerView(TAILSPIN, state=row.replace(etag='W/"other"')))
    assert not snapshot.holds(LedgerView(TAILSPIN))
    receipt = Receipt(partition_key=TAILSPIN, row_key="receipt~x", outcome=OutcomeKind.VERIFIED)
    assert not snapshot.holds(LedgerView(TAILSPIN, receipt=receipt, state=row))


def test_a_run_started_twice_sends_no_snapshot_for_a_link_it_has_checked() -> None:
    outgoing = verify_message(verified_row(last_run_id="2026-03-02"), "2026-03-02")
    assert outgoing is not None and STATE_PROPERTY not in outgoing.properties
    outgoing = verify_message(verified_row(), "2026-03-02")
    assert outgoing is not None and STATE_PROPERTY in outgoing.properties


class ViewSpy:
    """Counts the ledger's reads of a partition (`Ledger.view` and the table's point reads)."""

    def __init__(self, service: LinkService, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads = 0
        table = service.ledger.table
        point_reads = table.point_reads

        async def counted(partition: str, row_keys: Any) -> dict[str, Any]:
            self.reads += 1
            return await point_reads(partition, row_keys)

        monkeypatch.setattr(table, "point_reads", counted)


async def verified_link(service: LinkService) -> LinkState:
    """Tailspin onboarded and verified once: its row is a verified one."""
    linked = await service.handle(json.dumps(message(TAILSPIN)).encode(), message_id="onboard")
    assert linked.kind is OutcomeKind.ALREADY_LINKED
    (state,) = await service.ledger.link_states(TAILSPIN)
    assert await verify_now(service, state, "2026-03-01") is not None
    (state,) = await service.ledger.link_states(TAILSPIN)
    assert state.outcome is OutcomeKind.VERIFIED and state.verified_count == 1
    return state


async def verify(service: LinkService, state: LinkState, run_id: str, **changes: Any) -> Outcome:
    outgoing = verify_message(state, run_id)
    assert outgoing is not None
    arguments: dict[str, Any] = {
        "message_id": outgoing.message_id,
        "properties": outgoing.properties,
        "source": Source.VERIFY,
    } | changes
    return await service.handle(outgoing.body, **arguments)


async def test_a_verify_message_carrying_the_rows_etag_skips_the_read(
    service: LinkService, cloud: CloudSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = await verified_link(service)
    spy = ViewSpy(service, monkeypatch)
    outcome = await verify(service, state, "2026-03-02")
    assert outcome.kind is OutcomeKind.VERIFIED and spy.reads == 0
    (after,) = await service.ledger.link_states(TAILSPIN)
    assert (after.verified_count, after.last_run_id, after.verified_since) == (
        2,
        "2026-03-02",
        state.verified_since,
    )
    assert after.earning_checked_at is not None and after.earning_checked_at > state.last_checked_at
    assert [e.outcome for e in await service.ledger.history(TAILSPIN)] == ["verified", "already-linked"]


@pytest.mark.parametrize(
    "how",
    [
        {"properties": {RUN_ID_PROPERTY: "2026-03-02"}},  # an older message: no snapshot
        {"delivery_count": 2},  # a redelivery: an earlier attempt may have left an intent
    ],
)
async def test_a_verify_message_without_a_believed_snapshot_reads(
    service: LinkService, cloud: CloudSandbox, monkeypatch: pytest.MonkeyPatch, how: dict[str, Any]
) -> None:
    state = await verified_link(service)
    spy = ViewSpy(service, monkeypatch)
    outcome = await verify(service, state, "2026-03-02", **how)
    assert outcome.kind is OutcomeKind.VERIFIED and spy.reads == 1
    (after,) = await service.ledger.link_states(TAILSPIN)
    assert (after.verified_count, after.last_run_id) == (2, "2026-03-02")


async def test_a_412_on_the_conditional_write_falls_back_to_read_and_decide(
    service: LinkService, cloud: CloudSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = await verified_link(service)
    # Another writer changes the row after the nightly run read it (its ETag moves on).
    assert await verify_now(service, state.replace(last_run_id="2026-03-02"), "2026-03-02") is not None
    spy = ViewSpy(service, monkeypatch)
    outcome = await verify(service, state, "2026-03-03")  # built from the row as it was
    assert outcome.kind is OutcomeKind.VERIFIED and spy.reads == 1
    (after,) = await service.ledger.link_states(TAILSPIN)
    assert (after.verified_count, after.last_run_id) == (3, "2026-03-03")  # counted from the row as it is


async def test_a_night_that_heals_reads_before_it_writes_to_arm(
    service: LinkService, cloud: CloudSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = await verified_link(service)
    cloud.delete_link(TAILSPIN, OBJECT_ID)
    spy = ViewSpy(service, monkeypatch)
    outcome = await verify(service, state, "2026-03-02")
    # Read before the PUT (is the row still what the nightly run saw?) and after it, as without one.
    assert outcome.kind is OutcomeKind.HEALED and spy.reads == 2
    assert [e.outcome for e in await service.ledger.history(TAILSPIN)][:2] == ["healed", "verified"]


async def test_a_night_that_finds_the_row_changed_before_an_arm_write_decides_again(
    service: LinkService, cloud: CloudSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = await verified_link(service)
    assert await verify_now(service, state.replace(last_run_id="2026-03-02"), "2026-03-02") is not None
    cloud.delete_link(TAILSPIN, OBJECT_ID)
    before = dict(cloud.stats()["armCalls"].get(TAILSPIN, {}))
    outcome = await verify(service, state, "2026-03-03")  # a stale snapshot: read, link again
    assert outcome.kind is OutcomeKind.HEALED
    calls = dict(cloud.stats()["armCalls"].get(TAILSPIN, {}))
    # The first try stopped before its PUT; the second read the ledger, then linked once.
    assert calls.get("PUT", 0) - before.get("PUT", 0) == 1
    assert calls.get("GET", 0) - before.get("GET", 0) >= 2
    (after,) = await service.ledger.link_states(TAILSPIN)
    assert (after.outcome, after.last_run_id) == ("healed", "2026-03-03")
