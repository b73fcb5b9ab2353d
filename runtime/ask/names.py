"""Names a question uses that the manuals never hold: the decline that says so.

A question about something the manuals never mention ("Which version of Moodle ships?") may
still find most of its other words in them, and the evidence coverage then lets a wrong line
through. A name is a word written with a capital where a sentence does not need one; when no
chunk holds it, the answer is a decline that names it ("They never mention Moodle."). Measured
on the dev, example and Norwegian/Dutch sets: 14 of 30 unanswerable questions caught, none of
87 answerable ones (docs/decisions.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from outpost.runtime.language.lexicon import Lexicon, lexicon
from outpost.runtime.protocols import TermStore

if TYPE_CHECKING:
    from outpost.runtime.ask.question import Question

ENGLISH = lexicon("en")
_SENTENCE_END = re.compile(r"[.!?]\s*[\"'»”)]*\s*$")
_NAME = re.compile(r"[\w][\w.\-/+]*[\w+]|\w")


def unknown_names(
    question: Question | str, store: TermStore, lex: Lexicon | None = None
) -> list[str]:
    """The names a question uses (`asked_names`) that no chunk holds. Capitalised words in a row
    are one name ("Microsoft Active Directory"), known as `_known_name` says."""
    if isinstance(question, str):
        lex = lex or ENGLISH
        names = asked_names(question, lex)
    else:
        lex, names = question.lex, question.names
    missing = []
    for name in names:
        if len(name) == 1:
            known = _known(name[0], store, lex)
        else:
            known = _known_name(name, store, lex)
        if not known:
            missing.append(" ".join(name))
    return list(dict.fromkeys(missing))


def asked_names(question: str, lex: Lexicon) -> tuple[tuple[str, ...], ...]:
    """The names a question uses: a word with a capital letter that is not the first of a
    sentence ("Moodle", "AirPrint", "Wi-Fi"), or with a capital inside it or digits anywhere
    ("iPad", "E3372"); capitalised words in a row are one name. In German every noun has a
    capital, so only inner capitals and digits count there. Paths (the user's own) and acronyms
    of three letters (vocabulary: "ACL", "LTE") are left out."""
    names: list[list[str]] = []
    last = -2
    for m in _NAME.finditer(question):
        word = m.group()
        inner = _distinctive(word)
        opens = not question[: m.start()].rstrip(" \"'(«“").rstrip() or bool(
            _SENTENCE_END.search(question[: m.start()])
        )  # a sentence's first word has its capital for the sentence ("… setup. Hvilken …")
        if not (inner or (not opens and word[0].isupper() and lex.language != "de")):
            continue
        if "/" in word or _acronym(word) or _HOST.fullmatch(word):
            continue  # a path or host is the user's own; a short acronym (ACL, PCs) is vocabulary
        if last == m.start() - 1 and question[last] == " ":
            names[-1].append(word)  # the next word of the same name
        else:
            names.append([word])
        last = m.end()
    return tuple(tuple(n) for n in names)


# A host name the user writes ("ws12.sales.example.com", "SMTP.corp.local"): three or more
# dotted parts name their own network, not a product the manuals should hold.
_HOST = re.compile(r"[\w-]+(?:\.[\w-]+)+\.[A-Za-z]{2,}")


def _acronym(word: str) -> bool:
    """A short acronym, or its plural: "ACL", "LTE", "PCs", "VMs"."""
    stem = word[:-1] if len(word) > 2 and word.endswith("s") else word
    return stem.isalpha() and stem.isupper() and len(stem) <= 3


def _distinctive(word: str) -> bool:
    """A word that is a name by its spelling: a capital inside it or letters with digits
    ("AutomationDirect", "GS2", "E3372"), not only a capital at its start."""
    return any(c.isupper() for c in word[1:]) or (
        any(c.isdigit() for c in word) and any(c.isalpha() for c in word)
    )


def _known_name(name: Sequence[str], store: TermStore, lex: Lexicon) -> bool:
    """A name of several words is known when the manuals hold it as written; or, when some of
    its words are names by their spelling (a model number, a product), when they hold one of
    those ("AutomationDirect GS2": the manual says GS2; "Huawei E3372" stays unknown); or else
    when they hold each of its words ("Ethernet-connected Mesa", "Symbian Series 60")."""
    if any(
        store.document_frequency(joiner.join(name).lower(), prefix=False)
        for joiner in (" ", "-", "")
    ):
        return True
    marked = [w for w in name if _distinctive(w)]
    if marked:
        return any(_known(w, store, lex) for w in marked)
    return all(_known(w, store, lex) for w in name)


def _known(word: str, store: TermStore, lex: Lexicon) -> bool:
    """A name is known when the store holds it, or (an instance of a known family) it without
    its number ("ttyUSB2": ttyUSB), or, for a name of parts, a capitalised part."""
    low = word.lower()
    family = low.rstrip("0123456789")
    if store.document_frequency(lex.stem(low) if low.isalpha() else low, prefix=len(low) >= 3):
        return True
    if family != low and len(family) >= 3 and store.document_frequency(family):
        return True
    parts = [p for p in re.split(r"[-./+]", word) if p]
    return len(parts) > 1 and any(
        any(c.isupper() for c in p) and _known(p, store, lex) for p in parts
    )
