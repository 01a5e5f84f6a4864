"""The Dataverse Web API's solution actions in the sandbox: `POST /api/data/v9.2/StageSolution` and
`POST /api/data/v9.2/ImportSolutionAsync` (what runs after: `solution_import.py`).

Shapes follow Microsoft Learn's Web API reference (StageSolution action, StageSolutionResults
complex type, ImportSolutionAsync action) and the bodies Microsoft's Terraform provider for Power
Platform sends and reads (internal/services/solution/dto.go): `{"CustomizationFile": base64}` ->
`{"StageSolutionResults": {"StageSolutionUploadId", "StageSolutionStatus", "SolutionDetails":
{"SolutionUniqueName", "SolutionFriendlyName", "SolutionVersion", "IsManaged"},
"MissingDependencies": [...], "SolutionValidationResults": [...]}}`; ImportSolutionAsync takes
`CustomizationFile` or `SolutionParameters: {"StageSolutionUploadId"}`, `OverwriteUnmanagedCustomizations`,
`PublishWorkflows`, `ComponentParameters` (entities with `@odata.type`
`Microsoft.Dynamics.CRM.connectionreference` {connectionreferencelogicalname, connectionid,
connectorid} or `Microsoft.Dynamics.CRM.environmentvariablevalue` {schemaname, value}) and an optional
`ImportJobId`, and answers `{"AsyncOperationId", "ImportJobKey"}` (the import job's id).

A body Dataverse cannot read is 400 0x80048d19 ("Error identified in Payload provided by the user");
an unreadable or hostile solution file is 400 0x8004800d (see `solution_zip.py`); an ImportJobId
already used is 400 0x80040237 "Cannot insert duplicate key."; an unknown upload id is 404 0x80040217
(inferred). Messages name the rule broken, never the file's content.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any

from ...scenario_fields import is_guid
from ..protocol import Reply, Request, json_reply
from .delivery_state import ConnectionParameter, ImportParameters
from .odata import ODataError
from .solution_import import MISSING_DEPENDENCY, VERSION_CONFLICT, accept, version_key
from .solution_zip import MAX_FILE_BYTES, SolutionFileError, SolutionPackage, read_solution
from .world import LiveEnvironment, PowerPlatformWorld

ACTIONS = ("StageSolution", "ImportSolutionAsync")
BAD_PAYLOAD = "0x80048d19"
_CONNECTION_REFERENCE = "Microsoft.Dynamics.CRM.connectionreference"
_ENVIRONMENT_VARIABLE = "Microsoft.Dynamics.CRM.environmentvariablevalue"
_HEADERS = {"OData-Version": "4.0", "Content-Type": "application/json; odata.metadata=minimal"}


def _payload_error(detail: str) -> ODataError:
    message = f"Error identified in Payload provided by the user for Entity :'', {detail}"
    return ODataError(400, BAD_PAYLOAD, message)


def _body(request: Request) -> dict[str, Any]:
    try:
        return request.json()
    except (ValueError, UnicodeDecodeError) as error:
        raise _payload_error("the body is not a JSON object.") from error


def _file(value: object) -> SolutionPackage:
    if not isinstance(value, str) or not value:
        raise _payload_error("CustomizationFile must be the solution file, base64-encoded.")
    if len(value) > MAX_FILE_BYTES * 4 // 3 + 4:
        raise ODataError(
            400, "0x8004800d", f"The solution file is larger than the {MAX_FILE_BYTES} bytes allowed."
        )
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise _payload_error("CustomizationFile is not valid base64.") from error
    try:
        return read_solution(data)
    except SolutionFileError as error:
        raise ODataError(400, error.code, error.message) from error


def _signed(code: str) -> int:
    value = int(code, 16)
    return value - (1 << 32) if value >= 1 << 31 else value


def stage(world: PowerPlatformWorld, env: LiveEnvironment, request: Request, base: str) -> Reply:
    """StageSolution: the file read and kept under an upload id, with what would stop its import."""
    package = _file(_body(request).get("CustomizationFile"))
    upload_id = str(uuid.uuid4())
    with world.lock:
        env.delivery.staged[upload_id] = package
        installed = {s.unique_name.lower(): s for s in env.spec.solutions}
    missing = [name for name in package.missing_dependencies if name.lower() not in installed]
    results = [
        {
            "SolutionValidationResultType": "Error",
            "Message": f"The following solution cannot be imported: {package.unique_name}. Some dependencies "
            f'are missing. Install the following solutions before installing this one: "{name}".',
            "ErrorCode": _signed(MISSING_DEPENDENCY),
            "AdditionalInfo": "",
        }
        for name in missing
    ]
    existing = installed.get(package.unique_name.lower())
    if (
        existing is not None
        and existing.managed
        and version_key(existing.version) > version_key(package.version)
    ):
        message = "The import solution must have a higher version than the existing solution it is upgrading."
        results.append(
            {
                "SolutionValidationResultType": "Error",
                "Message": message,
                "ErrorCode": _signed(VERSION_CONFLICT),
                "AdditionalInfo": "",
            }
        )
    body = {
        "@odata.context": f"{base}$metadata#Microsoft.Dynamics.CRM.StageSolutionResponse",
        "StageSolutionResults": {
            "StageSolutionUploadId": upload_id,
            "StageSolutionStatus": "Failed" if results else "Passed",
            "SolutionDetails": {
                "SolutionUniqueName": package.unique_name,
                "SolutionFriendlyName": package.friendly_name,
                "SolutionVersion": package.version,
                "IsManaged": package.managed,
            },
            "MissingDependencies": [_missing(package, name) for name in missing],
            "SolutionValidationResults": results,
        },
    }
    return json_reply(200, body, dict(_HEADERS))


def _missing(package: SolutionPackage, solution: str) -> dict[str, Any]:
    return {
        "RequiredComponentSchemaName": "",
        "RequiredComponentDisplayName": "",
        "RequiredComponentType": "1",
        "RequiredSolutionName": solution,
        "DependentComponentSchemaName": package.unique_name,
        "DependentComponentDisplayName": package.friendly_name,
        "DependentComponentType": "7",
    }


def import_async(
    world: PowerPlatformWorld, env: LiveEnvironment, importer: str, request: Request, base: str
) -> Reply:
    """ImportSolutionAsync: the import accepted; its asynchronous operation and import job made."""
    body = _body(request)
    for flag in ("OverwriteUnmanagedCustomizations", "PublishWorkflows"):
        if not isinstance(body.get(flag), bool):
            raise _payload_error(f"{flag} is required and must be true or false.")
    parameters = ImportParameters(
        body["OverwriteUnmanagedCustomizations"], body["PublishWorkflows"], *_component_parameters(body)
    )
    job_id = body.get("ImportJobId") or str(uuid.uuid4())
    if not is_guid(job_id):
        raise _payload_error("ImportJobId must be a GUID.")
    job_id = str(job_id).lower()
    package = None if "CustomizationFile" not in body else _file(body["CustomizationFile"])
    with world.lock:
        if package is None:
            package = _staged(env, body.get("SolutionParameters"))
        if job_id in env.delivery.jobs:
            raise ODataError(400, "0x80040237", "Cannot insert duplicate key.")
        operation = accept(world, env, importer, package, parameters, job_id)
    reply = {
        "@odata.context": f"{base}$metadata#Microsoft.Dynamics.CRM.ImportSolutionAsyncResponse",
        "AsyncOperationId": operation.operation_id,
        "ImportJobKey": job_id,
    }
    return json_reply(200, reply, dict(_HEADERS))


def _staged(env: LiveEnvironment, parameters: object) -> SolutionPackage:  # lock held
    upload_id = parameters.get("StageSolutionUploadId") if isinstance(parameters, dict) else None
    if not is_guid(upload_id):
        raise _payload_error("give CustomizationFile or SolutionParameters.StageSolutionUploadId.")
    package = env.delivery.staged.get(str(upload_id).lower())
    if package is None:
        raise ODataError(404, "0x80040217", f"No staged solution upload with id {str(upload_id).lower()}.")
    return package


def _component_parameters(
    body: dict[str, Any],
) -> tuple[tuple[ConnectionParameter, ...], tuple[tuple[str, str], ...]]:
    raw = body.get("ComponentParameters", [])
    if not isinstance(raw, list):
        raise _payload_error("ComponentParameters must be an array of entities.")
    connections, variables = [], []
    for item in raw:
        kind = item.get("@odata.type") if isinstance(item, dict) else None
        if kind == _CONNECTION_REFERENCE:
            fields = [
                item.get(key, "") for key in ("connectionreferencelogicalname", "connectionid", "connectorid")
            ]
            if not all(isinstance(value, str) for value in fields) or not fields[0]:
                raise _payload_error("a connectionreference needs connectionreferencelogicalname (text).")
            connections.append(ConnectionParameter(*fields))
        elif kind == _ENVIRONMENT_VARIABLE:
            name, value = item.get("schemaname"), item.get("value")
            if not isinstance(name, str) or not isinstance(value, str):
                raise _payload_error("an environmentvariablevalue needs schemaname and value (text).")
            variables.append((name, value))
        else:
            raise _payload_error("each ComponentParameters entity needs a known @odata.type.")
    return tuple(connections), tuple(variables)
