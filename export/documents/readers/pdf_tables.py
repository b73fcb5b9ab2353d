"""Ruled tables in a PDF, read as HTML tables are: one row per line, cells joined by " | ", the
header row first, as one block.

- Where a table is: pdfplumber's ruled-grid finder (the lines and rectangles a page draws). A
  one-column box is a framed code block, not a table, and stays text.
- What its cells say: poppler's words (`pdftotext -bbox-layout`), each put in the cell its
  centre falls in. pdfplumber's own text runs justified words together ("Makeincludefile…"),
  poppler's does not (docs/decisions.md, "PDF text").
- The rest of such a page: poppler's lines in its reading order, the table put where its first
  line would be. Pages without a table keep `pdftotext`'s plain text (pdf.py).
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass

from outpost.export.documents.readers.pdf_clean import pdftotext

ROW = "\x1f"  # starts a line of page text that is a table row (pdf.py's blocks() reads it)
MIN_ROWS = 2
MIN_COLUMNS = 2
TIMEOUT = 60  # seconds for one page's words

_LINE = re.compile(r"<line [^>]*>(.*?)</line>", re.S)
_WORD = re.compile(
    r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>', re.S
)

Box = tuple[float, float, float, float]  # x0, top, x1, bottom in points, from the page's top


@dataclass(frozen=True)
class Table:
    box: Box
    cells: list[list[Box | None]]  # rows of cells; None where a merged cell spans


def find(data: bytes) -> dict[int, list[Table]]:
    """The tables of each page (0-based) that has any; {} when pdfplumber is missing or cannot
    read the file (the pages are then read as text)."""
    try:
        import pdfplumber
    except ImportError:  # pragma: no cover - pdfplumber is part of the [export] extra
        return {}
    found: dict[int, list[Table]] = {}
    try:
        with pdfplumber.open(io.BytesIO(data)) as pdf:
            for i, page in enumerate(pdf.pages):
                tables = [t for t in map(_table, page.find_tables()) if t is not None]
                if tables:
                    found[i] = sorted(tables, key=lambda t: t.box[1])
    except Exception:  # noqa: BLE001 - pdfminer's errors are many and untyped: no tables
        return {}
    return found


def _table(table) -> Table | None:
    rows = [list(row.cells) for row in table.rows]
    rows = [r for r in rows if any(c is not None for c in r)]
    widest = max((sum(c is not None for c in r) for r in rows), default=0)
    if len(rows) < MIN_ROWS or widest < MIN_COLUMNS:
        return None
    return Table(tuple(table.bbox), rows)


def page_text(data: bytes, index: int, tables: list[Table]) -> str | None:
    """Page `index`'s text with its tables as ROW lines; None when poppler fails on it."""
    words = _words(data, index)
    if words is None:
        return None
    out: list[str] = []
    placed: set[int] = set()
    for line in words:
        inside = [k for k, t in enumerate(tables) if any(_within(w, t.box) for w in line)]
        if inside:
            k = inside[0]
            if k not in placed:
                placed.add(k)
                out.extend(ROW + row for row in rows(tables[k], [w for ws in words for w in ws]))
            line = [w for w in line if not any(_within(w, t.box) for t in tables)]
        if line:
            out.append(" ".join(w[4] for w in line))
    return "\n".join(out)


def rows(table: Table, words: list[tuple[float, float, float, float, str]]) -> list[str]:
    """The table's rows as lines, cells joined by " | "; empty rows left out."""
    lines = []
    for row in table.cells:
        cells = [_cell(box, words) for box in row if box is not None]
        if any(cells):
            lines.append(" | ".join(cells))
    return lines


def _cell(box: Box, words: list[tuple[float, float, float, float, str]]) -> str:
    return " ".join(w[4] for w in words if _within(w, box))  # in poppler's reading order


def _within(word: tuple[float, float, float, float, str], box: Box) -> bool:
    x, y = (word[0] + word[2]) / 2, (word[1] + word[3]) / 2
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def _words(data: bytes, index: int) -> list[list[tuple[float, float, float, float, str]]] | None:
    """Page `index`'s lines in poppler's reading order, each its words with their boxes."""
    page = str(index + 1)
    text = pdftotext(data, ["-bbox-layout", "-f", page, "-l", page], TIMEOUT)
    if text is None:
        return None
    return [
        [
            (float(a), float(b), float(c), float(d), html.unescape(w))
            for a, b, c, d, w in _WORD.findall(line)
        ]
        for line in _LINE.findall(text)
    ]
