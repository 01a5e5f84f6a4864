"""The operators' HTTP API through the local host over real HTTP, every response checked against the
committed OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest

from sandbox.cloud import CloudSandbox
from sandbox.functions_host import LocalFunctionsHost
from sandbox.scenario import FaultRule
from shared.links.service import reset_service
from tenants import FABRIKAM, FABRIKAM_APP, FEDERATED_APP, NORTHWIND, PARTNER_ID, TAILSPIN, WOODGROVE

OPENAPI = json.loads((Path(__file__).resolve().parents[1] / "api" / "openapi.json").read_text())
KEY = "operator-key"
PLANTED = "Pq98Q~PLANTED-api-secret-0123456789abcdefg"


@pytest.fixture
async def api(bus_env: dict[str, str]) -> AsyncIterator[Client]:
    await reset_service()
    async with (
        LocalFunctionsHost(settings=bus_env, function_key=KEY) as host,
        aiohttp.ClientSession() as http,
    ):
        yield Client(http, host.base_url)
    await reset_service()


class Client:
    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http, self.base_url = http, base_url

    async def call(
        self,
        method: str,
        template: str,
        *,
        key: str | None = KEY,
        body: Any = None,
        raw: bytes | None = None,
        **path: str,
    ) -> tuple[int, Any, dict[str, str]]:
        url = self.base_url + "/api" + template.format(**path)
        headers = {"x-functions-key": key} if key else {}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with self.http.request(method, url, data=data, headers=headers) as response:
            text = await response.read()
            payload = json.loads(text) if text else None
            if response.status != 401:
                check_against_openapi(
                    template, method, response.status, response.headers["Content-Type"], payload
                )
            return response.status, payload, dict(response.headers)


def check_against_openapi(template: str, method: str, status: int, content_type: str, payload: Any) -> None:
    template = template.split("?")[0]
    operation = OPENAPI["paths"][template].get(method.lower())
    if operation is None:  # a wrong method: the API answers 405 problem details
        assert status == 405
        operation = next(iter(v for k, v in OPENAPI["paths"][template].items() if k != "parameters"))
    response = operation["responses"][str(status)]
    if "$ref" in response:
        response = OPENAPI["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    media = content_type.split(";")[0]
    schema = response["content"][media]["schema"]
    validator = jsonschema.Draft202012Validator(
        {**schema, "components": OPENAPI["components"]}, format_checker=jsonschema.FormatChecker()
    )
    validator.validate(payload)


async def test_relink_with_an_identity_links_now(api: Client, cloud: CloudSandbox) -> None:
    body = {"identity": {"type": "federated", "clientId": FEDERATED_APP}}
    status, result, _ = await api.call(
        "POST", "/links/{customerTenantId}/relink", customerTenantId=NORTHWIND, body=body
    )
    assert status == 200
    assert (result["outcome"], result["partnerId"], result["linkVersion"]) == ("linked", PARTNER_ID, 1)
    assert any(link["tenantId"] == NORTHWIND for link in cloud.links())

    # Without a body: the one recorded identity is relinked.
    status, again, _ = await api.call("POST", "/links/{customerTenantId}/relink", customerTenantId=NORTHWIND)
    assert (status, again["outcome"]) == (200, "already-linked")

    status, state, _ = await api.call("GET", "/links/{customerTenantId}", customerTenantId=NORTHWIND)
    assert status == 200
    assert [link["outcome"] for link in state["links"]] == ["already-linked"]
    assert [(e["source"], e["outcome"]) for e in state["history"]] == [
        ("relink", "already-linked"),
        ("relink", "linked"),
    ]


async def test_relink_outcomes_use_the_queue_vocabulary(api: Client, cloud: CloudSandbox) -> None:
    federated = {"identity": {"type": "federated", "clientId": FEDERATED_APP}}
    status, consent, _ = await api.call(
        "POST", "/links/{customerTenantId}/relink", customerTenantId=WOODGROVE, body=federated
    )
    assert (status, consent["outcome"], consent["code"]) == (200, "needs-customer-action", "AADSTS700016")
    assert "admin consent" in consent["remediation"]

    secret = {
        "identity": {"type": "secret", "clientId": FABRIKAM_APP, "keyVaultSecretName": "fabrikam-pal-secret"}
    }
    status, updated, _ = await api.call(
        "POST", "/links/{customerTenantId}/relink", customerTenantId=FABRIKAM, body=secret
    )
    assert (status, updated["outcome"], updated["previousPartnerId"]) == (200, "reclaimed", "7654321")

    status, refused, _ = await api.call(
        "POST",
        "/links/{customerTenantId}/relink",
        customerTenantId=TAILSPIN,
        body={**federated, "partnerId": "9999999"},
    )
    assert (status, refused["outcome"], refused["code"]) == (403, "rejected", "partner-id-not-allowed")
    assert refused["type"].endswith("/partner-id-not-allowed") and "9999999" in refused["detail"]

    cloud.add_fault(NORTHWIND, FaultRule(target="arm", kind="status", status=503))
    status, busy, headers = await api.call(
        "POST", "/links/{customerTenantId}/relink", customerTenantId=NORTHWIND, body=federated
    )
    assert (status, busy["outcome"]) == (503, "transient")
    assert int(headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("tenant", "body", "status", "detail"),
    [
        ("not-a-guid", None, 400, "customerTenantId: must be a GUID"),
        ("00000000-0000-0000-0000-000000000000", None, 400, "customerTenantId: must be a GUID"),
        ("..%2F..%2Fadmin", None, 400, "customerTenantId"),
        (NORTHWIND, None, 404, "no link is recorded"),
        (NORTHWIND, {"partnerId": "12-34"}, 404, "no link is recorded"),
        (
            NORTHWIND,
            {"identity": {"type": "federated", "clientId": FEDERATED_APP}, "partnerId": "12-34"},
            400,
            "partnerId",
        ),
        (NORTHWIND, {"identity": {"type": "user", "clientId": FEDERATED_APP}}, 400, "identity.type"),
        (
            NORTHWIND,
            {"identity": {"type": "federated", "clientId": "x"}},
            400,
            "identity.clientId: must be a GUID",
        ),
        (NORTHWIND, {"colour": "blue"}, 400, "colour: unknown field"),
        (NORTHWIND, [1, 2], 400, "must be a JSON object"),
    ],
)
async def test_bad_relink_requests_get_precise_problems(
    api: Client, tenant: str, body: Any, status: int, detail: str
) -> None:
    got, problem, headers = await api.call(
        "POST", "/links/{customerTenantId}/relink", customerTenantId=tenant, body=body
    )
    assert got == status
    assert detail in problem["detail"]
    assert headers["Content-Type"].startswith("application/problem+json")


async def test_secrets_oversized_bodies_methods_and_keys(api: Client) -> None:
    body = {"identity": {"type": "secret", "clientId": FABRIKAM_APP, "clientSecret": PLANTED}}
    status, problem, _ = await api.call(
        "POST", "/links/{customerTenantId}/relink", customerTenantId=FABRIKAM, body=body
    )
    assert status == 400 and problem["type"].endswith("secret-in-request")
    assert PLANTED not in json.dumps(problem)

    status, problem, _ = await api.call(
        "POST", "/links/{customerTenantId}/relink", customerTenantId=FABRIKAM, raw=b"{" + b" " * 20000 + b"}"
    )
    assert status == 413

    status, problem, headers = await api.call(
        "DELETE", "/links/{customerTenantId}", customerTenantId=FABRIKAM
    )
    assert (status, headers["Allow"]) == (405, "GET")
    status, _, headers = await api.call("GET", "/links/{customerTenantId}/relink", customerTenantId=FABRIKAM)
    assert (status, headers["Allow"]) == (405, "POST")

    for key in (None, "wrong-key"):
        status, _, _ = await api.call("GET", "/links", key=key)
        assert status == 401


async def test_list_filters_and_pages(api: Client) -> None:
    federated = {"identity": {"type": "federated", "clientId": FEDERATED_APP}}
    for tenant in (NORTHWIND, TAILSPIN, WOODGROVE):
        await api.call("POST", "/links/{customerTenantId}/relink", customerTenantId=tenant, body=federated)

    status, page, _ = await api.call("GET", "/links?top=2")
    assert status == 200 and len(page["items"]) == 2 and page["continuationToken"]
    status, rest, _ = await api.call("GET", "/links?top=2&continuationToken=" + page["continuationToken"])
    assert status == 200 and len(rest["items"]) == 1 and rest["continuationToken"] is None
    tenants = {item["customerTenantId"] for item in page["items"] + rest["items"]}
    assert tenants == {NORTHWIND, TAILSPIN, WOODGROVE}

    status, linked, _ = await api.call("GET", "/links?outcome=already-linked")
    assert [item["customerTenantId"] for item in linked["items"]] == [TAILSPIN]


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("?outcome=linked%27%20or%20Outcome%20ne%20%27x", "outcome: must be one of"),
        ("?outcome=unknown", "outcome: must be one of"),
        ("?top=0", "top: must be a whole number"),
        ("?top=abc", "top: must be a whole number"),
        ("?continuationToken=bm90LWEtdG9rZW4", "continuationToken: not a token"),
        ("?filter=PartitionKey%20eq%20%27x%27", "filter: unknown parameter"),
    ],
)
async def test_list_rejects_bad_queries_and_injection(api: Client, query: str, detail: str) -> None:
    status, problem, _ = await api.call("GET", "/links" + query)
    assert status == 400 and detail in problem["detail"]


async def test_unknown_tenant_status_is_404(api: Client) -> None:
    status, problem, _ = await api.call("GET", "/links/{customerTenantId}", customerTenantId=TAILSPIN)
    assert status == 404 and problem["title"] == "Unknown customer tenant"


async def test_relink_body_accepts_a_utf8_bom_and_refuses_utf16_and_utf32(api: Client) -> None:
    text = json.dumps({"identity": {"type": "federated", "clientId": FEDERATED_APP}})
    for encoding in ("utf-16", "utf-16-le", "utf-32", "utf-32-be"):
        status, problem, headers = await api.call(
            "POST", "/links/{customerTenantId}/relink", customerTenantId=NORTHWIND, raw=text.encode(encoding)
        )
        assert status == 400, encoding
        assert problem["detail"] == "body: UTF-16/UTF-32 is not accepted; send UTF-8"
        assert headers["Content-Type"].startswith("application/problem+json")

    status, result, _ = await api.call(
        "POST",
        "/links/{customerTenantId}/relink",
        customerTenantId=NORTHWIND,
        raw=b"\xef\xbb\xbf" + text.encode(),
    )
    assert (status, result["outcome"]) == (200, "linked")


# --- offboarding --------------------------------------------------------------------------------------

OFFBOARD = "/links/{customerTenantId}/offboard"
RELINK = "/links/{customerTenantId}/relink"


async def test_offboard_unlinks_now_and_a_bodyless_relink_refuses_the_offboarded_customer(
    api: Client, cloud: CloudSandbox
) -> None:
    federated = {"identity": {"type": "federated", "clientId": FEDERATED_APP}}
    status, _, _ = await api.call("POST", RELINK, customerTenantId=NORTHWIND, body=federated)
    assert status == 200

    status, result, _ = await api.call(
        "POST", OFFBOARD, customerTenantId=NORTHWIND.upper(), body={"correlationId": "TICKET-4711"}
    )
    assert status == 200
    assert (result["outcome"], result["clientId"], result["previousPartnerId"]) == (
        "unlinked",
        FEDERATED_APP,
        PARTNER_ID,
    )
    assert [link["state"] for link in cloud.links() if link["tenantId"] == NORTHWIND] == ["Deleted"]

    status, state, _ = await api.call("GET", "/links/{customerTenantId}", customerTenantId=NORTHWIND)
    (link,) = state["links"]
    assert (link["outcome"], "linkedPartnerId" in link, "offboardedAt" in link) == ("unlinked", False, True)
    assert [(e["source"], e["outcome"], e.get("correlationId")) for e in state["history"]][0] == (
        "offboarding",
        "unlinked",
        "TICKET-4711",
    )
    status, listed, _ = await api.call("GET", "/links?outcome=unlinked")
    assert [item["customerTenantId"] for item in listed["items"]] == [NORTHWIND]

    status, refused, _ = await api.call("POST", RELINK, customerTenantId=NORTHWIND)
    assert (status, refused["title"]) == (409, "Customer offboarded")
    assert refused["type"].endswith("/offboarded")
    # With the identity in the body an operator starts the next chapter deliberately.
    status, again, _ = await api.call("POST", RELINK, customerTenantId=NORTHWIND, body=federated)
    assert (status, again["outcome"]) == (200, "linked")
    status, state, _ = await api.call("GET", "/links/{customerTenantId}", customerTenantId=NORTHWIND)
    assert "offboardedAt" not in state["links"][0]


async def test_offboard_answers_in_the_documented_shapes(api: Client, cloud: CloudSandbox) -> None:
    status, problem, _ = await api.call("POST", OFFBOARD, customerTenantId=TAILSPIN)
    assert (status, problem["title"]) == (404, "Unknown customer tenant")

    federated = {"identity": {"type": "federated", "clientId": FEDERATED_APP}}
    secret = {
        "identity": {"type": "secret", "clientId": FABRIKAM_APP, "keyVaultSecretName": "fabrikam-pal-secret"}
    }
    await api.call("POST", RELINK, customerTenantId=FABRIKAM, body=secret)
    await api.call("POST", RELINK, customerTenantId=FABRIKAM, body=federated)  # never consented there
    status, problem, _ = await api.call("POST", OFFBOARD, customerTenantId=FABRIKAM)
    assert (status, problem["title"]) == (400, "Identity required")
    assert FABRIKAM_APP in problem["detail"] and FEDERATED_APP in problem["detail"]
    unknown = "0a1b2c3d-0000-4000-8000-000000000001"
    status, problem, _ = await api.call(
        "POST", OFFBOARD, customerTenantId=FABRIKAM, body={"clientId": unknown}
    )
    assert (status, problem["title"]) == (404, "Unknown identity")

    cloud.add_fault(FABRIKAM, FaultRule(target="arm", kind="status", status=503))
    body = {"clientId": FABRIKAM_APP}
    status, busy, headers = await api.call("POST", OFFBOARD, customerTenantId=FABRIKAM, body=body)
    assert (status, busy["outcome"], busy["clientId"]) == (503, "transient", FABRIKAM_APP)
    assert int(headers["Retry-After"]) >= 1
    cloud.clear_faults(FABRIKAM)
    status, done, _ = await api.call("POST", OFFBOARD, customerTenantId=FABRIKAM, body=body)
    assert (status, done["outcome"], done["previousPartnerId"]) == (200, "unlinked", PARTNER_ID)
    # The identity that never had a service principal there cannot sign in: it has no link to remove.
    body = {"clientId": FEDERATED_APP}
    status, gone, _ = await api.call("POST", OFFBOARD, customerTenantId=FABRIKAM, body=body)
    assert (status, gone["outcome"], gone["code"]) == (200, "unlinked", "AADSTS700016")


@pytest.mark.parametrize(
    ("tenant", "body", "status", "detail"),
    [
        ("not-a-guid", None, 400, "customerTenantId: must be a GUID"),
        (NORTHWIND, {"clientId": "x"}, 400, "clientId: must be a GUID"),
        (NORTHWIND, {"clientId": None}, 400, "clientId: must be a GUID, or left out"),
        (NORTHWIND, {"correlationId": "a\nb"}, 400, "correlationId: must not contain control"),
        (NORTHWIND, {"identity": {"type": "federated", "clientId": FEDERATED_APP}}, 400, "identity: unknown"),
        (NORTHWIND, {"clientSecret": PLANTED}, 400, "clientSecret: looks like a credential"),
        (NORTHWIND, [1], 400, "must be a JSON object"),
        (NORTHWIND, None, 404, "no link is recorded for this tenant"),
    ],
)
async def test_bad_offboard_requests_get_precise_problems(
    api: Client, tenant: str, body: Any, status: int, detail: str
) -> None:
    got, problem, headers = await api.call("POST", OFFBOARD, customerTenantId=tenant, body=body)
    assert got == status and detail in problem["detail"]
    assert headers["Content-Type"].startswith("application/problem+json")
    assert PLANTED not in json.dumps(problem)


async def test_offboard_methods_sizes_and_keys(api: Client) -> None:
    status, _, headers = await api.call("GET", OFFBOARD, customerTenantId=NORTHWIND)
    assert (status, headers["Allow"]) == (405, "POST")
    status, _, _ = await api.call(
        "POST", OFFBOARD, customerTenantId=NORTHWIND, raw=b"{" + b" " * 20000 + b"}"
    )
    assert status == 413
    status, problem, _ = await api.call(
        "POST",
        OFFBOARD,
        customerTenantId=NORTHWIND,
        raw=json.dumps({"clientId": FEDERATED_APP}).encode("utf-16"),
    )
    assert (status, problem["detail"]) == (400, "body: UTF-16/UTF-32 is not accepted; send UTF-8")
    for key in (None, "wrong-key"):
        status, _, _ = await api.call("POST", OFFBOARD, customerTenantId=NORTHWIND, key=key)
        assert status == 401


def test_the_documents_enumerations_are_the_products_vocabulary() -> None:
    from shared.links.retirement import RETIRE_SOURCE
    from shared.spine.envelope import Source
    from shared.spine.outcomes import OutcomeKind

    outcomes = [kind.value for kind in OutcomeKind]
    assert OPENAPI["components"]["schemas"]["Outcome"]["enum"] == outcomes
    (outcome_filter,) = [p for p in OPENAPI["paths"]["/links"]["get"]["parameters"] if p["name"] == "outcome"]
    assert outcome_filter["schema"]["enum"] == outcomes
    sources = OPENAPI["components"]["schemas"]["HistoryEvent"]["properties"]["source"]["enum"]
    links_sources = {Source.ONBOARDING, Source.VERIFY, Source.RELINK, Source.OFFBOARDING, RETIRE_SOURCE}
    assert set(sources) == {str(source) for source in links_sources}


COVERAGE = "/links/{customerTenantId}/coverage"
NORTHWIND_OID = "d87199a7-f53b-4dd6-813d-019f7547bffb"


async def test_coverage_shows_a_removal_healed_inside_the_period_and_the_offboarding(
    api: Client, cloud: CloudSandbox
) -> None:
    from datetime import UTC, datetime, timedelta
    from urllib.parse import quote

    from shared.links.reverify import verify_now
    from shared.links.runs import RunSummary
    from shared.links.service import get_service

    before = datetime.now(UTC) - timedelta(minutes=1)
    body = {"identity": {"type": "federated", "clientId": FEDERATED_APP}}
    status, _, _ = await api.call(
        "POST", "/links/{customerTenantId}/relink", customerTenantId=NORTHWIND, body=body
    )
    assert status == 200
    service = await get_service()

    async def night(run_id: str) -> datetime:
        """One complete nightly run over the one link, recorded as the timer's run would be."""
        started = datetime.now(UTC)
        await service.ledger.runs.create(run_id, total=1, started_at=started)
        (state,) = await service.ledger.link_states(NORTHWIND)
        assert await verify_now(service, state, run_id) is not None
        ended = datetime.now(UTC)
        await service.ledger.runs.finish(run_id, RunSummary(ended, 0.1, True, {"verified": 1}))
        return started

    await night("2030-01-01")
    second = await night("2030-01-02")  # nothing changed: no history row, the run record proves it
    cloud.delete_link(NORTHWIND, NORTHWIND_OID)
    await night("2030-01-03")  # found removed, healed
    await night("2030-01-04")

    status, answer, _ = await api.call(
        "GET", COVERAGE + "?from={start}", customerTenantId=NORTHWIND, start=quote(before.isoformat())
    )
    assert status == 200, answer
    (identity,) = answer["identities"]
    assert identity["clientId"] == FEDERATED_APP and identity["linkedThroughout"] is False
    assert answer["completeRuns"] == 4
    assert [gap["reason"] for gap in identity["gaps"]] == ["not-onboarded", "removed"]
    removed = identity["gaps"][1]
    assert datetime.fromisoformat(removed["from"]) == second  # the last check that found it linked
    assert [i["partnerId"] for i in identity["intervals"]] == [PARTNER_ID, PARTNER_ID]

    # Linked throughout a period inside the first interval.
    start, end = (quote(identity["intervals"][0][edge]) for edge in ("from", "to"))
    status, inside, _ = await api.call(
        "GET", COVERAGE + "?from={start}&to={end}", customerTenantId=NORTHWIND, start=start, end=end
    )
    assert status == 200 and inside["identities"][0]["linkedThroughout"] is True

    status, _, _ = await api.call("POST", OFFBOARD, customerTenantId=NORTHWIND)
    assert status == 200
    status, after, _ = await api.call("GET", COVERAGE, customerTenantId=NORTHWIND)
    assert [gap["reason"] for gap in after["identities"][0]["gaps"]][-1] == "offboarded"


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("?from=yesterday", "from: not an ISO 8601 date or date-time"),
        ("?from=2026-03-01&to=2026-02-01", "from: must be before to (and before now)"),
        ("?from=2020-01-01&to=2026-01-01", "the period may be at most 366 days"),
        ("?since=2026-01-01", "unknown parameter (allowed: from, to)"),
    ],
)
async def test_coverage_refuses_bad_periods(api: Client, query: str, detail: str) -> None:
    status, problem, _ = await api.call("GET", COVERAGE + query, customerTenantId=NORTHWIND)
    assert (status, problem["detail"]) == (400, detail)
    status, problem, _ = await api.call("GET", COVERAGE, customerTenantId=TAILSPIN)
    assert (status, problem["type"].rsplit("/", 1)[-1]) == (404, "unknown-tenant")
    status, _, _ = await api.call("POST", COVERAGE, customerTenantId=NORTHWIND)
    assert status == 405
