"""Norwegian, Danish, Swedish, Dutch, German and Finnish write compounds as one word
("oljefilteret", "oliefilter"). A compound the manuals do not contain whole is split into parts
they do contain, and evidence coverage finds a stem inside a longer word
(runtime/ask/terms.py), so "filteret" in a question meets "oljefilteret" in a manual.
"""

from __future__ import annotations

import math
from collections.abc import Callable

# Languages that write compounds as one word ("oljefilteret", "gebruikersgegevens").
COMPOUNDING = frozenset({"nb", "nl", "de", "sv", "da", "fi"})
PART = 4  # letters: the shortest part a compound is split into


def split_compound(word: str, known: Callable[[str], int], language: str) -> list[str]:
    """The parts of a compound the manuals do not hold whole, each a word they do hold
    ("thuismappen" -> ["thuis", "mappen"], "killer-skriptet" -> ["killer", "skriptet"]); []
    for a known word, a word that is not a compound, or a language that does not compound.
    `known(w)` counts the chunks holding a word that starts with `w`. Of the two-part splits,
    the one with the highest geometric mean count wins (Koehn & Knight, 2003); a right part
    that is not known is split once more. Splitting compounds the manuals do hold cost the
    Dutch set a right line (docs/quality.md, "Languages")."""
    if language not in COMPOUNDING or known(word):
        return []
    if "-" in word:
        parts = [p for p in word.split("-") if p]
        return parts if len(parts) > 1 and all(p.isalpha() and known(p) for p in parts) else []
    if not word.isalpha() or len(word) < 2 * PART:
        return []
    best: tuple[float, list[str]] = (0.0, [])
    for i in range(PART, len(word) - PART + 1):
        left, right = word[:i], word[i:]
        if not known(left):
            continue
        rest = [right] if known(right) else split_compound(right, known, language)
        if rest:
            parts = [left, *rest]
            score = math.prod(known(p) for p in parts) ** (1 / len(parts))
            best = max(best, (score, parts), key=lambda b: b[0])
    return best[1]
