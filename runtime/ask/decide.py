"""Whether to answer: the declines `ask` makes before anything is written, in one place.

Before the lines are ranked (`before_ranking`), from the search and the question's words alone:
- `threshold`: the best retrieval score of the top k is under the bundle's grounding threshold
  (the question is off topic); the answer is then not grounded at all;
- `name`: the question uses a name no chunk holds (names.py), unless `--min-evidence 0`.

After ranking (`after_ranking`), from the ranked lines:
- `evidence`: the candidates hold too little of the question's weight (terms.py `coverage`),
  unless the learned ranker is sure of a line (RERANK_SURE); or that ranker finds no line likely
  to answer (its best logit under RERANK_DECLINE). `--min-evidence 0` turns it off.

The model's own refusal (`model`) and a written answer the passages do not back (`support`) are
settled after writing, in assistant.py's `_settle`. A new reason: its check here, its text in
every language (runtime/language/texts.py), and the README's `declined_by` list.
"""

from __future__ import annotations

from collections.abc import Callable

from outpost.runtime.ask.answer import Answer
from outpost.runtime.ask.names import unknown_names
from outpost.runtime.ask.question import Question
from outpost.runtime.ask.rank import Reading
from outpost.runtime.language.texts import say
from outpost.runtime.protocols import TermStore

# The learned ranker's logit (runtime/ask/rerank.py) in the decline, chosen on the training
# questions' held-out packages and the dev sets (docs/quality.md, "The learned ranker").
RERANK_DECLINE = -2.0  # its best line under this: no line answers
RERANK_SURE = 0.5  # its best line over this: answered, whatever the word coverage says


def before_ranking(
    answer: Answer, question: Question, store: TermStore, threshold: float, min_evidence: float
) -> str | None:
    """`threshold` or `name`, or None; sets `answer.unknown` (the names no chunk holds) when
    the question is on topic and declining by what is missing is on."""
    if answer.best_score < threshold:
        return "threshold"
    if min_evidence > 0:  # --min-evidence 0 turns declining by what is missing off
        answer.unknown = unknown_names(question, store)
    return "name" if answer.unknown else None


def after_ranking(reading: Reading | None, min_evidence: float) -> str | None:
    """`evidence` when the ranked lines do not answer, or None (and always None without ranked
    lines: the chunks reader)."""
    if reading is None or min_evidence <= 0:
        return None
    best = reading.best_logit
    if best is None:
        lacking = reading.answerability < min_evidence
    else:
        lacking = best < RERANK_DECLINE or (
            reading.answerability < min_evidence and best < RERANK_SURE
        )
    return "evidence" if lacking else None


def decline(answer: Answer, why: str, on_text: Callable[[str], None] | None) -> Answer:
    """The answer as a decline for `why`, in the question's language, naming the unknown names."""
    answer.grounded, answer.declined, answer.declined_by = why != "threshold", True, why
    answer.text = say(answer.language, "declined")
    if answer.unknown:
        names = ", ".join(answer.unknown)
        answer.text += " " + say(answer.language, "never_named").format(names=names)
    if on_text:
        on_text(answer.text)
    return answer
