"""The repairs' part of the operators' HTTP API, without Azure Functions.

- `POST /api/repairs/{customerTenantId}/plan[?includeUnverified=true]`: a plan (200), nothing changed;
- `POST /api/repairs/{customerTenantId}/apply` (body: the plan as planned and reviewed): exactly its
  changes that are not refused, each recorded, then the re-audit (200 with the apply);
- `POST /api/repairs/{customerTenantId}/undo` (body `{"applyId": ...}` or `{"planId": ...}`);
- `GET /api/repairs/{customerTenantId}/{applyId}`: an apply, change by change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from shared.repair.plan import RepairPlan
from shared.repair.service import NotLinked, RepairService, Stale
from shared.spine.identifiers import is_guid
from shared.spine.outages import answers_outages
from shared.spine.problem import ApiResponse, problem

__all__ = ["RepairApi"]

_MAX_BODY = 4 * 1024 * 1024


class RepairApi:
    def __init__(self, service: RepairService) -> None:
        self._service = service

    @answers_outages
    async def plan(self, tenant: str, parameters: Mapping[str, str]) -> ApiResponse:
        if not is_guid(tenant):
            return _bad_tenant()
        unknown = sorted(set(parameters) - {"includeUnverified"})
        flag = parameters.get("includeUnverified", "false")
        if unknown or flag not in ("true", "false"):
            detail = (
                f"{', '.join(unknown)}: unknown parameter" if unknown else "includeUnverified: true or false"
            )
            return problem(400, "invalid-query", "Invalid query", detail)
        try:
            plan = await self._service.plan(tenant.lower(), include_unverified=flag == "true")
        except NotLinked:
            return _not_linked()
        return ApiResponse(200, plan.document())

    @answers_outages
    async def apply(self, tenant: str, body: bytes) -> ApiResponse:
        if not is_guid(tenant):
            return _bad_tenant()
        document = _json(body)
        plan = RepairPlan.parse(document) if document is not None else "the body is the plan, as JSON"
        if isinstance(plan, str):
            return problem(400, "invalid-plan", "Invalid plan", plan)
        if plan.tenant != tenant.lower():
            return problem(400, "invalid-plan", "Invalid plan", "the plan is for another customer tenant")
        try:
            applied = await self._service.apply(plan)
        except NotLinked:
            return _not_linked()
        return ApiResponse(200, applied.public())

    @answers_outages
    async def undo(self, tenant: str, body: bytes) -> ApiResponse:
        if not is_guid(tenant):
            return _bad_tenant()
        document = _json(body)
        if (
            not isinstance(document, dict)
            or len(document) != 1
            or not is_guid(document.get("applyId") or document.get("planId"))
        ):
            return problem(
                400, "invalid-body", "Invalid body", 'the body is {"applyId": GUID} or {"planId": GUID}'
            )
        tenant = tenant.lower()
        apply_id = document.get("applyId")
        if apply_id is None:
            apply_id = await self._service.latest_apply_of(tenant, str(document["planId"]).lower())
            if apply_id is None:
                return _no_apply()
        try:
            undone = await self._service.undo(tenant, str(apply_id).lower())
        except Stale:
            return _no_apply()
        except NotLinked:
            return _not_linked()
        return ApiResponse(200, undone.public())

    @answers_outages
    async def status(self, tenant: str, apply_id: str) -> ApiResponse:
        if not is_guid(tenant):
            return _bad_tenant()
        if not is_guid(apply_id):
            return problem(400, "invalid-apply-id", "Invalid apply ID", "applyId: must be a GUID")
        found = await self._service.status(tenant.lower(), apply_id.lower())
        return _no_apply() if found is None else ApiResponse(200, found.public())


def _json(body: bytes) -> object | None:
    if len(body) > _MAX_BODY:
        return None
    try:
        document: object = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return document


def _bad_tenant() -> ApiResponse:
    return problem(400, "invalid-tenant-id", "Invalid customer tenant ID", "customerTenantId: must be a GUID")


def _not_linked() -> ApiResponse:
    return problem(
        404,
        "not-linked",
        "Not linked",
        "no healthy link of a service principal of ours is recorded for this tenant",
    )


def _no_apply() -> ApiResponse:
    return problem(
        404, "not-found", "No such apply", "no apply of this plan or id is recorded for this tenant"
    )
