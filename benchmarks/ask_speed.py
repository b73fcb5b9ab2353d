"""Device-side speed: time to first token, decode tokens/s and peak memory of the bundle's
onnxruntime-genai model against llama.cpp (llama-cpp-python on the same model's GGUF, the peer
people compare with) and plain PyTorch transformers (the peer the export replaces), on the same
prompts, measured in the same run, each in its own process. The bundle's model runs twice:
plainly, and with speculative decoding by prompt lookup (`--draft-tokens`, DRAFT_TOKENS), with
its acceptance rate and on how many prompts its greedy output is the plain one's.

    .venv/bin/python benchmarks/ask_speed.py BUNDLE [--questions examples/questions.jsonl] [--threads 2]
        [--llama-python llamavenv/bin/python] [--json]

llama-cpp-python may live in a venv of its own (`--llama-python`; docs/benchmarks.md says how
it was built); its child process imports nothing of Outpost.

The prompts are the real `outpost ask` prompts (retrieved passages, the bundle's context budget),
rendered once and fed to every engine as token ids; greedy decoding, 64 new tokens. Per engine:
time to first token, prefill and decode tokens/s, peak RSS, model load time and cold start
(process start to the first token of the first prompt, page cache warm). Last, `outpost ask`
itself from a fresh process to the first byte of its answer on stdout (embedder, index, model,
retrieval and prefill included), the cold start a technician waits through.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

NEW_TOKENS = 64
DRAFT_TOKENS = 4


def prompts(bundle: str, questions: str, n: int) -> list[list[int]]:
    from outpost.runtime.ask.assistant import open_assistant
    from outpost.runtime.ask.prompt import Passage, fit_messages

    a = open_assistant(bundle)
    items = [json.loads(x) for x in Path(questions).read_text().splitlines() if x.strip()][:n]
    out = []
    for item in items:
        hits = a.retriever.search(item["question"], a.top_k)
        passages = [Passage(h.source, h.heading, h.text) for h in hits]
        messages, _ = fit_messages(
            item["question"],
            passages,
            [],
            a.generator.count_tokens,
            a.max_context - a.settings.max_new_tokens,
        )
        out.append(a.generator.encode(messages))
    return out


def run_onnx(bundle: str, ids_list, threads: int, draft_tokens: int = 0) -> dict:
    from outpost.runtime.ask.generate import GenerationSettings, Generator
    from outpost.runtime.bundle.open import open_bundle

    gen = Generator(open_bundle(bundle).model_dir, threads)
    gen.load()  # the weights, which a Generator otherwise loads on first use
    loaded, cold = time.time() - SPAWNED, None
    ttft, tps, outputs, drafted, accepted = [], [], [], 0, 0
    for ids in ids_list:
        settings = GenerationSettings(
            NEW_TOKENS,
            draft_tokens=draft_tokens,
            extra={"min_length": len(ids) + NEW_TOKENS},
        )
        result = gen.run(ids, settings).complete()
        timings = result.timings
        cold = cold or time.time() - SPAWNED - (timings.total_s - timings.first_token_s)
        ttft.append(timings.first_token_s)
        tps.append(timings.tokens_per_s)
        outputs.append(result.token_ids)
        drafted, accepted = drafted + timings.drafted, accepted + timings.accepted
    out = summary(ids_list, ttft, tps, loaded, cold)
    out["outputs"] = outputs
    if draft_tokens:
        out["drafted"], out["accepted"] = drafted, accepted
        out["acceptance"] = round(accepted / drafted, 3) if drafted else 0.0
    return out


def run_onnx_lookup(bundle: str, ids_list, threads: int) -> dict:
    """The same model with speculative decoding by prompt lookup (runtime/ask/speculative.py)."""
    return run_onnx(bundle, ids_list, threads, DRAFT_TOKENS)


def run_torch(bundle: str, ids_list, threads: int) -> dict:
    import torch

    from outpost.export.llm.base import load_causal_lm, resolve_base
    from outpost.runtime.bundle.open import open_bundle

    torch.set_num_threads(threads)
    base = resolve_base(open_bundle(bundle).manifest.model.source)
    model = load_causal_lm(base, dtype=torch.float32).eval()
    loaded, cold = time.time() - SPAWNED, None
    ttft, tps = [], []
    with torch.no_grad():
        for ids in ids_list:
            x = torch.tensor([ids])
            start = time.perf_counter()
            out = model(x, use_cache=True)
            past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            first = time.perf_counter()
            cold = cold or time.time() - SPAWNED
            for _ in range(NEW_TOKENS - 1):
                out = model(nxt, past_key_values=past, use_cache=True)
                past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            end = time.perf_counter()
            ttft.append(first - start)
            tps.append((NEW_TOKENS - 1) / (end - first))
    return summary(ids_list, ttft, tps, loaded, cold)


def run_llamacpp(bundle: str, ids_list, threads: int) -> dict:
    """The bundle's base GGUF (the embedded default ships one) in llama.cpp, greedy, same ids."""
    from llama_cpp import Llama

    llm = Llama(
        os.environ["OUTPOST_BENCH_GGUF"],
        n_ctx=2048,
        n_threads=threads,
        n_threads_batch=threads,
        n_batch=512,
        verbose=False,
    )
    loaded = time.time() - SPAWNED
    ttft, tps, cold = llamacpp_greedy(llm, ids_list, NEW_TOKENS, SPAWNED)
    return summary(ids_list, ttft, tps, loaded, cold)


def gguf_of(bundle: str) -> str | None:
    """The GGUF the bundle's base model came from (the embedded default ships one)."""
    from outpost.export.llm.base import resolve_base
    from outpost.runtime.bundle.open import open_bundle

    base = resolve_base(open_bundle(bundle).manifest.model.source)
    return str(Path(base.location) / base.gguf_file) if base.gguf_file else None


def llamacpp_greedy(llm, ids_list, new_tokens: int, spawned: float):
    """Greedy runs of each prompt in llama.cpp: (TTFT list, decode tokens/s list, seconds from
    `spawned` to the first token of the first prompt)."""
    ttft, tps, cold = [], [], None
    for ids in ids_list:
        llm.reset()
        start, first, count = time.perf_counter(), None, 0
        for _ in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
            count += 1
            if first is None:
                first = time.perf_counter()
                cold = cold or time.time() - spawned
            if count >= new_tokens:
                break
        ttft.append(first - start)
        tps.append((count - 1) / (time.perf_counter() - first))
    return ttft, tps, cold


SPAWNED = float(os.environ.get("OUTPOST_BENCH_SPAWNED", "0"))


def summary(ids_list, ttft, tps, loaded: float, cold: float) -> dict:
    first = statistics.median(ttft)
    return {
        "ttft_s": round(first, 3),
        "prefill_tokens_per_s": round(statistics.median(len(x) for x in ids_list) / first, 1),
        "tokens_per_s": round(statistics.median(tps), 1),
        "load_s": round(loaded, 2),
        "cold_first_token_s": round(cold, 2),
    }


def cold_ask(bundle: str, question: str, threads: int, runs: int = 3) -> dict:
    """`outpost ask` in a fresh process: seconds to the first byte of the answer on stdout."""
    firsts, totals = [], []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "outpost.cli",
                "ask",
                bundle,
                question,
                "--threads",
                str(threads),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[1],
        )
        proc.stdout.read(1)
        firsts.append(time.perf_counter() - start)
        proc.stdout.read()
        proc.wait()
        totals.append(time.perf_counter() - start)
    return {
        "first_byte_s": round(statistics.median(firsts), 2),
        "whole_answer_s": round(statistics.median(totals), 2),
    }


ENGINES = {
    "onnx": run_onnx,
    "onnx_lookup": run_onnx_lookup,
    "llamacpp": run_llamacpp,
    "torch": run_torch,
}


def child(engine: str, bundle: str, ids_path: str, threads: int) -> None:
    ids_list = json.loads(Path(ids_path).read_text())
    result = ENGINES[engine](bundle, ids_list, threads)
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


def peak_rss_mib() -> float:
    """This process's peak resident memory since its exec. Not getrusage's ru_maxrss: Linux
    carries that over fork and exec, so a child would report its parent's peak when higher."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("--questions", default="examples/questions.jsonl")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-n", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--llama-python",
        default=sys.executable,
        help="the Python that has llama-cpp-python (it may live in a venv of its own)",
    )
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.bundle, args.child[1], args.threads)
        return
    ids_list = prompts(args.bundle, args.questions, args.n)
    ids_path = Path("/tmp/outpost-bench-ids.json")
    ids_path.write_text(json.dumps(ids_list))
    rows = {}
    gguf = gguf_of(args.bundle)
    for engine in ENGINES:
        if engine == "llamacpp" and not gguf:
            print("llamacpp: not measured (this bundle's base has no GGUF)", file=sys.stderr)
            continue
        env = {**os.environ, "OUTPOST_BENCH_SPAWNED": repr(time.time())}
        env["OUTPOST_BENCH_GGUF"] = gguf or ""
        done = subprocess.run(
            [
                args.llama_python if engine == "llamacpp" else sys.executable,
                __file__,
                args.bundle,
                "--threads",
                str(args.threads),
                "--child",
                engine,
                str(ids_path),
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if done.returncode != 0:
            print(
                f"{engine}: not measured ({done.stderr.strip().splitlines()[-1:]})", file=sys.stderr
            )
            continue
        rows[engine] = json.loads(done.stdout.strip().splitlines()[-1])
    if "onnx" in rows and "onnx_lookup" in rows:  # greedy output, plain against speculative
        pairs = zip(rows["onnx"]["outputs"], rows["onnx_lookup"]["outputs"])
        rows["onnx_lookup"]["identical"] = sum(a == b for a, b in pairs)
    for r in rows.values():
        r.pop("outputs", None)
    first_question = json.loads(Path(args.questions).read_text().splitlines()[0])["question"]
    ask = cold_ask(args.bundle, first_question, args.threads)
    mean_prompt = statistics.mean(len(x) for x in ids_list)
    report = {
        "prompts": len(ids_list),
        "mean_prompt_tokens": round(mean_prompt),
        "new_tokens": NEW_TOKENS,
        "threads": args.threads,
        "engines": rows,
        "outpost_ask": ask,
    }
    report["ratios"] = {
        f"{mine}/{name}": {
            "ttft": round(o["ttft_s"] / t["ttft_s"], 2),
            "decode": round(o["tokens_per_s"] / t["tokens_per_s"], 2),
            "memory": round(o["peak_rss_mib"] / t["peak_rss_mib"], 2),
        }
        for mine in ("onnx", "onnx_lookup")
        if (o := rows.get(mine))
        for name, t in rows.items()
        if not name.startswith("onnx")
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{len(ids_list)} prompts, mean {mean_prompt:.0f} tokens, {NEW_TOKENS} new tokens, "
        f"{args.threads} threads"
    )
    print(
        "| engine | TTFT s | prefill tok/s | decode tok/s | peak RSS MiB | load s | "
        "cold start to first token s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, label in (
        ("onnx", "outpost (onnxruntime-genai, bundle model int4)"),
        ("onnx_lookup", f"outpost, speculative by prompt lookup (--draft-tokens {DRAFT_TOKENS})"),
        ("llamacpp", "llama.cpp (llama-cpp-python, GGUF Q4_1)"),
        ("torch", "transformers fp32 (PyTorch)"),
    ):
        if name in rows:
            r = rows[name]
            print(
                f"| {label} | {r['ttft_s']:.2f} | {r['prefill_tokens_per_s']:.0f} | "
                f"{r['tokens_per_s']:.1f} | {r['peak_rss_mib']:.0f} | {r['load_s']:.1f} | "
                f"{r['cold_first_token_s']:.1f} |"
            )
    for name, r in report["ratios"].items():
        print(f"ratios {name}: TTFT {r['ttft']}x, decode {r['decode']}x, memory {r['memory']}x")
    if "onnx_lookup" in rows:
        r = rows["onnx_lookup"]
        print(
            f"speculative: {r['accepted']} of {r['drafted']} drafted tokens accepted "
            f"({r['acceptance']:.0%}); greedy output identical to plain decoding on "
            f"{r['identical']} of {len(ids_list)} prompts"
        )
    print(
        f"`outpost ask` from a fresh process: first byte of the answer {ask['first_byte_s']} s, "
        f"whole answer {ask['whole_answer_s']} s (median of 3)"
    )


if __name__ == "__main__":
    main()
