"""The Phi shapes on this CPU: Outpost's int4 export against llama.cpp on the same weights.

    .venv/bin/python benchmarks/phi_cpu.py [--shape phi3-mini|phi35-mini|phi4-mini]
        [--threads 2] [--prompt-tokens 512] [--json]

A random-weight model with a real one's shape (export/llm/random_model.py, `real_shape`:
Phi-3-mini, Phi-3.5-mini with LongRoPE, Phi-4-mini with partial rotary, GQA, tied embeddings and
200064 tokens; 3.8B parameters each, 32 layers; the real weights cannot be fetched here) is made
once and cached in .outpost-cache/<shape>-cpu/ (14-20 GB: the bf16 checkpoint, our int4 ONNX
export with the export's defaults, and two GGUFs, Q4_0 and Q4_K_M, made with gguf-py and
llama.cpp's own quantiser from the same tensors). Each engine then runs in its own process on
the same token ids, greedy, with the same threads: time to first token for a RAG-sized prompt,
prefill and decode tokens/s, peak RSS, and cold start (process start to the first token, page
cache warm). Decode of a model this size is bound by memory bandwidth, so the table also gives
the share of this machine's read bandwidth (numpy, same threads, measured in the same run) that
each engine's decode reaches: weight bytes read per token x tokens/s. The model's files on disk
(the bundle's model size) are reported beside it: with tied embeddings the token table is the
LM head's weight, stored once.

`--layers N` and `--quant-algo default` make a quick smoke run of the pipeline (not a number to
report).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEW_TOKENS = 32
CACHE = ROOT / ".outpost-cache" / "phi3-mini-cpu"  # set by main() from --shape


def log(msg: str) -> None:
    print(f"[phi_cpu] {msg}", file=sys.stderr, flush=True)


def hf_model(shape: str, layers: int | None) -> Path:
    """Random checkpoint of `shape` (bf16) with a tokenizer padded to its vocabulary."""
    out = CACHE / "hf"
    if (out / "config.json").is_file():
        return out
    import torch

    from outpost.export.llm.random_model import build_real_shape

    log(f"making the random {shape} checkpoint (bf16)")
    corpus = [p.read_text(errors="replace") for p in sorted((ROOT / "examples/docs").rglob("*.md"))]
    tmp = out.with_suffix(".tmp")
    build_real_shape(tmp, corpus, shape, dtype=torch.bfloat16, layers=layers)
    tmp.rename(out)
    return out


def onnx_model(hf: Path, quant_algo: str) -> Path:
    """The int4 ONNX model through the export's own builder step and defaults."""
    out = CACHE / "onnx"
    if (out / "genai_config.json").is_file():
        return out
    from outpost.export.llm.convert import LlmConfig, build_onnx

    tmp = CACHE / "onnx.tmp"
    started = time.time()
    build_onnx(hf, tmp, CACHE / "builder-cache", LlmConfig(quant_algo=quant_algo), log)
    log(f"int4 export built in {time.time() - started:.0f} s")
    tmp.rename(out)
    return out


def gguf_models(hf: Path, llama_python: str) -> dict[str, Path]:
    """Q8_0 GGUF written from the checkpoint with gguf-py, requantised by llama.cpp itself."""
    q8 = CACHE / "q8_0.gguf"
    if not q8.is_file():
        log("writing the Q8_0 GGUF (gguf-py)")
        write_gguf(hf, q8)
    out = {}
    for name, ftype in (("Q4_0", 2), ("Q4_K_M", 15)):  # llama_ftype: MOSTLY_Q4_0, MOSTLY_Q4_K_M
        path = CACHE / f"{name.lower()}.gguf"
        if not path.is_file():
            log(f"quantising to {name} (llama.cpp)")
            tmp = path.with_suffix(".tmp")
            cmd = [llama_python, __file__, "--quantize", str(q8), str(tmp), str(ftype)]
            if subprocess.run(cmd).returncode != 0:
                raise SystemExit(f"llama.cpp could not quantise to {name}")
            tmp.rename(path)
        out[name] = path
    return out


def quantize(source: str, target: str, ftype: int) -> int:
    """llama.cpp's own quantiser (run with the Python that has llama-cpp-python)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.nthread, params.allow_requantize = ftype, os.cpu_count(), True
    return llama_cpp.llama_model_quantize(source.encode(), target.encode(), params)


def write_gguf(hf: Path, path: Path) -> None:
    import gguf
    import numpy as np
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    cfg = AutoConfig.from_pretrained(hf)
    tok = AutoTokenizer.from_pretrained(hf)
    w = gguf.GGUFWriter(str(path.with_suffix(".tmp")), "phi3")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    rotary = int(head_dim * getattr(cfg, "partial_rotary_factor", 1.0))
    w.add_rope_dimension_count(rotary)
    w.add_rope_freq_base(
        cfg.rope_parameters["rope_theta"]
        if getattr(cfg, "rope_parameters", None)
        else cfg.rope_theta
    )
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    vocab = {i: t for t, i in tok.get_vocab().items()}
    special = set(tok.all_special_ids)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([vocab.get(i, f"[PAD{i}]") for i in range(cfg.vocab_size)])
    w.add_token_types(
        [
            gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL
            for i in range(cfg.vocab_size)
        ]
    )
    merges = json.loads((hf / "tokenizer.json").read_text())["model"]["merges"]
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type")) == "longrope":  # as convert_hf_to_gguf.py writes it
        scale = cfg.max_position_embeddings / cfg.original_max_position_embeddings
        w.add_rope_scaling_orig_ctx_len(cfg.original_max_position_embeddings)
        orig = cfg.original_max_position_embeddings
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(orig)))
        for kind in ("long", "short"):
            w.add_tensor(
                f"rope_factors_{kind}.weight", np.array(rope[f"{kind}_factor"], np.float32)
            )
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.PHI3, cfg.num_hidden_layers)
    files = sorted(hf.glob("*.safetensors"))
    for f in files:
        with safe_open(f, "pt") as st:
            for key in st.keys():
                base, suffix = key.rsplit(".", 1)
                name = names.get_name(base) + "." + suffix
                data = st.get_tensor(key).float().numpy()
                if data.ndim == 2:
                    q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
                    w.add_tensor(
                        name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0
                    )
                else:
                    w.add_tensor(name, data.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    path.with_suffix(".tmp").rename(path)


def read_bandwidth(threads: int, gib: float = 2.0) -> float:
    """GB/s of reading a large array with `threads` threads (numpy sums release the GIL)."""
    import numpy as np

    parts = [np.ones(int(gib * 2**30 / 8 / threads)) for _ in range(threads)]
    best = 0.0
    for _ in range(5):
        workers = [threading.Thread(target=p.sum) for p in parts]
        start = time.perf_counter()
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        best = max(best, sum(p.nbytes for p in parts) / (time.perf_counter() - start) / 1e9)
    return best


def run_onnx(model: str, ids_list, threads: int, spawned: float) -> dict:
    from outpost.runtime.ask.generate import GenerationSettings, Generator

    gen = Generator(Path(model), threads)
    gen.load()  # the weights, which a Generator otherwise loads on first use
    loaded = time.time() - spawned
    rows = []
    for ids in ids_list:
        settings = GenerationSettings(NEW_TOKENS, extra={"min_length": len(ids) + NEW_TOKENS})
        t = gen.run(ids, settings).complete().timings
        rows.append((t.first_token_s, t.tokens_per_s))
        if len(rows) == 1:
            cold = time.time() - spawned - (t.total_s - t.first_token_s)
    return summary(rows, ids_list, loaded, cold)


def run_llamacpp(model: str, ids_list, threads: int, spawned: float) -> dict:
    from llama_cpp import Llama

    llm = Llama(
        model, n_ctx=2048, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False
    )
    loaded = time.time() - spawned
    from ask_speed import llamacpp_greedy

    ttft, tps, cold = llamacpp_greedy(llm, ids_list, NEW_TOKENS, spawned)
    return summary(list(zip(ttft, tps)), ids_list, loaded, cold)


def summary(rows, ids_list, loaded: float, cold: float) -> dict:
    ttft = statistics.median(r[0] for r in rows)
    prompt = statistics.median(len(x) for x in ids_list)
    return {
        "ttft_s": round(ttft, 3),
        "prefill_tokens_per_s": round(prompt / ttft, 1),
        "decode_tokens_per_s": round(statistics.median(r[1] for r in rows), 2),
        "load_s": round(loaded, 2),
        "cold_first_token_s": round(cold, 2),
    }


def weight_bytes_per_token(engine: str, path: Path) -> int:
    """Bytes of weights one decode step reads: the model minus the token-embedding table
    (a step reads one row of it)."""
    if engine == "onnx":
        import onnx

        m = onnx.load(str(path / "model.onnx"), load_external_data=False)
        gathered = {i for n in m.graph.node if n.op_type.startswith("Gather") for i in n.input[:2]}
        used_elsewhere = {
            i for n in m.graph.node if not n.op_type.startswith("Gather") for i in n.input
        }
        lengths = {
            t.name: int(e.value)
            for t in m.graph.initializer
            for e in t.external_data
            if e.key == "length"
        }
        table = sum(lengths.get(n, 0) for n in gathered - used_elsewhere)
        return (path / "model.onnx.data").stat().st_size - table
    import gguf

    reader = gguf.GGUFReader(str(path))
    tied = not any(t.name == "output.weight" for t in reader.tensors)  # the LM head is token_embd
    return sum(
        int(t.n_bytes) for t in reader.tensors if tied or not t.name.startswith("token_embd")
    )


def files_mb(path: Path) -> int:
    """The model's size on disk (a folder's files or one GGUF)."""
    files = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]
    return round(sum(f.stat().st_size for f in files) / 1e6)


def main() -> None:
    global CACHE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--shape", default="phi3-mini", choices=("phi3-mini", "phi35-mini", "phi4-mini")
    )
    ap.add_argument("--layers", type=int, help="fewer layers than the shape's: a smoke run")
    ap.add_argument("--quant-algo", default="k_quant_mixed", help="the export's default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--llama-python",
        default=sys.executable,
        help="a Python with llama-cpp-python (docs/benchmarks.md says how it was built)",
    )
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--quantize", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quantize:
        raise SystemExit(quantize(args.quantize[0], args.quantize[1], int(args.quantize[2])))
    if args.child:
        engine, model, ids_path = args.child
        run = run_onnx if engine == "onnx" else run_llamacpp
        result = run(
            model,
            json.loads(Path(ids_path).read_text()),
            args.threads,
            float(os.environ["OUTPOST_BENCH_SPAWNED"]),
        )
        from ask_speed import peak_rss_mib

        result["peak_rss_mib"] = round(peak_rss_mib())
        print(json.dumps(result))
        return

    import numpy as np

    suffix = (f"-{args.layers}l" if args.layers else "") + (
        f"-{args.quant_algo}" if args.quant_algo != "k_quant_mixed" else ""
    )
    CACHE = ROOT / ".outpost-cache" / f"{args.shape}{suffix}-cpu"
    CACHE.mkdir(parents=True, exist_ok=True)
    hf = hf_model(args.shape, args.layers)
    models = {"onnx": onnx_model(hf, args.quant_algo), **gguf_models(hf, args.llama_python)}
    rng = np.random.default_rng(0)
    # ids from the trained part of the vocabulary, so they decode like text
    ids_list = [rng.integers(10, 500, args.prompt_tokens).tolist() for _ in range(args.prompts)]
    ids_path = CACHE / "ids.json"
    ids_path.write_text(json.dumps(ids_list))
    bandwidth = read_bandwidth(args.threads)
    log(f"read bandwidth {bandwidth:.1f} GB/s with {args.threads} threads")
    rows = {}
    for name, path in models.items():
        engine = "onnx" if name == "onnx" else "llamacpp"
        log(f"running {name}")
        env = {**os.environ, "OUTPOST_BENCH_SPAWNED": repr(time.time())}
        done = subprocess.run(
            [
                args.llama_python if engine == "llamacpp" else sys.executable,
                __file__,
                "--threads",
                str(args.threads),
                "--child",
                engine,
                str(path),
                str(ids_path),
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if done.returncode != 0:
            log(f"{name}: not measured ({done.stderr.strip().splitlines()[-1:]})")
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["weight_mb_per_token"] = round(weight_bytes_per_token(engine, path) / 1e6)
        row["model_mb"] = files_mb(path)
        row["bandwidth_share"] = round(
            row["decode_tokens_per_s"] * row["weight_mb_per_token"] / 1e3 / bandwidth, 3
        )
        rows[name] = row
    report = {
        "shape": args.shape,
        "layers": args.layers,
        "quant_algo": args.quant_algo,
        "threads": args.threads,
        "prompt_tokens": args.prompt_tokens,
        "prompts": args.prompts,
        "new_tokens": NEW_TOKENS,
        "read_bandwidth_gb_s": round(bandwidth, 1),
        "rows": rows,
    }
    if "onnx" in rows:
        o = rows["onnx"]
        report["ratios"] = {
            n: {
                "ttft": round(o["ttft_s"] / r["ttft_s"], 2),
                "decode": round(o["decode_tokens_per_s"] / r["decode_tokens_per_s"], 2),
            }
            for n, r in rows.items()
            if n != "onnx"
        }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{args.shape} shape (random weights), {args.prompts} prompts of {args.prompt_tokens} "
        f"tokens, {NEW_TOKENS} new tokens, {args.threads} threads, read bandwidth {bandwidth:.1f} GB/s"
    )
    print(
        "| engine | TTFT s | prefill tok/s | decode tok/s | weights read/token | bandwidth share | "
        "load s | cold start to first token s | peak RSS MiB | model on disk |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    labels = {
        "onnx": f"outpost (int4 {args.quant_algo}, onnxruntime-genai)",
        "Q4_0": "llama.cpp Q4_0",
        "Q4_K_M": "llama.cpp Q4_K_M",
    }
    for name, r in rows.items():
        print(
            f"| {labels[name]} | {r['ttft_s']:.2f} | {r['prefill_tokens_per_s']:.0f} | "
            f"{r['decode_tokens_per_s']:.2f} | {r['weight_mb_per_token']} MB | "
            f"{r['bandwidth_share']:.0%} | {r['load_s']:.1f} | {r['cold_first_token_s']:.1f} | "
            f"{r['peak_rss_mib']} | {r['model_mb']} MB |"
        )
    for name, r in report.get("ratios", {}).items():
        print(f"outpost / llama.cpp {name}: TTFT {r['ttft']}x, decode {r['decode']}x")


if __name__ == "__main__":
    main()
