"""What an accepted `ImportSolutionAsync` does in the sandbox's Dataverse, and when.

The asynchronous operation waits (statecode 0, statuscode 0 "Waiting For Resources"), runs (2 / 20
"In Progress") and ends (3 "Completed" with 30 "Succeeded" or 31 "Failed", `completedon` set) over
the world's `delivery_delay`; each read of the environment settles what is due, so a client sees it
progress over a couple of polls (values: Microsoft Learn, "asyncoperation EntityType"). Its import
job (`importjobs`) carries `progress`, `completedon` and `data`, the import log in the XML form
Dataverse writes (`importexportxml/solutionManifests/solutionManifest/result`, one element per
component with its `result`).

An import fails, in the operation's `message`/`friendlymessage`/`errorcode` and the import log, never
echoing the file beyond its validated unique names, when:
- a solution its MissingDependencies names is not installed: 0x8004801D "The following solution cannot
  be imported: {name}. Some dependencies are missing." (read: a public import log,
  seanmcne/Microsoft.Xrm.Data.PowerShell#130);
- a managed solution of a higher version is installed: "The import solution must have a higher
  version than the existing solution it is upgrading." (read: microsoft/coe-starter-kit#781; the
  code 0x80048068 is inferred);
- a connection reference has no connection, neither in ComponentParameters (`connectionid`) nor from
  an earlier import (inferred wording and code 0x80060467).
A successful import makes the importer (the token's caller, the application user Dataverse finds
by `systemusers.applicationid`) owner and creator of every component it creates: cloud flows
(`workflows`, category 5), canvas apps, bots, model-driven apps, connection references and the
solution record, as the seed says ("the importing identity becomes the owner"). Re-importing the same
or a higher version keeps the owner and creator of components already there and gives only new ones
to the importer: Microsoft does not document this, it is inferred (an update does not recreate a
record); a public report says the same version of a managed solution is refused
(microsoft/powerplatform-build-tools#212), which the sandbox does not do.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from xml.etree import ElementTree

from ...scenario_power_platform import Bot, CanvasApp, CloudFlow, Environment, ModelDrivenApp, Solution
from .delivery_state import (
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    LOCKED,
    SUCCEEDED,
    AsyncOperation,
    ConnectionReferenceRecord,
    ImportJobRecord,
    ImportParameters,
)
from .solution_zip import Component, SolutionPackage
from .world import LiveEnvironment, PowerPlatformWorld

MISSING_DEPENDENCY = "0x8004801D"
VERSION_CONFLICT = "0x80048068"
NO_CONNECTION = "0x80060467"
_SOLUTION_IDS = uuid.UUID("9d3c2a1b-6e5f-4a7b-8c9d-0e1f2a3b4c5d")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class DeliveredComponent:
    """A component of an environment as tests read it back: who owns and who created it."""

    kind: str  # workflow, canvasapp, bot, appmodule, connectionreference, solution
    component_id: str
    name: str
    owner: str  # Entra object id
    created_by: str


def accept(
    world: PowerPlatformWorld,
    env: LiveEnvironment,
    importer: str,
    package: SolutionPackage,
    parameters: ImportParameters,
    job_id: str,
) -> AsyncOperation:
    """Record an import to run (lock held)."""
    started, created = time.monotonic(), now_iso()
    operation = AsyncOperation(
        str(uuid.uuid4()),
        job_id,
        importer,
        created,
        started,
        started + world.delivery_delay,
        package,
        parameters,
    )
    env.delivery.operations[operation.operation_id] = operation
    env.delivery.jobs[job_id] = ImportJobRecord(job_id, package.unique_name, importer, created)
    return operation


def settle(env: LiveEnvironment, now: float) -> None:
    """Move every operation on to where it is by `now`, running those that are due (lock held)."""
    for operation in env.delivery.operations.values():
        if operation.statecode == COMPLETED:
            continue
        job = env.delivery.jobs[operation.job_id]
        if now >= operation.due:
            _complete(env, operation, job)
        elif now >= operation.started + (operation.due - operation.started) / 2:
            operation.statecode, operation.statuscode = LOCKED, IN_PROGRESS
            job.progress = 50.0


def _complete(env: LiveEnvironment, operation: AsyncOperation, job: ImportJobRecord) -> None:
    failure = _failure(env, operation.package, operation.parameters)
    finished = now_iso()
    operation.statecode, operation.completed_on = COMPLETED, finished
    job.completed_on = finished
    if failure is None:
        _apply(env, operation)
        operation.statuscode, job.progress = SUCCEEDED, 100.0
        job.data = _log(operation.package, None, job.started_on, finished)
        return
    code, text, culprit = failure
    operation.statuscode = FAILED
    operation.message = f"Solution manifest import: FAILURE: {text}"
    operation.friendly_message, operation.error_code = text, code
    job.data = _log(operation.package, (code, text, culprit), job.started_on, finished)


def version_key(text: str) -> tuple[int, ...]:
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (4 - len(parts)))


def _failure(
    env: LiveEnvironment, package: SolutionPackage, parameters: ImportParameters
) -> tuple[str, str, str] | None:
    """(code, message, the culprit's schema name or "") of why the import fails, or None."""
    installed = {solution.unique_name.lower(): solution for solution in env.spec.solutions}
    installed_names = set(installed) | {"default", "system"}
    missing = [name for name in package.missing_dependencies if name.lower() not in installed_names]
    if missing:
        listed = ", ".join(f'"{name}"' for name in missing)
        text = (
            f"The following solution cannot be imported: {package.unique_name}. Some dependencies are "
            f"missing. Install the following solutions before installing this one: {listed}."
        )
        return MISSING_DEPENDENCY, text, ""
    existing = installed.get(package.unique_name.lower())
    if (
        existing is not None
        and existing.managed
        and version_key(existing.version) > version_key(package.version)
    ):
        text = "The import solution must have a higher version than the existing solution it is upgrading."
        return VERSION_CONFLICT, text, ""
    given = {c.logical_name.lower(): c for c in parameters.connections if c.connection_id}
    for reference in package.of_kind("connectionreference"):
        earlier = env.delivery.connection_references.get(reference.schema_name.lower())
        if reference.schema_name.lower() not in given and (earlier is None or not earlier.connection_id):
            text = (
                f"The connection reference {reference.schema_name} has no connection. Give its "
                "connectionid in ComponentParameters."
            )
            return NO_CONNECTION, text, reference.schema_name
    return None


def _apply(env: LiveEnvironment, operation: AsyncOperation) -> None:
    """The import's effect on the environment: new components owned and created by the importer."""
    package, who = operation.package, operation.created_by
    spec = env.spec
    components = [component.resolved(package.unique_name) for component in package.components]
    flows = {flow.flow_id: flow for flow in spec.flows}
    state = "Started" if operation.parameters.publish_workflows else "Stopped"
    for c in (c for c in components if c.kind == "workflow" and c.component_id not in flows):
        flows[c.component_id] = CloudFlow(
            c.component_id, c.display_name, who, True, who, package.managed, state
        )
    apps = {app.app_id: app for app in spec.canvas_apps}
    for c in (c for c in components if c.kind == "canvasapp" and c.component_id not in apps):
        apps[c.component_id] = CanvasApp(c.component_id, c.display_name, who, who)
    bots = {bot.bot_id: bot for bot in spec.bots}
    for c in (c for c in components if c.kind == "bot" and c.component_id not in bots):
        bots[c.component_id] = Bot(c.component_id, c.display_name, who, who)
    models = {app.app_id: app for app in spec.model_driven_apps}
    for c in (c for c in components if c.kind == "appmodule" and c.component_id not in models):
        models[c.component_id] = ModelDrivenApp(
            c.component_id, c.display_name, c.schema_name, who, package.managed
        )
    env.spec = dataclasses.replace(
        spec,
        flows=tuple(flows.values()),
        canvas_apps=tuple(apps.values()),
        bots=tuple(bots.values()),
        model_driven_apps=tuple(models.values()),
        solutions=_solutions(env.spec, package, who),
    )
    _connection_references(env, operation, [c for c in components if c.kind == "connectionreference"])


def _solutions(spec: Environment, package: SolutionPackage, who: str) -> tuple[Solution, ...]:
    solutions, found = [], False
    for solution in spec.solutions:
        if solution.unique_name.lower() == package.unique_name.lower():
            solution = dataclasses.replace(solution, version=package.version, managed=package.managed)
            found = True
        solutions.append(solution)
    if not found:
        solution_id = str(uuid.uuid5(_SOLUTION_IDS, f"{spec.env_id.lower()}/{package.unique_name.lower()}"))
        solutions.append(
            Solution(
                solution_id,
                package.unique_name,
                package.friendly_name,
                package.version,
                package.managed,
                now_iso(),
                who,
            )
        )
    return tuple(solutions)


def _connection_references(
    env: LiveEnvironment, operation: AsyncOperation, references: list[Component]
) -> None:
    given = {c.logical_name.lower(): c for c in operation.parameters.connections}
    for reference in references:
        key = reference.schema_name.lower()
        parameter = given.get(key)
        record = env.delivery.connection_references.get(key)
        if record is None:
            record = ConnectionReferenceRecord(
                str(uuid.uuid5(_SOLUTION_IDS, f"{env.env_id.lower()}/cr/{key}")),
                reference.schema_name,
                reference.display_name,
                reference.connector_id,
                None,
                operation.created_by,
                operation.created_by,
                operation.package.managed,
                now_iso(),
            )
            env.delivery.connection_references[key] = record
        if parameter is not None and parameter.connection_id:
            record.connection_id = parameter.connection_id


def _log(package: SolutionPackage, failure: tuple[str, str, str] | None, started: str, stopped: str) -> str:
    """The import job's `data`: the import log Dataverse keeps, in its XML form."""
    root = ElementTree.Element(
        "importexportxml", start=started, stop=stopped, progress="100", processed="true"
    )
    manifests = ElementTree.SubElement(root, "solutionManifests")
    manifest = ElementTree.SubElement(
        manifests,
        "solutionManifest",
        languagecode="1033",
        id=package.unique_name,
        LocalizedName=package.friendly_name,
        processed="true",
    )
    ElementTree.SubElement(manifest, "UniqueName").text = package.unique_name
    ElementTree.SubElement(manifest, "Version").text = package.version
    ElementTree.SubElement(manifest, "Managed").text = "1" if package.managed else "0"
    code, text, culprit = failure or ("0", "", "")
    outcome = "failure" if failure and not culprit else "success"
    ElementTree.SubElement(
        manifest,
        "result",
        result=outcome,
        errorcode=code,
        errortext=text if not culprit else "",
        datetime=stopped,
    )
    sections: dict[str, ElementTree.Element] = {}
    for component in (c.resolved(package.unique_name) for c in package.components):
        section = sections.get(component.kind)
        if section is None:
            section = sections[component.kind] = ElementTree.SubElement(root, component.kind + "s")
        element = ElementTree.SubElement(
            section, component.kind, id="{" + component.component_id + "}", name=component.display_name
        )
        if failure and not culprit:
            element.set("processed", "false")
            continue
        element.set("processed", "true")
        failed = bool(culprit) and component.schema_name == culprit
        ElementTree.SubElement(
            element,
            "result",
            result="failure" if failed else "success",
            errorcode=code if failed else "0",
            errortext=text if failed else "",
            datetime=stopped,
        )
    return ElementTree.tostring(root, encoding="unicode")


def delivered_components(world: PowerPlatformWorld, env_id: str) -> list[DeliveredComponent]:
    """Every component of the environment with its owner and creator (object ids), for tests."""
    with world.lock:
        env = world.environment(env_id)
        if env is None:
            raise ValueError(f"no environment {env_id}")
        spec = env.spec
        found = [
            DeliveredComponent("workflow", f.flow_id, f.display_name, f.owner, f.creator)
            for f in spec.flows
            if f.solution_aware
        ]
        found += [
            DeliveredComponent("canvasapp", a.app_id, a.display_name, a.owner, a.created_by)
            for a in spec.canvas_apps
        ]
        found += [DeliveredComponent("bot", b.bot_id, b.name, b.owner, b.created_by) for b in spec.bots]
        found += [
            DeliveredComponent("appmodule", a.app_id, a.name, a.created_by, a.created_by)
            for a in spec.model_driven_apps
        ]
        found += [
            DeliveredComponent("connectionreference", r.record_id, r.logical_name, r.owner, r.created_by)
            for r in env.delivery.connection_references.values()
        ]
        found += [
            DeliveredComponent("solution", s.solution_id, s.unique_name, s.created_by, s.created_by)
            for s in spec.solutions
        ]
    return found
