"""`outpost serve`: an OpenAI-compatible API and a kiosk page over one bundle, sized for a small box.

    POST /v1/chat/completions   answers (streamed as server-sent events or not), with citations and
                                quoted evidence in an extra `outpost` field
    POST /v1/embeddings         the bundle's embedder
    POST /v1/feedback           the reader's verdict on an answer ({id, helpful, note}), kept in
                                the field log beside the installed bundles (docs/feedback.md)
    GET  /v1/models             the one model served
    GET  /v1/passages/{id}      a passage's text (the kiosk page shows it when a source is tapped)
    GET  /health                as llama.cpp's: 503 with an error object while loading,
                                200 {"status": "ok", ...} with the bundle's content id when ready
    GET  /metrics               Prometheus's text format: requests, answers, declines, answer
                                times, the queue and slots, the bundle (runtime/serve/metrics.py)
    GET  /                      the kiosk page (every asset served from here: no internet needed)

Where things are: the routes and request models in runtime/serve/api.py (one router per concern),
the answer slots, queue and each question's typed events in runtime/serve/scheduler.py, the releases
followed (a bundle or a bundles folder's `current`) in runtime/serve/releases.py, the settings in
runtime/config.py. This module puts them together behind `Guard` (Host and Origin check, request
ids, body limits, the API key, the access log and request counts, one-line 500s) and runs
uvicorn with `guarded_protocol` (head and body deadlines, connection caps with the operator's
reserve, half-closed clients) on a socket bound by `listen` before anything is said to be served.
"""

# No `from __future__ import annotations`: FastAPI reads the request models from the signatures.
import contextlib
import errno
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from outpost.runtime.config import ServeConfig
from outpost.runtime.errors import InputError, OutpostError, UsageError, one_line
from outpost.runtime.serve.api import authorised_headers, error_response
from outpost.runtime.serve.releases import Releases
from outpost.runtime.serve.scheduler import ApiError, Scheduler

if TYPE_CHECKING:
    from outpost.runtime.field.log import FieldLog
    from outpost.runtime.serve.metrics import Metrics

# --- the application -------------------------------------------------------------------------


def create_app(
    config: ServeConfig,
    releases: Releases | None = None,
    say: Callable[[dict], None] | None = None,
):
    """The ASGI app: the routers of runtime/serve/api.py behind `Guard`, errors in OpenAI's shape,
    and (while the app runs) a thread following the releases."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from outpost.runtime.serve.api import (
        Server,
        feedback_router,
        health_router,
        kiosk_router,
        metrics_router,
        openai_router,
        passages_router,
    )

    config.check()
    say = say or _stderr
    server = Server(config, releases or Releases(config, say), Scheduler(config), field_log(config))
    stop = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        threading.Thread(
            target=server.releases.follow, args=(stop,), daemon=True, name="outpost-releases"
        ).start()
        yield
        stop.set()
        server.scheduler.shutdown()

    # No /docs or /redoc: Swagger UI loads from a CDN, which an offline kiosk has not got.
    app = FastAPI(
        title="Outpost",
        version=_version(),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Cited answers from the manuals in one bundle; OpenAI-compatible.",
    )
    app.state.server = server

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):  # unknown routes and methods, in OpenAI's shape too
        what = {404: f"no route {request.url.path}", 405: f"{request.method} is not allowed here"}
        return error_response(
            exc.status_code,
            what.get(exc.status_code, str(exc.detail)),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):  # OpenAI answers 400 with an error object, not 422
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = first.get("msg", "invalid request").removeprefix("Value error, ")
        return error_response(400, f"{where or 'body'}: {message}")

    @app.exception_handler(ApiError)
    async def busy(request, exc: ApiError):
        headers = {"Retry-After": "2"} if exc.status in (429, 503) else None
        if exc.status == 429:
            server.metrics.busy()
        kind = "rate_limit_error" if exc.status == 429 else "invalid_request_error"
        if exc.status >= 500:
            kind = "server_error"
        return error_response(exc.status, exc.message, kind, headers)

    routers = (
        health_router(server),
        metrics_router(server),
        openai_router(server),
        passages_router(server),
        feedback_router(server),
        kiosk_router(config),
    )
    # Each route with its path template, for Guard to count a request under its route.
    routes = [*app.routes, *(route for router in routers for route in router.routes)]
    app.add_middleware(Guard, config=config, say=say, metrics=server.metrics, routes=routes)
    for router in routers:
        app.include_router(router)
    return app


class Guard:
    """Pure ASGI middleware (so a handler sees its client leave): the Host and Origin check,
    request id, body limits, API key on /v1/ and /metrics, one access-log line per request (when
    a stream's last byte has gone; 499 when the client left before it, 408 when its body came
    too slowly) and its count in `metrics` by route and that status, and any error a handler did
    not expect answered as a one-line OpenAI-shaped 500, logged the same."""

    def __init__(
        self,
        app,
        config: ServeConfig,
        say: Callable[[dict], None],
        metrics: "Metrics | None" = None,
        routes: Sequence = (),
    ):
        self.app, self.config, self.say = app, config, say
        self.metrics, self.routes = metrics, routes  # the app's routes, to name a refused path's
        self.hosts = HostCheck(config)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, rid = time.perf_counter(), "req-" + secrets.token_hex(6)
        state = scope.setdefault("state", {})
        state["rid"], state["log"] = rid, {}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status, finished, config = [None], [False], self.config

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())],
                }
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished[0] = True
            await send(message)

        async def receive_watched():  # a client gone before the last byte: logged 499
            message = await receive()
            if message["type"] == "http.disconnect" and not finished[0]:
                state["left"] = True
            return message

        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            length = config.max_body + 1
        early = self.hosts.refusal(scope, headers) or self._refusal(scope, headers, length)
        try:
            if early is not None:
                await early(scope, receive_watched, send_with_id)
            else:
                await self.app(scope, receive_watched, send_with_id)
        except Exception as e:  # noqa: BLE001 - a bug: one line in the log and to the client
            state["log"] = {
                **state.get("log", {}),
                "error": f"{type(e).__name__}: {one_line(str(e))[:200]}",
            }
            if status[0] is None:
                await error_response(
                    500, "internal error; the server log has the request id", "server_error"
                )(scope, receive, send_with_id)
        finally:
            shown = status[0] or 500
            if state.get("timed_out"):
                shown = 408
            elif state.get("left"):
                shown = 499
            if self.metrics is not None:
                self.metrics.request(self._route(scope), shown)
            if scope["path"] != "/health":
                self.say(
                    {
                        "event": "request",
                        "id": rid,
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": shown,
                        "latency_ms": round(1000 * (time.perf_counter() - started), 1),
                        **state.get("log", {}),
                    }
                )

    def _route(self, scope) -> str:
        """The request's route as its path template (`/v1/passages/{chunk_id}`), matched as the
        router matches (a path served for another method too: 405), refused before it or not:
        one label per route whatever the ids asked for; "other" for a path no route serves."""
        from starlette.routing import Match

        found: dict[Match, str] = {}
        for route in self.routes:
            found.setdefault(route.matches(scope)[0], route.path)
        return found.get(Match.FULL) or found.get(Match.PARTIAL) or "other"

    def _refusal(self, scope, headers: dict, length: int):
        """The one-line answer for a request refused before its body is read, else None. A
        body that will not be read closes the connection after the answer, so it is never
        read whole (uvicorn would read and drop it to keep the connection)."""
        config, unread = self.config, {"Connection": "close"}
        if "chunked" in headers.get("transfer-encoding", "").lower():
            message = "send the request body with a Content-Length header"
            return error_response(411, message, headers=unread)
        if length > config.max_body or length < 0:
            message = f"request body over {config.max_body} bytes; send less"
            return error_response(413, message, headers=unread)
        keyed = scope["path"].startswith("/v1/") or scope["path"] == "/metrics"
        if config.api_key and keyed and not authorised_headers(headers, config.api_key):
            return error_response(
                401,
                "missing or wrong API key: send 'Authorization: Bearer KEY'",
                "authentication_error",
            )
        return None


class HostCheck:
    """The API answers only its own origin: a web page whose name was pointed at 127.0.0.1
    (DNS rebinding) sends its own name as Host, and a page of another site its own Origin.
    Answered: the address the connection came in on, the --host given, and `localhost`, each at
    the server's port; and every --allow-host NAME (any port) or NAME:PORT. Anything else is a
    421 (Host) or 403 (Origin). Off with --api-key (the key is the check) or --allow-host '*'."""

    def __init__(self, config: ServeConfig):
        self.off = bool(config.api_key) or "*" in config.allow_host
        self.own = {"localhost", config.host.lower()}
        self.named: dict[str, set[int | None]] = {}
        for entry in config.allow_host:
            name, port = _split_host(entry, None)
            if name:
                self.named.setdefault(name, set()).add(port)

    def allows(self, name: str, port: int | None, scope) -> bool:
        local, served = (scope.get("server") or ("", None))[:2]
        local = (local or "").lower()
        own = self.own | {local, local.removeprefix("::ffff:")}
        if name in own and (port == served or served is None):  # None: a port not known
            return True
        ports = self.named.get(name, set())
        return None in ports or port in ports

    def refusal(self, scope, headers: dict):
        """The one-line 421 or 403 for a request not meant for this server, else None."""
        if self.off:
            return None
        host = headers.get("host")
        if host is not None:
            name, port = _split_host(host, 80)
            if not name or not self.allows(name, port, scope):
                return error_response(
                    421,
                    f"Host {_shown(host)} is not a name of this server; open it by its address "
                    "or localhost, or start it with --allow-host NAME",
                )
        origin = headers.get("origin")
        if origin is not None:
            scheme, _, rest = origin.partition("://")
            default = {"http": 80, "https": 443}.get(scheme.lower())
            name, port = _split_host(rest, default) if default and "/" not in rest else ("", None)
            if not name or not self.allows(name, port, scope):
                return error_response(
                    403,
                    f"Origin {_shown(origin)} is not this server's: pages of other sites cannot "
                    "use it (--allow-host NAME adds a name)",
                )
        return None


def _split_host(value: str, default: int | None) -> tuple[str, int | None]:
    """("name", port) of `name[:port]` or `[v6]:port`, lower case; ("", None) if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None if not rest else "x"
    elif value.count(":") == 1:
        name, port = value.split(":")
    elif ":" in value:
        return "", None  # an IPv6 address without brackets is not a Host
    else:
        name, port = value, None
    name = name.rstrip(".")
    if not name or any(c in name for c in "/@ \t"):
        return "", None
    if port is None:
        return name, default
    return (name, int(port)) if port.isdigit() and int(port) < 65536 else ("", None)


def _shown(value: str) -> str:
    return repr(one_line(value)[:80])


OPERATOR = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})  # the device's own operator


class _Watched:
    """A connection's transport as uvicorn writes to it: each write first asks `gone()`
    (whether a half-closed client has in fact left) and is dropped when it has."""

    def __init__(self, transport, gone):
        self._transport, self._gone = transport, gone

    def write(self, data) -> None:
        if not self._gone():
            self._transport.write(data)

    def __getattr__(self, name):
        return getattr(self._transport, name)


def guarded_protocol(config: ServeConfig):
    """uvicorn's h11 protocol with what it lacks against idle, slow and departing clients:

    - deadlines: a request's headers must arrive within `head_timeout` of the connection being
      ready for them (first request and each keep-alive one), its body within `body_timeout` of
      its headers (408, then closed); trickling bytes extends neither;
    - connection caps: at most `max_client_connections` per address and `max_connections` in
      all, of which `operator_connections` only 127.0.0.1 and ::1 may take; beyond them a
      connection is closed at once;
    - a client that half-closes (shutdown(SHUT_WR)) after its whole request still gets its
      answer: the connection stays open for writing, and a client that closed for good is
      still seen leaving (it answers the next write, an interim `100 Continue` when no answer
      began, with a reset), so its job stops;
    - a connection lost before its response was complete is logged 499."""
    import socket

    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    per_client: dict[str, int] = {}
    total = [0]
    others = config.max_connections - config.operator_connections

    class Guarded(H11Protocol):
        timer = None
        waiting_for = None  # "head" or "body": what the timer waits for
        counted = None
        peer_watch = None
        half_closed = False

        def connection_made(self, transport):
            super().connection_made(transport)
            # What the cycles write to: uvicorn types it asyncio.Transport; this stands in for one.
            self.transport = _Watched(transport, self._client_gone)  # type: ignore[assignment]
            host = self.client[0] if self.client else "?"
            cap = config.max_connections if host in OPERATOR else others
            if total[0] >= cap or per_client.get(host, 0) >= config.max_client_connections:
                transport.abort()
                return
            per_client[host] = per_client.get(host, 0) + 1
            total[0] += 1
            self.counted = host
            self._watch()

        def connection_lost(self, exc):
            self._arm(None)
            if self.peer_watch is not None:
                self.peer_watch.cancel()
                self.peer_watch = None
            if self.cycle is not None and not self.cycle.response_complete:
                self.scope["state"]["left"] = True  # logged 499, however far its answer got
            if self.counted is not None:
                left = per_client.get(self.counted, 1) - 1
                if left:
                    per_client[self.counted] = left
                else:
                    per_client.pop(self.counted, None)
                total[0] -= 1
                self.counted = None
            super().connection_lost(exc)

        def data_received(self, data):
            super().data_received(data)
            self._watch()

        def on_response_complete(self):
            super().on_response_complete()
            self._watch()

        def _watch(self):
            """The deadline of what the connection now waits for from its client, armed when
            that changes: a request's head, its body, or nothing (the server's turn)."""
            if self.counted is None or self.transport.is_closing():
                return self._arm(None)
            state = self.conn.their_state
            want = "head" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
            if want != self.waiting_for:
                self._arm(want)

        def _arm(self, what):
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.waiting_for = what
            if what == "head":
                self.timer = self.loop.call_later(config.head_timeout, self._head_too_slow)
            elif what == "body":
                self.timer = self.loop.call_later(config.body_timeout, self._body_too_slow)

        def _head_too_slow(self):
            self.timer = self.waiting_for = None
            if not self.transport.is_closing():
                self.transport.abort()

        def _body_too_slow(self):
            """A one-line 408 when nothing was answered yet, then the connection is closed; the
            handler waiting for the body sees its client gone."""
            self.timer = self.waiting_for = None
            if self.transport.is_closing():
                return
            cycle = self.cycle
            if cycle is None or cycle.response_started:
                return self.transport.abort()
            self.scope["state"]["timed_out"] = "body"
            cycle.disconnected = True  # the handler's receive() answers http.disconnect
            cycle.message_event.set()
            message = (
                f"the request body did not arrive within {config.body_timeout:g} s "
                "(the server's --body-timeout); send it at once"
            )
            body = json.dumps(
                {"error": {"message": message, "type": "invalid_request_error", "code": 408}}
            ).encode()
            head = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            try:
                response = h11.Response(status_code=408, headers=head, reason=b"Request Timeout")
                out = self.conn.send(response)
                out += self.conn.send(h11.Data(data=body)) + self.conn.send(h11.EndOfMessage())
            except h11.LocalProtocolError:
                return self.transport.abort()
            self.transport.write(out)
            self.transport.close()

        def eof_received(self):
            """A client that sent its whole request and then half-closed is waiting for its
            answer: keep the connection open for writing. Only a write tells a half-closed
            client from one that closed for good (that one answers with a reset), so each write
            first asks the socket (`_client_gone`), an answer not yet begun is preceded by an
            interim `100 Continue`, and the socket is looked at every 0.1 s meanwhile. A request
            cut short is a client that left: closed, as uvicorn does."""
            cycle = self.cycle
            if (
                cycle is None
                or cycle.response_complete
                or cycle.more_body
                or self.scope["http_version"] != "1.1"
                or self.transport.is_closing()
            ):
                return None  # asyncio closes the connection
            cycle.keep_alive = False  # the client can send no next request
            self.half_closed = True
            if not cycle.response_started:
                probe = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                try:
                    self.transport.write(self.conn.send(probe))
                except h11.LocalProtocolError:
                    pass
                cycle.waiting_for_100_continue = False
            self._watch_peer()
            return True

        def _client_gone(self) -> bool:
            """Whether a half-closed client has reset the connection (it closed for good);
            then its request is ended as a client that left: its handler sees it gone."""
            if not self.half_closed:
                return False
            if self.transport.is_closing():
                return True
            sock = self.transport.get_extra_info("socket")
            try:
                reset = sock is not None and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            except OSError:
                reset = True
            if reset:
                if self.cycle is not None and not self.cycle.response_complete:
                    self.scope["state"]["left"] = True
                    self.cycle.disconnected = True
                    self.cycle.message_event.set()
                self.transport.abort()
            return bool(reset)

        def _watch_peer(self):
            self.peer_watch = None
            if not self._client_gone():
                self.peer_watch = self.loop.call_later(0.1, self._watch_peer)

    return Guarded


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("outpost-llm")
    except PackageNotFoundError:
        return "0"


def _stderr(event: dict) -> None:
    from outpost.runtime.log import line

    line(json.dumps({"ts": round(time.time(), 3), **event}, ensure_ascii=False))


def limit_malloc_arenas(count: int = 2) -> bool:
    """glibc gives each thread that allocates its own malloc arena (up to 8 per core) and keeps
    what they freed: answering in worker threads took the server from 620 to 990 MB resident.
    Two arenas keep it at the single-threaded size (docs/serving.md). No-op off glibc."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-8, count))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def field_log(config: ServeConfig) -> "FieldLog | None":
    """The field log serve keeps (None with --no-feedback), its folder checked: one it cannot
    use (inside a bundle, another user's) is an error at start, not at the first answer."""
    if not config.feedback:
        return None
    from outpost.runtime.field.log import FieldLog, folder_for

    log = FieldLog(folder_for(config.source, config.feedback_dir), config.feedback_max_mb << 20)
    log.check()
    return log


def check_adapter(config: ServeConfig) -> None:
    """`--adapter NAME` that the release to serve first lacks: the same one-line error as
    `outpost ask --adapter`, at start, not a 503 forever. A release that cannot be read yet is
    left to the release thread (it is reported on /health)."""
    if config.ask.adapter is None:
        return
    from outpost.runtime.bundle.install import resolve
    from outpost.runtime.bundle.manifest import Manifest
    from outpost.runtime.bundle.open import read_manifest_bytes

    try:
        manifest = Manifest.from_json(read_manifest_bytes(resolve(config.source)))
    except (OutpostError, OSError, ValueError):
        return
    adapters = sorted(manifest.model.adapters)
    if config.ask.adapter not in adapters:
        has = ", ".join(adapters) if adapters else "none"
        raise UsageError(
            f"--adapter {config.ask.adapter}: this bundle has no such adapter (it has: {has}); "
            "`outpost info` lists them"
        )


def listen(config: ServeConfig) -> socket.socket:
    """The listening socket, bound before anything is said to be served: a port in use is one
    error line, not uvicorn's after "serving"."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.host, config.port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        where = address(config.host, config.port)
        if e.errno == errno.EADDRINUSE:
            raise InputError(
                f"cannot listen on {where}: the port is in use (another server?); stop it or "
                "pick another --port"
            ) from None
        reason = e.strerror or one_line(str(e))
        raise InputError(f"cannot listen on {where}: {reason}; check --host and --port") from None
    return sock


def address(host: str, port: int) -> str:
    return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"


def serve(config: ServeConfig, sock: socket.socket | None = None) -> None:
    """Serve on `sock` (from `listen`; bound here when not given) until Ctrl-C."""
    import uvicorn

    sock = sock or listen(config)
    limit_malloc_arenas()
    app = create_app(config)
    # No limit_concurrency: uvicorn counts idle connections in it, so 64 of them locked everyone
    # out. Questions are bounded by the answer slots; connections by guarded_protocol.
    settings = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        http=guarded_protocol(config),
    )
    uvicorn.Server(settings).run(sockets=[sock])
