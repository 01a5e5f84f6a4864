"""The infrastructure as written: every Bicep file parses, role assignments are where and how they
should be, host.json matches what the code assumes, and azure.yaml wires the service and hook.

The Bicep compiler cannot be installed here (it downloads a binary), so the files are parsed with
the tree-sitter-bicep grammar from PyPI. The helpers below (parsing, reading declarations and
evaluating literal expressions) are shared with tests/test_config_contract.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import tree_sitter_bicep
import yaml
from tree_sitter import Language, Node, Parser

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"

# The published grammar (1.1.0) predates Bicep's `extension NAME` statement (the renamed
# `provider`/`import` of extensions) and reads it as an error. That one statement, alone on its
# line, is rewritten to the `provider 'NAME'` form the grammar knows; lines and columns of
# everything else are unchanged, so reported positions stay right.
_EXTENSION = re.compile(rb"(?m)^extension (\w+)[ \t]*$")


class Unknown:
    """A value only known at deployment time (a parameter without default, an output, a function)."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = Unknown()


@cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_bicep.language()))


def parse_bicep(source: bytes) -> Node:
    shimmed = _EXTENSION.sub(lambda m: b"provider '" + m.group(1) + b"'", source)
    return _parser().parse(shimmed).root_node


def syntax_errors(source: bytes, where: str) -> list[str]:
    """One line per ERROR or MISSING node: file:line:column, what, and the source line."""
    lines = source.decode("utf-8", errors="replace").splitlines()
    found = []
    for node in walk(parse_bicep(source)):
        if node.is_error or node.is_missing:
            row, column = node.start_point
            what = f"missing {node.type}" if node.is_missing else "syntax error"
            text = lines[row].strip() if row < len(lines) else ""
            found.append(f"{where}:{row + 1}:{column + 1}: {what}: {text}")
    return found


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def text(node: Node) -> str:
    return (node.text or b"").decode()


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@dataclass(frozen=True)
class Declaration:
    kind: str  # "resource" or "module"
    symbol: str
    type: str  # resource type or module path
    body: Node | None  # the object, also for `= if (...) { }`
    file: BicepFile


class BicepFile:
    """One .bicep file: its declarations, and literal evaluation of expressions in it."""

    def __init__(self, path: Path, bindings: dict[str, Any] | None = None) -> None:
        self.path = path
        self.root = parse_bicep(path.read_bytes())
        self.bindings = bindings or {}
        self.params: dict[str, Node | None] = {}
        self.vars: dict[str, Node] = {}
        for child in self.root.named_children:
            if child.type == "parameter_declaration":
                name = child.named_children[0]
                default = _after_equals(child)
                self.params[text(name)] = default
            elif child.type == "variable_declaration":
                name = child.named_children[0]
                value = _after_equals(child)
                assert value is not None
                self.vars[text(name)] = value

    @property
    def name(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    def with_bindings(self, bindings: dict[str, Any]) -> BicepFile:
        return BicepFile(self.path, bindings)

    def comments(self) -> list[str]:
        return [text(node) for node in walk(self.root) if node.type == "comment"]

    def declarations(self) -> list[Declaration]:
        found = []
        for node in walk(self.root):
            if node.type not in {"resource_declaration", "module_declaration"}:
                continue
            named = node.named_children
            body = next((child for child in named[2:] if child.type in {"object", "if_statement"}), None)
            if body is not None and body.type == "if_statement":
                body = next((child for child in body.named_children if child.type == "object"), None)
            kind = "resource" if node.type == "resource_declaration" else "module"
            found.append(Declaration(kind, text(named[0]), string_value(named[1]), body, self))
        return found

    def resources(self, type_prefix: str) -> list[Declaration]:
        """Resources whose type starts with type_prefix; nested ones match on their short type."""
        return [d for d in self.declarations() if d.kind == "resource" and d.type.startswith(type_prefix)]

    def module(self, path: str) -> Declaration:
        matches = [d for d in self.declarations() if d.kind == "module" and d.type == path]
        assert len(matches) == 1, f"{self.name}: expected one module {path}, found {len(matches)}"
        return matches[0]

    def evaluate(self, node: Node | None) -> Any:
        """The literal value of an expression, or UNKNOWN when only a deployment can tell."""
        if node is None:
            return UNKNOWN
        kind = node.type
        if kind == "string":
            return self._string(node)
        if kind == "number":
            return int(text(node))
        if kind == "boolean":
            return text(node) == "true"
        if kind == "null":
            return None
        if kind == "parenthesized_expression":
            return self.evaluate(node.named_children[0])
        if kind == "object":
            return {key: self.evaluate(value) for key, value in properties(node).items()}
        if kind == "array":
            return [self.evaluate(child) for child in node.named_children if child.type != "comment"]
        if kind == "identifier":
            name = text(node)
            if name in self.bindings:
                return self.bindings[name]
            if name in self.vars:
                return self.evaluate(self.vars[name])
            if name in self.params:
                return self.evaluate(self.params[name])
            return UNKNOWN
        if kind == "member_expression":
            target = self.evaluate(node.child_by_field_name("object"))
            member = node.child_by_field_name("property")
            if isinstance(target, dict) and member is not None:
                return target.get(text(member), UNKNOWN)
            return UNKNOWN
        return UNKNOWN

    def _string(self, node: Node) -> Any:
        parts: list[str] = []
        for child in node.named_children:
            if child.type == "string_content":
                parts.append(text(child))
            elif child.type == "escape_sequence":
                parts.append(
                    {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\$": "$"}.get(text(child), text(child))
                )
            elif child.type == "interpolation":
                value = self.evaluate(child.named_children[0])
                if not isinstance(value, str | int | bool):
                    return UNKNOWN
                parts.append(str(value).lower() if isinstance(value, bool) else str(value))
        return "".join(parts)


def _after_equals(declaration: Node) -> Node | None:
    seen_equals = False
    for child in declaration.children:
        if seen_equals and child.is_named and child.type != "comment":
            return child
        seen_equals = seen_equals or child.type == "="
    return None


def string_value(node: Node) -> str:
    """The content of a string literal without interpolation."""
    assert node.type == "string", f"expected a string literal, found {node.type}: {text(node)}"
    return "".join(text(child) for child in node.named_children if child.type == "string_content")


def properties(obj: Node | None) -> dict[str, Node]:
    """An object literal's properties: key -> value node (nested resources are skipped)."""
    found: dict[str, Node] = {}
    if obj is None:
        return found
    for prop in obj.named_children:
        if prop.type != "object_property":
            continue
        named = [child for child in prop.named_children if child.type != "comment"]
        if len(named) < 2:
            continue
        key = string_value(named[0]) if named[0].type == "string" else text(named[0])
        found[key] = named[1]
    return found


@cache
def main_bicep() -> BicepFile:
    return BicepFile(INFRA / "main.bicep")


def module_file(path: str) -> BicepFile:
    """A module of main.bicep, with its parameters bound to what main.bicep passes it."""
    main = main_bicep()
    declaration = main.module(path)
    passed = properties(properties(declaration.body).get("params"))
    bindings = {name: main.evaluate(value) for name, value in passed.items()}
    return BicepFile(INFRA / path, bindings)


# --- syntax -----------------------------------------------------------------------------------


def test_there_is_infrastructure_to_check() -> None:
    names = {path.relative_to(INFRA).as_posix() for path in bicep_files()}
    assert {
        "main.bicep",
        "app/function.bicep",
        "app/storage.bicep",
        "app/servicebus.bicep",
        "app/keyvault.bicep",
        "app/monitoring.bicep",
        "app/identity.bicep",
        "app/rbac.bicep",
        "app/partner-app.bicep",
    } <= names


@pytest.mark.parametrize("path", bicep_files(), ids=lambda path: path.relative_to(INFRA).as_posix())
def test_bicep_file_parses_without_syntax_errors(path: Path) -> None:
    errors = syntax_errors(path.read_bytes(), path.relative_to(ROOT).as_posix())
    assert not errors, "tree-sitter-bicep found:\n" + "\n".join(errors)


@pytest.mark.parametrize(
    "broken",
    [
        b"param name string\nresource x 'A/b@1' = {\n  name: name\n",  # unclosed object
        b"var x = [\n  1\n  2\n",  # unclosed array
        b"output o string = 'a' 'b'\n",  # two values
        b"module m 'x.bicep' = {\n  name: 'm'\n  params: {\n    a: 'b\n  }\n}\n",  # unclosed string
    ],
)
def test_the_syntax_check_catches_broken_bicep(broken: bytes) -> None:
    assert syntax_errors(broken, "broken.bicep")


def test_only_the_extension_statement_is_rewritten_for_the_grammar() -> None:
    source = b"extension microsoftGraphV1\nparam extension string\n"
    assert not syntax_errors(source, "ok.bicep")
    assert syntax_errors(b"extension microsoftGraphV1 with {\n", "bad.bicep")


def test_graph_extension_is_declared_where_graph_resources_are() -> None:
    for path in bicep_files():
        source = path.read_text()
        if "Microsoft.Graph/" in source:
            assert re.search(r"(?m)^extension microsoftGraphV1$", source), path
    config = json.loads((INFRA / "bicepconfig.json").read_text())
    assert "microsoftGraphV1" in config["extensions"]


# --- role assignments -------------------------------------------------------------------------

# Built-in role definition IDs -> names.
ROLE = {
    "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0": "Azure Service Bus Data Receiver",
    "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39": "Azure Service Bus Data Sender",
    "090c5cfd-751d-490a-894a-3ce6f1109419": "Azure Service Bus Data Owner",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
# What the Function App's identity needs: the triggers and retries (Service Bus: Data Owner, the
# least built-in role with which the scale controller can read queue lengths; it includes sending and
# receiving), the host and the ledger (Storage), per-customer secrets (Key Vault, read only),
# telemetry (Application Insights).
FUNCTION_ROLES = {
    "Azure Service Bus Data Owner",
    "Storage Blob Data Owner",
    "Storage Table Data Contributor",
    "Key Vault Secrets User",
    "Monitoring Metrics Publisher",
}
# The most the deploying user may get: palctl (send, dead letters), reading the ledger, uploading files
# to deliver (the deliveries container only), storing secrets.
USER_ROLES = {
    "Azure Service Bus Data Receiver",
    "Azure Service Bus Data Sender",
    "Storage Table Data Contributor",
    "Storage Blob Data Contributor",
    "Key Vault Secrets Officer",
}


def role_assignments() -> list[Declaration]:
    return [
        declaration
        for path in bicep_files()
        for declaration in BicepFile(path).resources("Microsoft.Authorization/roleAssignments@")
    ]


def test_every_role_assignment_is_in_rbac_bicep() -> None:
    assignments = role_assignments()
    assert assignments
    elsewhere = {d.file.name for d in assignments} - {"infra/app/rbac.bicep"}
    assert not elsewhere, f"role assignments outside infra/app/rbac.bicep: {sorted(elsewhere)}"


def test_every_role_assignment_is_named_guid_of_scope_principal_and_role() -> None:
    for assignment in role_assignments():
        where = f"{assignment.file.name}: {assignment.symbol}"
        body = properties(assignment.body)
        props = properties(body["properties"])
        name = body["name"]
        assert name.type == "call_expression", f"{where}: name must be guid(scope, principal, role)"
        function = name.child_by_field_name("function")
        arguments = name.child_by_field_name("arguments")
        assert function is not None and text(function) == "guid", where
        assert arguments is not None
        scope_arg, principal_arg, role_arg = (
            arguments.named_children if len(arguments.named_children) == 3 else (None, None, None)
        )
        assert scope_arg is not None and principal_arg is not None and role_arg is not None, (
            f"{where}: guid() needs exactly (scope, principal, role)"
        )
        assert text(scope_arg) == f"{text(body['scope'])}.id", (
            f"{where}: first guid argument is not the scope"
        )
        assert text(principal_arg) == text(props["principalId"]), f"{where}: second is not the principal"
        assert text(role_arg) in text(props["roleDefinitionId"]), f"{where}: third is not the role"


def test_the_function_identity_gets_exactly_the_roles_it_needs() -> None:
    rbac = module_file("app/rbac.bicep")
    granted: dict[str, set[str]] = {}
    for assignment in rbac.resources("Microsoft.Authorization/roleAssignments@"):
        props = properties(properties(assignment.body)["properties"])
        principal = text(props["principalId"])
        role_call = props["roleDefinitionId"]
        arguments = role_call.child_by_field_name("arguments")
        assert arguments is not None
        role_id = rbac.evaluate(arguments.named_children[-1])
        granted.setdefault(principal, set()).add(ROLE.get(role_id, role_id))
    assert granted.pop("identityPrincipalId") == FUNCTION_ROLES
    # The deploying user's copies: what palctl and a local run need, nothing owner-level.
    assert set(granted) <= {"userPrincipalId"}
    assert granted.get("userPrincipalId", set()) <= USER_ROLES


def test_user_role_assignments_are_optional() -> None:
    rbac = BicepFile(INFRA / "app" / "rbac.bicep")
    for assignment in rbac.resources("Microsoft.Authorization/roleAssignments@"):
        props = properties(properties(assignment.body)["properties"])
        if text(props["principalId"]) == "userPrincipalId":
            declaration = assignment.body.parent if assignment.body is not None else None
            assert declaration is not None and declaration.type == "if_statement", assignment.symbol


def rbac_assignments() -> dict[tuple[str, str], Declaration]:
    """(principal parameter, role name) -> the assignment, in rbac.bicep."""
    rbac = BicepFile(INFRA / "app" / "rbac.bicep")
    found = {}
    for assignment in rbac.resources("Microsoft.Authorization/roleAssignments@"):
        props = properties(properties(assignment.body)["properties"])
        arguments = props["roleDefinitionId"].child_by_field_name("arguments")
        assert arguments is not None
        role_id = rbac.evaluate(arguments.named_children[-1])
        found[(text(props["principalId"]), ROLE.get(role_id, role_id))] = assignment
    return found


def scope_of(assignment: Declaration) -> str:
    return text(properties(assignment.body)["scope"])


def test_service_bus_data_owner_lets_the_scale_controller_read_queue_lengths_on_the_namespace() -> None:
    # With Data Receiver and Sender alone the scale controller cannot read a queue's runtime
    # properties (message count) and scales on less information.
    assignments = rbac_assignments()
    owner = assignments[("identityPrincipalId", "Azure Service Bus Data Owner")]
    assert scope_of(owner) == "serviceBus"
    rbac = BicepFile(INFRA / "app" / "rbac.bicep")
    (namespace,) = rbac.resources("Microsoft.ServiceBus/namespaces@")
    assert namespace.body is not None and namespace.body.parent is not None
    assert namespace.symbol == "serviceBus" and "existing" in text(namespace.body.parent)
    assert any("scale controller" in comment for comment in rbac.comments())


def test_table_roles_are_scoped_to_the_table_service_not_the_account() -> None:
    assignments = rbac_assignments()
    for principal in ("identityPrincipalId", "userPrincipalId"):
        assert scope_of(assignments[(principal, "Storage Table Data Contributor")]) == "tableService", (
            principal
        )
    rbac = BicepFile(INFRA / "app" / "rbac.bicep")
    (table_service,) = rbac.resources("Microsoft.Storage/storageAccounts/tableServices@")
    assert table_service.symbol == "tableService"
    assert rbac.evaluate(properties(table_service.body)["name"]) == "default"


def test_the_deploying_users_data_roles_are_behind_a_parameter_and_off_for_pipelines() -> None:
    rbac = BicepFile(INFRA / "app" / "rbac.bicep")
    assert "userDataRoles" in rbac.params
    assert "userDataRoles" in text(rbac.vars["withUser"])
    main = main_bicep()
    passed = properties(properties(main.module("app/rbac.bicep").body)["params"])
    assert text(passed["userDataRoles"]) == "deployerDataRoles && principalType == 'User'"
    assert main.evaluate(main.params["deployerDataRoles"]) is True
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["deployerDataRoles"]["value"] == "${DEPLOYER_DATA_ROLES=true}"


def test_key_vault_purge_protection_is_on_unless_turned_off() -> None:
    main = main_bicep()
    assert main.evaluate(main.params["keyVaultPurgeProtection"]) is True
    vault_file = BicepFile(INFRA / "app" / "keyvault.bicep")
    assert vault_file.evaluate(vault_file.params["purgeProtection"]) is True
    passed = main.evaluate(properties(main.module("app/keyvault.bicep").body)["params"])
    assert passed["purgeProtection"] is True
    (vault,) = module_file("app/keyvault.bicep").resources("Microsoft.KeyVault/vaults@")
    # The API refuses `false` once it was on, so "off" is sent as absent.
    assert text(properties(properties(vault.body)["properties"])["enablePurgeProtection"]) == (
        "purgeProtection ? true : null"
    )
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["keyVaultPurgeProtection"]["value"] == "${KEY_VAULT_PURGE_PROTECTION=true}"


# --- resources --------------------------------------------------------------------------------


def test_storage_refuses_shared_keys_and_public_blobs() -> None:
    storage = module_file("app/storage.bicep")
    (account,) = storage.resources("Microsoft.Storage/storageAccounts@")
    props = storage.evaluate(properties(account.body)["properties"])
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"


def test_service_bus_is_standard_with_local_auth_disabled() -> None:
    service_bus = module_file("app/servicebus.bicep")
    (namespace,) = service_bus.resources("Microsoft.ServiceBus/namespaces@")
    body = service_bus.evaluate(namespace.body)
    assert body["sku"]["name"] == "Standard"  # duplicate detection and scheduled messages
    assert body["properties"]["disableLocalAuth"] is True


def test_key_vault_uses_rbac() -> None:
    vault_file = module_file("app/keyvault.bicep")
    (vault,) = vault_file.resources("Microsoft.KeyVault/vaults@")
    props = vault_file.evaluate(properties(vault.body)["properties"])
    assert props["enableRbacAuthorization"] is True
    assert "accessPolicies" not in props


def test_monitoring_has_local_auth_disabled() -> None:
    monitoring = module_file("app/monitoring.bicep")
    (workspace,) = monitoring.resources("Microsoft.OperationalInsights/workspaces@")
    (insights,) = monitoring.resources("Microsoft.Insights/components@")
    assert (
        monitoring.evaluate(properties(workspace.body)["properties"])["features"]["disableLocalAuth"] is True
    )
    assert monitoring.evaluate(properties(insights.body)["properties"])["DisableLocalAuth"] is True


def test_function_app_is_flex_consumption_python_311_with_the_user_assigned_identity() -> None:
    function = module_file("app/function.bicep")
    (plan,) = function.resources("Microsoft.Web/serverfarms@")
    assert function.evaluate(properties(plan.body)["sku"]) == {"name": "FC1", "tier": "FlexConsumption"}
    (site,) = function.resources("Microsoft.Web/sites@")
    body = properties(site.body)
    assert function.evaluate(body["identity"])["type"] == "UserAssigned"
    config = function.evaluate(properties(body["properties"])["functionAppConfig"])
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    authentication = config["deployment"]["storage"]["authentication"]
    assert authentication["type"] == "UserAssignedIdentity"
    assert "alwaysReady" not in config["scaleAndConcurrency"]  # nothing runs, nothing costs, at rest
    assert "'azd-service-name': 'function'" in text(body["tags"])  # azd finds the app by this tag


def test_partner_app_trusts_the_function_identity_with_a_federated_credential() -> None:
    partner = module_file("app/partner-app.bicep")
    (app,) = partner.resources("Microsoft.Graph/applications@")
    app_body = properties(app.body)
    assert partner.evaluate(app_body["signInAudience"]) == "AzureADMultipleOrgs"
    assert "passwordCredentials" not in app_body and "keyCredentials" not in app_body
    (credential,) = partner.resources("federatedIdentityCredentials@")
    fic = properties(credential.body)
    assert text(fic["subject"]) == "identityPrincipalId"
    # The cloud's own audience, chosen in main.bicep (test_the_exchange_audience_is_the_clouds_own).
    assert [text(node) for node in fic["audiences"].named_children] == ["federatedTokenAudience"]
    assert text(fic["issuer"]) == "issuer"
    assert (
        text(partner.vars["issuer"])
        == "'${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'"
    )
    main = main_bicep()
    passed = properties(properties(main.module("app/partner-app.bicep").body)["params"])
    assert text(passed["federatedTokenAudience"]) == "exchangeAudience"


def test_partner_app_defines_the_dashboards_roles_redirect_and_v2_tokens() -> None:
    # shared/dashboard/auth.py: the roles claim carries these values; the page (a single-page app)
    # signs in with PKCE at https://<function app>/api/dashboard; the app accepts v2 tokens only.
    partner = module_file("app/partner-app.bicep")
    (app,) = partner.resources("Microsoft.Graph/applications@")
    body = properties(app.body)
    roles = [properties(role) for role in body["appRoles"].named_children if role.type == "object"]
    values = [partner.evaluate(role["value"]) for role in roles]
    assert values == ["PalAutopilot.Reader", "PalAutopilot.Operator"]
    for role in roles:
        value = partner.evaluate(role["value"])
        assert partner.evaluate(role["allowedMemberTypes"]) == ["User"], value
        assert partner.evaluate(role["isEnabled"]) is True, value
        assert len(partner.evaluate(role["description"])) > 20, value
        # A fixed ID: a role replaced on the next deployment would lose its assignments.
        assert text(role["id"]) == f"guid(uniqueName, '{value}')", value
    assert [text(node) for node in properties(body["spa"])["redirectUris"].named_children] == [
        "dashboardRedirectUri"
    ]
    assert partner.evaluate(properties(body["api"])["requestedAccessTokenVersion"]) == 2
    assert [text(node) for node in body["identifierUris"].named_children] == ["identifierUri"]
    assert text(partner.vars["identifierUri"]) == "'api://${tenant().tenantId}/${uniqueName}'"
    assert text(outputs(partner)["identifierUri"]) == "identifierUri"

    main = main_bicep()
    passed = properties(properties(main.module("app/partner-app.bicep").body)["params"])
    assert text(passed["dashboardRedirectUri"]) == "'${functionAppUrl}/api/dashboard'"
    assert text(passed["redirectUri"]) == "redirectUri"
    # The address is known before the site: the partner app must not wait for the Function App,
    # whose settings wait for the partner app's client ID.
    assert "functionApp." not in text(main.vars["redirectUri"])
    assert text(main.vars["functionAppUrl"]) == (
        "'https://${functionAppName}.${functionHostSuffixes[environment().name]}'"
    )
    assert main.evaluate(main.vars["functionHostSuffixes"]) == {
        "AzureCloud": "azurewebsites.net",
        "AzureUSGovernment": "azurewebsites.us",
        "AzureChinaCloud": "chinacloudsites.cn",
    }


def test_the_function_app_signs_operators_in_to_the_partner_app() -> None:
    main = main_bicep()
    passed = properties(properties(main.module("app/function.bicep").body)["params"])
    # An existing app (partnerAppClientId) is used as it is: its Application ID URI is the code's
    # default api://<client ID>, which docs/deploy.md has one add by hand.
    assert text(passed["dashboardClientId"]) == (
        "empty(partnerAppClientId) ? partnerApp.outputs.clientId : partnerAppClientId"
    )
    assert text(passed["dashboardAudience"]) == (
        "empty(partnerAppClientId) ? partnerApp.outputs.identifierUri : ''"
    )
    function = module_file("app/function.bicep")
    (settings,) = [
        declaration
        for declaration in function.resources("config")
        if function.evaluate(properties(declaration.body)["name"]) == "appsettings"
    ]
    values = {name: text(node) for name, node in properties(properties(settings.body)["properties"]).items()}
    assert values["DASHBOARD_TENANT_ID"] == "tenant().tenantId"
    assert values["DASHBOARD_CLIENT_ID"] == "dashboardClientId"
    assert values["DASHBOARD_AUDIENCE"] == "dashboardAudience"


def test_the_exchange_audience_is_the_clouds_own() -> None:
    # "Configure an application to trust a managed identity" (Microsoft Learn): one audience per
    # cloud, and the managed-identity token's aud must equal the credential's.
    main = main_bicep()
    assert main.evaluate(main.vars["exchangeAudiences"]) == {
        "AzureCloud": "api://AzureADTokenExchange",
        "AzureUSGovernment": "api://AzureADTokenExchangeUSGov",
        "AzureChinaCloud": "api://AzureADTokenExchangeChina",
    }
    assert "exchangeAudiences[environment().name]" in text(main.vars["exchangeAudience"])
    assert main.evaluate(main.params["federatedTokenAudience"]) == ""  # empty: the cloud's own
    for module in ("app/partner-app.bicep", "app/function.bicep"):
        passed = properties(properties(main.module(module).body)["params"])
        assert text(passed["federatedTokenAudience"]) == "exchangeAudience", module
    assert text(outputs(main)["FEDERATED_TOKEN_AUDIENCE"]) == "exchangeAudience"


def outputs(bicep: BicepFile) -> dict[str, Node]:
    found = {}
    for node in bicep.root.named_children:
        if node.type == "output_declaration":
            named = [child for child in node.named_children if child.type != "comment"]
            found[text(named[0])] = named[-1]
    return found


def test_the_consent_redirect_is_printed_only_where_the_template_registered_it() -> None:
    # A reused app was registered elsewhere: sending its customers a redirect URI the template never
    # registered on it gets them AADSTS50011. The output (and so the hook and the guide) has none then.
    main = main_bicep()
    redirect = outputs(main)["PARTNER_APP_CONSENT_REDIRECT_URI"]
    assert redirect.type == "ternary_expression", text(redirect)
    condition = redirect.child_by_field_name("condition")
    alternative = redirect.child_by_field_name("alternative")
    assert condition is not None and text(condition) == "empty(partnerAppClientId)"
    assert main.evaluate(alternative) == ""


def test_outputs_tell_the_hook_what_bicep_created() -> None:
    found = outputs(main_bicep())
    source = found["PARTNER_APP_SOURCE"]
    assert text(source) == "empty(partnerAppClientId) ? 'template' : 'existing'"
    subject = found["PARTNER_APP_FEDERATED_SUBJECT"]
    assert "partnerApp.outputs.federatedSubject" in text(subject)
    assert text(found["PARTNER_APP_FEDERATED_ISSUER"]) == "federatedIssuer"
    assert text(main_bicep().vars["federatedIssuer"]) == (
        "'${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'"
    )
    partner = BicepFile(INFRA / "app" / "partner-app.bicep")
    assert text(outputs(partner)["federatedSubject"]) == "partnerApp::functionIdentity.subject"


def test_main_parameters_use_the_azd_variables() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    values = {name: entry["value"] for name, entry in parameters.items()}
    assert values["environmentName"] == "${AZURE_ENV_NAME}"
    assert values["location"] == "${AZURE_LOCATION}"
    assert values["principalId"] == "${AZURE_PRINCIPAL_ID}"
    assert values["partnerId"] == "${PARTNER_ID}"
    main = main_bicep()
    assert set(values) <= set(main.params), "main.parameters.json sets a parameter main.bicep does not have"
    required = {name for name, default in main.params.items() if default is None}
    assert required <= set(values), f"main.bicep parameters without a value: {required - set(values)}"
    # An input must not be named like an output (azd would feed the output back in on the next
    # provision), unless the output just echoes that same parameter (AZURE_LOCATION).
    outputs = {
        text(node.named_children[0]): text(node.named_children[-1])
        for node in main.root.named_children
        if node.type == "output_declaration"
    }
    for parameter, value in values.items():
        for variable in re.findall(r"\$\{(\w+)", value):
            assert outputs.get(variable, parameter) == parameter, f"{variable} is both an input and an output"


def test_names_come_from_the_abbreviations_and_the_resource_token() -> None:
    abbreviations = json.loads((INFRA / "abbreviations.json").read_text())
    source = (INFRA / "main.bicep").read_text()
    used = set(re.findall(r"abbrs\.(\w+)", source))
    assert used and used <= set(abbreviations), used - set(abbreviations)
    assert "toLower(uniqueString(subscription().id, environmentName, location))" in source


# --- the post-provision script and azure.yaml -------------------------------------------------


def test_azure_yaml_deploys_the_function() -> None:
    # The hooks are checked in tests/test_hooks.py.
    azure_yaml = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert azure_yaml["services"]["function"] == {"project": ".", "language": "python", "host": "function"}
    assert azure_yaml["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_post_provision_script_is_valid_bash() -> None:
    for script in sorted((INFRA / "scripts").glob("*.sh")):
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_post_provision_script_refuses_to_run_outside_azd() -> None:
    script = INFRA / "scripts" / "postprovision.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False, env={})
    assert result.returncode == 1
    assert "AZURE_TENANT_ID is not set" in result.stderr


# --- host.json --------------------------------------------------------------------------------


def timespan(value: str) -> float:
    """A .NET timespan ("00:05:00" or "1.00:00:00") in seconds."""
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)", value)
    assert match, f"not a timespan: {value}"
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def host_json() -> dict[str, Any]:
    return json.loads((ROOT / "host.json").read_text())


def test_host_json_uses_the_v4_extension_bundle() -> None:
    host = host_json()
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }


def test_host_json_service_bus_matches_what_the_code_assumes() -> None:
    host = host_json()
    service_bus = host["extensions"]["serviceBus"]
    # The functions never settle messages themselves: returning completes, raising abandons.
    assert service_bus["autoCompleteMessages"] is True
    # Prefetched messages wait with locks that nobody renews and come back as extra deliveries.
    assert service_bus.get("prefetchCount", 0) == 0
    # The host renews the lock for as long as a function may run, so a message is never handed to a
    # second instance while the first still works on it.
    function_timeout = timespan(host["functionTimeout"])
    assert timespan(service_bus["maxAutoLockRenewalDuration"]) >= function_timeout
    # Every message running at once can hold an HTTP connection of the shared pool (spine/transport.py).
    pool = re.search(
        r"TCPConnector\(.*?\blimit=(\d+)", (ROOT / "shared" / "spine" / "transport.py").read_text(), re.DOTALL
    )
    assert pool is not None, "shared/spine/transport.py: the connection pool limit was not found"
    assert service_bus["maxConcurrentCalls"] * service_bus_trigger_count() <= int(pool.group(1))


def service_bus_trigger_count() -> int:
    import function_app
    from sandbox.functions_host import indexed_functions

    return sum(
        1
        for function in indexed_functions(function_app.app)
        for binding in json.loads(function.get_function_json())["bindings"]
        if binding["type"] == "serviceBusTrigger"
    )


def test_host_json_states_a_function_timeout_within_what_http_allows() -> None:
    host = host_json()
    assert "functionTimeout" in host, "state the timeout; Flex Consumption's default is 30 minutes"
    seconds = timespan(host["functionTimeout"])
    # One attempt makes a handful of calls, each bounded by HTTP_TIMEOUT_SECONDS (<= 230 s).
    assert 230 <= seconds <= 3600


def test_host_json_logs_what_operators_need() -> None:
    logging_config = host_json()["logging"]
    levels = logging_config["logLevel"]
    assert levels["Function"] in {"Information", "Debug", "Trace"}, "outcome lines are INFO"
    sampling = logging_config["applicationInsights"]["samplingSettings"]
    excluded = set(sampling.get("excludedTypes", "").split(";"))
    # The ALERT line and every outcome line are traces; sampling must never drop them.
    assert not sampling.get("isEnabled", True) or {"Trace", "Exception"} <= excluded
