"""Settings: read in one place; a missing or malformed one fails with a message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.spine.settings import OnOtherPartner, Settings, SettingsError

BASE = {"PARTNER_ID": "1234567", "LedgerStorage": "UseDevelopmentStorage=true"}


def test_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.partner_id == "1234567"
    assert settings.onboarding_queue == "customer-onboarded"
    assert settings.on_other_partner is OnOtherPartner.UPDATE
    assert settings.authority_host == "https://login.microsoftonline.com"
    assert settings.arm_endpoint == "https://management.azure.com"
    assert settings.ledger_table == "PalLinks"
    assert settings.connection_verify is True
    assert settings.allowed_partner_ids == {"1234567"}
    assert settings.credential_broken_max_seconds == 86400


def test_allowed_partner_ids_list_every_location_id_of_ours() -> None:
    settings = Settings.from_env(BASE | {"ALLOWED_PARTNER_IDS": " 1234567, 2345678 ,"})
    assert settings.allowed_partner_ids == {"1234567", "2345678"}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"PARTNER_ID": ""}, "PARTNER_ID"),
        ({"PARTNER_ID": "12ab567"}, "PARTNER_ID"),
        ({"ON_OTHER_PARTNER": "overwrite"}, "ON_OTHER_PARTNER"),
        ({"ALLOWED_PARTNER_IDS": "2345678"}, "ALLOWED_PARTNER_IDS"),
        ({"ALLOWED_PARTNER_IDS": "1234567,12ab"}, "ALLOWED_PARTNER_IDS"),
        ({"CREDENTIAL_BROKEN_MAX_SECONDS": "0"}, "CREDENTIAL_BROKEN_MAX_SECONDS"),
        ({"LedgerStorage": ""}, "LedgerStorage"),
        ({"LedgerStorage__tableServiceUri": "https://x.table.core.windows.net"}, "LedgerStorage"),
        ({"LEDGER_TABLE": "1bad"}, "LEDGER_TABLE"),
        ({"AZURE_CLIENT_ID": "not-a-guid"}, "AZURE_CLIENT_ID"),
        ({"ARM_ENDPOINT": "http://127.0.0.1:1"}, "ARM_ENDPOINT"),
        ({"KEY_VAULT_URL": "vault"}, "KEY_VAULT_URL"),
        ({"PAL_CA_BUNDLE": "/nonexistent/ca.pem"}, "PAL_CA_BUNDLE"),
        ({"MAX_MESSAGE_BYTES": "lots"}, "MAX_MESSAGE_BYTES"),
        ({"SDK_RETRY_TOTAL": "99"}, "SDK_RETRY_TOTAL"),
        ({"KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": "maybe"}, "KEY_VAULT_VERIFY_CHALLENGE_RESOURCE"),
    ],
)
def test_bad_settings_are_named(overrides: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(BASE | overrides)


def test_identity_based_ledger() -> None:
    env = {"PARTNER_ID": "1234567", "LedgerStorage__tableServiceUri": "https://acct.table.core.windows.net"}
    settings = Settings.from_env(env)
    assert settings.ledger_connection_string is None
    assert settings.ledger_table_service_uri == "https://acct.table.core.windows.net"


def test_host_credential_choice() -> None:
    assert Settings.from_env(BASE).host_credential == "managed-identity"
    assert Settings.from_env(BASE | {"HOST_CREDENTIAL": "Default"}).host_credential == "default"
    with pytest.raises(SettingsError, match="HOST_CREDENTIAL"):
        Settings.from_env(BASE | {"HOST_CREDENTIAL": "cli"})


# --- clouds: endpoints, token audiences and scopes ---------------------------------------------

PUBLIC = {
    "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/",
    "ARM_ENDPOINT": "https://management.azure.com/",
    "KEY_VAULT_URL": "https://kv-abc123.vault.azure.net/",
}
US_GOV = {
    "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.us/",
    "ARM_ENDPOINT": "https://management.usgovcloudapi.net/",
    "KEY_VAULT_URL": "https://kv-abc123.vault.usgovcloudapi.net/",
}
CHINA = {
    "AZURE_AUTHORITY_HOST": "https://login.chinacloudapi.cn/",
    "ARM_ENDPOINT": "https://management.chinacloudapi.cn/",
    "KEY_VAULT_URL": "https://kv-abc123.vault.azure.cn/",
}


@pytest.mark.parametrize(
    ("cloud", "audience", "scope"),
    [
        (PUBLIC, "api://AzureADTokenExchange", "https://management.azure.com/.default"),
        (US_GOV, "api://AzureADTokenExchangeUSGov", "https://management.usgovcloudapi.net/.default"),
        (CHINA, "api://AzureADTokenExchangeChina", "https://management.chinacloudapi.cn/.default"),
    ],
    ids=["public", "us-gov", "china"],
)
def test_token_audience_and_arm_scope_follow_the_configured_cloud(
    cloud: dict[str, str], audience: str, scope: str
) -> None:
    # What infra/app/function.bicep sets from environment() (with the trailing slashes it gives).
    settings = Settings.from_env(BASE | cloud)
    assert settings.federated_token_audience == audience
    assert settings.arm_scope == scope
    assert settings.arm_endpoint == scope.removesuffix("/.default")
    assert settings.authority_host == cloud["AZURE_AUTHORITY_HOST"].rstrip("/")


def test_the_public_cloud_is_the_default() -> None:
    settings = Settings.from_env(BASE)
    assert settings.federated_token_audience == "api://AzureADTokenExchange"
    assert settings.arm_scope == "https://management.azure.com/.default"


def test_china_is_known_by_both_sign_in_hosts() -> None:
    partner = CHINA | {"AZURE_AUTHORITY_HOST": "https://login.partner.microsoftonline.cn"}
    assert Settings.from_env(BASE | partner).federated_token_audience == "api://AzureADTokenExchangeChina"


def test_an_explicit_audience_of_the_same_cloud_is_kept() -> None:
    settings = Settings.from_env(
        BASE | US_GOV | {"FEDERATED_TOKEN_AUDIENCE": "api://AzureADTokenExchangeUSGov"}
    )
    assert settings.federated_token_audience == "api://AzureADTokenExchangeUSGov"


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        # A typo or a foreign host would receive the managed-identity assertion or customer tokens.
        ({"AZURE_AUTHORITY_HOST": "https://login.microsoftonline.co"}, "AZURE_AUTHORITY_HOST"),
        ({"AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com.example.net"}, "AZURE_AUTHORITY_HOST"),
        ({"AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/tenant"}, "AZURE_AUTHORITY_HOST"),
        ({"AZURE_AUTHORITY_HOST": "https://user@login.microsoftonline.com"}, "AZURE_AUTHORITY_HOST"),
        ({"AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com:8443"}, "AZURE_AUTHORITY_HOST"),
        ({"ARM_ENDPOINT": "https://management.azure.co"}, "ARM_ENDPOINT"),
        ({"ARM_ENDPOINT": "https://management.azure.com/?x=1"}, "ARM_ENDPOINT"),
        ({"ARM_ENDPOINT": "https://127.0.0.1:8443"}, "ARM_ENDPOINT"),
        ({"KEY_VAULT_URL": "https://kv-abc123.vault.azure.net.example.com"}, "KEY_VAULT_URL"),
        ({"KEY_VAULT_URL": "https://vault.azure.net"}, "KEY_VAULT_URL"),
        ({"KEY_VAULT_URL": "https://a.b.vault.azure.net"}, "KEY_VAULT_URL"),
        ({"KEY_VAULT_URL": "https://kv-abc123.vault.azure.net/secrets"}, "KEY_VAULT_URL"),
        # Two clouds at once is never right: US Gov's ARM with the public sign-in.
        ({"ARM_ENDPOINT": "https://management.usgovcloudapi.net"}, "ARM_ENDPOINT"),
        ({"KEY_VAULT_URL": "https://kv-abc123.vault.azure.cn"}, "KEY_VAULT_URL"),
        # An audience of another cloud can never be accepted by this cloud's Entra ID.
        ({"FEDERATED_TOKEN_AUDIENCE": "api://AzureADTokenExchangeUSGov"}, "FEDERATED_TOKEN_AUDIENCE"),
        # Only for the local sandbox, and only with the override.
        ({"ARM_AUDIENCE": "https://management.azure.com"}, "ARM_AUDIENCE"),
        ({"ALLOW_CUSTOM_ENDPOINTS": "yes"}, "ALLOW_CUSTOM_ENDPOINTS"),
    ],
)
def test_endpoints_outside_the_known_clouds_are_refused(overrides: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(BASE | overrides)


SANDBOX = {
    "AZURE_AUTHORITY_HOST": "https://127.0.0.1:8443",
    "ARM_ENDPOINT": "https://127.0.0.1:8443",
    "KEY_VAULT_URL": "https://127.0.0.1:8443",
}


def test_custom_endpoints_need_the_explicit_override() -> None:
    with pytest.raises(SettingsError, match="ALLOW_CUSTOM_ENDPOINTS"):
        Settings.from_env(BASE | SANDBOX)
    settings = Settings.from_env(
        BASE
        | SANDBOX
        | {
            "ALLOW_CUSTOM_ENDPOINTS": "true",
            "FEDERATED_TOKEN_AUDIENCE": "api://AzureADTokenExchange",
            "ARM_AUDIENCE": "https://management.azure.com",
        }
    )
    assert settings.allow_custom_endpoints is True
    assert settings.authority_host == settings.arm_endpoint == "https://127.0.0.1:8443"
    assert settings.arm_scope == "https://management.azure.com/.default"


def test_a_custom_sign_in_host_names_its_audience() -> None:
    # No cloud to derive it from: it must be said.
    with pytest.raises(SettingsError, match="FEDERATED_TOKEN_AUDIENCE"):
        Settings.from_env(BASE | SANDBOX | {"ALLOW_CUSTOM_ENDPOINTS": "true"})


def test_a_custom_arm_endpoint_defaults_to_itself_as_audience() -> None:
    env = BASE | SANDBOX | {"ALLOW_CUSTOM_ENDPOINTS": "true", "FEDERATED_TOKEN_AUDIENCE": "api://x"}
    assert Settings.from_env(env).arm_scope == "https://127.0.0.1:8443/.default"


def test_the_sandbox_settings_allow_its_endpoints() -> None:
    from sandbox.local_env import local_settings

    class Cloud:
        authority = arm_url = key_vault_url = power_platform_url = "https://127.0.0.1:8443"
        ca_path = __file__
        identity_endpoint = "https://127.0.0.1:8443/msi/token"
        identity_header = "header"

    env = local_settings(Cloud(), "UseDevelopmentStorage=true", managed_identity_client_id=GUID)
    settings = Settings.from_env(env)
    assert settings.allow_custom_endpoints is True
    # The sandbox's Entra ID and ARM check the public cloud's audiences.
    assert settings.federated_token_audience == "api://AzureADTokenExchange"
    assert settings.arm_scope == "https://management.azure.com/.default"
    # The Power Platform stand-ins: their own endpoints, and Dataverse only on the sandbox's origin.
    assert settings.power_platform.bap == "https://127.0.0.1:8443"
    assert settings.power_platform.dataverse_allowed("https://127.0.0.1:8443/dataverse/env-1/")
    assert not settings.power_platform.dataverse_allowed("https://127.0.0.1:9999/dataverse/env-1/")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://contoso.crm.dynamics.com/", True),
        ("https://contoso.crm4.dynamics.com/", True),
        ("https://contoso.crm.dynamics.com:443/", True),
        ("http://contoso.crm.dynamics.com/", False),
        ("https://contoso.crm.dynamics.com.evil.example/", False),
        ("https://user:pw@contoso.crm.dynamics.com/", False),
        ("https://contoso.crm.dynamics.com:8443/", False),
        ("https://evil.example/contoso.crm.dynamics.com/", False),
        ("https://127.0.0.1:8443/dataverse/env-1/", False),
    ],
)
def test_a_token_goes_only_to_a_dataverse_host_of_the_public_cloud(url: str, allowed: bool) -> None:
    settings = Settings.from_env({"PARTNER_ID": "1234567", "LedgerStorage": "UseDevelopmentStorage=true"})
    assert settings.power_platform.dataverse_allowed(url) is allowed


def test_power_platform_endpoints_outside_the_public_cloud_need_custom_endpoints() -> None:
    env = {"PARTNER_ID": "1234567", "LedgerStorage": "UseDevelopmentStorage=true"}
    with pytest.raises(SettingsError, match="BAP_ENDPOINT must be https://api.bap.microsoft.com"):
        Settings.from_env(env | {"BAP_ENDPOINT": "https://evil.example"})


GUID = "53a2a22c-5cbd-47f7-b588-f5bb5f191ead"


async def test_the_assertion_is_requested_for_the_clouds_exchange_audience() -> None:
    from azure.core.credentials import AccessToken

    from shared.spine.credentials import _FederatedCredential

    asked: list[tuple[str, ...]] = []

    class Host:
        async def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
            asked.append(scopes)
            return AccessToken("assertion", 0)

        async def close(self) -> None:
            pass

    settings = Settings.from_env(BASE | US_GOV)
    credential = _FederatedCredential(
        GUID,
        GUID,
        Host(),
        settings.federated_token_audience,
        authority=settings.authority_host,  # type: ignore[arg-type]
    )
    await credential._refresh_assertion()
    await credential.close()
    assert asked == [("api://AzureADTokenExchangeUSGov/.default",)]


def test_no_module_hard_codes_the_public_arm_scope() -> None:
    import shared.links.linker
    import shared.spine.credentials

    for module in (shared.spine.credentials, shared.links.linker):
        source = Path(module.__file__ or "").read_text()
        assert "management.azure.com" not in source, module.__name__
    assert not hasattr(shared.spine.credentials, "ARM_SCOPE")
