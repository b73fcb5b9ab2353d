"""Load on `outpost serve`: requests/s, latency and time to first token at 1, 4 and 16 clients.

    .venv/bin/python benchmarks/serve_load.py --bundle demo-bundle            # table
    .venv/bin/python benchmarks/serve_load.py --bundle demo-bundle --json     # data

Starts the real server on 127.0.0.1 (`--max-concurrent 1 --queue 64`, 2 threads), then for each
client count sends streamed chat completions with the example questions, each client one after
another, and measures per request: time to the first content byte of the answer and the whole
latency. Requests/s is answered requests over the wall time of that round.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one(http, question: str) -> tuple[int, float, float]:
    start = time.perf_counter()
    first = None
    body = {"messages": [{"role": "user", "content": question}], "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            return r.status_code, 0.0, time.perf_counter() - start
        for line in r.iter_lines():
            if (
                first is None
                and line.startswith("data:")
                and '"content": "' in line
                and '"content": ""' not in line
            ):
                first = time.perf_counter() - start
    total = time.perf_counter() - start
    return 200, first if first is not None else total, total


def round_of(url: str, clients: int, per_client: int, questions: list[str]) -> dict:
    import httpx

    rows: list[tuple[int, float, float]] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            for j in range(per_client):
                row = one(http, questions[(i * per_client + j) % len(questions)])
                with lock:
                    rows.append(row)

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ok = [r for r in rows if r[0] == 200]
    lat = sorted(r[2] for r in ok)
    ttft = sorted(r[1] for r in ok)

    def pct(xs, p):
        return round(xs[min(len(xs) - 1, int(p * len(xs)))], 3) if xs else None

    return {
        "clients": clients,
        "requests": len(rows),
        "answered": len(ok),
        "requests_per_s": round(len(ok) / wall, 3),
        "latency_p50_s": pct(lat, 0.5),
        "latency_p95_s": pct(lat, 0.95),
        "ttft_p50_s": pct(ttft, 0.5),
        "ttft_p95_s": pct(ttft, 0.95),
        "ttft_mean_s": round(statistics.mean(ttft), 3) if ttft else None,
    }


def main() -> None:
    import httpx
    import psutil

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=str(ROOT / "demo-bundle"))
    ap.add_argument("--questions", default=str(ROOT / "examples" / "questions.jsonl"))
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument(
        "--per-client",
        type=int,
        default=0,
        help="requests per client (0: 16 / clients, at least 2)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    questions = [json.loads(line)["question"] for line in open(args.questions) if line.strip()]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "outpost.cli",
            "serve",
            args.bundle,
            "--port",
            str(port),
            "--threads",
            str(args.threads),
            "--max-concurrent",
            "1",
            "--queue",
            "64",
        ],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    try:
        start = time.perf_counter()
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.perf_counter() - start > 300:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        ready_s = time.perf_counter() - start
        one(httpx.Client(base_url=url, timeout=600), questions[0])  # warm-up
        rounds = []
        for c in (int(x) for x in args.clients.split(",")):
            per = args.per_client or max(2, 16 // c)
            rounds.append(round_of(url, c, per, questions))
            print(f"{c} clients: {rounds[-1]}", file=sys.stderr)
        rss = psutil.Process(proc.pid).memory_info().rss
        report = {
            "bundle": args.bundle,
            "threads": args.threads,
            "server_ready_s": round(ready_s, 2),
            "server_rss_mb": round(rss / 1e6, 1),
            "rounds": rounds,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"server ready in {report['server_ready_s']} s, resident {report['server_rss_mb']} MB")
    print("| clients | requests | requests/s | latency p50 | latency p95 | TTFT p50 | TTFT p95 |")
    print("|---|---|---|---|---|---|---|")
    for r in rounds:
        print(
            f"| {r['clients']} | {r['answered']}/{r['requests']} | {r['requests_per_s']} | {r['latency_p50_s']} s | "
            f"{r['latency_p95_s']} s | {r['ttft_p50_s']} s | {r['ttft_p95_s']} s |"
        )


if __name__ == "__main__":
    main()
