"""The package boundaries: the device package imports nothing from the build side, the build
commands join `outpost` through entry points, and a device install says which extra they need."""

import ast
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from conftest import ROOT, outpost

BUILD_SIDE = ("outpost.export", "outpost.trainer", "export", "trainer")
DEVICE_FILES = sorted(
    [
        *(ROOT / "runtime").rglob("*.py"),
        ROOT / "src" / "outpost" / "__init__.py",
        ROOT / "src" / "outpost" / "cli.py",
    ]
)


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            found |= {a.value for a in node.args if isinstance(a, ast.Constant)}
    return found


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_runtime_imports_nothing_from_the_build_side(path):
    """Not even lazily inside a function: the device package must run without them."""
    bad = {
        m
        for m in imported_modules(path)
        if any(m == b or m.startswith(b + ".") for b in BUILD_SIDE)
    }
    heavy = {
        m
        for m in imported_modules(path)
        if m.split(".")[0] in ("torch", "transformers", "peft", "sentence_transformers")
    }
    assert not bad and not heavy, f"{path.name} imports {sorted(bad | heavy)}"
    named = re.findall(r"\b(?:export|trainer)\.[a-z_]", path.read_text())
    assert not named, f"{path.name} names {named}"  # not named as strings either


def test_build_commands_are_registered_not_named():
    registered = {ep.name: ep.value for ep in metadata.entry_points(group="outpost.commands")}
    assert registered == {
        "export": "outpost.export.cli:export_cmd",
        "keygen": "outpost.export.cli:keygen",
        "kit": "outpost.export.cli:kit",
        "pack": "outpost.export.cli:pack",
        "train": "outpost.trainer.cli:train_cmd",
    }
    done = outpost("--help")
    listed = {line.split()[0] for line in done.stdout.split("Commands:")[1].strip().splitlines()}
    assert listed == {
        "ask",
        "chat",
        "eval",
        "info",
        "verify",
        "install",
        "rollback",
        "serve",
        "feedback",
        *registered,
    }
    # `outpost feedback report` is the build side's too: the device has the rest of the group.
    extra = {ep.name: ep.value for ep in metadata.entry_points(group="outpost.feedback_commands")}
    assert extra == {"report": "outpost.export.cli:feedback_report"}
    done = outpost("feedback", "--help")
    listed = {line.split()[0] for line in done.stdout.split("Commands:")[1].strip().splitlines()}
    assert listed == {"export", "merge", "info", "rate", "wipe", *extra}


def test_help_imports_nothing_heavy():
    code = (
        "import sys; from outpost.cli import cli; "
        "cli(['--help'], standalone_mode=False); "
        "heavy = [m for m in ('torch', 'transformers', 'onnxruntime', 'onnxruntime_genai', 'numpy', 'ray', "
        "'outpost.export.bundle', 'outpost.trainer.recipe') if m in sys.modules]; print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("[]")


@pytest.fixture
def device_env(tmp_path):
    """A process where the build-side libraries cannot be imported, as on a device install."""
    for name in ("torch", "transformers", "peft", "sentence_transformers", "optimum", "accelerate"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            f"raise ImportError('{name} is not on this device')"
        )
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize(
    "args, extra",
    [
        (["export", "docs", "--out", "b"], "export"),
        (["train", "--data", "d.jsonl", "--out", "run"], "train"),
    ],
)
def test_build_commands_on_a_device_install_name_the_extra(device_env, args, extra, tmp_path):
    done = outpost(*args, env=device_env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"Error: `outpost {args[0]}` needs the [{extra}] extra (torch is not installed): "
        f"pip install torch==2.13.0 && pip install 'outpost-llm[{extra}]'"
    ]
    assert outpost(args[0], "--help", env=device_env).returncode == 0


def test_usearch_loads_without_breaking_onnxruntime():
    """usearch imported first crashes the later onnxruntime import; the runtime's loader orders them."""
    code = "from outpost.runtime.ask.retrieve import usearch_index; usearch_index(); import onnxruntime; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-500:]


@pytest.mark.slow
def test_the_wheel_installs_one_import_package(tmp_path):
    """Installed from a wheel, Outpost is `outpost` and nothing else: no generic top-level
    `runtime`, `export` or `trainer` for another distribution to overwrite."""
    import zipfile

    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("outpost_llm-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        tops = {name.split("/")[0] for name in z.namelist()}
        names = set(z.namelist())
    assert {t for t in tops if not t.endswith(".dist-info")} == {"outpost"}
    assert {
        "outpost/cli.py",
        "outpost/runtime/ask/assistant.py",
        "outpost/runtime/serve/kiosk/index.html",
        "outpost/export/bundle.py",
        "outpost/trainer/recipe.py",
    } <= names
    site = tmp_path / "site"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # A fresh interpreter that sees only the installed wheel (and the venv's dependencies, not
    # this checkout or its editable install): outpost imports, the old names do not.
    code = (
        "import importlib.util, sys; sys.path[:] = [p for p in sys.path if 'site-packages' in p "
        "or 'lib/python' in p]; sys.path.insert(0, sys.argv[1]); "
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
        "import outpost.cli, outpost.runtime.bundle.manifest; "
        "print(outpost.runtime.bundle.manifest.__file__.startswith(sys.argv[1]), "
        "[n for n in ('runtime', 'export', 'trainer') if importlib.util.find_spec(n)])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(site)], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "[]"]


def test_readme_option_tables_are_the_declared_settings():
    from outpost.export.readme import README, render

    text = README.read_text(encoding="utf-8")
    for name in ("ask", "eval", "serve", "verify", "install", "rollback", "export", "kit", "train"):
        assert f"<!-- options: {name} -->" in text, name
    assert render(text) == text, (
        "README's option tables drifted: run python -m outpost.export.readme"
    )


@pytest.mark.parametrize(
    "name",
    ["ask", "chat", "eval", "serve", "verify", "install", "rollback", "export", "kit", "train"],
)
def test_every_option_has_an_environment_variable(name):
    import click

    from outpost.cli import cli

    command = cli.get_command(click.Context(cli), name)
    # the output's form; train's recipe file and --resume (what to do with the run folder)
    output_only = {"as_json", "timings", "help", "recipe", "resume"}
    options = [
        p for p in command.params if isinstance(p, click.Option) and p.name not in output_only
    ]
    assert options
    missing = [p.name for p in options if not p.envvar or not p.show_envvar]
    assert not missing, f"{name}: no environment variable for {missing}"
    shown = outpost(name, "--help").stdout
    for p in options:
        assert p.envvar in shown, f"{name} --help does not show {p.envvar}"


def test_settings_come_from_the_environment_and_flags_win(tmp_path):
    done = outpost("ask", str(tmp_path), "why?", env={"OUTPOST_READER": "pages"})
    assert done.returncode == 2 and "'pages' is not one of" in done.stderr
    done = outpost(
        "ask", str(tmp_path), "why?", "--reader", "chunks", env={"OUTPOST_READER": "pages"}
    )
    assert done.returncode == 1 and "pages" not in done.stderr  # the flag won; no bundle there
    done = outpost(
        "export",
        str(tmp_path),
        env={"OUTPOST_EXPORT_PRECISION": "int3", "OUTPOST_EXPORT_OUT": str(tmp_path / "b")},
    )
    assert done.returncode == 2 and "int3" in done.stderr


def test_configs_are_built_by_keyword_only():
    from outpost.export.config import ExportConfig, KitConfig
    from outpost.runtime.config import (
        AskConfig,
        EvalConfig,
        InstallConfig,
        RollbackConfig,
        ServeConfig,
        VerifyConfig,
    )

    for cls, value in (
        (AskConfig, 4),
        (ServeConfig, "bundle"),
        (EvalConfig, "q.jsonl"),
        (VerifyConfig, ["k.pub"]),
        (InstallConfig, "bundles"),
        (RollbackConfig, "bundles"),
        (KitConfig, "kit"),
        (ExportConfig, ["d"]),
    ):
        with pytest.raises(TypeError):
            cls(value)


# The conftest fixtures that build a model or a bundle: a test that needs one is marked slow.
BUILDERS = ("tiny_phi3", "tiny_bundle", "tiny_bundle_b", "smol_bundle")


def test_make_check_runs_the_tests_not_marked_slow_and_none_builds_a_bundle(request):
    """`make check` (CONTRIBUTING.md) selects every test not marked slow, and none of those
    needs a fixture that builds a model or a bundle, directly or through another fixture.
    It looks at the tests of its own run: all of them under `make test` (CI), the fast set
    under `make check`."""
    import conftest

    recipe = re.search(r"^check:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert recipe, "the Makefile has no check target"
    pytest_lines = [line for line in recipe.group(1).splitlines() if "pytest" in line]
    assert len(pytest_lines) == 1 and '-m "not slow"' in pytest_lines[0], recipe.group(1)
    assert all(callable(getattr(conftest, name, None)) for name in BUILDERS), BUILDERS
    unmarked = [
        f"{item.nodeid} ({', '.join(sorted(set(BUILDERS) & set(item.fixturenames)))})"
        for item in request.session.items
        if set(BUILDERS) & set(getattr(item, "fixturenames", ()))
        and not item.get_closest_marker("slow")
    ]
    assert not unmarked, "these build a model or a bundle; mark them @pytest.mark.slow:\n" + (
        "\n".join(unmarked)
    )


def test_the_type_check_runs_in_lint_check_and_ci():
    """`make types` (mypy) is a prerequisite of `make lint`, which `make check` and `make test`
    (CI) run, and mypy is pinned in the dev extra that `make install` installs."""
    import tomllib

    makefile = (ROOT / "Makefile").read_text()
    needs = {m[1]: m[2].split() for m in re.finditer(r"^([a-z-]+):(.*)$", makefile, re.M)}
    assert "types" in needs["lint"], needs["lint"]
    assert "lint" in needs["check"] and "lint" in needs["test"], (needs["check"], needs["test"])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dev = project["optional-dependencies"]["dev"]
    assert [d for d in dev if re.fullmatch(r"mypy==[0-9.]+", d)], dev
