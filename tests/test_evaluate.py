"""`outpost eval`: its rows are the answer as `ask --json` gives it (one serialiser), with the
question's judgement beside it; the keys tools read stay."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, outpost
from outpost.runtime.ask.answer import Answer, Citation, Evidence, SupportReport
from outpost.runtime.ask.evaluate import judge
from outpost.runtime.ask.generate import Timings

ROOT = Path(__file__).resolve().parents[1]

# What eval rows have carried, read by tools and docs: none may go or change its meaning.
ROW_KEYS = {
    "id",
    "answerable",
    "declined",
    "refused",
    "correct",
    "cited",
    "retrieved",
    "answer",
    "declined_by",
    "evidence",
    "evidence_ok",
    "evidence_score",
    "unsupported",
    "generated",
    "refusal_p",
    "ttft_s",
    "first_shown_s",
    "answer_mode",
    "tokens_per_s",
}
SUMMARY_KEYS = {
    "questions",
    "answerable",
    "unanswerable",
    "accuracy",
    "wrong_shown",
    "refusal_rate",
    "false_refusal_rate",
    "cited",
    "recall_at_4",
    "evidence_accuracy",
    "unsupported_rate",
    "declined_by",
    "answer_modes",
    "median_first_shown_s",
    "median_ttft_s",
    "median_tokens_per_s",
    "rows",
}
# Measured per run, so two runs differ; everything else `ask --json` gives must be equal.
TIMED = {"timings"}


def shared_fields_agree(row: dict, asked: dict) -> None:
    """The row holds every key of `ask --json` with its value (timings apart); `evidence` is the
    one key eval keeps in its own shape (the texts), the records beside it."""
    assert set(asked) <= set(row)
    for key in set(asked) - TIMED - {"evidence"}:
        assert row[key] == asked[key], key
    assert row["evidence_records"] == asked["evidence"]
    assert row["evidence"] == [e["text"] for e in asked["evidence"]]
    t = row["timings"]
    assert row["ttft_s"] == t["time_to_first_token_s"]
    assert row["first_shown_s"] == t["first_shown_s"]
    assert row["tokens_per_s"] == t["tokens_per_s"]


def test_an_eval_row_is_the_serialised_answer_and_its_judgement():
    text = "The maximum system pressure is 280 bar."
    answer = Answer(
        question="What is the maximum system pressure of the PX-200?",
        text="The limit is 280 bar [1].",
        best_score=0.612345,
        threshold=0.3,
        citations=[Citation(1, "press/px200-overview.md", "Ratings", 0.6123, 7, True)],
        timings=Timings(prompt_tokens=300, new_tokens=9, first_token_s=0.81234567, total_s=1.5),
        retrieval_s=0.0512345,
        refusal_p=0.0123456789,
        evidence=[Evidence(7, 0, len(text), text, "press/px200-overview.md", "Ratings", 1.25)],
        evidence_score=0.876543219,
        support=SupportReport(["280 bar"], [], "shown"),
        generated="The limit is 280 bar [1].",
        passages=[text],
        answer_mode="generated",
        first_shown_s=0.0612345,
    )
    item = {
        "id": "ex-04",
        "question": answer.question,
        "answerable": True,
        "answer_keywords": ["280"],
        "source_path": "press/px200-overview.md",
    }
    row = judge(item, answer)
    assert ROW_KEYS <= set(row)
    shared_fields_agree(row, json.loads(json.dumps(answer.to_dict())))
    assert row["timings"] == answer.to_dict()["timings"]
    assert row["id"] == "ex-04" and row["answerable"] and row["correct"]
    assert row["cited"] and row["retrieved"] and row["evidence_ok"]
    assert row["unsupported"] == [] and row["generated"] == answer.generated
    assert row["evidence"] == [text] and row["refused"] is row["declined"] is False
    assert row["evidence_score"] == 0.8765 and row["refusal_p"] == 0.0123  # as ask --json rounds

    declined = Answer(question="What is the torque of the die clamp bolts?", declined=True)
    declined.declined_by, declined.text = "evidence", "The manuals do not say."
    row = judge({**item, "answerable": False, "answer_keywords": []}, declined)
    assert not row["correct"] and row["declined"] and row["refused"]
    assert row["declined_by"] == "evidence" and row["evidence"] == [] and row["unsupported"] == []


@pytest.mark.slow
def test_eval_json_rows_hold_what_ask_json_gives(tiny_bundle, tmp_path):
    wanted = ("ex-01", "ex-04", "ex-neg-01")  # the press documents: two answerable, one not
    lines = [
        line
        for line in (EXAMPLES / "questions.jsonl").read_text().splitlines()
        if json.loads(line)["id"] in wanted
    ]
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(line + "\n" for line in lines))
    done = outpost("eval", str(tiny_bundle), "--questions", str(questions), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert set(report) == SUMMARY_KEYS
    assert [r["id"] for r in report["rows"]] == list(wanted)
    for row, line in zip(report["rows"], lines):
        assert ROW_KEYS <= set(row)
        done = outpost("ask", str(tiny_bundle), json.loads(line)["question"], "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        shared_fields_agree(row, json.loads(done.stdout))


def test_eval_diff_sees_an_answer_change_and_not_a_timing_change(tmp_path):
    row = {"id": "q1", "answer": "280 bar", "timings": {"total_s": 1.0}, "first_shown_s": 0.3}
    report = {"rows": [row], "right": 1.0, "median_first_shown_s": 0.3}
    slower = {**report, "rows": [{**row, "timings": {"total_s": 2.0}, "first_shown_s": 0.5}]}
    changed = {**report, "rows": [{**row, "answer": "250 bar"}]}
    paths = {}
    for name, value in (("a", report), ("slower", slower), ("changed", changed)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(value))
    script = ROOT / "benchmarks" / "eval_diff.py"

    def diff(other):
        return subprocess.run(
            [sys.executable, str(script), str(paths["a"]), str(paths[other])],
            capture_output=True,
            text=True,
        )

    same = diff("slower")
    assert same.returncode == 0 and "0 differences" in same.stdout
    found = diff("changed")
    assert found.returncode == 1 and "q1 answer" in found.stdout
