"""Documents -> bundle -> cited answers, for real, on the embedded default (SmolLM2 + MiniLM).

Thresholds are set below what was measured on the example questions (docs/quality.md):
retrieval recall@4 1.00, accuracy see QUALITY_FLOOR, every off-topic question refused.
"""

import json
import os
import sqlite3
import sys

import pytest

from conftest import EXAMPLES, outpost
from outpost.runtime.bundle.open import open_bundle

pytestmark = pytest.mark.slow

RECALL_FLOOR = 0.9
QUALITY_FLOOR = 0.25


def test_manifest_records_files_settings_and_checks(smol_bundle):
    open_bundle(smol_bundle)  # typed: every field present and of its type
    m = json.loads((smol_bundle / "bundle.json").read_text())
    assert {
        "model/model.onnx",
        "model/genai_config.json",
        "embedder/model.onnx",
        "index.usearch",
        "chunks.sqlite",
    } <= set(m["files"])
    assert m["model"]["quantization"]["precision"] in ("int4", "int8", "fp32")
    assert len(m["model"]["base_sha256"]) == 64 and len(m["model"]["chat_template_sha256"]) == 64
    conversion = m["checks"]["conversion"]
    assert conversion["prompts"] == 8 and len(conversion["answers"]) == 3
    assert conversion["chat_template_match"] is True and conversion["passed"] is True
    assert conversion["bound"]["min_top1"] <= conversion["top1_agreement"] <= 1
    assert m["checks"]["retrieval"]["hybrid_hit_at_4"] >= 0.9
    assert m["checks"]["retrieval"]["off_topic_refused"] >= 0.9
    assert m["embedder"]["checks"]["onnx_vs_torch_min_cosine"] >= 0.999
    index = m["index"]
    assert index["recall_at_10"][index["dtype"]] >= index["min_recall"]
    assert len(m["sources"]["documents"]) == 17 and m["sources"]["skipped"] == []
    with sqlite3.connect(smol_bundle / "chunks.sqlite") as db:
        sources = {r[0] for r in db.execute("SELECT DISTINCT source FROM chunks")}
    assert "forklift/charging-station.pdf" in sources and "air/compressor-ac75.html" in sources


def test_export_leaves_no_temporary_folders(smol_bundle):
    assert [p.name for p in smol_bundle.parent.iterdir()] == ["bundle"]


def test_quality_on_the_example_questions(smol_bundle):
    report = json.loads((smol_bundle / "bundle.json").read_text())["checks"]["eval"]
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))
    assert report["questions"] == 27 and report["answerable"] == 22
    assert report["recall_at_4"] >= RECALL_FLOOR
    assert report["accuracy"] >= QUALITY_FLOOR
    assert report["cited"] >= RECALL_FLOOR
    off_topic = [r for r in report["rows"] if r["id"] in ("ex-neg-04", "ex-neg-05")]
    assert off_topic and all(r["refused"] for r in off_topic)


def test_eval_command_reports_json(smol_bundle, tmp_path):
    subset = tmp_path / "q.jsonl"
    subset.write_text(
        "".join(line + "\n" for line in (EXAMPLES / "questions.jsonl").read_text().splitlines()[:3])
    )
    done = outpost("eval", str(smol_bundle), "--questions", str(subset), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["questions"] == 3 and len(report["rows"]) == 3
    assert report["recall_at_4"] == 1.0 and report["median_tokens_per_s"] > 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok?"}\n{"answerable": true}\n')
    done = outpost("eval", str(smol_bundle), "--questions", str(bad))
    assert done.returncode == 1 and f'{bad}:2: "question" must be a non-empty string' in done.stderr


def test_ask_json_has_answer_citations_scores_and_timings(smol_bundle):
    done = outpost(
        "ask", str(smol_bundle), "What is the factory service PIN of the KT-9 kiosk?", "--json"
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["answer"] and not out["refused"] and out["grounded"]
    assert out["best_score"] >= out["threshold"]
    assert out["citations"][0]["source"] == "kiosk/kt9-setup.md"
    assert all((EXAMPLES / "docs" / c["source"]).is_file() for c in out["citations"])
    t = out["timings"]
    assert t["new_tokens"] > 0 and t["time_to_first_token_s"] > 0 and t["tokens_per_s"] > 0


def test_ask_streams_text_then_sources_and_reads_stdin(smol_bundle):
    done = outpost(
        "ask",
        str(smol_bundle),
        "--timings",
        input="How long does a full forklift battery charge take?",
    )
    assert done.returncode == 0, done.stderr
    answer, _, sources = done.stdout.partition("\nSources:\n")
    assert answer.strip()
    assert "forklift/charging-station.pdf" in sources
    assert "first token" in done.stderr and "tokens/s" in done.stderr


def test_off_topic_question_is_declined_without_generating(smol_bundle):
    done = outpost("ask", str(smol_bundle), "Who is the best tennis player of all time?", "--json")
    out = json.loads(done.stdout)
    assert out["refused"] and not out["grounded"] and out["timings"]["new_tokens"] == 0
    assert out["citations"] == []


def test_chat_keeps_going_over_several_turns(smol_bundle):
    done = outpost(
        "chat",
        str(smol_bundle),
        input="What is the site emergency number?\nAnd who must be informed next?\n",
    )
    assert done.returncode == 0, done.stderr
    # Each turn shows its quote or sources; the follow-up names no topic of its own and
    # still reads the incident-reporting manual (it is searched with the previous question).
    assert done.stdout.count("From the manual (") + done.stdout.count("Sources:") >= 2
    assert done.stdout.count("safety/incident-reporting.md") >= 2


def test_ask_works_where_torch_cannot_be_imported(smol_bundle, tmp_path):
    for name in ("torch", "transformers", "peft", "sentence_transformers", "optimum"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            f"raise ImportError('{name} is not on this device')"
        )
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    blocked = outpost("info", "--help", env=env)
    assert blocked.returncode == 0
    import subprocess

    probe = subprocess.run(
        [sys.executable, "-c", "import torch"], env={**os.environ, **env}, capture_output=True
    )
    assert probe.returncode != 0  # the block really works
    done = outpost(
        "ask",
        str(smol_bundle),
        "What is the maximum system pressure of the PX-200?",
        "--json",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["timings"]["new_tokens"] > 0
