"""Every resource body in infra/**/*.bicep against its resource type (tests/infra_typecheck.py and
the hand-transcribed tests/infra_types/schema.json): known type@apiVersion, no unknown or read-only
property, every required one present, literals inside closed enums and of the right kind. Errors
planted in a copy of the template show that each kind of mistake is caught.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from infra_typecheck import SCHEMA_PATH, Finding, check_tree, load_schema
from test_infra import INFRA, parse_bicep, walk


def test_the_schema_file_is_well_formed() -> None:
    # A typo in the schema ("requried") would silently weaken the check: only known keys are allowed.
    document = json.loads(SCHEMA_PATH.read_text())
    assert set(document) == {"about", "resources"}
    object_keys = {"properties", "readOnly", "additional"}
    property_keys = {"type", "required", "enum", "known", "items", "dictionary"} | object_keys

    def check_object(schema: dict[str, Any], where: str) -> None:
        assert set(schema) <= object_keys, f"{where}: {set(schema) - object_keys}"
        assert all(isinstance(name, str) for name in schema.get("readOnly", [])), where
        for name, prop in schema.get("properties", {}).items():
            assert name not in schema.get("readOnly", []), f"{where}.{name}: both writable and read-only"
            check_property(prop, f"{where}.{name}")

    def check_property(prop: dict[str, Any], where: str) -> None:
        assert set(prop) <= property_keys, f"{where}: {set(prop) - property_keys}"
        assert prop.get("type") in {"string", "int", "bool", "object", "array"}, where
        assert not ("enum" in prop and "known" in prop), where
        for key in ("enum", "known"):
            if key in prop:
                assert prop[key] and all(isinstance(value, str) for value in prop[key]), where
        if "properties" in prop or "readOnly" in prop:
            assert prop["type"] == "object", where
            check_object({key: prop[key] for key in object_keys if key in prop}, where)
        if "items" in prop:
            assert prop["type"] == "array", where
            check_property(prop["items"], f"{where}[]")

    for name, entry in document["resources"].items():
        assert "@" in name and entry["source"], name
        if "variants" in entry:
            assert set(entry) == {"source", "discriminator", "variants"}, name
            for variant, body in entry["variants"].items():
                assert body["properties"][entry["discriminator"]]["enum"] == [variant], name
                check_object(body, f"{name}<{variant}>")
        else:
            assert set(entry) == {"source", "body"}, name
            check_object(entry["body"], name)


def test_every_resource_declaration_is_checked() -> None:
    resources, _ = check_tree(INFRA)
    declared = sum(
        1
        for path in INFRA.rglob("*.bicep")
        for node in walk(parse_bicep(path.read_bytes()))
        if node.type == "resource_declaration"
    )
    assert len(resources) == declared
    assert all(resource.body is not None for resource in resources)


def test_every_type_and_api_version_is_in_the_schema_and_every_schema_entry_is_used() -> None:
    resources, _ = check_tree(INFRA)
    used = {resource.type for resource in resources}
    known = set(load_schema())
    assert used <= known, f"not in {SCHEMA_PATH.name}: {sorted(used - known)}"
    # No stale facts: the schema describes this template, nothing else.
    assert known <= used, f"in {SCHEMA_PATH.name} but not used: {sorted(known - used)}"


def test_every_resource_body_matches_its_type() -> None:
    _, findings = check_tree(INFRA)
    assert not findings, "\n".join(str(finding) for finding in findings)


# --- planted errors ---------------------------------------------------------------------------


def planted(tmp_path: Path, file: str, old: str, new: str) -> list[Finding]:
    """The findings in a copy of infra/ where the first `old` in `file` is replaced by `new`."""
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy)
    target = copy / file
    source = target.read_text()
    assert old in source, f"{file}: the text to replace is gone: {old!r}"
    target.write_text(source.replace(old, new, 1))
    _, findings = check_tree(copy)
    return findings


PLANTS = [
    pytest.param(
        "app/storage.bicep",
        "allowSharedKeyAccess: false",
        "allowSharedKeyAcess: false",
        "infra/app/storage.bicep:20: Microsoft.Storage/storageAccounts@2023-05-01: "
        "properties.allowSharedKeyAcess is not a property of this type (did you mean allowSharedKeyAccess?)",
        id="misspelt-property",
    ),
    pytest.param(
        "app/monitoring.bicep",
        "    DisableLocalAuth: true\n",
        "    DisableLocalAuthentication: true\n",
        "properties.DisableLocalAuthentication is not a property of this type "
        "(did you mean DisableLocalAuth?)",
        id="property-not-in-the-type",
    ),
    pytest.param(
        "app/storage.bicep",
        "    supportsHttpsTrafficOnly: true\n",
        "    supportsHttpsTrafficOnly: true\n    provisioningState: 'Succeeded'\n",
        "infra/app/storage.bicep:26: Microsoft.Storage/storageAccounts@2023-05-01: "
        "properties.provisioningState is read-only",
        id="read-only-provisioningState",
    ),
    pytest.param(
        "app/storage.bicep",
        "    name: 'Standard_LRS'\n",
        "    name: 'Standard_LRS'\n    tier: 'Standard'\n",
        "sku.tier is read-only",
        id="read-only-sku-tier",
    ),
    pytest.param(
        "app/function.bicep",
        "    httpsOnly: true\n",
        "    httpsOnly: true\n    defaultHostName: 'example.azurewebsites.net'\n",
        "Microsoft.Web/sites@2024-04-01: properties.defaultHostName is read-only",
        id="read-only-defaultHostName",
    ),
    pytest.param(
        "app/storage.bicep",
        "  kind: 'StorageV2'\n",
        "",
        "infra/app/storage.bicep:11: Microsoft.Storage/storageAccounts@2023-05-01: kind is required",
        id="missing-required-kind",
    ),
    pytest.param(
        "app/keyvault.bicep",
        "    tenantId: tenant().tenantId\n",
        "",
        "Microsoft.KeyVault/vaults@2023-07-01: properties.tenantId is required",
        id="missing-required-nested",
    ),
    pytest.param(
        "app/partner-app.bicep",
        "    issuer: issuer\n",
        "",
        "Microsoft.Graph/applications/federatedIdentityCredentials@v1.0: issuer is required",
        id="missing-required-graph",
    ),
    pytest.param(
        "app/keyvault.bicep",
        "      name: 'standard'",
        "      name: 'Standard'",
        "infra/app/keyvault.bicep:23: Microsoft.KeyVault/vaults@2023-07-01: "
        "properties.sku.name is 'Standard', not one of 'standard', 'premium'",
        id="bad-enum-literal",
    ),
    pytest.param(
        "app/function.bicep",
        "    type: 'UserAssigned'\n",
        "    type: 'UserAssigned,SystemAssigned'\n",
        "identity.type is 'UserAssigned,SystemAssigned', not one of",
        id="bad-enum-literal-identity",
    ),
    pytest.param(
        "app/storage.bicep",
        "publicAccess: 'None'",
        "publicAccess: 'none'",
        "Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01: "
        "properties.publicAccess is 'none', not one of 'Container', 'Blob', 'None'",
        id="bad-enum-literal-nested-resource",
    ),
    pytest.param(
        "app/keyvault.bicep",
        "purgeProtection ? true : null",
        "purgeProtection ? true : 'false'",
        "properties.enablePurgeProtection must be bool, not a string literal",
        id="wrong-literal-kind-in-a-conditional",
    ),
    pytest.param(
        "app/partner-app.bicep",
        "    redirectUris: [\n      redirectUri\n",
        "    redirectUris: [\n      redirectUri\n      true\n",
        "web.redirectUris[] must be string, not a bool literal",
        id="wrong-literal-kind-in-an-array",
    ),
    pytest.param(
        "app/function.bicep",
        "'Microsoft.Web/sites@2024-04-01'",
        "'Microsoft.Web/sites@2024-04-02'",
        "Microsoft.Web/sites@2024-04-02: unknown resource type or API version "
        "(not in schema.json); the schema knows Microsoft.Web/sites at 2024-04-01",
        id="unknown-api-version",
    ),
    pytest.param(
        "app/servicebus.bicep",
        "'Microsoft.ServiceBus/namespaces/queues@2024-01-01'",
        "'Microsoft.ServiceBus/namespace/queues@2024-01-01'",
        "Microsoft.ServiceBus/namespace/queues@2024-01-01: unknown resource type or API version",
        id="unknown-type",
    ),
    pytest.param(
        "app/function.bicep",
        "name: 'appsettings'",
        "name: 'appSettings'",
        "Microsoft.Web/sites/config@2024-04-01: name must be a literal, one of 'appsettings'",
        id="unknown-discriminated-name",
    ),
    pytest.param(
        "app/rbac.bicep",
        "existing = {\n  name: storageAccountName\n",
        "existing = {\n  name: storageAccountName\n  location: 'westeurope'\n",
        "location: an existing resource may set only name, parent, scope",
        id="property-on-an-existing-resource",
    ),
]


@pytest.mark.parametrize(("file", "old", "new", "expected"), PLANTS)
def test_a_planted_error_is_caught(tmp_path: Path, file: str, old: str, new: str, expected: str) -> None:
    findings = planted(tmp_path, file, old, new)
    assert any(expected in str(finding) for finding in findings), "\n".join(map(str, findings)) or "none"
    assert all(finding.file == f"infra/{file}" for finding in findings), findings


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        pytest.param(
            "app/function.bicep",
            "      KEY_VAULT_URL: keyVaultUrl\n",
            "      KEY_VAULT_URL: keyVaultUrl\n      ANY_NEW_SETTING: 'x'\n",
            id="app-settings",
        ),
        pytest.param(
            "app/identity.bicep", "  tags: tags\n", "  tags: {\n    'any-tag': 'x'\n  }\n", id="tags"
        ),
        pytest.param(
            "app/monitoring.bicep",
            "      disableLocalAuth: true\n",
            "      disableLocalAuth: true\n      immediatePurgeDataOn30Days: true\n",
            id="additional-properties",
        ),
    ],
)
def test_open_dictionaries_are_not_checked_inside(tmp_path: Path, file: str, old: str, new: str) -> None:
    # The type data says these maps take any key (app settings, tags, additionalProperties).
    assert planted(tmp_path, file, old, new) == []
