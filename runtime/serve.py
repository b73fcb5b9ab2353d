"""`outpost serve`: an OpenAI-compatible API and a kiosk page over one bundle, sized for a small box.

    POST /v1/chat/completions   answers (streamed as server-sent events or not), with citations and
                                quoted evidence in an extra `outpost` field
    POST /v1/embeddings         the bundle's embedder
    GET  /v1/models             the one model served
    GET  /v1/passages/{id}      a passage's text (the kiosk page shows it when a source is tapped)
    GET  /health                as llama.cpp's: 503 with an error object while loading,
                                200 {"status": "ok", ...} with the bundle's content id when ready
    GET  /                      the kiosk page (every asset served from here: no internet needed)

Where things are: the routes and request models in runtime/api.py (one router per concern),
the answer slots, queue and each question's typed events in runtime/scheduler.py, the releases
followed (a bundle or a bundles folder's `current`) in runtime/releases.py, the settings in
runtime/config.py. This module puts them together behind `Guard` (request ids, body limits, the
API key, the access log, one-line 500s) and runs uvicorn with `guarded_protocol` (header
timeout and connection caps against idle and slow clients).
"""

# No `from __future__ import annotations`: FastAPI reads the request models from the signatures.
import contextlib
import json
import secrets
import threading
import time

from outpost.runtime.api import authorised_headers, error_response
from outpost.runtime.config import ServeConfig
from outpost.runtime.errors import one_line
from outpost.runtime.releases import Releases
from outpost.runtime.scheduler import ApiError, Scheduler

# --- the application -------------------------------------------------------------------------


def create_app(config: ServeConfig, releases: Releases | None = None, say=None):
    """The ASGI app: the routers of runtime/api.py behind `Guard`, errors in OpenAI's shape,
    and (while the app runs) a thread following the releases."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from outpost.runtime.api import (
        Server,
        health_router,
        kiosk_router,
        openai_router,
        passages_router,
    )

    config.check()
    say = say or _stderr
    server = Server(config, releases or Releases(config, say), Scheduler(config))
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
        return error_response(400, f"{where or 'body'}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(ApiError)
    async def busy(request, exc: ApiError):
        headers = {"Retry-After": "2"} if exc.status in (429, 503) else None
        kind = "rate_limit_error" if exc.status == 429 else "invalid_request_error"
        if exc.status >= 500:
            kind = "server_error"
        return error_response(exc.status, exc.message, kind, headers)

    app.add_middleware(Guard, config=config, say=say)
    for router in (
        health_router(server),
        openai_router(server),
        passages_router(server),
        kiosk_router(config),
    ):
        app.include_router(router)
    return app


class Guard:
    """Pure ASGI middleware (so a handler sees its client leave): request id, body limits, API
    key on /v1/, one access-log line per request (when a stream's last byte has gone), and any
    error a handler did not expect answered as a one-line OpenAI-shaped 500, logged the same."""

    def __init__(self, app, config: ServeConfig, say):
        self.app, self.config, self.say = app, config, say

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, rid = time.perf_counter(), "req-" + secrets.token_hex(6)
        state = scope.setdefault("state", {})
        state["rid"], state["log"] = rid, {}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status, config = [None], self.config

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())],
                }
            await send(message)

        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            length = config.max_body + 1
        early = None
        if "chunked" in headers.get("transfer-encoding", "").lower():
            early = error_response(411, "send the request body with a Content-Length header")
        elif length > config.max_body or length < 0:
            early = error_response(413, f"request body over {config.max_body} bytes; send less")
        elif (
            config.api_key
            and scope["path"].startswith("/v1/")
            and not authorised_headers(headers, config.api_key)
        ):
            early = error_response(
                401,
                "missing or wrong API key: send 'Authorization: Bearer KEY'",
                "authentication_error",
            )
        try:
            if early is not None:
                await early(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
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
            if scope["path"] != "/health":
                self.say(
                    {
                        "event": "request",
                        "id": rid,
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": 499 if state.get("left") else status[0] or 500,
                        "latency_ms": round(1000 * (time.perf_counter() - started), 1),
                        **state.get("log", {}),
                    }
                )


def guarded_protocol(config: ServeConfig):
    """uvicorn's h11 protocol with what it lacks against idle and slow clients: a request's
    headers must arrive within `head_timeout` of the connection being ready for them (first
    request and each keep-alive one), at most `max_client_connections` per address and
    `max_connections` in all; beyond them a connection is closed at once."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    per_client: dict[str, int] = {}

    class Guarded(H11Protocol):
        head_timer = None
        counted = None

        def connection_made(self, transport):
            super().connection_made(transport)
            host = self.client[0] if self.client else "?"
            if (
                len(self.connections) > config.max_connections
                or per_client.get(host, 0) >= config.max_client_connections
            ):
                transport.abort()
                return
            per_client[host] = per_client.get(host, 0) + 1
            self.counted = host
            self._arm()

        def connection_lost(self, exc):
            self._disarm()
            if self.counted is not None:
                left = per_client.get(self.counted, 1) - 1
                if left:
                    per_client[self.counted] = left
                else:
                    per_client.pop(self.counted, None)
                self.counted = None
            super().connection_lost(exc)

        def data_received(self, data):
            super().data_received(data)
            import h11

            if self.conn.their_state is not h11.IDLE:
                self._disarm()  # the request's headers are in

        def on_response_complete(self):
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's headers have the same time

        def _arm(self):
            self._disarm()
            self.head_timer = self.loop.call_later(config.head_timeout, self._too_slow)

        def _disarm(self):
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

        def _too_slow(self):
            self.head_timer = None
            if not self.transport.is_closing():
                self.transport.abort()

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


def serve(config: ServeConfig) -> None:
    import uvicorn

    limit_malloc_arenas()
    app = create_app(config)
    # No limit_concurrency: uvicorn counts idle connections in it, so 64 of them locked everyone
    # out. Questions are bounded by the answer slots; connections by guarded_protocol.
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        http=guarded_protocol(config),
    )
