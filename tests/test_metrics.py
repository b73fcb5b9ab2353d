"""`GET /metrics`: the Prometheus text format read back line by line, who may scrape it (the
access rule of --metrics, --host and --api-key), and the counters moving as a real server
answers: a streamed answer scraped while it streams, a decline, a whole answer and a 429."""

import asyncio
import json
import re
import time

import httpx
import pytest

from outpost.runtime.ask.answer import Answer
from outpost.runtime.ask.generate import Timings
from outpost.runtime.config import AskConfig, ServeConfig, is_loopback
from outpost.runtime.serve.app import create_app
from outpost.runtime.serve.metrics import Family, Metrics, exposition
from outpost.runtime.serve.releases import Releases

KEY = "metrics-key-123"
PRESSURE = "What is the maximum system pressure of the PX-200 press?"
UNANSWERED = "How do I pair the PX-200 with a Bluetooth headset?"  # the press manual never says
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """The samples of an exposition, {(name, labels): value}; every line is checked: a HELP or
    TYPE line, or a sample of a family whose HELP and TYPE came before it."""
    assert text.endswith("\n")
    helped, typed, samples = set(), {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, words = line[7:].partition(" ")
            assert words and name not in helped, line
            helped.add(name)
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in ("counter", "gauge", "histogram") and name in helped, line
            typed[name] = kind
        else:
            m = _SAMPLE.fullmatch(line)
            assert m, f"not a sample line: {line!r}"
            name, labels, value = m.groups()
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            family = family if typed.get(family) == "histogram" else name
            assert family in typed, f"{name} has no HELP and TYPE before it"
            pairs = _LABEL.findall(labels or "")
            assert ",".join(f'{k}="{v}"' for k, v in pairs) == (labels or ""), line
            shown = {k: re.sub(r'\\[\\"n]', lambda e: _UNESCAPE[e.group()], v) for k, v in pairs}
            key = (name, frozenset(shown.items()))
            assert key not in samples, f"{line} twice"
            samples[key] = float(value)
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    """A sample's value; 0 for one not (yet) shown."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def answer(*, declined_by: str | None = None, mode: str | None = None, **times) -> Answer:
    a = Answer(question="?", declined=declined_by is not None, declined_by=declined_by)
    a.answer_mode, a.retrieval_s = mode, times.get("retrieval_s", 0.0)
    a.first_shown_s = times.get("first_shown_s", 0.0)
    a.timings = Timings(total_s=times.get("total_s", 0.0))
    return a


# --- the text format -------------------------------------------------------------------------


def test_the_exposition_reads_back_as_prometheus_text():
    metrics = Metrics()
    metrics.request("/v1/chat/completions", 200)
    metrics.request("/v1/chat/completions", 200)
    metrics.request("other", 404)
    metrics.answered(answer(mode="generated", retrieval_s=0.2, first_shown_s=0.3, total_s=1.5))
    metrics.answered(answer(declined_by="name", retrieval_s=0.05))  # declined before generating
    metrics.busy()
    odd = Family(
        "outpost_test", "gauge", "A help line\\with a backslash.", [("", {"x": 'a"b\\c\nd'}, 2.5)]
    )
    samples = parse(exposition([*metrics.families(), odd]))

    assert value(samples, "outpost_requests_total", route="/v1/chat/completions", status="200") == 2
    assert value(samples, "outpost_requests_total", route="other", status="404") == 1
    assert value(samples, "outpost_answers_total", mode="generated") == 1
    assert value(samples, "outpost_answers_total", mode="declined") == 1
    assert ("outpost_answers_total", frozenset({("mode", "quoted")})) in samples  # shown at 0
    assert value(samples, "outpost_declines_total", declined_by="name") == 1
    assert value(samples, "outpost_declines_total", declined_by="threshold") == 0
    assert value(samples, "outpost_busy_refusals_total") == 1
    assert value(samples, "outpost_test", x='a"b\\c\nd') == 2.5  # escaped and read back

    # Histograms: cumulative buckets ending in +Inf = _count; the answer's own times.
    for name in ("outpost_answer_first_shown_seconds", "outpost_answer_seconds"):
        buckets = sorted(
            (float(dict(labels)["le"]), n)
            for (sample, labels), n in samples.items()
            if sample == f"{name}_bucket"
        )
        counts = [n for _, n in buckets]
        assert counts == sorted(counts) and buckets[-1] == (float("inf"), 2)
        assert value(samples, f"{name}_count") == 2
    assert value(samples, "outpost_answer_seconds_sum") == pytest.approx(1.75)  # 0.2+1.5, 0.05
    assert value(samples, "outpost_answer_first_shown_seconds_sum") == pytest.approx(0.35)
    assert value(samples, "outpost_answer_first_shown_seconds_bucket", le="0.25") == 1  # 0.05
    assert value(samples, "outpost_answer_seconds_bucket", le="1") == 1
    assert value(samples, "outpost_answer_seconds_bucket", le="2") == 2  # 1.7


def test_counts_from_many_threads_are_all_kept():
    import threading

    metrics = Metrics()

    def work():
        for _ in range(500):
            metrics.request("/health", 200)
            metrics.answered(answer(mode="quoted", total_s=0.5))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    samples = parse(exposition(metrics.families()))
    assert value(samples, "outpost_requests_total", route="/health", status="200") == 4000
    assert value(samples, "outpost_answers_total", mode="quoted") == 4000
    assert value(samples, "outpost_answer_seconds_count") == 4000


# --- who may scrape ----------------------------------------------------------------------------


def _app(source, **settings):
    config = ServeConfig(source=str(source), ask=AskConfig(threads=2), **settings)
    events: list[dict] = []
    releases = Releases(config, events.append)
    return create_app(config, releases, say=events.append), releases


def _get(app, *requests: tuple[str, dict]) -> list[httpx.Response]:
    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://outpost") as client:
            return [await client.get(path, headers=headers) for path, headers in requests]

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("settings", "headers", "status", "said"),
    [
        ({}, {}, 200, None),  # loopback, no key: on
        ({"host": "::1"}, {}, 200, None),
        ({"host": "localhost"}, {}, 200, None),
        ({"metrics": False}, {}, 404, "--no-metrics"),
        ({"host": "0.0.0.0"}, {}, 404, "--api-key"),  # a public bind without a key: not served
        ({"host": "192.168.1.20"}, {}, 404, "--api-key"),
        ({"host": "0.0.0.0", "api_key": KEY}, {}, 401, "API key"),
        ({"host": "0.0.0.0", "api_key": KEY}, {"Authorization": "Bearer wrong-key-99"}, 401, "key"),
        ({"host": "0.0.0.0", "api_key": KEY}, {"Authorization": f"Bearer {KEY}"}, 200, None),
        ({"api_key": KEY}, {}, 401, "API key"),  # a key set: asked on loopback too
        ({"api_key": KEY}, {"Authorization": f"Bearer {KEY}"}, 200, None),
    ],
)
def test_metrics_are_served_on_loopback_or_behind_the_api_key(
    tmp_path, settings, headers, status, said
):
    (tmp_path / "bundle").mkdir()  # nothing loaded: metrics answer all the same
    app, _ = _app(tmp_path / "bundle", **settings)
    (r,) = _get(app, ("/metrics", headers))
    assert r.status_code == status, r.text
    if status == 200:
        assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        samples = parse(r.text)
        assert value(samples, "outpost_slots") == 1 and value(samples, "outpost_queue_limit") == 8
        assert not [s for s in samples if s[0] == "outpost_bundle_info"]  # none loaded yet
    else:
        error = r.json()["error"]
        assert error["code"] == status and said in error["message"]
        assert error["type"] == (
            "authentication_error" if status == 401 else "invalid_request_error"
        )


def test_refused_scrapes_are_counted_under_their_route(tmp_path):
    (tmp_path / "bundle").mkdir()
    app, _ = _app(tmp_path / "bundle", host="0.0.0.0", api_key=KEY)
    key = {"Authorization": f"Bearer {KEY}"}
    *_, last = _get(
        app, ("/metrics", {}), ("/v1/passages/7", {}), ("/nowhere", key), ("/metrics", key)
    )
    samples = parse(last.text)
    assert value(samples, "outpost_requests_total", route="/metrics", status="401") == 1
    assert (
        value(samples, "outpost_requests_total", route="/v1/passages/{chunk_id}", status="401") == 1
    )
    assert value(samples, "outpost_requests_total", route="other", status="404") == 1


def test_loopback_is_the_device_only():
    assert all(map(is_loopback, ["127.0.0.1", "127.3.0.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.20", "kiosk.lan"]))


# --- a real server answering -------------------------------------------------------------------


MODES_SEEN = ("generated", "quoted", "declined", "none")


def mode_of(field: dict) -> str:
    """The mode /metrics counts an answer under, from its `outpost` field."""
    return "declined" if field["declined"] else field["answer_mode"] or "none"


def ask(question: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": question}], **extra}


def requests(samples: dict, status: str) -> float:
    return value(samples, "outpost_requests_total", route="/v1/chat/completions", status=status)


def scrape(url: str) -> dict:
    r = httpx.get(f"{url}/metrics", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith(
        "text/plain; version=0.0.4"
    )
    return parse(r.text)


def scrape_until(url: str, done, tries: int = 100) -> dict:
    """A scrape once `done(samples)`: a request is counted when its last byte has gone, which
    the client may see a moment before the server has finished with it."""
    for _ in range(tries):
        samples = scrape(url)
        if done(samples):
            return samples
        time.sleep(0.05)
    return samples


@pytest.mark.slow
def test_whole_answers_and_busy_refusals_are_counted_in_process(tiny_bundle):
    app, releases = _app(tiny_bundle, max_concurrent=1, queue=1)
    releases.refresh()  # what the app's release thread does first (not run in process)
    assert releases.current is not None
    scheduler = app.state.server.scheduler
    chat = "/v1/chat/completions"

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://outpost") as client:
            whole = await client.post(chat, json=ask(PRESSURE, max_tokens=8), timeout=120)
            while scheduler.inside:  # its worker thread leaves just after the answer is sent
                await asyncio.sleep(0.01)
            for _ in range(2):  # the slot and the one queue place, taken
                scheduler.admit()
            try:
                busy = await client.post(chat, json=ask(PRESSURE), timeout=120)
                full = await client.get("/metrics")
            finally:
                for _ in range(2):
                    scheduler.leave()
            return whole, busy, full, await client.get("/metrics")

    whole, busy, full, after = asyncio.run(run())
    assert whole.status_code == 200 and busy.status_code == 429 and busy.headers["retry-after"]
    field = whole.json()["outpost"]
    samples = parse(after.text)
    assert value(samples, "outpost_answers_total", mode=mode_of(field)) == 1
    assert sum(value(samples, "outpost_answers_total", mode=m) for m in MODES_SEEN) == 1
    assert value(samples, "outpost_answer_seconds_count") == 1
    assert value(samples, "outpost_busy_refusals_total") == 1
    assert value(samples, "outpost_requests_total", route=chat, status="200") == 1
    assert value(samples, "outpost_requests_total", route=chat, status="429") == 1
    assert value(samples, "outpost_bundle_info", content_id=releases.current.content_id) == 1
    crowded = parse(full.text)  # two admitted, none in the slot: both counted as waiting
    assert (
        value(crowded, "outpost_queue_waiting") == 2 and value(crowded, "outpost_slots_busy") == 0
    )
    assert value(samples, "outpost_queue_waiting") == 0


@pytest.mark.slow
def test_a_live_server_counts_a_streamed_answer_and_a_decline(tiny_bundle):
    from test_serve import running

    with running(tiny_bundle) as (url, _):
        chat = f"{url}/v1/chat/completions"
        before = scrape(url)
        body = ask(PRESSURE, max_tokens=8, stream=True)
        with httpx.stream("POST", chat, json=body, timeout=120) as r:
            lines = (line for line in r.iter_lines() if line.startswith("data: "))
            assert '"role": "assistant"' in next(lines)  # the question has its slot
            during = scrape(url)
            rest = list(lines)
        assert rest[-1] == "data: [DONE]"
        streamed = json.loads(rest[-2][6:])["outpost"]
        after = scrape(url)
        declined = httpx.post(chat, json=ask(UNANSWERED), timeout=120).json()["outpost"]
        assert declined["declined"] and declined["declined_by"], declined
        bundle = httpx.get(f"{url}/health").json()["bundle"]
        last = scrape_until(
            url,
            lambda s: requests(s, "200") >= requests(before, "200") + 2,
        )

    answers = "outpost_answers_total"
    mode = mode_of(streamed)
    # While it streamed: served (no slot needed), the bundle named, counts between before and after.
    assert value(during, "outpost_bundle_info", content_id=bundle) == 1
    assert value(during, "outpost_slots") == 1 and value(during, "outpost_slots_busy") in (0, 1)
    for name, labels in ((answers, {"mode": mode}), ("outpost_answer_seconds_count", {})):
        assert value(before, name, **labels) <= value(during, name, **labels)
        assert value(during, name, **labels) <= value(after, name, **labels)
    # The streamed answer, then the decline: each counted once, by mode and by cause.
    assert value(after, answers, mode=mode) == value(before, answers, mode=mode) + 1
    for name in ("outpost_answer_seconds_count", "outpost_answer_first_shown_seconds_count"):
        assert value(after, name) == value(before, name) + 1
        assert value(last, name) == value(before, name) + 2
    by = declined["declined_by"]
    assert value(last, answers, mode="declined") == value(after, answers, mode="declined") + 1
    cause = "outpost_declines_total"
    assert value(last, cause, declined_by=by) == value(after, cause, declined_by=by) + 1
    assert requests(last, "200") == requests(before, "200") + 2
    assert value(last, "outpost_requests_total", route="/metrics", status="200") >= 3
