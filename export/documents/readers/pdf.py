"""PDF -> blocks, one paragraph at a time, under the section heading, with the page number.

- Text: pypdf's, by default. With `poppler=True` (`outpost export --pdf-text poppler`):
  poppler's `pdftotext` (of the words of a manual's HTML version it kept 0.96-1.00 intact where
  pypdf kept 0.16-0.96), running headers and footers dropped, look-alikes normalised and
  line-end hyphenation resolved (pdf_clean.py), ruled tables as rows (pdf_tables.py), a
  definition's term joined to its description (`with_terms`), and headings from the PDF's
  outline (its bookmarks): a line that reads as the next outline entry's title (section
  numbers aside) starts that section, a section whose title line is not found starts where the
  last one did or with its page, and a started section's title met again is its running
  header. That route is not the default: on dev2's Verilator manual it found the answering
  line as often but answered worse end to end (docs/decisions.md, "PDF text").
- Headings by default, and without an outline: numbered lines ("2.3 Filters", "Chapter 4").
- Scanned pages (no text layer) are recognised by OCR when tesseract is installed (ocr.py); their
  chunks say so in the page label ("p. 3, scanned, OCR 91%").
"""

from __future__ import annotations

import io
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from outpost.export.documents.document import Block, clean
from outpost.export.documents.readers.pdf_clean import (
    normalise,
    pdftotext,
    running,
    without_running,
)
from outpost.export.documents.readers.pdf_tables import ROW
from outpost.runtime.errors import InputError

PDF_HEADING = re.compile(r"^(\d+(\.\d+)*\.?|[A-Z]\.|Chapter \d+|Section \d+)\s+\S.{0,70}$")
_NUMBERING = re.compile(
    r"^(?:chapter\s+\w+\s+|appendix\s+\w+\s+)?(?:\d+(?:\.\d+)*\.?|[A-Z]\.)\s+", re.I
)
MIN_TEXT = 20  # characters a page needs to count as having a text layer
TIMEOUT = 300  # seconds for pdftotext over one file


@dataclass(frozen=True)
class Section:
    page: int  # 0-based
    path: tuple[str, ...]  # the outline's titles from the top down to this one


def read_pdf(
    file: Path | BinaryIO, notes: list[str] | None = None, poppler: bool = False
) -> list[Block]:
    """Blocks of a PDF, from its path or an open binary file (export/documents/ingest.py opens
    it); what a user should know (pages recognised, tables read) goes to `notes`. `poppler`:
    the cleaner text of the module docstring, not the default (docs/decisions.md, "PDF text")."""
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError:  # pragma: no cover - pypdf is part of the [export] extra
        raise InputError("reading PDF needs pypdf: pip install 'outpost-llm[export]'") from None
    data = file.read_bytes() if isinstance(file, Path) else file.read()
    notes = notes if notes is not None else []
    try:
        reader = PdfReader(io.BytesIO(data))
        count = len(reader.pages)
        sections = outline(reader) if poppler else []
        pages = _pdftotext(data, count) if poppler and shutil.which("pdftotext") else None
        if poppler and pages is None:
            notes.append("read with pypdf: install poppler-utils for cleaner PDF text")
        elif poppler and pages is not None:
            pages = _with_tables(data, pages, notes)
        if pages is None:
            poppler = False
            pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, OSError, ValueError, KeyError, RecursionError) as e:
        raise InputError(f"unreadable PDF ({e})") from None
    labels = [f"p. {n}" for n in range(1, count + 1)]
    blank = [i for i, p in enumerate(pages) if len(p.strip()) < MIN_TEXT]
    if blank:
        pages, labels = _recognise(data, pages, labels, blank, notes)
    if poppler:
        found = running(pages)
        pages = [without_running(p, i, found) for i, p in enumerate(pages)]
        pages = normalise("\f".join(pages)).split("\f")
    read = blocks(pages, labels, sections)
    return with_terms(read) if poppler else read


def _pdftotext(data: bytes, count: int) -> list[str] | None:
    """The pages' text, in reading order; None when poppler fails on the file."""
    text = pdftotext(data, ["-eol", "unix"], TIMEOUT)
    if text is None:
        return None
    pages = text.split("\f")
    return (pages + [""] * count)[:count]  # a form feed ends each page, the last one too


def _with_tables(data: bytes, pages: list[str], notes: list[str]) -> list[str]:
    """`pages` with the pages that hold ruled tables read again, the tables as ROW lines."""
    from outpost.export.documents.readers import pdf_tables

    start = time.perf_counter()
    found = pdf_tables.find(data)
    pages = list(pages)
    for index, tables in found.items():
        text = pdf_tables.page_text(data, index, tables) if index < len(pages) else None
        if text is not None:
            pages[index] = text
    if found:
        count = sum(len(t) for t in found.values())
        notes.append(
            f"{count} table{'s' * (count != 1)} on {len(found)} page{'s' * (len(found) != 1)} read as rows "
            f"in {time.perf_counter() - start:.1f} s"
        )
    return pages


def _recognise(
    data: bytes, pages: list[str], labels: list[str], blank: list[int], notes: list[str]
) -> tuple[list[str], list[str]]:
    from outpost.export.documents.readers import ocr

    if not ocr.available():
        notes.append(
            f"{len(blank)} pages have no text layer (scanned?): install tesseract-ocr and "
            "poppler-utils to read them"
        )
        return pages, labels
    start = time.perf_counter()
    found = ocr.recognise(data, [i + 1 for i in blank])
    pages, labels = list(pages), list(labels)
    for i in blank:
        page = found.get(i + 1)
        if page is not None and len(page.text.strip()) >= MIN_TEXT:
            pages[i] = page.text
            labels[i] = f"p. {i + 1}, scanned, OCR {page.confidence:.0f}%"
    read = sum(1 for i in blank if "scanned" in labels[i])
    notes.append(
        f"{read} of {len(blank)} pages without a text layer recognised by OCR "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return pages, labels


def outline(reader) -> list[Section]:
    """The outline's entries in document order, each with its page and heading path."""
    found: list[Section] = []

    def walk(items: list, path: tuple[str, ...]) -> None:
        last: tuple[str, ...] = path
        for item in items:
            if isinstance(item, list):
                walk(item, last)
                continue
            title = clean(str(getattr(item, "title", "") or ""))
            try:
                page = reader.get_destination_page_number(item)
            except Exception:  # noqa: BLE001 - a broken bookmark: leave it out
                page = None
            if not title or page is None or page < 0:
                continue
            last = (*path, title)
            found.append(Section(page, last))

    try:
        walk(reader.outline, ())
    except Exception:  # noqa: BLE001 - a damaged outline: fall back to numbered lines
        return []
    return sorted(found, key=lambda s: s.page)  # stable: the outline's order within a page


def _title(line: str) -> str:
    return " ".join(_NUMBERING.sub("", line.strip()).split()).casefold()


def blocks(pages: list[str], labels: list[str], sections: list[Section]) -> list[Block]:
    """Paragraphs under their section: the outline's when there is one, else numbered lines."""
    out: list[Block] = []
    heading: tuple[str, ...] = ()
    pending = 0  # the next outline entry not yet started
    started: set[str] = set()  # the titles of the sections started so far (on their line)
    for number, page in enumerate(pages):
        para: list[str] = []
        while pending < len(sections) and sections[pending].page < number:
            heading = sections[pending].path  # its title line was not found: from its page on
            pending += 1
        keys = {_title(line) for line in page.split("\n")}
        heading, pending = _unfound(sections, pending, number, keys, heading)
        table: list[str] = []
        for line in [*page.split("\n"), ""]:  # the trailing "" ends the page's last paragraph
            if line.startswith(ROW):  # a table's row (pdf_tables.py): the table is one block
                _flush(out, para, heading, labels[number])
                table.append(line[len(ROW) :].strip())
                continue
            if table:
                out.append(
                    Block(clean("\n".join(table), keep_lines=True), (*heading, labels[number]))
                )
                table = []
            s = line.strip()
            starts = None
            if sections:
                key = _title(s)
                for k in range(pending, len(sections)):
                    if sections[k].page > number:
                        break
                    if key and key == sections[k].path[-1].casefold():
                        starts = k
                        break
                if starts is None and key in started:  # a started title again: a running header
                    continue
            elif PDF_HEADING.match(s) and not s.endswith((".", ",", ";")) and len(s) < 80:
                starts = -1
            if starts is not None:
                _flush(out, para, heading, labels[number])
                if starts >= 0:
                    heading, pending = sections[starts].path, starts + 1
                    started.update(_title(t) for t in heading)
                    heading, pending = _unfound(sections, pending, number, keys, heading)
                else:
                    heading = (clean(s),)
                continue
            if s:
                para.append(s)
            if para and (not s or (s.endswith((".", ":", "?", "!")) and len(" ".join(para)) > 300)):
                _flush(out, para, heading, labels[number])
    return out


TERM_WORDS, TERM_CHARS = 4, 48
_TERM_END = (".", ",", ";", ":", "?", "!", ")")


def with_terms(found: list[Block]) -> list[Block]:
    """A definition's term joined to its description. pdftotext sets the term of a definition
    list apart ("VERILATOR_GDB", then "If set, the command to run…"), where a line reads them
    together; alone, the term's line says nothing and the description does not name it. A
    term is a paragraph of at most TERM_WORDS words with no sentence stop, followed on the same
    page and under the same heading by a paragraph; a table row is never one."""
    out: list[Block] = []
    for block in found:
        last = out[-1] if out else None
        if (
            last is not None
            and last.headings == block.headings
            and "\n" not in last.text + block.text[:1]
            and len(last.text) <= TERM_CHARS
            and len(last.text.split()) <= TERM_WORDS
            and not last.text.endswith(_TERM_END)
        ):
            out[-1] = Block(f"{last.text} {block.text}", block.headings)
            continue
        out.append(block)
    return out


def _unfound(
    sections: list[Section], pending: int, page: int, keys: set[str], heading: tuple[str, ...]
) -> tuple[tuple[str, ...], int]:
    """Sections of this page whose title line is not on it start where the last one did: the
    heading and the next pending section after them."""
    while (
        pending < len(sections)
        and sections[pending].page == page
        and sections[pending].path[-1].casefold() not in keys
    ):
        heading, pending = sections[pending].path, pending + 1
    return heading, pending


def _flush(out: list[Block], para: list[str], heading: tuple[str, ...], label: str) -> None:
    """The paragraph so far as one block under its heading and page; `para` emptied."""
    if para:
        out.append(Block(clean(" ".join(para)), (*heading, label)))
        para.clear()
