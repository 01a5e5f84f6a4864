"""The Dataverse tables the stand-in serves and their rows, made from an environment of the scenario:
`workflows` (cloud flows are category 5), `appmodules`, `bots`, `solutions`, `importjobs` and
`systemusers` (and delivery's tables, `delivery_tables.py`), with the column names of the Dataverse
Web API (lookups as `_{name}_value` holding systemuser ids). Every environment also holds what
Dataverse ships with: the SYSTEM user, the Default and System solutions, a classic workflow and a
business rule (categories 0 and 2).

People become systemusers: every user of the tenant's section (a deleted one disabled), and each app
whose application user exists (accessmode 4, its `applicationid` the client ID, its
`azureactivedirectoryobjectid` the service principal's object id). Called with the lock held.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable
from typing import Any

from ...scenario_power_platform import DEFAULT_TIME
from .delivery_tables import DELIVERY_ROWS, DELIVERY_TABLES, delivered_importjobs
from .odata import Table
from .owner_changes import CAPACITY_ROWS, CAPACITY_TABLES
from .world import SYSTEM, LiveEnvironment, PowerPlatformWorld, systemuser_id

Row = dict[str, Any]
_BUILT_IN = uuid.UUID("0b3f4a52-7d3e-4c1a-9f2b-3c8e6d5a4b10")
_WHO = ("_ownerid_value", "_owninguser_value", "_createdby_value", "_modifiedby_value")
_TIMES = ("createdon", "modifiedon")

TABLES = {
    table.entity_set: table
    for table in (
        Table(
            "workflows",
            "workflow",
            "workflowid",
            (
                "workflowid",
                "name",
                "category",
                "type",
                "statecode",
                "statuscode",
                "ismanaged",
                "primaryentity",
            )
            + _WHO
            + _TIMES,
        ),
        Table(
            "appmodules",
            "appmodule",
            "appmoduleid",
            ("appmoduleid", "name", "uniquename", "clienttype", "ismanaged", "statecode", "_createdby_value")
            + ("_modifiedby_value",)
            + _TIMES,
        ),
        Table("bots", "bot", "botid", ("botid", "name", "schemaname", "statecode") + _WHO + _TIMES),
        Table(
            "solutions",
            "solution",
            "solutionid",
            ("solutionid", "uniquename", "friendlyname", "version", "ismanaged", "isvisible", "installedon")
            + ("_createdby_value", "_modifiedby_value")
            + _TIMES,
        ),
        Table(
            "importjobs",
            "importjob",
            "importjobid",
            (
                "importjobid",
                "name",
                "solutionname",
                "progress",
                "startedon",
                "completedon",
                "_createdby_value",
            )
            + ("createdon", "data"),
        ),
        Table(
            "systemusers",
            "systemuser",
            "systemuserid",
            ("systemuserid", "fullname", "domainname", "internalemailaddress", "applicationid")
            + ("azureactivedirectoryobjectid", "isdisabled", "accessmode"),
        ),
    )
}


def etag(row: Row, key: str) -> str:
    return f'W/"{zlib.crc32(str(row[key]).encode()) % 10_000_000}"'


def _built_in(env: LiveEnvironment, name: str) -> str:
    return str(uuid.uuid5(_BUILT_IN, f"{env.env_id.lower()}/{name}"))


def _owned(env: LiveEnvironment, owner: str, creator: str) -> Row:
    owner_id, creator_id = systemuser_id(env.env_id, owner), systemuser_id(env.env_id, creator)
    return {
        "_ownerid_value": owner_id,
        "_owninguser_value": owner_id,
        "_createdby_value": creator_id,
        "_modifiedby_value": creator_id,
        "createdon": DEFAULT_TIME,
        "modifiedon": DEFAULT_TIME,
    }


def _workflow(workflow_id: str, name: str, category: int, managed: bool, state: int) -> Row:
    return {
        "workflowid": workflow_id,
        "name": name,
        "category": category,
        "type": 1,
        "statecode": state,
        "statuscode": state + 1,
        "ismanaged": managed,
        "primaryentity": "none",
    }


def workflows(world: PowerPlatformWorld, env: LiveEnvironment) -> list[Row]:
    rows = [
        {
            **_workflow(_built_in(env, "classic"), "Assign new leads", 0, True, 1),
            **_owned(env, SYSTEM, SYSTEM),
        },
        {
            **_workflow(_built_in(env, "rule"), "Require a phone number", 2, True, 1),
            **_owned(env, SYSTEM, SYSTEM),
        },
    ]
    for flow in env.spec.flows:
        if flow.solution_aware:
            state = 1 if flow.state == "Started" else 0
            row = _workflow(flow.flow_id, flow.display_name, 5, flow.managed, state)
            rows.append({**row, **_owned(env, flow.owner, flow.creator)})
    return rows


def appmodules(world: PowerPlatformWorld, env: LiveEnvironment) -> list[Row]:
    rows = []
    for app in env.spec.model_driven_apps:
        created = _owned(env, app.created_by, app.created_by)
        rows.append(
            {
                "appmoduleid": app.app_id,
                "name": app.name,
                "uniquename": app.unique_name,
                "clienttype": 4,
                "ismanaged": app.managed,
                "statecode": 0,
                **{key: created[key] for key in ("_createdby_value", "_modifiedby_value", *_TIMES)},
            }
        )
    return rows


def bots(world: PowerPlatformWorld, env: LiveEnvironment) -> list[Row]:
    return [
        {
            "botid": bot.bot_id,
            "name": bot.name,
            "schemaname": "cr_" + "".join(ch for ch in bot.name.lower() if ch.isalnum()),
            "statecode": 0,
            **_owned(env, bot.owner, bot.created_by),
        }
        for bot in env.spec.bots
    ]


def _solution(solution_id: str, unique_name: str, friendly: str, version: str, managed: bool) -> Row:
    return {
        "solutionid": solution_id,
        "uniquename": unique_name,
        "friendlyname": friendly,
        "version": version,
        "ismanaged": managed,
        "isvisible": unique_name != "System",
    }


def solutions(world: PowerPlatformWorld, env: LiveEnvironment) -> list[Row]:
    system = _owned(env, SYSTEM, SYSTEM)
    created = {key: system[key] for key in ("_createdby_value", "_modifiedby_value", *_TIMES)}
    rows = [
        {**_solution(_built_in(env, "default"), "Default", "Default Solution", "1.0", False), **created},
        {**_solution(_built_in(env, "system"), "System", "System Solution", "9.2.0.0", True), **created},
    ]
    for row in rows:
        row["installedon"] = DEFAULT_TIME
    for solution in env.spec.solutions:
        by = _owned(env, solution.created_by, solution.created_by)
        row = _solution(
            solution.solution_id,
            solution.unique_name,
            solution.friendly_name,
            solution.version,
            solution.managed,
        )
        rows.append({**row, "installedon": solution.installed_on, **{key: by[key] for key in created}})
    return rows


def importjobs(world: PowerPlatformWorld, env: LiveEnvironment) -> list[Row]:
    return [
        {
            "importjobid": job.job_id,
            "name": f"{job.solution_name} import",
            "solutionname": job.solution_name,
            "progress": 100.0,
            "startedon": job.started_on,
            "completedon": job.completed_on,
            "_createdby_value": systemuser_id(env.env_id, job.created_by),
            "createdon": job.started_on,
            "data": None,
        }
        for job in env.spec.import_jobs
    ] + delivered_importjobs(env)


def _user(env: LiveEnvironment, object_id: str, name: str, upn: str, app: str | None) -> Row:
    return {
        "systemuserid": systemuser_id(env.env_id, object_id),
        "fullname": name,
        "domainname": upn,
        "internalemailaddress": upn,
        "applicationid": app,
        "azureactivedirectoryobjectid": object_id if object_id != SYSTEM else None,
        "isdisabled": False,
        "accessmode": 4 if app else 0,
    }


def systemusers(world: PowerPlatformWorld, env: LiveEnvironment) -> list[Row]:
    rows = [_user(env, SYSTEM, "SYSTEM", "", None)]
    for user in world.tenant(env.tenant_id).users.values():
        row = _user(env, user.object_id, user.display_name, user.user_principal_name, None)
        rows.append({**row, "isdisabled": user.deleted})
    for client_id in sorted(env.app_users):
        object_id = world.principal_object_id(env.tenant_id, client_id)
        if object_id is not None:
            app = world.state.apps.get(client_id)
            rows.append(_user(env, object_id, f"# {app.display_name if app else client_id}", "", client_id))
    return rows


ROWS: dict[str, Callable[[PowerPlatformWorld, LiveEnvironment], list[Row]]] = {
    "workflows": workflows,
    "appmodules": appmodules,
    "bots": bots,
    "solutions": solutions,
    "importjobs": importjobs,
    "systemusers": systemusers,
    **DELIVERY_ROWS,
}
TABLES.update(DELIVERY_TABLES)
TABLES.update(CAPACITY_TABLES), ROWS.update(CAPACITY_ROWS)  # owner_changes.py: Process licences
