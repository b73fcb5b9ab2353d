"""`outpost serve`: an OpenAI-compatible API and a kiosk page over one bundle, sized for a small box.

    POST /v1/chat/completions   answers (streamed as server-sent events or not), with citations and
                                quoted evidence in an extra `outpost` field
    POST /v1/embeddings         the bundle's embedder
    GET  /v1/models             the one model served
    GET  /v1/passages/{id}      a passage's text (the kiosk page shows it when a source is tapped)
    GET  /health                503 while loading, 200 with the bundle's content id when ready
    GET  /                      the kiosk page (every asset served from here: no internet needed)
    GET  /openapi.json, /docs   the API description

Concurrency fits a 2-core device: `--max-concurrent` questions are answered at once (each uses
the cores through onnxruntime), up to `--queue` more wait their turn; beyond that a request is
answered 429 with Retry-After, and one that waited longer than `--queue-timeout` 503. Every
question runs in a worker thread with its own state (generator, logits processors, timings);
a client that disconnects, or a request past `--request-timeout`, stops its generation.

Serving a bundles folder (`outpost install --bundles DIR`), the server follows `current`: a new
release is opened and verified beside the old one, new requests go to it once it has loaded, and
questions in flight finish on the old one. A release that fails verification is refused; the old
one keeps serving.
"""

# No `from __future__ import annotations`: FastAPI reads the request models from the signatures.
import asyncio
import contextlib
import hmac
import json
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from outpost.runtime.config import LANGUAGES, ServeConfig
from outpost.runtime.errors import OutpostError, one_line

KIOSK = Path(__file__).parent / "kiosk"


# --- releases: the bundle being served and the next one -------------------------------------------


@dataclass
class Release:
    assistant: object
    path: Path
    content_id: str
    model: str  # the id /v1/models shows
    loaded_at: float


def load_release(path: Path, config: ServeConfig) -> Release:
    from outpost.runtime.assistant import AskConfig, open_assistant

    assistant = open_assistant(path, AskConfig(threads=config.threads), verify=config.verify,
                               trusted=[Path(t) for t in config.trusted])  # fmt: skip
    cid = assistant.bundle.content_id
    return Release(assistant, path, cid, f"outpost-{cid[:12]}", time.time())


def folder_stamp(folder: Path) -> tuple:
    """Name, inode, size, mtime and ctime of every file below `folder`: a release repaired in
    place (installed again to the same path) differs, so it is tried again."""
    entries = []
    for parent, _, names in os.walk(folder):
        for name in names:
            try:
                st = os.lstat(os.path.join(parent, name))
            except OSError:
                continue
            entries.append((parent, name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(sorted(entries))


class Releases:
    """Follows the configured source; `current` is swapped in one assignment, so a request that
    took a reference keeps its release to the end."""

    def __init__(self, config: ServeConfig, say):
        self.config, self.say = config, say
        self.current: Release | None = None
        self.error: str | None = None
        self.refused: tuple | None = None  # (target, stamp) that failed: retried once it changes
        self.switches = 0

    def target(self) -> Path:
        from outpost.runtime.install import resolve

        return resolve(self.config.source).resolve()

    def refresh(self) -> None:
        try:
            target = self.target()
        except OSError as e:
            self.error = f"cannot read {self.config.source}: {e}"
            return
        if self.current and target == self.current.path:
            return
        stamp = folder_stamp(target)
        if (target, stamp) == self.refused:
            return
        self.say({"event": "loading", "bundle": str(target)})
        try:
            release = load_release(target, self.config)
        except (OutpostError, ValueError, OSError) as e:
            self.refused, self.error = (target, stamp), one_line(str(e))
            self.say({"event": "refused", "bundle": str(target), "error": self.error})
            return
        old, self.current, self.error, self.refused = self.current, release, None, None
        self.switches += old is not None
        self.say({"event": "serving", "bundle": str(target), "content_id": release.content_id,
                  "replaced": old.content_id if old else None})  # fmt: skip

    def follow(self, stop: threading.Event) -> None:
        while True:
            self.refresh()
            if stop.wait(self.config.watch):
                return


# --- admission: bounded concurrency with a queue -----------------------------------------------


class ApiError(Exception):
    """An HTTP error answered in OpenAI's shape (429 and 503 with Retry-After)."""

    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


class Slots:
    """`max_concurrent` questions run at once; `queue` more may wait; the rest are turned away."""

    def __init__(self, running: int, waiting: int, timeout: float):
        self.sem = threading.Semaphore(running)
        self.limit, self.timeout = running + waiting, timeout
        self.inside = 0
        self.lock = threading.Lock()

    def admit(self) -> None:
        with self.lock:
            if self.inside >= self.limit:
                raise ApiError(
                    429, f"{self.inside} questions are running or waiting; try again shortly"
                )
            self.inside += 1

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1


class Job:
    """One question in flight: its events cross from the worker thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float):
        self.loop, self.deadline = loop, deadline
        self.events: asyncio.Queue = asyncio.Queue()
        self.stop = threading.Event()

    def put(self, kind: str, value=None) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))

    def should_stop(self) -> bool:
        return self.stop.is_set() or time.monotonic() > self.deadline


def _in_slot(slots: Slots, run, stop: threading.Event | None = None):
    """Run `run()` in an answer slot (from a worker thread); 503 when none came free in time.
    A job whose client left (`stop`) leaves the queue without taking the slot."""
    end = time.monotonic() + slots.timeout
    while not slots.sem.acquire(timeout=0.1):
        if stop is not None and stop.is_set():
            raise ApiError(499, "the client left before its question was answered")
        if time.monotonic() > end:
            raise ApiError(503, f"no answer slot came free within {slots.timeout:g} s; try again")
    try:
        return run()
    finally:
        slots.sem.release()


def _work(slots: Slots, job: Job, release: Release, question: str, history: list, max_tokens: int):
    def answer():
        job.put("start")
        if job.should_stop():
            raise RuntimeError("stopped before it started")
        return release.assistant.ask(question, history, on_text=lambda p: job.put("text", p),
                                     should_stop=job.should_stop, max_new_tokens=max_tokens,
                                     on_quote=lambda q: job.put("quote", asdict(q)))  # fmt: skip

    try:
        job.put("done", _in_slot(slots, answer, job.stop))
    except ApiError as e:
        job.put("busy", e.message)
    except OutpostError as e:
        job.put("invalid", one_line(str(e)))
    except Exception as e:  # noqa: BLE001 - reported as a 500 with one line, server stays up
        job.put("error", f"{type(e).__name__}: {one_line(str(e))[:200]}")
    finally:
        slots.leave()


async def _next_event(job: Job, request) -> tuple[str, object]:
    """The job's next event; while waiting for it (in the queue or answering), a client that
    leaves stops the job, so a question nobody waits for gives up its place and its slot."""
    while True:
        try:
            return await asyncio.wait_for(job.events.get(), timeout=0.1)
        except TimeoutError:
            if await request.is_disconnected():
                job.stop.set()
                request.state.left = True


async def _last_event(job: Job, request) -> tuple[str, object]:
    """The job's final event, past its streamed text."""
    while True:
        kind, value = await _next_event(job, request)
        if kind not in ("text", "quote"):
            return kind, value


# --- the OpenAI-shaped pieces ------------------------------------------------------------------


def _error(status: int, message: str, kind: str = "invalid_request_error", headers=None):
    from fastapi.responses import JSONResponse

    body = {"error": {"message": message, "type": kind, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def _text(content) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    return "".join(
        p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
    )


def split_conversation(messages: list) -> tuple[str, list[dict]]:
    """The question (last user turn) and the earlier user/assistant turns as history."""
    if not messages or messages[-1].role != "user":
        raise ApiError(400, "the last message must have role 'user'")
    question = _text(messages[-1].content).strip()
    if not question:
        raise ApiError(400, "the last user message has no text")
    history = [{"role": m.role, "content": _text(m.content)}
               for m in messages[:-1] if m.role in ("user", "assistant")]  # fmt: skip
    # Chat history alternates user, assistant: keep complete pairs only.
    pairs = []
    for i in range(len(history) - 1):
        if history[i]["role"] == "user" and history[i + 1]["role"] == "assistant":
            pairs += history[i : i + 2]
    return question, pairs


OUTPOST_FIELD = ("declined", "declined_by", "answer_mode", "evidence", "support")


def outpost_field(answer, release: Release) -> dict:
    """The answer's own serialised form (runtime/answer.py), the parts a client shows: with the
    citations shown and the release that answered."""
    whole = answer.to_dict()
    shown = {c.n for c in answer.shown_citations()}
    return {**{k: whole[k] for k in OUTPOST_FIELD},
            "citations": [c for c in whole["citations"] if c["n"] in shown],
            "bundle": release.content_id}


def usage(answer) -> dict:
    t = answer.timings
    return {"prompt_tokens": t.prompt_tokens, "completion_tokens": t.new_tokens,
            "total_tokens": t.prompt_tokens + t.new_tokens}  # fmt: skip


def _finish(answer, max_tokens: int) -> str:
    return "length" if answer.timings.new_tokens >= max_tokens and not answer.declined else "stop"


# --- the application -------------------------------------------------------------------------


def create_app(config: ServeConfig, releases: Releases | None = None, say=None):
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException

    config.check()
    say = say or _stderr
    releases = releases or Releases(config, say)
    slots = Slots(config.max_concurrent, config.queue, config.queue_timeout)
    pool = ThreadPoolExecutor(max_workers=config.max_concurrent + config.queue + 2,
                              thread_name_prefix="outpost-answer")  # fmt: skip
    stop = threading.Event()

    class Message(BaseModel):
        model_config = ConfigDict(extra="allow")
        role: str = Field(pattern="^(system|developer|user|assistant|tool)$")
        content: str | list[dict]

    class ChatRequest(BaseModel):
        model_config = ConfigDict(extra="allow")  # temperature, top_p, ...: accepted, greedy anyway
        model: str | None = None
        messages: list[Message] = Field(min_length=1, max_length=config.max_messages)
        stream: bool = False
        max_tokens: int | None = Field(default=None, ge=1)
        max_completion_tokens: int | None = Field(default=None, ge=1)

    class EmbeddingRequest(BaseModel):
        model_config = ConfigDict(extra="allow")
        model: str | None = None
        input: str | list[str] = Field(max_length=config.max_embedding_inputs)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        threading.Thread(target=releases.follow, args=(stop,), daemon=True,
                         name="outpost-releases").start()  # fmt: skip
        yield
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)

    # No /docs or /redoc: Swagger UI loads from a CDN, which an offline kiosk has not got.
    app = FastAPI(title="Outpost", version=_version(), lifespan=lifespan, docs_url=None,
                  redoc_url=None,
                  description="Cited answers from the manuals in one bundle; OpenAI-compatible.")  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):  # unknown routes and methods, in OpenAI's shape too
        what = {404: f"no route {request.url.path}", 405: f"{request.method} is not allowed here"}
        return _error(exc.status_code, what.get(exc.status_code, str(exc.detail)),
                      headers=getattr(exc, "headers", None))  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):  # OpenAI answers 400 with an error object, not 422
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(400, f"{where or 'body'}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(ApiError)
    async def busy(request, exc: ApiError):
        headers = {"Retry-After": "2"} if exc.status in (429, 503) else None
        kind = "rate_limit_error" if exc.status == 429 else "invalid_request_error"
        if exc.status >= 500:
            kind = "server_error"
        return _error(exc.status, exc.message, kind, headers)

    app.add_middleware(Guard, config=config, say=say)

    def serving() -> Release:
        release = releases.current
        if release is None:
            raise ApiError(503, "the bundle is still loading" if not releases.error
                       else f"no bundle can be served: {releases.error}")  # fmt: skip
        return release

    @app.get("/health")
    async def health(request: Request):
        # Paths and error texts only for the operator: with --api-key, for callers that send it.
        detail = not config.api_key or _authorised(request, config.api_key)
        release = releases.current
        if release is None:
            body = {"status": "loading" if not releases.error else "error"}
            if releases.error:
                body["error"] = releases.error if detail else "the bundle cannot be served"
            return JSONResponse(body, status_code=503, headers={"Retry-After": "2"})
        body = {"status": "ready", "bundle": release.content_id, "model": release.model,
                "switches": releases.switches, "refused": bool(releases.error),
                "running_or_waiting": slots.inside}  # fmt: skip
        if detail:
            body.update(path=str(release.path), refused=releases.error)
        return body

    @app.get("/v1/models")
    async def models():
        release = serving()
        return {"object": "list", "data": [{"id": release.model, "object": "model",
                "created": int(release.loaded_at), "owned_by": "outpost"}]}  # fmt: skip

    @app.get("/v1/passages/{chunk_id}")
    async def passage(chunk_id: int):
        release = serving()
        if not 0 <= chunk_id < 2**63:  # SQLite's integers; beyond, no passage can have the id
            raise ApiError(404, f"no passage {chunk_id} in this bundle")
        found = release.assistant.retriever.store.get([chunk_id]).get(chunk_id)
        if found is None:
            raise ApiError(404, f"no passage {chunk_id} in this bundle")
        source, heading, text = found
        return {"id": chunk_id, "source": source, "heading": heading, "text": text}

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest, request: Request):
        release = serving()
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or any(not t.strip() for t in texts):
            raise ApiError(400, "input: give one or more non-empty strings")
        embedder = release.assistant.retriever.embedder
        loop = asyncio.get_running_loop()
        slots.admit()
        try:
            vectors = await loop.run_in_executor(
                pool, _in_slot, slots, lambda: embedder.embed(texts)
            )
        finally:
            slots.leave()
        request.state.log = {"inputs": len(texts)}
        return {"object": "list", "model": release.model,
                "data": [{"object": "embedding", "index": i, "embedding": [round(float(x), 7) for x in v]}
                         for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": 0, "total_tokens": 0}}  # fmt: skip

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        release = serving()
        question, history = split_conversation(body.messages)
        limit = release.assistant.settings.max_new_tokens
        asked = body.max_completion_tokens or body.max_tokens or limit
        max_tokens = min(asked, limit)  # clamped to the bundle's longest answer
        slots.admit()
        loop = asyncio.get_running_loop()
        job = Job(loop, time.monotonic() + config.request_timeout)
        loop.run_in_executor(pool, _work, slots, job, release, question, history, max_tokens)
        kind, value = await _next_event(job, request)
        if kind == "busy":
            raise ApiError(503, value)
        cid, created = "chatcmpl-" + secrets.token_hex(12), int(time.time())
        log = request.state.log
        if config.log_questions:
            log["question"] = question

        def record(answer) -> None:
            log.update({"prompt_tokens": answer.timings.prompt_tokens,
                        "completion_tokens": answer.timings.new_tokens, "declined": answer.declined,
                        "declined_by": answer.declined_by, "bundle": release.content_id[:12],
                        "ttft_ms": round(1000 * answer.timings.first_token_s, 1),
                        "first_shown_ms": round(1000 * answer.first_shown_s, 1), "answer_mode": answer.answer_mode})  # fmt: skip

        if not body.stream:
            kind, value = await _last_event(job, request)
            if kind != "done":
                raise ApiError(400 if kind == "invalid" else 500, value)
            record(value)
            return {"id": cid, "object": "chat.completion", "created": created, "model": release.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": value.text},
                                 "finish_reason": _finish(value, max_tokens)}],
                    "usage": usage(value), "outpost": outpost_field(value, release)}  # fmt: skip

        def chunk(delta: dict, finish=None, **extra) -> str:
            data = {"id": cid, "object": "chat.completion.chunk", "created": created,
                    "model": release.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}  # fmt: skip
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

        include_usage = bool((getattr(body, "stream_options", None) or {}).get("include_usage"))

        async def events():
            try:
                yield chunk({"role": "assistant", "content": ""})
                while True:
                    kind, value = await job.events.get()
                    if kind == "text":
                        yield chunk({"content": value})
                    elif kind == "quote":  # the manual's line, before any text is generated
                        yield chunk({}, outpost={"quote": value})
                    elif kind == "done":
                        record(value)
                        if value.answer_mode == "quoted":  # the line is the answer's content
                            yield chunk({"content": value.text})
                        extra = {"outpost": outpost_field(value, release)}
                        if include_usage:
                            extra["usage"] = usage(value)
                        yield chunk({}, _finish(value, max_tokens), **extra)
                        break
                    else:
                        err = {"message": value, "type": "server_error"}
                        yield f"data: {json.dumps({'error': err})}\n\n"
                        break
                yield "data: [DONE]\n\n"
            finally:
                job.stop.set()  # a client that went away stops its generation

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})  # fmt: skip

    settings = {"idleReset": config.idle_reset, "lang": config.lang, "languages": LANGUAGES}
    page = (KIOSK / "index.html").read_text(encoding="utf-8")
    page = page.replace("/*SETTINGS*/{}", json.dumps(settings))
    assets = {p.name for p in KIOSK.iterdir() if p.is_file()} - {"index.html"}

    @app.get("/", include_in_schema=False)
    async def kiosk_page():
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/kiosk/{name}", include_in_schema=False)
    async def kiosk_asset(name: str):
        if name not in assets:
            raise ApiError(404, f"no kiosk asset {name}")
        return FileResponse(KIOSK / name, headers={"Cache-Control": "no-cache"})

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
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", rid.encode())]}  # fmt: skip
            await send(message)

        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            length = config.max_body + 1
        early = None
        if "chunked" in headers.get("transfer-encoding", "").lower():
            early = _error(411, "send the request body with a Content-Length header")
        elif length > config.max_body or length < 0:
            early = _error(413, f"request body over {config.max_body} bytes; send less")
        elif (
            config.api_key
            and scope["path"].startswith("/v1/")
            and not _authorised_headers(headers, config.api_key)
        ):
            early = _error(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                           "authentication_error")  # fmt: skip
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
                await _error(500, "internal error; the server log has the request id",
                             "server_error")(scope, receive, send_with_id)  # fmt: skip
        finally:
            if scope["path"] != "/health":
                self.say({"event": "request", "id": rid, "method": scope["method"],
                          "path": scope["path"],
                          "status": 499 if state.get("left") else status[0] or 500,
                          "latency_ms": round(1000 * (time.perf_counter() - started), 1),
                          **state.get("log", {})})  # fmt: skip


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


def _authorised_headers(headers: dict, key: str) -> bool:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), key.encode())


def _authorised(request, key: str) -> bool:
    return _authorised_headers({"authorization": request.headers.get("authorization", "")}, key)


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
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5, http=guarded_protocol(config))  # fmt: skip
