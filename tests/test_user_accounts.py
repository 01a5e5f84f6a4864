"""User and service accounts (identity type `user`): a person signs in with a device code through
palctl (the sandbox's Entra ID completes the code as the scenario's user, no person needed), palctl
links, verifies, shows, moves and removes the account's link with the service's linker, and the
Function App records each outcome in the ledger. The service never signs in as the account: the
nightly run lists it as due for a manual check, an offboarding says how to remove its link, the live
view says it needs a sign-in. Every API answer is checked against the OpenAPI document."""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from test_http_api import KEY, PLANTED, Client
from test_palctl_attribution import api_env, link, palctl
from test_sandbox_device_code import https

from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from shared.links.reverify import NightlyRun, due_for_manual_check
from shared.links.rows import LinkState
from shared.links.service import get_service, reset_service
from shared.links.user_accounts import UserAction, UserRecord, parse_user_record
from shared.spine.identity import Identity, IdentityType
from shared.spine.outcomes import OutcomeKind
from tenants import FEDERATED_APP, NORTHWIND, NORTHWIND_UPN, NORTHWIND_USER, OTHER_PARTNER_ID, PARTNER_ID
from traces import everything_logged, everything_stored

USERS = "/links/{customerTenantId}/users/{objectId}"
OURS = frozenset({PARTNER_ID, "2345678"})


# --- the rules of what palctl may record (pure) ------------------------------------------------------


def record(**fields: Any) -> dict[str, Any]:
    return {
        "action": "link",
        "userPrincipalName": NORTHWIND_UPN,
        "outcome": "linked",
        "partnerId": PARTNER_ID,
        "linkedPartnerId": PARTNER_ID,
    } | fields


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"action": "steal"}, "action: not an accepted value"),
        ({"outcome": "failed"}, "outcome: failed is not an outcome of link"),
        ({"action": "verify", "outcome": "linked"}, "outcome: linked is not an outcome of verify"),
        ({"action": "delete", "outcome": "unlinked"}, "linkedPartnerId: must be absent"),
        ({"partnerId": OTHER_PARTNER_ID, "linkedPartnerId": OTHER_PARTNER_ID}, "partnerId: not one of our"),
        ({"linkedPartnerId": "2345678"}, "linkedPartnerId: does not fit the outcome linked"),
        ({"outcome": "foreign-partner"}, "linkedPartnerId: does not fit the outcome foreign-partner"),
        ({"outcome": "kept-other-partner"}, "linkedPartnerId: does not fit the outcome kept-other-partner"),
        ({"linkedPartnerId": None}, "linkedPartnerId: required for linked"),
        ({"userPrincipalName": "no-at-sign"}, "userPrincipalName: required"),
        ({"userPrincipalName": "a@b\n.com"}, "userPrincipalName: required"),
        ({"linkVersion": True}, "linkVersion: must be a whole number"),
        ({"customerName": "x" * 201}, "customerName: printable text"),
        ({"partnerId": "12345"}, "partnerId: required, a partner ID"),
    ],
)
def test_a_record_that_does_not_fit_is_refused_with_the_field(fields: dict[str, Any], problem: str) -> None:
    parsed = parse_user_record(record(**fields), OURS)
    assert isinstance(parsed, list) and any(problem in line for line in parsed), parsed


def test_the_reason_is_composed_from_the_checked_fields_never_taken_as_sent() -> None:
    parsed = parse_user_record(
        record(action="update", outcome="reclaimed", previousPartnerId=OTHER_PARTNER_ID, linkVersion=3), OURS
    )
    assert isinstance(parsed, UserRecord) and parsed.action.source.value == "relink"
    outcome = parsed.as_outcome(NORTHWIND_USER)
    assert outcome.reason == f"changed the link from partner ID {OTHER_PARTNER_ID} to {PARTNER_ID}"
    assert (outcome.object_id, outcome.link_version, outcome.partner_id) == (NORTHWIND_USER, 3, PARTNER_ID)
    assert outcome.details == (f"signed in interactively as {NORTHWIND_UPN} (palctl, update)",)
    foreign = parse_user_record(record(outcome="foreign-partner", linkedPartnerId=OTHER_PARTNER_ID), OURS)
    assert isinstance(foreign, UserRecord) and foreign.as_outcome(NORTHWIND_USER).remediation
    removed = parse_user_record(
        record(action="delete", outcome="unlinked", linkedPartnerId=None, previousPartnerId=PARTNER_ID), OURS
    )
    assert isinstance(removed, UserRecord) and removed.action.source.value == "offboarding"
    assert removed.as_outcome(NORTHWIND_USER).reason == f"removed the link to partner ID {PARTNER_ID}"
    assert UserAction.VERIFY.source.value == "verify"


def test_a_user_account_is_never_an_unattended_identity() -> None:
    assert not IdentityType.USER.unattended
    assert all(kind.unattended for kind in IdentityType if kind is not IdentityType.USER)
    user = LinkState(
        partition_key=NORTHWIND,
        row_key=f"link~{NORTHWIND_USER}",
        outcome=OutcomeKind.LINKED,
        client_id=NORTHWIND_USER,
        identity_type="user",
    )
    assert user.is_user and user.identity is None
    app = user.replace(client_id=FEDERATED_APP, identity_type="federated")
    assert not app.is_user and app.identity == Identity(IdentityType.FEDERATED, FEDERATED_APP)


def test_the_longest_unverified_user_accounts_come_first() -> None:
    now = datetime.now(UTC)

    def state(tenant: str, verified: datetime | None) -> LinkState:
        return LinkState(
            partition_key=tenant, row_key="link~x", outcome=OutcomeKind.LINKED, last_linked_at=verified
        )

    recent, old, never = state("c", now), state("b", now - timedelta(days=40)), state("a", None)
    assert due_for_manual_check([recent, old, never]) == [never, old, recent]


# --- through the sandbox, the broker and the local host ----------------------------------------------


@contextmanager
def completing_sign_ins(cloud: CloudSandbox, tenant: str, user: str) -> Iterator[list[str]]:
    """While the block runs, complete each device code the sandbox issues as `user` (in place of a
    person); yields the codes completed."""
    completed: list[str] = []
    stop = threading.Event()

    def complete() -> None:
        while not stop.is_set():
            _, codes = https(cloud, "GET", "/_sandbox/device-codes")
            for code in [c for c in codes if c not in completed]:
                body = json.dumps({"user": user}).encode()
                status, _ = https(
                    cloud, "POST", f"/_sandbox/tenants/{tenant}/device-codes/{code}/complete", body
                )
                assert status == 200
                completed.append(code)
            stop.wait(0.05)

    worker = threading.Thread(target=complete, daemon=True)
    worker.start()
    try:
        yield completed
    finally:
        stop.set()
        worker.join(timeout=5)


async def as_user(
    cloud: CloudSandbox, host: LocalFunctionsHost, *argv: str
) -> subprocess.CompletedProcess[str]:
    """One palctl command that signs in as Northwind's service account."""
    with completing_sign_ins(cloud, NORTHWIND, NORTHWIND_UPN) as completed:
        done = await palctl(*argv, env=api_env(host))
    assert len(completed) == 1, done.stderr
    return done


def link_of(cloud: CloudSandbox, object_id: str) -> dict[str, Any] | None:
    return next(
        (link for link in cloud.links() if link["objectId"] == object_id and link["state"] == "Active"), None
    )


async def user_state() -> LinkState:
    states = await (await get_service()).ledger.link_states(NORTHWIND)
    (state,) = [state for state in states if state.client_id == NORTHWIND_USER]
    return state


@pytest.fixture
async def host(bus_env: dict[str, str]) -> AsyncIterator[LocalFunctionsHost]:
    """The local host with the key the OpenAPI-checking client sends."""
    await reset_service()
    async with LocalFunctionsHost(settings=bus_env, function_key=KEY) as running:
        yield running
    await reset_service()


@pytest.fixture
async def api(host: LocalFunctionsHost) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as http:
        yield Client(http, host.base_url)


async def test_link_user_signs_in_with_a_device_code_and_records_the_account(
    host: LocalFunctionsHost,
    cloud: CloudSandbox,
    api: Client,
    bus_env: dict[str, str],
    all_logs: pytest.LogCaptureFixture,
) -> None:
    done = await as_user(cloud, host, "link-user", "--tenant", NORTHWIND, "-o", "json")
    assert done.returncode == 0, done.stderr
    assert "open https://microsoft.com/devicelogin and enter the code " in done.stderr
    assert f"signed in as {NORTHWIND_UPN} ({NORTHWIND_USER})" in done.stderr
    shown = json.loads(done.stdout)
    assert (shown["objectId"], shown["outcome"], shown["linkedPartnerId"], shown["recorded"]) == (
        NORTHWIND_USER,
        "linked",
        PARTNER_ID,
        True,
    )
    assert link_of(cloud, NORTHWIND_USER)["partnerId"] == PARTNER_ID  # type: ignore[index]

    state = await user_state()
    assert (state.identity_type, state.user_principal_name, state.object_id, state.outcome) == (
        "user",
        NORTHWIND_UPN,
        NORTHWIND_USER,
        OutcomeKind.LINKED,
    )
    (event,) = await (await get_service()).ledger.history(NORTHWIND)
    assert (event.source, event.user_principal_name, event.identity_type) == ("relink", NORTHWIND_UPN, "user")
    assert event.details == f"signed in interactively as {NORTHWIND_UPN} (palctl, link)"

    status, page, _ = await api.call("GET", "/links?identityType=user")
    assert status == 200 and [item["clientId"] for item in page["items"]] == [NORTHWIND_USER]
    assert page["items"][0]["userPrincipalName"] == NORTHWIND_UPN
    status, evidence, _ = await api.call(
        "GET", "/links/{customerTenantId}/evidence", customerTenantId=NORTHWIND
    )
    assert status == 200
    (record_,) = evidence["links"]
    assert (record_["identityType"], record_["objectId"], record_["userPrincipalName"]) == (
        "User",
        NORTHWIND_USER,
        NORTHWIND_UPN,
    )
    assert "appId" not in record_ and "credentialType" not in record_

    again = await as_user(cloud, host, "link-user", "--tenant", NORTHWIND)
    assert (
        again.returncode == 0 and f"already-linked: already linked to partner ID {PARTNER_ID}" in again.stdout
    )
    # No token (a JWT: "eyJ...") on the terminal, in a log line or in the ledger.
    said = [done.stdout, done.stderr, again.stdout, again.stderr, everything_logged(all_logs)]
    assert not any("eyJ" in text for text in [*said, await everything_stored(bus_env)])


async def test_verify_user_heals_a_removed_link_and_the_partner_verbs_keep_the_ledger_in_step(
    host: LocalFunctionsHost, cloud: CloudSandbox
) -> None:
    created = await as_user(cloud, host, "partner", "create", "--tenant", NORTHWIND)
    assert created.returncode == 0 and "linked: linked to partner ID" in created.stdout, created.stderr

    cloud.delete_link(NORTHWIND, NORTHWIND_USER)
    healed = await as_user(cloud, host, "verify-user", "--tenant", NORTHWIND)
    assert healed.returncode == 0 and "healed: the link was missing and is made again" in healed.stdout
    assert (await user_state()).outcome is OutcomeKind.HEALED
    verified = await as_user(cloud, host, "verify-user", "--tenant", NORTHWIND)
    assert "verified: in place: linked to partner ID" in verified.stdout
    state = await user_state()
    assert state.outcome is OutcomeKind.VERIFIED and state.verified_since is not None

    cloud.set_link(NORTHWIND, NORTHWIND_USER, OTHER_PARTNER_ID)
    shown = await as_user(cloud, host, "partner", "show", "--tenant", NORTHWIND, "-o", "json")
    row = json.loads(shown.stdout)
    assert (row["azureLinked"], row["azurePartnerId"], row["ledgerOutcome"], row["ledgerPartnerId"]) == (
        True,
        OTHER_PARTNER_ID,
        "verified",
        PARTNER_ID,
    )
    refused = await as_user(cloud, host, "partner", "create", "--tenant", NORTHWIND)
    assert refused.returncode == 1 and f"already linked to partner ID {OTHER_PARTNER_ID}" in refused.stderr
    updated = await as_user(cloud, host, "partner", "update", "--tenant", NORTHWIND)
    assert updated.returncode == 0 and f"from partner ID {OTHER_PARTNER_ID} to {PARTNER_ID}" in updated.stdout
    assert (await user_state()).outcome is OutcomeKind.RECLAIMED

    deleted = await as_user(cloud, host, "partner", "delete", "--tenant", NORTHWIND)
    assert deleted.returncode == 0 and f"removed the link to partner ID {PARTNER_ID}" in deleted.stdout
    assert link_of(cloud, NORTHWIND_USER) is None
    state = await user_state()
    assert state.outcome is OutcomeKind.UNLINKED and state.is_offboarded
    checked = await as_user(cloud, host, "verify-user", "--tenant", NORTHWIND)
    assert checked.returncode == 1 and "HTTP 409" in checked.stderr and "palctl link-user" in checked.stderr
    assert link_of(cloud, NORTHWIND_USER) is not None  # the check healed Azure: said, and not recorded
    relinked = await as_user(cloud, host, "link-user", "--tenant", NORTHWIND)
    assert relinked.returncode == 0 and not (await user_state()).is_offboarded  # a new chapter


async def test_a_refused_request_signs_no_one_in(host: LocalFunctionsHost, cloud: CloudSandbox) -> None:
    env = api_env(host)
    with completing_sign_ins(cloud, NORTHWIND, NORTHWIND_UPN) as completed:
        foreign = await palctl("link-user", "--tenant", NORTHWIND, "--partner-id", OTHER_PARTNER_ID, env=env)
        bad = await palctl("verify-user", "--tenant", "nope", env=env)
        no_key = await palctl("partner", "show", "--tenant", NORTHWIND, env=env | {"PAL_API_KEY": "wrong"})
    assert foreign.returncode == 2 and "--partner-id: not one of our partner IDs" in foreign.stderr
    assert bad.returncode == 2 and "--tenant must be a GUID" in bad.stderr
    assert no_key.returncode == 1 and "did not give our partner IDs (HTTP 401)" in no_key.stderr
    assert completed == [] and link_of(cloud, NORTHWIND_USER) is None


async def test_the_service_never_signs_in_as_a_user_account(
    host: LocalFunctionsHost, cloud: CloudSandbox, api: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    service = await get_service()
    await link(service, NORTHWIND, FEDERATED_APP)
    assert (await as_user(cloud, host, "link-user", "--tenant", NORTHWIND)).returncode == 0

    # The nightly run: the application is checked, the account listed as due for a manual check.
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    run_id, sent = await NightlyRun.of(service).start(now=tomorrow)
    (run,) = [record for record in await service.ledger.runs.all() if record.run_id == run_id]
    assert (sent, run.total, run.manual_checks) == (1, 1, 1)
    due = [
        r.getMessage() for r in caplog.records if "due for a manual check (last verified" in r.getMessage()
    ]
    assert len(due) == 1 and NORTHWIND_USER in due[0] and f"palctl verify-user --tenant {NORTHWIND}" in due[0]
    assert NORTHWIND_UPN not in due[0]

    # The live view does not sign in as it, and says how to read it.
    query = "/links/{customerTenantId}/live?clientId=" + NORTHWIND_USER
    status, live, _ = await api.call("GET", query, customerTenantId=NORTHWIND)
    assert status == 200
    (identity,) = live["identities"]
    assert identity["azure"]["error"]["code"] == "user-sign-in-required"

    # Offboarding the account: marked offboarded, nothing called, told how to remove the link.
    status, answer, _ = await api.call(
        "POST",
        "/links/{customerTenantId}/offboard",
        customerTenantId=NORTHWIND,
        body={"clientId": NORTHWIND_USER},
    )
    assert status == 200 and answer["outcome"] == "needs-partner-action", answer
    assert f"palctl partner delete --tenant {NORTHWIND}" in answer["remediation"]
    assert link_of(cloud, NORTHWIND_USER) is not None and (await user_state()).is_offboarded
    # ...and a body-less relink cannot pick the account up for the service either.
    status, problem, _ = await api.call(
        "POST",
        "/links/{customerTenantId}/relink",
        customerTenantId=NORTHWIND,
        body={"identity": {"type": "user", "clientId": NORTHWIND_USER}},
    )
    assert status == 400 and "palctl link-user" in problem["detail"]


async def test_the_record_api_refuses_what_does_not_fit(api: Client) -> None:
    await link(await get_service(), NORTHWIND, FEDERATED_APP)
    cases: list[tuple[str, str, Any, int, str]] = [
        ("not-a-guid", NORTHWIND_USER, record(), 400, "invalid-tenant-id"),
        (NORTHWIND, "nope", record(), 400, "invalid-object-id"),
        (NORTHWIND, NORTHWIND_USER, record(outcome="failed"), 400, "invalid-body"),
        (NORTHWIND, NORTHWIND_USER, record(extra=1), 400, "invalid-body"),
        (
            NORTHWIND,
            NORTHWIND_USER,
            record(customerName=PLANTED),
            400,
            "secret-in-request",
        ),
        (NORTHWIND, FEDERATED_APP, record(), 409, "not-a-user-account"),
    ]
    for tenant, user, body, expected, kind in cases:
        status, problem, _ = await api.call("POST", USERS, customerTenantId=tenant, objectId=user, body=body)
        assert (status, problem["type"].rsplit("/", 1)[1]) == (expected, kind), body
        assert PLANTED not in json.dumps(problem)
    status, _, headers = await api.call("GET", USERS, customerTenantId=NORTHWIND, objectId=NORTHWIND_USER)
    assert (status, headers["Allow"]) == (405, "POST")
    status, ids, _ = await api.call("GET", "/partner")
    assert status == 200 and ids == {
        "partnerId": PARTNER_ID,
        "allowedPartnerIds": [PARTNER_ID],
        "onOtherPartner": "update",
    }
    status, _, _ = await api.call(
        "POST", USERS, key="wrong", customerTenantId=NORTHWIND, objectId=NORTHWIND_USER, body=record()
    )
    assert status == 401


def test_the_sign_in_is_read_for_who_signed_in_and_nothing_else() -> None:
    from palctl.errors import Failed
    from palctl.user_sign_in import signed_in

    claims: dict[str, Any] = {
        "tid": NORTHWIND.upper(),
        "oid": NORTHWIND_USER.upper(),
        "upn": NORTHWIND_UPN,
        "idtyp": "user",
    }
    assert signed_in(claims, NORTHWIND) == (NORTHWIND_USER, NORTHWIND_UPN)
    wrongs: list[tuple[dict[str, Any], str]] = [
        ({"tid": "another"}, "another tenant"),
        ({"oid": None}, "not a user account's"),
        ({"idtyp": "app"}, "not a user account's"),
        ({"upn": None}, "no sign-in name"),
    ]
    for wrong, message in wrongs:
        with pytest.raises(Failed, match=message):
            signed_in(claims | wrong, NORTHWIND)
