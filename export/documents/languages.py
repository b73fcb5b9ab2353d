"""The language of each chunk, recorded in the manifest for the runtime.

Each chunk is classified by py3langid (runtime/language/detect.py) among the languages Outpost reads.
A chunk too short to tell, or classified with little confidence, takes its document's language:
the page's own `<html lang>` where it declares one, else the language most of its sure chunks
are in, else the whole document's text classified at once. `--language` forces one language for everything. The manifest keeps the main language,
chunks per language and runs of chunk ids (`[first id, count, language]`), and each document's
language in `sources.documents`.

Translations are often partial: a chunk of the Norwegian manual may open in Norwegian and go on
in English where the translation stops. In a bundle of several languages each chunk's sentences
are classified too, and a chunk with a share of another language is recorded under `also`
(runs of chunk ids per language), so a question in that language still finds it.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import cast

from outpost.runtime.bundle.manifest import Languages
from outpost.runtime.files import open_plain
from outpost.runtime.language.detect import MAIN, code, detect

SURE = 0.9  # a chunk's own detection is kept at this probability or more
DOCUMENT_SURE = 0.5  # a whole document's detection is used at this probability or more
SHORTEST = 60  # characters: shorter chunks take their document's language
SENTENCE = 40  # characters: shorter sentences are not classified alone
ALSO_SHARE = 0.15  # of a chunk's classified sentences (by characters) to count as also in it
_HTML_LANG = re.compile(
    rb"<html[^>]*?\blang\s*=\s*[\"']?([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)*)", re.I
)


def declared(path: Path) -> str | None:
    """The language an HTML page declares (`<html lang="nb-NO">`), if Outpost reads it."""
    if path.suffix.lower() not in (".html", ".htm", ".xhtml"):
        return None
    try:
        with open_plain(path, follow=False) as f:  # never a FIFO put in its place: no blocking
            head = f.read(8192)
    except (OSError, ValueError):
        return None
    m = _HTML_LANG.search(head)
    return code(m.group(1).decode("ascii")) if m else None


def chunk_languages(chunks, documents: list[dict], forced: str | None, log) -> Languages:
    """Each chunk's language; fills each document's "language"; the manifest's `languages`."""
    by_source: dict[str, list[int]] = {}
    for i, c in enumerate(chunks):
        by_source.setdefault(c.source, []).append(i)
    found: list[str] = [MAIN] * len(chunks)
    if forced:
        found = [forced] * len(chunks)
    else:
        log(f"detecting the language of {len(chunks)} chunks")
        sure: dict[int, str] = {}
        for i, c in enumerate(chunks):
            if len(c.text) >= SHORTEST:
                language, p = detect(c.text)
                if p >= SURE:
                    sure[i] = language
        for d in documents:
            ids = by_source.get(d["path"], [])
            votes = Counter(sure[i] for i in ids if i in sure)
            default = d.get("declared") or (votes.most_common(1)[0][0] if votes else None)
            if default is None and ids:  # no chunk was sure alone: the whole document decides
                language, p = detect(" ".join(chunks[i].text for i in ids)[:5000])
                default = language if p >= DOCUMENT_SURE else MAIN
            for i in ids:  # (default is None only for a document without chunks)
                found[i] = sure.get(i, default or MAIN)
    for d in documents:
        ids = by_source.get(d["path"], [])
        votes = Counter(found[i] for i in ids)
        d["language"] = votes.most_common(1)[0][0] if votes else (forced or MAIN)
        d.pop("declared", None)
    counts = Counter(found)
    runs: list[list] = []
    for i, language in enumerate(found):
        if runs and runs[-1][2] == language:
            runs[-1][1] += 1
        else:
            runs.append([i, 1, language])
    main = counts.most_common(1)[0][0] if counts else (forced or MAIN)
    also = {} if forced or len(counts) < 2 else _also(chunks, found, tuple(sorted(counts)))
    shown = ", ".join(f"{k} {v}" for k, v in counts.most_common())
    mixed = sum(len(ids) for ids in also.values())
    log(f"languages: {shown or 'none'} (main: {main}; {mixed} chunks hold a second language)")
    languages = {
        "main": main,
        "chunks": dict(counts),
        "runs": runs,
        "also": {k: _id_runs(ids) for k, ids in sorted(also.items())},
        "forced": bool(forced),
    }
    return cast(Languages, languages)  # its rows are lists, as a manifest read back holds them


def _also(chunks, found: list[str], among: tuple[str, ...]) -> dict[str, list[int]]:
    """Chunk ids per language that hold a share of it besides their own language."""
    from outpost.runtime.ask.units import split_units

    also: dict[str, list[int]] = {}
    for i, c in enumerate(chunks):
        chars: Counter = Counter()
        for u in split_units(c.text):
            if len(u.text) >= SENTENCE:
                language, p = detect(u.text, among)
                if p >= SURE:
                    chars[language] += len(u.text)
        total = sum(chars.values())
        for language, n in chars.items():
            if language != found[i] and n >= ALSO_SHARE * total:
                also.setdefault(language, []).append(i)
    return also


def _id_runs(ids: list[int]) -> list[list[int]]:
    """Sorted chunk ids as runs `[first id, count]`."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1][1] += 1
        else:
            runs.append([i, 1])
    return runs
