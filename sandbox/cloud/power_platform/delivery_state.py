"""What delivery leaves in the world, apart from the components themselves (those join the scenario's
environment and workspaces, so every API that lists them shows them): per environment, the staged
solution files, the asynchronous operations and import jobs of `ImportSolutionAsync` and the
connection references; per tenant, the Power BI imports, the reports they made and who is a member of
which workspace. Plain data guarded by the world's lock; `solution_import.py` and
`powerbi_imports.py` change it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .solution_zip import SolutionPackage

# asyncoperation statecode / statuscode (Microsoft Learn, "asyncoperation EntityType")
READY, LOCKED, COMPLETED = 0, 2, 3
WAITING_FOR_RESOURCES, IN_PROGRESS, SUCCEEDED, FAILED = 0, 20, 30, 31


@dataclass(frozen=True)
class ConnectionParameter:
    """A connection reference's entry in ImportSolutionAsync's ComponentParameters."""

    logical_name: str
    connection_id: str
    connector_id: str


@dataclass(frozen=True)
class ImportParameters:
    overwrite_unmanaged: bool
    publish_workflows: bool
    connections: tuple[ConnectionParameter, ...] = ()
    environment_variables: tuple[tuple[str, str], ...] = ()  # (schema name, value)


@dataclass
class AsyncOperation:
    operation_id: str
    job_id: str
    created_by: str  # the importer's Entra object id
    created_on: str
    started: float  # time.monotonic() when accepted
    due: float  # when it completes
    package: SolutionPackage
    parameters: ImportParameters
    statecode: int = READY
    statuscode: int = WAITING_FOR_RESOURCES
    message: str | None = None
    friendly_message: str | None = None
    error_code: str | None = None  # hex, as Dataverse's errors give it
    completed_on: str | None = None


@dataclass
class ImportJobRecord:
    job_id: str
    solution_name: str
    created_by: str
    started_on: str
    progress: float = 0.0
    completed_on: str | None = None
    data: str | None = None  # the import log (XML), once the import has run


@dataclass
class ConnectionReferenceRecord:
    record_id: str
    logical_name: str
    display_name: str
    connector_id: str
    connection_id: str | None
    owner: str
    created_by: str
    managed: bool
    created_on: str


@dataclass
class EnvironmentDelivery:
    staged: dict[str, SolutionPackage] = field(default_factory=dict)  # by StageSolutionUploadId
    operations: dict[str, AsyncOperation] = field(default_factory=dict)
    jobs: dict[str, ImportJobRecord] = field(default_factory=dict)
    connection_references: dict[str, ConnectionReferenceRecord] = field(default_factory=dict)  # lower name


@dataclass(frozen=True)
class PbiReport:
    report_id: str
    name: str
    dataset_id: str
    workspace_id: str
    created_by: str  # object id
    created_on: str


@dataclass
class PbiImport:
    import_id: str
    workspace_id: str
    name: str
    created_by: str  # object id
    created_on: str
    due: float
    dataset_id: str  # the dataset it makes (or overwrites)
    report_id: str
    overwrites: bool
    failure: tuple[str, str] | None = None  # (code, message) when the file is no Power BI file
    state: str = "Publishing"
    updated_on: str = ""


@dataclass
class TenantPowerBiDelivery:
    imports: dict[str, PbiImport] = field(default_factory=dict)
    reports: list[PbiReport] = field(default_factory=list)
    members: dict[str, set[str]] = field(default_factory=dict)  # workspace id (lower) -> client ids
