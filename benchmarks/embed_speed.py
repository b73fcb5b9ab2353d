"""The embedder: sentence-transformers (torch fp32) vs ONNX fp32 vs ONNX int8 (the bundle's).

    .venv/bin/python benchmarks/embed_speed.py --bundle dev-bundle --questions ../shared/evals/dev/qa.jsonl

On the bundle's own chunks (embedded as the export does: heading + text, 256 tokens): texts/s
with 2 threads, the lowest and median cosine of each variant's vectors with torch's, and the
retrieval hit rate on the questions file (an answerable question's `source_path` among the
top-4 chunks by exact cosine search, dense only). The ONNX graphs are traced here as the export
traces them: with eager attention (what the export does now) and with SDPA (what it did before:
the trace guards each softmax with Where/IsNaN). int8 is `quantize_dynamic` of the eager graph,
per-tensor and per-channel (what `--embedder-precision int8` ships when it passes its check).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--questions", required=True)
    ap.add_argument("--limit", type=int, default=2000, help="chunks to embed")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    from outpost.export.retrieval.embedder import EMBEDDED_EMBEDDER, _to_onnx, resolve_embedder
    from outpost.runtime.ask.embed import Embedder
    from outpost.runtime.ask.evaluate import source_matches
    from outpost.runtime.bundle.manifest import Manifest

    torch.set_num_threads(2)
    bundle = Path(args.bundle)
    manifest = Manifest.from_json((bundle / "bundle.json").read_text())
    db = sqlite3.connect(bundle / manifest.store.file)
    rows = db.execute(
        "SELECT source, heading, text FROM chunks ORDER BY id LIMIT ?", (args.limit,)
    ).fetchall()
    texts = [f"{h}\n{t}" if h else t for _, h, t in rows]
    sources = [s for s, _, _ in rows]
    questions = [json.loads(line) for line in open(args.questions) if line.strip()]
    questions = [q for q in questions if q.get("answerable", True)]
    tokenizer = bundle / manifest.embedder.tokenizer

    variants = {}
    _, location = resolve_embedder(EMBEDDED_EMBEDDER)
    st = SentenceTransformer(location, device="cpu")
    st.max_seq_length = 256
    variants["torch fp32 (sentence-transformers)"] = lambda xs: st.encode(
        xs, batch_size=8, normalize_embeddings=True, convert_to_numpy=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        eager = _to_onnx(st, "mean", Path(tmp) / "eager.onnx")
        sdpa = _to_onnx(st, "mean", Path(tmp) / "sdpa.onnx", attention=None)  # the model's own
        variants["onnx fp32, SDPA trace (export before)"] = Embedder(sdpa, tokenizer, 256, 2).embed
        variants["onnx fp32, eager trace"] = Embedder(eager, tokenizer, 256, 2).embed
        for name, per_channel in (
            ("onnx int8 per-tensor", False),
            ("onnx int8 per-channel (--embedder-precision int8)", True),
        ):
            path = Path(tmp) / f"{per_channel}.onnx"
            quantize_dynamic(
                str(eager), str(path), weight_type=QuantType.QInt8, per_channel=per_channel
            )
            variants[name] = Embedder(path, tokenizer, 256, threads=2, prepack=True).embed
        results, reference = [], None
        for name, embed in variants.items():
            embed(texts[:16])  # warm-up
            start = time.perf_counter()
            vectors = np.asarray(embed(texts), dtype=np.float32)
            rate = len(texts) / (time.perf_counter() - start)
            if reference is None:
                reference = vectors
            cos = (vectors * reference).sum(1)
            qv = np.asarray(embed([q["question"] for q in questions]), dtype=np.float32)
            top = np.argsort(-(qv @ vectors.T), axis=1)[:, :4]
            hits = [
                any(
                    source_matches(sources[j], q.get("source_path") or q.get("source", ""))
                    for j in row
                )
                for row, q in zip(top, questions)
            ]
            results.append(
                {
                    "variant": name,
                    "texts_per_s": round(rate, 1),
                    "cosine_min": round(float(cos.min()), 4),
                    "cosine_median": round(float(np.median(cos)), 4),
                    "hit_at_4": round(float(np.mean(hits)), 3),
                }
            )
            print(results[-1], file=sys.stderr)
    torch_rate = results[0]["texts_per_s"]
    for r in results:
        r["vs_torch"] = round(r["texts_per_s"] / torch_rate, 2)
    if args.json:
        print(
            json.dumps(
                {"chunks": len(texts), "questions": len(questions), "rows": results}, indent=2
            )
        )
        return
    print(f"{len(texts)} chunks of {bundle}, {len(questions)} answerable questions, 2 threads")
    print(
        "| embedder | texts/s | vs torch | cosine min / median vs torch | retrieval hit@4 (dense) |"
    )
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['variant']} | {r['texts_per_s']} | {r['vs_torch']}× | {r['cosine_min']} / {r['cosine_median']} | "
            f"{r['hit_at_4']} |"
        )


if __name__ == "__main__":
    main()
