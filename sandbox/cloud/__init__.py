"""Local HTTPS stand-in for Entra ID, ARM ManagementPartner, Key Vault and App Service managed identity.

One server, one port, one in-memory world. The rooms: `state` (tenants, principals, links, secrets,
counters, the lock), `faults` (injected per tenant and target), `tokens` (the signing key),
`oauth` (Entra's errors), one module per stand-in service (`entra`, `managed_identity`,
`key_vault`, `arm`, `authorization`, `admin`), `server` (HTTPS and the router) and `protocol` (what
they exchange).
`power_platform` holds the Power Platform stand-ins (BAP, Power Apps, Flow, Dataverse, Power BI).
`CloudSandbox` here owns them all and is what tests and programs use. A new stand-in is a module with a
class that has `audiences(base_url)` and `handle(request)`, and one `self._router.add(...)` line below.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from ..scenario import FaultRule, PutWhenLinked, Scenario, UserAccount, load_scenario
from ..tls import make_tls
from .admin import Admin
from .arm import ManagementPartner
from .authorization import Authorization, AuthorizationWorld
from .authorize import SignIn
from .credentials import self_signed_pem
from .device_code import DeviceCodes
from .entra import EntraId
from .faults import Faults
from .key_vault import KeyVault
from .managed_identity import ManagedIdentity
from .oauth import AADSTS
from .power_platform import (
    DATAVERSE_PREFIX,
    BusinessAppPlatform,
    Dataverse,
    Flow,
    PowerApps,
    PowerBi,
    PowerPlatformWorld,
    instance_url,
)
from .server import Router, Server
from .state import CloudState
from .tokens import TokenIssuer

__all__ = ["AADSTS", "CloudSandbox", "main", "self_signed_pem"]


class CloudSandbox:
    """Entra ID, ARM (Microsoft.ManagementPartner), Key Vault and managed identity on one local HTTPS port.

    Clients pass `connection_verify=str(ca_path)` (or share a transport that trusts it) and:
    credentials `authority=base_url` (MSAL-based sync ones also `disable_instance_discovery=True`);
    the ARM client `base_url=arm_url, credential_scopes=["https://management.azure.com/.default"]`;
    `SecretClient(key_vault_url, ..., verify_challenge_resource=False)` (no parent domain of
    127.0.0.1 can match the challenge); ManagedIdentityCredential finds the endpoint through the
    IDENTITY_ENDPOINT / IDENTITY_HEADER environment variables, nothing else needed for https.
    """

    def __init__(
        self, scenario: Scenario, *, state_dir: Path, host: str = "127.0.0.1", port: int = 0, seed: int = 0
    ) -> None:
        self._scenario = scenario
        self._state_dir = Path(state_dir)
        self._host, self._requested_port = host, port
        self._state = CloudState(scenario)
        self._faults = Faults(self._state, seed)
        for tenant in scenario.tenants:
            for rule in tenant.faults:
                self.add_fault(tenant.tenant_id, rule)
        self._tokens = TokenIssuer()
        self._identity = ManagedIdentity(self._state, self._tokens, self._faults)
        self._router = Router()
        self._device_codes = DeviceCodes(self._state, self._tokens)
        entra = EntraId(self._state, self._tokens, self._faults, self._router.audiences, self._device_codes)
        self._router.add(SignIn(entra, self._state, self._tokens, self._router.audiences))  # authorize.py
        self._router.add(ManagementPartner(self._state, self._tokens, self._faults), prefix="providers")
        self._authorization = AuthorizationWorld(self._state)
        authorization = Authorization(self._state, self._tokens, self._faults, self._authorization)
        self._router.add(authorization, prefix="subscriptions")
        self._router.add(KeyVault(self._state, self._tokens, self._faults), prefix="secrets")
        self._router.add(self._identity, prefix="msi")
        self._power_platform = PowerPlatformWorld(self._state)
        services = (self._state, self._tokens, self._faults, self._power_platform)
        self._dataverse, self._power_bi = Dataverse(*services), PowerBi(*services)
        self._router.add(BusinessAppPlatform(*services), prefix="providers/Microsoft.BusinessAppPlatform")
        self._router.add(PowerApps(*services), prefix="providers/Microsoft.PowerApps")
        self._router.add(Flow(*services), prefix="providers/Microsoft.ProcessSimple")
        self._router.add(self._dataverse, prefix=DATAVERSE_PREFIX)
        self._router.add(self._power_bi, prefix="v1.0/myorg")
        admin = Admin(
            self._state, self._faults, self._power_platform, self._authorization, self._device_codes
        )
        self._router.add(admin, prefix="_sandbox")
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ca_path: Path | None = None

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> CloudSandbox:
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        tls = make_tls(self._state_dir)
        self._tokens.new_key()
        self._identity.new_header()
        self._ca_path = tls.ca_path
        self._server = Server(
            (self._host, self._requested_port), self._router, tls.server_context, public_host=self._host
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="cloud-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> CloudSandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        return self._server.base_url

    @property
    def ca_path(self) -> Path:
        if self._ca_path is None:
            raise RuntimeError("the sandbox has not been started")
        return self._ca_path

    @property
    def authority(self) -> str:
        return self.base_url

    @property
    def arm_url(self) -> str:
        return self.base_url

    @property
    def key_vault_url(self) -> str:
        return self.base_url

    @property
    def identity_endpoint(self) -> str:
        return self.base_url + "/msi/token"

    @property
    def identity_header(self) -> str:
        return self._identity.header

    @property
    def power_platform_url(self) -> str:
        """The base URL of the BAP, Power Apps, Flow and Power BI stand-ins (their real paths below it)."""
        return self.base_url

    def dataverse_url(self, env_id: str) -> str:
        """An environment's Dataverse instance URL (with its slash), as BAP's instanceUrl gives it."""
        return instance_url(self.base_url, env_id)

    @property
    def scenario(self) -> Scenario:
        return self._scenario

    # ---- test API (thread-safe) ------------------------------------------------------------------

    def add_fault(self, tenant_id: str, rule: FaultRule) -> None:
        """Inject `rule` into requests for `tenant_id` ("*" = every tenant)."""
        self._faults.add(tenant_id, rule)

    def clear_faults(self, tenant_id: str | None = None) -> None:
        self._faults.clear(tenant_id)

    def stats(self) -> dict[str, Any]:
        return self._state.stats_copy()

    def reset_stats(self) -> None:
        self._state.reset_stats()

    def links(self) -> list[dict[str, Any]]:
        return self._state.link_snapshots()

    def set_link(self, tenant_id: str, object_id: str, partner_id: str) -> dict[str, Any]:
        """Link (tenant, object) to `partner_id` as if the identity had done it itself (version + 1)."""
        return self._state.set_link(tenant_id, object_id, partner_id)

    def delete_link(self, tenant_id: str, object_id: str) -> bool:
        """Soft-delete the identity's link; False when it had no active link."""
        return self._state.delete_link(tenant_id, object_id)

    def set_put_when_linked(self, mode: PutWhenLinked) -> None:
        """What PUT answers when the caller is already linked: 409 Conflict, or 200 with the existing link."""
        self._state.set_put_when_linked(mode)

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
        return self._state.set_secret(name, value, content_type, tags=tags, enabled=enabled, expires=expires)

    def secret_value(self, name: str) -> str:
        return self._state.secret_value(name)

    def set_service_principal_enabled(self, tenant_id: str, client_id: str, enabled: bool) -> None:
        self._state.set_service_principal_enabled(tenant_id, client_id, enabled)

    def remove_service_principal(self, tenant_id: str, client_id: str) -> None:
        self._state.remove_service_principal(tenant_id, client_id)

    def add_tenant(self, tenant_id: str, name: str) -> None:
        self._state.add_tenant(tenant_id, name)

    def add_service_principal(
        self, tenant_id: str, client_id: str, object_id: str, *, enabled: bool = True
    ) -> None:
        """What an admin consent creates: the app's service principal in a customer tenant."""
        self._state.add_service_principal(tenant_id, client_id, object_id, enabled=enabled)

    # ---- Azure subscriptions and role assignments (thread-safe) -----------------------------------

    def install_subscriptions(
        self, tenant_id: str, subscriptions: object, custom_roles: object = None
    ) -> None:
        """Replace the tenant's Azure subscriptions (and custom roles) with scenario sections (JSON form)."""
        self._authorization.install(tenant_id, subscriptions, custom_roles)

    def add_role_assignment(
        self,
        tenant_id: str,
        subscription_id: str,
        principal_id: str,
        role_definition_id: str,
        *,
        scope: str | None = None,
        eligible: bool = False,
    ) -> None:
        """Assign a role (at the subscription unless a scope is given; PIM-eligible only if asked)."""
        self._authorization.add_assignment(
            tenant_id, subscription_id, principal_id, role_definition_id, scope=scope, eligible=eligible
        )

    def remove_role_assignments(
        self, tenant_id: str, subscription_id: str, principal_id: str, role_definition_id: str | None = None
    ) -> int:
        """Remove a principal's assignments of one role (or all) in a subscription; returns how many."""
        return self._authorization.remove_assignments(
            tenant_id, subscription_id, principal_id, role_definition_id
        )

    def set_assignments_readable(self, tenant_id: str, subscription_id: str, readable: bool) -> None:
        """False: reads of the subscription's role assignments and definitions answer 403."""
        self._authorization.set_readable(tenant_id, subscription_id, readable)

    def remove_subscription(self, tenant_id: str, subscription_id: str) -> None:
        self._authorization.remove_subscription(tenant_id, subscription_id)

    def subscriptions(self, tenant_id: str) -> list[dict[str, Any]]:
        """The tenant's subscriptions and role assignments, in their scenario JSON form."""
        return self._authorization.snapshot(tenant_id)

    # ---- Power Platform (thread-safe) -------------------------------------------------------------

    def install_power_platform(self, tenant_id: str, section: object) -> None:
        """Replace the tenant's Power Platform with a scenario `powerPlatform` section (JSON form)."""
        self._power_platform.install_section(tenant_id, section)

    def set_power_platform_grants(
        self, tenant_id: str, client_id: str, *, registered: bool | None = None, power_bi: bool | None = None
    ) -> None:
        """Grant (True) or withdraw (False) the app's registration with Power Platform and its Power BI
        service-principal access in the tenant; None leaves a grant as it is."""
        self._power_platform.set_grants(tenant_id, client_id, registered=registered, power_bi=power_bi)

    def set_application_user(self, env_id: str, client_id: str, present: bool = True) -> None:
        """Add or remove the app's Dataverse application user in an environment."""
        self._power_platform.set_application_user(env_id, client_id, present)

    def power_platform_grants(self, tenant_id: str) -> dict[str, Any]:
        """The tenant's registered apps, Power BI apps and application users per environment."""
        return self._power_platform.snapshot(tenant_id)

    def reset_power_platform_limits(self) -> None:
        """Forget the requests Dataverse and Power BI have counted against their limits."""
        self._dataverse.limits.reset()
        self._power_bi.limits.reset()

    def add_user(self, tenant_id: str, object_id: str, user_principal_name: str, display_name: str) -> None:
        """A user or service account of the tenant, which signs in with the device code flow."""
        user = UserAccount(object_id.lower(), user_principal_name.lower(), display_name)
        self._state.add_user(tenant_id, user)

    def complete_device_code(self, tenant_id: str, user_code: str, user: str) -> None:
        """Sign a pending device code in as the tenant's user (object ID or UPN), as a person would."""
        self._device_codes.complete(tenant_id, user_code, user)

    def set_device_code_timing(self, *, interval: int = 1, expires_in: int = 900) -> None:
        """Seconds between polls and the lifetime of the device codes issued from now on."""
        self._device_codes.set_timing(interval=interval, lifetime=expires_in)

    def issue_token(
        self,
        tenant_id: str,
        object_id: str,
        audience: str,
        *,
        lifetime_seconds: int = 3600,
        app_id: str = "",
        issuer: str | None = None,
    ) -> str:
        """An access token signed by the sandbox (a negative lifetime gives an expired one), for tests."""
        return self._tokens.access_token(
            tenant_id, object_id, audience, app_id, lifetime_seconds, issuer=issuer
        )[0]


def main(argv: list[str] | None = None) -> int:
    """`python -m sandbox.cloud --scenario FILE --state-dir DIR [--port N]`: prints one JSON line with
    the URLs and the managed identity's header once serving, then runs until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.cloud", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    stopping = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stopping.set())
    with CloudSandbox(load_scenario(args.scenario), state_dir=args.state_dir, port=args.port) as cloud:
        ready = {
            "url": cloud.base_url,
            "caPath": str(cloud.ca_path),
            "identityEndpoint": cloud.identity_endpoint,
            "identityHeader": cloud.identity_header,
            "keyVaultUrl": cloud.key_vault_url,
        }
        print(json.dumps(ready), flush=True)
        while not stopping.wait(0.5):
            pass
    return 0
