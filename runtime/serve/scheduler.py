"""Who answers when: answer slots, the queue before them, and each job's events.

`--max-concurrent` jobs (questions and embeddings alike) run at once (each uses the cores
through onnxruntime), up to `--queue` more wait their turn; beyond that a request is turned away
(429), and one that waited longer than `--queue-timeout` gets a 503. Every job runs in a worker
thread with its own state; its events (`Started`, `Quote`, `Text`, then `Done` or `Failed`)
cross to the event loop through its `Job`. A client that leaves, or a job past
`--request-timeout`, stops the job: in the queue it gives up its place; an answer stops between
tokens, embeddings between batches.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, TypeVar

from outpost.runtime.ask.answer import Answer
from outpost.runtime.config import ServeConfig
from outpost.runtime.errors import OutpostError, one_line

if TYPE_CHECKING:
    from starlette.requests import Request

    from outpost.runtime.serve.releases import Release

T = TypeVar("T")


class Stopped(Exception):
    """A job's work stopped early: its client left or its deadline passed."""


class ApiError(Exception):
    """An HTTP error answered in OpenAI's shape (429 and 503 with Retry-After)."""

    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


# --- a question's events, in the order they come ---------------------------------------------


@dataclass(frozen=True)
class Started:
    """The question has a slot and is being answered."""


@dataclass(frozen=True)
class Quote:
    """The manual's best line, before anything is generated (`Evidence` as a dict)."""

    quote: dict


@dataclass(frozen=True)
class Text:
    """A piece of the answer's text, shown as it comes."""

    text: str


@dataclass(frozen=True)
class Done:
    """The job's result: an `Answer` for a question, the vectors for embeddings."""

    result: Answer | object


@dataclass(frozen=True)
class Failed:
    """The question ended without an answer: 503 no slot came free, 400 the question was
    refused as invalid, 500 something broke (one line)."""

    status: int
    message: str


Event = Started | Quote | Text | Done | Failed


class Job:
    """One question in flight: its events cross from the worker thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float):
        self.loop, self.deadline = loop, deadline
        self.events: asyncio.Queue = asyncio.Queue()
        self.stop = threading.Event()

    def put(self, event: Event) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def should_stop(self) -> bool:
        return self.stop.is_set() or time.monotonic() > self.deadline

    async def next(self, request: Request) -> Event:
        """The next event; while waiting for it (in the queue or answering), a client that
        leaves stops the job, so a question nobody waits for gives up its place and its slot."""
        while True:
            try:
                return await asyncio.wait_for(self.events.get(), timeout=0.1)
            except TimeoutError:
                if await request.is_disconnected():
                    self.stop.set()
                    request.state.left = True

    async def last(self, request: Request) -> Done | Failed:
        """The final event, past the streamed quote and text."""
        while True:
            event = await self.next(request)
            if isinstance(event, Done | Failed):
                return event


class Scheduler:
    """Owns the answer slots, the queue and the worker threads."""

    def __init__(self, config: ServeConfig):
        self.sem = threading.Semaphore(config.max_concurrent)
        self.slots = config.max_concurrent
        self.limit = config.max_concurrent + config.queue
        self.timeout, self.request_timeout = config.queue_timeout, config.request_timeout
        self.inside = 0  # running or waiting
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(
            max_workers=self.limit + 2, thread_name_prefix="outpost-answer"
        )

    def admit(self) -> None:
        with self.lock:
            if self.inside >= self.limit:
                raise ApiError(
                    429, f"{self.inside} requests are running or waiting; try again shortly"
                )
            self.inside += 1

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1

    def occupancy(self) -> tuple[int, int]:
        """(answering, waiting) now, for /metrics: jobs in an answer slot, and jobs admitted
        that wait for one. Read only; a job between its slot and `leave` counts as waiting for
        that moment."""
        with self.lock:
            inside = self.inside
        answering = self.slots - self.sem._value  # the semaphore's free slots: read, never set
        return answering, max(0, inside - answering)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def in_slot(self, run: Callable[[], T], stop: threading.Event | None = None) -> T:
        """Run `run()` in an answer slot (from a worker thread); 503 when none came free in
        time. A job whose client left (`stop`) leaves the queue without taking the slot."""
        end = time.monotonic() + self.timeout
        while not self.sem.acquire(timeout=0.1):
            if stop is not None and stop.is_set():
                raise ApiError(499, "the client left before its question was answered")
            if time.monotonic() > end:
                raise ApiError(
                    503, f"no answer slot came free within {self.timeout:g} s; try again"
                )
        try:
            return run()
        finally:
            self.sem.release()

    def start(self, work: Callable[[Job], object]) -> Job:
        """Admit a job (429 when full) and run `work(job)` in a slot, in a worker thread; its
        result comes as `Done`, its end as `Failed`. `work` checks `job.should_stop()` (its
        client left, or past --request-timeout) and raises `Stopped` or ends early."""
        self.admit()
        loop = asyncio.get_running_loop()
        job = Job(loop, time.monotonic() + self.request_timeout)
        loop.run_in_executor(self.pool, self._work, job, work)
        return job

    def answer(
        self,
        release: Release,
        question: str,
        history: list[dict],
        max_tokens: int,
        adapter: str | None = None,
    ) -> Job:
        """Admit a question (429 when full) and start answering it, with `adapter` active for it
        alone; its events come on the job."""

        def answer(job: Job) -> Answer:
            job.put(Started())
            if job.should_stop():
                raise Stopped()
            return release.ask(
                question,
                history,
                on_text=lambda p: job.put(Text(p)),
                should_stop=job.should_stop,
                max_new_tokens=max_tokens,
                on_quote=lambda q: job.put(Quote(asdict(q))),
                adapter=adapter,
            )

        return self.start(answer)

    def _work(self, job: Job, work: Callable[[Job], object]) -> None:
        try:
            job.put(Done(self.in_slot(lambda: work(job), job.stop)))
        except Stopped:
            if job.stop.is_set():
                job.put(Failed(499, "the client left before it was answered"))
            else:
                job.put(
                    Failed(
                        503,
                        f"not done within the server's --request-timeout "
                        f"({self.request_timeout:g} s); send less at once",
                    )
                )
        except ApiError as e:
            job.put(Failed(e.status, e.message))
        except OutpostError as e:
            job.put(Failed(400, one_line(str(e))))
        except Exception as e:  # noqa: BLE001 - reported as a 500 with one line, server stays up
            job.put(Failed(500, f"{type(e).__name__}: {one_line(str(e))[:200]}"))
        finally:
            self.leave()
