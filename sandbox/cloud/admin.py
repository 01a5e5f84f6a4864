"""The sandbox's admin API under /_sandbox/, for another process (the benchmark, a sandbox started with
`python -m sandbox.cloud`): stats, links, faults, settings, secrets, tenants and service principals,
a tenant's Power Platform, its grants, Dataverse application users and Power BI workspace members, how
long deliveries take, an environment's components with their owners, its Azure subscriptions and
role assignments, a tenant's user accounts and the completion of their device codes (a sign-in without a
person), the same operations CloudSandbox offers in-process. Secret values go in, never out."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from ..scenario import FaultRule, UserAccount, parse_tags
from ..scenario_fields import Fields
from .authorization import AuthorizationWorld
from .device_code import DeviceCodes
from .faults import Faults
from .power_platform import PowerPlatformWorld, delivered_components
from .protocol import Reply, Request, json_reply
from .state import CloudState

# (arguments: the path's segments after /_sandbox/, the request) -> the reply.
_Action = Callable[[list[str], Request], Reply]


def _matches(pattern: tuple[str, ...], route: list[str]) -> bool:
    """`*` in a pattern stands for any one segment; other segments must be equal, case and all."""
    return len(pattern) == len(route) and all(p in ("*", r) for p, r in zip(pattern, route, strict=True))


def _ok() -> Reply:
    return json_reply(200, {})


class Admin:
    def __init__(
        self,
        state: CloudState,
        faults: Faults,
        power_platform: PowerPlatformWorld,
        authorization: AuthorizationWorld,
        device_codes: DeviceCodes,
    ) -> None:
        self._state, self._faults, self._power_platform = state, faults, power_platform
        self._authorization, self._device_codes = authorization, device_codes
        principal = ("tenants", "*", "service-principals", "*")
        platform = ("tenants", "*", "power-platform")
        azure = ("tenants", "*", "subscriptions")
        self._routes: list[tuple[str, tuple[str, ...], _Action]] = [
            ("GET", ("stats",), lambda route, request: json_reply(200, state.stats_copy())),
            ("POST", ("reset-stats",), self._reset_stats),
            ("GET", ("links",), lambda route, request: json_reply(200, state.link_snapshots())),
            ("PUT", ("links", "*", "*"), self._set_link),
            ("DELETE", ("links", "*", "*"), self._delete_link),
            ("POST", ("faults",), self._add_fault),
            ("DELETE", ("faults",), self._clear_faults),
            ("DELETE", ("faults", "*"), self._clear_faults),
            ("PUT", ("settings",), self._settings),
            ("PUT", ("secrets", "*"), self._set_secret),
            ("PUT", ("tenants", "*"), self._add_tenant),
            ("PUT", principal, self._add_service_principal),
            ("PATCH", principal, self._enable_service_principal),
            ("DELETE", principal, self._remove_service_principal),
            ("GET", platform, lambda route, request: json_reply(200, power_platform.snapshot(route[1]))),
            ("PUT", platform, self._install_power_platform),
            ("PATCH", (*platform, "grants", "*"), self._set_grants),
            ("PUT", ("environments", "*", "application-users", "*"), self._application_user),
            ("DELETE", ("environments", "*", "application-users", "*"), self._application_user),
            ("GET", ("environments", "*", "components"), self._components),
            ("PUT", ("power-platform", "delivery-delay"), self._delivery_delay),
            ("PUT", ("tenants", "*", "workspaces", "*", "members", "*"), self._workspace_member),
            ("DELETE", ("tenants", "*", "workspaces", "*", "members", "*"), self._workspace_member),
            ("GET", azure, lambda route, request: json_reply(200, authorization.snapshot(route[1]))),
            ("PUT", azure, self._install_subscriptions),
            ("PUT", ("tenants", "*", "users", "*"), self._add_user),
            ("GET", ("device-codes",), lambda route, request: json_reply(200, device_codes.pending_codes())),
            ("POST", ("tenants", "*", "device-codes", "*", "complete"), self._complete_device_code),
            ("PUT", ("device-code-settings",), self._device_code_settings),
        ]

    def audiences(self, base_url: str) -> Iterable[str]:
        return ()

    def handle(self, request: Request) -> Reply:
        route = request.path[1:]
        for method, pattern, action in self._routes:
            if method == request.method and _matches(pattern, route):
                try:
                    return action(route, request)
                except (ValueError, KeyError, TypeError) as err:
                    return json_reply(400, {"error": f"{type(err).__name__}: {err}"})
        return json_reply(404, {"error": "no such sandbox admin endpoint"})

    def _reset_stats(self, route: list[str], request: Request) -> Reply:
        self._state.reset_stats()
        return _ok()

    def _set_link(self, route: list[str], request: Request) -> Reply:
        return json_reply(200, self._state.set_link(route[1], route[2], str(request.json()["partnerId"])))

    def _delete_link(self, route: list[str], request: Request) -> Reply:
        return json_reply(200, {"deleted": self._state.delete_link(route[1], route[2])})

    def _add_fault(self, route: list[str], request: Request) -> Reply:
        body = request.json()
        self._faults.add(str(body.get("tenantId", "*")), FaultRule.from_dict(body.get("rule"), "rule"))
        return _ok()

    def _clear_faults(self, route: list[str], request: Request) -> Reply:
        self._faults.clear(route[1] if len(route) == 2 else None)
        return _ok()

    def _settings(self, route: list[str], request: Request) -> Reply:
        self._state.set_put_when_linked(request.json()["putWhenLinked"])
        return _ok()

    def _set_secret(self, route: list[str], request: Request) -> Reply:
        body = request.json()
        content_type = body.get("contentType")
        expires = body.get("expires")
        version = self._state.set_secret(
            route[1],
            str(body["value"]),
            str(content_type) if content_type else None,
            tags=parse_tags(body.get("tags", {}), "tags"),
            enabled=bool(body.get("enabled", True)),
            expires=int(expires) if expires is not None else None,
        )
        return json_reply(200, {"name": route[1], "version": version})  # never the value

    def _add_tenant(self, route: list[str], request: Request) -> Reply:
        self._state.add_tenant(route[1], str(request.json()["name"]))
        return _ok()

    def _add_service_principal(self, route: list[str], request: Request) -> Reply:
        body = request.json()
        enabled = bool(body.get("enabled", True))
        self._state.add_service_principal(route[1], route[3], str(body["objectId"]), enabled=enabled)
        return _ok()

    def _enable_service_principal(self, route: list[str], request: Request) -> Reply:
        self._state.set_service_principal_enabled(route[1], route[3], bool(request.json()["enabled"]))
        return _ok()

    def _remove_service_principal(self, route: list[str], request: Request) -> Reply:
        self._state.remove_service_principal(route[1], route[3])
        return _ok()

    def _install_power_platform(self, route: list[str], request: Request) -> Reply:
        self._power_platform.install_section(route[1], request.json())
        return _ok()

    def _set_grants(self, route: list[str], request: Request) -> Reply:
        body = request.json()
        registered, power_bi = body.get("registered"), body.get("powerBi")
        if not all(value is None or isinstance(value, bool) for value in (registered, power_bi)):
            raise ValueError("registered and powerBi: expected true, false or null")
        self._power_platform.set_grants(route[1], route[4], registered=registered, power_bi=power_bi)
        return _ok()

    def _install_subscriptions(self, route: list[str], request: Request) -> Reply:
        """The body: {"subscriptions": [...], "customRoles": [...]} (the scenario's sections)."""
        body = request.json()
        self._authorization.install(route[1], body.get("subscriptions"), body.get("customRoles"))
        return _ok()

    def _application_user(self, route: list[str], request: Request) -> Reply:
        self._power_platform.set_application_user(route[1], route[3], request.method == "PUT")
        return _ok()

    def _components(self, route: list[str], request: Request) -> Reply:
        """Every component of the environment with its owner and creator (object ids)."""
        found = delivered_components(self._power_platform, route[1])
        return json_reply(200, {"value": [dataclasses.asdict(component) for component in found]})

    def _delivery_delay(self, route: list[str], request: Request) -> Reply:
        """The body: {"seconds": n}, how long solution and Power BI imports stay in progress."""
        seconds = request.json().get("seconds")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            raise ValueError("body.seconds: expected a number")
        self._power_platform.set_delivery_delay(float(seconds))
        return _ok()

    def _workspace_member(self, route: list[str], request: Request) -> Reply:
        present = request.method == "PUT"
        self._power_platform.set_workspace_member(route[1], route[3], route[5], present)
        return _ok()

    def _add_user(self, route: list[str], request: Request) -> Reply:
        """The body: {"userPrincipalName": ..., "displayName": ...}; the object ID is the path's."""
        body = Fields(request.json(), "body", ("userPrincipalName", "displayName"))
        user = UserAccount(route[3].lower(), body.text("userPrincipalName").lower(), body.text("displayName"))
        self._state.add_user(route[1], user)
        return _ok()

    def _complete_device_code(self, route: list[str], request: Request) -> Reply:
        """The body: {"user": object ID or UPN}; signs the pending user code in as that user."""
        who = Fields(request.json(), "body", ("user",)).text("user")
        user = self._device_codes.complete(route[1], route[3], who)
        return json_reply(200, {"objectId": user.object_id, "userPrincipalName": user.user_principal_name})

    def _device_code_settings(self, route: list[str], request: Request) -> Reply:
        """The body: {"interval": seconds, "expiresIn": seconds}, for the codes issued from now on."""
        body = Fields(request.json(), "body", ("interval", "expiresIn"))
        interval = body.value.get("interval", 1)
        if not isinstance(interval, int) or isinstance(interval, bool):
            raise ValueError("body.interval: expected a whole number of seconds")
        self._device_codes.set_timing(interval=interval, lifetime=body.integer("expiresIn", 900))
        return _ok()
