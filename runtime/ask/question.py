"""The question, analysed once at the start of `ask` and read by every stage after it.

`analyse` gives a `Question`: the text (what the quotes, the attribution and the names read), the
query (what is searched: a follow-up with the previous user turn, so the search sees the topic of
the conversation), the language and its lexicon, the text's terms, answer kinds and normal form
(`asked`), the words lines are ranked for (`ranked`: the text's own, or the query's when the text
names fewer than two things), the keyword search's words, the names it uses, and which chunks
may answer it (the question's language in a bundle of several).

What needs the chunk store (the terms' IDF weights, compounds split into the parts the manuals
hold, whether a name is known) is not here: rank.py's `gauge` and decide.py compute it once.

Every stage also takes a plain string, analysed as an English question without history, so the
trainer, the benchmarks and the tests call them as they read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from outpost.runtime.ask.names import asked_names
from outpost.runtime.ask.retrieve import keyword_terms
from outpost.runtime.ask.support import normalise
from outpost.runtime.ask.terms import terms
from outpost.runtime.language.kinds import wants
from outpost.runtime.language.lexicon import Lexicon, lexicon


@dataclass(frozen=True)
class Words:
    """One text as the ranker, the quotes and the attribution read it, computed once."""

    text: str
    terms: frozenset[str]  # its content words, stemmed (terms.py)
    kinds: frozenset[str]  # what kind of answer it asks for (number, name, place, reason)
    normal: str  # normalised (support.py): what "the question already says" is checked against


def words(text: str, lex: Lexicon) -> Words:
    return Words(text, frozenset(terms(text, lex)), wants(text, lex), normalise(text))


@dataclass(frozen=True)
class Question:
    text: str
    query: str  # what is searched: the previous user turn and the text, for a follow-up
    language: str
    lex: Lexicon
    asked: Words  # of the text
    ranked: Words  # lines are ranked for these: the text's, or the query's when it names little
    keywords: tuple[str, ...]  # the query's words keyword search looks for
    names: tuple[tuple[str, ...], ...]  # the names the text uses (names.py)
    keep: Callable[[int], bool] | None = None  # chunks that may answer (None: all)
    dense_weight: float = 1.0  # 0.0 when the embedder does not read the language


def analyse(
    text: str,
    history: list[dict] | None = None,
    language: str = "en",
    keep: Callable[[int], bool] | None = None,
    dense_weight: float = 1.0,
) -> Question:
    """The question `text` (already checked), asked after `history`, in `language`."""
    lex = lexicon(language)
    # A follow-up ("and who must be told?") names little by itself: it is searched with the
    # previous question, and its lines are ranked for both when it has fewer than two terms.
    earlier = [m["content"] for m in (history or []) if m["role"] == "user"]
    query = f"{earlier[-1]} {text}" if earlier else text
    asked = words(text, lex)
    ranked = asked if len(asked.terms) >= 2 or query == text else words(query, lex)
    return Question(
        text,
        query,
        language,
        lex,
        asked,
        ranked,
        tuple(keyword_terms(query, lex)),
        asked_names(text, lex),
        keep,
        dense_weight,
    )


def as_question(question: Question | str, lex: Lexicon | None = None) -> Question:
    """`question` itself, or a plain string analysed in `lex`'s language (English)."""
    if isinstance(question, Question):
        return question
    return analyse(question, language=lex.language if lex else "en")
