"""The cloud sandbox's HTTPS server and its router.

`Server` is a ThreadingHTTPServer doing each TLS handshake in the connection's own thread; `_Handler`
turns an HTTP/1.1 exchange (keep-alive, chunked bodies, injected delays and dropped connections) into a
`Request` and writes the `Reply`; `Router` hands a request to the stand-in service that owns it, by
host and the leading segments of its path.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .protocol import Refusal, Reply, Request, Service, json_reply

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Route:
    service: Service
    prefix: tuple[str, ...]  # lower-cased leading path segments; () matches every path
    host: str | None  # lower-cased host name (no port); None matches every host


def _host_name(host: str) -> str:
    """The name in a Host header, without its port; "" when it is not one."""
    try:
        return (urlsplit("//" + host).hostname or "").lower()
    except ValueError:
        return ""


class Router:
    """Which service answers a request: among the routes whose host and path prefix match, a route
    for the request's host wins over one for any host, then the longest prefix, then the first added.
    A new stand-in is one more `add` line."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []

    def add(self, service: Service, *, prefix: str = "", host: str | None = None) -> None:
        """Route to `service` the paths starting with `prefix` ("a/b": whole segments, any case; ""
        for every path no other route claims), on `host` only when given (the Host header's name)."""
        segments = tuple(part.lower() for part in prefix.split("/") if part)
        self._routes.append(_Route(service, segments, host.lower() if host else None))

    def services(self) -> list[Service]:
        return [route.service for route in self._routes]

    def audiences(self, base_url: str) -> frozenset[str]:
        """Every token audience some mounted service accepts."""
        accepted: set[str] = set()
        for service in self.services():
            accepted.update(service.audiences(base_url))
        return frozenset(accepted)

    def route(self, request: Request) -> Service | None:
        host = _host_name(request.header("Host"))
        path = [part.lower() for part in request.path]
        matching = [
            route
            for route in self._routes
            if route.host in (None, host) and tuple(path[: len(route.prefix)]) == route.prefix
        ]
        if not matching:
            return None
        return max(matching, key=lambda route: (route.host is not None, len(route.prefix))).service

    def answer(self, request: Request) -> Reply:
        service = self.route(request)
        if service is None:
            return json_reply(404, {"error": "not_found"})
        try:
            return service.handle(request)
        except Refusal as refusal:
            return refusal.reply


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    disable_nagle_algorithm = True  # otherwise each keep-alive reply waits ~40 ms for a delayed ACK
    timeout = 60  # an idle keep-alive connection gives its thread back after this
    server_version = "PalSandbox/1.0"
    sys_version = ""
    server: Server

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _serve(self) -> None:
        body = self._read_body()
        split = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=[unquote(part) for part in split.path.split("/") if part],
            query={
                key.lower(): values[0]
                for key, values in parse_qs(split.query, keep_blank_values=True).items()
            },
            headers=self.headers,
            body=body,
            base_url=self.server.base_url,
        )
        try:
            reply = self.server.router.answer(request)
        except Exception:
            logger.exception("sandbox: %s %s failed", self.command, split.path)
            reply = json_reply(
                500, {"error": {"code": "InternalServerError", "message": "The sandbox failed."}}
            )
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


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], router: Router, context: ssl.SSLContext, *, public_host: str
    ) -> None:
        self.router = router
        self.context = context
        self.public_host = public_host  # the host clients are told, as given (not the bound address)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    @property
    def base_url(self) -> str:
        return f"https://{self.public_host}:{self.server_address[1]}"

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
