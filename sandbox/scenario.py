"""The sandbox's world (apps, customer tenants, their service principals, links, faults) read from JSON.

A tenant's Power Platform (grants, environments, resources, Power BI) is read by
`scenario_power_platform.py`; the strict field reader both use is `scenario_fields.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

from .scenario_authorization import AzureSubscription, CustomRole, parse_custom_roles, parse_subscriptions
from .scenario_fields import Fields, unique, whole
from .scenario_power_platform import PowerPlatform, parse_power_platform

FaultTarget = Literal[
    "token", "arm", "authorization", "keyvault", "bap", "powerapps", "flow", "dataverse", "powerbi", "any"
]
FaultKind = Literal["latency", "status", "drop", "aadsts", "ignore-write"]
PutWhenLinked = Literal["conflict", "ok"]
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
_SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")  # what Key Vault accepts as a secret name
_MAX_TAGS = 15  # Key Vault's limit per secret


class _Fields(Fields):
    """A scenario object, plus Key Vault secret lists (the apps')."""

    def secrets(self, key: str) -> list[tuple[str, dict[str, str]]]:
        """Key Vault secrets, each a name or {"name": ..., "tags": {...}}: (name, tags) pairs."""
        secrets = []
        for path, item in self.items(key):
            entry = _Fields(item, path, ("name", "tags")) if isinstance(item, dict) else None
            name = entry.value.get("name") if entry else item
            if not isinstance(name, str) or not _SECRET_NAME.match(name):
                where = entry.at("name") if entry else path
                raise ValueError(f"{where}: expected a Key Vault secret name (1-127 letters, digits, dashes)")
            secrets.append((name, parse_tags(entry.value.get("tags", {}), entry.at("tags")) if entry else {}))
        return secrets


def parse_tags(value: object, path: str) -> dict[str, str]:
    """Key Vault tags as Azure takes them: at most 15, each a non-empty name and a string value."""
    if not (
        isinstance(value, dict)
        and len(value) <= _MAX_TAGS
        and all(isinstance(name, str) and name and isinstance(tag, str) for name, tag in value.items())
    ):
        raise ValueError(f"{path}: expected an object of at most {_MAX_TAGS} tag names and string values")
    return dict(value)


_FAULT_KEYS = ("target", "kind", "latencyMs", "status", "retryAfter", "aadsts", "count", "probability")


@dataclass(frozen=True)
class FaultRule:
    """One injected fault. `count` None applies forever, otherwise each application uses one up.

    latency: the request is handled on arrival and its reply held back `latency_ms` (opens race
    windows); other faults still apply. status: that HTTP status with the target's error body and
    Retry-After when `retry_after` is set. drop: the connection closes with no reply; aiohttp resends
    an idempotent request (GET/PUT/DELETE) once by itself, so use count=2 or None to make the caller
    see it. aadsts: Entra's answer for that code (target "token" only). ignore-write: an ARM PUT or
    PATCH of a link that exists is answered 200 with the link as it was, unchanged (target "arm").
    Targets bap, powerapps, flow, dataverse and powerbi are the Power Platform stand-ins, one each;
    authorization is ARM's subscriptions and Microsoft.Authorization (role assignments, definitions).
    """

    target: FaultTarget
    kind: FaultKind
    latency_ms: float = 0.0
    status: int | None = None
    retry_after: int | None = None  # seconds, sent as Retry-After
    aadsts: int | None = None
    count: int | None = None
    probability: float = 1.0

    def __post_init__(self) -> None:
        if self.target not in get_args(FaultTarget):
            raise ValueError(f"target: expected one of {', '.join(get_args(FaultTarget))}")
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"kind: expected one of {', '.join(get_args(FaultKind))}")
        self._check_kind_fields()
        if self.retry_after is not None and not (whole(self.retry_after) and self.retry_after >= 0):
            raise ValueError("retryAfter: expected whole seconds (0 or more)")
        if self.count is not None and not (whole(self.count) and self.count >= 1):
            raise ValueError("count: expected a positive integer, or null for forever")
        if not (isinstance(self.probability, int | float) and 0 <= self.probability <= 1):
            raise ValueError("probability: expected a number from 0 to 1")

    def _check_kind_fields(self) -> None:
        """The fields the kind needs, and the target it needs."""
        if self.kind == "latency" and not (
            isinstance(self.latency_ms, int | float) and not isinstance(self.latency_ms, bool)
        ):
            raise ValueError("latencyMs: expected a number of milliseconds")
        if self.kind == "latency" and self.latency_ms <= 0:
            raise ValueError("latencyMs: expected a positive number of milliseconds")
        if self.kind == "status" and not (whole(self.status) and 400 <= cast(int, self.status) <= 599):
            raise ValueError("status: expected an HTTP error status (400-599)")
        if self.kind == "aadsts" and not (whole(self.aadsts) and cast(int, self.aadsts) > 0):
            raise ValueError("aadsts: expected an AADSTS error code, such as 700016")
        if self.kind == "aadsts" and self.target != "token":
            raise ValueError("target: an aadsts fault needs target 'token'")
        if self.kind == "ignore-write" and self.target != "arm":
            raise ValueError("target: an ignore-write fault needs target 'arm'")

    @classmethod
    def from_dict(cls, data: object, path: str = "fault") -> FaultRule:
        """From the JSON form (camelCase keys); errors name the field under `path`."""
        fields = _Fields(data, path, _FAULT_KEYS)
        raw = fields.value
        try:
            return cls(
                target=raw.get("target"),  # type: ignore[arg-type]  # checked in __post_init__
                kind=raw.get("kind"),  # type: ignore[arg-type]
                latency_ms=raw.get("latencyMs", 0.0),
                status=raw.get("status"),
                retry_after=raw.get("retryAfter"),
                aadsts=raw.get("aadsts"),
                count=raw.get("count"),
                probability=raw.get("probability", 1.0),
            )
        except ValueError as err:
            raise ValueError(f"{path}.{err}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "kind": self.kind,
            "latencyMs": self.latency_ms,
            "status": self.status,
            "retryAfter": self.retry_after,
            "aadsts": self.aadsts,
            "count": self.count,
            "probability": self.probability,
        }


@dataclass(frozen=True)
class ManagedIdentity:
    client_id: str
    principal_id: str


@dataclass(frozen=True)
class FederatedCredential:
    issuer: str
    subject: str
    audience: str = EXCHANGE_AUDIENCE


@dataclass(frozen=True)
class App:
    client_id: str
    display_name: str
    federated_credentials: tuple[FederatedCredential, ...] = ()
    secrets: tuple[str, ...] = ()  # Key Vault secret names: a client secret is generated into each
    certificates: tuple[str, ...] = ()  # Key Vault secret names: a PEM key + certificate into each
    tags: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Key Vault tags of those secrets, by name (customerTenantId and clientId bind one to a customer)."""


@dataclass(frozen=True)
class ServicePrincipal:
    client_id: str
    object_id: str
    enabled: bool = True


@dataclass(frozen=True)
class Link:
    object_id: str
    partner_id: str


@dataclass(frozen=True)
class UserAccount:
    """A user or dedicated service account of the tenant: it signs in interactively (device code)."""

    object_id: str
    user_principal_name: str
    display_name: str
    roles: tuple[str, ...] = ()
    """App roles assigned to the user (e.g. PalAutopilot.Operator): the `roles` claim of its tokens
    for the scenario's app registrations (the dashboard's sign-in, sandbox/cloud/authorize.py)."""


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    name: str
    service_principals: tuple[ServicePrincipal, ...] = ()
    users: tuple[UserAccount, ...] = ()
    links: tuple[Link, ...] = ()
    faults: tuple[FaultRule, ...] = ()
    power_platform: PowerPlatform | None = None  # None: no Power Platform grants nor resources
    subscriptions: tuple[AzureSubscription, ...] = ()  # Azure subscriptions and role assignments
    custom_roles: tuple[CustomRole, ...] = ()


@dataclass(frozen=True)
class Scenario:
    partner_tenant_id: str
    managed_identity: ManagedIdentity
    known_partner_ids: Mapping[str, str]
    apps: tuple[App, ...] = ()
    tenants: tuple[Tenant, ...] = ()
    put_when_linked: PutWhenLinked = "conflict"
    token_lifetime_seconds: int = 3600
    description: str = field(default="", compare=False)

    def app(self, client_id: str) -> App | None:
        return next((app for app in self.apps if app.client_id == client_id.lower()), None)

    def tenant(self, tenant_id: str) -> Tenant | None:
        return next((tenant for tenant in self.tenants if tenant.tenant_id == tenant_id.lower()), None)

    @classmethod
    def from_dict(cls, data: object) -> Scenario:
        top = _Fields(
            data,
            "",
            (
                "description",
                "partnerTenantId",
                "managedIdentity",
                "knownPartnerIds",
                "putWhenLinked",
                "tokenLifetimeSeconds",
                "apps",
                "tenants",
            ),
        )
        partner_tenant_id = top.guid("partnerTenantId")
        identity = _Fields(top.value.get("managedIdentity"), "managedIdentity", ("clientId", "principalId"))
        managed_identity = ManagedIdentity(identity.guid("clientId"), identity.guid("principalId"))
        partner_ids = top.value.get("knownPartnerIds", {})
        if not isinstance(partner_ids, dict) or not all(
            isinstance(key, str) and key and isinstance(name, str) and name
            for key, name in partner_ids.items()
        ):
            raise ValueError("knownPartnerIds: expected an object of partner ID -> partner name")
        put_when_linked = top.value.get("putWhenLinked", "conflict")
        if put_when_linked not in get_args(PutWhenLinked):
            raise ValueError("putWhenLinked: expected 'conflict' or 'ok'")
        apps = tuple(_app(path, item) for path, item in top.items("apps"))
        unique([(f"apps[{i}].clientId", app.client_id) for i, app in enumerate(apps)], "clientId")
        unique(
            [
                (f"apps[{i}].{kind}", name)
                for i, app in enumerate(apps)
                for kind, names in (("secrets", app.secrets), ("certificates", app.certificates))
                for name in names
            ],
            "Key Vault secret name",
        )
        tenants = tuple(_tenant(path, item, apps, partner_ids) for path, item in top.items("tenants"))
        _unique_across(tenants)
        return cls(
            partner_tenant_id=partner_tenant_id,
            managed_identity=managed_identity,
            known_partner_ids=dict(partner_ids),
            apps=apps,
            tenants=tenants,
            put_when_linked=put_when_linked,
            token_lifetime_seconds=top.integer("tokenLifetimeSeconds", 3600),
            description=str(top.value.get("description", "")),
        )


def _unique_across(tenants: tuple[Tenant, ...]) -> None:
    """What must be unique across tenants: their IDs, environment IDs and subscription IDs."""
    unique([(f"tenants[{i}].tenantId", tenant.tenant_id) for i, tenant in enumerate(tenants)], "tenantId")
    unique(
        [
            (f"tenants[{i}].powerPlatform.environments[{j}].id", environment.env_id)
            for i, tenant in enumerate(tenants)
            for j, environment in enumerate(
                tenant.power_platform.environments if tenant.power_platform else ()
            )
        ],
        "environment id (each has its own Dataverse URL)",
    )
    unique(
        [
            (f"tenants[{i}].subscriptions[{j}].subscriptionId", subscription.subscription_id)
            for i, tenant in enumerate(tenants)
            for j, subscription in enumerate(tenant.subscriptions)
        ],
        "subscriptionId (a subscription belongs to one tenant)",
    )


def load_scenario(path: str | Path) -> Scenario:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    return Scenario.from_dict(data)


def _app(path: str, item: object) -> App:
    fields = _Fields(
        item, path, ("clientId", "displayName", "federatedCredentials", "secrets", "certificates")
    )
    credentials = []
    for credential_path, credential in fields.items("federatedCredentials"):
        trust = _Fields(credential, credential_path, ("issuer", "subject", "audience"))
        credentials.append(
            FederatedCredential(
                trust.text("issuer"), trust.text("subject"), trust.text("audience", EXCHANGE_AUDIENCE)
            )
        )
    secrets, certificates = fields.secrets("secrets"), fields.secrets("certificates")
    return App(
        client_id=fields.guid("clientId"),
        display_name=fields.text("displayName"),
        federated_credentials=tuple(credentials),
        secrets=tuple(name for name, _ in secrets),
        certificates=tuple(name for name, _ in certificates),
        tags=dict(secrets + certificates),
    )


def _tenant(path: str, item: object, apps: tuple[App, ...], partner_ids: Mapping[str, str]) -> Tenant:
    fields = _Fields(
        item,
        path,
        (
            "tenantId",
            "name",
            "servicePrincipals",
            "users",
            "links",
            "faults",
            "powerPlatform",
            "subscriptions",
            "customRoles",
        ),
    )
    principals = _principals(fields, path, {app.client_id for app in apps})
    links = _links(fields, path, {principal.object_id for principal in principals}, partner_ids)
    roles = parse_custom_roles(fields.value.get("customRoles"), fields.at("customRoles"))
    return Tenant(
        tenant_id=fields.guid("tenantId"),
        name=fields.text("name"),
        service_principals=tuple(principals),
        users=_users(fields, path, {principal.object_id for principal in principals}),
        links=tuple(links),
        faults=tuple(FaultRule.from_dict(raw, fault_path) for fault_path, raw in fields.items("faults")),
        power_platform=parse_power_platform(
            fields.value.get("powerPlatform"),
            fields.at("powerPlatform"),
            {p.object_id: p.client_id for p in principals},
        ),
        subscriptions=parse_subscriptions(
            fields.value.get("subscriptions"),
            fields.at("subscriptions"),
            {r.role_definition_id for r in roles},
        ),
        custom_roles=roles,
    )


def _principals(fields: _Fields, path: str, client_ids: set[str]) -> list[ServicePrincipal]:
    principals = []
    for sp_path, raw in fields.items("servicePrincipals"):
        sp = _Fields(raw, sp_path, ("clientId", "objectId", "enabled"))
        client_id = sp.guid("clientId")
        if client_id not in client_ids:
            raise ValueError(f"{sp.at('clientId')}: no app with this clientId")
        enabled = sp.value.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ValueError(f"{sp.at('enabled')}: expected true or false")
        principals.append(ServicePrincipal(client_id, sp.guid("objectId"), enabled))
    unique(
        [(f"{path}.servicePrincipals[{i}].clientId", p.client_id) for i, p in enumerate(principals)],
        "clientId",
    )
    unique(
        [(f"{path}.servicePrincipals[{i}].objectId", p.object_id) for i, p in enumerate(principals)],
        "objectId",
    )
    return principals


def _users(fields: _Fields, path: str, principal_ids: set[str]) -> tuple[UserAccount, ...]:
    """The tenant's user accounts: objectId, userPrincipalName and displayName, each unique."""
    users = []
    for user_path, raw in fields.items("users"):
        user = _Fields(raw, user_path, ("objectId", "userPrincipalName", "displayName", "roles"))
        object_id, upn = user.guid("objectId"), user.text("userPrincipalName")
        if object_id in principal_ids:
            raise ValueError(f"{user.at('objectId')}: a service principal's objectId, not a user's")
        if upn.count("@") != 1 or not all(upn.split("@")) or any(c.isspace() for c in upn):
            raise ValueError(f"{user.at('userPrincipalName')}: expected name@domain")
        roles = tuple(str(role) for _, role in user.items("roles"))
        if not all(isinstance(role, str) and role.isprintable() and role for _, role in user.items("roles")):
            raise ValueError(f"{user.at('roles')}: expected a list of app role names")
        users.append(UserAccount(object_id, upn.lower(), user.text("displayName"), roles))
    unique([(f"{path}.users[{i}].objectId", u.object_id) for i, u in enumerate(users)], "objectId")
    unique(
        [(f"{path}.users[{i}].userPrincipalName", u.user_principal_name) for i, u in enumerate(users)],
        "userPrincipalName",
    )
    return tuple(users)


def _links(fields: _Fields, path: str, object_ids: set[str], partner_ids: Mapping[str, str]) -> list[Link]:
    links = []
    for link_path, raw in fields.items("links"):
        link = _Fields(raw, link_path, ("objectId", "partnerId"))
        object_id = link.guid("objectId")
        if object_id not in object_ids:
            raise ValueError(f"{link.at('objectId')}: no service principal with this objectId in this tenant")
        partner_id = link.text("partnerId")
        if partner_id not in partner_ids:
            raise ValueError(f"{link.at('partnerId')}: not in knownPartnerIds")
        links.append(Link(object_id, partner_id))
    unique(
        [(f"{path}.links[{i}].objectId", link.object_id) for i, link in enumerate(links)],
        "objectId (one link each)",
    )
    return links
