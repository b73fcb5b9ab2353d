"""Settings declared once.

A command's settings are the fields of its config dataclass, each made with `setting()`: its
default, help, choices, range, and whether it is a path or repeatable. From those fields come
the click options (`options()`, each with its `OUTPOST_*` environment variable shown in
`--help`), the config (`build()`, by keyword only) and the README's option tables
(`table()`, checked against the README by a test). Nothing here imports click until a command
is built.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, field, fields


def setting(
    default,
    help: str,
    *,
    flag: str | None = None,
    short: str | None = None,
    choices: tuple[str, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    kind: type | None = None,
    path: bool = False,
    multiple: bool = False,
    env: str | None = None,
    secret: bool = False,
    required: bool = False,
):
    """A config field with what its option needs. `flag` overrides the name made from the field
    (`max_new_tokens` -> `--max-new-tokens`); `kind` is the value's type where the default is
    None; `low`/`high` bound it (inclusive); `env` overrides the prefix + field name
    (`OUTPOST_TOP_K`); `secret` keeps the default out of help and tables; `required` options
    must be given (on the command line or in the environment)."""
    meta = {
        "help": help,
        "flag": flag,
        "short": short,
        "choices": choices,
        "low": low,
        "high": high,
        "kind": kind,
        "path": path,
        "multiple": multiple,
        "env": env,
        "secret": secret,
        "required": required,
    }
    if isinstance(default, list | tuple):
        return field(
            default_factory=lambda: type(default)(default), metadata={**meta, "setting": True}
        )
    return field(default=default, metadata={**meta, "setting": True})


def declared(*classes) -> list[Field]:
    """The settings of the given config classes, in declaration order."""
    return [f for cls in classes for f in fields(cls) if f.metadata.get("setting")]


def flag_of(f: Field) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def env_of(f: Field, prefix: str = "OUTPOST_") -> str:
    return f.metadata["env"] or prefix + f.name.upper()


def default_of(f: Field):
    return f.default if f.default is not MISSING else f.default_factory()


def _kind(f: Field) -> type:
    if f.metadata["kind"]:
        return f.metadata["kind"]
    default = default_of(f)
    if isinstance(default, bool):
        return bool
    if default is None or isinstance(default, list | tuple):
        return str
    return type(default)


def options(*classes, prefix: str = "OUTPOST_"):
    """A decorator: one click option per setting of `classes`, passed to the command as a
    keyword named like the field; its environment variable is `prefix` + the field's name."""
    import click

    def decorate(command):
        for f in reversed(declared(*classes)):
            meta, default, kind = f.metadata, default_of(f), _kind(f)
            names = [flag_of(f)] + ([meta["short"]] if meta["short"] else [])
            kwargs = {"help": meta["help"], "envvar": env_of(f, prefix), "show_envvar": True}
            if kind is bool:
                positive = flag_of(f)[2:].removeprefix("no-")
                names = [f"--{positive}/--no-{positive}"]
                kwargs.update(default=default, show_default=True)
            else:
                if meta["choices"]:
                    kwargs["type"] = click.Choice(meta["choices"])
                elif meta["path"]:
                    kwargs["type"] = click.Path()
                elif kind is int:
                    bounded = meta["low"] is not None or meta["high"] is not None
                    kwargs["type"] = click.IntRange(meta["low"], meta["high"]) if bounded else int
                elif kind is float:
                    kwargs["type"] = finite_float(meta["low"], meta["high"])
                if meta["multiple"]:
                    kwargs.update(multiple=True, default=tuple(default))
                elif meta["required"]:
                    kwargs["required"] = True
                else:
                    kwargs["default"] = default
                kwargs["show_default"] = default not in (None, (), []) and not meta["secret"]
            command = click.option(*names, f.name, **kwargs)(command)
        return command

    return decorate


def finite_float(low: float | None = None, high: float | None = None):
    """The click type of a float setting: a finite number (click's own float types take "nan",
    "inf" and "-inf", and NaN passes every range check), within [low, high] when given."""
    import math

    import click

    bounded = low is not None or high is not None
    base = click.FloatRange if bounded else click.types.FloatParamType

    class FiniteFloat(base):
        def convert(self, value, param, ctx):
            number = click.types.FloatParamType.convert(self, value, param, ctx)
            if not math.isfinite(number):
                self.fail(f"{value!r} is not a finite number; give a plain number", param, ctx)
            return super().convert(number, param, ctx)  # and its range

    return FiniteFloat(low, high) if bounded else FiniteFloat()


def build(cls, values: dict, **extra):
    """`cls` from the options a command received (only its own settings), plus `extra`; by
    keyword only."""
    own = {f.name for f in declared(cls)}
    picked = {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items() if k in own}
    return cls(**picked, **extra)


def table(*classes, prefix: str = "OUTPOST_") -> str:
    """The option table the README shows for a command with these settings."""
    rows = ["| option | environment | default | what |", "|---|---|---|---|"]
    for f in declared(*classes):
        default, kind = default_of(f), _kind(f)
        if kind is bool:
            positive = flag_of(f)[2:].removeprefix("no-")
            name = f"`--{positive}` / `--no-{positive}`"
            shown = "on" if default else "off"
        else:
            name = f"`{flag_of(f)}`"
            shown = "–" if default in (None, (), []) or f.metadata["secret"] else f"`{default}`"
        what = f.metadata["help"].replace("|", "\\|")
        if f.metadata["required"]:
            shown = "required"
        rows.append(f"| {name} | `{env_of(f, prefix)}` | {shown} | {what} |")
    return "\n".join(rows)
