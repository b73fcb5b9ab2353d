"""The training run for LoRA (CPU or GPU) and QLoRA (CUDA), in three stages:
`setup` (base model, data, adapter), `optimiser` (optimiser, schedule, accelerate) and `fit`
(the loop, checkpoints, the finished adapter). Settings: trainer/config.py.

Everything the run needs to be repeated or resumed is written to RUN_DIR/recipe.json; the
adapter lands in RUN_DIR itself so that plain peft and `outpost export --adapter RUN_DIR` load it.
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from outpost.runtime.errors import InputError, ModelError, UsageError
from outpost.runtime.log import log
from outpost.trainer.config import TrainConfig

TARGETS: dict[str, list[str] | str] = {  # else peft's "all-linear"
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
RUN_FILE = "recipe.json"
GENERAL_FILE = "general.jsonl"  # the replayed base-model answers, reused by --resume


# --- the run ------------------------------------------------------------------------------


def _device_and_method(config: TrainConfig):
    import torch

    cuda = torch.cuda.is_available()
    method = config.method
    if method == "auto":
        method = "qlora" if cuda else "lora"
    if method == "qlora" and not cuda:
        raise ModelError(
            "--method qlora needs a CUDA GPU (bitsandbytes 4-bit); use --method lora on CPU"
        )
    if method == "qlora":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ModelError(
                "--method qlora needs bitsandbytes: pip install bitsandbytes"
            ) from None
    return ("cuda" if cuda else "cpu"), method


def _check_out(config: TrainConfig, resume: bool) -> Path:
    out = Path(config.out)
    run_file = out / RUN_FILE
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise InputError(f"--out {out}: {parent} is a file, not a folder; choose another --out")
    if out.exists() and any(out.iterdir()):
        if not run_file.is_file():
            raise InputError(f"{out} is not empty and holds no outpost run; choose another --out")
        try:
            previous = json.loads(run_file.read_text())
        except (OSError, ValueError):
            raise InputError(f"{run_file} is unreadable; choose another --out") from None
        now = json.loads(json.dumps(config.identity()))
        changed = [k for k in now if not isinstance(previous, dict) or previous.get(k) != now[k]]
        if changed:
            raise InputError(
                f"{out} holds a different run ({', '.join(changed)} differ); choose another --out"
            )
        if not resume:
            raise InputError(
                f"{out} already holds this run; pass --resume to continue it or choose another --out"
            )
    elif resume:
        raise InputError(f"--resume: {out} holds no run to continue")
    return out


def _examples(config: TrainConfig, tokenizer, path: str):
    from outpost.runtime.files import read_jsonl
    from outpost.trainer.data import (
        GroundedConfig,
        SentenceEmbedder,
        build_grounded,
        load_conversations,
        load_qa,
    )

    first = read_jsonl(path)[0][1]  # the first line decides the format
    if "question" in first:
        if not config.docs:
            raise UsageError(
                f"{path} holds questions; pass --docs with the documents they are about"
            )
        conversations = build_grounded(
            load_qa(path),
            config.docs,
            GroundedConfig(
                refusal_share=config.refusal_share,
                variants=config.variants,
                answer_style=config.answer_style,
                layout=config.layout,
                embedder=SentenceEmbedder() if config.layout == "windows" else None,
                seed=config.seed,
            ),
            log,
        )
    else:
        conversations = load_conversations(path)
    if config.feedback:  # the field loop: what technicians confirmed (trainer/feedback.py)
        from outpost.trainer import feedback

        rows, counts = feedback.load(config.feedback, config.trust)
        taught, made = feedback.conversations(rows)
        log(f"feedback: {len(taught)} examples from {counts['rows']} answers ({dict(made)})")
        conversations = [*conversations, *taught]
    examples = _rows(config, tokenizer, conversations, path)
    if not examples:
        raise InputError(f"{path}: no example keeps an assistant token within --max-length")
    return examples


def _rows(config: TrainConfig, tokenizer, conversations, path: str):
    """Tokenized conversations (assistant-only labels), packed into rows with --packing."""
    from outpost.trainer.data import pack, tokenize

    examples, truncated, dropped = [], 0, 0
    for i, messages in enumerate(conversations):
        ex, cut = tokenize(tokenizer, messages, config.max_length)
        if cut and config.reject_long:
            raise InputError(
                f"{path}: example {i + 1} is longer than --max-length {config.max_length}; raise it or drop --reject-long"
            )
        if any(label != -100 for label in ex.labels):
            examples.append(ex)
            truncated += cut
        else:
            dropped += 1  # cut before any answer token: nothing left to learn
    if truncated:
        log(f"{truncated} of {len(conversations)} examples truncated to {config.max_length} tokens")
    if dropped:
        log(
            f"{dropped} of {len(conversations)} examples dropped: no answer token within {config.max_length} tokens"
        )
    if config.packing:
        examples = pack(examples, config.max_length, tokenizer.pad_token_id or 0)
    return examples


def _batches(examples, batch_size: int, seed: int, epoch: int):
    order = list(range(len(examples)))
    random.Random(seed * 1000 + epoch).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _collate(examples, ids, pad_id: int, device):
    import torch

    width = max(len(examples[i].input_ids) for i in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    labels = torch.full((len(ids), width), -100, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, i in enumerate(ids):
        n = len(examples[i].input_ids)
        input_ids[row, :n] = torch.tensor(examples[i].input_ids)
        labels[row, :n] = torch.tensor(examples[i].labels)
        mask[row, :n] = 1
    return input_ids.to(device), mask.to(device), labels.to(device)


def _peak_memory_gib(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


@dataclass
class Setup:
    model: Any  # the libraries' own objects (transformers, peft, accelerate)
    tokenizer: Any
    train_set: list
    eval_set: list
    replay: list
    device: str
    method: str
    base_id: str
    family: str
    targets: list[str] | str


@dataclass
class Optimisation:
    accelerator: Any  # the libraries' own objects (accelerate, torch)
    model: Any
    optimizer: Any
    scheduler: Any
    total: int
    micro_per_epoch: int


def train(config: TrainConfig, resume: bool = False) -> dict:
    """Check, set up, fit; returns the metrics written to RUN_DIR/metrics.json."""
    from outpost.export.libraries import quiet_libraries

    quiet_libraries()
    config.check()
    out = _check_out(config, resume)
    run = setup(config, out, resume)
    opt = optimiser(config, run)
    return fit(config, out, run, opt, resume)


def nf4_quantization():
    """QLoRA's 4-bit base: NF4 weights, double quantisation, bf16 compute (bitsandbytes)."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def setup(config: TrainConfig, out: Path, resume: bool) -> Setup:
    """Tokenizer, training data, base model (4-bit for QLoRA), general replay, LoRA adapter."""
    import torch
    from peft import LoraConfig, get_peft_model

    from outpost.export.llm.base import load_causal_lm, load_tokenizer, resolve_base

    device, method = _device_and_method(config)
    base = resolve_base(config.base)
    tokenizer = load_tokenizer(base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_set = _examples(config, tokenizer, config.data)
    eval_set = _examples(config, tokenizer, config.eval) if config.eval else []

    log(
        f"training {method.upper()} on {device}"
        + (" (fp32 LoRA: no CUDA)" if device == "cpu" else "")
    )
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    load: dict[str, Any] = {"dtype": torch.float32 if device == "cpu" else torch.bfloat16}
    if method == "qlora":
        load["quantization_config"] = nf4_quantization()
        load["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    model = load_causal_lm(base, **load)
    replay = _general_replay(config, out, resume, model, tokenizer)
    train_set += _rows(config, tokenizer, replay, "general") if replay else []
    family = model.config.model_type
    targets = config.target_modules or TARGETS.get(family, "all-linear")
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing
        )
    elif device == "cuda" and config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    model.train()  # checkpointing works only in training mode; from_pretrained returns eval mode
    return Setup(
        model,
        tokenizer,
        train_set,
        eval_set,
        replay,
        device,
        method,
        base.model_id,
        family,
        targets,
    )


def _general_replay(config: TrainConfig, out: Path, resume: bool, model, tokenizer) -> list:
    """The base model's own answers to general prompts, made before the adapter is attached."""
    if not config.general:
        return []
    from outpost.trainer.data import load_conversations
    from outpost.trainer.general import self_distill

    saved = out / GENERAL_FILE
    if resume and saved.is_file():
        return load_conversations(str(saved))
    return self_distill(model, tokenizer, config.general, 96, log)


def optimiser(config: TrainConfig, run: Setup) -> Optimisation:
    """AdamW (paged 8-bit for QLoRA), the learning-rate schedule, accelerate's wrapping."""
    import torch
    from accelerate import Accelerator
    from transformers import get_scheduler

    accelerator = Accelerator(cpu=run.device == "cpu")
    model = run.model
    if run.method == "qlora":
        import bitsandbytes as bnb

        optimizer = bnb.optim.PagedAdamW8bit(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
    else:
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            trainable, lr=config.learning_rate, weight_decay=config.weight_decay
        )
    world = accelerator.num_processes
    micro_per_epoch = math.ceil(len(run.train_set) / config.batch_size / world)
    steps_per_epoch = max(1, micro_per_epoch // config.grad_accum)
    total = config.max_steps or max(1, int(config.epochs * steps_per_epoch))
    scheduler = get_scheduler(
        config.schedule,
        optimizer,
        num_warmup_steps=int(config.warmup_ratio * total),
        num_training_steps=total,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    return Optimisation(accelerator, model, optimizer, scheduler, total, micro_per_epoch)


def fit(config: TrainConfig, out: Path, run: Setup, opt: Optimisation, resume: bool) -> dict:
    """The optimisation loop: logs, eval loss, checkpoints, then the adapter and its records."""
    accelerator, model, optimizer, scheduler = (
        opt.accelerator,
        opt.model,
        opt.optimizer,
        opt.scheduler,
    )
    world = accelerator.num_processes
    metrics = {
        "train": [],
        "eval": [],
        "method": run.method,
        "device": run.device,
        "processes": world,
    }
    step = 0
    if resume:
        step, metrics = _restore(out, accelerator, model, optimizer, scheduler)
        log(f"resuming at step {step} of {opt.total}")
    _record_run(config, out, run)

    if run.device == "cuda":
        import torch

        # The load's peak (shards arrive in bf16, then quantise) is kept apart, so each step's
        # peak is the training one (docs/benchmarks.md: 2.66 GiB to load, 4.14 GiB to train).
        metrics["load_peak_memory_gib"] = round(_peak_memory_gib("cuda"), 3)
        torch.cuda.reset_peak_memory_stats()
    pad = run.tokenizer.pad_token_id
    tokens_seen, started = 0, time.perf_counter()
    while step < opt.total:
        loss_sum, tokens = _step(config, run, opt, step, pad)
        step += 1
        tokens_seen += tokens * world
        elapsed = time.perf_counter() - started
        row = {
            "step": step,
            "loss": round(loss_sum / config.grad_accum, 5),
            "lr": scheduler.get_last_lr()[0],
            "tokens_per_s": round(tokens_seen / elapsed, 1),
            "peak_memory_gib": round(_peak_memory_gib(run.device), 3),
        }
        metrics["train"].append(row)
        if accelerator.is_main_process:
            log(
                f"step {step}/{opt.total} loss {row['loss']:.4f} ({row['tokens_per_s']:.0f} tokens/s)"
            )
        if run.eval_set and (step % config.eval_every == 0 or step == opt.total):
            metrics["eval"].append(
                {"step": step, "loss": _eval_loss(model, run.eval_set, pad, accelerator)}
            )
            log(f"eval loss {metrics['eval'][-1]['loss']:.4f}")
            model.train()
        if step % config.save_every == 0 and step < opt.total:
            _checkpoint(out, step, metrics, accelerator, model, optimizer, scheduler)

    if accelerator.is_main_process:
        _finish(out, accelerator.unwrap_model(model), config, metrics)
    accelerator.wait_for_everyone()
    return metrics


def _step(config: TrainConfig, run: Setup, opt: Optimisation, step: int, pad: int):
    """One optimiser step over `grad_accum` micro-batches (this process's share of each);
    the summed loss and the tokens seen."""
    accelerator, model = opt.accelerator, opt.model
    world, rank = accelerator.num_processes, accelerator.process_index
    epoch, offset = divmod(step * config.grad_accum, opt.micro_per_epoch)
    batches = _batches(run.train_set, config.batch_size, config.seed, epoch)[rank::world]
    loss_sum, tokens = 0.0, 0
    for j in range(config.grad_accum):
        ids = batches[(offset + j) % len(batches)]
        input_ids, mask, labels = _collate(run.train_set, ids, pad, accelerator.device)
        loss = _loss(model, input_ids, mask, labels, selective=world == 1)
        accelerator.backward(loss / config.grad_accum)
        loss_sum += float(loss)
        tokens += int(mask.sum())
    opt.optimizer.step()
    opt.scheduler.step()
    opt.optimizer.zero_grad()
    return loss_sum, tokens


def _record_run(config: TrainConfig, out: Path, run: Setup) -> None:
    out.mkdir(parents=True, exist_ok=True)
    recorded = {
        **asdict(config),
        "method_used": run.method,
        "base_id": run.base_id,
        "family": run.family,
        "target_modules_used": run.targets,
    }
    (out / RUN_FILE).write_text(json.dumps(recorded, indent=2))
    if run.replay:
        text = "".join(json.dumps({"messages": m}) + "\n" for m in run.replay)
        (out / GENERAL_FILE).write_text(text)


def _loss(model, input_ids, mask, labels, selective: bool):
    """Causal LM loss. `selective`: run the LM head only where a label is learned.

    With assistant-only labels most positions are masked; the full fp32 logits (tokens x
    vocabulary, 49k wide for SmolLM2) and their softmax are then mostly wasted work. Under
    data parallel the plain forward is used, so the DDP wrapper sees the whole model call.
    """
    import torch

    if not selective:
        return model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
    inner = model.get_base_model()
    hidden = inner.get_decoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    logits = inner.get_output_embeddings()(hidden[:, :-1][keep]).float()
    return torch.nn.functional.cross_entropy(logits, target[keep])


def _eval_loss(model, examples, pad, accelerator) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(examples)):
            input_ids, mask, labels = _collate(examples, [i], pad, accelerator.device)
            total += float(
                _loss(model, input_ids, mask, labels, selective=accelerator.num_processes == 1)
            )
            count += 1
    return round(total / max(count, 1), 5)


def _checkpoint(out: Path, step, metrics, accelerator, model, optimizer, scheduler) -> None:
    """Adapter + optimiser, scheduler and RNG state; written to a temp folder, then renamed."""
    import numpy as np
    import torch

    if not accelerator.is_main_process:
        return
    final = out / "checkpoints" / f"step-{step:06d}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    accelerator.unwrap_model(model).save_pretrained(tmp / "adapter")
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "state.pt"
    )
    rng = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    torch.save(rng, tmp / "rng.pt")
    (tmp / "metrics.json").write_text(json.dumps({"step": step, **metrics}))
    os.replace(tmp, final)
    log(f"checkpoint {final}")


def _restore(out: Path, accelerator, model, optimizer, scheduler):
    import numpy as np
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    checkpoints = sorted((out / "checkpoints").glob("step-[0-9]*[0-9]"))
    if not checkpoints:
        raise InputError(f"--resume: {out} has no checkpoint yet; start again without --resume")
    last = checkpoints[-1]
    set_peft_model_state_dict(
        accelerator.unwrap_model(model), load_file(last / "adapter" / "adapter_model.safetensors")
    )
    state = torch.load(last / "state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng = torch.load(last / "rng.pt", weights_only=False)
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    saved = json.loads((last / "metrics.json").read_text())
    step = saved.pop("step")
    return step, saved


def _finish(out: Path, model, config: TrainConfig, metrics: dict) -> None:
    model.save_pretrained(out)
    adapter_config = out / "adapter_config.json"
    values = json.loads(adapter_config.read_text())
    values["base_model_name_or_path"] = config.base  # export --adapter finds the base from here
    adapter_config.write_text(json.dumps(values, indent=2))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _plot(out / "loss.png", metrics)
    log(f"adapter written to {out}")


def _plot(path: Path, metrics: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(
        [r["step"] for r in metrics["train"]], [r["loss"] for r in metrics["train"]], label="train"
    )
    if metrics["eval"]:
        ax.plot(
            [r["step"] for r in metrics["eval"]],
            [r["loss"] for r in metrics["eval"]],
            "o-",
            label="eval",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
