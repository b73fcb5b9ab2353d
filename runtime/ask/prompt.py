"""The one prompt layout, shared by the runtime and the trainer.

A prompt is a list of chat messages; the model's own chat template turns it into text.
Passages are numbered [1], [2], ... and the answer cites them by number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from outpost.runtime.errors import InputError

SYSTEM = (
    "You are a technical assistant. Answer the question using only the numbered passages "
    "from the manuals. Be brief and exact: copy names, numbers and commands from the "
    "passages. Cite the passage you used like [1]. If the passages do not contain the "
    "answer, reply exactly: {refusal}"
)
REFUSAL = "The documents do not cover this question."
# How the refusal opens, including the variant small models drift into; the runtime's refusal
# gate measures the probability of these two-token openings (runtime/ask/generate.py).
REFUSAL_OPENINGS = ("The documents", "The document")


# Control characters cut prompts short (NUL ends a C string in the tokenizer) or garble them;
# tabs and line breaks are kept.
_CONTROL = {c: None for c in range(32) if chr(c) not in "\t\n\r"} | {0x7F: None}


def strip_controls(text: str) -> str:
    return text.translate(_CONTROL)


def check_question(question: str) -> str:
    """The question as the model sees it; InputError when nothing is left to ask."""
    question = strip_controls(question).strip()
    if not question:
        raise InputError("the question is empty; pass it as an argument or on stdin")
    return question


@dataclass(frozen=True)
class Passage:
    source: str
    heading: str
    text: str


def format_passage(number: int, passage: Passage) -> str:
    where = passage.source + (f" > {passage.heading}" if passage.heading else "")
    return f"[{number}] ({where})\n{passage.text.strip()}"


def user_message(question: str, passages: Sequence[Passage]) -> str:
    blocks = [format_passage(i, p) for i, p in enumerate(passages, 1)]
    context = "\n\n".join(blocks) if blocks else "(no passages)"
    return f"Passages:\n{context}\n\nQuestion: {question.strip()}"


def build_messages(
    question: str,
    passages: Sequence[Passage],
    history: Sequence[dict] = (),
    language: str = "en",
) -> list[dict]:
    """System message, earlier turns (plain), then the question with its passages. A question
    in another language asks for the answer in it (the refusal stays the English marker the
    runtime's refusal gate watches for; the user reads the decline in their language)."""
    system = SYSTEM.format(refusal=REFUSAL)
    if language != "en":
        from outpost.runtime.language.texts import NAMES

        system += f" Answer in {NAMES.get(language, language)}, the language of the question."
    messages = [{"role": "system", "content": system}]
    messages.extend(history)
    messages.append({"role": "user", "content": user_message(question, passages)})
    return messages


# A question is measured by its first budget x this many characters: no vocabulary averages
# more characters a token, so a longer question whose beginning is already over is refused
# without a tokenizer pass over all of it (a megabyte took 0.4 s; a hundred would take minutes).
CHARS_PER_TOKEN_BOUND = 16


def check_fits(
    question: str,
    count_tokens: Callable[[list[dict]], int],
    budget: int,
    language: str = "en",
) -> None:
    """InputError when the question alone, with the bare prompt, is over `budget` tokens:
    checked before anything is searched, at a cost bounded by the budget, not the question."""
    head = question[: budget * CHARS_PER_TOKEN_BOUND]
    tokens = count_tokens(build_messages(head, [], [], language))
    if tokens <= budget and len(head) < len(question):  # a beginning that fits: measure all
        tokens = count_tokens(build_messages(question, [], [], language))
    if tokens > budget:
        size = f"{tokens} tokens" if len(head) == len(question) else f"{len(question)} characters"
        raise InputError(
            f"the question is {size} with the prompt, over the {budget}-token budget; "
            "shorten it or raise --max-context"
        )


def fit_messages(
    question: str,
    passages: Sequence[Passage],
    history: Sequence[dict],
    count_tokens: Callable[[list[dict]], int],
    budget: int,
    language: str = "en",
) -> tuple[list[dict], int]:
    """Largest prompt within `budget` tokens: drop old turns, then trailing passages.

    The question is never cut. Returns the messages and how many passages were kept.
    Raises InputError when the question alone does not fit.
    """
    bare = build_messages(question, [], [], language)
    if count_tokens(bare) > budget:
        raise InputError(
            f"the question is {count_tokens(bare)} tokens with the prompt, over the "
            f"{budget}-token budget; shorten it or raise --max-context"
        )
    history = list(history)
    kept = list(passages)
    while True:
        messages = build_messages(question, kept, history, language)
        if count_tokens(messages) <= budget:
            return messages, len(kept)
        if history:
            history = history[2:]  # drop the oldest user/assistant pair
        elif len(kept) > 1:
            kept.pop()
        else:
            kept = [_shorten(kept[0], question, count_tokens, budget, language)]
            return build_messages(question, kept, [], language), 1


def _shorten(
    passage: Passage,
    question: str,
    count_tokens: Callable[[list[dict]], int],
    budget: int,
    language: str = "en",
) -> Passage:
    """Cut one passage's text (by words, binary search) until the prompt fits."""
    words = passage.text.split()
    lo, hi = 0, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        trial = Passage(passage.source, passage.heading, " ".join(words[:mid]))
        if count_tokens(build_messages(question, [trial], (), language)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return Passage(passage.source, passage.heading, " ".join(words[:lo]))


def is_refusal(answer: str) -> bool:
    text = " ".join(answer.lower().split())
    markers = ("do not cover", "don't cover", "does not cover", "not covered", "no information")
    return any(m in text for m in markers)
