"""A sentence the model writes is shown only when it is `attributable` to one quoted window: its
facts and content words come from that window or the question, and it adds something the
question did not say.
"""

from __future__ import annotations

from outpost.runtime.ask.question import Question, as_question
from outpost.runtime.ask.support import facts, normalise
from outpost.runtime.ask.terms import terms
from outpost.runtime.language.lexicon import Lexicon


def attributable(
    sentence: str, window: str, question: Question | str = "", lex: Lexicon | None = None
) -> bool:
    """A sentence may stand above a quote only when everything it says comes from that window
    (or the question): every fact (number, name, code, path) and nearly every content word, and
    it adds something from the window the question did not say (not the question echoed)."""
    if sentence.rstrip().endswith((":", ",", ";")):
        return False  # a lead-in or a fragment: it promises what it does not say
    q = as_question(question, lex)
    asked = q.asked.normal
    source = normalise(window)
    found = [normalise(f) for f in facts(sentence)]
    if any(f not in source and f not in asked for f in found):
        return False
    words, have, wanted = terms(sentence, q.lex), terms(window, q.lex), q.asked.terms
    if not words:
        return False
    missing = words - have - wanted
    if len(missing) > max(1, len(words) // 6):
        return False
    adds = (words & have) - wanted or {f for f in found if f in source and f not in asked}
    return bool(adds)
