"""Type-checks every resource body in infra/**/*.bicep against tests/infra_types/schema.json.

What the Bicep compiler would refuse (or warn about) from the resource types alone, without the
compiler: an unknown type@apiVersion, an unknown (misspelt) or read-only property, a missing required
one, a literal outside a closed enum, a literal of the wrong kind (a string where a bool belongs).
Nested objects and arrays are followed; the keys of open dictionaries (tags, app settings) are not.
Values that are expressions (parameters, function calls, references) are skipped: only the
compiler and a deployment know them. Both branches of a conditional are checked.

The schema is a reduced, hand-written transcription (see its "about"); a property the template does
not yet use is unknown to it, so adding one means transcribing it first, from the source named on
its resource type.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from test_infra import parse_bicep, properties, string_value, text
from tree_sitter import Node

SCHEMA_PATH = Path(__file__).resolve().parent / "infra_types" / "schema.json"

# Bicep's own keys of a resource body, not properties of the resource type.
LANGUAGE_KEYS = {"parent", "scope", "dependsOn"}
# All an `existing` resource may set.
EXISTING_KEYS = {"name", "parent", "scope"}

Schema = dict[str, Any]


@cache
def load_schema(path: Path = SCHEMA_PATH) -> Schema:
    resources: Schema = json.loads(path.read_text())["resources"]
    return resources


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    resource: str  # type@apiVersion
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.resource}: {self.message}"


@dataclass(frozen=True)
class Resource:
    """One `resource` declaration, with its type made absolute (nested ones inherit the parent's)."""

    file: str
    line: int
    symbol: str
    type: str  # full type@apiVersion
    existing: bool
    body: Node | None


def _line(node: Node) -> int:
    return node.start_point[0] + 1


def _body(declaration: Node) -> Node | None:
    """The object of `= {…}`, `= if (…) {…}`, or `= [for … : {…}]`; None if there is none."""
    for child in declaration.named_children[2:]:
        if child.type == "object":
            return child
        if child.type in {"if_statement", "for_statement"}:
            return next((node for node in _walk(child) if node.type == "object"), None)
    return None


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _absolute(declared: str, parent: str | None) -> str:
    """'config' under 'Microsoft.Web/sites@2024-04-01' -> 'Microsoft.Web/sites/config@2024-04-01'."""
    if parent is None:
        return declared
    parent_type, _, parent_version = parent.partition("@")
    child_type, has_version, child_version = declared.partition("@")
    return f"{parent_type}/{child_type}@{child_version if has_version else parent_version}"


def resources_in(source: bytes, file: str) -> list[Resource]:
    found: list[Resource] = []

    def visit(node: Node, parent: str | None) -> None:
        for child in node.named_children:
            if child.type == "resource_declaration":
                named = child.named_children
                full = _absolute(string_value(named[1]), parent)
                existing = any(token.type == "existing" for token in child.children)
                body = _body(child)
                found.append(Resource(file, _line(child), text(named[0]), full, existing, body))
                if body is not None:
                    visit(body, full)
            elif child.type == "object_property":
                visit(child, parent)  # a nested resource sits in an object_property of its parent

    visit(parse_bicep(source), None)
    return found


def check_resource(resource: Resource, schema: Schema | None = None) -> list[Finding]:
    schema = load_schema() if schema is None else schema
    findings: list[Finding] = []

    def report(node: Node | None, message: str) -> None:
        line = resource.line if node is None else _line(node)
        findings.append(Finding(resource.file, line, resource.type, message))

    entry = schema.get(resource.type)
    if entry is None:
        kind = resource.type.partition("@")[0]
        versions = sorted(name.partition("@")[2] for name in schema if name.partition("@")[0] == kind)
        known = f"; the schema knows {kind} at {', '.join(versions)}" if versions else ""
        report(None, f"unknown resource type or API version (not in {SCHEMA_PATH.name}){known}")
        return findings
    if resource.body is None:
        report(None, "resource body is not an object literal; it cannot be checked")
        return findings
    body = properties(resource.body)
    if resource.existing:
        for key, value in body.items():
            if key not in EXISTING_KEYS:
                report(value, f"{key}: an existing resource may set only {', '.join(sorted(EXISTING_KEYS))}")
        return findings

    object_schema: Schema
    if "variants" in entry:
        discriminator = entry["discriminator"]
        named = body.get(discriminator)
        literal = _string_literal(named) if named is not None else None
        if literal is None or literal not in entry["variants"]:
            allowed = ", ".join(repr(name) for name in entry["variants"])
            report(named, f"{discriminator} must be a literal, one of {allowed}")
            return findings
        object_schema = entry["variants"][literal]
    else:
        object_schema = entry["body"]
    _check_object(resource.body, object_schema, "", report, top=True)
    return findings


Report = Callable[[Node | None, str], None]


def _check_object(obj: Node, schema: Schema, path: str, report: Report, top: bool = False) -> None:
    known: dict[str, Schema] = schema.get("properties", {})
    read_only: list[str] = schema.get("readOnly", [])
    present = properties(obj)
    for key, value in present.items():
        where = f"{path}.{key}" if path else key
        if top and key in LANGUAGE_KEYS:
            continue
        if key in known:
            _check_value(value, known[key], where, report)
        elif key in read_only:
            report(value, f"{where} is read-only")
        elif not schema.get("additional", False):
            close = difflib.get_close_matches(key, [*known, *read_only], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            report(value, f"{where} is not a property of this type{hint} (or not yet in {SCHEMA_PATH.name})")
    for key, property_schema in known.items():
        if property_schema.get("required") and key not in present:
            where = f"{path}.{key}" if path else key
            report(obj, f"{where} is required")


_LITERAL_KINDS = {
    "string": "string",
    "number": "int",
    "boolean": "bool",
    "object": "object",
    "array": "array",
}


def _check_value(node: Node, schema: Schema, path: str, report: Report) -> None:
    kind = node.type
    if kind == "parenthesized_expression":
        _check_value(node.named_children[0], schema, path, report)
        return
    if kind == "ternary_expression":
        for branch in ("consequence", "alternative"):
            child = node.child_by_field_name(branch)
            if child is not None:
                _check_value(child, schema, path, report)
        return
    if kind == "null":
        if schema.get("required"):
            report(node, f"{path} is required and cannot be null")
        return
    literal_kind = _LITERAL_KINDS.get(kind)
    if kind == "unary_expression":
        argument = node.child_by_field_name("argument")
        literal_kind = {"number": "int", "boolean": "bool"}.get(argument.type if argument else "")
    if literal_kind is None:
        return  # an expression: only the compiler and the deployment know its value
    expected = schema.get("type")
    if expected is not None and expected != literal_kind:
        report(node, f"{path} must be {expected}, not a {literal_kind} literal")
        return
    if schema.get("dictionary"):
        return  # an open map (tags, app settings): its keys and values are not checked
    if literal_kind == "object" and "properties" in schema:
        _check_object(node, schema, path, report)
    elif literal_kind == "array" and "items" in schema:
        for element in node.named_children:
            if element.type != "comment":
                _check_value(element, schema["items"], f"{path}[]", report)
    elif literal_kind == "string" and "enum" in schema:
        value = _string_literal(node)
        if value is not None and value not in schema["enum"]:
            allowed = ", ".join(repr(option) for option in schema["enum"])
            report(node, f"{path} is {value!r}, not one of {allowed}")


def _string_literal(node: Node) -> str | None:
    """A string literal's value; None for an interpolated string or any other expression."""
    if node.type != "string" or any(child.type == "interpolation" for child in node.named_children):
        return None
    return string_value(node)


def check_tree(infra: Path, schema: Schema | None = None) -> tuple[list[Resource], list[Finding]]:
    """Every resource in infra/**/*.bicep and what is wrong with them (files named from infra's parent)."""
    found: list[Resource] = []
    findings: list[Finding] = []
    for path in sorted(infra.rglob("*.bicep")):
        name = path.relative_to(infra.parent).as_posix()
        for resource in resources_in(path.read_bytes(), name):
            found.append(resource)
            findings.extend(check_resource(resource, schema))
    return found, findings
