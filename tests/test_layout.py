"""The package boundaries: the device package imports nothing from the build side, the build
commands join `outpost` through entry points, and a device install says which extra they need."""

import ast
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from conftest import ROOT, outpost

BUILD_SIDE = ("export", "trainer")


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


@pytest.mark.parametrize("path", sorted((ROOT / "runtime").glob("*.py")), ids=lambda p: p.name)
def test_runtime_imports_nothing_from_the_build_side(path):
    """Not even lazily inside a function: the device package must run without them."""
    bad = {m for m in imported_modules(path) if m.split(".")[0] in BUILD_SIDE}
    heavy = {m for m in imported_modules(path)
             if m.split(".")[0] in ("torch", "transformers", "peft", "sentence_transformers")}  # fmt: skip
    assert not bad and not heavy, f"{path.name} imports {sorted(bad | heavy)}"
    assert "export." not in path.read_text().replace("`outpost export", "")  # not named as strings


def test_build_commands_are_registered_not_named():
    registered = {ep.name: ep.value for ep in metadata.entry_points(group="outpost.commands")}
    assert registered == {"export": "export.cli:export_cmd", "keygen": "export.cli:keygen", "kit": "export.cli:kit",
                          "pack": "export.cli:pack", "train": "trainer.cli:train_cmd"}  # fmt: skip
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
        *registered,
    }


def test_help_imports_nothing_heavy():
    code = ("import sys; from runtime.cli import cli; "
            "cli(['--help'], standalone_mode=False); "
            "heavy = [m for m in ('torch', 'transformers', 'onnxruntime', 'onnxruntime_genai', 'numpy', "
            "'export.bundle', 'trainer.recipe') if m in sys.modules]; print(heavy)")  # fmt: skip
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
    [(["export", "docs", "--out", "b"], "export"),
     (["train", "--data", "d.jsonl", "--out", "run"], "train")],
)  # fmt: skip
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
    code = "from runtime.retrieve import usearch_index; usearch_index(); import onnxruntime; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-500:]
