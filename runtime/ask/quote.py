"""The answer starts from the manual's own line: `quotes` takes the best-ranked units, each with
the neighbours it needs to be read alone (a table row under its header, a list item under its
lead-in, a short or colon-ended line with the line after it, a line that restates the question
with the line that answers it), quoted verbatim with offsets; `asked_value` marks the value the
question asks for in it.
"""

from __future__ import annotations

import re

import numpy as np

from outpost.runtime.ask.answer import Evidence, Span
from outpost.runtime.ask.question import Question, as_question
from outpost.runtime.ask.rank import Reading
from outpost.runtime.ask.retrieve import Hit
from outpost.runtime.ask.support import facts, normalise
from outpost.runtime.ask.terms import NUMBER, REFERENCE, terms, was_asked
from outpost.runtime.ask.units import Unit
from outpost.runtime.language.lexicon import Lexicon

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


def asked_value(
    question: Question | str, text: str, lex: Lexicon | None = None
) -> tuple[int, int] | None:
    """Where `text` gives the value the question asks for: a number (with its unit) for a
    how-many question, a name, path or option for a which-question, a place for a where-
    question; the first one the question does not already hold. None when it asks for none."""
    q = as_question(question, lex)
    wanted, asked = q.asked.kinds, q.asked.normal
    if "number" in wanted:
        for m in NUMBER.finditer(text):
            if m.group() in asked or REFERENCE.search(text[max(0, m.start() - 12) : m.start()]):
                continue
            unit = re.match(r"\s?[A-Za-z%°µ/]{1,8}\b", text[m.end() :])
            return m.start(), m.end() + (unit.end() if unit else 0)
    if wanted & {"name", "place"}:
        for m in _OPTION_TOKEN.finditer(text):  # an option is the usual answer to "which"
            if normalise(m.group()) not in asked:
                return m.span()
        for f in facts(text):
            at = text.find(f)
            if at >= 0 and normalise(f) not in asked and not NUMBER.fullmatch(f):
                return at, at + len(f)
    return None


QUOTE_CHARS = 400  # a line and the one that completes it, at most
QUOTE_MIN_CHARS = 180  # a shorter run is shown with the line after it


def _completes(q: Question, units: list[Unit], k: int) -> bool:
    """Whether the line after units[k] completes it: units[k] does not give what the question
    asks for (a value, an option; or, asking for none, adds little the question did not say)
    and the next line does, and the two stay short enough to read at a glance."""
    line, nxt = units[k].text, units[k + 1].text
    if len(line) + len(nxt) > QUOTE_CHARS:
        return False
    if q.asked.kinds & {"number", "name", "place"}:
        return asked_value(q, line) is None and asked_value(q, nxt) is not None
    asked, have = q.asked.terms, terms(line, q.lex)
    novelty = sum(not was_asked(t, asked) for t in have) / max(len(have), 1)
    return novelty < RESTATES and any(not was_asked(t, asked) for t in terms(nxt, q.lex))


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
    question: Question | str = "",
    lex: Lexicon | None = None,
) -> list[Evidence]:
    """The best-ranked lines, each with the neighbours it needs, quoted verbatim with offsets
    (best first; windows that overlap an earlier one are skipped). `text` is the chunk's text
    from `start` to `end`; `lead`, when the run needs one it does not touch (a table's header,
    a list's lead-in), is quoted the same way. Without a question, no line is completed by the
    next and no value is marked."""
    q = as_question(question, lex) if question else None
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
        if q and hi == k and hi + 1 < len(units) and _completes(q, units, k):
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
        at = asked_value(q, text) if q else None
        mark = None if at is None else Span(start + at[0], start + at[1], text[at[0] : at[1]])
        out.append(
            Evidence(hit.chunk_id, start, end, text, hit.source, hit.heading, score, head, mark)
        )
    return out
