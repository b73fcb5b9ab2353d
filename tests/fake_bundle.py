"""A bundle folder with the real layout and a complete manifest, but placeholder model files:
enough for everything that reads bundle.json and checks files (info, verify, install), in
milliseconds. Tests that answer questions use the real bundles from conftest.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

FILES = {
    "model/genai_config.json": b'{"model": {"context_length": 2048, "type": "llama"}}',
    "model/model.onnx": b"onnx placeholder " * 64,
    "embedder/model.onnx": b"embedder placeholder " * 32,
    "embedder/tokenizer.json": b"{}",
    "index.usearch": b"\0" * 512,
    "chunks.sqlite": b"SQLite format 3\0" + b"\0" * 240,
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_dict(files: dict[str, bytes] = FILES) -> dict:
    entries = {rel: {"size": len(data), "sha256": sha(data)} for rel, data in sorted(files.items())}
    embedder_sha = entries.get("embedder/model.onnx", {}).get("sha256", "")
    return {
        "schema": 1,
        "created": "2026-11-23T00:00:00+00:00",
        "libraries": {"python": "3.11.7"},
        "model": {
            "dir": "model",
            "base": "tiny",
            "source": "tiny",
            "base_sha256": "0" * 64,
            "parameters": 1000,
            "adapter": None,
            "quantization": {"precision": "int4", "algo_config": "k_quant_mixed"},
            "chat_template_sha256": None,
            "context_length": 2048,
            "type": "llama",
            "adapters": {},
        },
        "embedder": {
            "id": "mini",
            "file": "embedder/model.onnx",
            "tokenizer": "embedder/tokenizer.json",
            "dim": 8,
            "pooling": "mean",
            "normalize": True,
            "source_normalize": True,
            "max_tokens": 64,
            "variant": "fp32",
            "checks": {},
            "languages": ["en"],
        },
        "chunker": {"target_chars": 900},
        "index": {
            "file": "index.usearch",
            "metric": "cos",
            "dtype": "f32",
            "count": 3,
            "ndim": 8,
            "recall_at_10": {"f32": 1.0},
            "min_recall": 0.99,
            "expansion_search": 128,
            "search": "hnsw",
            "embedder": {"sha256": embedder_sha, "dim": 8, "normalize": True},
        },
        "store": {"file": "chunks.sqlite", "count": 3, "fts": "fts5 unicode61"},
        "retrieval": {
            "top_k": 4,
            "hybrid": "rrf(dense, bm25)",
            "grounding_threshold": 0.2,
            "calibration": {},
        },
        "generation": {
            "max_context": 1536,
            "max_new_tokens": 200,
            "repetition_penalty": 1.05,
            "refusal_min_p": 0.5,
            "min_evidence": 0.55,
            "windows": 4,
            "window_radius": 1,
        },
        "checks": {
            "conversion": {
                "precision": "int4",
                "top1_agreement": 0.9,
                "mean_kl": 0.1,
                "perplexity_ratio": 1.05,
                "passed": True,
            },
            "retrieval": {"hybrid_hit_at_4": 1.0},
        },
        "sources": {
            "root": "/docs",
            "documents": [{"path": "a.md", "type": "markdown"}],
            "skipped": [],
        },
        "files": entries,
        "size_bytes": sum(e["size"] for e in entries.values()),
        "export_seconds": 1.0,
        "build": {"engine": "local", "cpus": None},
        "languages": {"main": "en", "chunks": {"en": 2}, "runs": [[0, 2, "en"]], "forced": False},
        "ranker": None,
    }


def write_fake_bundle(root: Path, manifest: dict | None = None) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    manifest = manifest if manifest is not None else manifest_dict()
    (root / "bundle.json").write_text(json.dumps(manifest, indent=2))
    return manifest
