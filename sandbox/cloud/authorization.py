"""ARM's subscriptions and Microsoft.Authorization, as the caller sees them: the subscriptions it has a
role in (api-version 2022-12-01), its role assignments in one (2022-04-01, `$filter=assignedTo('{id}')`
or `principalId eq '{id}'`) and the role definitions they reference, behind ARM's bearer-token check.

What ARM answers is the tenant's `subscriptions` section (`sandbox/scenario_authorization.py`),
changeable while running. A subscription is listed to a caller that holds an active assignment in
it; a PIM-eligible assignment is not listed (it is not active). Reading assignments or definitions
needs an active assignment there and the subscription's `readAssignments` (403 AuthorizationFailed
otherwise); a subscription of another tenant, or none, is 404 SubscriptionNotFound. Lists are paged
two items a page with `nextLink` (the sandbox's size), so every client meets paging. Fault target:
`authorization`; calls are counted under `authorizationCalls`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from ..scenario_authorization import (
    BUILT_IN_ROLES,
    AzureSubscription,
    RoleAssignment,
    parse_custom_roles,
    parse_subscriptions,
)
from .arm import ARM_AUDIENCES, arm_caller, arm_error
from .faults import Faults
from .power_platform.common import paged
from .protocol import Refusal, Reply, Request, json_reply
from .state import CloudState
from .tokens import TokenIssuer

SUBSCRIPTION_VERSIONS = frozenset({"2016-06-01", "2020-01-01", "2022-12-01"})
AUTHORIZATION_VERSIONS = frozenset({"2015-07-01", "2020-04-01-preview", "2022-04-01"})
PAGE_SIZE = 2
_FILTER = re.compile(r"(?:assignedTo\('(?P<to>[^']*)'\)|principalId eq '(?P<id>[^']*)')", re.I)
_NAMESPACE = uuid.UUID("3d0b7f0e-6a1c-4a55-9a4e-2f1f8c2b6d71")  # assignment names: stable per assignment


@dataclass
class LiveTenant:
    subscriptions: dict[str, AzureSubscription]  # by subscription ID, in order
    custom_roles: dict[str, str]  # role definition ID -> name


class AuthorizationWorld:
    """Every tenant's subscriptions and role assignments, guarded by the one lock of `CloudState`;
    methods take it themselves."""

    def __init__(self, state: CloudState) -> None:
        self.state = state
        self.lock = state.lock
        self._tenants: dict[str, LiveTenant] = {}
        for tenant in state.scenario.tenants:
            custom = {role.role_definition_id: role.role_name for role in tenant.custom_roles}
            self._tenants[tenant.tenant_id] = LiveTenant(
                {s.subscription_id: s for s in tenant.subscriptions}, custom
            )

    # ---- changes (tests and the admin API) -------------------------------------------------------

    def install(self, tenant_id: str, subscriptions: object, custom_roles: object = None) -> None:
        """Replace the tenant's subscriptions (and custom roles) with sections in their JSON form."""
        roles = parse_custom_roles(custom_roles, "customRoles")
        custom = {role.role_definition_id: role.role_name for role in roles}
        parsed = parse_subscriptions(subscriptions, "subscriptions", custom)
        with self.lock:
            self.state.require_tenant(tenant_id)
            taken = {
                s for key, t in self._tenants.items() if key != tenant_id.lower() for s in t.subscriptions
            }
            clash = next((s.subscription_id for s in parsed if s.subscription_id in taken), None)
            if clash is not None:
                raise ValueError(f"subscription {clash} belongs to another tenant")
            self._tenants[tenant_id.lower()] = LiveTenant({s.subscription_id: s for s in parsed}, custom)

    def add_assignment(
        self,
        tenant_id: str,
        subscription_id: str,
        principal_id: str,
        role_definition_id: str,
        *,
        scope: str | None = None,
        eligible: bool = False,
    ) -> None:
        with self.lock:
            tenant, subscription = self._require(tenant_id, subscription_id)
            known = (
                role_definition_id.lower() in BUILT_IN_ROLES
                or role_definition_id.lower() in tenant.custom_roles
            )
            if not known:
                raise ValueError(f"no role {role_definition_id} in the sandbox")
            assignment = RoleAssignment(
                principal_id.lower(),
                role_definition_id.lower(),
                scope or f"/subscriptions/{subscription.subscription_id}",
                eligible,
            )
            self._put(
                tenant, replace(subscription, role_assignments=(*subscription.role_assignments, assignment))
            )

    def remove_assignments(
        self, tenant_id: str, subscription_id: str, principal_id: str, role_definition_id: str | None = None
    ) -> int:
        """Remove the principal's assignments (of one role, or all) in the subscription; how many."""
        with self.lock:
            tenant, subscription = self._require(tenant_id, subscription_id)
            kept = tuple(
                assignment
                for assignment in subscription.role_assignments
                if assignment.principal_id != principal_id.lower()
                or role_definition_id not in (None, assignment.role_definition_id)
            )
            self._put(tenant, replace(subscription, role_assignments=kept))
            return len(subscription.role_assignments) - len(kept)

    def set_readable(self, tenant_id: str, subscription_id: str, readable: bool) -> None:
        with self.lock:
            tenant, subscription = self._require(tenant_id, subscription_id)
            self._put(tenant, replace(subscription, read_assignments=readable))

    def remove_subscription(self, tenant_id: str, subscription_id: str) -> None:
        with self.lock:
            tenant, subscription = self._require(tenant_id, subscription_id)
            del tenant.subscriptions[subscription.subscription_id]

    def snapshot(self, tenant_id: str) -> list[dict[str, Any]]:
        """The tenant's subscriptions in their scenario JSON form."""
        with self.lock:
            tenant = self._tenants.get(tenant_id.lower())
            return [
                _section(subscription) for subscription in (tenant.subscriptions.values() if tenant else ())
            ]

    def _require(
        self, tenant_id: str, subscription_id: str
    ) -> tuple[LiveTenant, AzureSubscription]:  # lock held
        tenant = self._tenants.get(tenant_id.lower())
        subscription = tenant.subscriptions.get(subscription_id.lower()) if tenant else None
        if tenant is None or subscription is None:
            raise ValueError(f"no subscription {subscription_id} in tenant {tenant_id}")
        return tenant, subscription

    def _put(self, tenant: LiveTenant, subscription: AzureSubscription) -> None:  # lock held
        tenant.subscriptions[subscription.subscription_id] = subscription

    # ---- reads (the service; lock taken) ---------------------------------------------------------

    def visible(self, tenant_id: str, object_id: str) -> list[AzureSubscription]:
        with self.lock:
            tenant = self._tenants.get(tenant_id)
            found = list(tenant.subscriptions.values()) if tenant else []
        return [s for s in found if s.state != "Deleted" and _active(s, object_id)]

    def readable(
        self, tenant_id: str, object_id: str, subscription_id: str
    ) -> tuple[AzureSubscription, LiveTenant]:
        """The subscription, if the caller may read its role assignments; refuses (404, 403) otherwise."""
        with self.lock:
            tenant = self._tenants.get(tenant_id)
            subscription = tenant.subscriptions.get(subscription_id.lower()) if tenant else None
        if tenant is None or subscription is None or subscription.state == "Deleted":
            message = f"The subscription '{subscription_id}' could not be found."
            raise Refusal(arm_error(404, "SubscriptionNotFound", message))
        if not (subscription.read_assignments and _active(subscription, object_id)):
            message = (
                f"The client '{object_id}' with object id '{object_id}' does not have authorization to "
                "perform action 'Microsoft.Authorization/roleAssignments/read' over scope "
                f"'/subscriptions/{subscription.subscription_id}' or the scope is invalid. If access was "
                "recently granted, please refresh your credentials."
            )
            raise Refusal(arm_error(403, "AuthorizationFailed", message))
        return subscription, tenant


class Authorization:
    """The stand-in service: mounted on the router under `subscriptions`."""

    def __init__(
        self, state: CloudState, tokens: TokenIssuer, faults: Faults, world: AuthorizationWorld
    ) -> None:
        self._state, self._tokens, self._faults, self._world = state, tokens, faults, world

    def audiences(self, base_url: str) -> Iterable[str]:
        return ARM_AUDIENCES

    def handle(self, request: Request) -> Reply:
        headers = {"x-ms-request-id": str(uuid.uuid4())}
        try:
            reply = self._serve(request, headers)
        except Refusal as refusal:
            reply = refusal.reply
        reply.headers.update(headers)
        return reply

    def _serve(self, request: Request, headers: dict[str, str]) -> Reply:
        tenant_id, object_id = arm_caller(self._tokens, request, headers)
        self._state.count("authorizationCalls", tenant_id, request.method)
        fault = self._faults.apply(request, tenant_id, "authorization", arm_error)
        if fault is not None:
            return fault
        if request.method != "GET":
            return arm_error(405, "MethodNotAllowed", f"The method '{request.method}' is not allowed.")
        parts = [part.lower() for part in request.path]
        if parts == ["subscriptions"]:
            _version(request, SUBSCRIPTION_VERSIONS)
            return self._subscriptions(request, tenant_id, object_id)
        if len(parts) >= 4 and parts[2:4] == ["providers", "microsoft.authorization"]:
            _version(request, AUTHORIZATION_VERSIONS)
            subscription, tenant = self._world.readable(tenant_id, object_id, request.path[1])
            if parts[4:] == ["roleassignments"]:
                return self._assignments(request, subscription)
            if len(parts) == 6 and parts[4] == "roledefinitions":
                return _definition(subscription, tenant, parts[5])
        return arm_error(
            404, "NotFound", f"No HTTP resource was found that matches '/{'/'.join(request.path)}'."
        )

    def _subscriptions(self, request: Request, tenant_id: str, object_id: str) -> Reply:
        items = [
            _subscription(subscription, tenant_id)
            for subscription in self._world.visible(tenant_id, object_id)
        ]
        page, extra = paged(request, items, PAGE_SIZE)
        return json_reply(200, {"value": page, **extra, "count": {"type": "Total", "value": len(items)}})

    def _assignments(self, request: Request, subscription: AzureSubscription) -> Reply:
        text = request.query.get("$filter")
        match = _FILTER.fullmatch(text.strip()) if text else None
        if text and match is None:
            return arm_error(400, "InvalidFilterInQueryString", f"The filter '{text}' is not supported.")
        principal = (match["to"] or match["id"] or "").lower() if match else None
        found = [
            _assignment(subscription, assignment)
            for assignment in subscription.role_assignments
            if not assignment.eligible and principal in (None, assignment.principal_id)
        ]
        page, extra = paged(request, found, PAGE_SIZE)
        return json_reply(200, {"value": page, **extra})


def _version(request: Request, supported: frozenset[str]) -> None:
    version = request.query.get("api-version")
    if not version:
        message = "The api-version query parameter (?api-version=) is required for all requests."
        raise Refusal(arm_error(400, "MissingApiVersionParameter", message))
    if version not in supported:
        listed = ",".join(sorted(supported))
        message = f"The api-version '{version}' is invalid. The supported versions are '{listed}'."
        raise Refusal(arm_error(400, "InvalidApiVersionParameter", message))


def _active(subscription: AzureSubscription, object_id: str) -> bool:
    return any(a.principal_id == object_id and not a.eligible for a in subscription.role_assignments)


def _definition_id(subscription: AzureSubscription, role_id: str) -> str:
    provider = "providers/Microsoft.Authorization"
    return f"/subscriptions/{subscription.subscription_id}/{provider}/roleDefinitions/{role_id}"


def _subscription(subscription: AzureSubscription, tenant_id: str) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{subscription.subscription_id}",
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": subscription.subscription_id,
        "tenantId": tenant_id,
        "displayName": subscription.display_name,
        "state": subscription.state,
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
        },
    }


def _assignment(subscription: AzureSubscription, assignment: RoleAssignment) -> dict[str, Any]:
    key = "/".join(
        (
            subscription.subscription_id,
            assignment.principal_id,
            assignment.role_definition_id,
            assignment.scope,
        )
    )
    name = str(uuid.uuid5(_NAMESPACE, key.lower()))
    return {
        "properties": {
            "roleDefinitionId": _definition_id(subscription, assignment.role_definition_id),
            "principalId": assignment.principal_id,
            "principalType": "ServicePrincipal",
            "scope": assignment.scope,
            "condition": None,
            "conditionVersion": None,
            "createdOn": "2024-05-01T09:00:00.0000000Z",
            "updatedOn": "2024-05-01T09:00:00.0000000Z",
        },
        "id": f"{assignment.scope}/providers/Microsoft.Authorization/roleAssignments/{name}",
        "type": "Microsoft.Authorization/roleAssignments",
        "name": name,
    }


def _definition(subscription: AzureSubscription, tenant: LiveTenant, role_id: str) -> Reply:
    name = BUILT_IN_ROLES.get(role_id) or tenant.custom_roles.get(role_id)
    if name is None:
        return arm_error(404, "RoleDefinitionDoesNotExist", "The specified role definition does not exist.")
    built_in = role_id in BUILT_IN_ROLES
    return json_reply(
        200,
        {
            "properties": {
                "roleName": name,
                "type": "BuiltInRole" if built_in else "CustomRole",
                "description": name,
                "assignableScopes": ["/"] if built_in else [f"/subscriptions/{subscription.subscription_id}"],
                "permissions": [{"actions": [], "notActions": [], "dataActions": [], "notDataActions": []}],
            },
            "id": _definition_id(subscription, role_id),
            "type": "Microsoft.Authorization/roleDefinitions",
            "name": role_id,
        },
    )


def _section(subscription: AzureSubscription) -> dict[str, Any]:
    return {
        "subscriptionId": subscription.subscription_id,
        "displayName": subscription.display_name,
        "state": subscription.state,
        "readAssignments": subscription.read_assignments,
        "roleAssignments": [
            {
                "principalId": a.principal_id,
                "roleDefinitionId": a.role_definition_id,
                "scope": a.scope,
                "eligible": a.eligible,
            }
            for a in subscription.role_assignments
        ],
    }
