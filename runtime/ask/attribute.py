"""A sentence the model writes is shown only when it is `attributable` to one quoted window: its
facts and content words come from that window or the question, and it adds something the
question did not say. `doomed` tells, while a sentence is still being written, that it can no
longer be: a finished fact in it is in neither.
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


_OPENERS = {"`": "`", '"': '"', "\u201c": "\u201d"}


def doomed(prefix: str, window: str, question: Question | str = "") -> bool:
    """Whether a sentence that starts with `prefix` can no longer be attributable to `window`:
    a fact in its finished words (those before the last white space) is in neither the window
    nor the question. Finished facts stay facts of the whole sentence, so what this stops would
    not have been shown. With a quote or backtick left open nothing is decided yet (the quoted
    name it opens is one fact, found whole or not at all)."""
    cut = max(prefix.rfind(" "), prefix.rfind("\n"), prefix.rfind("\t"))
    done = prefix[:cut] if cut > 0 else ""
    if not done or any(
        done.count(o) % 2 if o == c else done.count(o) > done.count(c) for o, c in _OPENERS.items()
    ):
        return False
    q = as_question(question)
    source, asked = normalise(window), q.asked.normal
    return any((f := normalise(x)) not in source and f not in asked for x in facts(done))
