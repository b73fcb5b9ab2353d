"""`outpost train`: flags for the training recipe (defaults < --config YAML < flags)."""

from __future__ import annotations

import json

import click

from trainer.data import ANSWER_STYLES


@click.command("train")
@click.option(
    "--base", help="Base model: HF folder, .gguf, hub id [default: embedded:SmolLM2-135M-Instruct]."
)
@click.option(
    "--data",
    type=click.Path(),
    help="Training JSONL: chat messages, prompt/completion, or questions (with --docs).",
)
@click.option(
    "--eval",
    "eval_",
    type=click.Path(),
    help="Evaluation JSONL (same formats); eval loss is logged.",
)
@click.option(
    "--docs", multiple=True, type=click.Path(), help="Documents for grounded examples; repeatable."
)
@click.option(
    "--out",
    type=click.Path(),
    help="Run folder: adapter, recipe, metrics, loss curve, checkpoints.",
)
@click.option(
    "--method",
    type=click.Choice(["auto", "qlora", "lora"]),
    help="auto: QLoRA on CUDA, LoRA on CPU.",
)
@click.option("--config", "recipe", type=click.Path(), help="Recipe YAML (see trainer/recipes/).")
@click.option("--epochs", type=float)
@click.option("--max-steps", type=int, help="Optimizer steps; overrides --epochs.")
@click.option("--learning-rate", "--lr", "learning_rate", type=float)
@click.option("--schedule", type=click.Choice(["cosine", "linear", "constant"]))
@click.option("--warmup-ratio", type=float)
@click.option("--rank", type=int, help="LoRA rank.")
@click.option("--alpha", type=int, help="LoRA alpha.")
@click.option("--dropout", type=float, help="LoRA dropout.")
@click.option(
    "--target-modules",
    help="Comma-separated module names [default: every linear layer of the family].",
)
@click.option("--max-length", type=int, help="Longest example in tokens.")
@click.option("--batch-size", type=int)
@click.option("--grad-accum", type=int, help="Gradient accumulation steps.")
@click.option("--seed", type=int)
@click.option("--packing/--no-packing", default=None, help="Pack several examples into one row.")
@click.option(
    "--reject-long",
    is_flag=True,
    default=None,
    help="Fail on over-long examples instead of truncating.",
)
@click.option(
    "--refusal-share", type=float, help="Share of grounded questions also taught as refusals."
)
@click.option(
    "--variants", type=int, help="Prompts per answerable grounded question (other passages)."
)
@click.option(
    "--answer-style",
    type=click.Choice(ANSWER_STYLES),
    help="Grounded targets: the given answers, or the passage line that holds the answer.",
)
@click.option(
    "--general",
    type=int,
    help="General prompts answered by the base model and replayed in training (0: none).",
)
@click.option("--save-every", type=int, help="Checkpoint every N steps.")
@click.option("--eval-every", type=int, help="Eval loss every N steps.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON when done.")
def train_cmd(recipe, eval_, target_modules, resume, as_json, docs, **flags):
    """Train a LoRA/QLoRA adapter that teaches the base model to answer from passages."""
    from trainer.recipe import resolve_config, train

    flags["eval"] = eval_
    flags["docs"] = list(docs) or None
    flags["target_modules"] = (
        [t.strip() for t in target_modules.split(",")] if target_modules else None
    )
    config = resolve_config(recipe, flags)
    metrics = train(config, resume=resume)
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
    else:
        last = metrics["train"][-1]
        click.echo(
            f"{config.out}: {last['step']} steps, final loss {last['loss']:.4f}, {last['tokens_per_s']:.0f} tokens/s"
        )
