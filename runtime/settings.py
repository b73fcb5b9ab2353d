"""Settings declared once, for every command (the trainer's included).

A command's settings are the fields of its config dataclass, each made with `setting()`: its
default, help, choices, range, and whether it is a path or repeatable. The type of its values
is the field's annotation, resolved with `typing.get_type_hints` (so the annotation's spelling,
or `from __future__ import annotations`, never changes a flag). A config may hold another
command's config and take some of its settings (`nested()`: serve takes four of ask's).

From those fields come the click options (`options()`, each with its environment variable,
shown in `--help`: the prefix and the flag, `--chunk-chars` -> `OUTPOST_EXPORT_CHUNK_CHARS`),
the config (`build()`, by keyword only) and the README's option tables (`table()`, checked
against the README by a test). Precedence: defaults < environment < flags; a `layered` command
(the trainer) gets None for every option left out, so that what it reads in between (a recipe
YAML) sits above the defaults and below the environment. Nothing here imports click until a
command is built.
"""

from __future__ import annotations

import functools
import os
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    import click
    from _typeshed import DataclassInstance

Config = TypeVar("Config", bound="DataclassInstance")
Command = TypeVar("Command", bound=Callable[..., Any])


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    alias: str | None = None,
    choices: tuple[str, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    path: bool = False,
    multiple: bool = False,
    env: str | None = None,
    old_env: str | None = None,
    secret: bool = False,
    required: bool = False,
    **extra: Any,
) -> Any:
    """A config field with what its option needs. `flag` overrides the name made from the field
    (`max_new_tokens` -> `--max-new-tokens`); `alias` is a second name (`-o`, `--lr`);
    `low`/`high` bound it (inclusive); `env` names a variable shared by several commands
    instead of the prefix + flag (`OUTPOST_TRUSTED_KEYS`); `old_env` is the variable's name
    before a rename, still read for one release with a warning; `secret` keeps the default out
    of help and tables; `required` options must be given (on the command line or in the
    environment; for a layered command, by then). `extra`: what the config's own code reads
    from the field's metadata (the trainer's `identity`)."""
    meta = {
        **extra,
        "help": help,
        "flag": flag,
        "alias": alias,
        "choices": choices,
        "low": low,
        "high": high,
        "path": path,
        "multiple": multiple,
        "env": env,
        "old_env": old_env,
        "secret": secret,
        "required": required,
        "setting": True,
    }
    if isinstance(default, list | tuple):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def nested(cls: type, *names: str, help: dict[str, str] | None = None) -> Any:
    """A field holding a `cls` config, of which the command takes the settings `names` (at this
    field's place among its options), with `help` for those the command words differently."""
    return field(default_factory=cls, metadata={"nested": (cls, names, help or {})})


@dataclass(frozen=True)
class Setting:
    """One option as a command takes it, resolved from its field."""

    name: str  # the field's, and the keyword the command receives
    flag: str  # --max-new-tokens
    env: str  # OUTPOST_MAX_NEW_TOKENS
    kind: type  # of each value: bool, int, float or str
    default: Any  # a `kind`, or a list of them for a repeatable setting
    help: str
    owner: type  # the config class that declares it
    alias: str | None = None
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    path: bool = False
    multiple: bool = False
    secret: bool = False
    required: bool = False
    old_env: str | None = None


def declared(*classes: type, prefix: str = "OUTPOST_") -> list[Setting]:
    """The settings of the given config classes (and of the configs they nest), in declaration
    order; a name declared twice is a TypeError (click would take one for the other)."""
    found = [s for cls in classes for s in _settings(cls, prefix)]
    names = [s.name for s in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise TypeError(f"settings declared twice: {', '.join(twice)}")
    return found


def _settings(
    cls: type,
    prefix: str,
    only: Iterable[str] | None = None,
    helps: dict[str, str] | None = None,
) -> list[Setting]:
    hints = typing.get_type_hints(cls)
    found = []
    for f in fields(cls):
        if "nested" in f.metadata:
            inner, names, inner_helps = f.metadata["nested"]
            found += _settings(inner, prefix, names, inner_helps)
        elif f.metadata.get("setting") and (only is None or f.name in only):
            found.append(_resolve(cls, f, hints[f.name], prefix, (helps or {}).get(f.name)))
    return found


def _resolve(cls: type, f: Field, hint: Any, prefix: str, help: str | None) -> Setting:
    meta = f.metadata
    where = f"{cls.__name__}.{f.name}"
    flag = meta["flag"] or "--" + f.name.replace("_", "-")
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    kind = _kind(hint, meta["multiple"], where)
    if default is not None and not meta["multiple"] and kind is not str:
        allowed = (int, float) if kind is float else kind
        if not isinstance(default, allowed) or (kind is not bool and isinstance(default, bool)):
            raise TypeError(f"{where}: the default {default!r} is not a {kind.__name__}")
    positive = flag[2:].removeprefix("no-") if kind is bool else flag[2:]
    return Setting(
        name=f.name,
        flag=flag,
        env=meta["env"] or prefix + positive.upper().replace("-", "_"),
        kind=kind,
        default=default,
        help=help or meta["help"],
        owner=cls,
        alias=meta["alias"],
        choices=meta["choices"],
        low=meta["low"],
        high=meta["high"],
        path=meta["path"],
        multiple=meta["multiple"],
        secret=meta["secret"],
        required=meta["required"],
        old_env=meta["old_env"],
    )


def _kind(hint: Any, multiple: bool, where: str) -> type:
    """bool, int, float or str: the type of an option's values, from its field's annotation
    (`int | None` -> int; `list[str]` -> str, each value of a repeatable option or, when not
    repeatable, one text the config splits itself; `Path` -> str)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"{where}: no option for a {hint} setting")
        hint = rest[0]
    listed = hint in (list, tuple) or typing.get_origin(hint) in (list, tuple)
    if multiple and not listed:
        raise TypeError(f"{where}: a repeatable setting is a list, not {hint}")
    if listed:
        if not multiple:
            return str
        hint = (typing.get_args(hint) or (str,))[0]
    if hint is Path:
        return str
    if hint in (bool, int, float, str):
        return hint
    raise TypeError(f"{where}: no option for a {hint} setting")


def options(
    *classes: type, prefix: str = "OUTPOST_", layered: bool = False
) -> Callable[[Command], Command]:
    """A decorator: one click option per setting of `classes`, passed to the command as a
    keyword named like the field; its environment variable is `prefix` + the flag. `layered`:
    an option left out (and unset in the environment) is None (repeatable: empty), for the
    command to fill from the layer below; no defaults are shown, the layer may change them."""
    import click

    def decorate(command: Command) -> Command:
        for s in reversed(declared(*classes, prefix=prefix)):
            names = [s.flag] + ([s.alias] if s.alias else [])
            kwargs: dict[str, Any] = {"help": s.help, "envvar": s.env, "show_envvar": True}
            if s.old_env:
                kwargs.update(cls=_renamed_option(), old_env=s.old_env)
            if s.kind is bool:
                positive = s.flag[2:].removeprefix("no-")
                names = [f"--{positive}/--no-{positive}"]
                kwargs.update(default=None if layered else s.default, show_default=not layered)
            else:
                if s.choices:
                    kwargs["type"] = click.Choice(s.choices)
                elif s.path:
                    kwargs["type"] = click.Path()
                elif s.kind is int:
                    bounded = s.low is not None or s.high is not None
                    # an int setting's bounds are ints (`setting(0, ..., low=1)`)
                    low, high = cast("int | None", s.low), cast("int | None", s.high)
                    kwargs["type"] = click.IntRange(low, high) if bounded else int
                elif s.kind is float:
                    kwargs["type"] = finite_float(s.low, s.high)
                if s.multiple:
                    kwargs.update(multiple=True, default=() if layered else tuple(s.default))
                elif s.required and not layered:
                    kwargs["required"] = True
                else:
                    kwargs["default"] = None if layered else s.default
                shown = s.default not in (None, (), []) and not s.secret
                kwargs["show_default"] = shown and not layered
            command = click.option(*names, s.name, **kwargs)(command)
        return command

    return decorate


@functools.cache
def _renamed_option() -> type[click.Option]:
    """The click option class of a setting whose variable was renamed: the old name is still
    read (when the new one is unset), with one line on stderr naming the new one."""
    import click

    class RenamedOption(click.Option):
        def __init__(self, *args: Any, old_env: str, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.old_env = old_env

        def resolve_envvar_value(self, ctx: click.Context) -> str | None:
            value = super().resolve_envvar_value(ctx)
            old = os.environ.get(self.old_env)
            if old:
                ignored = f" ({self.envvar} is set too and wins)" if value is not None else ""
                click.echo(
                    f"warning: {self.old_env} is deprecated and goes in the next release; "
                    f"set {self.envvar} instead{ignored}",
                    err=True,
                )
            return old if value is None and old else value

    return RenamedOption


def finite_float(low: float | None = None, high: float | None = None) -> click.ParamType:
    """The click type of a float setting: a finite number (click's own float types take "nan",
    "inf" and "-inf", and NaN passes every range check), within [low, high] when given."""
    import math

    import click

    bounded = low is not None or high is not None
    base = click.FloatRange if bounded else click.types.FloatParamType

    class FiniteFloat(base):  # type: ignore[misc,valid-type]  # mypy takes no base chosen at run time
        def convert(
            self, value: Any, param: click.Parameter | None, ctx: click.Context | None
        ) -> Any:
            number = click.types.FloatParamType.convert(self, value, param, ctx)
            if not math.isfinite(number):
                self.fail(f"{value!r} is not a finite number; give a plain number", param, ctx)
            return super().convert(number, param, ctx)  # and its range

    return FiniteFloat(low, high) if bounded else FiniteFloat()


def build(cls: type[Config], values: dict, **extra: Any) -> Config:
    """`cls` from the options a command received (only its own settings, and those of the
    configs it nests), plus `extra`; by keyword only."""
    picked = {}
    for f in fields(cls):
        if f.name in extra:
            continue
        if "nested" in f.metadata:
            inner, names, _ = f.metadata["nested"]
            picked[f.name] = build(inner, {k: v for k, v in values.items() if k in names})
        elif f.metadata.get("setting") and f.name in values:
            value = values[f.name]
            picked[f.name] = list(value) if isinstance(value, tuple) else value
    return cls(**picked, **extra)


def table(*classes: type, prefix: str = "OUTPOST_") -> str:
    """The option table the README shows for a command with these settings."""
    rows = ["| option | environment | default | what |", "|---|---|---|---|"]
    for s in declared(*classes, prefix=prefix):
        if s.kind is bool:
            positive = s.flag[2:].removeprefix("no-")
            name = f"`--{positive}` / `--no-{positive}`"
            shown = "on" if s.default else "off"
        else:
            name = f"`{s.flag}`"
            shown = "–" if s.default in (None, (), []) or s.secret else f"`{s.default}`"
        if s.required:
            shown = "required"
        what = s.help.replace("|", "\\|")
        rows.append(f"| {name} | `{s.env}` | {shown} | {what} |")
    return "\n".join(rows)
