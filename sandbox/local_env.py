"""The settings a local run needs to point the real code at the sandbox and Azurite."""

from __future__ import annotations

from typing import Protocol


class _Cloud(Protocol):
    @property
    def authority(self) -> str: ...
    @property
    def arm_url(self) -> str: ...
    @property
    def key_vault_url(self) -> str: ...
    @property
    def ca_path(self) -> object: ...
    @property
    def identity_endpoint(self) -> str: ...
    @property
    def identity_header(self) -> str: ...
    @property
    def power_platform_url(self) -> str: ...


def local_settings(
    cloud: _Cloud,
    ledger_connection_string: str,
    *,
    managed_identity_client_id: str,
    partner_id: str = "1234567",
    ledger_table: str = "PalLinks",
    service_bus_connection_string: str | None = None,
    dashboard_tenant_id: str | None = None,
    dashboard_client_id: str | None = None,
) -> dict[str, str]:
    """Environment for `shared.spine.settings.Settings` and azure-identity's managed-identity credential.

    IDENTITY_ENDPOINT/IDENTITY_HEADER are what App Service and Azure Functions set for a managed
    identity; the sandbox serves the same protocol, so the product code path is the production one.
    """
    values = {
        "PARTNER_ID": partner_id,
        "ONBOARDING_QUEUE": "customer-onboarded",
        "VERIFY_QUEUE": "link-verify",
        "REVERIFY_SCHEDULE": "0 0 2 * * *",
        "AUDIT_QUEUE": "attribution-audit",
        "AUDIT_SCHEDULE": "0 0 3 * * 0",
        "DELIVERY_QUEUE": "solution-delivery",
        "LedgerStorage": ledger_connection_string,
        "LEDGER_TABLE": ledger_table,
        "AZURE_AUTHORITY_HOST": cloud.authority,
        "ARM_ENDPOINT": cloud.arm_url,
        "KEY_VAULT_URL": cloud.key_vault_url,
        # The sandbox's endpoints are on 127.0.0.1, which no Azure cloud is: the code refuses them
        # without this. Its Entra ID and ARM check the public cloud's audiences, which a custom
        # sign-in host or ARM endpoint cannot be derived to, so they are named.
        "ALLOW_CUSTOM_ENDPOINTS": "true",
        "FEDERATED_TOKEN_AUDIENCE": "api://AzureADTokenExchange",
        "ARM_AUDIENCE": "https://management.azure.com",
        # Key Vault's challenge names a resource that must be a parent domain of the vault's host;
        # on 127.0.0.1 no domain can be.
        "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": "false",
        "BAP_ENDPOINT": cloud.power_platform_url,
        "POWERAPPS_ENDPOINT": cloud.power_platform_url,
        "FLOW_ENDPOINT": cloud.power_platform_url,
        "POWERBI_ENDPOINT": cloud.power_platform_url,
        "AZURE_CLIENT_ID": managed_identity_client_id,
        "PAL_CA_BUNDLE": str(cloud.ca_path),
        "IDENTITY_ENDPOINT": cloud.identity_endpoint,
        "IDENTITY_HEADER": cloud.identity_header,
    }
    if service_bus_connection_string:
        values["ServiceBusConnection"] = service_bus_connection_string
    if dashboard_tenant_id and dashboard_client_id:
        # The dashboard's sign-in: operators of the partner's tenant, tokens for its app registration
        # (shared/dashboard/auth.py); the sandbox's Entra ID signs them in (sandbox/cloud/authorize.py).
        values["DASHBOARD_TENANT_ID"] = dashboard_tenant_id
        values["DASHBOARD_CLIENT_ID"] = dashboard_client_id
    return values
