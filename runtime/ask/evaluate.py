"""`outpost eval`: answer quality of a bundle on a questions file.

Questions file: JSON lines with `id`, `question`, `answerable`, `answer_keywords` and, for
answerable questions, `source_path` (the document path as the bundle names it, or a suffix of it).

- accuracy: answerable questions not declined whose answer holds every keyword (NFKC, case-blind)
- refusal rate: unanswerable questions declined; false refusals: answerable ones declined
- cited: answerable questions whose shown citations include the source document
- recall@k: answerable questions whose source document is among the retrieved passages
- evidence accuracy: answerable questions whose quoted evidence (the spans shown, at most two)
  holds every keyword
- wrong shown: answerable questions not declined whose shown answer (the model's sentences and
  the first quote, or the quote alone) misses a keyword: what a technician reads that is wrong
- answer modes: how many answers were the model's attributable sentences ("generated") or the
  manual's line alone ("quoted"); first shown: time from the question to the first text a
  screen can show (the quote, before generation)
- unsupported rate: shown (not declined) answers holding a fact the passages given do not
  (runtime/ask/support.py); with the support check on it is 0 by construction, with
  `--no-support` it measures what the check prevents

Each row of the report (`rows`) is the answer as `ask --json` gives it, from the same serialiser
(`Answer.to_dict()`), with the question's judgement beside it (`judge`).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from outpost.runtime.ask.answer import Answer
from outpost.runtime.ask.support import check, normalise
from outpost.runtime.errors import InputError
from outpost.runtime.files import read_jsonl

if TYPE_CHECKING:
    from outpost.runtime.ask.assistant import Assistant


def _field_problem(item: dict) -> tuple[str, str] | None:
    """(field, what it must be) for the first field of a question row of the wrong shape."""
    question = item.get("question")
    if not isinstance(question, str) or not question.strip():
        return "question", "a non-empty string"
    if not isinstance(item.get("answerable", True), bool):
        return "answerable", "true or false"
    keywords = item.get("answer_keywords", [])
    if not isinstance(keywords, list) or not all(
        isinstance(k, str) and k.strip() for k in keywords
    ):
        return "answer_keywords", 'a list of non-empty strings, e.g. ["280", "bar"]'
    if isinstance(item.get("id"), bool) or not isinstance(item.get("id", ""), str | int):
        return "id", "a string or a number"
    for field in ("source_path", "answer"):
        if not isinstance(item.get(field, ""), str | None):
            return field, "a string"
    return None


def load_questions(path: str | Path) -> list[dict]:
    """The rows of a questions file, each checked before any question is asked: InputError
    naming file:line and the field of the first row of the wrong shape."""
    p = Path(path)
    items = []
    for number, item in read_jsonl(p, "a JSON-lines questions file"):
        if problem := _field_problem(item):
            field, shape = problem
            given = json.dumps(item.get(field), ensure_ascii=False)
            raise InputError(
                f'{p}:{number}: "{field}" must be {shape}, not {given[:60]}; fix that line'
            )
        item.setdefault("id", f"line-{number}")
        item.setdefault("answerable", True)
        item.setdefault("answer_keywords", [])
        items.append(item)
    return items


def source_matches(source: str, wanted: str | None) -> bool:
    """A document path as the bundle names it against one given by a user (or a suffix of it)."""
    if not wanted:
        return False
    return source == wanted or source.endswith("/" + wanted) or wanted.endswith("/" + source)


def judge(item: dict, answer: Answer) -> dict:
    """One eval row: the answer as `ask --json` gives it (`Answer.to_dict()`, the same keys and
    values), with the question's judgement beside it: `correct`, `cited`, `retrieved`,
    `evidence_ok`, `unsupported` (the facts a shown answer holds that its passages do not),
    `generated` (the model's text before the support check), and the timings under the names
    eval has always used (`ttft_s`, `first_shown_s`, `tokens_per_s`, from `timings`). One key
    differs from `ask --json`: `evidence` is the quoted texts alone, as eval rows have always
    had it; the quotes as `ask --json` gives them are `evidence_records`."""
    whole = answer.to_dict()
    keywords = [normalise(k) for k in item["answer_keywords"]]
    first_quote = answer.evidence[0].text if answer.evidence else ""
    shown_text = normalise(f"{answer.text} {first_quote}" if not answer.declined else answer.text)
    quoted = normalise(" ".join(e.text for e in answer.evidence))
    wanted = item.get("source_path")
    timings = whole["timings"]
    return {
        "id": item["id"],
        "answerable": item["answerable"],
        **whole,
        "correct": item["answerable"]
        and not answer.declined
        and all(k in shown_text for k in keywords),
        "cited": any(source_matches(c.source, wanted) for c in answer.shown_citations()),
        "retrieved": any(source_matches(c.source, wanted) for c in answer.citations),
        "evidence": [e["text"] for e in whole["evidence"]],
        "evidence_records": whole["evidence"],
        "evidence_ok": bool(item["answerable"] and quoted and all(k in quoted for k in keywords)),
        "unsupported": check(answer.text, answer.passages, answer.question).unsupported
        if not answer.declined
        else [],
        "generated": answer.generated,
        "ttft_s": timings["time_to_first_token_s"],
        "first_shown_s": timings["first_shown_s"],
        "tokens_per_s": timings["tokens_per_s"],
    }


def evaluate(
    assistant: Assistant,
    questions: list[dict],
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """The report of `outpost eval`: the measures in the module's docstring over `judge`'s rows
    (`rows`, one per question, in order)."""
    rows = []
    for i, item in enumerate(questions, 1):
        rows.append(judge(item, assistant.ask(item["question"])))
        if progress:
            progress(i, len(questions))
    answerable = [r for r in rows if r["answerable"]]
    negative = [r for r in rows if not r["answerable"]]

    def share(items: list[dict], key: str) -> float | None:
        return round(sum(bool(r[key]) for r in items) / len(items), 4) if items else None

    generated = [r for r in rows if r["tokens_per_s"] > 0]
    return {
        "questions": len(rows),
        "answerable": len(answerable),
        "unanswerable": len(negative),
        "accuracy": share(answerable, "correct"),
        "wrong_shown": round(
            sum(not r["declined"] and not r["correct"] for r in answerable) / len(answerable), 4
        )
        if answerable
        else None,
        "refusal_rate": share(negative, "declined"),
        "false_refusal_rate": share(answerable, "declined"),
        "cited": share(answerable, "cited"),
        f"recall_at_{assistant.top_k}": share(answerable, "retrieved"),
        "evidence_accuracy": share(answerable, "evidence_ok"),
        "unsupported_rate": share([r for r in rows if not r["declined"]], "unsupported"),
        "declined_by": {
            why: sum(r["declined_by"] == why for r in rows)
            for why in ("threshold", "name", "evidence", "model", "support")
        },
        "answer_modes": {
            m: sum(r["answer_mode"] == m for r in rows) for m in ("generated", "quoted")
        },
        "median_first_shown_s": round(statistics.median(r["first_shown_s"] for r in rows), 3),
        "median_ttft_s": round(statistics.median(r["ttft_s"] for r in generated), 3)
        if generated
        else None,
        "median_tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in generated), 1)
        if generated
        else None,
        "rows": rows,
    }
