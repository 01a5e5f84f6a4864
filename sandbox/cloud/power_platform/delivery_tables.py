"""The Dataverse tables delivery adds to the stand-in: `asyncoperations` (the import's asynchronous
operation), `canvasapps`, `connectionreferences`, and the import jobs `ImportSolutionAsync` made.

Column names follow the Dataverse Web API's entity types on Microsoft Learn (asyncoperation:
`asyncoperationid`, `name`, `operationtype`, `statecode`, `statuscode`, `message`, `friendlymessage`,
`errorcode`, `startedon`, `completedon`; canvasapp: `canvasappid`, `name`, `displayname`;
connectionreference: `connectionreferenceid`, `connectionreferencelogicalname`, `connectorid`,
`connectionid`; importjob: `data`), lookups as `_{name}_value` holding systemuser ids. The
operationtype of a solution import (103) is inferred. Called with the lock held.
"""

from __future__ import annotations

from typing import Any

from ...scenario_power_platform import DEFAULT_TIME
from .odata import Table
from .world import LiveEnvironment, PowerPlatformWorld, systemuser_id

Row = dict[str, Any]
_WHO = ("_ownerid_value", "_owninguser_value", "_createdby_value", "_modifiedby_value")
_SOLUTION_IMPORT = 103

DELIVERY_TABLES = {
    table.entity_set: table
    for table in (
        Table(
            "asyncoperations",
            "asyncoperation",
            "asyncoperationid",
            ("asyncoperationid", "name", "operationtype", "statecode", "statuscode", "message")
            + ("friendlymessage", "errorcode", "createdon", "startedon", "completedon")
            + _WHO,
        ),
        Table(
            "canvasapps",
            "canvasapp",
            "canvasappid",
            ("canvasappid", "name", "displayname", "ismanaged", "createdon", "modifiedon") + _WHO,
        ),
        Table(
            "connectionreferences",
            "connectionreference",
            "connectionreferenceid",
            ("connectionreferenceid", "connectionreferencelogicalname", "connectionreferencedisplayname")
            + ("connectorid", "connectionid", "ismanaged", "statecode", "createdon", "modifiedon")
            + _WHO,
        ),
    )
}


def _who(env: LiveEnvironment, owner: str, creator: str) -> Row:
    owner_id, creator_id = systemuser_id(env.env_id, owner), systemuser_id(env.env_id, creator)
    return {
        "_ownerid_value": owner_id,
        "_owninguser_value": owner_id,
        "_createdby_value": creator_id,
        "_modifiedby_value": creator_id,
    }


def asyncoperations(world: PowerPlatformWorld, env: LiveEnvironment) -> list[Row]:
    rows = []
    for operation in env.delivery.operations.values():
        rows.append(
            {
                "asyncoperationid": operation.operation_id,
                "name": "Import Solution",
                "operationtype": _SOLUTION_IMPORT,
                "statecode": operation.statecode,
                "statuscode": operation.statuscode,
                "message": operation.message,
                "friendlymessage": operation.friendly_message,
                "errorcode": _signed(operation.error_code) if operation.error_code else None,
                "createdon": operation.created_on,
                "startedon": operation.created_on,
                "completedon": operation.completed_on,
                **_who(env, operation.created_by, operation.created_by),
            }
        )
    return rows


def _signed(code: str) -> int:
    """A hex error code as the signed integer `errorcode` holds."""
    value = int(code, 16)
    return value - (1 << 32) if value >= 1 << 31 else value


def canvasapps(world: PowerPlatformWorld, env: LiveEnvironment) -> list[Row]:
    return [
        {
            "canvasappid": app.app_id,
            "name": "cr_" + "".join(ch for ch in app.display_name.lower() if ch.isalnum()),
            "displayname": app.display_name,
            "ismanaged": False,
            "createdon": DEFAULT_TIME,
            "modifiedon": DEFAULT_TIME,
            **_who(env, app.owner, app.created_by),
        }
        for app in env.spec.canvas_apps
    ]


def connectionreferences(world: PowerPlatformWorld, env: LiveEnvironment) -> list[Row]:
    return [
        {
            "connectionreferenceid": record.record_id,
            "connectionreferencelogicalname": record.logical_name,
            "connectionreferencedisplayname": record.display_name,
            "connectorid": record.connector_id,
            "connectionid": record.connection_id,
            "ismanaged": record.managed,
            "statecode": 0,
            "createdon": record.created_on,
            "modifiedon": record.created_on,
            **_who(env, record.owner, record.created_by),
        }
        for record in env.delivery.connection_references.values()
    ]


def delivered_importjobs(env: LiveEnvironment) -> list[Row]:
    return [
        {
            "importjobid": job.job_id,
            "name": f"{job.solution_name} import",
            "solutionname": job.solution_name,
            "progress": job.progress,
            "startedon": job.started_on,
            "completedon": job.completed_on,
            "data": job.data,
            "_createdby_value": systemuser_id(env.env_id, job.created_by),
            "createdon": job.started_on,
        }
        for job in env.delivery.jobs.values()
    ]


DELIVERY_ROWS = {
    "asyncoperations": asyncoperations,
    "canvasapps": canvasapps,
    "connectionreferences": connectionreferences,
}
