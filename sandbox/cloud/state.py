"""The cloud sandbox's in-memory world, shared by every stand-in service.

Customer tenants and their service principals, the scenario's apps with the credentials made for them
at start, partner links, Key Vault secret versions, the request counters, and the one lock that
guards them all. Methods take the lock themselves unless their comment says "lock held".
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from cryptography import x509

from ..scenario import PutWhenLinked, Scenario, UserAccount
from ..scenario import Tenant as ScenarioTenant
from .credentials import client_secret, self_signed_pem, thumbprints


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"  # ARM's 7 digits


def now_iso() -> str:
    return iso(datetime.now(UTC))


@dataclass
class Principal:
    client_id: str
    object_id: str
    enabled: bool = True


@dataclass
class Tenant:
    tenant_id: str
    name: str
    principals: dict[str, Principal] = field(default_factory=dict)  # by client ID
    users: dict[str, UserAccount] = field(default_factory=dict)  # by object ID: they sign in interactively


@dataclass
class Link:
    tenant_id: str
    object_id: str
    partner_id: str
    partner_name: str
    version: int
    created: str
    updated: str
    state: str = "Active"

    def snapshot(self) -> dict[str, Any]:
        return {
            "partnerId": self.partner_id,
            "partnerName": self.partner_name,
            "tenantId": self.tenant_id,
            "objectId": self.object_id,
            "version": self.version,
            "createdTime": self.created,
            "updatedTime": self.updated,
            "state": self.state,
        }

    def resource(self) -> dict[str, Any]:
        return {
            "id": f"/providers/microsoft.managementpartner/partners/{self.partner_id}",
            "type": "Microsoft.ManagementPartner/partners",
            "name": self.partner_id,
            "etag": self.version,
            "properties": self.snapshot(),
        }


@dataclass
class SecretVersion:
    value: str
    content_type: str | None = None
    tags: dict[str, str] = field(default_factory=dict)  # per version, as in Azure
    enabled: bool = True
    expires: int | None = None  # epoch seconds (the `exp` attribute); Key Vault still serves it after
    version: str = ""  # both set when stored
    created: int = 0


def empty_stats() -> dict[str, Any]:
    return {
        "tokenRequests": {},
        "deviceCodeRequests": {},
        "openidConfigurationRequests": {},
        "armCalls": {},
        "authorizationCalls": {},  # subscriptions and Microsoft.Authorization: tenant -> method -> count
        "bapCalls": {},  # the Power Platform stand-ins', like armCalls: tenant -> method -> count
        "powerAppsCalls": {},
        "flowCalls": {},
        "dataverseCalls": {},
        "powerBiCalls": {},
        "managedIdentityRequests": 0,
        "keyVaultRequests": 0,
        "faultsApplied": {},
    }


class CloudState:
    """Seeded from the scenario: its tenants, service principals and links, and for each app a client
    secret per secret name and a certificate per certificate name, stored in Key Vault too."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.lock = threading.Lock()
        self.put_when_linked: PutWhenLinked = scenario.put_when_linked
        self.apps = {app.client_id: app for app in scenario.apps}
        self.tenants: dict[str, Tenant] = {}
        self.links: dict[tuple[str, str], Link] = {}  # by (tenant ID, object ID)
        self.secrets: dict[str, list[SecretVersion]] = {}  # oldest version first
        self.app_secrets: dict[str, list[str]] = defaultdict(list)  # client ID -> valid client secrets
        self.app_certs: dict[str, dict[str, x509.Certificate]] = defaultdict(dict)  # by base64url thumbprint
        self.stats = empty_stats()
        for tenant in scenario.tenants:
            self.add_tenant(tenant.tenant_id, tenant.name)
            for sp in tenant.service_principals:
                self.add_service_principal(tenant.tenant_id, sp.client_id, sp.object_id, enabled=sp.enabled)
            for user in _users_of(tenant):
                self.add_user(tenant.tenant_id, user)
            for link in tenant.links:
                self.set_link(tenant.tenant_id, link.object_id, link.partner_id)
        self._make_app_credentials()

    def _make_app_credentials(self) -> None:
        for app in self.scenario.apps:
            for name in app.secrets:
                value = client_secret()
                self.app_secrets[app.client_id].append(value)
                self.store_secret(name, SecretVersion(value, tags=dict(app.tags.get(name, {}))))
            for name in app.certificates:
                pem, cert = self_signed_pem(app.display_name)
                for thumbprint in thumbprints(cert):
                    self.app_certs[app.client_id][thumbprint] = cert
                tags = dict(app.tags.get(name, {}))
                self.store_secret(name, SecretVersion(pem, "application/x-pem-file", tags))

    # ---- counters --------------------------------------------------------------------------------

    def count(self, name: str, tenant_id: str | None = None, method: str | None = None) -> None:
        with self.lock:
            if tenant_id is None:
                self.stats[name] += 1
            elif method is None:
                self.stats[name][tenant_id] = self.stats[name].get(tenant_id, 0) + 1
            else:
                per_method = self.stats[name].setdefault(tenant_id, {})
                per_method[method] = per_method.get(method, 0) + 1

    def stats_copy(self) -> dict[str, Any]:
        with self.lock:
            return cast(dict[str, Any], json.loads(json.dumps(self.stats)))  # a deep, plain copy

    def reset_stats(self) -> None:
        with self.lock:
            self.stats = empty_stats()

    # ---- tenants and service principals ----------------------------------------------------------

    def add_tenant(self, tenant_id: str, name: str) -> None:
        with self.lock:
            if tenant_id.lower() in self.tenants:
                raise ValueError(f"tenant {tenant_id} already exists")
            self.tenants[tenant_id.lower()] = Tenant(tenant_id.lower(), name)

    def add_service_principal(
        self, tenant_id: str, client_id: str, object_id: str, *, enabled: bool = True
    ) -> None:
        """What an admin consent creates: the app's service principal in a customer tenant."""
        with self.lock:
            tenant = self.require_tenant(tenant_id)
            if client_id.lower() not in self.apps:
                raise ValueError(f"no app with clientId {client_id} in the scenario")
            tenant.principals[client_id.lower()] = Principal(client_id.lower(), object_id.lower(), enabled)

    def add_user(self, tenant_id: str, user: UserAccount) -> None:
        """A user or service account of the tenant (it signs in with the device code flow)."""
        with self.lock:
            tenant = self.require_tenant(tenant_id)
            clash = next(
                (u for u in tenant.users.values() if u.user_principal_name == user.user_principal_name), None
            )
            if clash is not None and clash.object_id != user.object_id:
                raise ValueError(f"user {user.user_principal_name} already exists in tenant {tenant_id}")
            tenant.users[user.object_id.lower()] = user

    def find_user(self, tenant_id: str, who: str) -> UserAccount:
        """The tenant's user with this object ID or user principal name (case-insensitive)."""
        with self.lock:
            users = self.require_tenant(tenant_id).users
            found = users.get(who.lower()) or next(
                (user for user in users.values() if user.user_principal_name == who.lower()), None
            )
        if found is None:
            raise ValueError(f"no user {who} in tenant {tenant_id}")
        return found

    def set_service_principal_enabled(self, tenant_id: str, client_id: str, enabled: bool) -> None:
        with self.lock:
            self.require_principal(tenant_id, client_id).enabled = enabled

    def remove_service_principal(self, tenant_id: str, client_id: str) -> None:
        with self.lock:
            self.require_principal(tenant_id, client_id)
            del self.tenants[tenant_id.lower()].principals[client_id.lower()]

    def require_tenant(self, tenant_id: str) -> Tenant:  # lock held
        tenant = self.tenants.get(tenant_id.lower())
        if tenant is None:
            raise ValueError(f"no tenant {tenant_id}")
        return tenant

    def require_principal(self, tenant_id: str, client_id: str) -> Principal:  # lock held
        principal = self.require_tenant(tenant_id).principals.get(client_id.lower())
        if principal is None:
            raise ValueError(f"no service principal for app {client_id} in tenant {tenant_id}")
        return principal

    # ---- partner links ---------------------------------------------------------------------------

    def link_snapshots(self) -> list[dict[str, Any]]:
        with self.lock:
            return [link.snapshot() for link in self.links.values()]

    def set_link(self, tenant_id: str, object_id: str, partner_id: str) -> dict[str, Any]:
        """Link (tenant, object) to `partner_id` as if the identity had done it itself (version + 1)."""
        with self.lock:
            self.require_tenant(tenant_id)
            key = (tenant_id.lower(), object_id.lower())
            link = self.links.get(key)
            if link is None:
                link = self.new_link(*key, partner_id)
            else:
                self.write_link(link, partner_id=partner_id, state="Active")
            return link.snapshot()

    def delete_link(self, tenant_id: str, object_id: str) -> bool:
        """Soft-delete the identity's link; False when it had no active link."""
        with self.lock:
            link = self.links.get((tenant_id.lower(), object_id.lower()))
            if link is None or link.state != "Active":
                return False
            self.write_link(link, state="Deleted")
            return True

    def set_put_when_linked(self, mode: PutWhenLinked) -> None:
        """What PUT answers when the caller is already linked: 409 Conflict, or 200 with the existing link."""
        if mode not in ("conflict", "ok"):
            raise ValueError("putWhenLinked: expected 'conflict' or 'ok'")
        with self.lock:
            self.put_when_linked = mode

    def new_link(self, tenant_id: str, object_id: str, partner_id: str) -> Link:  # lock held
        now = now_iso()
        name = self.scenario.known_partner_ids.get(partner_id, "")
        link = Link(tenant_id, object_id, partner_id, name, 1, now, now)
        self.links[(tenant_id, object_id)] = link
        return link

    def write_link(self, link: Link, *, partner_id: str | None = None, state: str | None = None) -> None:
        if partner_id is not None:  # lock held
            link.partner_id = partner_id
            link.partner_name = self.scenario.known_partner_ids.get(partner_id, "")
        link.state = state or link.state
        link.version += 1
        link.updated = now_iso()

    # ---- Key Vault secrets -----------------------------------------------------------------------

    def set_secret(
        self,
        name: str,
        value: str,
        content_type: str | None = None,
        *,
        tags: dict[str, str] | None = None,
        enabled: bool = True,
        expires: int | None = None,
    ) -> str:
        """Store a new version of a Key Vault secret; returns the version.

        The content type is kept unless given; tags, like Azure's, belong to the version: a new
        version without them has none.
        """
        stored = SecretVersion(value, content_type, dict(tags or {}), enabled, expires)
        with self.lock:
            return self.store_secret(name, stored)

    def secret_value(self, name: str) -> str:
        with self.lock:
            if name not in self.secrets:
                raise KeyError(name)
            return self.secrets[name][-1].value

    def secret_values(self) -> list[str]:
        """Every stored secret value long enough to scrub from a reply."""
        with self.lock:
            return [v.value for versions in self.secrets.values() for v in versions if len(v.value) >= 8]

    def find_secret(self, name: str, version: str | None) -> SecretVersion | None:
        """That version of the secret, or its newest when `version` is None."""
        with self.lock:
            versions = self.secrets.get(name, [])
            found = versions[-1] if versions and version is None else None
            return next((v for v in versions if v.version == version), found)

    def store_secret(self, name: str, stored: SecretVersion) -> str:  # lock held
        """Append `stored` as the newest version, with a fresh version ID and creation time."""
        versions = self.secrets.setdefault(name, [])
        if stored.content_type is None and versions:
            stored.content_type = versions[-1].content_type
        stored.version, stored.created = uuid.uuid4().hex, int(time.time())
        versions.append(stored)
        return stored.version


def _users_of(tenant: ScenarioTenant) -> list[UserAccount]:
    """The scenario tenant's user accounts, then its Power Platform users still in Entra ID (one per
    object ID and UPN: the tenant-level entry wins)."""
    users = list(tenant.users)
    known = {user.object_id for user in users} | {user.user_principal_name for user in users}
    section = tenant.power_platform
    for person in section.users if section is not None else ():
        upn = person.user_principal_name.lower()
        if not (person.deleted or person.object_id in known or upn in known):
            users.append(UserAccount(person.object_id, upn, person.display_name))
            known |= {person.object_id, upn}
    return users
