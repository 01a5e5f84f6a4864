"""The recognition decision and its data, without any service: Microsoft's PEC role table as data
(with its source and date), the pure `decide`, and what a change between nights is."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from sandbox.scenario_authorization import BUILT_IN_ROLES
from shared.links import qualifying_roles
from shared.links.earning import change_between, grants_of, note
from shared.links.qualifying_roles import LEAST_PRIVILEGE, PEC_ROLES, SOURCE_DATE, SOURCE_URL, pec_role
from shared.links.recognition import Earning, Recognition, RoleGrant, Subscription, decide
from shared.links.rows import LinkState
from shared.spine.outcomes import OutcomeKind

CLIENT = "81a6daa3-a704-4f3e-a1ca-45fa036d5a09"
PROD = Subscription("6b1f3f7e-2f4a-4d8e-9a51-0c2d7e4b9a10", "Production")
DEV = Subscription("0f5c8d2a-7b3e-4c61-8e90-3a4b5c6d7e81", "Development")
CONTRIBUTOR = RoleGrant(
    "Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c", f"/subscriptions/{PROD.subscription_id}", True
)
OWNER_DEV = RoleGrant(
    "Owner", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", f"/subscriptions/{DEV.subscription_id}", True
)
READER = RoleGrant(
    "Reader", "acdd72a7-3385-48ef-bd42-f606fba81ae7", f"/subscriptions/{PROD.subscription_id}", False
)


def test_the_qualifying_role_table_has_its_source_and_date() -> None:
    assert SOURCE_URL == "https://learn.microsoft.com/partner-center/billing/azure-roles-perms-pec"
    assert datetime.strptime(SOURCE_DATE, "%Y-%m-%d").year >= 2022
    assert qualifying_roles.ROLE_IDS_SOURCE.startswith("https://learn.microsoft.com/")
    ids = [role.role_definition_id for role in PEC_ROLES]
    assert len(ids) == len(set(ids)) == len(PEC_ROLES) > 100
    assert all(re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", i) for i in ids)
    assert len({role.name for role in PEC_ROLES}) == len(PEC_ROLES)
    by_name = {role.name: role.qualifies for role in PEC_ROLES}
    assert by_name["Owner"] and by_name["Contributor"] and by_name["Support Request Contributor"]
    assert not by_name["Reader"] and not by_name["Billing Reader"] and not by_name["Monitoring Reader"]
    assert LEAST_PRIVILEGE.name == "Support Request Contributor" and LEAST_PRIVILEGE.qualifies
    assert pec_role("B24988AC-6180-42A0-AB88-20F7382DD24C") == pec_role(CONTRIBUTOR.role_definition_id)


def test_the_sandbox_knows_the_built_in_roles_by_the_tables_names() -> None:
    for role_id, name in BUILT_IN_ROLES.items():
        row = pec_role(role_id)
        assert row is not None and row.name == name, role_id


def test_a_qualifying_grant_earns_whatever_else_is_refused() -> None:
    found = decide([PROD, DEV], [DEV], [READER, CONTRIBUTOR, CONTRIBUTOR], client_id=CLIENT)
    assert found.status is Earning.EARNING and found.remediation is None
    assert found.grants == (CONTRIBUTOR, READER)  # qualifying first, each once
    assert found.reason == f"qualifying Azure roles: Contributor on /subscriptions/{PROD.subscription_id}"


def test_no_qualifying_grant_names_what_it_holds_and_what_to_ask_for() -> None:
    found = decide([PROD], [], [READER], client_id=CLIENT)
    assert found.status is Earning.NOT_EARNING
    assert (
        found.reason
        == f"no qualifying Azure role; it holds only Reader on /subscriptions/{PROD.subscription_id}"
    )
    assert found.remediation is not None
    assert found.remediation.startswith(
        f"Ask the customer to assign the partner's app (client ID {CLIENT}) a permanent Azure role that "
        f"earns partner credit on subscription Production ({PROD.subscription_id}): Support Request "
        "Contributor is the least privilege that qualifies"
    )
    assert "PIM-eligible role counts only while it is active" in found.remediation


def test_refused_reads_with_nothing_earning_are_unknown() -> None:
    found = decide([PROD, DEV], [DEV], [READER], client_id=CLIENT)
    assert found.status is Earning.UNKNOWN
    where = f"subscription Development ({DEV.subscription_id})"
    assert found.reason == f"the identity may not read its role assignments in {where}"


def test_many_subscriptions_are_counted_not_all_named() -> None:
    many = [Subscription(f"00000000-0000-0000-0000-{n:012d}", f"S{n}") for n in range(1, 9)]
    found = decide(many, [], [], client_id=CLIENT)
    assert "S5 (" in (found.remediation or "") and "S6 (" not in (found.remediation or "")
    assert "and 3 more" in (found.remediation or "")


def _state(recognition: Recognition | None, *, when: datetime) -> LinkState:
    state = LinkState(partition_key="t", row_key="link~c", outcome=OutcomeKind.VERIFIED, object_id="o")
    return note(state, None, recognition, at=when, run_id="2026-03-01").state


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [
        ((CONTRIBUTOR,), (CONTRIBUTOR,), None),
        ((CONTRIBUTOR,), (READER,), (OutcomeKind.NOT_EARNING, "stopped-earning")),
        ((CONTRIBUTOR, OWNER_DEV), (CONTRIBUTOR,), (OutcomeKind.EARNING, "roles-lost")),
        ((CONTRIBUTOR,), (CONTRIBUTOR, OWNER_DEV), (OutcomeKind.EARNING, "roles-gained")),
        ((READER,), (CONTRIBUTOR,), (OutcomeKind.EARNING, "started-earning")),
        ((READER,), (), None),  # still not earning: what does not qualify changes no recognition
    ],
)
def test_a_change_between_nights(
    before: tuple[RoleGrant, ...], after: tuple[RoleGrant, ...], change: tuple[OutcomeKind, str] | None
) -> None:
    first = datetime(2026, 3, 1, 2, tzinfo=UTC)
    previous = _state(decide([PROD, DEV], [], before, client_id=CLIENT), when=first)
    now = decide([PROD, DEV], [], after, client_id=CLIENT)
    found = change_between(previous, now)
    assert (None if found is None else (found.kind, found.code)) == change
    noted = note(previous, previous, now, at=datetime(2026, 3, 2, 2, tzinfo=UTC), run_id="2026-03-02")
    assert noted.change == found
    assert noted.state.earning_since == (first if found is None else datetime(2026, 3, 2, 2, tzinfo=UTC))
    assert grants_of(noted.state) == now.grants


def test_the_first_check_and_a_check_not_made_are_not_changes() -> None:
    first = decide([PROD], [], [CONTRIBUTOR], client_id=CLIENT)
    fresh = LinkState(partition_key="t", row_key="link~c", outcome=OutcomeKind.VERIFIED)
    assert change_between(fresh, first) is None and change_between(None, first) is None
    noted = note(fresh, fresh, first, at=datetime(2026, 3, 1, tzinfo=UTC), run_id="r")
    assert noted.change is None and noted.rewrite and noted.state.earning is Earning.EARNING
    kept = note(fresh, noted.state, None, at=datetime(2026, 3, 2, tzinfo=UTC), run_id="r2")
    assert kept.state.earning_roles == noted.state.earning_roles and not kept.rewrite
    assert kept.state.earning_checked_at == datetime(2026, 3, 1, tzinfo=UTC)


def test_grants_written_by_anyone_are_read_defensively() -> None:
    state = LinkState(partition_key="t", row_key="k", outcome=OutcomeKind.VERIFIED, earning_roles="not json")
    assert grants_of(state) == ()
    odd = '[1, {"role": "R"}, {"role": "R", "roleDefinitionId": "x", "scope": "/s", "qualifies": "yes"}]'
    assert grants_of(state.replace(earning_roles=odd)) == (RoleGrant("R", "x", "/s", False),)
