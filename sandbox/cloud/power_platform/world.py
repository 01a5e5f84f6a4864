"""The Power Platform side of the sandbox's world: per customer tenant, its grants (which may change
while running), its environments with the Dataverse application users added so far, and who an object
id is (a user of the scenario or one of the tenant's service principals).

Read from each tenant's `powerPlatform` section (see `sandbox/scenario_power_platform.py`) and guarded
by the one lock of `CloudState`; methods take it unless their comment says "lock held".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from ...scenario_power_platform import Environment, PowerPlatform, User, parse_power_platform
from ..state import CloudState
from .delivery_state import EnvironmentDelivery, TenantPowerBiDelivery

# systemuser ids are derived from (environment, object id): stable across runs, distinct per environment
_SYSTEMUSER_NAMESPACE = uuid.UUID("6f0c1d4e-93a1-4b52-8d0e-5a7c2b9e1f30")
SYSTEM = "SYSTEM"


@dataclass(frozen=True)
class Who:
    """What the APIs show about an object id."""

    object_id: str
    kind: str  # User or ServicePrincipal
    display_name: str = ""
    user_principal_name: str = ""
    deleted: bool = False  # a user gone from Entra ID (or a service principal removed while running)
    client_id: str = ""


@dataclass
class LiveEnvironment:
    tenant_id: str
    spec: Environment
    app_users: set[str]  # client IDs with a Dataverse application user
    delivery: EnvironmentDelivery = field(default_factory=EnvironmentDelivery)  # solution imports

    @property
    def env_id(self) -> str:
        return self.spec.env_id


@dataclass
class LiveTenant:
    tenant_id: str
    spec: PowerPlatform
    registered: set[str] = field(default_factory=set)
    power_bi: set[str] = field(default_factory=set)
    environments: dict[str, LiveEnvironment] = field(default_factory=dict)  # by lower-cased id, in order
    users: dict[str, User] = field(default_factory=dict)
    power_bi_delivery: TenantPowerBiDelivery = field(default_factory=TenantPowerBiDelivery)


def systemuser_id(env_id: str, object_id: str) -> str:
    """The Dataverse systemuserid of an object id (or SYSTEM) in an environment."""
    return str(uuid.uuid5(_SYSTEMUSER_NAMESPACE, f"{env_id.lower()}/{object_id.lower()}"))


class PowerPlatformWorld:
    def __init__(self, state: CloudState) -> None:
        self.state = state
        self.lock = state.lock
        self._tenants: dict[str, LiveTenant] = {}
        self._environments: dict[str, LiveEnvironment] = {}  # every tenant's, by lower-cased id
        self.delivery_delay = 0.5  # seconds a solution or Power BI import takes (tests make it short)
        for tenant in state.scenario.tenants:
            if tenant.power_platform is not None:
                self.install(tenant.tenant_id, tenant.power_platform)

    # ---- changes ---------------------------------------------------------------------------------

    def install_section(self, tenant_id: str, section: object) -> None:
        """Replace the tenant's Power Platform with a `powerPlatform` section (its JSON form)."""
        with self.lock:
            principals = {
                principal.object_id: client_id
                for client_id, principal in self.state.require_tenant(tenant_id).principals.items()
            }
        spec = parse_power_platform(section, "powerPlatform", principals)
        self.install(tenant_id, spec or PowerPlatform())

    def install(self, tenant_id: str, spec: PowerPlatform) -> None:
        tenant_id = tenant_id.lower()
        with self.lock:
            self.state.require_tenant(tenant_id)
            for environment in spec.environments:
                taken = self._environments.get(environment.env_id.lower())
                if taken is not None and taken.tenant_id != tenant_id:
                    raise ValueError(f"environment {environment.env_id} belongs to tenant {taken.tenant_id}")
            old = self._tenants.pop(tenant_id, None)
            for env_key in old.environments if old else ():
                del self._environments[env_key]
            live = LiveTenant(
                tenant_id,
                spec,
                set(spec.registered_apps),
                set(spec.power_bi_apps),
                users={user.object_id: user for user in spec.users},
            )
            for workspace in spec.workspaces:
                live.power_bi_delivery.members[workspace.workspace_id.lower()] = set(workspace.members)
            for environment in spec.environments:
                env = LiveEnvironment(tenant_id, environment, set(environment.application_users))
                live.environments[environment.env_id.lower()] = env
                self._environments[environment.env_id.lower()] = env
            self._tenants[tenant_id] = live

    def set_grants(
        self, tenant_id: str, client_id: str, *, registered: bool | None = None, power_bi: bool | None = None
    ) -> None:
        """Grant or withdraw the app's registration with Power Platform and its Power BI access."""
        with self.lock:
            self.state.require_principal(tenant_id, client_id)
            tenant = self._tenants.setdefault(
                tenant_id.lower(), LiveTenant(tenant_id.lower(), PowerPlatform())
            )
            for granted, held in ((registered, tenant.registered), (power_bi, tenant.power_bi)):
                if granted is True:
                    held.add(client_id.lower())
                elif granted is False:
                    held.discard(client_id.lower())

    def set_application_user(self, env_id: str, client_id: str, present: bool) -> None:
        """Add or remove the app's Dataverse application user in an environment."""
        with self.lock:
            env = self.environment(env_id)
            if env is None or not env.spec.dataverse:
                raise ValueError(f"no environment {env_id} with Dataverse")
            self.state.require_principal(env.tenant_id, client_id)
            if present:
                env.app_users.add(client_id.lower())
            else:
                env.app_users.discard(client_id.lower())

    def set_delivery_delay(self, seconds: float) -> None:
        """How long a solution import or a Power BI import stays in progress."""
        if not 0 <= seconds <= 600:
            raise ValueError("the delivery delay is 0 to 600 seconds")
        with self.lock:
            self.delivery_delay = float(seconds)

    def set_workspace_member(self, tenant_id: str, workspace_id: str, client_id: str, present: bool) -> None:
        """Add or remove the app's service principal as a member of a Power BI workspace."""
        with self.lock:
            self.state.require_principal(tenant_id, client_id)
            tenant = self._tenants.get(tenant_id.lower())
            if tenant is None or not any(
                w.workspace_id.lower() == workspace_id.lower() for w in tenant.spec.workspaces
            ):
                raise ValueError(f"no workspace {workspace_id} in tenant {tenant_id}")
            members = tenant.power_bi_delivery.members.setdefault(workspace_id.lower(), set())
            if present:
                members.add(client_id.lower())
            else:
                members.discard(client_id.lower())

    # ---- reading (lock held) ---------------------------------------------------------------------

    def tenant(self, tenant_id: str) -> LiveTenant:
        """The tenant's Power Platform; an empty one (nothing granted, no environments) when it has none."""
        found = self._tenants.get(tenant_id.lower())
        return found if found is not None else LiveTenant(tenant_id.lower(), PowerPlatform())

    def environment(self, env_id: str) -> LiveEnvironment | None:
        return self._environments.get(env_id.lower())

    def dataverse_ids(self) -> list[str]:
        return [env.env_id for env in self._environments.values() if env.spec.dataverse]

    def who(self, tenant_id: str, object_id: str) -> Who:
        user = self.tenant(tenant_id).users.get(object_id)
        if user is not None:
            name, upn = user.display_name, user.user_principal_name
            return Who(object_id, "User", name, upn, user.deleted)
        for client_id, principal in self.state.tenants[tenant_id].principals.items():
            if principal.object_id == object_id:
                app = self.state.apps.get(client_id)
                return Who(
                    object_id, "ServicePrincipal", app.display_name if app else "", client_id=client_id
                )
        return Who(object_id, "ServicePrincipal", deleted=True)  # a service principal removed while running

    def principal_object_id(self, tenant_id: str, client_id: str) -> str | None:
        principal = self.state.tenants[tenant_id].principals.get(client_id)
        return principal.object_id if principal else None

    def snapshot(self, tenant_id: str) -> dict[str, Any]:
        """Grants and application users, for tests and the admin API."""
        with self.lock:
            tenant = self.tenant(tenant_id)
            return {
                "registeredApps": sorted(tenant.registered),
                "powerBiApps": sorted(tenant.power_bi),
                "applicationUsers": {
                    env.env_id: sorted(env.app_users) for env in tenant.environments.values()
                },
            }
