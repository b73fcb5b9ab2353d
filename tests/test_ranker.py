"""The learned line ranker (issue 29): its training data checks, the shipped ONNX model run
without torch, its place in each bundle's manifest and signature, and the quote it picks when
the best-matching line only restates the question."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from outpost.export.bundle import RANKER, RANKER_FILES
from outpost.trainer.ranker.questions import check, load

DOC = """# Pump PX-9

## Pressure

The relief valve opens when the pressure in the loop passes its set point.
The set point of the relief valve is 12 bar, adjustable with the red screw.

## Filters

Replace the intake filter every 500 operating hours.
"""


def _rows(tmp_path: Path, *rows: dict) -> list[dict]:
    (tmp_path / "docs").mkdir(exist_ok=True)
    (tmp_path / "docs" / "px9.md").write_text(DOC)
    path = tmp_path / "q.jsonl"
    base = {"package": "px9", "doc": "docs/px9.md", "answerable": True, "kind": "limit"}
    path.write_text("".join(json.dumps({**base, **r}) + "\n" for r in rows))
    return load([path])


def test_the_question_checks_pass_a_good_row_and_name_each_fault(tmp_path):
    good = {
        "id": "ok",
        "question": "At what pressure does the PX-9 start venting through its safety valve?",
        "answer": "The set point of the relief valve is 12 bar, adjustable with the red screw.",
        "keywords": ["12 bar"],
    }
    rows = _rows(
        tmp_path,
        good,
        {**good, "id": "a", "question": "Q1?", "answer": "The set point is 99 bar."},
        {**good, "id": "b", "question": "Is it 12 bar on the PX-9?"},
        {
            **good,
            "id": "c",
            "question": "When does the relief valve opens when the pressure in the loop pass?",
        },
        {
            "id": "d",
            "question": "Can the PX-9 report over Modbus?",
            "answerable": False,
            "absent_terms": ["Modbus"],
        },
        {
            "id": "e",
            "question": "Which filter does the PX-9 use?",
            "answerable": False,
            "absent_terms": ["filter"],
        },
        {**good, "id": "ok"},
    )
    problems = check(rows, str(tmp_path))
    text = "\n".join(problems)
    assert "(ok)" not in text.split("duplicate")[0]  # the good row passes
    assert "(a): answer does not occur verbatim" in text
    assert "(b): keyword '12 bar' is in the question" in text
    assert "(c): question copies the document" in text
    assert "(d)" not in text  # Modbus is absent: a fine unanswerable row
    assert "(e): absent term 'filter' occurs in the document" in text
    assert "duplicate id ok" in text and "duplicate question" in text


def test_the_written_questions_are_many_and_of_every_kind():
    rows = load(sorted((ROOT / "trainer" / "ranker" / "questions").glob("*.jsonl")))
    answerable = [r for r in rows if r["answerable"]]
    assert len(rows) >= 1000 and len(rows) - len(answerable) >= 100
    kinds = {r["kind"] for r in answerable}
    assert {"option", "file", "setting", "default", "limit", "step", "error", "why"} <= kinds
    assert len({r["package"] for r in rows}) >= 20


def test_the_shipped_ranker_is_small_and_says_how_it_was_made():
    for f in RANKER_FILES:
        assert (RANKER / f).is_file(), f"{f} missing: run make ranker"
    assert sum((RANKER / f).stat().st_size for f in RANKER_FILES) <= 25 * 2**20
    record = json.loads((RANKER / "ranker.json").read_text())
    assert isinstance(record["seed"], int) and record["rebuild"] == "make ranker"
    assert record["data"]["groups"] >= 1000 and record["held_out"]["int8_onnx"]["questions"] > 100


RESTATES = "The relief valve opens when the pressure in the loop passes its set point."
ANSWERS = "The set point of the relief valve is 12 bar, adjustable with the red screw."


def test_the_ranker_runs_without_torch(tmp_path):
    """In a process where torch and transformers cannot be imported, as on a device."""
    for name in ("torch", "transformers", "sentence_transformers"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('{name} is absent')")
    code = (
        "import json, sys; from outpost.runtime.ask.rerank import Reranker, pair_text\n"
        f"r = Reranker({str(RANKER)!r}, threads=1)\n"
        "q = 'At what pressure does the PX-9 relief valve open?'\n"
        f"lines = [pair_text('Pump PX-9 > Pressure', x) for x in ({RESTATES!r}, {ANSWERS!r}, "
        "'Replace the intake filter every 500 operating hours.')]\n"
        "print(json.dumps([float(s) for s in r.score(q, lines)]))\n"
        "print('torch' in sys.modules)"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-800:]
    scores, torch_loaded = done.stdout.strip().splitlines()
    got = json.loads(scores)
    assert len(got) == 3 and all(-50 < x < 50 for x in got)  # one finite logit per line
    assert torch_loaded == "False"


@pytest.mark.slow
def test_each_bundle_carries_a_signed_copy_of_the_ranker(tiny_bundle, signing_key, tmp_path):
    import shutil

    from conftest import outpost

    m = json.loads((tiny_bundle / "bundle.json").read_text())
    assert m["ranker"]["dir"] == "ranker"
    for f in RANKER_FILES:
        entry = m["files"][f"ranker/{f}"]
        assert entry["size"] == (RANKER / f).stat().st_size
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    data = bytearray((copy / "ranker" / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "ranker" / "model.onnx").write_bytes(bytes(data))
    done = outpost("verify", str(copy), "--trust", f"{signing_key}.pub")
    assert done.returncode == 1
    assert "changed  ranker/model.onnx  (sha256 differs from bundle.json)" in done.stdout
    asked = outpost("ask", str(copy), "Why?", "--trust", f"{signing_key}.pub")
    assert asked.returncode == 1 and "ranker/model.onnx" in asked.stderr


@pytest.mark.slow
def test_a_restating_line_gives_way_to_the_line_that_completes_it(smol_bundle):
    """The quote policy: the line that shares the question's words but only restates it is not
    quoted first when the next line holds what is asked."""
    from outpost.runtime.ask.assistant import open_assistant
    from outpost.runtime.ask.quote import quotes
    from outpost.runtime.ask.rank import read
    from outpost.runtime.ask.retrieve import Hit

    a = open_assistant(smol_bundle)
    assert a.reranker is not None
    question = "At what pressure does the PX-9 relief valve open?"
    text = f"{RESTATES}\n{ANSWERS}\nReplace the intake filter every 500 operating hours."
    hits = [Hit(1, 0.6, "px9.md", "Pump PX-9 > Pressure", text)]
    lines = {}
    for name, reranker in (("learned", a.reranker), ("features", None)):
        reading = read(question, hits, a.retriever.embedder, a.retriever.store, reranker=reranker)
        lines[name] = quotes(reading, hits, 1, question)[0]
    assert "12 bar" in lines["learned"].text
    assert lines["learned"].mark is not None and lines["learned"].mark.text == "12 bar"
