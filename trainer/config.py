"""Training settings, each declared once with the runtime's `setting()` (runtime/settings.py):
the field carries its help text, choices and whether it defines the run (`identity`); the
`outpost train` flags, their `OUTPOST_TRAIN_*` variables and the README's table are made from
these fields, as every command's are.

Precedence: defaults < recipe YAML (--config) < environment < flags. Checks report every
problem at once, naming the flag.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from outpost.export.llm.base import EMBEDDED_LLM
from outpost.runtime.config import trusted_keys
from outpost.runtime.errors import InputError, UsageError
from outpost.runtime.settings import setting
from outpost.trainer.general import PROMPTS

METHODS = ("auto", "qlora", "lora")
SCHEDULES = ("cosine", "linear", "constant")
ANSWER_STYLES = ("given", "quote")
LAYOUTS = ("windows", "chunks")
TRAIN_ENV = "OUTPOST_TRAIN_"  # prefix of the training options' environment variables


@dataclass
class TrainConfig:
    """How `outpost train` runs. A field with `identity=True` defines the run: a run folder
    holding another run with a different value is refused."""

    base: str = setting(EMBEDDED_LLM, "Base model: HF folder, .gguf, hub id.", identity=True)
    data: str = setting(
        "",
        "Training JSONL: chat messages, prompt/completion, or questions (with --docs).",
        identity=True,
        path=True,
        required=True,
    )
    out: str = setting(
        "",
        "Run folder: adapter, recipe, metrics, loss curve, checkpoints.",
        path=True,
        required=True,
    )
    eval: str | None = setting(
        None, "Evaluation JSONL (same formats); eval loss is logged.", path=True
    )
    docs: list[str] = setting(
        [],
        "Documents for grounded examples; repeatable.",
        identity=True,
        path=True,
        multiple=True,
    )
    method: str = setting(
        "auto", "auto: QLoRA on CUDA, LoRA on CPU.", choices=METHODS, identity=True
    )
    epochs: float = setting(2.0, "Passes over the data.")
    max_steps: int = setting(0, "Optimizer steps; overrides --epochs (0: use --epochs).")
    learning_rate: float = setting(2e-4, "Peak learning rate.", alias="--lr")
    schedule: str = setting("cosine", "Learning-rate schedule.", choices=SCHEDULES)
    warmup_ratio: float = setting(0.05, "Share of steps spent warming up.")
    weight_decay: float = setting(0.0, "AdamW weight decay.")
    rank: int = setting(16, "LoRA rank.", identity=True)
    alpha: int = setting(32, "LoRA alpha.", identity=True)
    dropout: float = setting(0.05, "LoRA dropout.")
    target_modules: list[str] | None = setting(
        None,
        "Comma-separated module names [default: every linear layer of the family].",
        identity=True,
    )
    max_length: int = setting(2048, "Longest example in tokens.", identity=True)
    batch_size: int = setting(1, "Examples per micro-batch.")
    grad_accum: int = setting(4, "Gradient accumulation steps.")
    seed: int = setting(0, "Random seed (data order, distractors, LoRA init).", identity=True)
    packing: bool = setting(False, "Pack several examples into one row.", identity=True)
    reject_long: bool = setting(False, "Fail on over-long examples instead of truncating.")
    refusal_share: float = setting(0.3, "Share of grounded questions also taught as refusals.")
    variants: int = setting(
        2, "Prompts per answerable grounded question (other passages).", identity=True
    )
    answer_style: str = setting(
        "given",
        "Grounded targets: the given answers, or the passage line that holds the answer.",
        choices=ANSWER_STYLES,
        identity=True,
    )
    layout: str = setting(
        "windows",
        "Grounded passages: the runtime reader's sentence windows, or whole chunks.",
        choices=LAYOUTS,
        identity=True,
    )
    general: int = setting(
        0, "General prompts answered by the base model and replayed (0: none).", identity=True
    )
    feedback: list[str] = setting(
        [],
        "Field-log export (outpost feedback export): confirmed answers and declines become "
        "examples; repeatable.",
        identity=True,
        path=True,
        multiple=True,
    )
    trust: list[str] = trusted_keys(
        "With --feedback, use only answers of releases this key signed (file or folder of .pub "
        "files)."
    )
    save_every: int = setting(50, "Checkpoint every N steps.")
    eval_every: int = setting(25, "Eval loss every N steps.")
    gradient_checkpointing: bool = setting(True, "Gradient checkpointing (GPU only).")

    def check(self) -> None:
        problems = []
        if not self.data:
            problems.append("--data is required (a JSON-lines file)")
        if not self.out:
            problems.append("--out is required (the run folder)")
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                problems.append(f"{flag(f.name)} must be one of {', '.join(choices)}")
        for name in (
            "rank",
            "alpha",
            "max_length",
            "batch_size",
            "grad_accum",
            "variants",
            "save_every",
            "eval_every",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{flag(name)} must be at least 1")
        if self.learning_rate <= 0:
            problems.append("--learning-rate must be positive")
        if self.max_steps < 0 or (self.max_steps == 0 and self.epochs <= 0):
            problems.append("--epochs must be positive (or give --max-steps)")
        if not 0 <= self.dropout < 1:
            problems.append("--dropout must be in [0, 1)")
        if not 0 <= self.refusal_share <= 1:
            problems.append("--refusal-share must be in [0, 1]")
        if not 0 <= self.warmup_ratio < 1:
            problems.append("--warmup-ratio must be in [0, 1)")
        if not 0 <= self.general <= len(PROMPTS):
            problems.append(f"--general must be in [0, {len(PROMPTS)}]")
        if problems:  # all at once, like torchtune
            raise UsageError("; ".join(problems))

    def identity(self) -> dict:
        """The settings that define the run (a resumed run must match them)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("identity")}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def load_recipe(path: str | Path) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(f"--config {p} does not exist")
    try:
        values = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise InputError(f"--config {p} is not valid YAML ({e})") from None
    if not isinstance(values, dict):
        raise InputError(f"--config {p} must be a mapping of setting: value")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"--config {p}: unknown keys {', '.join(unknown)}")
    return values


def resolve_config(recipe: str | None, flags: dict) -> TrainConfig:
    """defaults < recipe YAML < flags, where `flags` are the options click read from the
    command line or the environment (`settings.options(..., layered=True)`: one left out of
    both is None or an empty tuple)."""
    values = load_recipe(recipe) if recipe else {}
    values.update({k: v for k, v in flags.items() if v is not None and v != ()})
    if isinstance(values.get("target_modules"), str):
        values["target_modules"] = [
            t.strip() for t in values["target_modules"].split(",") if t.strip()
        ]
    for f in fields(TrainConfig):  # a repeatable setting is a list, given once or many times
        if f.metadata.get("multiple") and f.name in values:
            given = values[f.name]
            values[f.name] = [given] if isinstance(given, str) else list(given)
    config = TrainConfig(**values)
    _check_types(config)
    config.check()
    return config


def _check_types(config: TrainConfig) -> None:
    """A recipe YAML can hold any type: name the key whose value cannot work."""
    wrong = []
    for f in fields(config):
        value = getattr(config, f.name)
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if value is None or default is None:
            continue
        ok = isinstance(value, type(default)) and not (
            isinstance(value, bool) and not isinstance(default, bool)
        )
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            setattr(config, f.name, float(value))
            ok = True
        if ok and isinstance(value, float) and not math.isfinite(value):  # YAML's .nan, .inf
            wrong.append(f"{flag(f.name)} must be a finite number, not {value!r}")
        elif not ok:
            wrong.append(f"{flag(f.name)} must be {type(default).__name__}, not {value!r}")
    if wrong:
        raise UsageError("; ".join(wrong))
