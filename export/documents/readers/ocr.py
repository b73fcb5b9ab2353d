"""Pages without a text layer, recognised: poppler's `pdftoppm` renders the page at DPI and
Debian's `tesseract` reads it (tesseract-ocr and its language packs, installed by `make`'s
system-deps like chromium; nothing is downloaded). Build side only: a device never reads a PDF.

The first page is recognised in English; when its text is in another language Outpost reads and
that language's pack is installed, every page is recognised in it (the first again too), so
"å", "ø" and "ß" come out as written. Each page keeps its words' mean confidence (tesseract's,
0-100), which the reader writes under the page's chunks ("p. 3, scanned, OCR 91%").
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DPI = 300
TIMEOUT = 120  # seconds for one page: a page that takes longer is left unread
# Outpost's languages (runtime/language/detect.py) -> tesseract's pack names.
PACKS = {
    "en": "eng",
    "nb": "nor",
    "nl": "nld",
    "de": "deu",
    "fr": "fra",
    "es": "spa",
    "sv": "swe",
    "da": "dan",
    "fi": "fin",
    "it": "ita",
    "pt": "por",
}


@dataclass(frozen=True)
class Recognised:
    text: str
    confidence: float  # mean word confidence, 0-100
    language: str


def available() -> bool:
    return bool(shutil.which("tesseract") and shutil.which("pdftoppm"))


def packs() -> set[str]:
    done = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True)
    return {line.strip() for line in done.stdout.splitlines()[1:] if line.strip()}


def render(pdf: bytes, page: int) -> bytes:
    """Page `page` (1-based) as a greyscale PNG at DPI (b"" when poppler cannot render it)."""
    with tempfile.TemporaryDirectory(prefix="outpost-ocr-") as folder:
        out = Path(folder) / "page"
        pages = ["-f", str(page), "-l", str(page), "-singlefile"]
        try:
            done = subprocess.run(
                ["pdftoppm", "-r", str(DPI), "-gray", "-png", *pages, "-", str(out)],
                input=pdf,
                capture_output=True,
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            return b""
        png = out.with_suffix(".png")
        return png.read_bytes() if done.returncode == 0 and png.exists() else b""


def read_image(png: bytes, pack: str) -> tuple[str, float]:
    """The image's text, line by line, and its words' mean confidence."""
    try:
        done = subprocess.run(
            ["tesseract", "stdin", "stdout", "-l", pack, "--psm", "3", "tsv"],
            input=png,
            capture_output=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return "", 0.0
    lines: dict[tuple[str, ...], list[str]] = {}
    confidences = []
    for row in done.stdout.decode("utf-8", "replace").splitlines()[1:]:
        cells = row.split("\t")
        if len(cells) < 12 or not cells[11].strip():
            continue
        try:
            confidence = float(cells[10])
        except ValueError:
            continue
        if confidence < 0:
            continue
        lines.setdefault(tuple(cells[2:5]), []).append(cells[11])  # block, paragraph, line
        confidences.append(confidence)
    text = "\n".join(" ".join(words) for words in lines.values())
    return text, (sum(confidences) / len(confidences) if confidences else 0.0)


def recognise(pdf: bytes, pages: list[int]) -> dict[int, Recognised]:
    """The text of each page in `pages` (1-based), in the language its first page reads in."""
    from outpost.runtime.language.detect import detect

    if not pages:
        return {}
    installed = packs()
    language = "en"
    out: dict[int, Recognised] = {}
    for n, page in enumerate(pages):
        png = render(pdf, page)
        if not png:
            continue
        text, confidence = read_image(png, PACKS[language])
        if n == 0 and len(text) > 200:
            found, _ = detect(text)
            if found != "en" and PACKS.get(found) in installed:
                language = found
                text, confidence = read_image(png, PACKS[language])
        out[page] = Recognised(text, confidence, language)
    return out
