"""The units a chunk is read in: sentences of prose, lines of tables, lists and code, each
with its character offsets in the stored chunk text (`split_units`). A stop ends a sentence
only before a capital or a digit, outside parentheses and after a word that is not an
abbreviation in the languages Outpost reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Unit:
    hit: int  # index of the chunk in the retrieved hits
    start: int  # offsets in the chunk's stored text
    end: int
    text: str


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
