"""Power BI imports in a workspace, as a service principal publishes a .pbix (Microsoft Learn, "Imports -
Post Import In Group" and "Get Import In Group"; "Datasets - Get Datasets In Group", "Reports - Get
Reports In Group"):

- `POST /v1.0/myorg/groups/{groupId}/imports?datasetDisplayName=N&nameConflict=M` with a
  multipart/form-data body holding the file -> 202 `{"id": importId}`;
- `GET /v1.0/myorg/groups/{groupId}/imports/{importId}` -> `{"id", "name", "importState"
  (Publishing, then Succeeded or Failed), "createdDateTime", "updatedDateTime", "reports",
  "datasets"}` and, when Failed, `"error": {"code", "details"}`;
- `GET .../imports`, `GET .../datasets`, `GET .../reports` -> `{"value": [...]}`.

The caller needs the tenant's Power BI grant (the scenario's `powerBiApps`, standing for "Service
principals can use Fabric APIs"; else 401 PowerBINotAuthorizedException, as the admin API) and
membership of the workspace (else 403 with the same body; the service answers 401 or 403 in public
reports). An unknown workspace is 404 PowerBIEntityNotFound. `datasetDisplayName` is required (400,
microsoft/PowerBI-Cli#6). nameConflict (default Ignore): Abort with a dataset of that name -> 409
DuplicatePackageFoundError (inferred, by analogy with the two below); Overwrite with none -> 404
DuplicatePackageNotFoundError (microsoft/PowerBI-Cli#9), with more than one -> 409
MoreThanOneDuplicatePackageFoundError (microsoft/PowerBI-Cli#72); CreateOrOverwrite creates or
overwrites one; GenerateUniqueName adds " (2)", " (3)", ... A file that is not a .pbix (not a zip, or
a zip without `Report/Layout` nor `Report/definition.pbir`) is accepted and the import then fails
(as microsoft/PowerBI-Cli#6 saw), with `error.code` ImportUnsupportedFileFormat (inferred).

When it succeeds the dataset joins the workspace (the admin APIs list it) with the caller as
`configuredBy` (shown as its client ID), an overwritten one keeps its id and takes the caller as its
publisher (inferred), and the report records the caller as `createdBy` (inferred field).
"""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import io
import time
import uuid
import zipfile
from typing import Any

from ...scenario_power_platform import Dataset, Workspace
from ..protocol import Refusal, Reply, Request, json_reply
from .common import Caller
from .delivery_state import PbiImport, PbiReport
from .owner_changes import take_over
from .world import LiveTenant, PowerPlatformWorld

CONFLICT_MODES = ("Ignore", "Abort", "Overwrite", "CreateOrOverwrite", "GenerateUniqueName")
MAX_PBIX_BYTES = 32 * 1024 * 1024  # the sandbox's cap (the service's is far larger)


def pbi_error(status: int, code: str, parameters: dict[str, Any] | None = None) -> Refusal:
    body = {
        "error": {
            "code": code,
            "pbi.error": {"code": code, "parameters": parameters or {}, "details": [], "exceptionCulprit": 1},
        }
    }
    return Refusal(json_reply(status, body))


def pbix_file(report_name: str = "Report", *, valid: bool = True) -> bytes:
    """A .pbix as tests upload it: a zip with the parts Power BI reads (no Report/Layout when not valid)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Version", "1.28".encode("utf-16-le"))
        archive.writestr("[Content_Types].xml", "<Types />")
        archive.writestr("DataModel", b"\x00" * 64)
        if valid:
            archive.writestr("Report/Layout", f'{{"id":0,"sections":[{{"displayName":"{report_name}"}}]}}')
    return buffer.getvalue()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class PowerBiImports:
    """The workspace (`groups/{groupId}/...`) routes; `PowerBi` authenticates and hands them over."""

    def __init__(self, world: PowerPlatformWorld) -> None:
        self._world = world

    def route(self, request: Request, caller: Caller, parts: list[str]) -> Reply:
        """`parts`: the path after v1.0/myorg, lower-cased: groups, {id}, imports[, {id}]."""
        workspace_id = parts[1] if len(parts) > 1 else ""
        with self._world.lock:
            tenant = self._world.tenant(caller.tenant_id)
            if caller.app_id not in tenant.power_bi:
                raise pbi_error(401, "PowerBINotAuthorizedException")
            workspace = _workspace(tenant, workspace_id)
            if caller.app_id not in tenant.power_bi_delivery.members.get(workspace_id, set()):
                raise pbi_error(403, "PowerBINotAuthorizedException")
            settle(tenant, time.monotonic())
        kind, rest = (parts[2] if len(parts) > 2 else ""), parts[3:]
        if request.method == "POST" and kind == "imports" and not rest:
            return self._post(request, caller, workspace)
        if (
            request.method == "POST"
            and kind == "datasets"
            and len(rest) == 2
            and rest[1] == "default.takeover"
        ):
            return take_over(self._world, tenant, workspace.workspace_id.lower(), rest[0], caller)
        if request.method != "GET" or kind not in ("imports", "datasets", "reports") or len(rest) > 1:
            raise pbi_error(404, "PowerBIEntityNotFound")
        with self._world.lock:
            if kind == "imports" and rest:
                found = tenant.power_bi_delivery.imports.get(rest[0])
                if found is None or found.workspace_id != workspace.workspace_id.lower():
                    raise pbi_error(404, "PowerBIEntityNotFound")
                return json_reply(200, self._import_body(tenant, found, request.base_url))
            return json_reply(200, {"value": self._listing(tenant, workspace, kind, request.base_url)})

    def _listing(
        self, tenant: LiveTenant, workspace: Workspace, kind: str, base: str
    ) -> list[dict[str, Any]]:
        delivery = tenant.power_bi_delivery
        if kind == "imports":
            imports = [
                i for i in delivery.imports.values() if i.workspace_id == workspace.workspace_id.lower()
            ]
            return [self._import_body(tenant, found, base) for found in imports]
        if kind == "datasets":
            return [
                self._dataset(tenant, workspace, dataset, base)
                for dataset in _current(tenant, workspace).datasets
            ]
        return [
            self._report(tenant, r, base)
            for r in delivery.reports
            if r.workspace_id == workspace.workspace_id.lower()
        ]

    def _post(self, request: Request, caller: Caller, workspace: Workspace) -> Reply:
        name = request.query.get("datasetdisplayname", "").strip()
        if not name:
            raise pbi_error(400, "InvalidRequest", {"datasetDisplayName": "required"})
        mode = request.query.get("nameconflict", "Ignore")
        if mode not in CONFLICT_MODES:
            raise pbi_error(400, "InvalidRequest", {"nameConflict": "|".join(CONFLICT_MODES)})
        data = _multipart_file(request)
        with self._world.lock:
            tenant = self._world.tenant(caller.tenant_id)
            current = _current(tenant, workspace)
            dataset_id, name = _resolve_conflict(current, name, mode)
            report = next((r for r in tenant.power_bi_delivery.reports if r.dataset_id == dataset_id), None)
            started = time.monotonic()
            found = PbiImport(
                str(uuid.uuid4()),
                workspace.workspace_id.lower(),
                name,
                caller.object_id,
                _now(),
                started + self._world.delivery_delay,
                dataset_id or str(uuid.uuid4()),
                report.report_id if report else str(uuid.uuid4()),
                dataset_id is not None,
                None
                if _is_pbix(data)
                else ("ImportUnsupportedFileFormat", "The file is not a Power BI file."),
            )
            found.updated_on = found.created_on
            tenant.power_bi_delivery.imports[found.import_id] = found
        return json_reply(202, {"id": found.import_id})

    def _import_body(self, tenant: LiveTenant, found: PbiImport, base: str) -> dict[str, Any]:  # lock held
        body: dict[str, Any] = {
            "id": found.import_id,
            "name": found.name,
            "importState": found.state,
            "createdDateTime": found.created_on,
            "updatedDateTime": found.updated_on,
            "reports": [],
            "datasets": [],
        }
        if found.state == "Succeeded":
            workspace = next(
                w for w in tenant.spec.workspaces if w.workspace_id.lower() == found.workspace_id
            )
            dataset = next(d for d in workspace.datasets if d.dataset_id == found.dataset_id)
            report = next(r for r in tenant.power_bi_delivery.reports if r.report_id == found.report_id)
            body["datasets"] = [self._dataset(tenant, workspace, dataset, base)]
            body["reports"] = [self._report(tenant, report, base)]
        elif found.state == "Failed" and found.failure is not None:
            body["error"] = {"code": found.failure[0], "details": found.failure[1]}
        return body

    def _shown_as(self, tenant: LiveTenant, object_id: str) -> str:
        who = self._world.who(tenant.tenant_id, object_id)
        return who.user_principal_name if who.kind == "User" else who.client_id or who.object_id

    def _dataset(
        self, tenant: LiveTenant, workspace: Workspace, dataset: Dataset, base: str
    ) -> dict[str, Any]:
        return {
            "id": dataset.dataset_id,
            "name": dataset.name,
            "configuredBy": self._shown_as(tenant, dataset.configured_by),
            "isRefreshable": True,
            "webUrl": f"{base}/groups/{workspace.workspace_id}/datasets/{dataset.dataset_id}",
        }

    def _report(self, tenant: LiveTenant, report: PbiReport, base: str) -> dict[str, Any]:
        return {
            "id": report.report_id,
            "name": report.name,
            "datasetId": report.dataset_id,
            "createdBy": self._shown_as(tenant, report.created_by),
            "webUrl": f"{base}/groups/{report.workspace_id}/reports/{report.report_id}",
            "embedUrl": f"{base}/reportEmbed?reportId={report.report_id}&groupId={report.workspace_id}",
        }


def _workspace(tenant: LiveTenant, workspace_id: str) -> Workspace:  # lock held
    for workspace in tenant.spec.workspaces:
        if workspace.workspace_id.lower() == workspace_id:
            return workspace
    raise pbi_error(404, "PowerBIEntityNotFound")


def _current(tenant: LiveTenant, workspace: Workspace) -> Workspace:  # lock held
    return next(w for w in tenant.spec.workspaces if w.workspace_id == workspace.workspace_id)


def _resolve_conflict(workspace: Workspace, name: str, mode: str) -> tuple[str | None, str]:
    """(the dataset to overwrite or None, the name to give) under `nameConflict`."""
    same = [dataset for dataset in workspace.datasets if dataset.name.casefold() == name.casefold()]
    if mode == "Abort" and same:
        raise pbi_error(409, "DuplicatePackageFoundError", {"DuplicatePackagesFullMatch": None})
    if mode in ("Overwrite", "CreateOrOverwrite") and len(same) > 1:
        raise pbi_error(409, "MoreThanOneDuplicatePackageFoundError", {"DuplicatePackagesFullMatch": None})
    if mode == "Overwrite" and not same:
        raise pbi_error(404, "DuplicatePackageNotFoundError", {"DuplicatePackagesFullMatch": None})
    if mode in ("Overwrite", "CreateOrOverwrite") and same:
        return same[0].dataset_id, same[0].name
    if mode == "GenerateUniqueName" and same:
        taken = {dataset.name.casefold() for dataset in workspace.datasets}
        number = 2
        while f"{name} ({number})".casefold() in taken:
            number += 1
        return None, f"{name} ({number})"
    return None, name


def _multipart_file(request: Request) -> bytes:
    """The file part of a multipart/form-data body; 400 when there is none or it is too large."""
    content_type = request.header("Content-Type")
    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in content_type:
        raise pbi_error(400, "InvalidRequest", {"Content-Type": "multipart/form-data"})
    if len(request.body) > MAX_PBIX_BYTES:
        raise pbi_error(400, "RequestedFileIsTooLarge")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.body)
    for part in message.iter_parts() if message.is_multipart() else ():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and payload:
            return payload
    raise pbi_error(400, "InvalidRequest", {"file": "required"})


def _is_pbix(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = {info.filename for info in archive.infolist()}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError):
        return False
    return "Report/Layout" in names or "Report/definition.pbir" in names


def settle(tenant: LiveTenant, now: float) -> None:
    """Finish every import that is due: its dataset and report join the workspace (lock held)."""
    delivery = tenant.power_bi_delivery
    for found in delivery.imports.values():
        if found.state != "Publishing" or now < found.due:
            continue
        found.updated_on = _now()
        if found.failure is not None:
            found.state = "Failed"
            continue
        dataset = Dataset(found.dataset_id, found.name, found.created_by)
        workspaces = []
        for workspace in tenant.spec.workspaces:
            if workspace.workspace_id.lower() == found.workspace_id:
                kept = [d for d in workspace.datasets if d.dataset_id != found.dataset_id]
                workspace = dataclasses.replace(workspace, datasets=(*kept, dataset))
            workspaces.append(workspace)
        tenant.spec = dataclasses.replace(tenant.spec, workspaces=tuple(workspaces))
        delivery.reports = [r for r in delivery.reports if r.report_id != found.report_id]
        delivery.reports.append(
            PbiReport(
                found.report_id,
                found.name,
                found.dataset_id,
                found.workspace_id,
                found.created_by,
                found.updated_on,
            )
        )
        found.state = "Succeeded"
