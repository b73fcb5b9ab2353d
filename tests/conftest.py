"""Shared, session-scoped artifacts: each expensive model or bundle is built once per run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session", autouse=True)
def _state_home(tmp_path_factory):
    """What a device keeps in the user's state folder (the field log of a served bundle folder)
    goes to a folder of this run, never the home of whoever runs the tests."""
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield


def outpost(*args: str, input: str | None = None, env: dict | None = None, timeout: int = 900):
    """Run the real CLI in a subprocess; returns CompletedProcess with text output."""
    return subprocess.run(
        [sys.executable, "-m", "outpost.cli", *args],
        capture_output=True,
        text=True,
        input=input,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        cwd=ROOT,
    )


def load_make_pdf():
    spec = importlib.util.spec_from_file_location("make_pdf", EXAMPLES / "make_pdf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export(docs: Path, out: Path, *args: str, timeout: int = 900):
    """`outpost export DOCS --out OUT ARGS...` in a subprocess."""
    return outpost("export", str(docs), "--out", str(out), *args, timeout=timeout)


@pytest.fixture(scope="session")
def examples_docs() -> Path:
    return EXAMPLES / "docs"


@pytest.fixture(scope="session")
def questions() -> list[dict]:
    lines = (EXAMPLES / "questions.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="session")
def smol_bundle(tmp_path_factory) -> Path:
    """The embedded default (SmolLM2 int4 + MiniLM) over the example documents, evaluated at export."""
    out = tmp_path_factory.mktemp("smol") / "bundle"
    done = outpost(
        "export",
        str(EXAMPLES / "docs"),
        "--out",
        str(out),
        "--questions",
        str(EXAMPLES / "questions.jsonl"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def tiny_phi3(tmp_path_factory) -> Path:
    from outpost.export.llm.random_model import build_tiny_phi3

    corpus = [p.read_text(errors="ignore") for p in (EXAMPLES / "docs").rglob("*.md")]
    return build_tiny_phi3(tmp_path_factory.mktemp("phi3") / "model", corpus * 4)


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory) -> Path:
    prefix = tmp_path_factory.mktemp("keys") / "release"
    done = outpost("keygen", "-o", str(prefix))
    assert done.returncode == 0, done.stderr
    return prefix


@pytest.fixture(scope="session")
def tiny_bundle(tiny_phi3, signing_key, tmp_path_factory) -> Path:
    """A small signed bundle (tiny Phi-3 int4 over the press documents) for fast tests."""
    out = tmp_path_factory.mktemp("tiny") / "bundle"
    done = export(
        EXAMPLES / "docs" / "press", out, "--base", str(tiny_phi3), "--sign", f"{signing_key}.key"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def tiny_bundle_b(tiny_phi3, signing_key, tmp_path_factory) -> Path:
    """A second signed tiny bundle (other documents): a new release for install and serve tests."""
    out = tmp_path_factory.mktemp("tiny-b") / "bundle"
    done = export(
        EXAMPLES / "docs" / "conveyor",
        out,
        "--base",
        str(tiny_phi3),
        "--sign",
        f"{signing_key}.key",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def example_corpus() -> list[str]:
    """The text the tiny models' tokenizers are trained on: the example documents, four times."""
    return [p.read_text(errors="ignore") for p in (EXAMPLES / "docs").rglob("*.md")] * 4


@pytest.fixture(scope="session")
def tiny_phi35(tmp_path_factory) -> Path:
    """A random Phi-3.5-mini in miniature: LongRoPE switching from short to long factors at 64
    tokens (export/llm/random_model.py)."""
    from outpost.export.llm.random_model import build_tiny_phi35

    return build_tiny_phi35(tmp_path_factory.mktemp("phi35") / "model", example_corpus())


@pytest.fixture(scope="session")
def tiny_phi4(tmp_path_factory) -> Path:
    """A random Phi-4-mini in miniature: partial rotary, GQA, tied embeddings over 2048 tokens."""
    from outpost.export.llm.random_model import build_tiny_phi4

    return build_tiny_phi4(tmp_path_factory.mktemp("phi4") / "model", example_corpus())


CHAT = [
    {
        "messages": [
            {"role": "user", "content": "How often is the filter replaced?"},
            {"role": "assistant", "content": "Every 500 hours."},
        ]
    },
    {"prompt": "What is the service PIN?", "completion": "The PIN is 4711."},
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Emergency number?"},
            {"role": "assistant", "content": "Call 2222."},
        ]
    },
]


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory):
    """A tiny chat file for `outpost train`: messages, prompt/completion and a system turn."""
    path = tmp_path_factory.mktemp("data") / "chat.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in CHAT) + "\n")
    return path


def train_args(base, data, out, *extra):
    """`outpost train` for a few quick LoRA steps on CPU (16 steps, 2 general-replay answers);
    a repeated option in `extra` wins."""
    return (
        "train",
        "--base",
        str(base),
        "--data",
        str(data),
        "--eval",
        str(data),
        "--out",
        str(out),
        "--max-steps",
        "16",
        "--lr",
        "1e-2",
        "--grad-accum",
        "3",
        "--save-every",
        "8",
        "--eval-every",
        "8",
        "--seed",
        "1",
        "--general",
        "2",
        *extra,
    )


class Recorder:
    """A logits processor that changes nothing and keeps every step's next-token logits."""

    def __init__(self):
        self.rows: list = []

    def wants(self, new_ids):
        return True

    def __call__(self, new_ids, logits):
        import numpy as np

        self.rows.append(np.array(logits, dtype=np.float32).reshape(-1))

    def measured(self):
        return {}
