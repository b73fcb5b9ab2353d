"""`outpost serve` on 127.0.0.1, as clients see it: the official openai client (streamed and not),
the API's limits and errors, 50 concurrent clients, 500 sequential requests with memory watched,
a release switched under load, a release that fails verification, and a schema fuzz."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import ROOT, outpost

pytestmark = pytest.mark.slow
httpx = pytest.importorskip("httpx")

PRESSURE = "What is the maximum system pressure of the PX-200 press?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(bundle, *args: str, ready: bool = True, env: dict | None = None):
    """A real `outpost serve` process (`env`: variables beside os.environ); yields (base URL,
    process). Its log (stderr) goes to a file, `proc.log_path`: a pipe nobody reads would fill
    and stop the server."""
    import tempfile

    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="outpost-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "outpost.cli",
            "serve",
            str(bundle),
            "--port",
            str(port),
            "--threads",
            "2",
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
        env={**os.environ, **(env or {})},
    )
    proc.log_path = log.name
    url = f"http://127.0.0.1:{port}"
    try:
        if ready:
            wait_ready(url, proc)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wait_ready(url: str, proc, timeout: float = 180) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(
                f"server exited {proc.returncode}: {open(proc.log_path).read()[-2000:]}"
            )
        try:
            r = httpx.get(f"{url}/health", timeout=2)
            if r.status_code == 200:
                return r.json()
            assert r.status_code == 503 and r.headers["retry-after"]
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("server not ready in time")


@pytest.fixture(scope="module")
def smol_server(smol_bundle):
    with running(smol_bundle, "--idle-reset", "30") as (url, proc):
        yield url


@pytest.fixture(scope="module")
def tiny_server(tiny_bundle):
    with running(tiny_bundle, "--max-concurrent", "1", "--queue", "4", "--queue-timeout", "20") as (
        url,
        proc,
    ):
        yield url, proc


def ask_body(question: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": question}], **extra}


# --- the official client ----------------------------------------------------------------------


def test_openai_client_answers_with_citations_and_evidence(smol_server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{smol_server}/v1", api_key="not-needed", max_retries=0)
    model = client.models.list().data[0].id
    assert model.startswith("outpost-")

    plain = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PRESSURE}]
    )
    text = plain.choices[0].message.content
    assert "280" in text and plain.choices[0].finish_reason == "stop"
    extra = plain.model_extra["outpost"]
    assert not extra["declined"] and extra["citations"]
    assert plain.usage.prompt_tokens > 0 and plain.usage.completion_tokens > 0
    quote = extra["evidence"][0]
    passage = httpx.get(f"{smol_server}/v1/passages/{quote['chunk_id']}").json()
    assert (
        passage["text"][quote["start"] : quote["end"]] == quote["text"]
    )  # offsets slice the chunk
    assert "280" in quote["text"]

    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PRESSURE}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text  # greedy decoding: the same answer, streamed
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop" and last.usage.completion_tokens > 0
    assert last.model_extra["outpost"]["evidence"] == extra["evidence"]

    off = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    assert off.model_extra["outpost"]["declined"] and off.model_extra["outpost"]["citations"] == []

    follow = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "user", "content": PRESSURE},
            {"role": "assistant", "content": text},
            {"role": "user", "content": "And the ram stroke?"},
        ],
    )
    assert follow.choices[0].message.content

    emb = client.embeddings.create(model=model, input=["hydraulic press", "conveyor belt"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 384
    assert abs(sum(x * x for x in emb.data[0].embedding) - 1) < 1e-3


def test_a_client_that_disconnects_stops_its_answer(smol_server):
    """The slot comes free long before the whole answer would have been written."""
    body = ask_body(
        "List every maintenance task of the PX-200 press with its interval, in detail.",
        stream=True,
        max_tokens=200,
    )
    start = time.perf_counter()
    whole = httpx.post(
        f"{smol_server}/v1/chat/completions", json={**body, "stream": False}, timeout=120
    )
    full_s, tokens = time.perf_counter() - start, whole.json()["usage"]["completion_tokens"]
    if tokens < 60:
        pytest.skip(f"the model wrote only {tokens} tokens: too short to see an early stop")
    start = time.perf_counter()
    with httpx.stream("POST", f"{smol_server}/v1/chat/completions", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break  # the first words arrived: hang up
    while (
        httpx.get(f"{smol_server}/health").json()["running_or_waiting"]
        and time.perf_counter() - start < 60
    ):
        time.sleep(0.05)
    assert time.perf_counter() - start < 0.8 * full_s, (time.perf_counter() - start, full_s)


def test_health_models_openapi_and_kiosk_assets_are_served(smol_server):
    health = httpx.get(f"{smol_server}/health").json()
    assert health["status"] == "ok" and len(health["bundle"]) == 64
    spec = httpx.get(f"{smol_server}/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/embeddings", "/v1/models", "/health"} <= set(spec["paths"])
    page = httpx.get(f"{smol_server}/")
    assert page.status_code == 200 and "/kiosk/kiosk.js" in page.text
    assert (
        "http://" not in page.text.replace("http://www.w3.org", "") and "https://" not in page.text
    )
    for asset in ("kiosk.js", "kiosk.css"):
        body = httpx.get(f"{smol_server}/kiosk/{asset}")
        assert body.status_code == 200 and "https://" not in body.text  # nothing from a CDN
    assert httpx.get(f"{smol_server}/kiosk/..%2Fserve.py").status_code == 404


# --- limits and errors ------------------------------------------------------------------------


def test_bad_requests_get_one_line_errors_and_limits_hold(tiny_server):
    url, _ = tiny_server
    chat = f"{url}/v1/chat/completions"
    cases = [
        ({"messages": []}, 400),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, 400),
        ({"messages": [{"role": "user", "content": "   "}]}, 400),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, 400),
        ({"messages": "hello"}, 400),
        (ask_body("pressure?", max_tokens=0), 400),
        ([1, 2], 400),
    ]
    for body, status in cases:
        r = httpx.post(chat, json=body)
        assert r.status_code == status, (body, r.text)
        message = r.json()["error"]["message"]
        assert message and "\n" not in message
    assert (
        httpx.post(
            chat, content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    big = json.dumps(ask_body("x" * 70_000))
    r = httpx.post(chat, content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "65536" in r.json()["error"]["message"]
    chunked = httpx.post(
        chat, content=iter([b'{"messages": []}']), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 411
    assert httpx.get(f"{url}/v1/passages/999999").status_code == 404

    served = httpx.get(f"{url}/health").json()["path"]
    with open(os.path.join(served, "bundle.json")) as f:
        limit = json.load(f)["generation"]["max_new_tokens"]
    clamped = httpx.post(
        chat, json=ask_body("What is the maximum system pressure?", max_tokens=10**6), timeout=120
    )
    assert clamped.status_code == 200 and clamped.json()["usage"]["completion_tokens"] <= limit
    short = httpx.post(
        chat, json=ask_body("What is the maximum system pressure?", max_tokens=3), timeout=120
    )
    assert short.status_code == 200 and short.json()["usage"]["completion_tokens"] <= 3


def test_api_key_is_required_on_the_api_only(tiny_bundle):
    with running(tiny_bundle, "--api-key", "s3cret-key-123") as (url, _):
        assert httpx.get(f"{url}/v1/models").status_code == 401
        wrong = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer s3cret-key-124"})
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
        ok = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer s3cret-key-123"})
        assert ok.status_code == 200
        assert (
            httpx.get(f"{url}/health").status_code == 200
            and httpx.get(f"{url}/").status_code == 200
        )


def test_serve_usage_errors_are_one_line(tiny_bundle, tmp_path):
    for args, code, needle in [
        ((str(tmp_path / "nothing"),), 1, "does not exist"),
        ((str(tiny_bundle), "--max-concurrent", "0"), 2, "--max-concurrent"),
        ((str(tiny_bundle), "--api-key", "short"), 2, "--api-key"),
        ((str(tiny_bundle), "--lang", "xx"), 2, "--lang"),
    ]:
        done = outpost("serve", *args)
        assert done.returncode == code, done.stderr
        assert needle in done.stderr and "Traceback" not in done.stderr


# --- load -------------------------------------------------------------------------------------


def test_fifty_concurrent_clients_get_answers_or_clean_refusals(tiny_server):
    url, proc = tiny_server
    results, health = [], []
    stop = threading.Event()

    def client(i: int) -> None:
        try:
            r = httpx.post(
                f"{url}/v1/chat/completions",
                json=ask_body(f"Pressure question {i}?", max_tokens=16),
                timeout=60,
            )
            results.append((r.status_code, r.headers.get("retry-after"), r.json()))
        except httpx.HTTPError as e:  # pragma: no cover - reported by the assertion below
            results.append((0, None, str(e)))

    def watch() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            r = httpx.get(f"{url}/health", timeout=10)
            health.append((r.status_code, time.perf_counter() - t))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    clients = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for c in clients:
        c.start()
    for c in clients:
        c.join(timeout=120)
    stop.set()
    watcher.join()
    statuses = [s for s, _, _ in results]
    assert len(results) == 50 and set(statuses) <= {200, 429, 503}, statuses
    assert statuses.count(200) >= 5  # one slot and a queue of four: at least those are answered
    assert all(retry for s, retry, _ in results if s in (429, 503))
    assert all(body["error"]["message"] for s, _, body in results if s != 200)
    assert health and all(s == 200 for s, _ in health) and max(t for _, t in health) < 5
    assert proc.poll() is None


def test_five_hundred_sequential_requests_do_not_grow_memory(tiny_server):
    psutil = pytest.importorskip("psutil")
    url, proc = tiny_server
    server = psutil.Process(proc.pid)
    with httpx.Client(base_url=url, timeout=60) as http:
        for i in range(500):
            if i == 100:
                warm = server.memory_info().rss
            body = ask_body(
                f"How is the press reset after alarm {i}?", max_tokens=8, stream=i % 2 == 0
            )
            r = http.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
        grown = server.memory_info().rss - warm
    assert grown < 40 * 2**20, f"resident memory grew {grown / 2**20:.1f} MiB over 400 requests"


def test_a_release_switched_under_load_drops_no_question(
    tiny_bundle, tiny_bundle_b, signing_key, tmp_path
):
    trust = f"{signing_key}.pub"
    archives = {}
    for name, bundle in (("a", tiny_bundle), ("b", tiny_bundle_b)):
        archives[name] = tmp_path / f"{name}.tar"
        assert outpost("pack", str(bundle), "-o", str(archives[name])).returncode == 0
    device = tmp_path / "device"
    assert (
        outpost(
            "install", str(archives["a"]), "--bundles", str(device), "--trust", trust
        ).returncode
        == 0
    )
    with running(device, "--watch", "0.2", "--queue", "16", "--trust", trust) as (url, proc):
        first = httpx.get(f"{url}/health").json()["bundle"]
        statuses, served = [], set()
        stop = threading.Event()

        def client() -> None:
            with httpx.Client(base_url=url, timeout=60) as http:
                while not stop.is_set():
                    r = http.post(
                        "/v1/chat/completions",
                        json=ask_body("How do I reset the press?", max_tokens=8),
                    )
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        served.add(r.json()["outpost"]["bundle"])

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        assert (
            outpost(
                "install", str(archives["b"]), "--bundles", str(device), "--trust", trust
            ).returncode
            == 0
        )
        end = time.monotonic() + 120
        while httpx.get(f"{url}/health").json()["bundle"] == first and time.monotonic() < end:
            time.sleep(0.2)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
        second = httpx.get(f"{url}/health").json()
        assert second["bundle"] != first and second["switches"] == 1
        assert statuses and set(statuses) == {200}, statuses  # not one question failed
        assert served == {first, second["bundle"]}

        # A release that fails verification is refused; the running one keeps serving.
        bad = device / "releases" / "tampered"
        shutil.copytree(os.path.realpath(device / "current"), bad)
        with open(bad / "chunks.sqlite", "r+b") as f:
            f.seek(200)
            f.write(b"\x00tampered\x00")
        os.symlink(bad, device / "current.new")
        os.replace(device / "current.new", device / "current")
        end = time.monotonic() + 60
        while not httpx.get(f"{url}/health").json()["refused"] and time.monotonic() < end:
            time.sleep(0.2)
        after = httpx.get(f"{url}/health").json()
        assert after["bundle"] == second["bundle"] and "chunks.sqlite" in after["refused"]
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json=ask_body("How do I reset the press?", max_tokens=8),
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["outpost"]["bundle"] == second["bundle"]
    log = open(proc.log_path).read()
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(e["event"] == "refused" for e in events)
    requests = [
        e for e in events if e["event"] == "request" and e["path"] == "/v1/chat/completions"
    ]
    assert requests and all("question" not in e and "latency_ms" in e for e in requests)
    assert all("completion_tokens" in e and "declined" in e for e in requests if e["status"] == 200)


def test_health_is_503_while_the_bundle_loads(tiny_bundle):
    with running(tiny_bundle, ready=False) as (url, proc):
        seen = set()
        end = time.monotonic() + 120
        while 200 not in seen and time.monotonic() < end:
            try:
                r = httpx.get(f"{url}/health", timeout=2)
                seen.add(r.status_code)
                if r.status_code == 503:
                    chat = httpx.post(f"{url}/v1/chat/completions", json=ask_body("pressure?"))
                    assert chat.status_code in (503, 200)
                    if chat.status_code == 503:
                        assert chat.headers["retry-after"]
            except httpx.TransportError:
                time.sleep(0.05)
        assert 200 in seen


# --- schema fuzz ------------------------------------------------------------------------------


def test_schema_fuzz_never_gets_a_5xx_other_than_503(tiny_server):
    pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    url, proc = tiny_server
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=False, allow_infinity=False),  # JSON has no inf
        st.text(max_size=40),
    )
    junk = st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )
    message = st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "assistant", "system", "tool", "x", ""]),
            "content": st.one_of(
                st.text(max_size=80),
                junk,
                st.lists(
                    st.fixed_dictionaries(
                        {
                            "type": st.sampled_from(["text", "image_url"]),
                            "text": st.text(max_size=30),
                        }
                    ),
                    max_size=3,
                ),
            ),
        }
    )
    body = st.one_of(
        junk,
        st.fixed_dictionaries(
            {"messages": st.lists(message, max_size=4)},
            optional={
                "max_tokens": st.one_of(st.integers(-5, 10**9), junk),
                "stream": st.one_of(st.booleans(), junk),
                "model": junk,
                "temperature": junk,
                "max_completion_tokens": st.integers(-5, 50),
            },
        ),
    )
    paths = st.sampled_from(["/v1/chat/completions", "/v1/embeddings"])
    http = httpx.Client(base_url=url, timeout=60)

    @settings(
        max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    @given(path=paths, payload=body)
    def check(path, payload):
        if path == "/v1/embeddings" and isinstance(payload, dict):
            payload = {"input": payload.get("messages")}
        r = http.post(path, json=payload)
        assert r.status_code < 500 or r.status_code == 503, (
            path,
            payload,
            r.status_code,
            r.text[:300],
        )
        if r.status_code >= 400:
            assert r.json()["error"]["message"]

    check()
    http.close()
    assert proc.poll() is None


# --- hostile clients (issue 17) ------------------------------------------------------------------


def _raw_post(url: str, body: dict, source: str = "127.0.0.1") -> socket.socket:
    """A non-streamed question sent on a raw socket, so the test can hang up mid-answer."""
    host, port = url.rsplit(":", 1)[0].split("//")[1], int(url.rsplit(":", 1)[1])
    data = json.dumps(body).encode()
    s = socket.socket()
    s.bind((source, 0))
    s.connect((host, port))
    s.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (host.encode(), port, len(data)) + data
    )
    return s


def _busy(url: str) -> int:
    return httpx.get(f"{url}/health").json()["running_or_waiting"]


def test_non_streamed_questions_whose_clients_leave_free_the_slot_within_a_second(smol_server):
    body = ask_body(
        "List every maintenance task of the PX-200 press with its interval, in detail.",
        max_tokens=200,
    )
    start = time.perf_counter()
    whole = httpx.post(f"{smol_server}/v1/chat/completions", json=body, timeout=120)
    full_s = time.perf_counter() - start
    assert whole.status_code == 200
    burst = [_raw_post(smol_server, body) for _ in range(6)]  # one answering, five queued
    end = time.monotonic() + 10
    while _busy(smol_server) < 6 and time.monotonic() < end:
        time.sleep(0.02)
    time.sleep(0.3)  # the first is answering now
    for s in burst:
        s.close()
    left = time.perf_counter()
    while _busy(smol_server) and time.perf_counter() - left < 30:
        time.sleep(0.02)
    freed = time.perf_counter() - left
    print(f"6 questions of {full_s:.1f} s each: slot free {freed:.2f} s after their clients left")
    assert freed < 1.0, freed


def test_unexpected_paths_and_ids_get_openai_shaped_errors_and_a_log_line(tiny_bundle):
    with running(tiny_bundle) as (url, proc):
        for path, status in (
            ("/v1/passages/9223372036854775808", 404),
            ("/v1/passages/-1", 404),
            ("/nowhere", 404),
            ("/docs", 404),
            ("/redoc", 404),
        ):
            r = httpx.get(url + path)
            assert r.status_code == status and r.json()["error"]["code"] == status, (path, r.text)
        r = httpx.delete(f"{url}/v1/models")
        assert r.status_code == 405 and r.json()["error"]["message"]
        assert httpx.get(f"{url}/openapi.json").status_code == 200
        time.sleep(0.3)
        log = open(proc.log_path).read()
    assert "Traceback" not in log
    logged = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    paths = {e["path"]: e["status"] for e in logged if e["event"] == "request"}
    assert paths["/v1/passages/9223372036854775808"] == 404 and paths["/nowhere"] == 404


def test_health_shows_paths_and_errors_only_to_the_operator(tiny_bundle):
    key = "s3cret-key-123"
    with running(tiny_bundle, "--api-key", key) as (url, proc):
        anonymous = httpx.get(f"{url}/health").json()
        operator = httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {key}"}).json()
    assert anonymous["status"] == "ok" and "path" not in anonymous
    assert operator["path"] == str(tiny_bundle)


def test_idle_and_slow_connections_lock_nobody_out(tiny_bundle):
    """200 connections that send nothing or a byte at a time, from several addresses: /health
    and a real question are still answered within 5 s; one address gets at most its share;
    connections that never finish their headers are closed after --head-timeout."""
    with running(tiny_bundle, "--head-timeout", "3", "--max-client-connections", "32") as (
        url,
        proc,
    ):
        host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
        idle = []
        for i in range(180):  # 30 from each of six addresses
            s = socket.socket()
            s.bind((f"127.0.0.{2 + i % 6}", 0))
            s.connect((host, port))
            idle.append(s)
        slow = []
        for _ in range(20):
            s = socket.socket()
            s.bind(("127.0.0.8", 0))
            s.connect((host, port))
            s.sendall(b"GET /health HTTP/1.1\r\n")
            slow.append(s)
        crowd = []
        for _ in range(40):  # one address over its share: the rest are closed at once
            s = socket.socket()
            s.bind(("127.0.0.9", 0))
            s.connect((host, port))
            crowd.append(s)
        time.sleep(0.5)
        start = time.perf_counter()
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        answer = httpx.post(
            f"{url}/v1/chat/completions",
            timeout=5,
            json=ask_body("What is the maximum system pressure?", max_tokens=8),
        )
        took = time.perf_counter() - start
        assert answer.status_code == 200 and took < 5, took
        closed = sum(_closed(s) for s in crowd)
        assert closed == 40 - 32, closed
        for s in slow:
            s.sendall(b"X")  # a byte at a time keeps no connection past the head timeout
        time.sleep(3.5)
        still_open = sum(not _closed(s) for s in idle + slow)
        for s in idle + slow + crowd:
            s.close()
        assert still_open == 0, still_open
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    print(f"200 idle/slow connections: health and an answer in {took:.2f} s")


def _closed(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        s.setblocking(True)


def test_a_release_repaired_in_place_is_tried_again(tiny_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    store = copy / "chunks.sqlite"
    good = store.read_bytes()
    bad = bytearray(good)
    bad[300] ^= 0xFF
    store.write_bytes(bytes(bad))
    with running(copy, "--watch", "0.5", ready=False) as (url, proc):
        end = time.monotonic() + 120
        while time.monotonic() < end:
            try:
                r = httpx.get(f"{url}/health", timeout=2)
                if r.status_code == 503 and r.json().get("status") == "error":
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert "chunks.sqlite has changed" in r.json()["error"]["message"]
        store.write_bytes(good)  # repaired in place: same path
        health = wait_ready(url, proc, timeout=60)
    assert health["status"] == "ok"


@pytest.mark.parametrize("name", ["b%2fx", "a#b?mode=rwc", "sp ace\nnew%41line"])
def test_serve_answers_from_the_verified_store_whatever_the_folder_is_called(
    tiny_bundle, tiny_bundle_b, tmp_path, name
):
    """verify/ask are covered by a property test (tests/test_hostile.py); this is serve's side:
    with a decoy store where an unquoted SQLite URI would point, every passage served is one of
    the verified store's."""
    import sqlite3
    from urllib.parse import unquote

    folder = tmp_path / "dev" / name
    folder.parent.mkdir()
    shutil.copytree(tiny_bundle, folder, copy_function=os.link)
    naive = Path(unquote(str(folder / "chunks.sqlite").split("?")[0].split("#")[0]))
    if not naive.exists() and not naive.is_relative_to(folder):
        naive.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tiny_bundle_b / "chunks.sqlite", naive)
    db = sqlite3.connect(f"file:{tiny_bundle / 'chunks.sqlite'}?mode=ro", uri=True)
    verified = dict(db.execute("SELECT id, text FROM chunks"))
    db.close()
    with running(folder) as (url, proc):
        for chunk_id, text in verified.items():
            assert httpx.get(f"{url}/v1/passages/{chunk_id}").json()["text"] == text
        assert httpx.get(f"{url}/v1/passages/{max(verified) + 1}").status_code == 404


def test_the_quote_streams_before_any_generated_text(smol_server):
    body = ask_body("What does alarm E-305 on the PX-200 mean?", stream=True)
    events = []
    with httpx.stream("POST", f"{smol_server}/v1/chat/completions", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    kinds = []
    for e in events:
        if (e.get("outpost") or {}).get("quote"):
            kinds.append("quote")
        elif e["choices"][0]["delta"].get("content"):
            kinds.append("text")
        elif e["choices"][0]["finish_reason"]:
            kinds.append("done")
    assert kinds[0] == "quote" and kinds[-1] == "done" and kinds.count("quote") == 1, kinds
    final = events[-1]["outpost"]
    quote = next(e["outpost"]["quote"] for e in events if (e.get("outpost") or {}).get("quote"))
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert final["answer_mode"] in ("generated", "quoted") and not final["declined"]
    if final["answer_mode"] == "quoted":
        assert text == quote["text"] == final["evidence"][0]["text"]
    else:
        assert text and quote["text"] in {e["text"] for e in final["evidence"]}


# --- feedback ---------------------------------------------------------------------------------


def test_a_verdict_on_an_answer_is_kept_in_the_field_log(smol_server):
    from outpost.runtime.field.log import FieldLog

    r = httpx.post(
        f"{smol_server}/v1/chat/completions",
        json=ask_body(PRESSURE, max_tokens=8, user="kiosk"),
        timeout=120,
    )
    answer_id, bundle = r.json()["id"], httpx.get(f"{smol_server}/health").json()["bundle"]
    feedback = f"{smol_server}/v1/feedback"
    ok = httpx.post(feedback, json={"id": answer_id, "helpful": False, "note": "the ram's force"})
    assert ok.status_code == 200 and ok.json() == {
        "id": answer_id,
        "object": "feedback",
        "recorded": True,
    }
    log = FieldLog(Path(os.environ["XDG_STATE_HOME"]) / "outpost" / "feedback")
    mine = [e for e in log.entries() if e.get("id") == answer_id]
    assert [e["kind"] for e in mine] == ["answer", "verdict"]
    kept, verdict = mine
    assert kept["via"] == "kiosk" and kept["bundle"] == bundle and kept["question"] == PRESSURE
    assert "280" in kept["quote"]["text"] and len(kept["candidates"]) == 6
    assert verdict["helpful"] is False and verdict["note"] == "the ram's force"
    # Malformed, unknown, oversized and foreign: each refused in one line, nothing kept.
    for body, status in (
        ({"id": answer_id}, 400),
        ({"id": "chatcmpl-123", "helpful": True}, 400),
        ({"id": answer_id, "helpful": "maybe"}, 400),
        ({"id": answer_id, "helpful": True, "rating": 5}, 400),
        ({"id": answer_id, "helpful": True, "note": "n" * 501}, 400),
        ({"id": "chatcmpl-" + "0" * 24, "helpful": True}, 404),
    ):
        refused = httpx.post(feedback, json=body)
        assert refused.status_code == status, (body, refused.text)
        assert refused.json()["error"]["message"]
    big = httpx.post(feedback, content=b'{"note": "' + b"x" * 70_000 + b'"}')
    assert big.status_code == 413
    port = smol_server.rsplit(":", 1)[1]
    foreign = httpx.post(
        feedback,
        json={"id": answer_id, "helpful": True},
        headers={"Origin": f"http://attacker.example:{port}"},
    )
    assert foreign.status_code == 403
    assert len([e for e in log.entries() if e.get("id") == answer_id]) == 2


def test_a_server_without_feedback_keeps_nothing(tiny_bundle, tmp_path):
    with running(tiny_bundle, "--no-feedback", "--feedback-dir", str(tmp_path / "log")) as (url, _):
        r = httpx.post(
            f"{url}/v1/chat/completions", json=ask_body(PRESSURE, max_tokens=4), timeout=120
        )
        refused = httpx.post(f"{url}/v1/feedback", json={"id": r.json()["id"], "helpful": True})
    assert refused.status_code == 404 and "--no-feedback" in refused.json()["error"]["message"]
    assert not (tmp_path / "log").exists()
