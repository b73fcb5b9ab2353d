"""The training run: one straight-line recipe for LoRA (CPU or GPU) and QLoRA (CUDA).

defaults < recipe YAML (--config) < flags. Everything the run needs to be repeated or resumed
is written to RUN_DIR/recipe.json; the adapter lands in RUN_DIR itself so that plain peft and
`outpost export --adapter RUN_DIR` load it.
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from export.llm import EMBEDDED_LLM
from runtime.errors import InputError, ModelError, UsageError
from runtime.log import log
from trainer.data import ANSWER_STYLES
from trainer.general import PROMPTS

METHODS = ("auto", "qlora", "lora")
SCHEDULES = ("cosine", "linear", "constant")
TARGETS = {
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
RUN_FILE = "recipe.json"
GENERAL_FILE = "general.jsonl"  # the replayed base-model answers, reused by --resume
# Settings that define the run: a folder holding another run with different ones is refused.
IDENTITY = (
    "base",
    "data",
    "docs",
    "method",
    "rank",
    "alpha",
    "target_modules",
    "max_length",
    "seed",
    "packing",
    "variants",
    "answer_style",
    "general",
)


@dataclass
class TrainConfig:
    base: str = EMBEDDED_LLM
    data: str = ""
    out: str = ""
    eval: str | None = None
    docs: list[str] = field(default_factory=list)
    method: str = "auto"
    epochs: float = 2.0
    max_steps: int = 0  # > 0 overrides epochs
    learning_rate: float = 2e-4
    schedule: str = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | None = None  # None: every linear layer of the family
    max_length: int = 2048
    batch_size: int = 1
    grad_accum: int = 4
    seed: int = 0
    packing: bool = False
    reject_long: bool = False  # reject over-long examples instead of truncating them
    refusal_share: float = 0.3
    variants: int = 2  # prompts per answerable question in grounded data
    answer_style: str = "given"  # grounded targets: the given answers, or the passage's own line
    general: int = 0  # general prompts answered by the base model and replayed (0: none)
    save_every: int = 50
    eval_every: int = 25
    gradient_checkpointing: bool = True  # GPU only

    def check(self) -> None:
        problems = []
        if not self.data:
            problems.append("--data is required (a JSON-lines file)")
        if not self.out:
            problems.append("--out is required (the run folder)")
        if self.method not in METHODS:
            problems.append(f"--method must be one of {', '.join(METHODS)}")
        if self.schedule not in SCHEDULES:
            problems.append(f"--schedule must be one of {', '.join(SCHEDULES)}")
        for name in ("rank", "alpha", "max_length", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1")
        if self.learning_rate <= 0:
            problems.append("--learning-rate must be positive")
        if self.max_steps < 0 or (self.max_steps == 0 and self.epochs <= 0):
            problems.append("--epochs must be positive (or give --max-steps)")
        if not 0 <= self.dropout < 1:
            problems.append("--dropout must be in [0, 1)")
        if not 0 <= self.refusal_share <= 1:
            problems.append("--refusal-share must be in [0, 1]")
        if self.answer_style not in ANSWER_STYLES:
            problems.append(f"--answer-style must be one of {', '.join(ANSWER_STYLES)}")
        if self.variants < 1:
            problems.append("--variants must be at least 1")
        if not 0 <= self.general <= len(PROMPTS):
            problems.append(f"--general must be in [0, {len(PROMPTS)}]")
        if problems:  # all at once, like torchtune
            raise UsageError("; ".join(problems))


def load_recipe(path: str | Path) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config {p} does not exist")
    try:
        values = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UsageError(f"--config {p} is not valid YAML ({e})") from None
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"--config {p}: unknown keys {', '.join(unknown)}")
    return values


def resolve_config(recipe: str | None, flags: dict) -> TrainConfig:
    values = load_recipe(recipe) if recipe else {}
    values.update({k: v for k, v in flags.items() if v is not None and v != ()})
    config = TrainConfig(**values)
    config.docs = list(config.docs)
    config.check()
    return config


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
    if out.exists() and any(out.iterdir()):
        if not run_file.is_file():
            raise UsageError(f"{out} is not empty and holds no outpost run; choose another --out")
        previous = json.loads(run_file.read_text())
        changed = [
            k for k in IDENTITY if previous.get(k) != json.loads(json.dumps(asdict(config)))[k]
        ]
        if changed:
            raise UsageError(
                f"{out} holds a different run ({', '.join(changed)} differ); choose another --out"
            )
        if not resume:
            raise UsageError(
                f"{out} already holds this run; pass --resume to continue it or choose another --out"
            )
    elif resume:
        raise UsageError(f"--resume: {out} holds no run to continue")
    return out


def _examples(config: TrainConfig, tokenizer, path: str):
    from trainer.data import (
        GroundedConfig,
        build_grounded,
        load_conversations,
        load_qa,
        read_jsonl,
    )

    first = read_jsonl(path)[0][1]
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
                seed=config.seed,
            ),
            log,
        )
    else:
        conversations = load_conversations(path)
    examples = _rows(config, tokenizer, conversations, path)
    if not examples:
        raise InputError(f"{path}: no example keeps an assistant token within --max-length")
    return examples


def _rows(config: TrainConfig, tokenizer, conversations, path: str):
    """Tokenized conversations (assistant-only labels), packed into rows with --packing."""
    from trainer.data import pack, tokenize

    examples, truncated = [], 0
    for i, messages in enumerate(conversations):
        ex, cut = tokenize(tokenizer, messages, config.max_length)
        if cut and config.reject_long:
            raise InputError(
                f"{path}: example {i + 1} is longer than --max-length {config.max_length}; raise it or drop --reject-long"
            )
        truncated += cut
        if any(label != -100 for label in ex.labels):
            examples.append(ex)
    if truncated:
        log(f"{truncated} of {len(conversations)} examples truncated to {config.max_length} tokens")
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


def train(config: TrainConfig, resume: bool = False) -> dict:
    from export.bundle import quiet_libraries

    quiet_libraries()
    import torch
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

    from export.llm import resolve_base

    config.check()
    out = _check_out(config, resume)
    device, method = _device_and_method(config)
    base = resolve_base(config.base)
    kwargs = {"gguf_file": base.gguf_file} if base.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(base.location, **kwargs)
    if not tokenizer.chat_template:
        raise ModelError(f"{base.model_id} has no chat template; use an instruct/chat model")
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
    load = {"dtype": torch.float32 if device == "cpu" else torch.bfloat16, **kwargs}
    if method == "qlora":
        from transformers import BitsAndBytesConfig

        load["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        load["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    model = AutoModelForCausalLM.from_pretrained(base.location, **load)
    replay = []
    if config.general:  # before the adapter: the base model's own answers
        from trainer.data import load_conversations
        from trainer.general import self_distill

        saved = out / GENERAL_FILE
        if resume and saved.is_file():
            replay = load_conversations(str(saved))
        else:
            replay = self_distill(model, tokenizer, config.general, 96, log)
        train_set += _rows(config, tokenizer, replay, "general")
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

    accelerator = Accelerator(cpu=device == "cpu")
    if method == "qlora":
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
    micro_per_epoch = math.ceil(len(train_set) / config.batch_size / world)
    steps_per_epoch = max(1, micro_per_epoch // config.grad_accum)
    total = config.max_steps or max(1, int(config.epochs * steps_per_epoch))
    scheduler = get_scheduler(
        config.schedule,
        optimizer,
        num_warmup_steps=int(config.warmup_ratio * total),
        num_training_steps=total,
    )
    model, optimizer = accelerator.prepare(model, optimizer)

    metrics = {"train": [], "eval": [], "method": method, "device": device, "processes": world}
    step = 0
    if resume:
        step, metrics = _restore(out, accelerator, model, optimizer, scheduler)
        log(f"resuming at step {step} of {total}")
    out.mkdir(parents=True, exist_ok=True)
    recorded = {
        **asdict(config),
        "method_used": method,
        "base_id": base.model_id,
        "family": family,
        "target_modules_used": targets,
    }
    (out / RUN_FILE).write_text(json.dumps(recorded, indent=2))
    if replay:
        (out / GENERAL_FILE).write_text("".join(json.dumps({"messages": m}) + "\n" for m in replay))

    pad = tokenizer.pad_token_id
    rank, tokens_seen, started = accelerator.process_index, 0, time.perf_counter()
    while step < total:
        micro = step * config.grad_accum
        epoch, offset = divmod(micro, micro_per_epoch)
        batches = _batches(train_set, config.batch_size, config.seed, epoch)[rank::world]
        loss_sum, tokens = 0.0, 0
        for j in range(config.grad_accum):
            ids = batches[(offset + j) % len(batches)]
            input_ids, mask, labels = _collate(train_set, ids, pad, accelerator.device)
            loss = _loss(model, input_ids, mask, labels, selective=world == 1)
            accelerator.backward(loss / config.grad_accum)
            loss_sum += float(loss)
            tokens += int(mask.sum())
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        step += 1
        tokens_seen += tokens * world
        elapsed = time.perf_counter() - started
        row = {"step": step, "loss": round(loss_sum / config.grad_accum, 5), "lr": scheduler.get_last_lr()[0],
               "tokens_per_s": round(tokens_seen / elapsed, 1), "peak_memory_gib": round(_peak_memory_gib(device), 3)}  # fmt: skip
        metrics["train"].append(row)
        if accelerator.is_main_process:
            log(f"step {step}/{total} loss {row['loss']:.4f} ({row['tokens_per_s']:.0f} tokens/s)")
        if eval_set and (step % config.eval_every == 0 or step == total):
            metrics["eval"].append(
                {"step": step, "loss": _eval_loss(model, eval_set, pad, accelerator)}
            )
            log(f"eval loss {metrics['eval'][-1]['loss']:.4f}")
            model.train()
        if step % config.save_every == 0 and step < total:
            _checkpoint(out, step, metrics, accelerator, model, optimizer, scheduler)

    if accelerator.is_main_process:
        _finish(out, accelerator.unwrap_model(model), config, metrics)
    accelerator.wait_for_everyone()
    return metrics


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
        raise UsageError(f"--resume: {out} has no checkpoint yet; start again without --resume")
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
