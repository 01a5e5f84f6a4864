"""A managed solution into a Dataverse environment as the linked service principal (power-platform.md,
"Changing owners"): the application user made when missing (BAP `addAppUser`), `StageSolution`,
`ImportSolutionAsync` with the delivery's own ImportJobId, the asynchronous operation polled within a
budget, and the import job's log read for the components it lists (kinds and ids only).
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shared.attribution.inventory import Api, Environment
from shared.delivery.calls import Caller, CallFailed, Refused
from shared.delivery.outcome import (
    MISSING_DEPENDENCY,
    Finished,
    ImportReport,
    hex_code,
    read_import_log,
    solution_failure,
)
from shared.delivery.rows import DeliveryStatus
from shared.spine.settings import Settings

__all__ = ["Imported", "SolutionDelivery", "Started"]

_DATAVERSE = "api/data/v9.2"
_NO_APP_USER = "0x80072560"
_DUPLICATE_KEY = "0x80040237"
_COMPLETED, _SUCCEEDED = 3, 30
_HEADERS = {"OData-MaxVersion": "4.0", "OData-Version": "4.0"}
_BAP_AUDIENCE = "https://service.powerapps.com/"
_FIRST_POLL, _LONGEST_POLL = 1.0, 10.0


@dataclass(frozen=True)
class Started:
    async_operation_id: str | None
    solution_name: str | None = None
    solution_version: str | None = None


@dataclass(frozen=True)
class Imported:
    finished: Finished
    report: ImportReport


class SolutionDelivery:
    """One environment, as the service principal `client_id` (its app) of the customer's link."""

    def __init__(self, caller: Caller, settings: Settings, environment: Environment, client_id: str) -> None:
        self._caller, self._settings, self._environment = caller, settings, environment
        self._client_id = client_id
        instance = environment.dataverse_url or ""
        self._instance = instance if instance.endswith("/") else f"{instance}/"
        self._app_user_added = False

    # ---- the calls ------------------------------------------------------------------------------

    async def _dataverse(self, method: str, segment: str, body: Any = None) -> Any:
        """A Dataverse call; a caller without an application user gets one (once) and tries again."""
        url = f"{self._instance}{_DATAVERSE}/{segment}"
        try:
            return await self._caller.call(
                Api.DATAVERSE, method, url, audience=self._instance, json=body, headers=dict(_HEADERS)
            )
        except Refused as refused:
            if refused.code != _NO_APP_USER or self._app_user_added:
                raise
        await self._add_app_user()
        return await self._caller.call(
            Api.DATAVERSE, method, url, audience=self._instance, json=body, headers=dict(_HEADERS)
        )

    async def _add_app_user(self) -> None:
        """BAP's addAppUser for our app (200 when made, and when it already exists)."""
        base = f"{self._settings.power_platform.bap}/providers/Microsoft.BusinessAppPlatform/scopes/admin"
        url = f"{base}/environments/{quote(self._environment.id)}/addAppUser?api-version=2020-10-01"
        body = {"servicePrincipalAppId": self._client_id}
        await self._caller.call(Api.BAP, "POST", url, audience=_BAP_AUDIENCE, json=body)
        self._app_user_added = True

    async def job(self, job_id: str) -> dict[str, Any] | None:
        """The import job, if the delivery's import was started before (a redelivery)."""
        try:
            found = await self._dataverse(
                "GET", f"importjobs({job_id})?$select=importjobid,completedon,progress"
            )
        except CallFailed as failed:
            if failed.status == 404:
                return None
            raise
        return found if isinstance(found, dict) else None

    # ---- starting -------------------------------------------------------------------------------

    async def start(self, data: bytes, parameters: list[dict[str, str]], job_id: str) -> Started | Finished:
        """Stage the file, then import the staged upload under `job_id`; a stage that names what
        stops the import is final."""
        staged = await self._dataverse(
            "POST", "StageSolution", {"CustomizationFile": base64.b64encode(data).decode("ascii")}
        )
        results = staged.get("StageSolutionResults") if isinstance(staged, dict) else None
        if not isinstance(results, dict) or not isinstance(results.get("StageSolutionUploadId"), str):
            return Finished(
                DeliveryStatus.FAILED, "stage-failed", "StageSolution answered without an upload id"
            )
        details = results.get("SolutionDetails")
        details = details if isinstance(details, dict) else {}
        name, version = _text(details.get("SolutionUniqueName")), _text(details.get("SolutionVersion"))
        refusal = _stage_refusal(results)
        if refusal is not None:
            return refusal
        body = {
            "OverwriteUnmanagedCustomizations": False,
            "PublishWorkflows": True,
            "SolutionParameters": {"StageSolutionUploadId": results["StageSolutionUploadId"]},
            "ComponentParameters": parameters,
            "ImportJobId": job_id,
        }
        try:
            accepted = await self._dataverse("POST", "ImportSolutionAsync", body)
        except CallFailed as failed:
            if failed.code == _DUPLICATE_KEY or (failed.code and hex_code(failed.code) == _DUPLICATE_KEY):
                return Started(None, name, version)  # started by an earlier delivery of this message
            raise
        operation = accepted.get("AsyncOperationId") if isinstance(accepted, dict) else None
        return Started(_text(operation), name, version)

    # ---- polling --------------------------------------------------------------------------------

    async def poll(self, operation_id: str | None, job_id: str, budget: float) -> Imported | None:
        """The import's outcome once it completed within `budget` seconds, else None (poll later)."""
        deadline = time.monotonic() + budget
        delay = _FIRST_POLL
        while True:
            operation = await self._state(operation_id, job_id)
            if operation is not None:
                return await self._outcome(operation, job_id)
            if time.monotonic() + delay > deadline:
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, _LONGEST_POLL)

    async def _state(self, operation_id: str | None, job_id: str) -> dict[str, Any] | None:
        """The asynchronous operation once completed (or, when its id is unknown, the import job
        once completed, as {}), else None."""
        if operation_id is None:
            job = await self.job(job_id)
            return {} if job is not None and job.get("completedon") else None
        operation = await self._dataverse("GET", f"asyncoperations({operation_id})")
        return operation if isinstance(operation, dict) and operation.get("statecode") == _COMPLETED else None

    async def _outcome(self, operation: dict[str, Any], job_id: str) -> Imported:
        job = await self._dataverse("GET", f"importjobs({job_id})")
        report = read_import_log(job.get("data") if isinstance(job, dict) else None)
        del job  # the log lists the file's components by name: only kinds, ids and codes are kept
        if operation:
            succeeded = operation.get("statuscode") == _SUCCEEDED
            code = hex_code(operation.get("errorcode")) or report.failure_code
            message = operation.get("friendlymessage") or operation.get("message")
        else:
            succeeded = report.failure_code is None
            code, message = report.failure_code, "the import log records a failure"
        if succeeded:
            return Imported(
                Finished(DeliveryStatus.SUCCEEDED, "imported", "the solution was imported"), report
            )
        return Imported(solution_failure(code, message), report)


def _stage_refusal(results: dict[str, Any]) -> Finished | None:
    missing = results.get("MissingDependencies") or []
    problems = [r for r in results.get("SolutionValidationResults") or [] if isinstance(r, dict)]
    errors = [r for r in problems if r.get("SolutionValidationResultType") == "Error"]
    if missing:
        names = sorted(
            {
                str(m.get("RequiredSolutionName"))
                for m in missing
                if isinstance(m, dict) and m.get("RequiredSolutionName")
            }
        )
        return solution_failure(MISSING_DEPENDENCY, "missing dependencies: " + ", ".join(names))
    if errors:
        return solution_failure(hex_code(errors[0].get("ErrorCode")), errors[0].get("Message"))
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
