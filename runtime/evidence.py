"""The reader's context and the answer's evidence, at the level of sentences.

Retrieved chunks are split into units (sentences of prose, lines of tables, lists and code),
each with its character offsets in the stored chunk text. Units are ranked for the question by
the bundle's embedder (cosine) plus how much of the question's weight they cover: each
question term weighs its inverse document frequency in the chunk store, so a rare term (a
command, a code, a product name) counts for more than a common one. The model reads the best
units with their neighbours instead of whole chunks: a shorter prompt that a small model reads
better and prefills faster.

`coverage` is also the answerability signal: a question whose weighty terms the retrieved
chunks do not contain is one the manuals do not answer ("flash the firmware over Bluetooth" in a
manual that never says Bluetooth), whatever the topic similarity.

After the answer is written, the evidence is the unit that best holds the answer's facts and
words (and the question's), quoted exactly with its offsets.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from runtime.manifest import DEFAULT_RADIUS, DEFAULT_WINDOWS
from runtime.retrieve import STOPWORDS, Hit
from runtime.support import facts, normalise

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_TERM = re.compile(r"[\w][\w\-]*[\w]|\w")


@dataclass(frozen=True)
class Unit:
    hit: int  # index of the chunk in the retrieved hits
    start: int  # offsets in the chunk's stored text
    end: int
    text: str


@dataclass
class Window:
    hit: int
    start: int  # offsets in the chunk's stored text
    end: int


def split_units(text: str, hit: int = 0) -> list[Unit]:
    units = []
    for line in re.finditer(r"[^\n]+", text):
        pos = line.start()
        breaks = [(line.start() + m.start(), line.start() + m.end())
                  for m in _SENTENCE_END.finditer(line.group())]  # fmt: skip
        for cut, nxt in [*breaks, (line.end(), line.end())]:
            piece = text[pos:cut]
            lead = len(piece) - len(piece.lstrip())
            piece = piece.strip()
            if len(piece) > 1:
                units.append(Unit(hit, pos + lead, pos + lead + len(piece), piece))
            pos = nxt
    return units


# Words that say what kind of answer is wanted, not what it is about.
QUESTION_WORDS = frozenset(
    "often much many long mean means meaning explain tell describe happen happens need needs "
    "must should would could way ways kind type use used using get set make there".split()
)
_SUFFIXES = ("ations", "ation", "ings", "ing", "ers", "ies", "ied", "ed", "es", "er", "ly", "s")


def stem(term: str) -> str:
    """A crude stem for matching word forms (replaced ~ replace ~ replacement): a prefix."""
    if not term.isalpha():
        return term
    for suffix in _SUFFIXES:
        if term.endswith(suffix) and len(term) - len(suffix) >= 4:
            return term[: -len(suffix)]
    return term


def terms(text: str) -> set[str]:
    found = set()
    for t in _TERM.findall(normalise(text)):
        if t in STOPWORDS or t in QUESTION_WORDS or len(t) < 2:
            continue
        found.add(stem(t))
    return found


def idf_weights(question_terms: set[str], store) -> dict[str, float]:
    """Inverse document frequency of each term (as a prefix: every word form) in the chunk store."""
    total = max(store.count(), 1)
    return {t: math.log((total + 1) / (store.document_frequency(t) + 0.5)) for t in question_terms}


def coverage(weights: dict[str, float], text: str) -> float:
    """Share of the question's weight whose terms occur in the text (word forms, case-blind)."""
    if not weights:
        return 0.0
    have = terms(text)
    norm = normalise(text)
    got = sum(w for t, w in weights.items() if t in have or (len(t) > 3 and t in norm))
    return got / sum(weights.values())


@dataclass
class Reading:
    units: list[Unit]
    scores: np.ndarray  # per unit, for the question
    windows: list[Window]
    answerability: float  # the question's weight found in the candidate chunks (with headings)


def read(question: str, hits: list[Hit], embedder, store, windows: int = DEFAULT_WINDOWS,
         radius: int = DEFAULT_RADIUS, lexical_weight: float = 1.0) -> Reading:  # fmt: skip
    """Rank the units of `hits` for the question and pick the windows the model will read."""
    units = [u for i, h in enumerate(hits) for u in split_units(h.text, i)]
    weights = idf_weights(terms(question), store)
    if not units:
        return Reading([], np.zeros(0), [], 0.0)
    vectors = embedder.embed([question] + [u.text for u in units])
    dense = vectors[1:] @ vectors[0]
    lexical = np.array([coverage(weights, f"{hits[u.hit].heading} {u.text}") for u in units])
    scores = dense + lexical_weight * lexical
    chosen: list[Window] = []
    by_hit: dict[int, list[int]] = {}
    for j, u in enumerate(units):
        by_hit.setdefault(u.hit, []).append(j)
    for j in np.argsort(-scores):
        if len(chosen) >= windows:
            break
        u = units[j]
        row = by_hit[u.hit]
        k = row.index(int(j))
        lo, hi = units[row[max(0, k - radius)]], units[row[min(len(row) - 1, k + radius)]]
        window = Window(u.hit, lo.start, hi.end)
        merged = next(
            (
                w
                for w in chosen
                if w.hit == u.hit and w.start <= window.end and window.start <= w.end
            ),
            None,
        )
        if merged:
            merged.start, merged.end = min(merged.start, window.start), max(merged.end, window.end)
        else:
            chosen.append(window)
    # Answerability: the question's weight found anywhere in the candidates (headings included).
    # Measured against the windows alone it separated answerable from unanswerable questions
    # less well (docs/quality.md).
    found = " ".join(f"{h.heading} {h.text}" for h in hits)
    return Reading(units, scores, chosen, coverage(weights, found))


def evidence(
    reading: Reading, hits: list[Hit], answer: str, question: str = "", limit: int = 1
) -> list[dict]:
    """The units inside the read windows that best hold the answer, quoted with offsets.

    A unit's score: its score for the question, plus the answer's facts and words it holds that
    the question does not (those are what the answer added, so they say where it came from).
    """
    inside = [j for j, u in enumerate(reading.units)
              if any(w.hit == u.hit and w.start <= u.start and u.end <= w.end for w in reading.windows)]  # fmt: skip
    if not inside:
        return []
    asked = normalise(question)
    answer_facts = [f for f in (normalise(f) for f in facts(answer)) if f not in asked]
    answer_terms = terms(answer) - terms(question)

    def score(j: int) -> float:
        u = reading.units[j]
        text = normalise(u.text)
        fact_hits = sum(f in text for f in answer_facts)
        word_hits = len(answer_terms & terms(u.text)) / max(len(answer_terms), 1)
        return float(reading.scores[j]) + 0.5 * fact_hits + 0.2 * word_hits

    ranked = sorted(inside, key=score, reverse=True)[:limit]
    out = []
    for j in ranked:
        u, h = reading.units[j], hits[reading.units[j].hit]
        out.append({"chunk_id": h.chunk_id, "start": u.start, "end": u.end, "text": u.text,
                    "source": h.source, "heading": h.heading})  # fmt: skip
    return out
