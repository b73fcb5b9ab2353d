"""Which language a text is in, with py3langid (a maintained port of langid.py; a small
naive-Bayes model over byte n-grams, numpy only). Whole documents are detected reliably. A
question is short, so it is classified only among the bundle's own languages, and it falls back
to the bundle's main language when even that is unsure (`question_language`). `bundle_languages`
reads which languages a bundle's chunks are in, from its manifest.
"""

from __future__ import annotations

import bisect
import functools
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from outpost.runtime.bundle.manifest import Manifest


MAIN = "en"
# Language codes Outpost reads (ISO 639-1; Norwegian Bokmål as "nb") -> Snowball's name.
SNOWBALL = {
    "en": "english",
    "nb": "norwegian",
    "nl": "dutch",
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "sv": "swedish",
    "da": "danish",
    "fi": "finnish",
    "it": "italian",
    "pt": "portuguese",
}
LANGUAGES = tuple(SNOWBALL)
_ALIASES = {"no": "nb", "nn": "nb", "nob": "nb", "nno": "nb", "nor": "nb"}  # py3langid, HTML
MIN_SHARE = 0.7  # a question's detection must be at least this sure, else the main language
MIN_CHUNKS_SHARE = 0.05  # a language with fewer of the bundle's chunks is not asked in


def code(tag: str | None) -> str | None:
    """An ISO code Outpost reads, from an HTML/DOCX tag or a detector's label ("nb-NO",
    "no", "nl_BE" -> "nb", "nb", "nl"); None when it reads no such language."""
    if not tag:
        return None
    base = re.split(r"[-_]", tag.strip().lower())[0]
    base = _ALIASES.get(base, base)
    return base if base in SNOWBALL else None


@functools.cache
def _identifier(labels: tuple[str, ...]) -> Any:
    """py3langid's classifier restricted to `labels`, one per set (restricting is slow)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(labels))
    return identifier


_LOCK = threading.Lock()


def detect(text: str, among: tuple[str, ...] = LANGUAGES) -> tuple[str, float]:
    """(language, probability) of `text`, classified among `among` only."""
    labels = tuple(
        sorted({"no" if c == "nb" else c for c in among} | ({"nn"} if "nb" in among else set()))
    )
    with _LOCK:  # the first call for a set of languages builds its classifier
        identifier = _identifier(labels)
    label, p = identifier.classify(text[:20000])
    return code(label) or MAIN, float(p)


def question_language(question: str, languages: tuple[str, ...], main: str) -> str:
    """The question's language among the bundle's; the main language when unsure or when the
    bundle has only one."""
    if len(languages) < 2:
        return main
    found, p = detect(question, languages)
    return found if p >= MIN_SHARE else main


@dataclass(frozen=True)
class ChunkLanguages:
    """Each chunk's language (runs of chunk ids) and the chunks that hold a second one."""

    main: str
    starts: tuple[int, ...] = ()
    languages: tuple[str, ...] = ()
    also: dict = field(default_factory=dict)  # language -> (run starts, run ends)

    def of(self, chunk_id: int) -> str:
        at = bisect.bisect_right(self.starts, chunk_id) - 1
        return self.languages[at] if at >= 0 else self.main

    def holds(self, chunk_id: int, language: str) -> bool:
        """Whether the chunk is in `language`, or holds a share of it (a partial translation)."""
        if self.of(chunk_id) == language:
            return True
        starts, ends = self.also.get(language, ((), ()))
        at = bisect.bisect_right(starts, chunk_id) - 1
        return at >= 0 and chunk_id < ends[at]


def bundle_languages(manifest: Manifest) -> tuple[str, tuple[str, ...], ChunkLanguages]:
    """(main language, the languages a question may be in, each chunk's languages) from the
    manifest's `languages` (bundles from before it: English throughout)."""
    info = manifest.languages or {}
    main = code(info.get("main")) or MAIN
    counts = {c: int(v) for k, v in (info.get("chunks") or {}).items() if (c := code(k))}
    total = sum(counts.values()) or 1
    present = sorted(k for k, n in counts.items() if n >= max(1, MIN_CHUNKS_SHARE * total))
    runs = info.get("runs") or []
    also = {
        c: (tuple(int(r[0]) for r in v), tuple(int(r[0]) + int(r[1]) for r in v))
        for k, v in (info.get("also") or {}).items()
        if (c := code(k))
    }
    chunks = ChunkLanguages(
        main,
        tuple(int(r[0]) for r in runs),
        tuple(code(str(r[2])) or main for r in runs),
        also,
    )
    return main, tuple(present) or (main,), chunks
