"""Entra ID v2 for the client-credentials flow: a tenant's OpenID configuration and signing keys, and
its token endpoint taking a client secret, a certificate-signed client assertion or a federated one
(a managed identity's token for api://AzureADTokenExchange), answering with Entra's AADSTS errors.
A user account's device-code sign-in (devicecode endpoint, device_code grant) is `device_code.py`'s."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, NoReturn, cast
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.types import Options

from ..scenario import EXCHANGE_AUDIENCE
from .device_code import DEVICE_CODE_GRANT, DeviceCodes, Issuer
from .faults import Faults
from .oauth import oauth_error, oauth_shape
from .protocol import Refusal, Reply, Request, json_reply
from .state import CloudState, Principal, iso
from .tokens import TokenIssuer

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRAPH = "https://graph.microsoft.com"
_OPENID_CONFIGURATION = "v2.0/.well-known/openid-configuration"
_KEYS = "discovery/v2.0/keys"
_TOKEN = "oauth2/v2.0/token"
_DEVICE_CODE = "oauth2/v2.0/devicecode"
_UNKNOWN_CERTIFICATE = (
    "The certificate with identifier used to sign the client assertion is not registered on application. "
    "[Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', Please visit the "
    "Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]"
)


def _times_unchecked() -> Options:
    return {"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False}


class EntraId:
    """Serves /{tenant}/...; `accepted(base_url)` gives the resources it issues tokens for."""

    def __init__(
        self,
        state: CloudState,
        tokens: TokenIssuer,
        faults: Faults,
        accepted: Callable[[str], frozenset[str]],
        device_codes: DeviceCodes,
    ) -> None:
        self._state, self._tokens, self._faults, self._accepted = state, tokens, faults, accepted
        self._device_codes = device_codes

    def audiences(self, base_url: str) -> Iterable[str]:
        return (GRAPH,)  # Microsoft Graph: tokens are issued for it, though the sandbox serves no Graph

    def handle(self, request: Request) -> Reply:
        if not request.path:
            return json_reply(404, {"error": "not_found"})
        tenant_id, rest = request.path[0].lower(), "/".join(request.path[1:])
        context = {"tenant": tenant_id, "correlation_id": request.header("client-request-id")}
        with self._state.lock:
            known = tenant_id in self._state.tenants
        if request.method == "GET" and rest == _OPENID_CONFIGURATION:
            self._state.count("openidConfigurationRequests", tenant_id)
            if not known:
                self._refuse(90002, context, error="invalid_tenant")
            return json_reply(200, _openid_configuration(f"{request.base_url}/{tenant_id}"))
        if request.method == "GET" and rest == _KEYS:
            if not known and tenant_id != "common":
                self._refuse(90002, context, error="invalid_tenant")
            return json_reply(200, self._tokens.jwks())
        if request.method == "POST" and rest == _TOKEN:
            return self._token(tenant_id, request, context)
        if request.method == "POST" and rest == _DEVICE_CODE:
            self._state.count("deviceCodeRequests", tenant_id)
            return self._device_codes.start(tenant_id, _form(request), context)
        return json_reply(
            404, {"error": "not_found", "error_description": "No such Entra ID endpoint in the sandbox."}
        )

    def _refuse(
        self,
        code: int,
        context: dict[str, str],
        *,
        description: str | None = None,
        error: str | None = None,
    ) -> NoReturn:
        raise Refusal(oauth_error(self._state, code, context, description=description, error=error))

    # ---- the token endpoint ----------------------------------------------------------------------

    def _token(self, tenant_id: str, request: Request, context: dict[str, str]) -> Reply:
        self._state.count("tokenRequests", tenant_id)
        form = _form(request)
        context["client_id"] = form.get("client_id", "")  # echoed as sent, like Entra
        client_id = context["client_id"].lower()
        fault = self._faults.apply(request, tenant_id, "token", oauth_shape(self._state, context), context)
        if fault is not None:
            return fault
        if form.get("grant_type") == DEVICE_CODE_GRANT:  # a user's sign-in: no service principal
            issuer = Issuer(f"{request.base_url}/{tenant_id}/v2.0", self._accepted(request.base_url))
            return self._device_codes.poll(tenant_id, form, context, issuer)
        principal, lifetime = self._principal(tenant_id, client_id, context)
        resource = self._resource(form, context)
        app = self._state.apps.get(client_id)
        if app is None or principal is None:
            self._refuse(700016, context)
        context["app_name"] = app.display_name
        if not principal.enabled:
            self._refuse(7000112, context)
        acr = self._authenticate(form, f"{request.base_url}/{tenant_id}/{_TOKEN}", client_id, context)
        if resource not in self._accepted(request.base_url):
            self._refuse(500011, context)
        token, _ = self._tokens.access_token(
            tenant_id, principal.object_id, resource, client_id, lifetime, extra={"appidacr": acr}
        )
        return json_reply(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            },
            {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )

    def _principal(
        self, tenant_id: str, client_id: str, context: dict[str, str]
    ) -> tuple[Principal | None, int]:
        """A copy of the app's service principal in the tenant (None when it has none), and the token
        lifetime; refuses a tenant that does not exist."""
        with self._state.lock:
            tenant = self._state.tenants.get(tenant_id)
            if tenant is not None:
                context["tenant_name"] = tenant.name
            principal = tenant.principals.get(client_id) if tenant else None
            principal = Principal(**vars(principal)) if principal else None  # read outside the lock
            lifetime = self._state.scenario.token_lifetime_seconds
        if tenant is None:
            self._refuse(90002, context)
        return principal, lifetime

    def _resource(self, form: dict[str, str], context: dict[str, str]) -> str:
        """The resource of a well-formed client-credentials request's one `.default` scope."""
        for parameter in ("grant_type", "client_id", "scope"):
            if not form.get(parameter):
                self._refuse(900144, {**context, "parameter": parameter})
        if form["grant_type"] != "client_credentials":
            self._refuse(70003, {**context, "grant_type": form["grant_type"]})
        scopes = form["scope"].split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            self._refuse(70011, {**context, "scope": form["scope"]})
        context["resource"] = scopes[0].removesuffix("/.default")
        return context["resource"]

    def _authenticate(
        self, form: dict[str, str], token_url: str, client_id: str, context: dict[str, str]
    ) -> str:
        """The app's proof, checked: its `appidacr`, 1 for a client secret and 2 for an assertion."""
        if "client_secret" in form:
            offered = form["client_secret"].encode()
            known = self._state.app_secrets.get(client_id, [])
            if not any([hmac.compare_digest(offered, secret.encode()) for secret in known]):
                self._refuse(7000215, context)
            return "1"
        if "client_assertion" in form:
            if form.get("client_assertion_type") != JWT_BEARER:
                self._refuse(900144, {**context, "parameter": "client_assertion_type"})
            self._check_assertion(form["client_assertion"], client_id, token_url, context)
            return "2"
        self._refuse(7000218, context)

    # ---- client assertions -----------------------------------------------------------------------

    def _check_assertion(
        self, assertion: str, client_id: str, token_url: str, context: dict[str, str]
    ) -> None:
        """Passes when the assertion proves the app: signed by a certificate it trusts, or federated."""
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            self._refuse(50027, context)
        thumbprint = str(header.get("x5t#S256") or header.get("x5t") or "").rstrip("=")
        if thumbprint:
            self._certificate_assertion(assertion, thumbprint, client_id, token_url, context)
        else:
            self._federated_assertion(assertion, client_id, context)

    def _certificate_assertion(
        self, assertion: str, thumbprint: str, client_id: str, token_url: str, context: dict[str, str]
    ) -> None:
        cert = self._state.app_certs.get(client_id, {}).get(thumbprint)
        if cert is None:
            self._refuse(700027, {**context, "thumbprint": thumbprint}, description=_UNKNOWN_CERTIFICATE)
        try:
            public_key = cast(rsa.RSAPublicKey, cert.public_key())  # the sandbox makes RSA certificates
            claims = jwt.decode(
                assertion, public_key, algorithms=["PS256", "RS256"], options=_times_unchecked()
            )
        except jwt.PyJWTError:
            self._refuse(700027, context)
        if claims.get("iss") != claims.get("sub") or str(claims.get("iss", "")).lower() != client_id:
            self._refuse(700021, context)
        if str(claims.get("aud", "")).lower().rstrip("/") != token_url.lower():
            self._refuse(
                700027,
                context,
                description="Client assertion audience claim does not match the token endpoint.",
            )
        self._assertion_time(claims, context)

    def _federated_assertion(self, assertion: str, client_id: str, context: dict[str, str]) -> None:
        """A token the sandbox issued (the managed identity's) that one of the app's federated
        credentials trusts: same issuer and subject, audience api://AzureADTokenExchange."""
        try:
            claims = jwt.decode(
                assertion, self._tokens.public_key, algorithms=["RS256"], options=_times_unchecked()
            )
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
            self._refuse(700027, context)
        except jwt.PyJWTError:
            self._refuse(50027, context)
        self._assertion_time(claims, context)
        audiences = claims.get("aud")
        audiences = audiences if isinstance(audiences, list) else [audiences]
        issuer, subject = claims.get("iss"), claims.get("sub")
        if EXCHANGE_AUDIENCE in audiences and any(
            (trust.issuer, trust.subject, trust.audience) == (issuer, subject, EXCHANGE_AUDIENCE)
            for trust in self._state.apps[client_id].federated_credentials
        ):
            return
        found = {"issuer": str(issuer), "subject": str(subject), "audience": ",".join(map(str, audiences))}
        self._refuse(70021, {**context, **found})

    def _assertion_time(self, claims: dict[str, Any], context: dict[str, str]) -> None:
        now = time.time()
        exp, nbf = float(claims.get("exp", 0)), float(claims.get("nbf", 0))
        if nbf - 300 <= now < exp:  # Entra allows five minutes of clock skew before nbf
            return

        def when(epoch: float) -> str:
            return iso(datetime.fromtimestamp(epoch, UTC))

        self._refuse(700024, {**context, "now": when(now), "nbf": when(nbf), "exp": when(exp)})


def _form(request: Request) -> dict[str, str]:
    """The request's form body, the first value of each parameter."""
    return {key: values[0] for key, values in parse_qs(request.body.decode("utf-8", "replace")).items()}


def _openid_configuration(base: str) -> dict[str, Any]:
    """The tenant's document, `base` being the sandbox's URL and the tenant ID."""
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
