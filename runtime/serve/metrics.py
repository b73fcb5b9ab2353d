"""What `outpost serve` counts, for Prometheus: `GET /metrics` in the text exposition format
(version 0.0.4), written here by hand, so the device needs no client library.

`Metrics` keeps what happens as the server runs: requests by route and status (counted by
`Guard`, runtime/serve/app.py), answers by mode and declines by cause with the answer times as
histograms (by `Reply.record`, runtime/serve/api.py), and busy refusals (429s, by the error
handler). Requests end on the event loop but answers are produced on worker threads, so every
change is made under one lock. What is read at scrape time (the queue, the slots, the bundle)
comes in as `Family` values from the route; `exposition` writes them all.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from outpost.runtime.ask.answer import Answer
    from outpost.runtime.serve.releases import Releases
    from outpost.runtime.serve.scheduler import Scheduler

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: one answer takes about 2 s on 2 cores (docs/serving.md, "Load"); the buckets reach
# past that for long answers and slower boxes, and --request-timeout (120 s) ends any later.
SECONDS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
# Shown at 0 before the first of each, so that a rate over the first one is seen: the modes of
# an answer and the causes of a decline (runtime/ask/answer.py, `Answer.declined_by`).
MODES = ("generated", "quoted", "declined")
DECLINED_BY = ("threshold", "name", "evidence", "model", "support")

Labels = dict[str, str]


@dataclass(frozen=True)
class Family:
    """One metric as exposed: its name, type (counter, gauge or histogram), help and samples,
    each (suffix of the name, labels, value)."""

    name: str
    kind: str
    help: str
    samples: Sequence[tuple[str, Labels, float]]


class Histogram:
    """Observations in the buckets of `SECONDS` (each counted in the first bucket it fits,
    written cumulatively, as Prometheus reads `le`), with their sum and count."""

    def __init__(self, buckets: tuple[float, ...] = SECONDS):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum, self.count = 0.0, 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break
        self.sum += value
        self.count += 1

    def samples(self) -> list[tuple[str, Labels, float]]:
        found: list[tuple[str, Labels, float]] = []
        below = 0
        for bound, count in zip(self.buckets, self.counts, strict=True):
            below += count
            found.append(("_bucket", {"le": number(bound)}, below))
        found.append(("_bucket", {"le": "+Inf"}, self.count))
        return [*found, ("_sum", {}, self.sum), ("_count", {}, self.count)]


def answer_seconds(answer: Answer) -> tuple[float, float]:
    """(first shown, whole) of an answer, in seconds from the question: the first text a screen
    can show (the quote, else the model's first token; a decline found before generation is
    shown whole at once, `first_shown_s` left 0), and search plus generation."""
    whole = answer.retrieval_s + answer.timings.total_s
    return (answer.first_shown_s or whole), whole


class Metrics:
    """The counters and histograms of one server run, each change under one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, int]] = Counter()  # (route, status)
        self._answers: Counter[str] = Counter(dict.fromkeys(MODES, 0))
        self._declines: Counter[str] = Counter(dict.fromkeys(DECLINED_BY, 0))
        self._busy = 0
        self._first_shown, self._whole = Histogram(), Histogram()

    def request(self, route: str, status: int) -> None:
        with self._lock:
            self._requests[(route, status)] += 1

    def answered(self, answer: Answer) -> None:
        """One answer, whole or streamed: its mode, its decline's cause, its times."""
        mode = "declined" if answer.declined else answer.answer_mode or "none"
        first, whole = answer_seconds(answer)
        with self._lock:
            self._answers[mode] += 1
            if answer.declined:
                self._declines[answer.declined_by or "unknown"] += 1
            self._first_shown.observe(first)
            self._whole.observe(whole)

    def busy(self) -> None:
        """One request turned away with a 429: every slot and queue place taken."""
        with self._lock:
            self._busy += 1

    def families(self) -> list[Family]:
        """What was counted so far, copied under the lock."""
        with self._lock:
            requests = sorted(self._requests.items())
            answers, declines = sorted(self._answers.items()), sorted(self._declines.items())
            busy = self._busy
            first, whole = self._first_shown.samples(), self._whole.samples()
        return [
            Family(
                "outpost_requests_total",
                "counter",
                "HTTP requests answered, by route (its path template) and status code.",
                [("", {"route": r, "status": str(s)}, n) for (r, s), n in requests],
            ),
            Family(
                "outpost_answers_total",
                "counter",
                "Answers given, by mode: generated, quoted (the manual's line) or declined.",
                [("", {"mode": m}, n) for m, n in answers],
            ),
            Family(
                "outpost_declines_total",
                "counter",
                "Declined answers, by cause (the answer's declined_by).",
                [("", {"declined_by": d}, n) for d, n in declines],
            ),
            Family(
                "outpost_busy_refusals_total",
                "counter",
                "Requests answered 429: every answer slot and queue place was taken.",
                [("", {}, busy)],
            ),
            Family(
                "outpost_answer_first_shown_seconds",
                "histogram",
                "Seconds from the question to the first text a screen can show.",
                first,
            ),
            Family(
                "outpost_answer_seconds",
                "histogram",
                "Seconds from the question to the whole answer (search and generation).",
                whole,
            ),
        ]


def exposition(families: Iterable[Family]) -> str:
    """The Prometheus text format: per family its HELP and TYPE lines, then one line per
    sample, `name{label="value",...} value`."""
    lines = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for suffix, labels, value in family.samples:
            shown = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            braced = f"{{{shown}}}" if shown else ""
            lines.append(f"{family.name}{suffix}{braced} {number(value)}")
    return "\n".join(lines) + "\n"


def number(value: float) -> str:
    """A sample value or bucket bound as Prometheus writes it: integers bare, +Inf, NaN."""
    if isinstance(value, int) or (math.isfinite(value) and value.is_integer() and value < 2**53):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def serving(scheduler: Scheduler, releases: Releases) -> list[Family]:
    """The gauges read at scrape time: answer slots and the queue (runtime/serve/scheduler.py),
    the bundle being served and the release switches (runtime/serve/releases.py)."""
    answering, waiting = scheduler.occupancy()
    release = releases.current
    bundle = [] if release is None else [("", {"content_id": release.content_id}, 1)]
    return [
        Family(
            "outpost_slots",
            "gauge",
            "Answer slots (--max-concurrent).",
            [("", {}, scheduler.slots)],
        ),
        Family(
            "outpost_slots_busy",
            "gauge",
            "Answer slots in use now (questions and embeddings).",
            [("", {}, answering)],
        ),
        Family(
            "outpost_queue_waiting",
            "gauge",
            "Requests admitted and waiting for an answer slot.",
            [("", {}, waiting)],
        ),
        Family(
            "outpost_queue_limit",
            "gauge",
            "Requests that may wait for a slot (--queue); more are answered 429.",
            [("", {}, scheduler.limit - scheduler.slots)],
        ),
        Family(
            "outpost_bundle_info",
            "gauge",
            "The bundle being served, by its content id (1; no sample while none is loaded).",
            bundle,
        ),
        Family(
            "outpost_bundle_switches_total",
            "counter",
            "Releases switched to since the server started (a bundles folder's current moved).",
            [("", {}, releases.switches)],
        ),
    ]
