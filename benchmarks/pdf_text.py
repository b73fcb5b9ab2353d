"""Which PDF text extractor keeps a manual's words intact (issue 32, docs/decisions.md "PDF text").

    python benchmarks/pdf_text.py --pairs DIR [--json]

Manuals that ship the same text as PDF and as HTML are the reference: the HTML version's words
(as Outpost's HTML reader reads them) are what a search should find in the PDF's text. For each
extractor: the share of the HTML's words found intact in the PDF's text (as a multiset: a word
the HTML has 5 times must appear 5 times), before and after Outpost's normalisation of
typographic look-alikes (export/documents/readers/pdf_clean.py), and the time per page.

DIR holds pairs named NAME.pdf and NAME.html (or a folder NAME.html/ of HTML pages), for
example from Debian's bash-doc (bash.pdf and bash.html, the manual page set by groff;
bashref.pdf and bashref.html, the Texinfo reference) and debian-faq (debian-faq.en.pdf and its
HTML pages).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import subprocess
import time
import unicodedata
from collections import Counter
from pathlib import Path

WORD = re.compile(r"[^\W_](?:[\w.\-/]*[^\W_])?")


def words(text: str) -> Counter:
    return Counter(WORD.findall(unicodedata.normalize("NFC", text)))


def html_text(path: Path) -> str:
    from outpost.export.documents.readers.html_page import read_html

    pages = sorted(path.glob("*.html")) if path.is_dir() else [path]
    return "\n".join(
        b.text for p in pages for b in read_html(p.read_bytes().decode("utf-8", "replace"))
    )


def pypdf_plain(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [p.extract_text() or "" for p in PdfReader(path).pages]


def pypdf_layout(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [p.extract_text(extraction_mode="layout") or "" for p in PdfReader(path).pages]


def pdfium(path: Path) -> list[str]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(path))
    try:
        return [doc[i].get_textpage().get_text_bounded() for i in range(len(doc))]
    finally:
        doc.close()


def pdftotext(path: Path) -> list[str]:
    done = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True)
    return done.stdout.decode("utf-8", "replace").split("\f")


EXTRACTORS = {
    "pypdf": pypdf_plain,
    "pypdf layout": pypdf_layout,
    "pypdfium2": pdfium,
    "pdftotext (poppler)": pdftotext,
}


def intact(reference: Counter, text: str) -> float:
    got = words(text)
    return sum(min(n, got[w]) for w, n in reference.items()) / max(sum(reference.values()), 1)


def measure(folder: Path) -> list[dict]:
    from outpost.export.documents.readers.pdf_clean import normalise

    rows = []
    for pdf in sorted(folder.glob("*.pdf")):
        html = pdf.with_suffix(".html")
        if not html.exists():
            continue
        reference = words(html_text(html))
        for name, extract in EXTRACTORS.items():
            if name.startswith("pdftotext") and not shutil.which("pdftotext"):
                continue
            if name == "pypdfium2" and importlib.util.find_spec("pypdfium2") is None:
                continue  # not a dependency: pip install pypdfium2 to measure it
            start = time.perf_counter()
            pages = extract(pdf)
            seconds = time.perf_counter() - start
            text = "\n".join(pages)
            rows.append(
                {
                    "manual": pdf.name,
                    "pages": len(pages),
                    "extractor": name,
                    "words_intact": round(intact(reference, text), 4),
                    "words_intact_normalised": round(intact(reference, normalise(text)), 4),
                    "ms_per_page": round(1000 * seconds / max(len(pages), 1), 2),
                }
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = measure(args.pairs)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| manual | pages | extractor | words intact | after normalising | ms per page |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['manual']} | {r['pages']} | {r['extractor']} | {r['words_intact']:.3f} "
            f"| {r['words_intact_normalised']:.3f} | {r['ms_per_page']} |"
        )


if __name__ == "__main__":
    main()
