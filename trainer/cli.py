"""`outpost train`: the flags are made from TrainConfig's fields (trainer/config.py) by the
runtime's settings (runtime/settings.py), as every command's are.

Joins the `outpost` command through the `outpost.commands` entry points; imports only click and
the settings here, the training stack when the command runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from outpost.runtime import settings
from outpost.runtime.bundle.manifest import ADAPTER_NAME
from outpost.trainer.config import TRAIN_ENV, TrainConfig


@click.command("train")
@click.option("--config", "recipe", type=click.Path(), help="Recipe YAML (see trainer/recipes/).")
@settings.options(TrainConfig, prefix=TRAIN_ENV, layered=True)  # left out: the recipe decides
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON when done.")
def train_cmd(recipe, resume, as_json, **flags):
    """Train a LoRA/QLoRA adapter that teaches the base model to answer from passages."""
    from outpost.export.libraries import require_extra

    require_extra("train", "train")
    from outpost.trainer.config import resolve_config
    from outpost.trainer.recipe import train

    config = resolve_config(recipe, flags)
    metrics = train(config, resume=resume)
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
    else:
        last = metrics["train"][-1]
        click.echo(
            f"{config.out}: {last['step']} steps, final loss {last['loss']:.4f}, {last['tokens_per_s']:.0f} tokens/s"
        )
        name = Path(config.out).name or "tuned"
        name = name if ADAPTER_NAME.fullmatch(name) else "tuned"
        click.echo(
            "export it merged into the base (one model):\n"
            f"  outpost export DOCS --out BUNDLE --adapter {config.out}\n"
            "or as an adapter chosen at run time (`ask --adapter`, serve's `model`; "
            "repeat --adapter NAME=RUN for more):\n"
            f"  outpost export DOCS --out BUNDLE --adapter {name}={config.out}"
        )
