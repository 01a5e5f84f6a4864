"""Settings: read in one place; a missing or malformed one fails with a message naming it."""

from __future__ import annotations

import pytest

from shared.settings import OnOtherPartner, Settings, SettingsError

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
