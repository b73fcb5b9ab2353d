"""The server against hostile clients, third round (issue 28): slow bodies from many addresses,
foreign Host and Origin headers (DNS rebinding), embeddings clients that leave, and the small
promises of one clear line: each case against a real `outpost serve` on loopback."""

import json
import socket
import threading
import time

import pytest
from test_serve import ask_body, running

from conftest import outpost

pytestmark = pytest.mark.slow
httpx = pytest.importorskip("httpx")

BODY_TIMEOUT = 3


@pytest.fixture(scope="module")
def server(tiny_bundle):
    """One slot, a queue of two, a short body deadline and a body limit above 1 MB."""
    args = ("--max-concurrent", "1", "--queue", "2", "--body-timeout", str(BODY_TIMEOUT))
    with running(tiny_bundle, *args, "--max-body", "2000000") as (url, proc):
        yield url, proc


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def gone(s: socket.socket) -> bool:
    """The server closed `s` (whatever it sent first, a 408 included)."""
    s.setblocking(False)
    try:
        while True:
            if s.recv(65536) == b"":
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        s.setblocking(True)


def busy(url: str) -> int:
    return httpx.get(f"{url}/health", timeout=5).json()["running_or_waiting"]


def requests_logged(proc) -> list[dict]:
    lines = open(proc.log_path).read().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return [e for e in events if e["event"] == "request"]


def one_line_error(r, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert "\n" not in r.text.strip()
    message = r.json()["error"]["message"]
    assert message and r.json()["error"]["code"] == status
    return message


def raw_request(port: int, path: str, body: dict | bytes, host: str | None = None) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    host = host or f"127.0.0.1:{port}"
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


def read_all(s: socket.socket, timeout: float = 60) -> bytes:
    s.settimeout(timeout)
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return got


# --- case 6: slow bodies, and the operator's reserve ----------------------------------------


def test_slow_bodies_from_seventeen_addresses_leave_the_operator_a_way_in(tiny_bundle):
    """31 sockets from each of 127.0.0.2..18 send headers and then a body a byte at a time:
    /health from 127.0.0.1 still answers (the operator's reserve), and every slow body is
    closed at the body deadline however it trickles."""
    deadline = 5
    with running(tiny_bundle, "--body-timeout", str(deadline)) as (url, proc):
        port = port_of(url)
        head = (
            f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{"
        ).encode()
        slow, started = [], time.monotonic()
        for address in range(2, 19):
            for _ in range(31):
                s = socket.socket()
                s.bind((f"127.0.0.{address}", 0))
                s.connect(("127.0.0.1", port))
                s.sendall(head)
                slow.append(s)
        time.sleep(0.3)
        health = httpx.get(f"{url}/health", timeout=2)
        assert health.status_code == 200
        held = sum(not gone(s) for s in slow)
        assert time.monotonic() - started < deadline and held >= 400, held  # still attacked
        while time.monotonic() - started < deadline + 2:
            for s in slow:
                try:
                    s.send(b" ")  # a byte at a time does not extend the deadline
                except OSError:
                    pass
            time.sleep(0.5)
        still = sum(not gone(s) for s in slow)
        for s in slow:
            s.close()
        assert still == 0, still
        assert httpx.get(f"{url}/health", timeout=2).status_code == 200
    statuses = {e["status"] for e in requests_logged(proc) if e["path"] == "/v1/embeddings"}
    assert statuses == {408}, statuses
    print(f"{len(slow)} slow bodies: {held} held a slot, /health answered, all closed")


# --- case 7: Host and Origin ----------------------------------------------------------------


def test_a_foreign_host_or_origin_is_refused_in_one_line(server):
    url, _ = server
    port = port_of(url)
    for path in ("/health", "/", "/v1/models"):
        r = httpx.get(url + path, headers={"Host": "attacker.example"})
        assert "attacker.example" in one_line_error(r, 421) and "path" not in r.text
    chat = httpx.post(
        f"{url}/v1/chat/completions",
        json=ask_body("What is the maximum pressure?", max_tokens=4),
        headers={"Host": f"attacker.example:{port}"},
    )
    one_line_error(chat, 421)
    one_line_error(httpx.get(f"{url}/health", headers={"Host": "127.0.0.1:1"}), 421)  # port too
    for origin in (f"http://attacker.example:{port}", "null", f"http://localhost:{port + 1}"):
        r = httpx.get(f"{url}/v1/models", headers={"Origin": origin})
        one_line_error(r, 403)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        r = httpx.get(f"{url}/v1/models", headers={"Host": host, "Origin": f"http://{host}"})
        assert r.status_code == 200, (host, r.text)


def test_allow_host_names_the_served_names_and_star_or_a_key_turns_the_check_off(tiny_bundle):
    env = {"OUTPOST_ALLOW_HOST": "kiosk.lan panel.lan:9000"}  # the variable, as the flag would
    with running(tiny_bundle, env=env) as (url, _):
        for headers in (
            {"Host": "kiosk.lan"},
            {"Host": "kiosk.lan:8443", "Origin": "https://kiosk.lan:8443"},  # any port: a proxy
            {"Host": "panel.lan:9000"},
            {"Host": "localhost:" + str(port_of(url))},
        ):
            assert httpx.get(f"{url}/health", headers=headers).status_code == 200, headers
        one_line_error(httpx.get(f"{url}/health", headers={"Host": "panel.lan:9001"}), 421)
        one_line_error(httpx.get(f"{url}/health", headers={"Host": "evil.lan"}), 421)
        r = httpx.get(f"{url}/health", headers={"Host": "kiosk.lan", "Origin": "http://evil.lan"})
        one_line_error(r, 403)
    with running(tiny_bundle, "--allow-host", "*") as (url, _):
        r = httpx.get(f"{url}/health", headers={"Host": "any.example", "Origin": "http://x.y"})
        assert r.status_code == 200
    key = "s3cret-key-123"
    with running(tiny_bundle, "--api-key", key) as (url, _):
        r = httpx.get(
            f"{url}/v1/models",
            headers={
                "Host": "gateway.example",
                "Origin": "https://app.example",
                "Authorization": f"Bearer {key}",
            },
        )
        assert r.status_code == 200, r.text


# --- case 8: embeddings jobs watch their client and a deadline --------------------------------

LONG = " ".join(["hydraulic pressure valve filter replacement interval"] * 40)  # ~240 tokens


def test_embeddings_clients_that_leave_free_the_queue_at_once(server):
    url, _ = server
    port = port_of(url)
    start = time.perf_counter()
    whole = httpx.post(f"{url}/v1/embeddings", json={"input": [LONG] * 64}, timeout=120)
    full_s = time.perf_counter() - start
    assert whole.status_code == 200 and len(whole.json()["data"]) == 64
    sockets = []
    for _ in range(9):  # one in the slot, two queued, the rest turned away
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(raw_request(port, "/v1/embeddings", {"input": [LONG] * 64}))
        sockets.append(s)
    time.sleep(0.05)
    for s in sockets:
        s.close()  # the clients leave after 50 ms
    left = time.perf_counter()
    while busy(url) and time.perf_counter() - left < 60:
        time.sleep(0.02)
    freed = time.perf_counter() - left
    print(f"embeddings of {full_s:.1f} s each: queue free {freed:.2f} s after 9 clients left")
    assert freed < max(1.0, full_s / 2), (freed, full_s)
    r = httpx.post(f"{url}/v1/chat/completions", json=ask_body("Pressure?", max_tokens=4))
    assert r.status_code == 200, r.text


def test_embeddings_stop_at_the_request_timeout(tiny_bundle):
    with running(tiny_bundle, "--request-timeout", "0.5", "--max-body", "2000000") as (url, _):
        start = time.perf_counter()
        r = httpx.post(f"{url}/v1/embeddings", json={"input": [LONG] * 64}, timeout=120)
        took = time.perf_counter() - start
        assert "--request-timeout" in one_line_error(r, 503) and took < 3, took
        assert busy(url) == 0


# --- the small ones ---------------------------------------------------------------------------


def test_bad_stream_options_and_content_parts_are_400_and_start_nothing(server):
    url, _ = server
    chat = f"{url}/v1/chat/completions"
    body = ask_body("What is the maximum pressure?", stream=True, stream_options="x")
    assert "stream_options" in one_line_error(httpx.post(chat, json=body), 400)
    assert busy(url) == 0  # no answer was started for it
    for part in ({"type": "text", "text": 5}, {"type": "text", "text": ["a"]}, "plain"):
        body = {"messages": [{"role": "user", "content": [part]}]}
        assert "content" in one_line_error(httpx.post(chat, json=body), 400)
    good = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Pressure?"}]}]}
    assert httpx.post(chat, json={**good, "max_tokens": 2}).status_code == 200


def test_embeddings_inputs_are_refused_for_what_is_really_wrong(server):
    url, _ = server
    emb = f"{url}/v1/embeddings"
    assert httpx.post(emb, json={"input": "hydraulic " * 30}).status_code == 200  # 300 chars
    message = one_line_error(httpx.post(emb, json={"input": "hydraulic " * 2000}), 400)
    assert "64" not in message and "256 tokens" in message, message
    message = one_line_error(httpx.post(emb, json={"input": ["a"] * 65}), 400)
    assert "64" in message


def test_a_megabyte_question_is_refused_before_retrieval(server, tiny_bundle):
    from outpost.runtime.ask.assistant import AskConfig, open_assistant
    from outpost.runtime.errors import InputError

    assistant = open_assistant(tiny_bundle, AskConfig(threads=1))

    def never(*args, **kwargs):
        raise AssertionError("retrieval ran for a question over the budget")

    assistant.retriever.search = never
    huge = "How is the pressure valve set? " * 34_000  # ~1 MB
    start = time.perf_counter()
    with pytest.raises(InputError, match="over the .*-token budget"):
        assistant.ask(huge)
    assert time.perf_counter() - start < 1.0
    assistant.bundle.close()

    url, _ = server
    start = time.perf_counter()
    r = httpx.post(f"{url}/v1/chat/completions", json=ask_body(huge), timeout=60)
    assert "budget" in one_line_error(r, 400) and time.perf_counter() - start < 3


def test_a_hundred_megabyte_body_is_refused_without_being_read(server):
    url, _ = server
    port = port_of(url)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {100 * 2**20}\r\n\r\n".encode()
    )
    s.setblocking(False)
    block, sent, reply = b" " * 2**16, 0, b""
    end = time.monotonic() + 30
    while sent < 100 * 2**20 and time.monotonic() < end:
        try:
            sent += s.send(block)
        except BlockingIOError:
            time.sleep(0.001)
        except OSError:
            break  # the server closed the connection
        try:
            reply += s.recv(65536)
        except BlockingIOError:
            pass
        except OSError:
            break
    s.setblocking(True)
    reply += read_all(s, timeout=5)
    s.close()
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert sent < 20 * 2**20, f"{sent / 2**20:.0f} MB were read"
    assert httpx.get(f"{url}/health").status_code == 200


def test_serve_on_a_port_in_use_is_one_error_line_before_serving(tiny_bundle):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = outpost("serve", str(tiny_bundle), "--port", port, timeout=60)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and port in lines[0], lines
    assert "serving" not in done.stderr


def test_serve_with_an_adapter_the_bundle_lacks_stops_at_start(tiny_bundle):
    done = outpost("serve", str(tiny_bundle), "--port", "0", "--adapter", "nope", timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: --adapter nope: this bundle has no such adapter (it has: none); "
        "`outpost info` lists them"
    ]
    done = outpost("serve", str(tiny_bundle), "--allow-host", "http://kiosk.lan/", timeout=60)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "Error: --allow-host 'http://kiosk.lan/': give a host name or address, NAME or "
        "NAME:PORT (no scheme, no path), or '*'"
    ]


def test_a_streamed_client_that_leaves_is_logged_499(server):
    url, proc = server
    body = ask_body("List every maintenance task of the press.", stream=True, max_tokens=200)
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        next(r.iter_lines())  # the role chunk: then hang up
    end = time.monotonic() + 10
    while busy(url) and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(0.3)
    chats = [e for e in requests_logged(proc) if e["path"] == "/v1/chat/completions"]
    assert chats[-1]["status"] == 499, chats[-1]


def test_a_client_that_half_closes_after_its_request_gets_the_answer(server):
    url, _ = server
    port = port_of(url)
    question = "What is the maximum pressure?"
    for path, body, ends in (
        ("/v1/chat/completions", ask_body(question, max_tokens=8), b'"chat.completion"'),
        ("/v1/chat/completions", ask_body(question, max_tokens=8, stream=True), b"[DONE]"),
        ("/v1/embeddings", {"input": ["hydraulic press"]}, b'"embedding"'),
    ):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(raw_request(port, path, body))
        s.shutdown(socket.SHUT_WR)  # nothing more to send; still reading
        reply = read_all(s)
        s.close()
        final = reply[reply.rfind(b"HTTP/1.1 ") :]  # past any interim 100 Continue
        assert final.startswith(b"HTTP/1.1 200") and ends in final, reply[:300]


def test_concurrent_health_checks_pass_while_a_slow_body_is_held(server):
    """Sanity for the body deadline on the shared server: a slow body does not hold up others,
    and is closed with a one-line 408 once the deadline passes."""
    url, _ = server
    port = port_of(url)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(raw_request(port, "/v1/embeddings", b'{"input": "x"}')[:-4])
    results = []
    t = threading.Thread(target=lambda: results.append(httpx.get(f"{url}/health").status_code))
    t.start()
    t.join(5)
    assert results == [200]
    reply = read_all(s, timeout=BODY_TIMEOUT + 5)
    s.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower() and b"\n" not in body.strip()
    assert "--body-timeout" in json.loads(body)["error"]["message"]
