"""The support check: every checkable fact in an answer must be found in the passages the model
was given, and numbers cannot be invented while the answer is generated.

Checkable facts: numbers (with their decimals), identifiers that mix letters with digits or
underscores (E-305, PX-200, VTYSH_PAGER, bgpd.conf), acronyms and names in capitals (OSHA),
file paths, `code` and "quoted" names.
A fact is supported when it occurs in the passages or in the question (an answer may repeat
what was asked), compared case-blind after NFKC with white space folded. Citation markers [n]
are not facts.

`NumberCopy` is a logits processor: a digit may only be written where the digits written so
far in the current number are a prefix of a number in the passages or the question, and a
number may only end where it is complete. The small model's most common failure, the right
passage with the wrong number, cannot then reach the screen; the check after generation is the
second gate for everything else.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from outpost.runtime.ask.generate import Generator

_CITATION = re.compile(r"\[\d+\]")
_FACTS = [
    re.compile(r"`([^`\n]{2,80})`"),  # `code`
    re.compile(r"\"([^\"\n]{2,40})\"|“([^”\n]{2,40})”"),  # "quoted names" (not quoted sentences)
    re.compile(r"(?<![\w/])(?:~|\.{1,2})?/[\w.\-]+(?:/[\w.\-]+)*"),  # /file/paths
    # identifiers with a digit, an underscore or an inner dot/hyphen next to a digit
    re.compile(
        r"\b(?=[\w.\-]*[\d_])[A-Za-z][\w]*(?:[.\-][\w]+)+\b|\b[A-Za-z]+_[\w]+\b|\b[A-Za-z]+\d[\w]*\b"
    ),
    re.compile(r"\b[A-Z]{2,}s?\b"),  # acronyms and names in capitals (OSHA, HMI, VTY)
    re.compile(r"(?<![\w.])\d+(?:[.,:]\d+)*"),  # numbers, decimals, times, versions
]


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def facts(answer: str) -> list[str]:
    """The checkable facts in an answer, in order, without repeats."""
    text = _CITATION.sub(" ", answer)
    found: list[str] = []
    taken: list[tuple[int, int]] = []
    for pattern in _FACTS:
        for m in pattern.finditer(text):
            value = next((g for g in m.groups() if g), m.group(0)) if m.groups() else m.group(0)
            span = m.span()
            if any(a <= span[0] < b or a < span[1] <= b for a, b in taken):
                continue  # part of a fact already taken (a number inside an identifier)
            value = value.strip(" .,;:")
            if pattern is _FACTS[1] and len(value.split()) > 4:
                continue  # a quoted phrase or sentence (often the question restated), not a name
            if value and value not in found:
                found.append(value)
                taken.append(span)
    return found


@dataclass
class SupportCheck:
    facts: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unsupported


def check(answer: str, passages: list[str], question: str = "") -> SupportCheck:
    haystack = normalise(" ".join([*passages, question]))
    digits = set(re.findall(r"\d+", haystack))
    result = SupportCheck(facts=facts(answer))
    for fact in result.facts:
        needle = normalise(fact)
        if needle in haystack:
            continue
        if re.fullmatch(r"[\d.,:]+", needle) and set(re.findall(r"\d+", needle)) <= digits:
            # "6,5" for "6.5", "10:00" for "10 00": every run of digits is there, each in place
            if re.search(r"\D".join(re.escape(d) for d in re.findall(r"\d+", needle)), haystack):
                continue
        result.unsupported.append(fact)
    return result


# --- generation-time constraint -----------------------------------------------------------


def digit_tokens(
    tokenizer: Any, vocab_size: int
) -> tuple[np.ndarray, dict[int, str], frozenset[int]]:
    """(ids of tokens that hold a digit, {id: text} of the pure-digit ones, ids ending in "[")."""
    holding, pure, opens = [], {}, set()
    for i in range(vocab_size):
        text = tokenizer.decode([i])
        if any(c.isdigit() for c in text):
            holding.append(i)
            if text.isdigit() and text.isascii():
                pure[i] = text
        elif text.endswith("["):
            opens.add(i)
    return np.array(holding, dtype=np.int64), pure, frozenset(opens)


@dataclass
class NumberCopy:
    """Logits processor: numbers are copied from the allowed text, never made up."""

    holding: np.ndarray  # every token id that holds a digit
    pure: dict[int, str]  # pure-digit token id -> its digits
    runs: set[str]  # complete digit runs in the passages and the question
    opens: frozenset[int] = frozenset()  # tokens ending in "[": a citation number follows
    passages: int = 0  # citations [1]..[passages] are the numbers allowed after "["
    prefixes: set[str] = field(init=False)
    blocked: int = 0  # steps at which the model's first choice was not allowed

    def __post_init__(self) -> None:
        self.prefixes = {r[:i] for r in self.runs for i in range(1, len(r) + 1)}
        self.citations = {str(n) for n in range(1, self.passages + 1)}
        self.citation_prefixes = {c[:i] for c in self.citations for i in range(1, len(c) + 1)}

    def wants(self, new_ids: list[int]) -> bool:
        return True

    def current(self, new_ids: list[int]) -> str:
        """The digits at the end of the answer so far (the number being written)."""
        digits = []
        for token in reversed(new_ids):
            piece = self.pure.get(token)
            if piece is None:
                break
            digits.append(piece)
        return "".join(reversed(digits))

    def __call__(self, new_ids: list[int], logits: np.ndarray) -> np.ndarray | None:
        row = np.array(logits, dtype=np.float32).reshape(-1)
        best = int(row.argmax())
        current = self.current(new_ids)
        before = len(new_ids) - len(current) - 1  # the token before the number being written
        citing = before >= 0 and new_ids[before] in self.opens
        runs, prefixes = (
            (self.citations, self.citation_prefixes) if citing else (self.runs, self.prefixes)
        )
        allowed = [i for i, d in self.pure.items() if current + d in prefixes]
        keep = row[allowed].copy()
        low = np.finfo(np.float32).min
        if current and current not in runs:
            # An unfinished number: only digits that lead to a number in the passages may follow.
            row[:] = low
        else:
            row[self.holding] = low
        row[allowed] = keep
        if int(row.argmax()) != best:
            self.blocked += 1
        return row.reshape(np.shape(logits))

    def measured(self) -> dict:
        return {"numbers_blocked": self.blocked}


def number_copy(generator: Generator, allowed_text: str, passages: int = 0) -> NumberCopy:
    holding, pure, opens = generator.digit_tokens()
    return NumberCopy(holding, pure, set(re.findall(r"\d+", allowed_text)), opens, passages)
