"""Every setting the product reads, validated in one place at start-up."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlparse

from shared.spine.identifiers import is_guid, is_partner_id

_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?$")
_VAULT_NAME = re.compile(r"^[A-Za-z0-9-]{3,24}$")


@dataclass(frozen=True)
class Cloud:
    """The hosts of one Azure cloud that the code sends tokens or assertions to, and the audience of
    the managed-identity token that its Entra ID accepts as a federated assertion ("Configure an
    application to trust a managed identity", Microsoft Learn)."""

    name: str
    authority_hosts: frozenset[str]
    arm_hosts: frozenset[str]
    key_vault_suffix: str
    token_exchange_audience: str


CLOUDS = (
    Cloud(
        "AzureCloud",
        frozenset({"login.microsoftonline.com"}),
        frozenset({"management.azure.com"}),
        ".vault.azure.net",
        "api://AzureADTokenExchange",
    ),
    Cloud(
        "AzureUSGovernment",
        frozenset({"login.microsoftonline.us", "login.usgovcloudapi.net"}),
        frozenset({"management.usgovcloudapi.net"}),
        ".vault.usgovcloudapi.net",
        "api://AzureADTokenExchangeUSGov",
    ),
    Cloud(
        "AzureChinaCloud",
        frozenset({"login.chinacloudapi.cn", "login.partner.microsoftonline.cn"}),
        frozenset({"management.chinacloudapi.cn"}),
        ".vault.azure.cn",
        "api://AzureADTokenExchangeChina",
    ),
)


_POWER_PLATFORM_HOSTS = {
    "BAP_ENDPOINT": "api.bap.microsoft.com",
    "POWERAPPS_ENDPOINT": "api.powerapps.com",
    "FLOW_ENDPOINT": "api.flow.microsoft.com",
    "POWERBI_ENDPOINT": "api.powerbi.com",
}
_DATAVERSE_HOST = re.compile(r"^[a-z0-9-]+\.crm[0-9]*\.dynamics\.com$")


@dataclass(frozen=True)
class PowerPlatformEndpoints:
    """The Power Platform admin APIs the attribution audit reads (public cloud), and which Dataverse
    instance URLs may receive a token: an environment's URL comes from BAP's answer, so it is
    checked before a token is sent to it."""

    bap: str
    powerapps: str
    flow: str
    powerbi: str
    allow_custom: bool

    def dataverse_allowed(self, instance_url: str) -> bool:
        """An https Dataverse host of the public cloud (or, for the local stand-in, a URL on the same
        origin as the admin APIs)."""
        parsed = urlparse(instance_url)
        if parsed.scheme != "https" or not parsed.hostname or parsed.username or parsed.password:
            return False
        if _DATAVERSE_HOST.fullmatch(parsed.hostname.lower()) and parsed.port in (None, 443):
            return True
        return self.allow_custom and f"{parsed.scheme}://{parsed.netloc}" == self.bap.rstrip("/")


PUBLIC_POWER_PLATFORM = PowerPlatformEndpoints(
    "https://api.bap.microsoft.com",
    "https://api.powerapps.com",
    "https://api.flow.microsoft.com",
    "https://api.powerbi.com",
    allow_custom=False,
)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


class OnOtherPartner(StrEnum):
    """What to do when the identity is already linked to a different partner ID."""

    UPDATE = "update"
    KEEP = "keep"


@dataclass(frozen=True)
class Settings:
    partner_id: str
    allowed_partner_ids: frozenset[str]
    """Every partner ID of ours (PARTNER_ID and any other location IDs): a message or relink may ask
    for no other, and a link found on any other is an ALERT."""
    onboarding_queue: str
    verify_queue: str
    on_other_partner: OnOtherPartner
    ledger_connection_string: str | None
    """Connection string of the ledger's storage (local development, Azurite)."""
    ledger_table_service_uri: str | None
    """Table endpoint for identity-based access (Azure)."""
    ledger_table: str
    authority_host: str
    arm_endpoint: str
    key_vault_url: str | None
    key_vault_verify_challenge_resource: bool
    managed_identity_client_id: str | None
    federated_token_audience: str
    """Derived from the cloud of AZURE_AUTHORITY_HOST unless FEDERATED_TOKEN_AUDIENCE says it."""
    arm_audience: str
    """Resource of the ARM tokens: ARM_ENDPOINT itself unless ARM_AUDIENCE (local sandbox) says."""
    allow_custom_endpoints: bool
    """ALLOW_CUSTOM_ENDPOINTS: endpoints outside the known clouds (the local sandbox only)."""
    ca_bundle: str | None
    """Extra CA bundle to trust (local sandbox only); None means the system's trust store."""
    max_message_bytes: int
    service_bus_connection_string: str | None
    service_bus_namespace: str | None
    max_attempts: int
    retry_base_seconds: float
    retry_max_seconds: float
    credential_pause_seconds: float
    credential_broken_max_seconds: float
    """How long messages are deferred for a broken partner credential before they are failed."""
    run_summary_check_seconds: float
    credential_cache_size: int
    host_credential: str
    """`managed-identity` (Azure) or `default` (DefaultAzureCredential: a developer's az login)."""
    sdk_retry_total: int
    http_timeout_seconds: float
    audit_queue: str = "attribution-audit"
    """Queue of the attribution audit's customer and environment messages (AUDIT_QUEUE)."""
    power_platform: PowerPlatformEndpoints = PUBLIC_POWER_PLATFORM

    @property
    def connection_verify(self) -> str | bool:
        return self.ca_bundle or True

    @property
    def arm_scope(self) -> str:
        """The scope of the customer tokens for Azure Resource Manager, in the configured cloud."""
        return f"{self.arm_audience}/.default"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings; raises SettingsError naming the first bad one."""
        return _Reader(os.environ if env is None else env).settings()


@dataclass(frozen=True)
class SignInCloud:
    """Entra ID and ARM for a person's sign-in (palctl's user accounts), read and checked like the
    service's: AZURE_AUTHORITY_HOST, ARM_ENDPOINT, ARM_AUDIENCE, ALLOW_CUSTOM_ENDPOINTS, PAL_CA_BUNDLE."""

    authority: str
    arm_endpoint: str
    arm_audience: str
    allow_custom: bool
    ca_bundle: str | None

    @property
    def arm_scope(self) -> str:
        return f"{self.arm_audience}/.default"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SignInCloud:
        return _Reader(os.environ if env is None else env).sign_in_cloud()


@dataclass(frozen=True)
class _CloudEndpoints:
    authority: str
    arm: str
    key_vault_url: str | None
    audience: str
    arm_audience: str
    allow_custom: bool


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _get(self, name: str, default: str | None = None) -> str | None:
        value = self._env.get(name, "").strip()
        return value or default

    def _required(self, name: str) -> str:
        value = self._get(name)
        if value is None:
            raise SettingsError(f"setting {name} is required but not set")
        return value

    def _https_url(self, name: str, default: str | None = None) -> str | None:
        value = self._get(name, default)
        if value is None:
            return None
        parsed = urlparse(value)
        if parsed.scheme != "https" or not parsed.netloc:
            raise SettingsError(f"setting {name} must be an https:// URL")
        return value.rstrip("/")

    def _cloud_of(self, name: str, url: str, allow_custom: bool) -> Cloud | None:
        """The known cloud an endpoint belongs to; None for a custom one (only with the override).

        A typo here would send the managed-identity assertion, customer tokens or secrets to some
        other host, so anything but the known clouds' hosts needs ALLOW_CUSTOM_ENDPOINTS=true, and a
        known host must be given as https://HOST alone.
        """
        parsed = urlparse(url)
        host = (parsed.hostname or "").lower()
        found = None
        for cloud in CLOUDS:
            vault = host.removesuffix(cloud.key_vault_suffix)
            if (
                (name == "AZURE_AUTHORITY_HOST" and host in cloud.authority_hosts)
                or (name == "ARM_ENDPOINT" and host in cloud.arm_hosts)
                or (name == "KEY_VAULT_URL" and vault != host and _VAULT_NAME.fullmatch(vault))
            ):
                found = cloud
        if found is not None:
            try:
                port = parsed.port
            except ValueError:
                port = -1
            if (
                parsed.username is not None
                or port is not None
                or parsed.path not in {"", "/"}
                or parsed.params
                or parsed.query
                or parsed.fragment
            ):
                raise SettingsError(
                    f"setting {name} must be https://HOST alone (no user, port, path or query)"
                )
            return found
        if allow_custom:
            return None
        known = ", ".join(cloud.name for cloud in CLOUDS)
        raise SettingsError(
            f"setting {name} is not an endpoint of a known Azure cloud ({known}); set "
            "ALLOW_CUSTOM_ENDPOINTS=true only for a local stand-in such as the sandbox"
        )

    def _int(self, name: str, default: int, lowest: int, highest: int) -> int:
        raw = self._get(name, str(default))
        assert raw is not None
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"setting {name} must be an integer") from None
        if not lowest <= value <= highest:
            raise SettingsError(f"setting {name} must be between {lowest} and {highest}")
        return value

    def _choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = (self._get(name) or default).lower()
        if value not in allowed:
            raise SettingsError(f"setting {name} must be one of: {', '.join(allowed)}")
        return value

    def _bool(self, name: str, default: bool) -> bool:
        raw = (self._get(name) or str(default)).lower()
        if raw not in {"true", "false"}:
            raise SettingsError(f"setting {name} must be true or false")
        return raw == "true"

    def _partner_ids(self, name: str, *, including: str) -> frozenset[str]:
        """A comma-separated list of partner IDs that must include `including` (its default)."""
        raw = self._get(name, including)
        assert raw is not None
        ids = [part.strip() for part in raw.split(",") if part.strip()]
        if not ids or not all(is_partner_id(part) for part in ids):
            raise SettingsError(
                f"setting {name} must be a comma-separated list of partner IDs (6 to 10 digits)"
            )
        if including not in ids:
            raise SettingsError(f"setting {name} must include PARTNER_ID")
        return frozenset(ids)

    def _ledger(self) -> tuple[str | None, str | None, str]:
        """The ledger's connection (a connection string or an identity-based endpoint) and table."""
        connection_string = self._get("LedgerStorage")
        table_uri = self._get("LedgerStorage__tableServiceUri")
        if (connection_string is None) == (table_uri is None):
            raise SettingsError(
                "set exactly one of LedgerStorage (connection string) or "
                "LedgerStorage__tableServiceUri (identity-based) for the ledger"
            )
        if table_uri is not None and urlparse(table_uri).scheme != "https":
            raise SettingsError("setting LedgerStorage__tableServiceUri must be an https:// URL")

        table = self._get("LEDGER_TABLE", "PalLinks")
        assert table is not None
        if not _TABLE_NAME.fullmatch(table):
            raise SettingsError("setting LEDGER_TABLE must be 3-63 letters or digits, starting with a letter")
        return connection_string, table_uri, table

    def _endpoints(self, *, key_vault: bool) -> tuple[dict[str, str], Cloud | None, bool]:
        """Entra ID's and ARM's endpoints (and Key Vault's), all of one known cloud (or any, when
        allowed): the endpoints by setting name, the cloud of the sign-in, and whether custom ones are."""
        authority = self._https_url("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com")
        arm = self._https_url("ARM_ENDPOINT", "https://management.azure.com")
        key_vault_url = self._https_url("KEY_VAULT_URL") if key_vault else None
        assert authority is not None and arm is not None
        allow_custom = self._bool("ALLOW_CUSTOM_ENDPOINTS", False)
        endpoints = {"AZURE_AUTHORITY_HOST": authority, "ARM_ENDPOINT": arm}
        endpoints |= {"KEY_VAULT_URL": key_vault_url} if key_vault_url else {}
        clouds = {name: self._cloud_of(name, url, allow_custom) for name, url in endpoints.items()}
        sign_in_cloud = clouds["AZURE_AUTHORITY_HOST"]
        for name, cloud in clouds.items():
            if cloud is not None and sign_in_cloud is not None and cloud != sign_in_cloud:
                raise SettingsError(
                    f"setting {name} belongs to {cloud.name}, "
                    f"but AZURE_AUTHORITY_HOST to {sign_in_cloud.name}"
                )
        return endpoints, sign_in_cloud, allow_custom

    def _arm_audience(self, arm: str, allow_custom: bool) -> str:
        arm_audience = self._https_url("ARM_AUDIENCE")
        if arm_audience is not None and not allow_custom:
            raise SettingsError(
                "setting ARM_AUDIENCE is for a local stand-in of ARM only (with ALLOW_CUSTOM_ENDPOINTS=true)"
            )
        return arm_audience or arm

    def sign_in_cloud(self) -> SignInCloud:
        """What a person's sign-in and ARM calls need (palctl's user accounts)."""
        endpoints, _, allow_custom = self._endpoints(key_vault=False)
        arm = endpoints["ARM_ENDPOINT"]
        _, ca_bundle = self._host()
        return SignInCloud(
            endpoints["AZURE_AUTHORITY_HOST"],
            arm,
            self._arm_audience(arm, allow_custom),
            allow_custom,
            ca_bundle,
        )

    def _cloud(self) -> _CloudEndpoints:
        """Entra ID, ARM and Key Vault endpoints of one known cloud (or any, when allowed), and the
        audiences that follow from it."""
        endpoints, sign_in_cloud, allow_custom = self._endpoints(key_vault=True)
        authority, arm = endpoints["AZURE_AUTHORITY_HOST"], endpoints["ARM_ENDPOINT"]
        key_vault_url = endpoints.get("KEY_VAULT_URL")
        audience = self._get("FEDERATED_TOKEN_AUDIENCE")
        if audience is None:
            if sign_in_cloud is None:
                raise SettingsError(
                    "setting FEDERATED_TOKEN_AUDIENCE is required when AZURE_AUTHORITY_HOST is not a "
                    "known cloud's (there is no cloud to derive it from)"
                )
            audience = sign_in_cloud.token_exchange_audience
        elif sign_in_cloud is not None and audience != sign_in_cloud.token_exchange_audience:
            raise SettingsError(
                f"setting FEDERATED_TOKEN_AUDIENCE must be {sign_in_cloud.token_exchange_audience} in "
                f"{sign_in_cloud.name} (or left empty): Entra ID accepts no other"
            )
        arm_audience = self._arm_audience(arm, allow_custom)
        return _CloudEndpoints(authority, arm, key_vault_url, audience, arm_audience, allow_custom)

    def _power_platform(self, allow_custom: bool) -> PowerPlatformEndpoints:
        """The admin APIs' hosts: the public cloud's, unless ALLOW_CUSTOM_ENDPOINTS (a local stand-in)."""
        urls = [
            self._https_url("BAP_ENDPOINT", "https://api.bap.microsoft.com"),
            self._https_url("POWERAPPS_ENDPOINT", "https://api.powerapps.com"),
            self._https_url("FLOW_ENDPOINT", "https://api.flow.microsoft.com"),
            self._https_url("POWERBI_ENDPOINT", "https://api.powerbi.com"),
        ]
        for (name, host), url in zip(_POWER_PLATFORM_HOSTS.items(), urls, strict=True):
            assert url is not None
            if urlparse(url).hostname != host and not allow_custom:
                raise SettingsError(
                    f"setting {name} must be https://{host} "
                    "(other hosts only with ALLOW_CUSTOM_ENDPOINTS=true)"
                )
        bap, powerapps, flow, powerbi = (url.rstrip("/") for url in urls if url is not None)
        return PowerPlatformEndpoints(bap, powerapps, flow, powerbi, allow_custom)

    def _partner(self) -> tuple[str, frozenset[str], OnOtherPartner]:
        """PARTNER_ID, ALLOWED_PARTNER_IDS (always including it) and ON_OTHER_PARTNER."""
        partner_id = self._required("PARTNER_ID")
        if not is_partner_id(partner_id):
            raise SettingsError("setting PARTNER_ID must be 6 to 10 digits (the Associated Partner ID)")
        allowed = self._partner_ids("ALLOWED_PARTNER_IDS", including=partner_id)
        on_other = self._get("ON_OTHER_PARTNER", OnOtherPartner.UPDATE.value)
        assert on_other is not None
        try:
            return partner_id, allowed, OnOtherPartner(on_other.lower())
        except ValueError:
            raise SettingsError("setting ON_OTHER_PARTNER must be 'update' or 'keep'") from None

    def _host(self) -> tuple[str | None, str | None]:
        """The Function App's managed identity (AZURE_CLIENT_ID) and an extra CA bundle, if any."""
        client_id = self._get("AZURE_CLIENT_ID")
        if client_id is not None and not is_guid(client_id):
            raise SettingsError("setting AZURE_CLIENT_ID must be a GUID")
        ca_bundle = self._get("PAL_CA_BUNDLE")
        if ca_bundle is not None and not Path(ca_bundle).is_file():
            raise SettingsError("setting PAL_CA_BUNDLE must name an existing PEM file")
        return client_id, ca_bundle

    def _queues(self) -> tuple[str | None, tuple[str, str, str]]:
        """The Service Bus namespace (identity-based connection) and the queues: onboarding, verify,
        audit."""
        namespace = self._get("ServiceBusConnection__fullyQualifiedNamespace")
        if namespace is not None and not _HOST_NAME.fullmatch(namespace):
            raise SettingsError(
                "setting ServiceBusConnection__fullyQualifiedNamespace must be a host name "
                "such as contoso.servicebus.windows.net"
            )
        queue = self._get("ONBOARDING_QUEUE", "customer-onboarded")
        verify_queue = self._get("VERIFY_QUEUE", "link-verify")
        audit_queue = self._get("AUDIT_QUEUE", "attribution-audit")
        assert queue is not None and verify_queue is not None and audit_queue is not None
        return namespace, (queue, verify_queue, audit_queue)

    def settings(self) -> Settings:
        partner_id, allowed, on_other_partner = self._partner()
        connection_string, table_uri, table = self._ledger()
        client_id, ca_bundle = self._host()
        namespace, (queue, verify_queue, audit_queue) = self._queues()
        cloud = self._cloud()
        return Settings(
            partner_id=partner_id,
            allowed_partner_ids=allowed,
            onboarding_queue=queue,
            verify_queue=verify_queue,
            on_other_partner=on_other_partner,
            ledger_connection_string=connection_string,
            ledger_table_service_uri=table_uri,
            ledger_table=table,
            authority_host=cloud.authority,
            arm_endpoint=cloud.arm,
            key_vault_url=cloud.key_vault_url,
            key_vault_verify_challenge_resource=self._bool("KEY_VAULT_VERIFY_CHALLENGE_RESOURCE", True),
            managed_identity_client_id=client_id,
            federated_token_audience=cloud.audience,
            arm_audience=cloud.arm_audience,
            allow_custom_endpoints=cloud.allow_custom,
            ca_bundle=ca_bundle,
            max_message_bytes=self._int("MAX_MESSAGE_BYTES", 64 * 1024, 1024, 256 * 1024),
            service_bus_connection_string=self._get("ServiceBusConnection"),
            service_bus_namespace=namespace,
            max_attempts=self._int("MAX_ATTEMPTS", 8, 1, 100),
            retry_base_seconds=float(self._int("RETRY_BASE_SECONDS", 30, 1, 3600)),
            retry_max_seconds=float(self._int("RETRY_MAX_SECONDS", 3600, 1, 7 * 86400)),
            credential_pause_seconds=float(self._int("CREDENTIAL_BROKEN_PAUSE_SECONDS", 900, 1, 86400)),
            credential_broken_max_seconds=float(
                self._int("CREDENTIAL_BROKEN_MAX_SECONDS", 86400, 1, 30 * 86400)
            ),
            run_summary_check_seconds=float(self._int("RUN_SUMMARY_CHECK_SECONDS", 60, 1, 3600)),
            credential_cache_size=self._int("CREDENTIAL_CACHE_SIZE", 2000, 10, 1_000_000),
            host_credential=self._choice(
                "HOST_CREDENTIAL", "managed-identity", ("managed-identity", "default")
            ),
            sdk_retry_total=self._int("SDK_RETRY_TOTAL", 2, 0, 10),
            http_timeout_seconds=float(self._int("HTTP_TIMEOUT_SECONDS", 30, 1, 230)),
            audit_queue=audit_queue,
            power_platform=self._power_platform(cloud.allow_custom),
        )
