"""The HTTP API's parts, one router per concern: the OpenAI-compatible API (/v1/chat/completions,
/v1/embeddings, /v1/models), passages (/v1/passages/{id}), feedback (/v1/feedback: the
reader's verdict on an answer, kept in the field log), health (/health), metrics (/metrics,
for Prometheus: runtime/serve/metrics.py) and the kiosk page's assets. Request models are
declared here once; the routes reach the answering side only through `Server` (the releases,
the scheduler and the metrics) and `Release` (ask, passage, embed).
"""

# No `from __future__ import annotations`: FastAPI reads the request models from the signatures.
import asyncio
import hmac
import json
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from fastapi import APIRouter, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    StreamingResponse,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator

from outpost.runtime.ask.answer import Answer
from outpost.runtime.config import LANGUAGES, ServeConfig
from outpost.runtime.field.entry import NOTE_CHARS, answer_entry, new_id, verdict_entry
from outpost.runtime.field.log import FieldLog, FieldLogError
from outpost.runtime.serve.metrics import CONTENT_TYPE, Metrics, exposition, serving
from outpost.runtime.serve.releases import Release, Releases
from outpost.runtime.serve.scheduler import ApiError, Done, Failed, Job, Quote, Scheduler, Text

if TYPE_CHECKING:
    import numpy as np

KIOSK = Path(__file__).parent / "kiosk"
MAX_MESSAGES = 64  # messages in one chat request
MAX_EMBEDDING_INPUTS = 64  # texts in one embeddings request
REMEMBERED = 4096  # answers of this server run a verdict may still be given for


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str = Field(pattern="^(system|developer|user|assistant|tool)$")
    content: str | list[dict]

    @field_validator("content", mode="before")
    @classmethod
    def _parts(cls, content):
        """A string, or content parts whose text parts hold a string (checked here, so a
        number in `text` is a 400 that says so, not a 500 when the text is joined)."""
        if isinstance(content, str):
            return content
        if not isinstance(content, list):
            raise ValueError("give a string or a list of content parts")
        for part in content:
            if not isinstance(part, dict):
                raise ValueError('each content part is an object: {"type": "text", "text": "..."}')
            if part.get("type") == "text" and not isinstance(part.get("text", ""), str):
                raise ValueError("a text part's `text` must be a string")
        return content


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, top_p, ...: accepted, greedy anyway
    model: str | None = None
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    user: str | None = Field(default=None, max_length=64)  # OpenAI's end-user id; "kiosk"


class FeedbackRequest(BaseModel):
    """The reader's verdict on one answer: did it answer the question?"""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern="^chatcmpl-[0-9a-f]{24}$")
    helpful: bool
    note: str | None = Field(default=None, max_length=NOTE_CHARS)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    input: str | list[str]

    @field_validator("input", mode="before")
    @classmethod
    def _texts(cls, given):
        """One string or a list of at most MAX_EMBEDDING_INPUTS, none empty: each limit named
        as itself (a long string is the embedder's to refuse, by its tokens)."""
        texts = [given] if isinstance(given, str) else given
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError("give a string or a list of strings")
        if len(texts) > MAX_EMBEDDING_INPUTS:
            raise ValueError(
                f"{len(texts)} texts; send at most {MAX_EMBEDDING_INPUTS} in one request"
            )
        if not texts or any(not t.strip() for t in texts):
            raise ValueError("give one or more non-empty strings")
        return given


@dataclass
class Server:
    """What the routes share: the settings, the releases followed, the scheduler, the field
    log (None with --no-feedback) and what /metrics shows."""

    config: ServeConfig
    releases: Releases
    scheduler: Scheduler
    feedback_log: FieldLog | None = None
    metrics: Metrics = field(default_factory=Metrics)
    answered: OrderedDict[str, None] = field(default_factory=OrderedDict)
    field_errors: int = 0  # entries the log could not take (a full disk): answers go on
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def keep(self, entry: dict) -> bool:
        """Append one entry to the field log; False (counted) when it cannot be written."""
        if self.feedback_log is None:
            return False
        try:
            self.feedback_log.append(entry)
        except (OSError, ValueError, FieldLogError):
            with self._lock:
                self.field_errors += 1
            return False
        if entry["kind"] == "answer":
            with self._lock:
                self.answered[entry["id"]] = None
                while len(self.answered) > REMEMBERED:
                    self.answered.popitem(last=False)
        return True

    def answered_here(self, answer_id: str) -> bool:
        with self._lock:
            return answer_id in self.answered

    def serving(self) -> Release:
        release = self.releases.current
        if release is None:
            raise ApiError(
                503,
                "the bundle is still loading"
                if not self.releases.error
                else f"no bundle can be served: {self.releases.error}",
            )
        return release


# --- OpenAI-shaped pieces ------------------------------------------------------------------


def error_response(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def _text(content: str | list[dict]) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p.get("type") == "text")


def split_conversation(messages: list[Message]) -> tuple[str, list[dict]]:
    """The question (last user turn) and the earlier user/assistant turns as history."""
    if not messages or messages[-1].role != "user":
        raise ApiError(400, "the last message must have role 'user'")
    question = _text(messages[-1].content).strip()
    if not question:
        raise ApiError(400, "the last user message has no text")
    history = [
        {"role": m.role, "content": _text(m.content)}
        for m in messages[:-1]
        if m.role in ("user", "assistant")
    ]
    # Chat history alternates user, assistant: keep complete pairs only.
    pairs = []
    for i in range(len(history) - 1):
        if history[i]["role"] == "user" and history[i + 1]["role"] == "assistant":
            pairs += history[i : i + 2]
    return question, pairs


OUTPOST_FIELD = ("declined", "declined_by", "unknown_names", "answer_mode", "evidence", "support")


def outpost_field(answer: Answer, release: Release) -> dict:
    """The answer's own serialised form (runtime/ask/answer.py), the parts a client shows: with the
    citations shown and the release that answered."""
    whole = answer.to_dict()
    shown = {c.n for c in answer.shown_citations()}
    return {
        **{k: whole[k] for k in OUTPOST_FIELD},
        "citations": [c for c in whole["citations"] if c["n"] in shown],
        "bundle": release.content_id,
    }


def usage(answer: Answer) -> dict:
    t = answer.timings
    return {
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.new_tokens,
        "total_tokens": t.prompt_tokens + t.new_tokens,
    }


def _finish(answer: Answer, max_tokens: int) -> str:
    return "length" if answer.timings.new_tokens >= max_tokens and not answer.declined else "stop"


def authorised_headers(headers: dict, key: str) -> bool:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), key.encode())


def _authorised(request: Request, key: str) -> bool:
    return authorised_headers({"authorization": request.headers.get("authorization", "")}, key)


class Reply:
    """One chat completion in OpenAI's shapes, whole or as server-sent events, with Outpost's
    `outpost` field; what it answered goes into the request's access-log line and `metrics`."""

    def __init__(
        self,
        release: Release,
        max_tokens: int,
        log: dict,
        model: str,
        metrics: Metrics | None = None,
    ):
        self.release, self.max_tokens, self.log, self.model = release, max_tokens, log, model
        self.metrics = metrics
        self.id, self.created = new_id(), int(time.time())
        self.on_done: Callable[[Answer], Awaitable[None]] | None = None  # once it is whole

    async def keep(
        self, server: Server, answer: Answer, via: str, adapter: str | None, follow_up: bool
    ) -> None:
        """The answer in the field log, under this completion's id (off the event loop: the
        log syncs each entry to the disk)."""
        if server.feedback_log is None:
            return
        entry = answer_entry(
            answer,
            id=self.id,
            via=via,
            bundle=self.release.content_id,
            signed_by=self.release.signed_by,
            adapter=adapter,
            follow_up=follow_up,
        )
        await asyncio.to_thread(server.keep, entry)

    def record(self, answer: Answer) -> None:
        self.log.update(
            {
                "prompt_tokens": answer.timings.prompt_tokens,
                "completion_tokens": answer.timings.new_tokens,
                "declined": answer.declined,
                "declined_by": answer.declined_by,
                "bundle": self.release.content_id[:12],
                "ttft_ms": round(1000 * answer.timings.first_token_s, 1),
                "first_shown_ms": round(1000 * answer.first_shown_s, 1),
                "answer_mode": answer.answer_mode,
            }
        )
        if self.metrics is not None:
            self.metrics.answered(answer)

    def whole(self, answer: Answer) -> dict:
        self.record(answer)
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text},
                    "finish_reason": _finish(answer, self.max_tokens),
                }
            ],
            "usage": usage(answer),
            "outpost": outpost_field(answer, self.release),
        }

    def chunk(self, delta: dict, finish: str | None = None, **extra: object) -> str:
        data = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    async def stream(self, job: Job, include_usage: bool) -> AsyncIterator[str]:
        """The job's events as chunks: the role, the quote (before any generation), the text as
        it comes, the last chunk with the `outpost` field, then [DONE]."""
        try:
            yield self.chunk({"role": "assistant", "content": ""})
            while True:
                event = await job.events.get()
                if isinstance(event, Text):
                    yield self.chunk({"content": event.text})
                elif isinstance(event, Quote):
                    yield self.chunk({}, outpost={"quote": event.quote})
                elif isinstance(event, Done):
                    answer = cast(Answer, event.result)  # a question's job ends with its answer
                    self.record(answer)
                    if self.on_done is not None:
                        await self.on_done(answer)
                    if answer.answer_mode == "quoted":  # the line is the answer's content
                        yield self.chunk({"content": answer.text})
                    extra = {"outpost": outpost_field(answer, self.release)}
                    if include_usage:
                        extra["usage"] = usage(answer)
                    yield self.chunk({}, _finish(answer, self.max_tokens), **extra)
                    break
                elif isinstance(event, Failed):
                    err = {"message": event.message, "type": "server_error"}
                    yield f"data: {json.dumps({'error': err})}\n\n"
                    break
            yield "data: [DONE]\n\n"
        finally:
            job.stop.set()  # a client that went away stops its generation


# --- routers -----------------------------------------------------------------------------------


def health_router(server: Server) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health(request: Request):
        """As llama.cpp's server answers: 503 with an error object while loading (or when no
        bundle can be served), 200 `{"status": "ok"}` when ready; Outpost's own fields beside.
        Paths and error texts only for the operator (with --api-key: callers that send it)."""
        config, releases = server.config, server.releases
        detail = not config.api_key or _authorised(request, config.api_key)
        release = releases.current
        if release is None:
            message = (
                "Loading model"
                if not releases.error
                else (releases.error if detail else "the bundle cannot be served")
            )
            body: dict[str, object] = {
                "error": {"code": 503, "message": message, "type": "unavailable_error"},
                "status": "loading" if not releases.error else "error",
            }
            return JSONResponse(body, status_code=503, headers={"Retry-After": "2"})
        body = {
            "status": "ok",
            "bundle": release.content_id,
            "model": release.model,
            "switches": releases.switches,
            "refused": bool(releases.error),
            "running_or_waiting": server.scheduler.inside,
        }
        if detail:
            body.update(path=str(release.path), refused=releases.error)
        return body

    return router


def metrics_router(server: Server) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def metrics():
        """Prometheus's scrape, in its text format (runtime/serve/metrics.py). 404 with the
        reason when not served (--no-metrics, or a --host other than loopback without
        --api-key); with --api-key, `Guard` has already asked for the key (401)."""
        refusal = server.config.metrics_refusal()
        if refusal is not None:
            raise ApiError(404, refusal)
        families = [*server.metrics.families(), *serving(server.scheduler, server.releases)]
        return PlainTextResponse(
            exposition(families), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"}
        )

    return router


def passages_router(server: Server) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/passages/{chunk_id}")
    async def passage(chunk_id: int):
        release = server.serving()
        if not 0 <= chunk_id < 2**63:  # SQLite's integers; beyond, no passage can have the id
            raise ApiError(404, f"no passage {chunk_id} in this bundle")
        found = release.passage(chunk_id)
        if found is None:
            raise ApiError(404, f"no passage {chunk_id} in this bundle")
        source, heading, text = found
        return {"id": chunk_id, "source": source, "heading": heading, "text": text}

    return router


def openai_router(server: Server) -> APIRouter:
    router = APIRouter()
    config, scheduler = server.config, server.scheduler

    @router.get("/v1/models")
    async def models():
        release = server.serving()
        return {
            "object": "list",
            "data": [
                {
                    "id": model,
                    "object": "model",
                    "created": int(release.loaded_at),
                    "owned_by": "outpost",
                    "parent": None if model == release.model else release.model,
                }
                for model in release.models
            ],
        }

    @router.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest, request: Request):
        """A job like a question's: in the queue and in its slot it watches its client and
        --request-timeout, and stops between batches when either ends it."""
        release = server.serving()
        texts = [body.input] if isinstance(body.input, str) else body.input
        request.state.log = {"inputs": len(texts)}

        def embed(job: Job):
            return release.embed(texts, job.should_stop)

        last = await scheduler.start(embed).last(request)
        if isinstance(last, Failed):
            raise ApiError(last.status, last.message)
        vectors = cast("np.ndarray", last.result)  # an embeddings job ends with the vectors
        return {
            "object": "list",
            "model": release.model,
            "data": [
                {"object": "embedding", "index": i, "embedding": [round(float(x), 7) for x in v]}
                for i, v in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }

    @router.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        release = server.serving()
        question, history = split_conversation(body.messages)
        limit = release.max_new_tokens
        asked = body.max_completion_tokens or body.max_tokens or limit
        max_tokens = min(asked, limit)  # clamped to the bundle's longest answer
        try:
            adapter = release.adapter_for(body.model)
        except LookupError as e:
            raise ApiError(404, str(e)) from None
        job = scheduler.answer(release, question, history, max_tokens, adapter)
        first = await job.next(request)
        if isinstance(first, Failed):  # no slot came free in time
            raise ApiError(first.status, first.message)
        shown = release.shown_model(adapter)
        reply = Reply(release, max_tokens, request.state.log, shown, server.metrics)
        via = "kiosk" if body.user == "kiosk" else "api"

        async def keep(answer: Answer) -> None:
            await reply.keep(server, answer, via, adapter, bool(history))

        reply.on_done = keep
        if config.log_questions:
            reply.log["question"] = question
        if not body.stream:
            last = await job.last(request)
            if isinstance(last, Failed):
                raise ApiError(last.status, last.message)
            answer = cast(Answer, last.result)
            await keep(answer)
            return reply.whole(answer)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            reply.stream(job, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router


def feedback_router(server: Server) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/feedback")
    async def feedback(body: FeedbackRequest, request: Request):
        """The reader's verdict on an answer this server gave (its completion id): kept in the
        field log; a later verdict on the same answer replaces the earlier one."""
        if server.feedback_log is None:
            raise ApiError(404, "this server keeps no feedback (it runs with --no-feedback)")
        if not server.answered_here(body.id):
            raise ApiError(
                404,
                f"no answer {body.id} here: a verdict is taken for the last {REMEMBERED} "
                "answers this server gave",
            )
        via = "kiosk" if request.headers.get("x-outpost-client") == "kiosk" else "api"
        request.state.log = {"helpful": body.helpful}
        if not await asyncio.to_thread(
            server.keep, verdict_entry(body.id, body.helpful, body.note, via)
        ):
            raise ApiError(503, "the field log cannot be written (is the disk full?)")
        return {"id": body.id, "object": "feedback", "recorded": True}

    return router


def kiosk_router(config: ServeConfig) -> APIRouter:
    router = APIRouter()
    settings = {
        "idleReset": config.idle_reset,
        "lang": config.lang,
        "languages": LANGUAGES,
        "feedback": config.feedback,
    }
    page = (KIOSK / "index.html").read_text(encoding="utf-8")
    page = page.replace("/*SETTINGS*/{}", json.dumps(settings))
    assets = {p.name for p in KIOSK.iterdir() if p.is_file()} - {"index.html"}

    @router.get("/", include_in_schema=False)
    async def kiosk_page():
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @router.get("/kiosk/{name}", include_in_schema=False)
    async def kiosk_asset(name: str):
        if name not in assets:
            raise ApiError(404, f"no kiosk asset {name}")
        return FileResponse(KIOSK / name, headers={"Cache-Control": "no-cache"})

    return router
