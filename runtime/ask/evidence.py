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

The answer starts from the manual's own line: `quotes` takes the best-ranked units, each with
the neighbours it needs to be read alone (a table row under its header, a list item under its
lead-in, a short or colon-ended line with the line after it), quoted verbatim with offsets. A
sentence the model writes is shown only when it is `attributable` to one quoted window: its
facts and content words come from that window or the question, and it adds something the
question did not say.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from outpost.runtime.ask.answer import Evidence, Span
from outpost.runtime.ask.retrieve import Hit
from outpost.runtime.ask.support import facts, normalise
from outpost.runtime.bundle.manifest import DEFAULT_RADIUS, DEFAULT_WINDOWS
from outpost.runtime.language import Lexicon, gives_reason, lexicon, split_compound, wants
from outpost.runtime.protocols import TermStore, TextEmbedder

if TYPE_CHECKING:
    from outpost.runtime.ask.rerank import Reranker

ENGLISH = lexicon("en")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?\w)")
# Abbreviations a sentence seldom ends with, in the languages Outpost reads (lower case, no
# final dot): "for example. 20 GiB" and "f.eks. Debian" go on. Words with an inner dot
# ("e.g.", "z.B.", "d.w.z.") and single letters are abbreviations in any language.
_ABBREVIATIONS = frozenset(
    "eg ie vs cf approx ca fig no nr nos ref refs sec ch vol dr mr mrs ms st "
    "eks bl dvs pga inkl jf kap evt mht iht ift ang "  # nb, da, sv
    "bijv bv dwz evt enz resp zgn ong incl excl vgl blz "  # nl
    "bzw ggf usw vgl inkl ca evtl "  # de
    "cf env etc p pp "  # fr
    "pág aprox ej".split()  # es
)
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
        breaks = [
            (line.start() + m.start(), line.start() + m.end())
            for m in _SENTENCE_END.finditer(line.group())
            if _ends_sentence(line.group(), m.start(), m.end())
        ]
        for cut, nxt in [*breaks, (line.end(), line.end())]:
            piece = text[pos:cut]
            lead = len(piece) - len(piece.lstrip())
            piece = piece.strip()
            if len(piece) > 1:
                units.append(Unit(hit, pos + lead, pos + lead + len(piece), piece))
            pos = nxt
    return units


def _ends_sentence(line: str, cut: int, nxt: int) -> bool:
    """Whether the stop before `cut` ends a sentence: the next word starts with a capital or
    a digit, no parenthesis is left open ("(over, for example. 20 GiB)"), and the word before
    is not an abbreviation."""
    after = line[nxt:].lstrip("\"'([")
    if not after or not (after[0].isupper() or after[0].isdigit()):
        return False
    before = line[:cut]
    if before.count("(") > before.count(")") or before.count("[") > before.count("]"):
        return False
    if before[-1] != ".":
        return True
    word = before[:-1].rsplit(None, 1)[-1].lstrip("\"'([") if before[:-1].strip() else ""
    pieces = word.split(".")
    if all(p.isalpha() and len(p) <= 3 for p in pieces) and (len(pieces) > 1 or len(word) == 1):
        return False  # "e.g", "z.B", "d.w.z", "A"
    return word.lower() not in _ABBREVIATIONS


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
    return _covered(weights, terms(text, lex), (normalise(text),))


def _covered(weights: dict[str, float], have: set[str], texts: tuple[str, ...]) -> float:
    """`coverage` from a text's terms and its normalised pieces (computed once by the caller)."""
    if not weights:
        return 0.0
    got = sum(
        w for t, w in weights.items() if t in have or (len(t) > 3 and any(t in x for x in texts))
    )
    return got / sum(weights.values())


# A number after a reference word is a page, figure or section, not a quantity ("p. 1").
_REFERENCE = re.compile(
    r"\b(?:p|pp|s|page|pages|fig|figure|table|section|chapter|step|side|kapittel|avsnitt|figur|"
    r"tabell|pagina|blz|hoofdstuk|seite|abb|kapitel|abschnitt|chapitre|página|capítulo)\.?\s*$",
    re.I,
)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,:]\d+)*")
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
    question: str,
    units: list[Unit],
    hits: list[Hit],
    dense: np.ndarray,
    weights: dict[str, float],
    lex: Lexicon | None = None,
) -> np.ndarray:
    """One row per unit: how well it answers the question, by each feature in FEATURES."""
    asked_terms = terms(question, lex)
    asked = normalise(question)
    wanted = wants(question, lex or ENGLISH)
    wants_number, wants_name = "number" in wanted, "name" in wanted
    headings = {i: (terms(h.heading, lex), normalise(h.heading)) for i, h in enumerate(hits)}
    rows = np.zeros((len(units), len(FEATURES)), dtype=np.float32)
    for j, u in enumerate(units):
        have, line = terms(u.text, lex), normalise(u.text)
        short = len(u.text.split()) < 4
        new_numbers = [
            m.group()
            for m in _NUMBER.finditer(u.text)
            if m.group() not in asked
            and not _REFERENCE.search(u.text[max(0, m.start() - 12) : m.start()])
        ]
        new_names = (
            [f for f in facts(u.text) if not _NUMBER.fullmatch(f) and normalise(f) not in asked]
            if wants_name or short
            else []
        )
        same = [k for k in (j - 1, j + 1) if 0 <= k < len(units) and units[k].hit == u.hit]
        novelty = sum(not _asked(t, asked_terms) for t in have) / max(len(have), 1)
        head_terms, head = headings[u.hit]
        rows[j] = (
            dense[j],
            _covered(weights, have | head_terms, (head, line)),
            _covered(weights, have, (line,)),
            max((dense[k] for k in same), default=0.0),
            float(
                (wants_number and bool(new_numbers))
                or (wants_name and bool(new_names))
                or ("place" in wanted and bool(_PLACE.search(u.text)))
                or ("reason" in wanted and gives_reason(u.text, lex or ENGLISH))
            ),
            novelty,
            float(novelty < 0.2),
            float(short and not new_numbers and not new_names),
            1.0 / (1 + u.hit),  # the retrieval rank of the line's chunk: its context is on topic
        )
    return rows


def line_inputs(
    question: str,
    hits: list[Hit],
    embedder: TextEmbedder,
    store: TermStore,
    lex: Lexicon | None = None,
) -> tuple[list[Unit], np.ndarray, dict[str, float]]:
    """The candidates' units, their feature rows and the question's IDF weights: what the
    ranker scores (and what trainer/ranker/weights.py fits)."""
    units = [u for i, h in enumerate(hits) for u in split_units(h.text, i)]
    weights = idf_weights(question_terms(question, store, lex), store)
    if not units:
        return units, np.zeros((0, len(FEATURES)), dtype=np.float32), weights
    # Embedding every line of many candidates costs more than the rest of the answer: past
    # EMBED_LINES, only the lines whose words (and chunk's rank) say most are embedded; the
    # others rank on their words alone (dense 0).
    embedded = list(range(len(units)))
    if len(units) > EMBED_LINES:
        cheap = [
            _covered(weights, terms(u.text, lex) | terms(hits[u.hit].heading, lex), (u.text,))
            + 0.3 / (1 + u.hit)
            for u in units
        ]
        embedded = sorted(np.argsort(-np.asarray(cheap))[:EMBED_LINES].tolist())
    vectors = embedder.embed([question] + [units[j].text for j in embedded])
    dense = np.zeros(len(units), dtype=np.float32)
    dense[embedded] = vectors[1:] @ vectors[0]
    rows = line_features(question, units, hits, dense, weights, lex)
    return units, rows, weights


def _asked(term: str, asked: set[str]) -> bool:
    """The term, or a form of it (charging ~ charge: one a prefix of the other), was asked."""
    return term in asked or any(
        min(len(term), len(a)) >= 4 and (a.startswith(term) or term.startswith(a)) for a in asked
    )


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
    question: str,
    hits: list[Hit],
    embedder: TextEmbedder,
    store: TermStore,
    windows: int = DEFAULT_WINDOWS,
    radius: int = DEFAULT_RADIUS,
    lex: Lexicon | None = None,
    reranker: Reranker | None = None,
) -> Reading:
    """Rank the units of `hits` for the question and pick the windows the model will read;
    with a `reranker` (the bundle's learned ranker), its order decides among the best lines."""
    units, rows, weights = line_inputs(question, hits, embedder, store, lex)
    if not units:
        return Reading([], np.zeros(0), [], 0.0)
    scores = rows @ _WEIGHTS
    best = None
    if reranker is not None:
        scores, best = rerank(question, units, hits, scores, reranker)
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
    return Reading(units, scores, chosen, coverage(weights, found, lex), best)


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


_ITEM = re.compile(r"^\s*(?:[-*\u2022\u25aa]|\d{1,2}[.)])\s")


def _row(text: str) -> bool:
    return text.count(" | ") >= 1


def _context(units: list[Unit], k: int) -> tuple[int | None, int, int]:
    """What a quote of units[k] shows, within one chunk: a lead line (a table's header row, a
    list's lead-in) or None, and the run of units lo..hi around k."""
    lo = hi = k
    text = units[k].text
    lead = None
    if _row(text):  # a table row under the table's first row (its header)
        first = k
        while first > 0 and _row(units[first - 1].text):
            first -= 1
        lead = first if first < k else None
    elif _ITEM.match(text):  # a list item under its lead-in ("To replace the filter:")
        first = k
        while first > 0 and _ITEM.match(units[first - 1].text):
            first -= 1
        if first > 0 and k - first < 8 and units[first - 1].text.rstrip().endswith(":"):
            lead = first - 1
    # A line without an ending (a bare term, a message, a "key: value" row) is shown with the
    # line after it: measured on the dev and example questions, the line after explained it more
    # often than it added noise (an error message and its fix; a title and its description).
    bare = len(text.split()) < 5 or (len(text.split()) <= 8 and text.rstrip()[-1:] not in ".!?;,")
    if (text.rstrip().endswith(":") or bare) and hi + 1 < len(units):
        hi += 1  # "Default:" or a bare term: the line after says what it is
    elif (
        lead is None
        and k > 0
        and len(units[k - 1].text.split()) < 5
        and units[k - 1].text.rstrip()[-1:] not in ".!?:"
    ):
        lo = k - 1  # a bare term before (a command, an option) names what this line is about
    if lead is not None and lead >= lo - 1:
        lo, lead = lead, None  # adjacent: one run
    return lead, lo, hi


_OPTION_TOKEN = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*(?:=[^\s,;]+)?")


def asked_value(question: str, text: str, lex: Lexicon | None = None) -> tuple[int, int] | None:
    """Where `text` gives the value the question asks for: a number (with its unit) for a
    how-many question, a name, path or option for a which-question, a place for a where-
    question; the first one the question does not already hold. None when it asks for none."""
    lex = lex or ENGLISH
    wanted, asked = wants(question, lex), normalise(question)
    if "number" in wanted:
        for m in _NUMBER.finditer(text):
            if m.group() in asked or _REFERENCE.search(text[max(0, m.start() - 12) : m.start()]):
                continue
            unit = re.match(r"\s?[A-Za-z%°µ/]{1,8}\b", text[m.end() :])
            return m.start(), m.end() + (unit.end() if unit else 0)
    if wanted & {"name", "place"}:
        for m in _OPTION_TOKEN.finditer(text):  # an option is the usual answer to "which"
            if normalise(m.group()) not in asked:
                return m.span()
        for f in facts(text):
            at = text.find(f)
            if at >= 0 and normalise(f) not in asked and not _NUMBER.fullmatch(f):
                return at, at + len(f)
    return None


QUOTE_CHARS = 400  # a line and the one that completes it, at most
QUOTE_MIN_CHARS = 180  # a shorter run is shown with the line after it


def _completes(question: str, units: list[Unit], k: int, lex: Lexicon | None = None) -> bool:
    """Whether the line after units[k] completes it: units[k] does not give what the question
    asks for (a value, an option; or, asking for none, adds little the question did not say)
    and the next line does, and the two stay short enough to read at a glance."""
    line, nxt = units[k].text, units[k + 1].text
    if len(line) + len(nxt) > QUOTE_CHARS:
        return False
    kinds = wants(question, lex or ENGLISH) & {"number", "name", "place"}
    if kinds:
        return (
            asked_value(question, line, lex) is None and asked_value(question, nxt, lex) is not None
        )
    asked, have = terms(question, lex), terms(line, lex)
    novelty = sum(not _asked(t, asked) for t in have) / max(len(have), 1)
    return novelty < RESTATES and any(not _asked(t, asked) for t in terms(nxt, lex))


RESTATES = 0.35  # a line whose words are mostly the question's only restates it


def _indented(text: str, unit: Unit) -> bool:
    """Whether the unit starts an indented line (an example block: a configuration, a command)."""
    line = text.rfind("\n", 0, unit.start) + 1
    return unit.start - line >= 2 and not text[line : unit.start].strip()


def _promised(text: str, units: list[Unit], lo: int, hi: int) -> int:
    """A run that ends with a colon promises what follows ("To fix this, turn on support for
    multiple IP addresses:"): the line after it goes with it, and an example block after that
    (its indented lines), while the run stays within QUOTE_CHARS."""
    block = False
    while hi + 1 < len(units) and units[hi + 1].end - units[lo].start <= QUOTE_CHARS:
        nxt = units[hi + 1]
        if units[hi].text.rstrip().endswith(":") or (block and _indented(text, nxt)):
            block = block or _indented(text, nxt) or nxt.text.rstrip().endswith(":")
            hi += 1
        else:
            break
    return hi


def quotes(
    reading: Reading,
    hits: list[Hit],
    limit: int = 2,
    question: str = "",
    lex: Lexicon | None = None,
) -> list[Evidence]:
    """The best-ranked lines, each with the neighbours it needs, quoted verbatim with offsets
    (best first; windows that overlap an earlier one are skipped). `text` is the chunk's text
    from `start` to `end`; `lead`, when the run needs one it does not touch (a table's header,
    a list's lead-in), is quoted the same way."""
    by_hit: dict[int, list[int]] = {}
    for j, u in enumerate(reading.units):
        by_hit.setdefault(u.hit, []).append(j)
    out: list[Evidence] = []
    taken: list[tuple[int, int, int]] = []
    for j in np.argsort(-reading.scores):
        if len(out) >= limit:
            break
        u = reading.units[int(j)]
        row = by_hit[u.hit]
        units = [reading.units[i] for i in row]
        k = row.index(int(j))
        lead, lo, hi = _context(units, k)
        if question and hi == k and hi + 1 < len(units) and _completes(question, units, k, lex):
            hi += 1  # the line restates the question; the next one says what it asks
        hit = hits[u.hit]
        promised = _promised(hit.text, units, lo, hi)
        while (
            promised == hi
            and hi + 1 < len(units)
            and units[hi].end - units[lo].start < QUOTE_MIN_CHARS
            and units[hi + 1].end - units[lo].start <= QUOTE_CHARS
        ):
            hi += 1  # a fragment says too little alone: the line after it goes with it
            promised = _promised(hit.text, units, lo, hi)
        hi = promised
        start, end = units[lo].start, units[hi].end
        if any(h == u.hit and start < e and s < end for h, s, e in taken):
            continue
        taken.append((u.hit, start, end))
        head = None if lead is None else Span(units[lead].start, units[lead].end, units[lead].text)
        score = round(float(reading.scores[int(j)]), 4)
        text = hit.text[start:end]
        at = asked_value(question, text, lex) if question else None
        mark = None if at is None else Span(start + at[0], start + at[1], text[at[0] : at[1]])
        out.append(
            Evidence(hit.chunk_id, start, end, text, hit.source, hit.heading, score, head, mark)
        )
    return out


def attributable(
    sentence: str, window: str, question: str = "", lex: Lexicon | None = None
) -> bool:
    """A sentence may stand above a quote only when everything it says comes from that window
    (or the question): every fact (number, name, code, path) and nearly every content word, and
    it adds something from the window the question did not say (not the question echoed)."""
    if sentence.rstrip().endswith((":", ",", ";")):
        return False  # a lead-in or a fragment: it promises what it does not say
    asked = normalise(question)
    source = normalise(window)
    found = [normalise(f) for f in facts(sentence)]
    if any(f not in source and f not in asked for f in found):
        return False
    words, have, wanted = terms(sentence, lex), terms(window, lex), terms(question, lex)
    if not words:
        return False
    missing = words - have - wanted
    if len(missing) > max(1, len(words) // 6):
        return False
    adds = (words & have) - wanted or {f for f in found if f in source and f not in asked}
    return bool(adds)
