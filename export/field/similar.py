"""Similar questions: the gaps of the field report (report.py) grouped so that one request asked
in several wordings is one row for the writers.

Identical questions (case and spacing aside) are one form; forms are taken most asked first, and
each joins the group whose first form (its representative) it is most similar to, when similar
enough, or starts a group. Comparing with the representative only, not with every member, keeps
a group from drifting one small step at a time.

- By words (no embedder): the Jaccard overlap of the two questions' content terms (the runtime's
  `terms`: stopwords and question words left out, stemmed in the question's language) at least
  WORD_OVERLAP, 0.5. Tried on written examples: "How do I flash the firmware over Bluetooth?"
  meets "Can I flash firmware via Bluetooth?" at 0.6, "flash firmware bluetooth" at 0.75 and
  "How do I update the firmware over Bluetooth?" at 0.6; "What is the warranty period?" meets
  "How long is the warranty?" at 0.5; while "How do I pair the controller over Bluetooth?"
  meets the flashing questions at 0.14-0.33. Short questions share few terms, so one term in
  two is already the same subject; below 0.5 the pairs were different requests.
- By meaning (`embed`, the bundle's embedder): the cosine of the two questions' vectors at least
  MEANING, 0.7. Measured with the default embedder (all-MiniLM-L6-v2, fp32) on 20 written
  questions (190 pairs, median 0.10): rewordings of one request scored 0.73-0.93 (the flashing
  questions above 0.77-0.90, the warranty pair 0.93, "reset the controller" and "where is the
  reset button" 0.84); different requests sharing words scored at most 0.52 (pairing vs
  flashing over Bluetooth). Between 0.53 and 0.65 lay both kinds (a default port asked two ways
  0.65, "guarantee" for "warranty" 0.60, a blank screen described two ways 0.53). 0.7 keeps the
  groups to one request each: a gap split into two rows costs a writer less than a gap hidden
  inside another group. Questions in a language the embedder was not trained on
  (`embed_languages`, the manifest's `embedder.languages`) are compared by words.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from outpost.runtime.ask.terms import terms
from outpost.runtime.errors import BundleError, OutpostError, one_line
from outpost.runtime.language.lexicon import Lexicon, lexicon

WORD_OVERLAP = 0.5  # Jaccard of content terms: one group (module docstring)
MEANING = 0.7  # cosine of the embedder's vectors: one group (module docstring)

Embed = Callable[[list[str]], np.ndarray]


def text(value: object) -> str:
    """A value from the log as text ("" for null): the rows are what a device wrote."""
    return "" if value is None else str(value)


@dataclass
class Form:
    """One question as asked (case and spacing aside), and the rows that asked it."""

    text: str
    language: str
    rows: list[dict] = field(default_factory=list)


def question_forms(rows: list[dict]) -> list[Form]:
    """The distinct questions of `rows`, most asked first (then the earliest asked)."""
    forms: dict[str, Form] = {}
    for r in sorted(rows, key=lambda r: text(r.get("time"))):
        question = " ".join(text(r.get("question")).split())
        form = forms.setdefault(question.casefold(), Form(question, text(r.get("language"))))
        form.rows.append(r)
    return sorted(forms.values(), key=lambda f: -len(f.rows))  # stable: earliest first on ties


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def group_forms(
    forms: Sequence[Form],
    embed: Embed | None = None,
    embed_languages: Collection[str] | None = None,
) -> list[list[int]]:
    """Greedy grouping of `forms` (most asked first): each form joins the group whose first form
    it is most similar to, when the similarity reaches the threshold, or starts a new group.
    Returns the groups as indices into `forms`, each group's first form first."""
    lexicons: dict[str, Lexicon] = {}
    for f in forms:
        if f.language not in lexicons:
            lexicons[f.language] = lexicon(f.language)
    words = [terms(f.text, lexicons[f.language]) for f in forms]
    by_meaning = [
        embed is not None and (embed_languages is None or f.language in embed_languages)
        for f in forms
    ]
    vectors = np.zeros((len(forms), 0), dtype=np.float32)
    if embed is not None and any(by_meaning):
        chosen = [i for i, m in enumerate(by_meaning) if m]
        found = np.asarray(embed([forms[i].text for i in chosen]), dtype=np.float32)
        vectors = np.zeros((len(forms), found.shape[1]), dtype=np.float32)
        vectors[chosen] = found / np.maximum(np.linalg.norm(found, axis=1, keepdims=True), 1e-12)
    groups: list[list[int]] = []
    with_term: dict[str, list[int]] = {}  # a term -> the groups whose first form holds it
    meaning_groups: list[int] = []  # the groups whose first form is compared by meaning
    for i in range(len(forms)):
        # Each score is the similarity over its threshold: 1 or more joins.
        scores: dict[int, float] = {}
        for g in {g for t in words[i] for g in with_term.get(t, ())}:
            first = groups[g][0]
            if not (by_meaning[i] and by_meaning[first]):
                scores[g] = jaccard(words[i], words[first]) / WORD_OVERLAP
        if by_meaning[i] and meaning_groups:
            cosines = vectors[[groups[g][0] for g in meaning_groups]] @ vectors[i]
            scores.update(zip(meaning_groups, (float(c) / MEANING for c in cosines), strict=True))
        best = max(scores, key=lambda g: (scores[g], -g), default=None)
        if best is not None and scores[best] >= 1.0:
            groups[best].append(i)
            continue
        groups.append([i])
        for t in words[i]:
            with_term.setdefault(t, []).append(len(groups) - 1)
        if by_meaning[i]:
            meaning_groups.append(len(groups) - 1)
    return groups


def open_meaning(bundle: str | Path, threads: int = 0) -> tuple[Embed, list[str] | None]:
    """The bundle's embedder as `build_report`'s `embed`, and the languages it was trained on
    (None: any). BundleError when the folder is not a bundle or its embedder does not load."""
    from outpost.runtime.ask.embed import open_embedder
    from outpost.runtime.bundle.open import open_bundle

    opened = open_bundle(bundle)
    info = opened.manifest.embedder
    try:
        embedder = open_embedder(opened.path, info, threads)
    except OutpostError:
        raise
    except Exception as e:  # noqa: BLE001 - onnxruntime and tokenizers raise their own types
        raise BundleError(
            f"cannot load {opened.folder / info.file} ({type(e).__name__}: "
            f"{one_line(str(e))[:160]}); copy the bundle again, or leave out --bundle to group "
            "questions by words"
        ) from None
    return embedder.embed, info.languages
