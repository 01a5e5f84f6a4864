"""A customer tenant's Azure subscriptions and role assignments in the scenario, read strictly.

A tenant's `subscriptions` section lists each subscription with its role assignments: who holds
which role (a built-in role of `BUILT_IN_ROLES`, or one of the tenant's `customRoles`) at which
scope (the subscription itself unless a scope below it is given), and whether the assignment is
only PIM-eligible (ARM then does not list it: it earns nothing until activated). A subscription
whose `readAssignments` is false answers its role-assignment reads with 403, as ARM does for an
identity whose role cannot read them there.

    "subscriptions": [{"subscriptionId": GUID, "displayName": "...", "state": "Enabled",
                       "readAssignments": true,
                       "roleAssignments": [{"principalId": GUID, "roleDefinitionId": GUID,
                                            "scope": "/subscriptions/GUID/resourceGroups/rg",
                                            "eligible": false}]}],
    "customRoles": [{"id": GUID, "roleName": "..."}]
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from .scenario_fields import Fields, unique

SUBSCRIPTION_STATES = ("Enabled", "Warned", "PastDue", "Disabled", "Deleted")
BUILT_IN_ROLES: Mapping[str, str] = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "cfd33db0-3dd1-45e3-aa9d-cdbdf3b6f24e": "Support Request Contributor",
    "9980e02c-c2be-4d73-94e8-173b1dc7cf3c": "Virtual Machine Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "fa23ad8b-c56e-40d8-ac0c-ce449e1d2c64": "Billing Reader",
    "72fafb9e-0641-4937-9268-a91bfd8191a3": "Cost Management Reader",
}
"""The built-in roles the stand-in knows (their IDs are the same in every tenant)."""
_BELOW = re.compile(r"(/resourceGroups/[A-Za-z0-9._()-]{1,90})(/providers/[A-Za-z0-9./_-]{1,400})?", re.I)


@dataclass(frozen=True)
class RoleAssignment:
    principal_id: str
    role_definition_id: str
    scope: str
    eligible: bool = False
    """PIM-eligible only: not an active assignment, so ARM does not list it."""


@dataclass(frozen=True)
class AzureSubscription:
    subscription_id: str
    display_name: str
    state: str = "Enabled"
    read_assignments: bool = True
    role_assignments: tuple[RoleAssignment, ...] = ()


@dataclass(frozen=True)
class CustomRole:
    role_definition_id: str
    role_name: str


def parse_custom_roles(value: object, path: str) -> tuple[CustomRole, ...]:
    """A tenant's `customRoles`: an ID (not a built-in one) and a name each."""
    roles = []
    for role_path, raw in _items(value, path):
        role = Fields(raw, role_path, ("id", "roleName"))
        role_id = role.guid("id")
        if role_id in BUILT_IN_ROLES:
            raise ValueError(f"{role.at('id')}: the ID of a built-in role")
        roles.append(CustomRole(role_id, role.text("roleName")))
    unique([(f"{path}[{i}].id", role.role_definition_id) for i, role in enumerate(roles)], "role id")
    return tuple(roles)


def parse_subscriptions(
    value: object, path: str, custom_roles: Collection[str]
) -> tuple[AzureSubscription, ...]:
    """A tenant's `subscriptions` section (its JSON form); errors name the field under `path`."""
    found = [_subscription(item_path, raw, custom_roles) for item_path, raw in _items(value, path)]
    unique(
        [(f"{path}[{i}].subscriptionId", s.subscription_id) for i, s in enumerate(found)], "subscriptionId"
    )
    return tuple(found)


def _subscription(path: str, raw: object, custom_roles: Collection[str]) -> AzureSubscription:
    fields = Fields(
        raw, path, ("subscriptionId", "displayName", "state", "readAssignments", "roleAssignments")
    )
    subscription_id = fields.guid("subscriptionId")
    assignments = []
    for assignment_path, item in fields.items("roleAssignments"):
        assignment = Fields(item, assignment_path, ("principalId", "roleDefinitionId", "scope", "eligible"))
        role_id = assignment.guid("roleDefinitionId")
        if role_id not in BUILT_IN_ROLES and role_id not in custom_roles:
            raise ValueError(
                f"{assignment.at('roleDefinitionId')}: not a built-in role the sandbox knows nor a customRole"
            )
        own = f"/subscriptions/{subscription_id}"
        scope = assignment.text("scope", own)
        if scope.lower() != own and not (
            scope.lower().startswith(own) and _BELOW.fullmatch(scope[len(own) :])
        ):
            raise ValueError(
                f"{assignment.at('scope')}: expected {own} or a resource group or resource below it"
            )
        eligible = assignment.boolean("eligible", False)
        assignments.append(RoleAssignment(assignment.guid("principalId"), role_id, scope, eligible))
    return AzureSubscription(
        subscription_id=subscription_id,
        display_name=fields.text("displayName"),
        state=fields.choice("state", SUBSCRIPTION_STATES, "Enabled"),
        read_assignments=fields.boolean("readAssignments", True),
        role_assignments=tuple(assignments),
    )


def _items(value: object, path: str) -> list[tuple[str, object]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{path}: expected a list")
    return [(f"{path}[{index}]", item) for index, item in enumerate(value)]
