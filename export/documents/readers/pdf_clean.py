"""PDF text as a search reads it: typographic look-alikes, line-end hyphenation and the running
headers and footers a typeset manual repeats on every page.

- `normalise`: U+2212 (the minus groff and TeX set for an option's dash: "−f") and the Unicode
  hyphens become "-", an en dash that starts a word is the "--" LaTeX set as one ("–trace",
  Sphinx's PDFs) and becomes "--" again, soft hyphens go, and a word hyphenated at a line end is joined again when
  the document writes it whole elsewhere ("config-\\nuration" → "configuration"), or keeps its
  hyphen when the document writes it hyphenated ("command-\\nline" → "command-line"). A split
  the document never resolves keeps its hyphen: nothing is joined into a word the manual does
  not have. Ligatures (ﬁ, ﬂ) are left to `clean`'s NFKC (export/documents/document.py).
- `running`: the lines a page starts or ends with that recur on many pages once digits are set
  aside ("Verilator, Release 5.006", "Chapter 3. Installation 27"): the header and footer;
  `without_running` drops them, and the "(continued from previous page)" of a split block.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from dataclasses import dataclass

LOOKALIKES = str.maketrans({"\u2212": "-", "\u2010": "-", "\u2011": "-", "\u00ad": None})
_OPTION_DASH = re.compile(r"(?<![\w\u2013-])\u2013(?=[A-Za-z])")  # "–trace", not "3–5" or "a–b"
_HYPHENATED = re.compile(r"(\w+)-[ \t]*\r?\n[ \t]*([a-z]\w*)")
_WORD = re.compile(r"\w+(?:-\w+)*")
CONTINUED = re.compile(r"\s*\(?continued (?:from|on) (?:the )?(?:previous|next) page\)?\s*$", re.I)
EDGE = 2  # lines at a page's top and bottom that may be its header or footer
RUNNING = 0.4  # share of the pages a line must recur on to be a running header or footer
MIN_PAGES = 4


def normalise(text: str) -> str:
    """`text` with the look-alikes replaced and line-end hyphenation resolved (module docstring)."""
    text = _OPTION_DASH.sub("--", text.replace("\r\n", "\n").translate(LOOKALIKES))
    known = Counter(_WORD.findall(text))

    def join(m: re.Match) -> str:
        left, right = m.group(1), m.group(2)
        if known[left + right]:
            return left + right
        return f"{left}-{right}"

    return _HYPHENATED.sub(join, text)


def _key(line: str) -> str:
    return re.sub(r"\d+", "#", " ".join(line.split()).lower())


def _edges(page: str) -> list[str]:
    lines = [line for line in page.split("\n") if line.strip()]
    return lines[:EDGE] + lines[-EDGE:]


_LEADING, _TRAILING = re.compile(r"^\s*(\d{1,4})\b"), re.compile(r"\b(\d{1,4})\s*$")


def _numbers(line: str) -> set[int]:
    """The numbers a line starts or ends with: where a page number stands in a header or footer
    ("27 Chapter 3. Installation", "5.3. Cross Compilation 18")."""
    return {int(m.group(1)) for r in (_LEADING, _TRAILING) if (m := r.search(line))}


@dataclass(frozen=True)
class Running:
    keys: frozenset[str]  # header and footer lines that recur (digits set aside)
    offset: int | None  # printed page number minus the page's index, when pages are numbered


def running(pages: list[str]) -> Running:
    """The header and footer of a typeset document: among the first and last EDGE lines of a
    page, those on at least RUNNING of the pages once digits are set aside ("Verilator, Release
    5.006"), and the lines that carry the page's printed number ("5.3. Cross Compilation 18"
    on the 21st page): the number that grows with the page on most pages gives the offset."""
    if len(pages) < MIN_PAGES:
        return Running(frozenset(), None)
    seen: Counter[str] = Counter()
    offsets: Counter[int] = Counter()
    for i, page in enumerate(pages):
        edges = _edges(page)
        seen.update({_key(line) for line in edges})
        offsets.update({n - i for line in edges for n in _numbers(line)})
    keys = frozenset(k for k, n in seen.items() if n >= RUNNING * len(pages))
    offset, count = offsets.most_common(1)[0] if offsets else (None, 0)
    return Running(keys, offset if count >= RUNNING * len(pages) else None)


def without_running(page: str, index: int, found: Running) -> str:
    """The page without its header and footer lines (only at its edges, never inside)."""
    lines = page.split("\n")
    body = [i for i, line in enumerate(lines) if line.strip()]
    edges = set(body[:EDGE] + body[-EDGE:])

    def runs(line: str) -> bool:
        if _key(line) in found.keys:
            return True
        return found.offset is not None and index + found.offset in _numbers(line)

    kept = (line for i, line in enumerate(lines) if i not in edges or not runs(line))
    return "\n".join(line for line in kept if not CONTINUED.match(line))


def pdftotext(data: bytes, options: list[str], timeout: float) -> str | None:
    """poppler's `pdftotext OPTIONS - -` over the PDF's bytes, as UTF-8 text; None when poppler
    is missing, fails on the file or takes longer than `timeout` seconds."""
    try:
        done = subprocess.run(
            ["pdftotext", *options, "-enc", "UTF-8", "-", "-"],
            input=data,
            capture_output=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None
