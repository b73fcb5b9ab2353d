"""The field loop, simulated without touching the evaluation sets (issue 31, docs/quality.md
"The field loop"): does what technicians confirm at a device teach the line ranker the device's
manuals?

    python benchmarks/field_loop.py docs --out DOCS               # the device's documents
    outpost export DOCS --out B                                    # the device's bundle
    python benchmarks/field_loop.py replay --bundle B --work W   # serve B; ask, rate, export
    python benchmarks/field_loop.py fit --work W --bundle B [--sizes 0 0.5 1]  # refit, measure
    python benchmarks/field_loop.py plot --work W --svg docs/img/field_loop.svg

The device is a bundle of the line ranker's training documents (the 327 documents of its
written questions, `outpost export` of what `make ranker-data` downloads). Its questions are the
written questions of the packages the ranker never trains on (trainer/ranker/rankdata.py
HELD_OUT), split in two by a hash of their id:
- the **field** half is asked through a real `outpost serve`, as the kiosk asks. Each answer is
  rated from its known answer line: the quote holds it (rankdata's test for an answering line),
  or, for an unanswerable question, the answer is a decline. The log is then exported with
  `outpost feedback export`;
- the **measured** half is never asked. Its rankdata groups (the document's lines, the answer
  labelled) are what line accuracy is measured on: top-1 and top-3 of the int8 ONNX ranker.

`fit` rebuilds the ranker's data with the first share of the feedback (`rankdata --feedback`),
trains the cross-encoder with the shipped recipe and seed (`crossrank.train`), and measures the
measured half and every held-out group; with `--bundle`, also the line `ask` would show for each
measured question (the device's search and quotes, with that ranker). Share 0 is the shipped model, which is that recipe
without feedback. Each fit takes about 11 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "ranker"


def field_half(question_id: str) -> bool:
    return int(hashlib.sha256(question_id.encode()).hexdigest(), 16) % 2 == 0


def questions(root: str) -> list[dict]:
    """The held-out packages' written questions, with their package as rankdata reads it."""
    from outpost.trainer.ranker.questions import load
    from outpost.trainer.ranker.rankdata import HELD_OUT

    index = [json.loads(line) for line in open(Path(root) / "text" / "index.jsonl")]
    package_of = {d["file"]: d["package"] for d in index}
    rows = load(sorted((ROOT / "trainer" / "ranker" / "questions").glob("*.jsonl")))
    for r in rows:
        r["package"] = package_of.get(r["doc"], r["package"])
    return [r for r in rows if r["package"] in HELD_OUT]


def write_docs(root: str, out: Path) -> int:
    """The written questions' documents, as the training root holds them (compressed text
    written out plain), in `out`: what the simulated device's bundle is exported from."""
    import gzip

    from outpost.trainer.ranker.questions import load

    rows = load(sorted((ROOT / "trainer" / "ranker" / "questions").glob("*.jsonl")))
    docs = sorted({r["doc"] for r in rows})
    for doc in docs:
        data = (Path(root) / doc).read_bytes()
        target = out / (doc[: -len(".gz")] if doc.endswith(".gz") else doc)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.decompress(data) if doc.endswith(".gz") else data)
    return len(docs)


def holds_answer(row: dict, quote: str) -> bool:
    """rankdata's test for an answering line, or every keyword in the quote."""
    from outpost.trainer.ranker.questions import fold
    from outpost.trainer.ranker.rankdata import answers

    text = fold(quote)
    keys = [fold(k) for k in row.get("keywords", [])]
    return answers(fold(row.get("answer", "")), text) or (
        bool(keys) and all(k in text for k in keys)
    )


def replay(bundle: str, work: Path, root: str, threads: int) -> dict:
    import httpx

    work.mkdir(parents=True, exist_ok=True)
    asked = [r for r in questions(root) if field_half(r["id"])]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = work / "log"
    server = subprocess.Popen(
        [sys.executable, "-m", "outpost.cli", "serve", bundle, "--port", str(port)]
        + ["--threads", str(threads), "--feedback-dir", str(log), "--request-timeout", "600"],
        stderr=open(work / "serve.log", "w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None:
                raise SystemExit(f"serve exited; see {work / 'serve.log'}")
            time.sleep(0.5)
        rated = {"helpful": 0, "unhelpful": 0}
        started = time.monotonic()
        for n, row in enumerate(asked, 1):
            body = {
                "messages": [{"role": "user", "content": row["question"]}],
                "max_tokens": 1,  # the quote is ranked before any word is written
                "user": "kiosk",
            }
            reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=600).json()
            info = reply["outpost"]
            quote = info["evidence"][0]["text"] if info["evidence"] else ""
            if row.get("answerable", True):
                helpful = not info["declined"] and holds_answer(row, quote)
            else:
                helpful = bool(info["declined"])
            verdict = {"id": reply["id"], "helpful": helpful}
            httpx.post(f"{url}/v1/feedback", json=verdict, timeout=30).raise_for_status()
            rated["helpful" if helpful else "unhelpful"] += 1
            if n % 25 == 0:
                print(f"[replay] {n}/{len(asked)} {rated}", file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    out = work / "field.feedback.jsonl"
    subprocess.run(
        [sys.executable, "-m", "outpost.cli", "feedback", "export", "--log", str(log)]
        + ["--out", str(out)],
        check=True,
    )
    summary = {"asked": len(asked), **rated, "seconds": round(time.monotonic() - started, 1)}
    (work / "replay.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _measured(groups: list[dict]) -> tuple[list[dict], list[dict]]:
    held = [g for g in groups if g["split"] == "held_out"]
    half = [g for g in held if g["source"] == "written" and not field_half(g["id"])]
    return half, held


def shown_line(assistant, rows: list[dict], reranker) -> dict:
    """What a technician reads: the first quote `ask` shows (search, gauge, rank with this
    ranker, quote) holds the answer, over the measured half's answerable questions."""
    from outpost.runtime.ask.assistant import CANDIDATES, EVIDENCE_SPANS
    from outpost.runtime.ask.question import analyse
    from outpost.runtime.ask.quote import quotes
    from outpost.runtime.ask.rank import gauge, rank

    right = 0
    for row in rows:
        q = analyse(row["question"])
        hits = assistant.retriever.search(q, max(assistant.top_k, CANDIDATES))
        found = gauge(q, hits, assistant.retriever.store)
        reading = rank(q, found, hits, assistant.retriever.embedder, reranker=reranker)
        shown = quotes(reading, hits, EVIDENCE_SPANS, q)
        right += bool(shown) and holds_answer(row, shown[0].text)
    return {"questions": len(rows), "first_quote_right": round(right / max(len(rows), 1), 3)}


def fit(
    work: Path, root: str, sizes: list[float], threads: int, bundle: str | None = None
) -> list[dict]:
    import torch

    from outpost.runtime.ask.rerank import Reranker
    from outpost.runtime.field import exchange
    from outpost.trainer.ranker import crossrank, rankdata

    torch.set_num_threads(threads)
    _, rows = exchange.read(work / "field.feedback.jsonl")
    results_path = work / "fits.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {r["share"] for r in results}

    def log(message: str) -> None:
        print(f"[fit] {message}", file=sys.stderr, flush=True)

    assistant = None
    if bundle:
        from outpost.runtime.ask.assistant import open_assistant
        from outpost.runtime.config import AskConfig

        assistant = open_assistant(bundle, AskConfig(threads=threads, rerank=False))
        asked = [
            r for r in questions(root) if not field_half(r["id"]) and r.get("answerable", True)
        ]
    for share in sizes:
        if share in done:
            continue
        take = rows[: round(share * len(rows))]
        sub = work / f"feedback-{share}.jsonl"
        exchange.write(take, sub, device="simulated")
        data = work / f"data-{share}"
        summary = rankdata.build(root, data, 0, [str(sub)] if take else [])
        groups = crossrank.load_groups(data / "groups.jsonl")
        half, held = _measured(groups)
        if share == 0:
            model_dir = SHIPPED  # the shipped model: this recipe and seed without feedback
            stats: dict = {}
        else:
            mix = {"generated": 0.5, "written_weight": 2}
            ce, stats = crossrank.train(groups, 0, 1.0, 32, 8e-5, log, mix, "mean")
            model_dir = work / f"model-{share}"
            crossrank.export_onnx(ce, model_dir)
        ranker = Reranker(model_dir, threads=threads)
        row = {
            "share": share,
            "feedback_entries": len(take),
            "feedback_groups": sum(v for k, v in summary["counts"].items() if "feedback" in k),
            "measured_half": crossrank.topk(half, ranker.score),
            "all_held_out": crossrank.topk(held, ranker.score),
            "train": stats,
        }
        if assistant is not None:
            row["shown_line"] = shown_line(assistant, asked, ranker)
        log(json.dumps(row))
        results.append(row)
        results_path.write_text(json.dumps(sorted(results, key=lambda r: r["share"]), indent=2))
    return results


def plot(work: Path, svg: Path) -> None:
    """Top-1 and top-3 of the measured half (and the shown line, when measured) against the
    feedback entries: one small SVG."""
    results = sorted(json.loads((work / "fits.json").read_text()), key=lambda r: r["share"])
    w, h, pad = 420, 220, 40
    xs = [r["feedback_entries"] for r in results]
    top = max(xs) or 1
    lines = []
    series = [
        ("ranker top-1", "#1f5fa8", lambda r: r["measured_half"]["top1"]),
        ("ranker top-3", "#b5651d", lambda r: r["measured_half"]["top3"]),
    ]
    if all("shown_line" in r for r in results):
        series.append(("shown line", "#2e7d32", lambda r: r["shown_line"]["first_quote_right"]))
    for key, color, value in series:
        points = [
            (pad + (w - 2 * pad) * x / top, h - pad - (h - 2 * pad) * value(r))
            for x, r in zip(xs, results)
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        lines += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in points]
        at = pad + 110 * sum(x.startswith("<text") for x in lines)  # a legend along the top
        lines.append(f'<text x="{at}" y="30" fill="{color}">\u25cf {key}</text>')
    ticks = "".join(
        f'<text x="{pad + (w - 2 * pad) * x / top:.1f}" y="{h - pad + 16}" text-anchor="middle">{x}</text>'
        for x in xs
    )
    grid = "".join(
        f'<line x1="{pad}" x2="{w - pad}" y1="{h - pad - (h - 2 * pad) * v}" y2="{h - pad - (h - 2 * pad) * v}" stroke="#ddd"/>'
        f'<text x="{pad - 6}" y="{h - pad - (h - 2 * pad) * v + 4}" text-anchor="end">{v:.2f}</text>'
        for v in (0.0, 0.25, 0.5, 0.75, 1.0)
    )
    svg.parent.mkdir(parents=True, exist_ok=True)
    svg.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">'
        f"{grid}{ticks}{''.join(lines)}"
        f'<text x="{w / 2}" y="{h - 6}" text-anchor="middle">feedback entries (rated answers)</text>'
        f'<text x="{pad}" y="14">line accuracy on the measured half (held-out packages)</text></svg>\n'
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("docs", "replay", "fit", "plot"))
    ap.add_argument("--out", type=Path, help="docs: the folder to write the documents to")
    ap.add_argument("--work", type=Path, default=Path("build/field-loop"))
    ap.add_argument("--bundle", help="replay: the bundle of the training documents")
    ap.add_argument("--root", default=os.environ.get("RANKER_ROOT", ".outpost-cache/train"))
    ap.add_argument("--sizes", type=float, nargs="*", default=[0.0, 0.5, 1.0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--svg", type=Path, default=ROOT / "docs" / "img" / "field_loop.svg")
    args = ap.parse_args(argv)
    if args.step == "docs":
        if not args.out:
            ap.error("docs needs --out")
        print(f"{write_docs(args.root, args.out)} documents in {args.out}")
    elif args.step == "replay":
        if not args.bundle:
            ap.error("replay needs --bundle")
        print(json.dumps(replay(args.bundle, args.work, args.root, args.threads), indent=2))
    elif args.step == "fit":
        results = fit(args.work, args.root, args.sizes, args.threads, args.bundle)
        print(json.dumps(results, indent=2))
    else:
        plot(args.work, args.svg)


if __name__ == "__main__":
    main()
