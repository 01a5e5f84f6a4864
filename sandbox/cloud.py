"""Local HTTPS stand-in for Entra ID, ARM ManagementPartner, Key Vault and App Service managed identity."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http
import json
import logging
import math
import random
import re
import secrets
import signal
import socket
import ssl
import string
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jwt.types import Options

from .scenario import EXCHANGE_AUDIENCE, FaultRule, PutWhenLinked, Scenario, load_scenario, parse_tags
from .tls import make_tls

logger = logging.getLogger(__name__)

ARM_API_VERSION = "2018-02-01"
ARM_AUDIENCES = frozenset(
    {"https://management.azure.com", "https://management.azure.com/", "https://management.core.windows.net/"}
)
MI_API_VERSION = "2019-08-01"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRAPH = "https://graph.microsoft.com"
_SECRET_ALPHABET = string.ascii_letters + string.digits + "_~.-"
# ARM's tenant-level token buckets per principal: (burst, refill per second).
_RATE_LIMITS = {"reads": (250.0, 25.0), "writes": (200.0, 10.0)}

# AADSTS code -> (HTTP status, OAuth error, description). Placeholders are filled from the request,
# never from a client secret or an assertion.
AADSTS: dict[int, tuple[int, str, str]] = {
    # Needs action in the customer tenant.
    700016: (
        400,
        "unauthorized_client",
        "Application with identifier '{client_id}' was not found in the directory '{tenant_name}'. This can "
        "happen if the application has not been installed by the administrator of the tenant or consented to "
        "by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
    ),
    7000229: (
        400,
        "invalid_client",
        "The client application {client_id} is missing service principal in the tenant {tenant}. See "
        "instructions here: https://go.microsoft.com/fwlink/?linkid=2225119",
    ),
    90002: (
        400,
        "invalid_request",
        "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
        "into the correct cloud. Check with your subscription administrator, this may happen if there are "
        "no active subscriptions for the tenant.",
    ),
    500011: (
        400,
        "invalid_resource",
        "The resource principal named {resource} was not found in the tenant named {tenant_name}. This can "
        "happen if the application has not been installed by the administrator of the tenant or consented to "
        "by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
    ),
    7000112: (400, "unauthorized_client", "Application '{client_id}'({app_name}) is disabled."),
    53003: (
        400,
        "invalid_grant",
        "Access has been blocked by Conditional Access policies. The access policy does not allow token "
        "issuance.",
    ),
    # The partner's own credential is broken.
    7000215: (
        401,
        "invalid_client",
        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
        "value, not the client secret ID, for a secret added to app '{client_id}'.",
    ),
    7000222: (
        401,
        "invalid_client",
        "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to "
        "create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate "
        "credentials for added security: https://aka.ms/certCreds.",
    ),
    700027: (401, "invalid_client", "Client assertion failed signature validation."),
    # Transient: retry with backoff.
    50196: (
        400,
        "temporarily_unavailable",
        "The server terminated an operation because it encountered a client request loop. Please contact "
        "your app vendor.",
    ),
    90055: (
        429,
        "temporarily_unavailable",
        "There are too many incoming requests for this tenant. Please try again later.",
    ),
    90024: (503, "temporarily_unavailable", "A transient error has occurred. Please try again."),
    90033: (
        503,
        "temporarily_unavailable",
        "A transient error has occurred. The directory service is temporarily unavailable. Please try again.",
    ),
    90006: (500, "server_error", "The service is temporarily unavailable. Please try again."),
    50033: (400, "temporarily_unavailable", "There was a transient error. Please try the request again."),
    70021: (
        400,
        "invalid_request",
        "No matching federated identity record found for presented assertion. Assertion Issuer: '{issuer}'. "
        "Assertion Subject: '{subject}'. Assertion Audience: '{audience}'. "
        "https://learn.microsoft.com/entra/workload-id/workload-identity-federation",
    ),
    700024: (
        400,
        "invalid_client",
        "Client assertion is not within its valid time range. Current time: {now}, assertion valid from "
        "{nbf}, expiry time of assertion {exp}. Review the documentation at "
        "https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
    ),
    # Malformed requests: the SDKs never send these, a hand-written client might.
    900144: (400, "invalid_request", "The request body must contain the following parameter: '{parameter}'."),
    70003: (400, "unsupported_grant_type", "The app requested an unsupported grant type '{grant_type}'."),
    70011: (
        400,
        "invalid_scope",
        "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid.",
    ),
    7000218: (
        401,
        "invalid_client",
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    ),
    700021: (
        400,
        "invalid_client",
        "Client assertion application identifier doesn't match 'client_id' parameter. Review the "
        "documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
    ),
    50027: (400, "invalid_request", "JWT token is invalid or malformed."),
}


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering


def _json(status: int, payload: object, headers: dict[str, str] | None = None) -> _Reply:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return _Reply(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


@dataclass
class _Request:
    method: str
    path: list[str]
    query: dict[str, str]  # keys lower-cased: ARM's query parameter names are case-insensitive
    headers: Message
    body: bytes
    delay_ms: float = 0.0  # injected latency: the reply is held back this long
    ignore_write: bool = False  # injected: a PUT or PATCH answers 200 with the link as it was

    def header(self, name: str) -> str:
        return str(self.headers.get(name) or "")

    def json(self) -> dict[str, Any]:
        value = json.loads(self.body or b"{}")
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object")
        return value


@dataclass
class _Principal:
    client_id: str
    object_id: str
    enabled: bool = True


@dataclass
class _Tenant:
    tenant_id: str
    name: str
    principals: dict[str, _Principal] = field(default_factory=dict)  # by client ID


@dataclass
class _Link:
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
class _SecretVersion:
    value: str
    content_type: str | None = None
    tags: dict[str, str] = field(default_factory=dict)  # per version, as in Azure
    enabled: bool = True
    expires: int | None = None  # epoch seconds (the `exp` attribute); Key Vault still serves it after
    version: str = ""  # both set when stored
    created: int = 0


@dataclass
class _ActiveFault:
    rule: FaultRule
    remaining: int | None


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"  # ARM's 7 digits


def _now_iso() -> str:
    return _iso(datetime.now(UTC))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _client_secret() -> str:
    """Shaped like an Entra client secret value: 3 characters, '8Q~', 34 more."""
    pick = secrets.choice
    return (
        "".join(pick(_SECRET_ALPHABET) for _ in range(3))
        + "8Q~"
        + "".join(pick(_SECRET_ALPHABET) for _ in range(34))
    )


def self_signed_pem(common_name: str) -> tuple[str, x509.Certificate]:
    """A PEM with the private key and then the certificate, as Key Vault stores a certificate's secret."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return (key_pem + cert.public_bytes(serialization.Encoding.PEM)).decode(), cert


def _arm_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> _Reply:
    # ARM's ManagementPartner errors repeat code and message at both levels.
    return _json(
        status, {"error": {"code": code, "message": message}, "code": code, "message": message}, headers
    )


def _kv_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> _Reply:
    return _json(status, {"error": {"code": code, "message": message}}, headers)


def _status_code_name(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return f"Http{status}"


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
        self._lock = threading.Lock()
        self._random = random.Random(seed)  # fault probabilities are reproducible run to run
        self._put_when_linked: PutWhenLinked = scenario.put_when_linked
        self._apps = {app.client_id: app for app in scenario.apps}
        self._tenants: dict[str, _Tenant] = {}
        self._links: dict[tuple[str, str], _Link] = {}
        self._faults: dict[str, list[_ActiveFault]] = {}
        self._secrets: dict[str, list[_SecretVersion]] = {}
        self._app_secrets: dict[str, list[str]] = defaultdict(list)  # client ID -> valid client secrets
        self._app_certs: dict[str, dict[str, x509.Certificate]] = defaultdict(dict)  # by base64url thumbprint
        self._buckets: dict[tuple[str, str, str], tuple[float, float]] = {}
        self._stats = self._empty_stats()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ca_path: Path | None = None
        self._identity_header = ""
        self._signing_key: rsa.RSAPrivateKey | None = None
        self._kid = ""

        for tenant in scenario.tenants:
            self.add_tenant(tenant.tenant_id, tenant.name)
            for sp in tenant.service_principals:
                self.add_service_principal(tenant.tenant_id, sp.client_id, sp.object_id, enabled=sp.enabled)
            for link in tenant.links:
                self.set_link(tenant.tenant_id, link.object_id, link.partner_id)
            for rule in tenant.faults:
                self.add_fault(tenant.tenant_id, rule)
        for app in scenario.apps:
            for name in app.secrets:
                value = _client_secret()
                self._app_secrets[app.client_id].append(value)
                self._store_secret(name, _SecretVersion(value, tags=dict(app.tags.get(name, {}))))
            for name in app.certificates:
                pem, cert = self_signed_pem(app.display_name)
                for algorithm in (hashes.SHA1(), hashes.SHA256()):  # x5t and x5t#S256
                    self._app_certs[app.client_id][_b64url(cert.fingerprint(algorithm))] = cert
                tags = dict(app.tags.get(name, {}))
                self._store_secret(name, _SecretVersion(pem, "application/x-pem-file", tags))

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> CloudSandbox:
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        tls = make_tls(self._state_dir)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self._signing_key, self._kid = key, _b64url(hashlib.sha1(public_der).digest())  # kid like Entra's
        self._identity_header = secrets.token_urlsafe(32)
        self._ca_path = tls.ca_path
        self._server = _Server((self._host, self._requested_port), self, tls.server_context)
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
        return f"https://{self._host}:{self._server.server_address[1]}"

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
        return self._identity_header

    @property
    def scenario(self) -> Scenario:
        return self._scenario

    # ---- test API (thread-safe) ------------------------------------------------------------------

    def add_fault(self, tenant_id: str, rule: FaultRule) -> None:
        """Inject `rule` into requests for `tenant_id` ("*" = every tenant)."""
        if rule.kind == "aadsts" and rule.aadsts not in AADSTS:
            raise ValueError(f"aadsts: the sandbox has no AADSTS{rule.aadsts}; known: {sorted(AADSTS)}")
        with self._lock:
            self._faults.setdefault(tenant_id.lower(), []).append(_ActiveFault(rule, rule.count))

    def clear_faults(self, tenant_id: str | None = None) -> None:
        with self._lock:
            if tenant_id is None:
                self._faults.clear()
            else:
                self._faults.pop(tenant_id.lower(), None)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return cast(dict[str, Any], json.loads(json.dumps(self._stats)))  # a deep, plain copy

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = self._empty_stats()

    def links(self) -> list[dict[str, Any]]:
        with self._lock:
            return [link.snapshot() for link in self._links.values()]

    def set_link(self, tenant_id: str, object_id: str, partner_id: str) -> dict[str, Any]:
        """Link (tenant, object) to `partner_id` as if the identity had done it itself (version + 1)."""
        with self._lock:
            self._require_tenant(tenant_id)
            key = (tenant_id.lower(), object_id.lower())
            link = self._links.get(key)
            if link is None:
                link = self._new_link(*key, partner_id)
            else:
                self._write_link(link, partner_id=partner_id, state="Active")
            return link.snapshot()

    def delete_link(self, tenant_id: str, object_id: str) -> bool:
        """Soft-delete the identity's link; False when it had no active link."""
        with self._lock:
            link = self._links.get((tenant_id.lower(), object_id.lower()))
            if link is None or link.state != "Active":
                return False
            self._write_link(link, state="Deleted")
            return True

    def set_put_when_linked(self, mode: PutWhenLinked) -> None:
        """What PUT answers when the caller is already linked: 409 Conflict, or 200 with the existing link."""
        if mode not in ("conflict", "ok"):
            raise ValueError("putWhenLinked: expected 'conflict' or 'ok'")
        with self._lock:
            self._put_when_linked = mode

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
        stored = _SecretVersion(value, content_type, dict(tags or {}), enabled, expires)
        with self._lock:
            return self._store_secret(name, stored)

    def secret_value(self, name: str) -> str:
        with self._lock:
            if name not in self._secrets:
                raise KeyError(name)
            return self._secrets[name][-1].value

    def set_service_principal_enabled(self, tenant_id: str, client_id: str, enabled: bool) -> None:
        with self._lock:
            self._require_principal(tenant_id, client_id).enabled = enabled

    def remove_service_principal(self, tenant_id: str, client_id: str) -> None:
        with self._lock:
            self._require_principal(tenant_id, client_id)
            del self._tenants[tenant_id.lower()].principals[client_id.lower()]

    def add_tenant(self, tenant_id: str, name: str) -> None:
        with self._lock:
            if tenant_id.lower() in self._tenants:
                raise ValueError(f"tenant {tenant_id} already exists")
            self._tenants[tenant_id.lower()] = _Tenant(tenant_id.lower(), name)

    def add_service_principal(
        self, tenant_id: str, client_id: str, object_id: str, *, enabled: bool = True
    ) -> None:
        """What an admin consent creates: the app's service principal in a customer tenant."""
        with self._lock:
            tenant = self._require_tenant(tenant_id)
            if client_id.lower() not in self._apps:
                raise ValueError(f"no app with clientId {client_id} in the scenario")
            tenant.principals[client_id.lower()] = _Principal(client_id.lower(), object_id.lower(), enabled)

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
        return self._access_token(tenant_id, object_id, audience, app_id, lifetime_seconds, issuer=issuer)[0]

    # ---- shared helpers (callers hold no lock unless they say so) -----------------------------------

    @staticmethod
    def _empty_stats() -> dict[str, Any]:
        return {
            "tokenRequests": {},
            "openidConfigurationRequests": {},
            "armCalls": {},
            "managedIdentityRequests": 0,
            "keyVaultRequests": 0,
            "faultsApplied": {},
        }

    def _count(self, name: str, tenant_id: str | None = None, method: str | None = None) -> None:
        with self._lock:
            if tenant_id is None:
                self._stats[name] += 1
            elif method is None:
                self._stats[name][tenant_id] = self._stats[name].get(tenant_id, 0) + 1
            else:
                per_method = self._stats[name].setdefault(tenant_id, {})
                per_method[method] = per_method.get(method, 0) + 1

    def _require_tenant(self, tenant_id: str) -> _Tenant:  # lock held
        tenant = self._tenants.get(tenant_id.lower())
        if tenant is None:
            raise ValueError(f"no tenant {tenant_id}")
        return tenant

    def _require_principal(self, tenant_id: str, client_id: str) -> _Principal:  # lock held
        principal = self._require_tenant(tenant_id).principals.get(client_id.lower())
        if principal is None:
            raise ValueError(f"no service principal for app {client_id} in tenant {tenant_id}")
        return principal

    def _store_secret(self, name: str, stored: _SecretVersion) -> str:  # lock held
        """Append `stored` as the newest version, with a fresh version ID and creation time."""
        versions = self._secrets.setdefault(name, [])
        if stored.content_type is None and versions:
            stored.content_type = versions[-1].content_type
        stored.version, stored.created = uuid.uuid4().hex, int(time.time())
        versions.append(stored)
        return stored.version

    def _new_link(self, tenant_id: str, object_id: str, partner_id: str) -> _Link:  # lock held
        now = _now_iso()
        name = self._scenario.known_partner_ids.get(partner_id, "")
        link = _Link(tenant_id, object_id, partner_id, name, 1, now, now)
        self._links[(tenant_id, object_id)] = link
        return link

    def _write_link(self, link: _Link, *, partner_id: str | None = None, state: str | None = None) -> None:
        if partner_id is not None:  # lock held
            link.partner_id = partner_id
            link.partner_name = self._scenario.known_partner_ids.get(partner_id, "")
        link.state = state or link.state
        link.version += 1
        link.updated = _now_iso()

    def _take_faults(self, tenant_id: str, target: str) -> tuple[float, FaultRule | None]:
        """Total latency to add and the first terminal fault that fires; each firing uses up one count."""
        delay_ms, chosen = 0.0, None
        with self._lock:
            for key in (tenant_id, "*"):
                for active in self._faults.get(key, []):
                    rule = active.rule
                    if rule.target not in (target, "any") or active.remaining == 0:
                        continue
                    if rule.kind != "latency" and chosen is not None:
                        continue
                    if rule.probability < 1 and self._random.random() >= rule.probability:
                        continue
                    if active.remaining is not None:
                        active.remaining -= 1
                    if rule.kind == "latency":
                        delay_ms += rule.latency_ms
                    else:
                        chosen = rule
                    applied = self._stats["faultsApplied"]
                    applied[tenant_id] = applied.get(tenant_id, 0) + 1
                if key in self._faults:
                    self._faults[key] = [active for active in self._faults[key] if active.remaining != 0]
        return delay_ms, chosen

    def _fault(
        self, request: _Request, tenant_id: str, target: str, flavour: str, context: dict[str, str]
    ) -> _Reply | None:
        """The reply an injected fault makes for this request, or None to carry on.

        Latency holds the reply back rather than the processing: what the request sees is the state
        when it arrived, which opens a window for races (a link appearing between a GET and a PUT).
        """
        delay_ms, rule = self._take_faults(tenant_id, target)
        request.delay_ms += delay_ms
        if rule is None:
            return None
        if rule.kind == "ignore-write":
            request.ignore_write = True
            return None
        if rule.kind == "drop":
            return _Reply(0, drop=True)
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
        if rule.kind == "aadsts":
            return self._oauth_error(cast(int, rule.aadsts), context, headers=headers)
        status = cast(int, rule.status)
        code = _status_code_name(status)
        message = "The service is temporarily unavailable. Please try again later."
        if status == 429:
            message = "The request was throttled. Please retry after the time in the Retry-After header."
        if flavour == "arm":
            return _arm_error(status, code, message, headers)
        if flavour == "keyvault":
            return _kv_error(status, code, message, headers)
        error = "temporarily_unavailable" if status in (429, 503, 504) else "server_error"
        if status < 500 and status != 429:
            error = "invalid_request"
        return self._oauth_reply(status, error, message, [], context, headers)

    def _oauth_error(
        self,
        code: int,
        context: dict[str, str],
        *,
        description: str | None = None,
        error: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> _Reply:
        status, default_error, template = AADSTS[code]
        text = f"AADSTS{code}: " + (description or template).format_map(_Blank(context))
        return self._oauth_reply(status, error or default_error, text, [code], context, headers or {})

    def _oauth_reply(
        self,
        status: int,
        error: str,
        text: str,
        codes: list[int],
        context: dict[str, str],
        headers: dict[str, str],
    ) -> _Reply:
        trace_id = str(uuid.uuid4())
        correlation_id = context.get("correlation_id") or str(uuid.uuid4())
        timestamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        with self._lock:  # belt and braces: whatever a caller sent, no secret value leaves in an error
            known = [v.value for versions in self._secrets.values() for v in versions if len(v.value) >= 8]
        for value in known:
            text = re.sub(re.escape(value), "***", text, flags=re.IGNORECASE)
        body = {
            "error": error,
            "error_description": f"{text}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\n"
            f"Timestamp: {timestamp}",
            "error_codes": codes,
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
        }
        if codes:
            body["error_uri"] = f"https://login.microsoftonline.com/error?code={codes[0]}"
        return _json(status, body, headers)

    def _access_token(
        self,
        tenant_id: str,
        object_id: str,
        audience: str,
        app_id: str,
        lifetime: int,
        *,
        issuer: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        if self._signing_key is None:
            raise RuntimeError("the sandbox has not been started")
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": issuer or f"https://sts.windows.net/{tenant_id}/",
            "iat": now - 300,  # Entra back-dates iat/nbf by five minutes for clock skew
            "nbf": now - 300,
            "exp": now + lifetime,
            "appid": app_id,
            "appidacr": "1",
            "idp": f"https://sts.windows.net/{tenant_id}/",
            "idtyp": "app",
            "oid": object_id,
            "sub": object_id,
            "tid": tenant_id,
            "uti": _b64url(secrets.token_bytes(16)),
            "ver": "1.0",
            **(extra or {}),
        }
        # `kid` only, like Entra's v2 tokens: an x5t header is what marks a certificate assertion.
        token = jwt.encode(claims, self._signing_key, algorithm="RS256", headers={"kid": self._kid})
        return token, now + lifetime

    def _bearer(self, authorization: str) -> tuple[dict[str, Any] | None, str | None]:
        """(claims, problem): problem is None for a good sandbox token, else missing/invalid/expired."""
        if not authorization:
            return None, "missing"
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or self._signing_key is None:
            return None, "invalid"
        try:
            claims = jwt.decode(
                token.strip(),
                self._signing_key.public_key(),
                algorithms=["RS256"],
                options={
                    "verify_exp": False,  # checked below, to say so
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "require": ["aud", "exp", "tid", "oid"],
                },
            )
        except jwt.PyJWTError:
            return None, "invalid"
        if float(claims["exp"]) <= time.time():
            return claims, "expired"
        return claims, None

    # ---- routing ---------------------------------------------------------------------------------

    def _handle(self, request: _Request) -> _Reply:
        first = request.path[0].lower() if request.path else ""
        if first == "providers":
            return self._arm(request)
        if first == "secrets":
            return self._key_vault(request)
        if first == "msi":
            return self._managed_identity(request)
        if first == "_sandbox":
            return self._admin(request)
        return self._entra(request)

    # ---- Entra ID --------------------------------------------------------------------------------

    def _entra(self, request: _Request) -> _Reply:
        if not request.path:
            return _json(404, {"error": "not_found"})
        tenant_id, rest = request.path[0].lower(), "/".join(request.path[1:])
        context = {"tenant": tenant_id, "correlation_id": request.header("client-request-id")}
        with self._lock:
            known = tenant_id in self._tenants
        if request.method == "GET" and rest == "v2.0/.well-known/openid-configuration":
            self._count("openidConfigurationRequests", tenant_id)
            if not known:
                return self._oauth_error(90002, context, error="invalid_tenant")
            return _json(200, self._openid_configuration(tenant_id))
        if request.method == "GET" and rest == "discovery/v2.0/keys":
            if not known and tenant_id != "common":
                return self._oauth_error(90002, context, error="invalid_tenant")
            return _json(200, self._jwks())
        if request.method == "POST" and rest == "oauth2/v2.0/token":
            return self._token(tenant_id, request, context)
        return _json(
            404, {"error": "not_found", "error_description": "No such Entra ID endpoint in the sandbox."}
        )

    def _openid_configuration(self, tenant_id: str) -> dict[str, Any]:
        base = f"{self.base_url}/{tenant_id}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "cloud_instance_name",
                "cloud_instance_host_name",
                "cloud_graph_host_name",
                "msgraph_host",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],  # fmt: skip
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    def _jwks(self) -> dict[str, Any]:
        assert self._signing_key is not None
        key = jwt.algorithms.RSAAlgorithm.to_jwk(self._signing_key.public_key(), as_dict=True)
        return {"keys": [{**key, "kid": self._kid, "x5t": self._kid, "use": "sig", "alg": "RS256"}]}

    def _token(self, tenant_id: str, request: _Request, context: dict[str, str]) -> _Reply:
        self._count("tokenRequests", tenant_id)
        form = {key: values[0] for key, values in parse_qs(request.body.decode("utf-8", "replace")).items()}
        context["client_id"] = form.get("client_id", "")  # echoed as sent, like Entra
        client_id = context["client_id"].lower()
        fault = self._fault(request, tenant_id, "token", "oauth", context)
        if fault is not None:
            return fault
        with self._lock:
            tenant = self._tenants.get(tenant_id)
            if tenant is not None:
                context["tenant_name"] = tenant.name
            principal = tenant.principals.get(client_id) if tenant else None
            principal = _Principal(**vars(principal)) if principal else None  # a copy, read outside the lock
            lifetime = self._scenario.token_lifetime_seconds
        if tenant is None:
            return self._oauth_error(90002, context)
        for parameter in ("grant_type", "client_id", "scope"):
            if not form.get(parameter):
                return self._oauth_error(900144, {**context, "parameter": parameter})
        if form["grant_type"] != "client_credentials":
            return self._oauth_error(70003, {**context, "grant_type": form["grant_type"]})
        scopes = form["scope"].split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return self._oauth_error(70011, {**context, "scope": form["scope"]})
        resource = scopes[0].removesuffix("/.default")
        context["resource"] = resource
        app = self._apps.get(client_id)
        if app is None or principal is None:
            return self._oauth_error(700016, context)
        context["app_name"] = app.display_name
        if not principal.enabled:
            return self._oauth_error(7000112, context)
        if "client_secret" in form:
            offered = form["client_secret"].encode()
            valid = [
                hmac.compare_digest(offered, known.encode()) for known in self._app_secrets.get(client_id, [])
            ]
            if not any(valid):
                return self._oauth_error(7000215, context)
            acr = "1"
        elif "client_assertion" in form:
            if form.get("client_assertion_type") != JWT_BEARER:
                return self._oauth_error(900144, {**context, "parameter": "client_assertion_type"})
            token_url = f"{self.base_url}/{tenant_id}/oauth2/v2.0/token"
            failure = self._check_assertion(form["client_assertion"], client_id, token_url, context)
            if failure is not None:
                return failure
            acr = "2"
        else:
            return self._oauth_error(7000218, context)
        if resource not in ARM_AUDIENCES | {self.base_url, self.base_url + "/", GRAPH}:
            return self._oauth_error(500011, context)
        token, _ = self._access_token(
            tenant_id, principal.object_id, resource, client_id, lifetime, extra={"appidacr": acr}
        )
        return _json(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            },
            {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )

    def _check_assertion(
        self, assertion: str, client_id: str, token_url: str, context: dict[str, str]
    ) -> _Reply | None:
        """None when the assertion proves the app: signed by a certificate it trusts, or federated."""
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return self._oauth_error(50027, context)
        options: Options = {
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_aud": False,
        }
        thumbprint = str(header.get("x5t#S256") or header.get("x5t") or "").rstrip("=")
        if thumbprint:
            cert = self._app_certs.get(client_id, {}).get(thumbprint)
            if cert is None:
                return self._oauth_error(
                    700027,
                    {**context, "thumbprint": thumbprint},
                    description="The certificate with identifier used to sign the client assertion is not "
                    "registered on application. [Reason - The key was not found., Thumbprint of key used by "
                    "client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use "
                    "MS Graph to see configured keys for app Id '{client_id}'.]",
                )
            try:
                public_key = cast(rsa.RSAPublicKey, cert.public_key())  # the sandbox makes RSA certificates
                claims = jwt.decode(assertion, public_key, algorithms=["PS256", "RS256"], options=options)
            except jwt.PyJWTError:
                return self._oauth_error(700027, context)
            if claims.get("iss") != claims.get("sub") or str(claims.get("iss", "")).lower() != client_id:
                return self._oauth_error(700021, context)
            if str(claims.get("aud", "")).lower().rstrip("/") != token_url.lower():
                return self._oauth_error(
                    700027,
                    context,
                    description="Client assertion audience claim does not match the token endpoint.",
                )
            return self._assertion_time(claims, context)

        assert self._signing_key is not None
        try:
            claims = jwt.decode(
                assertion, self._signing_key.public_key(), algorithms=["RS256"], options=options
            )
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
            return self._oauth_error(700027, context)
        except jwt.PyJWTError:
            return self._oauth_error(50027, context)
        expired = self._assertion_time(claims, context)
        if expired is not None:
            return expired
        audiences = claims.get("aud")
        audiences = audiences if isinstance(audiences, list) else [audiences]
        issuer, subject = claims.get("iss"), claims.get("sub")
        if EXCHANGE_AUDIENCE in audiences and any(
            (trust.issuer, trust.subject, trust.audience) == (issuer, subject, EXCHANGE_AUDIENCE)
            for trust in self._apps[client_id].federated_credentials
        ):
            return None
        return self._oauth_error(
            70021,
            {
                **context,
                "issuer": str(issuer),
                "subject": str(subject),
                "audience": ",".join(map(str, audiences)),
            },
        )

    def _assertion_time(self, claims: dict[str, Any], context: dict[str, str]) -> _Reply | None:
        now = time.time()
        exp, nbf = float(claims.get("exp", 0)), float(claims.get("nbf", 0))
        if nbf - 300 <= now < exp:  # Entra allows five minutes of clock skew before nbf
            return None

        def when(epoch: float) -> str:
            return _iso(datetime.fromtimestamp(epoch, UTC))

        return self._oauth_error(700024, {**context, "now": when(now), "nbf": when(nbf), "exp": when(exp)})

    # ---- managed identity (App Service protocol) -------------------------------------------------

    def _managed_identity(self, request: _Request) -> _Reply:
        self._count("managedIdentityRequests")
        identity = self._scenario.managed_identity
        if request.method != "GET" or [part.lower() for part in request.path] != ["msi", "token"]:
            return _json(404, {"statusCode": 404, "message": "Not found."})
        offered = request.header("X-IDENTITY-HEADER").encode()
        if not hmac.compare_digest(offered, self._identity_header.encode()):
            return _json(
                401, {"statusCode": 401, "message": "Unauthorized: X-IDENTITY-HEADER is missing or wrong."}
            )
        if request.query.get("api-version") != MI_API_VERSION:
            return _json(400, {"statusCode": 400, "message": f"api-version must be {MI_API_VERSION}."})
        resource = request.query.get("resource", "")
        if not resource:
            return _json(400, {"statusCode": 400, "message": "The resource query parameter is required."})
        asked = [request.query.get(name, "").lower() for name in ("client_id", "principal_id", "object_id")]
        if (asked[0] and asked[0] != identity.client_id) or any(
            value and value != identity.principal_id for value in asked[1:]
        ):
            return _json(
                400,
                {
                    "statusCode": 400,
                    "message": "No User Assigned or Delegated Managed Identity found for specified "
                    "ClientId/ResourceId/PrincipalId.",
                },
            )
        partner = self._scenario.partner_tenant_id
        fault = self._fault(
            request, partner, "token", "oauth", {"tenant": partner, "client_id": identity.client_id}
        )
        if fault is not None:
            return fault
        token, expires_on = self._access_token(
            partner,
            identity.principal_id,
            resource,
            identity.client_id,
            self._scenario.token_lifetime_seconds,
            issuer=f"https://login.microsoftonline.com/{partner}/v2.0",
            extra={"azp": identity.client_id, "azpacr": "2", "appidacr": "2", "ver": "2.0"},
        )
        body = {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
        }
        return _json(200, body)

    # ---- Key Vault -------------------------------------------------------------------------------

    def _key_vault(self, request: _Request) -> _Reply:
        self._count("keyVaultRequests")
        partner = self._scenario.partner_tenant_id
        base = self.base_url
        challenge = {"WWW-Authenticate": f'Bearer authorization="{base}/{partner}", resource="{base}"'}
        claims, problem = self._bearer(request.header("Authorization"))
        if problem == "missing":
            return _kv_error(
                401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", challenge
            )
        if problem is not None or claims is None:
            return _kv_error(401, "Unauthorized", f"AKV10022: The access token is {problem}.", challenge)
        if str(claims["aud"]).rstrip("/") != self.base_url:
            message = f"AKV10022: Invalid audience. Expected {self.base_url}, found: {claims['aud']}."
            return _kv_error(401, "Unauthorized", message, challenge)
        if claims["tid"] != partner:
            expected = f"https://sts.windows.net/{partner}/"
            message = f"AKV10032: Invalid issuer. Expected one of {expected}, found: {claims['iss']}."
            return _kv_error(401, "Unauthorized", message, challenge)
        if claims["oid"] != self._scenario.managed_identity.principal_id:
            return _json(
                403,
                {
                    "error": {
                        "code": "Forbidden",
                        "message": "Caller is not authorized to perform action on resource.\r\n"
                        f"Caller: appid={claims.get('appid', '')};oid={claims['oid']}\r\n"
                        "Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'",
                        "innererror": {"code": "ForbiddenByRbac"},
                    }
                },
            )
        fault = self._fault(request, str(claims["tid"]), "keyvault", "keyvault", {})
        if fault is not None:
            return fault
        if not request.query.get("api-version"):
            return _kv_error(400, "BadParameter", "The 'api-version' query parameter is missing.")
        if request.method != "GET" or len(request.path) not in (2, 3):
            return _kv_error(
                405, "MethodNotAllowed", "The sandbox vault only serves GET /secrets/{name}[/{version}]."
            )
        name, wanted = request.path[1], (request.path[2] if len(request.path) == 3 else None)
        with self._lock:
            versions = self._secrets.get(name, [])
            found = versions[-1] if versions and wanted is None else None
            found = next((v for v in versions if v.version == wanted), found)
        if found is None:
            shown = f"{name}/{wanted}" if wanted else name
            return _kv_error(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {shown} was not found in this key vault. If you recently deleted "
                "this secret you may be able to recover it using the correct recovery command. For help "
                "resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
            )
        if not found.enabled:
            return _json(
                403,
                {
                    "error": {
                        "code": "Forbidden",
                        "message": "Operation get is not allowed on a disabled secret.",
                        "innererror": {"code": "SecretDisabled"},
                    }
                },
            )
        attributes: dict[str, Any] = {
            "enabled": True,
            "created": found.created,
            "updated": found.created,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        }
        if found.expires is not None:
            attributes["exp"] = found.expires
        body: dict[str, Any] = {
            "value": found.value,
            "id": f"{self.base_url}/secrets/{name}/{found.version}",
            "attributes": attributes,
            "tags": dict(found.tags),
        }
        if found.content_type:
            body["contentType"] = found.content_type
        return _json(
            200, body, {"x-ms-request-id": str(uuid.uuid4()), "x-ms-keyvault-service-version": "1.9.0.0"}
        )

    # ---- ARM Microsoft.ManagementPartner -----------------------------------------------------------

    def _arm(self, request: _Request) -> _Reply:
        headers = {
            "x-ms-request-id": str(uuid.uuid4()),
            "x-ms-correlation-request-id": request.header("x-ms-client-request-id") or str(uuid.uuid4()),
        }
        claims, problem = self._bearer(request.header("Authorization"))
        authenticate = (
            f'Bearer authorization_uri="{self.base_url}/", error="invalid_token", error_description='
        )
        if problem == "missing":
            headers["WWW-Authenticate"] = (
                authenticate + "\"The authentication failed because of missing 'Authorization' header.\""
            )
            return _arm_error(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                headers,
            )
        if problem is None and claims is not None and claims["aud"] not in ARM_AUDIENCES:
            problem = "audience"
        if problem is not None or claims is None:
            headers["WWW-Authenticate"] = authenticate + '"The access token is invalid."'
            message = "The access token is invalid."
            if problem == "expired" and claims is not None:
                expiry = datetime.fromtimestamp(float(claims["exp"]), UTC).strftime("%m/%d/%Y %H:%M:%S")
                now = datetime.now(UTC).strftime("%m/%d/%Y %H:%M:%S")
                message = (
                    f"The access token expiry UTC time '{expiry}' is earlier than current UTC time '{now}'."
                )
            elif problem == "audience" and claims is not None:
                message = (
                    f"The access token has been obtained for wrong audience or resource '{claims['aud']}'. "
                    "It should exactly match with one of the allowed audiences "
                    "'https://management.core.windows.net/',"
                    "'https://management.azure.com/','https://management.azure.com'."
                )
            return _arm_error(401, "InvalidAuthenticationToken", message, headers)

        tenant_id, object_id = str(claims["tid"]).lower(), str(claims["oid"]).lower()
        self._count("armCalls", tenant_id, request.method)
        fault = self._fault(request, tenant_id, "arm", "arm", {})
        if fault is not None:
            fault.headers.update(headers)
            return fault
        api_version = request.query.get("api-version")
        if not api_version:
            return _arm_error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
                headers,
            )
        if api_version != ARM_API_VERSION:
            message = (
                f"The api-version '{api_version}' is invalid. The supported versions are '{ARM_API_VERSION}'."
            )
            return _arm_error(400, "InvalidApiVersionParameter", message, headers)
        kind = "reads" if request.method == "GET" else "writes"
        remaining, wait = self._rate(tenant_id, object_id, kind)
        headers[f"x-ms-ratelimit-remaining-tenant-{kind}"] = str(remaining)
        if wait:
            headers["Retry-After"] = str(math.ceil(wait))
            return _arm_error(429, "TooManyRequests", "The request is being throttled. Retry later.", headers)
        reply = self._arm_route(request, tenant_id, object_id)
        reply.headers.update(headers)
        return reply

    def _rate(self, tenant_id: str, object_id: str, kind: str) -> tuple[int, float]:
        """Remaining requests after this one, and how long to wait when the bucket is empty."""
        burst, per_second = _RATE_LIMITS[kind]
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.get((tenant_id, object_id, kind), (burst, now))
            tokens = min(burst, tokens + (now - stamp) * per_second)
            if tokens < 1:
                self._buckets[(tenant_id, object_id, kind)] = (tokens, now)
                return 0, (1 - tokens) / per_second
            self._buckets[(tenant_id, object_id, kind)] = (tokens - 1, now)
            return int(tokens - 1), 0.0

    def _arm_route(self, request: _Request, tenant_id: str, object_id: str) -> _Reply:
        parts = [part.lower() for part in request.path]
        if len(parts) < 3 or parts[1] != "microsoft.managementpartner":
            namespace = request.path[1] if len(request.path) > 1 else ""
            return _arm_error(
                404, "InvalidResourceNamespace", f"The resource namespace '{namespace}' is invalid."
            )
        if parts[2:] == ["operations"] and request.method == "GET":
            return _json(200, _OPERATIONS)
        if parts[2] != "partners" or len(parts) > 4:
            return _arm_error(
                404,
                "InvalidResourceType",
                f"The resource type '{'/'.join(request.path[2:])}' could not be found in the namespace "
                f"'Microsoft.ManagementPartner' for api version '{ARM_API_VERSION}'.",
            )
        not_linked = (
            404,
            "ManagementPartnerNotFound",
            "This user or service principal is not linked with a Partner ID",
        )
        invalid = (400, "PartnerIdInvalid", "The Partner ID is not valid")
        with self._lock:
            link = self._links.get((tenant_id, object_id))
            active = link if link is not None and link.state == "Active" else None
            if len(parts) == 3:
                if request.method != "GET":
                    return _arm_error(
                        405, "MethodNotAllowed", f"The method '{request.method}' is not allowed."
                    )
                return _json(200, active.resource()) if active else _arm_error(*not_linked)
            partner_id = request.path[3]
            known = partner_id in self._scenario.known_partner_ids
            if request.method == "GET":
                if active is None or active.partner_id != partner_id:
                    return _arm_error(*not_linked)
                return _json(200, active.resource())
            if request.method in ("PUT", "PATCH") and request.ignore_write and active is not None:
                return _json(200, active.resource())
            if request.method == "PUT":
                if not known:
                    return _arm_error(*invalid)
                if link is None:
                    link = self._new_link(tenant_id, object_id, partner_id)
                elif active is None:
                    self._write_link(link, partner_id=partner_id, state="Active")  # revive the same record
                elif self._put_when_linked == "conflict":
                    return _arm_error(
                        409, "Conflict", "The user or service principal is already linked with a Partner ID"
                    )
                return _json(200, link.resource())
            if request.method == "PATCH":
                if active is None:
                    return _arm_error(*not_linked)
                if not known:
                    return _arm_error(*invalid)
                self._write_link(active, partner_id=partner_id)
                return _json(200, active.resource())
            if request.method == "DELETE":
                if active is not None:
                    self._write_link(active, state="Deleted")
                return _Reply(200)
        return _arm_error(405, "MethodNotAllowed", f"The method '{request.method}' is not allowed.")

    # ---- admin API (/_sandbox/...) for another process -----------------------------------------------

    def _admin(self, request: _Request) -> _Reply:
        route, method = request.path[1:], request.method
        try:
            if method == "GET" and route == ["stats"]:
                return _json(200, self.stats())
            if method == "POST" and route == ["reset-stats"]:
                self.reset_stats()
                return _json(200, {})
            if method == "GET" and route == ["links"]:
                return _json(200, self.links())
            if method == "PUT" and len(route) == 3 and route[0] == "links":
                return _json(200, self.set_link(route[1], route[2], str(request.json()["partnerId"])))
            if method == "DELETE" and len(route) == 3 and route[0] == "links":
                return _json(200, {"deleted": self.delete_link(route[1], route[2])})
            if method == "POST" and route == ["faults"]:
                body = request.json()
                self.add_fault(str(body.get("tenantId", "*")), FaultRule.from_dict(body.get("rule"), "rule"))
                return _json(200, {})
            if method == "DELETE" and route[:1] == ["faults"] and len(route) <= 2:
                self.clear_faults(route[1] if len(route) == 2 else None)
                return _json(200, {})
            if method == "PUT" and route == ["settings"]:
                self.set_put_when_linked(request.json()["putWhenLinked"])
                return _json(200, {})
            if method == "PUT" and len(route) == 2 and route[0] == "secrets":
                body = request.json()
                content_type = body.get("contentType")
                expires = body.get("expires")
                version = self.set_secret(
                    route[1],
                    str(body["value"]),
                    str(content_type) if content_type else None,
                    tags=parse_tags(body.get("tags", {}), "tags"),
                    enabled=bool(body.get("enabled", True)),
                    expires=int(expires) if expires is not None else None,
                )
                return _json(200, {"name": route[1], "version": version})  # never the value
            if method == "PUT" and len(route) == 2 and route[0] == "tenants":
                self.add_tenant(route[1], str(request.json()["name"]))
                return _json(200, {})
            if len(route) == 4 and route[0] == "tenants" and route[2] == "service-principals":
                tenant_id, client_id = route[1], route[3]
                if method == "PUT":
                    body = request.json()
                    self.add_service_principal(
                        tenant_id, client_id, str(body["objectId"]), enabled=bool(body.get("enabled", True))
                    )
                    return _json(200, {})
                if method == "PATCH":
                    self.set_service_principal_enabled(tenant_id, client_id, bool(request.json()["enabled"]))
                    return _json(200, {})
                if method == "DELETE":
                    self.remove_service_principal(tenant_id, client_id)
                    return _json(200, {})
        except (ValueError, KeyError, TypeError) as err:
            return _json(400, {"error": f"{type(err).__name__}: {err}"})
        return _json(404, {"error": "no such sandbox admin endpoint"})


_OPERATIONS = {
    "value": [
        {
            "name": f"Microsoft.ManagementPartner/partners/{action}",
            "display": {
                "provider": "Microsoft ManagementPartner",
                "resource": "Management Partner",
                "operation": f"{verb} Management Partner",
                "description": f"{verb} ManagementPartner",
            },
            "origin": "user,system",
        }
        for action, verb in (("read", "Get"), ("write", "Create or update"), ("delete", "Delete"))
    ]
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    disable_nagle_algorithm = True  # otherwise each keep-alive reply waits ~40 ms for a delayed ACK
    timeout = 60  # an idle keep-alive connection gives its thread back after this
    server_version = "PalSandbox/1.0"
    sys_version = ""
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _serve(self) -> None:
        body = self._read_body()
        split = urlsplit(self.path)
        request = _Request(
            method=self.command,
            path=[unquote(part) for part in split.path.split("/") if part],
            query={
                key.lower(): values[0]
                for key, values in parse_qs(split.query, keep_blank_values=True).items()
            },
            headers=self.headers,
            body=body,
        )
        try:
            reply = self.server.sandbox._handle(request)
        except Exception:
            logger.exception("sandbox: %s %s failed", self.command, split.path)
            reply = _json(500, {"error": {"code": "InternalServerError", "message": "The sandbox failed."}})
        if request.delay_ms:
            time.sleep(request.delay_ms / 1000)
        if reply.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        logger.debug("sandbox: " + format, *args)  # the request line only: bodies are never logged


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], sandbox: CloudSandbox, context: ssl.SSLContext) -> None:
        self.sandbox = sandbox
        self.context = context
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the connection's own thread: a slow or failing client
        # cannot hold up accept() for everyone else.
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as err:
            logger.debug("sandbox: TLS handshake with %s failed: %s", client_address, err)
            return
        with self._open_lock:
            self._open.add(tls)
        try:
            _Handler(tls, client_address, self)
        finally:
            with self._open_lock:
                self._open.discard(tls)
            tls.close()

    def close_connections(self) -> None:
        """End keep-alive connections too, so nothing is served after stop()."""
        with self._open_lock:
            for connection in list(self._open):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("sandbox: connection from %s ended with an error", client_address, exc_info=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
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


if __name__ == "__main__":
    sys.exit(main())
