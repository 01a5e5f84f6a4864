"""A Dataverse solution file: the builder tests use, and the careful reader the stand-in's import uses.

A solution file is a zip holding `[Content_Types].xml`, `solution.xml` and `customizations.xml` at its
root (Microsoft Learn, "Solution concepts"; the layout of the managed zips in Microsoft's Terraform
provider for Power Platform, internal/services/solution/tests/resource/*.zip). `solution.xml` carries
`ImportExportXml/SolutionManifest/{UniqueName, Version, Managed, RootComponents/RootComponent
(type, schemaName | id), MissingDependencies/MissingDependency/Required(solution=...)}`;
`customizations.xml` lists the components: `Workflows/Workflow` (cloud flows, Category 5),
`CanvasApps/CanvasApp`, `bots/bot`, `AppModules/AppModule` and
`connectionreferences/connectionreference` (with its `connectorid`).

The reader trusts nothing: not a zip, a name that is not a plain relative path, too many entries, an
entry or a whole that expands past the caps (a zip bomb, whatever its headers claim), XML that
declares a DTD or an entity, XML that is not well-formed, or a unique name or version Dataverse would
not take: each is a `SolutionFileError` whose message names the rule broken and never the file's
content. Error code and wording follow Dataverse's invalid-solution-file error (0x8004800d, "The
solution file is invalid. ..."); the code for each particular rule is the same one (inferred).
"""

from __future__ import annotations

import io
import re
import struct
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from xml.etree import ElementTree

MAX_FILE_BYTES = 32 * 1024 * 1024  # the sandbox's cap on a decoded file (Dataverse's is larger)
MAX_ENTRIES = 2000
MAX_ENTRY_BYTES = 8 * 1024 * 1024  # solution.xml and customizations.xml, expanded
MAX_TOTAL_BYTES = 64 * 1024 * 1024  # every entry, expanded, as the zip claims it
INVALID_FILE = "0x8004800d"
_INVALID = (
    "The solution file is invalid. The compressed file must contain the following files at its root: "
    "solution.xml, customizations.xml, and [Content_Types].xml."
)
_UNIQUE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_VERSION = re.compile(r"^\d{1,9}(\.\d{1,9}){1,3}$")
_NAMESPACE = uuid.UUID("2f6e3b7a-5c1d-4e8f-9a0b-7d4c3e2f1a60")
KINDS = {"workflow": 29, "canvasapp": 300, "bot": 10185, "appmodule": 80, "connectionreference": 10469}
_SECTIONS = {  # kind -> (customizations.xml section, element)
    "workflow": ("Workflows", "Workflow"),
    "canvasapp": ("CanvasApps", "CanvasApp"),
    "bot": ("bots", "bot"),
    "appmodule": ("AppModules", "AppModule"),
    "connectionreference": ("connectionreferences", "connectionreference"),
}


class SolutionFileError(Exception):
    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.code, self.message = INVALID_FILE, f"{_INVALID} {rule}"


@dataclass(frozen=True)
class Component:
    """One component of a solution: `kind` one of KINDS; `connector_id` for a connection reference."""

    kind: str
    schema_name: str
    component_id: str = ""  # derived from the schema name when empty
    display_name: str = ""
    connector_id: str = ""

    def resolved(self, solution: str) -> Component:
        component_id = self.component_id or str(uuid.uuid5(_NAMESPACE, f"{solution}/{self.schema_name}"))
        return Component(
            self.kind,
            self.schema_name,
            component_id.lower(),
            self.display_name or self.schema_name,
            self.connector_id,
        )


@dataclass(frozen=True)
class SolutionPackage:
    unique_name: str
    friendly_name: str
    version: str
    managed: bool
    components: tuple[Component, ...]
    missing_dependencies: tuple[str, ...]  # the unique names of solutions it needs installed first

    def of_kind(self, kind: str) -> list[Component]:
        return [component for component in self.components if component.kind == kind]


def flow(schema_name: str, display_name: str = "", component_id: str = "") -> Component:
    return Component("workflow", schema_name, component_id, display_name)


def canvas_app(schema_name: str, display_name: str = "", component_id: str = "") -> Component:
    return Component("canvasapp", schema_name, component_id, display_name)


def bot(schema_name: str, display_name: str = "", component_id: str = "") -> Component:
    return Component("bot", schema_name, component_id, display_name)


def model_driven_app(schema_name: str, display_name: str = "", component_id: str = "") -> Component:
    return Component("appmodule", schema_name, component_id, display_name)


def connection_reference(
    logical_name: str, connector_id: str = "/providers/Microsoft.PowerApps/apis/shared_office365"
) -> Component:
    return Component("connectionreference", logical_name, "", logical_name, connector_id)


# ---- building ---------------------------------------------------------------------------------------


def solution_zip(
    unique_name: str,
    version: str = "1.0.0.0",
    *,
    managed: bool = True,
    components: tuple[Component, ...] | list[Component] = (),
    missing_dependencies: tuple[str, ...] | list[str] = (),
    friendly_name: str = "",
) -> bytes:
    """A solution file as Dataverse exports it, in memory (component ids derived from the names)."""
    resolved = [component.resolved(unique_name) for component in components]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr(
            "solution.xml",
            _solution_xml(
                unique_name, friendly_name or unique_name, version, managed, resolved, missing_dependencies
            ),
        )
        archive.writestr("customizations.xml", _customizations_xml(resolved))
    return buffer.getvalue()


_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="utf-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
    'content-types"><Default Extension="xml" ContentType="application/octet-stream" /></Types>'
)


def _solution_xml(
    unique_name: str,
    friendly_name: str,
    version: str,
    managed: bool,
    components: list[Component],
    missing: tuple[str, ...] | list[str],
) -> bytes:
    root = ElementTree.Element("ImportExportXml", version="9.2.24044.193", SolutionPackageVersion="9.2")
    manifest = ElementTree.SubElement(root, "SolutionManifest")
    ElementTree.SubElement(manifest, "UniqueName").text = unique_name
    names = ElementTree.SubElement(manifest, "LocalizedNames")
    ElementTree.SubElement(names, "LocalizedName", description=friendly_name, languagecode="1033")
    ElementTree.SubElement(manifest, "Version").text = version
    ElementTree.SubElement(manifest, "Managed").text = "1" if managed else "0"
    roots = ElementTree.SubElement(manifest, "RootComponents")
    for component in components:
        attributes = {"type": str(KINDS[component.kind]), "behavior": "0"}
        if component.kind in ("workflow", "canvasapp"):
            attributes["id"] = "{" + component.component_id + "}"
        else:
            attributes["schemaName"] = component.schema_name
        ElementTree.SubElement(roots, "RootComponent", attributes)
    dependencies = ElementTree.SubElement(manifest, "MissingDependencies")
    for index, name in enumerate(missing):
        dependency = ElementTree.SubElement(dependencies, "MissingDependency")
        ElementTree.SubElement(
            dependency, "Required", type="1", schemaName=f"dep_table{index}", solution=name
        )
        ElementTree.SubElement(dependency, "Dependent", type="29", schemaName=f"{unique_name}_component")
    return bytes(ElementTree.tostring(root, encoding="utf-8", xml_declaration=True))


def _customizations_xml(components: list[Component]) -> bytes:
    root = ElementTree.Element("ImportExportXml")
    sections = {kind: ElementTree.SubElement(root, section) for kind, (section, _) in _SECTIONS.items()}
    for component in components:
        element = ElementTree.SubElement(sections[component.kind], _SECTIONS[component.kind][1])
        if component.kind == "connectionreference":
            element.set("connectionreferencelogicalname", component.schema_name)
            ElementTree.SubElement(element, "connectionreferencedisplayname").text = component.display_name
            ElementTree.SubElement(element, "connectorid").text = component.connector_id
            continue
        element.set("Name", component.display_name)
        element.set("SchemaName", component.schema_name)
        id_key = {"workflow": "WorkflowId", "canvasapp": "CanvasAppId"}.get(component.kind, "Id")
        ElementTree.SubElement(element, id_key).text = "{" + component.component_id + "}"
        if component.kind == "workflow":
            ElementTree.SubElement(element, "Category").text = "5"
    return bytes(ElementTree.tostring(root, encoding="utf-8", xml_declaration=True))


# ---- reading ----------------------------------------------------------------------------------------


def read_solution(data: bytes) -> SolutionPackage:
    """The package a solution file holds; `SolutionFileError` for anything hostile or malformed."""
    if len(data) > MAX_FILE_BYTES:
        raise SolutionFileError(f"The file is larger than the {MAX_FILE_BYTES} bytes allowed.")
    if not data.startswith(b"PK"):
        raise SolutionFileError("The file is not a compressed (zip) file.")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = _checked_entries(archive)
            solution = _parse_xml(_read(archive, entries, "solution.xml"), "solution.xml")
            customizations = _parse_xml(_read(archive, entries, "customizations.xml"), "customizations.xml")
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        NotImplementedError,
        RuntimeError,
        zlib.error,
        ValueError,  # a corrupt header (negative offsets, bad names) surfaces as any of these
        OSError,
        OverflowError,
        struct.error,
    ) as error:
        raise SolutionFileError("The file is not a readable zip file.") from error
    return _package(solution, customizations)


def _checked_entries(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise SolutionFileError(f"The file holds more than {MAX_ENTRIES} entries.")
    if sum(info.file_size for info in infos) > MAX_TOTAL_BYTES:
        raise SolutionFileError(f"The file expands beyond the {MAX_TOTAL_BYTES} bytes allowed.")
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        parts = name.split("/")
        if (
            name.startswith(("/", "\\"))
            or "\\" in name
            or ":" in name
            or any(part in ("..", ".") for part in parts)
            or "\x00" in name
        ):
            raise SolutionFileError("An entry's name is not a plain relative path.")
        entries[name.lower()] = info
    for required in ("[content_types].xml", "solution.xml", "customizations.xml"):
        if required not in entries:
            raise SolutionFileError("A required file is missing at the root.")
    return entries


def _read(archive: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo], name: str) -> bytes:
    """The entry's bytes, read in chunks so that a size the headers lie about is caught too."""
    info = entries[name]
    if info.file_size > MAX_ENTRY_BYTES:
        raise SolutionFileError(f"{name} expands beyond the {MAX_ENTRY_BYTES} bytes allowed.")
    chunks, total = [], 0
    with archive.open(info) as stream:
        while chunk := stream.read(65536):
            total += len(chunk)
            if total > MAX_ENTRY_BYTES:
                raise SolutionFileError(f"{name} expands beyond the {MAX_ENTRY_BYTES} bytes allowed.")
            chunks.append(chunk)
    return b"".join(chunks)


def _parse_xml(raw: bytes, name: str) -> ElementTree.Element:
    try:
        raw.decode("utf-8")  # another encoding could hide a declaration from the check below
    except UnicodeDecodeError as error:
        raise SolutionFileError(f"{name} is not UTF-8 encoded.") from error
    lowered = raw.lower()
    if b"<!doctype" in lowered or b"<!entity" in lowered:
        raise SolutionFileError(f"{name} declares a DTD or an entity, which is not allowed.")
    try:
        return ElementTree.fromstring(raw)
    except ElementTree.ParseError as error:
        raise SolutionFileError(f"{name} is not well-formed XML.") from error


def _text(element: ElementTree.Element | None, path: str) -> str:
    found = element.find(path) if element is not None else None
    return (found.text or "").strip() if found is not None else ""


def _package(solution: ElementTree.Element, customizations: ElementTree.Element) -> SolutionPackage:
    manifest = solution.find("SolutionManifest")
    if solution.tag != "ImportExportXml" or manifest is None:
        raise SolutionFileError("solution.xml has no ImportExportXml/SolutionManifest.")
    unique_name, version = _text(manifest, "UniqueName"), _text(manifest, "Version")
    if not _UNIQUE_NAME.match(unique_name):
        raise SolutionFileError("solution.xml's UniqueName is not a valid solution unique name.")
    if not _VERSION.match(version):
        raise SolutionFileError(
            "solution.xml's Version is not a version number (major.minor[.build[.revision]])."
        )
    missing = []
    for required in manifest.iterfind("MissingDependencies/MissingDependency/Required"):
        name = (required.get("solution") or "").split(" (")[0]
        if not _UNIQUE_NAME.match(name):
            raise SolutionFileError("A MissingDependency names no valid solution.")
        missing.append(name)
    label = manifest.find("LocalizedNames/LocalizedName")
    friendly = _safe_label(label.get("description", "") if label is not None else "") or unique_name
    return SolutionPackage(
        unique_name,
        friendly,
        version,
        _text(manifest, "Managed") == "1",
        tuple(_components(customizations)),
        tuple(dict.fromkeys(missing)),
    )


def _components(customizations: ElementTree.Element) -> list[Component]:
    found = []
    for kind, (section, element_name) in _SECTIONS.items():
        for element in customizations.iterfind(f"{section}/{element_name}"):
            if kind == "connectionreference":
                schema = element.get("connectionreferencelogicalname") or ""
                display = _text(element, "connectionreferencedisplayname")
                connector = _safe_label(_text(element, "connectorid"))
                component_id = ""
            else:
                schema, display = element.get("SchemaName") or "", element.get("Name") or ""
                connector = ""
                id_key = {"workflow": "WorkflowId", "canvasapp": "CanvasAppId"}.get(kind, "Id")
                component_id = _text(element, id_key).strip("{}")
            if not _UNIQUE_NAME.match(schema) or (component_id and not _is_guid(component_id)):
                raise SolutionFileError("customizations.xml names a component without a valid name or id.")
            found.append(Component(kind, schema, component_id, _safe_label(display), connector))
    return found


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _safe_label(value: str) -> str:
    """A display name as the stand-in keeps it: printable, at most 100 characters."""
    return "".join(ch for ch in value if ch.isprintable())[:100]
