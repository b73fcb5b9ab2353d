"""Retrieval at scale: usearch f32 / f16 / i8 against exact search on real embeddings.

    .venv/bin/python benchmarks/retrieval_scale.py --bundle demo-bundle            # table
    .venv/bin/python benchmarks/retrieval_scale.py --bundle demo-bundle --json

The corpus is Debian's packaged documentation on this machine (/usr/share/doc: README, text,
HTML and the gzipped changelogs), cut into passages of at most 300 characters, deduplicated, the
first `--chunks` (60,000) in path order. They are embedded with the bundle's own ONNX MiniLM
(64 tokens each; cached in .outpost-cache/ so a rerun skips it). Queries are 1,000 other
passages' first sentences. For each index dtype: build time, bytes per vector (serialised
index / count), and for expansion_search 64 (usearch's default), 128 and 256: recall@10 against
exact cosine search (numpy, float32) and single-query latency p50 / p99 (one thread, as
`outpost ask` searches).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def passages(limit: int, size: int = 300) -> list[str]:
    files = sorted(
        p for p in Path("/usr/share/doc").rglob("*") if p.is_file() and not p.is_symlink()
    )
    seen, out = set(), []
    for path in files:
        name = path.name.lower()
        if not (
            name.endswith((".gz", ".txt", ".md", ".html", ".rst")) or name.startswith("readme")
        ):
            continue
        try:
            raw = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        text = raw.decode("utf-8", "replace")
        if name.endswith(".html") or name.endswith(".html.gz"):
            text = html.unescape(re.sub(r"<[^>]+>", " ", text))
        for para in re.split(r"\n\s*\n", text):
            para = " ".join(para.split())
            for i in range(0, len(para), size):
                piece = para[i : i + size]
                if len(piece) < 60 or sum(c.isalpha() for c in piece) < 0.5 * len(piece):
                    continue
                key = hashlib.sha1(piece.encode()).digest()
                if key in seen:
                    continue
                seen.add(key)
                out.append(piece)
                if len(out) >= limit:
                    return out
    return out


def embed(bundle: Path, texts: list[str], cache: Path) -> np.ndarray:
    from outpost.runtime.ask.embed import Embedder
    from outpost.runtime.bundle.manifest import Manifest

    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache / f"retrieval-{digest}.npy"
    if path.is_file():
        return np.load(path)
    manifest = Manifest.from_json((bundle / "bundle.json").read_text())
    emb = Embedder(
        bundle / manifest.embedder.file, bundle / manifest.embedder.tokenizer, 64, threads=2
    )
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 6400 < 32 or done == total:
            print(
                f"embedded {done}/{total} ({done / (time.perf_counter() - start):.0f}/s)",
                file=sys.stderr,
            )

    vectors = emb.embed(texts, batch_size=32, progress=progress)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=str(ROOT / "demo-bundle"))
    ap.add_argument("--chunks", type=int, default=60_000)
    ap.add_argument("--queries", type=int, default=1_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from outpost.runtime.ask.retrieve import usearch_index

    Index = usearch_index()
    texts = passages(args.chunks + args.queries)
    corpus, queries = texts[: args.chunks], [t.split(". ")[0] for t in texts[args.chunks :]]
    vectors = embed(Path(args.bundle), corpus + queries, ROOT / ".outpost-cache")
    data, qv = vectors[: len(corpus)], vectors[len(corpus) :]
    exact = np.argsort(-(qv @ data.T), axis=1)[:, :10]
    keys = np.arange(len(corpus), dtype=np.uint64)
    rows = []
    for dtype in ("f32", "f16", "i8"):
        index = Index(ndim=data.shape[1], metric="cos", dtype=dtype)
        start = time.perf_counter()
        index.add(keys, data, threads=2)
        build = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            index.save(f"{tmp}/i.usearch")
            size = Path(f"{tmp}/i.usearch").stat().st_size
        for expansion in (64, 128, 256):
            index.expansion_search = expansion
            found, times = [], []
            for q in qv:
                t = time.perf_counter()
                result = index.search(q, 10, threads=1)
                times.append(time.perf_counter() - t)
                found.append(result.keys)
            recall = float(
                np.mean(
                    [len(set(map(int, f)) & set(map(int, e))) / 10 for f, e in zip(found, exact)]
                )
            )
            ms = np.sort(np.array(times) * 1000)
            rows.append(
                {
                    "dtype": dtype,
                    "expansion_search": expansion,
                    "chunks": len(corpus),
                    "build_s": round(build, 1),
                    "bytes_per_vector": round(size / len(corpus), 1),
                    "recall_at_10": round(recall, 4),
                    "p50_ms": round(float(ms[len(ms) // 2]), 3),
                    "p99_ms": round(float(ms[int(len(ms) * 0.99)]), 3),
                }
            )
    start = time.perf_counter()
    for q in qv[:200]:
        np.argpartition(-(data @ q), 10)[:10]
    exact_ms = (time.perf_counter() - start) / 200 * 1000
    report = {
        "chunks": len(corpus),
        "queries": len(queries),
        "dim": int(data.shape[1]),
        "exact_numpy_ms": round(exact_ms, 3),
        "exact_bytes_per_vector": data.shape[1] * 4,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{report['chunks']} passages, {report['queries']} queries, exact search (numpy f32) "
        f"{report['exact_numpy_ms']} ms/query, {report['exact_bytes_per_vector']} bytes/vector"
    )
    print("| index | expansion_search | recall@10 | p50 | p99 | bytes/vector | build |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| usearch {r['dtype']} | {r['expansion_search']} | {r['recall_at_10']} | {r['p50_ms']} ms | "
            f"{r['p99_ms']} ms | {r['bytes_per_vector']} | {r['build_s']} s |"
        )


if __name__ == "__main__":
    main()
