"""Run every benchmark in one go (`make bench`); each prints its own table or JSON.

    .venv/bin/python benchmarks/run.py [--bundle demo-bundle] [--only NAME ...] [--threads 2]

Benchmarks (docs/benchmarks.md has their results and what they compare):
    ask_speed   bundle's model: outpost vs llama.cpp vs transformers fp32 (TTFT, prefill, decode,
                memory, cold start) and `outpost ask` from a fresh process
    phi_cpu     a Phi shape (random weights; --shape phi3-mini|phi35-mini|phi4-mini) through the
                export vs llama.cpp Q4_0 / Q4_K_M, with the share of measured memory bandwidth
                (builds ~14 GB once, cached)
    retrieval_scale  usearch f32/f16/i8 vs exact search on 60k chunks of Debian's documentation
    embed_speed torch fp32 vs ONNX fp32 vs ONNX int8 embedder: texts/s, cosine, retrieval hit@4
    general     the bundle's model on general questions (no passages)
    precision   int4 / int8 / fp32 exports: answer quality, size, speed (exports 5 bundles)
    train_speed outpost train vs plain transformers + peft (CUDA; on CPU a small smoke run)
    serve_load  `outpost serve` under 1, 4 and 16 clients: requests/s, latency, time to first token
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
NAMES = (
    "ask_speed",
    "phi_cpu",
    "retrieval_scale",
    "embed_speed",
    "general",
    "precision",
    "train_speed",
    "serve_load",
)


def commands(bundle: str, threads: int) -> dict[str, list[str]]:
    py = sys.executable
    train = ["--shape", "tiny", "--method", "lora", "--batch", "2", "--seq", "128", "--steps", "5"]
    try:
        import torch

        if torch.cuda.is_available():
            train = ["--shape", "phi3-mini", "--method", "qlora"]
    except ImportError:
        pass
    return {
        "ask_speed": [py, str(HERE / "ask_speed.py"), bundle, "--threads", str(threads)],
        "phi_cpu": [py, str(HERE / "phi_cpu.py"), "--threads", str(threads)],
        "retrieval_scale": [py, str(HERE / "retrieval_scale.py"), "--bundle", bundle],
        "embed_speed": [
            py,
            str(HERE / "embed_speed.py"),
            "--bundle",
            bundle,
            "--questions",
            str(HERE.parent / "examples/questions.jsonl"),
        ],
        "general": [py, str(HERE / "general.py"), bundle],
        "precision": [py, str(HERE / "precision.py"), "--threads", str(threads)],
        "train_speed": [py, str(HERE / "train_speed.py"), *train],
        "serve_load": [
            py,
            str(HERE / "serve_load.py"),
            "--bundle",
            bundle,
            "--threads",
            str(threads),
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default="demo-bundle", help="Bundle for ask_speed and general.")
    ap.add_argument("--only", nargs="+", choices=NAMES, help="Run these benchmarks only.")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    chosen = args.only or NAMES
    if {"ask_speed", "general", "retrieval_scale", "embed_speed"} & set(chosen) and not (
        Path(args.bundle) / "bundle.json"
    ).is_file():
        sys.exit(f"Error: {args.bundle} is not a bundle; run `make demo` first or pass --bundle")
    failed = []
    for name, command in commands(args.bundle, args.threads).items():
        if name not in chosen:
            continue
        print(f"\n## {name}\n", flush=True)
        started = time.perf_counter()
        if subprocess.run(command).returncode != 0:
            failed.append(name)
        print(f"\n({name}: {time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    if failed:
        sys.exit(f"Error: {', '.join(failed)} failed; see the output above")


if __name__ == "__main__":
    main()
