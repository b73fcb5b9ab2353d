"""Ranking the candidates' lines for the question, and the windows the model reads.

Each unit (units.py) gets the feature row FEATURES: the bundle's embedder's cosine, how much of
the question's weight it and its chunk's heading cover (terms.py), its neighbours' cosine,
whether it gives the kind of answer asked for, and a few more. `gauge` reads the candidates'
words only (the answerability the declines before ranking report); `rank` scores the rows with
LINE_WEIGHTS, lets the bundle's learned ranker (rerank.py) reorder the best lines, and picks
the windows (the best lines with their neighbours) the model reads instead of whole chunks: a
shorter prompt that a small model reads better and prefills faster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from outpost.runtime.ask.question import Question, as_question
from outpost.runtime.ask.retrieve import Hit
from outpost.runtime.ask.support import facts, normalise
from outpost.runtime.ask.terms import (
    NUMBER,
    REFERENCE,
    coverage,
    covered,
    idf_weights,
    question_terms,
    terms,
    was_asked,
)
from outpost.runtime.ask.units import Unit, split_units
from outpost.runtime.bundle.manifest import DEFAULT_RADIUS, DEFAULT_WINDOWS
from outpost.runtime.language.kinds import gives_reason
from outpost.runtime.language.lexicon import Lexicon
from outpost.runtime.protocols import TermStore, TextEmbedder

if TYPE_CHECKING:
    from outpost.runtime.ask.rerank import Reranker


@dataclass
class Window:
    hit: int
    start: int  # offsets in the chunk's stored text
    end: int


# A place a where-question is answered by: an address, a path, a menu ("Settings > Network").
_PLACE = re.compile(r"https?://|\bwww\.|(?:^|[\s(\"'])[~.]?/\w|\w+/\S+/|\s[>→»]\s")
FEATURES = (
    "dense",
    "coverage",
    "coverage_line",
    "neighbours",
    "answer_type",
    "novelty",
    "restates",
    "short",
    "chunk_rank",
)


def line_features(
    question: Question | str,
    units: list[Unit],
    hits: list[Hit],
    dense: np.ndarray,
    weights: dict[str, float],
    lex: Lexicon | None = None,
) -> np.ndarray:
    """One row per unit: how well it answers the question, by each feature in FEATURES."""
    q = as_question(question, lex)
    lex, asked_terms, asked, wanted = q.lex, q.ranked.terms, q.ranked.normal, q.ranked.kinds
    wants_number, wants_name = "number" in wanted, "name" in wanted
    headings = {i: (terms(h.heading, lex), normalise(h.heading)) for i, h in enumerate(hits)}
    rows = np.zeros((len(units), len(FEATURES)), dtype=np.float32)
    for j, u in enumerate(units):
        have, line = terms(u.text, lex), normalise(u.text)
        short = len(u.text.split()) < 4
        new_numbers = [
            m.group()
            for m in NUMBER.finditer(u.text)
            if m.group() not in asked
            and not REFERENCE.search(u.text[max(0, m.start() - 12) : m.start()])
        ]
        new_names = (
            [f for f in facts(u.text) if not NUMBER.fullmatch(f) and normalise(f) not in asked]
            if wants_name or short
            else []
        )
        same = [k for k in (j - 1, j + 1) if 0 <= k < len(units) and units[k].hit == u.hit]
        novelty = sum(not was_asked(t, asked_terms) for t in have) / max(len(have), 1)
        head_terms, head = headings[u.hit]
        rows[j] = (
            dense[j],
            covered(weights, have | head_terms, (head, line)),
            covered(weights, have, (line,)),
            max((dense[k] for k in same), default=0.0),
            float(
                (wants_number and bool(new_numbers))
                or (wants_name and bool(new_names))
                or ("place" in wanted and bool(_PLACE.search(u.text)))
                or ("reason" in wanted and gives_reason(u.text, lex))
            ),
            novelty,
            float(novelty < 0.2),
            float(short and not new_numbers and not new_names),
            1.0 / (1 + u.hit),  # the retrieval rank of the line's chunk: its context is on topic
        )
    return rows


@dataclass(frozen=True)
class Candidates:
    """The candidate chunks' lines and what the question's words say of them, before any
    embedding: enough for the threshold and name declines, and the answerability they report."""

    units: list[Unit]
    weights: dict[str, float]  # the question's terms' IDF weights in the chunk store
    answerability: float  # the question's weight found in the candidate chunks (with headings)


def gauge(question: Question | str, hits: list[Hit], store: TermStore) -> Candidates:
    """The candidates' units, the question's weights and its answerability: cheap (words and
    the store's document frequencies, no model)."""
    q = as_question(question)
    units = [u for i, h in enumerate(hits) for u in split_units(h.text, i)]
    weights = idf_weights(question_terms(q.ranked.text, store, q.lex), store)
    if not units:
        return Candidates(units, weights, 0.0)
    # Answerability: the question's weight found anywhere in the candidates (headings included).
    # Measured against the windows alone it separated answerable from unanswerable questions
    # less well (docs/quality.md).
    found = " ".join(f"{h.heading} {h.text}" for h in hits)
    return Candidates(units, weights, coverage(weights, found, q.lex))


def line_inputs(
    question: Question | str,
    hits: list[Hit],
    embedder: TextEmbedder,
    store: TermStore,
    lex: Lexicon | None = None,
) -> tuple[list[Unit], np.ndarray, dict[str, float]]:
    """The candidates' units, their feature rows and the question's IDF weights: what the
    ranker scores (and what trainer/ranker/weights.py fits)."""
    q = as_question(question, lex)
    found = gauge(q, hits, store)
    return found.units, _rows(q, found, hits, embedder), found.weights


def _rows(q: Question, found: Candidates, hits: list[Hit], embedder: TextEmbedder) -> np.ndarray:
    units, weights, lex = found.units, found.weights, q.lex
    if not units:
        return np.zeros((0, len(FEATURES)), dtype=np.float32)
    # Embedding every line of many candidates costs more than the rest of the answer: past
    # EMBED_LINES, only the lines whose words (and chunk's rank) say most are embedded; the
    # others rank on their words alone (dense 0).
    embedded = list(range(len(units)))
    if len(units) > EMBED_LINES:
        cheap = [
            covered(weights, terms(u.text, lex) | terms(hits[u.hit].heading, lex), (u.text,))
            + 0.3 / (1 + u.hit)
            for u in units
        ]
        embedded = sorted(np.argsort(-np.asarray(cheap))[:EMBED_LINES].tolist())
    vectors = embedder.embed([q.ranked.text] + [units[j].text for j in embedded])
    dense = np.zeros(len(units), dtype=np.float32)
    dense[embedded] = vectors[1:] @ vectors[0]
    return line_features(q, units, hits, dense, weights)


# The first eight were chosen by a grid search over the dev and example questions
# (benchmarks/line_rank.py); chunk_rank on the training questions (FAQ pairs and
# examples/train.jsonl, `make ranker`), where 0.1-0.4 fit equally well. answer_type went from
# 0.2 to 0.3 once it also read places and reasons in every language: 0.2-0.4 tie on the English
# sets, 0.3 ranks one more Dutch line first (0.5 loses Norwegian ones). docs/quality.md.
LINE_WEIGHTS = {
    "dense": 1.0,
    "coverage": 0.5,
    "coverage_line": 0.0,
    "neighbours": 0.6,
    "answer_type": 0.3,
    "novelty": 0.0,
    "restates": -0.2,
    "short": -0.2,
    "chunk_rank": 0.2,
}
_WEIGHTS = np.array([LINE_WEIGHTS[f] for f in FEATURES], dtype=np.float32)
EMBED_LINES = 96  # lines embedded for the dense feature, at most (the best by their words)
RERANK_LINES = 24  # lines the learned ranker reads, the features' best
RERANK_NEXT = 8  # of those, the best whose next line is read too
RERANK_WEIGHT = 0.1  # of the learned ranker's logit, added to the features' score


@dataclass
class Reading:
    units: list[Unit]
    scores: np.ndarray  # per unit, for the question
    windows: list[Window]
    answerability: float  # the question's weight found in the candidate chunks (with headings)
    best_logit: float | None = None  # the learned ranker's score of its best line, when it ran


def read(
    question: Question | str,
    hits: list[Hit],
    embedder: TextEmbedder,
    store: TermStore,
    windows: int = DEFAULT_WINDOWS,
    radius: int = DEFAULT_RADIUS,
    reranker: Reranker | None = None,
) -> Reading:
    """`gauge` and `rank` in one: the lines of `hits` ranked for the question, and the windows."""
    q = as_question(question)
    return rank(q, gauge(q, hits, store), hits, embedder, windows, radius, reranker)


def rank(
    question: Question,
    found: Candidates,
    hits: list[Hit],
    embedder: TextEmbedder,
    windows: int = DEFAULT_WINDOWS,
    radius: int = DEFAULT_RADIUS,
    reranker: Reranker | None = None,
) -> Reading:
    """Rank the candidates' units for the question and pick the windows the model will read;
    with a `reranker` (the bundle's learned ranker), its order decides among the best lines."""
    units = found.units
    if not units:
        return Reading([], np.zeros(0), [], 0.0)
    scores = _rows(question, found, hits, embedder) @ _WEIGHTS
    best = None
    if reranker is not None:
        scores, best = rerank(question.ranked.text, units, hits, scores, reranker)
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
    return Reading(units, scores, chosen, found.answerability, best)


def rerank(
    question: str, units: list[Unit], hits: list[Hit], scores: np.ndarray, reranker: Reranker
) -> tuple[np.ndarray, float]:
    """The learned ranker's order (runtime/ask/rerank.py) over the lines the features rank best,
    each with the line after it (the answer often follows the line that restates the
    question): those lines are ordered by the features' score plus RERANK_WEIGHT times its
    logit, every other line after them in the features' order. Returns the scores and the best logit."""
    from outpost.runtime.ask.rerank import pair_text

    order = [int(j) for j in np.argsort(-scores)]
    picked = dict.fromkeys(order[:RERANK_LINES])
    for j in order[:RERANK_NEXT]:
        if j + 1 < len(units) and units[j + 1].hit == units[j].hit:
            picked[j + 1] = None
    chosen = list(picked)
    logits = reranker.score(
        question, [pair_text(hits[units[j].hit].heading, units[j].text) for j in chosen]
    )
    out = scores - scores.max() - 100.0  # below every reranked line, in the features' order
    for j, logit in zip(chosen, logits):
        out[j] = float(scores[j]) + RERANK_WEIGHT * float(logit)
    return out.astype(np.float32), float(logits.max())
