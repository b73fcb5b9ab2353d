"""One settings mechanism for every command (runtime/settings.py): option types from the real
annotations, the trainer's layers, variables named after flags, renamed variables still read
with a warning, serve holding ask's settings instead of repeating them.

No `from __future__ import annotations` here: the configs below carry real types, as a config
module without that import would."""

import importlib.util
import inspect
import os
import sys
import typing
from dataclasses import dataclass, fields
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conftest import ROOT
from outpost.runtime import settings
from outpost.runtime.settings import setting


def _params(*classes, **kwargs) -> dict[str, click.Option]:
    @click.command()
    def command(**_):
        pass

    return {p.name: p for p in settings.options(*classes, **kwargs)(command).params}


@dataclass(kw_only=True)
class Sample:
    on: bool = setting(False, "A switch.")
    count: int | None = setting(None, "A count; None: the bundle's.")
    share: float = setting(0.5, "A share.", low=0, high=1)
    names: list[str] = setting([], "Repeatable.", multiple=True)
    words: list[str] | None = setting(None, "Comma-separated, split by the config.")
    mode: str = setting("a", "A choice.", choices=("a", "b"))
    folder: Path | None = setting(None, "A folder.", path=True)


def test_option_types_come_from_the_annotations_not_their_spelling():
    p = _params(Sample)
    assert p["on"].is_flag and p["on"].secondary_opts == ["--no-on"]
    assert isinstance(p["count"].type, click.types.IntParamType)  # `int | None`, default None
    assert isinstance(p["share"].type, click.FloatRange)
    assert p["names"].multiple and isinstance(p["names"].type, click.types.StringParamType)
    assert not p["words"].multiple and isinstance(p["words"].type, click.types.StringParamType)
    assert isinstance(p["mode"].type, click.Choice)
    assert isinstance(p["folder"].type, click.Path)

    @click.command()
    @settings.options(Sample)
    def show(**options):
        click.echo(repr(settings.build(Sample, options)))

    done = CliRunner().invoke(show, ["--count", "3", "--on", "--names", "x", "--names", "y"])
    assert done.stdout.strip() == repr(Sample(on=True, count=3, names=["x", "y"]))
    assert CliRunner().invoke(show, ["--count", "three"]).exit_code == 2


def test_a_default_of_another_type_or_a_name_declared_twice_is_refused():
    @dataclass
    class Wrong:
        steps: int = setting(2.5, "Steps.")

    with pytest.raises(TypeError, match=r"Wrong.steps: the default 2.5 is not a int"):
        _params(Wrong)

    @dataclass
    class Again:
        count: int = setting(1, "Again.")

    with pytest.raises(TypeError, match="settings declared twice: count"):
        _params(Sample, Again)


def _train_params() -> dict[str, click.Parameter]:
    from outpost.trainer.cli import train_cmd

    return {p.name: p for p in train_cmd.params}


def _shape(p: click.Parameter) -> tuple:
    kind = type(p.type).__mro__[1] if type(p.type).__name__ == "FiniteFloat" else type(p.type)
    choices = tuple(p.type.choices) if isinstance(p.type, click.Choice) else None
    return (p.opts, p.secondary_opts, kind, choices, p.multiple, p.envvar, p.default)


def test_training_flags_follow_the_annotations_without_future_annotations():
    """trainer/config.py run without `from __future__ import annotations` (its annotations real
    types, not strings) makes the very same `outpost train` options."""
    source = (ROOT / "trainer" / "config.py").read_text()
    assert "from __future__ import annotations\n" in source
    spec = importlib.util.spec_from_loader("plain_train_config", loader=None)
    plain = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = plain  # dataclasses look their module up
    try:
        code = source.replace("from __future__ import annotations\n", "")
        exec(compile(code, "trainer/config.py (plain)", "exec"), plain.__dict__)
        assert not any(isinstance(f.type, str) for f in fields(plain.TrainConfig))
        made = _params(plain.TrainConfig, prefix=plain.TRAIN_ENV, layered=True)
    finally:
        del sys.modules[spec.name]
    real = _train_params()
    assert {n: _shape(p) for n, p in made.items()} == {n: _shape(real[n]) for n in made}


def test_training_flag_types_match_the_resolved_annotations():
    from outpost.trainer.config import TrainConfig

    params, hints = _train_params(), typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        p, hint = params[f.name], hints[f.name]
        if f.metadata["choices"]:
            assert isinstance(p.type, click.Choice), f.name
        elif hint is bool:
            assert p.secondary_opts == ["--no-" + f.name.replace("_", "-")], f.name
        elif hint is int:
            assert isinstance(p.type, click.types.IntParamType), f.name
        elif hint is float:
            assert isinstance(p.type, click.types.FloatParamType), f.name
        elif f.metadata["path"]:
            assert isinstance(p.type, click.Path), f.name
        else:
            assert isinstance(p.type, click.types.StringParamType), f.name
        assert p.default in (None, ()), f"{f.name}: a default would hide the recipe's value"
    assert params["docs"].multiple and not params["target_modules"].multiple
    assert params["learning_rate"].opts == ["--learning-rate", "--lr"]


def test_training_precedence_is_defaults_recipe_environment_flags(tmp_path, monkeypatch):
    from outpost.trainer.cli import train_cmd
    from outpost.trainer.config import resolve_config

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("data: d.jsonl\nout: run\nrank: 8\nalpha: 8\nepochs: 3\npacking: true\n")
    monkeypatch.setenv("OUTPOST_TRAIN_ALPHA", "64")
    monkeypatch.setenv("OUTPOST_TRAIN_EPOCHS", "5")
    monkeypatch.setenv("OUTPOST_TRAIN_PACKING", "false")
    monkeypatch.setenv("OUTPOST_TRAIN_DOCS", os.pathsep.join(["a", "b"]))
    ctx = train_cmd.make_context("train", ["--config", str(recipe), "--epochs", "7", "--lr", "1"])
    flags = {k: v for k, v in ctx.params.items() if k not in ("recipe", "resume", "as_json")}
    config = resolve_config(ctx.params["recipe"], flags)
    assert config.seed == 0 and config.dropout == 0.05  # defaults
    assert config.rank == 8  # the recipe over the default
    assert config.alpha == 64 and config.packing is False  # the environment over the recipe
    assert config.epochs == 7.0 and config.learning_rate == 1.0  # the flag over the environment
    assert config.docs == ["a", "b"]


def _prefix(command: str) -> str:
    return {"export": "OUTPOST_EXPORT_", "kit": "OUTPOST_KIT_", "train": "OUTPOST_TRAIN_"}.get(
        command, "OUTPOST_"
    )


# Variables shared by several commands on purpose (docs/decisions.md, issues 19 and 30).
SHARED = {("--trust", "OUTPOST_TRUSTED_KEYS"), ("--base", "OUTPOST_BASE")}


def test_every_variable_is_named_after_its_flag():
    from outpost.cli import cli

    context, checked = click.Context(cli), []
    for name in cli.list_commands(context):
        command = cli.get_command(context, name)
        for p in command.params:
            if not isinstance(p, click.Option) or not p.envvar:
                continue
            flag = next(o for o in p.opts if o.startswith("--"))
            expected = _prefix(name) + flag[2:].upper().replace("-", "_")
            if name == "kit" or (flag, p.envvar) not in SHARED:
                assert p.envvar == expected, f"{name} {flag} reads {p.envvar}, not {expected}"
            checked.append(f"{name} {flag}")
    assert {"export --chunk-chars", "export --chunk-overlap", "install --keep"} <= set(checked)
    assert {"train --learning-rate", "eval --questions", "kit --trust"} <= set(checked)


@pytest.mark.parametrize(
    "env, value, warned",
    [
        ({"OUTPOST_EXPORT_TARGET_CHARS": "500"}, 500, "set OUTPOST_EXPORT_CHUNK_CHARS instead"),
        (
            {"OUTPOST_EXPORT_TARGET_CHARS": "500", "OUTPOST_EXPORT_CHUNK_CHARS": "700"},
            700,
            "OUTPOST_EXPORT_CHUNK_CHARS is set too and wins",
        ),
        ({"OUTPOST_EXPORT_CHUNK_CHARS": "700"}, 700, None),
    ],
)
def test_a_renamed_variable_still_works_for_a_release_with_a_warning(env, value, warned):
    from outpost.export.cli import EXPORT_ENV
    from outpost.export.config import ChunkConfig

    @click.command()
    @settings.options(ChunkConfig, prefix=EXPORT_ENV)
    def show(**options):
        click.echo(settings.build(ChunkConfig, options).target_chars)

    done = CliRunner().invoke(show, [], env=env)
    assert done.exit_code == 0, done.output
    assert done.stdout == f"{value}\n"
    lines = done.stderr.splitlines()
    if warned is None:
        assert lines == []
    else:
        assert len(lines) == 1 and lines[0].startswith(
            "warning: OUTPOST_EXPORT_TARGET_CHARS is deprecated"
        )
        assert warned in lines[0]
    flagged = CliRunner().invoke(show, ["--chunk-chars", "300"], env=env)
    assert flagged.stdout == "300\n" and flagged.stderr == ""  # a flag needs no variable


def test_the_export_command_reads_the_old_chunk_variables(monkeypatch, capsys):
    from outpost.export.cli import export_cmd

    monkeypatch.setenv("OUTPOST_EXPORT_OVERLAP_CHARS", "90")
    ctx = export_cmd.make_context("export", ["docs", "--out", "b"])
    assert ctx.params["overlap_chars"] == 90 and ctx.params["target_chars"] == 900
    assert capsys.readouterr().err == (
        "warning: OUTPOST_EXPORT_OVERLAP_CHARS is deprecated and goes in the next release; "
        "set OUTPOST_EXPORT_CHUNK_OVERLAP instead\n"
    )


def test_serve_holds_asks_settings_instead_of_declaring_them_again():
    from outpost.runtime.config import AskConfig, ServeConfig

    ask_fields = {f.name for f in fields(AskConfig)}
    assert not ask_fields & {f.name for f in fields(ServeConfig)}
    taken = {s.name: s for s in settings.declared(ServeConfig) if s.owner is AskConfig}
    assert list(taken) == ["draft_tokens", "threads", "adapter", "verify", "trust"]
    own = {s.name: s for s in settings.declared(AskConfig)}
    for name, s in taken.items():  # the same flag, variable and default; serve's own words
        assert (s.flag, s.env, s.default) == (own[name].flag, own[name].env, own[name].default)
    assert "releases" in taken["trust"].help and "bundles" in own["trust"].help
    values = {"threads": 2, "adapter": "b", "verify": False, "trust": ("k.pub",), "port": 0}
    config = settings.build(ServeConfig, values, source="bundles")
    assert config.port == 0 and config.ask == AskConfig(
        threads=2, adapter="b", verify=False, trust=["k.pub"]
    )
    assert ServeConfig(source="b").ask == AskConfig()


def test_install_keep_has_one_default():
    from outpost.cli import cli
    from outpost.runtime.bundle.install import install
    from outpost.runtime.config import DEFAULT_KEEP

    option = next(
        p for p in cli.get_command(click.Context(cli), "install").params if p.name == "keep"
    )
    assert option.default == DEFAULT_KEEP == inspect.signature(install).parameters["keep"].default
    text = (ROOT / "src" / "outpost" / "cli.py").read_text()
    # No option declared by hand: each is a setting (a usage line in a docstring may name one).
    assert not any(f'"{flag}"' in text for flag in ("--keep", "--questions", "--bundles", "--log"))
