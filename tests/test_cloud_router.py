"""The cloud sandbox's router (sandbox/cloud/server.py) alone: which stand-in service gets a request."""

from __future__ import annotations

from collections.abc import Iterable
from email.message import Message

from sandbox.cloud.protocol import Refusal, Reply, Request, json_reply
from sandbox.cloud.server import Router


class Named:
    def __init__(self, name: str, audiences: Iterable[str] = ()) -> None:
        self.name, self._audiences = name, tuple(audiences)

    def audiences(self, base_url: str) -> Iterable[str]:
        return [audience.format(base=base_url) for audience in self._audiences]

    def handle(self, request: Request) -> Reply:
        return json_reply(200, {"service": self.name})


class Refusing(Named):
    def handle(self, request: Request) -> Reply:
        raise Refusal(json_reply(418, {"service": self.name}))


def request(path: str, host: str = "127.0.0.1:8443") -> Request:
    headers = Message()
    headers["Host"] = host
    return Request("GET", [part for part in path.split("/") if part], {}, headers, b"")


def routed(router: Router, path: str, host: str = "127.0.0.1:8443") -> object:
    service = router.route(request(path, host))
    return getattr(service, "name", None)


def test_the_longest_path_prefix_wins_and_an_empty_prefix_takes_the_rest() -> None:
    router = Router()
    router.add(Named("entra"))
    router.add(Named("arm"), prefix="providers")
    router.add(Named("bap"), prefix="providers/Microsoft.BusinessAppPlatform")
    assert routed(router, "/providers/Microsoft.ManagementPartner/partners") == "arm"
    assert routed(router, "/PROVIDERS/microsoft.businessappplatform/scopes/admin") == "bap"
    assert routed(router, "/providers") == "arm"
    assert routed(router, "/providersx") == "entra"  # whole segments only
    assert routed(router, "/tenant/oauth2/v2.0/token") == "entra"
    assert routed(router, "/") == "entra"


def test_a_host_route_wins_over_any_host() -> None:
    router = Router()
    router.add(Named("entra"))
    router.add(Named("dataverse"), host="org.crm.dynamics.test")
    router.add(Named("data"), prefix="api/data")
    assert routed(router, "/api/data/v9.2/accounts", "ORG.crm.dynamics.test:443") == "dataverse"
    assert routed(router, "/api/data/v9.2/accounts") == "data"
    assert routed(router, "/api/data", "[::1") == "data"  # not a host name: any-host routes only


def test_no_route_is_a_404_and_a_refusal_is_the_reply() -> None:
    router = Router()
    assert router.answer(request("/anything")).status == 404
    router.add(Refusing("teapot"), prefix="tea")
    assert router.answer(request("/tea/pot")).status == 418


def test_audiences_are_every_mounted_service_s() -> None:
    router = Router()
    router.add(Named("entra", ["https://graph.microsoft.com"]))
    router.add(Named("vault", ["{base}", "{base}/"]), prefix="secrets")
    assert router.audiences("https://127.0.0.1:1") == {
        "https://graph.microsoft.com",
        "https://127.0.0.1:1",
        "https://127.0.0.1:1/",
    }
