"""A text's terms and their weight: content words, normalised and stemmed in the question's
language (`terms`); a question's terms with compounds the manuals do not contain whole taken as
their parts (`question_terms`); each term weighed by its inverse document frequency in the
chunk store (`idf_weights`), so a rare term (a command, a code, a product name) counts for more
than a common one; and the share of that weight a text covers (`coverage`).

`coverage` over the candidate chunks is also the answerability signal: a question whose weighty
terms the retrieved chunks do not contain is one the manuals do not answer ("flash the firmware
over Bluetooth" in a manual that never says Bluetooth), whatever the topic similarity.
"""

from __future__ import annotations

import math
import re
from collections.abc import Set as AbstractSet

from outpost.runtime.ask.support import normalise
from outpost.runtime.language.compounds import split_compound
from outpost.runtime.language.lexicon import Lexicon, lexicon
from outpost.runtime.protocols import TermStore

ENGLISH = lexicon("en")
_TERM = re.compile(r"[\w][\w\-]*[\w]|\w")


def _content_words(text: str, lex: Lexicon) -> list[str]:
    """The text's words, normalised: stopwords, question words and one-letter words left out."""
    return [
        t
        for t in _TERM.findall(normalise(text))
        if t not in lex.stopwords and t not in lex.question_words and len(t) >= 2
    ]


def terms(text: str, lex: Lexicon | None = None) -> set[str]:
    """The text's content words, stemmed, in the lexicon's language (English by default)."""
    lex = lex or ENGLISH
    return {lex.stem(t) for t in _content_words(text, lex)}


def idf_weights(question_terms: set[str], store: TermStore) -> dict[str, float]:
    """Inverse document frequency of each term (as a prefix: every word form) in the chunk store."""
    total = max(store.count(), 1)
    return {t: math.log((total + 1) / (store.document_frequency(t) + 0.5)) for t in question_terms}


def question_terms(question: str, store: TermStore, lex: Lexicon | None = None) -> set[str]:
    """The question's terms, a compound the manuals do not contain whole taken as its parts
    ("gebruikersgegevens" is found as "gebruikers" and "gegevens", the way the manual may
    write it)."""
    lex = lex or ENGLISH
    found: set[str] = set()
    for t in _content_words(question, lex):
        parts = split_compound(t, store.document_frequency, lex.language)
        found.update(lex.stem(p) for p in parts or [t])
    return found


def coverage(weights: dict[str, float], text: str, lex: Lexicon | None = None) -> float:
    """Share of the question's weight whose terms occur in the text (word forms, case-blind;
    a stem inside a longer word counts, so a compound's part is found)."""
    return covered(weights, terms(text, lex), (normalise(text),))


def covered(weights: dict[str, float], have: set[str], texts: tuple[str, ...]) -> float:
    """`coverage` from a text's terms and its normalised pieces (computed once by the caller)."""
    if not weights:
        return 0.0
    got = sum(
        w for t, w in weights.items() if t in have or (len(t) > 3 and any(t in x for x in texts))
    )
    return got / sum(weights.values())


# A number after a reference word is a page, figure or section, not a quantity ("p. 1").
REFERENCE = re.compile(
    r"\b(?:p|pp|s|page|pages|fig|figure|table|section|chapter|step|side|kapittel|avsnitt|figur|"
    r"tabell|pagina|blz|hoofdstuk|seite|abb|kapitel|abschnitt|chapitre|página|capítulo)\.?\s*$",
    re.I,
)
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,:]\d+)*")


def was_asked(term: str, asked: AbstractSet[str]) -> bool:
    """The term, or a form of it (charging ~ charge: one a prefix of the other), was asked."""
    return term in asked or any(
        min(len(term), len(a)) >= 4 and (a.startswith(term) or term.startswith(a)) for a in asked
    )
