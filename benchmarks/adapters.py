"""Runtime-switchable adapters against merged exports: agreement, load time, memory, speed.

    .venv/bin/python benchmarks/adapters.py [--base embedded] [--adapter RUN_DIR ...] [--precision int4]

Builds, with the same functions `outpost export` uses, one base model with adapter slots plus
one `.onnx_adapter` file per adapter, and one merged model per adapter. Without --adapter, three
LoRA adapters are made here (the trainer's target modules, rank 16, random non-zero weights of
a trained adapter's spread): what is measured is the mechanism, not what an adapter learnt.

- agreement: teacher-forced next-token top-1 of the runtime adapter against the merged export
  (the bundle's prompts, export/llm/gate.py), and identical greedy answers;
- load: seconds and resident memory of a process holding the base + 1 / + 3 adapters, against
  one holding the three merged models (each process measured alone);
- decode: tokens per second, 64 new tokens, with an adapter active against the merged model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = """
import json, os, resource, sys, time
from pathlib import Path
from outpost.runtime.ask.generate import Generator, GenerationSettings
spec = json.loads(sys.argv[1])
t = time.perf_counter()
gens = [Generator(Path(m), threads=2, adapters={k: Path(v) for k, v in a.items()})
        for m, a in spec["models"]]
load_s = time.perf_counter() - t
rss = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
speeds = []
for gen, adapter in spec["decode"]:
    g = gens[gen]
    msgs = [{"role": "user", "content": "Describe how to replace the hydraulic filter."}]
    s = GenerationSettings(max_new_tokens=64, adapter=adapter)
    g.run(msgs, s).complete()  # warm
    best = 0.0
    for _ in range(3):
        r = g.run(msgs, s).complete()
        t = r.timings
        best = max(best, (t.new_tokens - 1) / max(t.total_s - t.first_token_s, 1e-9))
    speeds.append(round(best, 1))
print(json.dumps({"load_s": round(load_s, 2), "rss_mb": round(rss, 1), "tokens_per_s": speeds}))
"""


def synthetic_adapters(model, out: Path, n: int) -> list[Path]:
    import torch
    from peft import LoraConfig, get_peft_model

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    if "phi3" in model.config.model_type:
        targets = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    paths = []
    for i in range(n):
        torch.manual_seed(i)
        config = LoraConfig(r=16, lora_alpha=32, target_modules=targets, task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, config)
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.data.normal_(0, 0.02)
        peft_model.save_pretrained(str(out / f"adapter{i}"))
        model = peft_model.unload()
        paths.append(out / f"adapter{i}")
    return paths


def probe(models: list, decode: list) -> dict:
    spec = json.dumps({"models": models, "decode": decode})
    done = subprocess.run(
        [sys.executable, "-c", PROBE, spec], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="embedded")
    ap.add_argument("--adapter", action="append", default=[])
    ap.add_argument("--precision", default="int4")
    ap.add_argument("--docs", default="examples/docs")
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()

    from outpost.export.config import ChunkConfig, LlmConfig
    from outpost.export.documents.chunk import chunk_documents
    from outpost.export.documents.ingest import ingest
    from outpost.export.llm import gate
    from outpost.export.llm.base import EMBEDDED_LLM, resolve_base
    from outpost.export.llm.convert import build_onnx, load_model
    from outpost.export.llm.lora import open_slots, template, write_adapter
    from outpost.runtime.ask.generate import GenerationSettings, Generator

    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    docs, _, _ = ingest([args.docs], None, ())
    chunks = chunk_documents(docs, ChunkConfig())
    config = LlmConfig(precision=args.precision)
    result = {"precision": args.precision, "base": args.base}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = resolve_base(EMBEDDED_LLM if args.base == "embedded" else args.base)
        model, tokenizer, _ = load_model(base, None, log)
        adapters = [Path(a) for a in args.adapter] or synthetic_adapters(model, work, 3)
        result["adapters"] = "given" if args.adapter else "synthetic (3, rank 16)"
        model.save_pretrained(work / "hf")
        tokenizer.save_pretrained(work / "hf")
        names = {f"a{i}": p for i, p in enumerate(adapters)}
        log("building the base with adapter slots")
        t = time.perf_counter()
        lora = template(names)
        build_onnx(work / "hf", work / "slots", work / "cache", config, log, lora=lora)
        slots = open_slots(work / "slots")
        files = {}
        for name, folder in names.items():
            files[name] = work / f"{name}.onnx_adapter"
            write_adapter(folder, slots, files[name])
        result["slots_build_s"] = round(time.perf_counter() - t, 1)
        merged_dirs = []
        for name, folder in names.items():
            log(f"building merged model {name}")
            m, tok, _ = load_model(base, str(folder), log)
            m.save_pretrained(work / f"hf-{name}")
            tok.save_pretrained(work / f"hf-{name}")
            t = time.perf_counter()
            build_onnx(work / f"hf-{name}", work / f"merged-{name}", work / "cache", config, log)
            result.setdefault("merged_build_s", round(time.perf_counter() - t, 1))
            merged_dirs.append(work / f"merged-{name}")

        log("agreement: runtime adapter against the merged export")
        switch = Generator(work / "slots", threads=2, adapters=files)
        prompts = gate.samples(chunks, switch)
        rows = []
        for (name, _), merged_dir in zip(names.items(), merged_dirs):
            merged = Generator(merged_dir, threads=2)
            agreement = gate.Agreement()
            same = 0
            for s in prompts:
                agreement.add(merged.logits(s.ids), switch.logits(s.ids, name), s.ids)
                settings = GenerationSettings(max_new_tokens=32)
                ref = merged.run(s.ids[: s.prompt_tokens], settings).complete().token_ids
                got = (
                    switch.run(
                        s.ids[: s.prompt_tokens],
                        GenerationSettings(max_new_tokens=32, adapter=name),
                    )
                    .complete()
                    .token_ids
                )
                same += ref == got
            report = agreement.report()
            rows.append({"adapter": name, **report, "same": same, "prompts": len(prompts)})
            print(json.dumps(rows[-1]), flush=True)
            del merged
        result["agreement"] = rows
        del switch

        log("load time, memory and decode speed (one process per case)")
        slots_dir = str(work / "slots")
        all_files = {k: str(v) for k, v in files.items()}
        cases = {
            "base, no adapter": ([[slots_dir, {}]], [[0, None]]),
            "base + 1 adapter": ([[slots_dir, {"a0": all_files["a0"]}]], [[0, "a0"]]),
            "base + 3 adapters": ([[slots_dir, all_files]], [[0, "a0"]]),
            "3 merged models": ([[str(d), {}] for d in merged_dirs], [[0, None]]),
        }
        result["load"] = {}
        for case, (models, decode) in cases.items():
            result["load"][case] = probe(models, decode)
            print(case, json.dumps(result["load"][case]), flush=True)
        sizes = {n: round(f.stat().st_size / 1e6, 1) for n, f in files.items()}
        result["adapter_file_mb"] = sizes
        result["model_mb"] = round(
            sum(f.stat().st_size for f in (work / "slots").glob("model.onnx*")) / 1e6, 1
        )
    print()
    print("| case | load s | process memory MB | decode tokens/s |")
    print("|---|---|---|---|")
    for case, r in result["load"].items():
        print(f"| {case} | {r['load_s']} | {r['rss_mb']} | {r['tokens_per_s'][0]} |")
    print()
    print("| adapter | top-1 vs merged | KL | same greedy answers |")
    print("|---|---|---|---|")
    for r in result["agreement"]:
        print(
            f"| {r['adapter']} | {r['top1_agreement']:.4f} | {r['mean_kl']:.5f} | "
            f"{r['same']}/{r['prompts']} |"
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
