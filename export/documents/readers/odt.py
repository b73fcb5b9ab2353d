"""OpenDocument text (.odt, what LibreOffice writes) -> blocks, as the Word reader makes them:
headings from `text:h` and its outline level, one block per paragraph and list item, tables one
row per line with the header rows first. Only content.xml is read (styles.xml holds page
headers and footers, furniture); tables of contents, indexes, comments and tracked deletions
are left out, footnotes and text boxes follow their paragraph.

The archive and the XML are checked before they are parsed (archive.py): size, zip bomb, entity
declarations, DOCTYPE, depth. The body is read as it is parsed: each paragraph, list or table
directly in the text (or in a section) is turned into blocks and dropped from the tree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO
from xml.etree.ElementTree import Element

from outpost.export.documents.document import Block, clean
from outpost.export.documents.readers.archive import open_zip, read_part, xml_events, xml_text
from outpost.runtime.errors import InputError

KIND = "OpenDocument"
MAX_SPACES = 100  # what one <text:s text:c="N"/> gives: a hostile N cannot fill the memory

_NS = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
    "svg": "urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0",
}


def _q(name: str) -> str:
    prefix, _, local = name.partition(":")
    return f"{{{_NS[prefix]}}}{local}"


BODY, TEXT = _q("office:body"), _q("office:text")
H, P, SPAN, A = _q("text:h"), _q("text:p"), _q("text:span"), _q("text:a")
S, TAB, LINE_BREAK = _q("text:s"), _q("text:tab"), _q("text:line-break")
LIST, LIST_ITEM, LIST_HEADER = _q("text:list"), _q("text:list-item"), _q("text:list-header")
SECTION, NOTE, NOTE_BODY = _q("text:section"), _q("text:note"), _q("text:note-body")
TABLE, ROW, CELL = _q("table:table"), _q("table:table-row"), _q("table:table-cell")
HEADER_ROWS = _q("table:table-header-rows")
ROW_GROUPS = {_q("table:table-rows"), _q("table:table-row-group")}
FRAME = _q("draw:frame")
# Left out with all they hold: what a reader of the page does not read as the manual's text.
SKIP = {
    _q(name)
    for name in (
        "text:table-of-content",
        "text:alphabetical-index",
        "text:illustration-index",
        "text:table-index",
        "text:object-index",
        "text:user-index",
        "text:bibliography",
        "text:tracked-changes",
        "text:sequence-decls",
        "text:variable-decls",
        "text:user-field-decls",
        "text:note-citation",
        "text:number",  # a list's or heading's number as last shown (the Word reader has none)
        "text:soft-page-break",
        "office:annotation",
        "office:forms",
        "svg:title",
        "svg:desc",
    )
}
_FOLD = re.compile(r"[ \t\r\n]+")  # ODF folds white space in text as HTML does


def read_odt(file: Path | BinaryIO) -> list[Block]:
    """Blocks of an .odt, from its path or an open binary file (export/documents/ingest.py
    opens it)."""
    with open_zip(file, KIND) as z:
        data = read_part(z, "content.xml", KIND)
    if data is None:
        raise InputError(f"not an {KIND} text file (it has no content.xml)")
    reader = _OdtBlocks()
    # (element, whether its children are the body's flow: office:text and its sections)
    stack: list[tuple[Element, bool]] = []
    saw_text = False
    for event, element in xml_events(xml_text(data, KIND, "content.xml"), KIND, "content.xml"):
        if event == "start":
            parent, parent_flow = stack[-1] if stack else (None, False)
            flow = (element.tag == TEXT and parent is not None and parent.tag == BODY) or (
                element.tag == SECTION and parent_flow
            )
            saw_text |= flow
            stack.append((element, flow))
            continue
        stack.pop()
        if stack and stack[-1][1]:  # a paragraph, list or table of the body, now complete
            reader.flow(element)
            stack[-1][0].remove(element)
    if not saw_text:
        raise InputError(f"an {KIND} file without text (a spreadsheet or a presentation?)")
    return reader.blocks


class _OdtBlocks:
    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.headings: list[tuple[int, str]] = []

    def _path(self) -> tuple[str, ...]:
        return tuple(h for _, h in self.headings)

    def flow(self, element: Element) -> None:
        """Blocks of a paragraph, heading, list, table or anything holding them."""
        tag = element.tag
        if tag in SKIP:
            return
        if tag == H:
            later: list[Element] = []
            title = clean(self._inline(element, later))
            if title:
                level = _level(element.get(_q("text:outline-level"), "1"))
                self.headings = [(lv, h) for lv, h in self.headings if lv < level]
                self.headings.append((level, title))
            for e in later:
                self.flow(e)
        elif tag == P:
            later = []
            raw = self._inline(element, later)
            code = "\n" in raw.strip()  # kept line breaks keep their indentation too
            text = clean(raw, keep_lines=code)
            if text:
                self.blocks.append(Block(text, self._path(), code=code))
            for e in later:
                self.flow(e)
        elif tag == TABLE:
            header: list[str] = []
            body: list[str] = []
            self._rows(element, header, body)
            text = clean("\n".join(header + body), True)
            if text:
                self.blocks.append(Block(text, self._path(), code=True))
        else:  # a list, a list item, a section, a frame, a text box, a note's body...
            for child in element:
                self.flow(child)

    def _inline(self, element: Element, later: list[Element]) -> str:
        """The text of a paragraph; notes and frames it holds are put in `later`."""
        out = [_FOLD.sub(" ", element.text or "")]
        for child in element:
            tag = child.tag
            if tag == S:
                out.append(" " * _count(child.get(_q("text:c"), "1")))
            elif tag == TAB:
                out.append("\t")
            elif tag == LINE_BREAK:
                out.append("\n")
            elif tag == NOTE:
                later.extend(child.iter(NOTE_BODY))
            elif tag == FRAME:
                later.append(child)
            elif tag not in SKIP:
                out.append(self._inline(child, later))
            out.append(_FOLD.sub(" ", child.tail or ""))
        return "".join(out)

    def _rows(self, element: Element, header: list[str], body: list[str]) -> None:
        """A table's rows, one line each, cells joined " | "; a repeated row or cell is read
        once (a hostile repeat count cannot multiply the text)."""
        for child in element:
            if child.tag == HEADER_ROWS:
                self._rows(child, header, header)
            elif child.tag in ROW_GROUPS:
                self._rows(child, header, body)
            elif child.tag == ROW:
                cells = [self._cell(c) for c in child if c.tag == CELL]  # covered cells: merged
                while cells and not cells[-1]:
                    cells.pop()
                if cells:
                    body.append(" | ".join(cells))

    def _cell(self, element: Element) -> str:
        """A cell's paragraphs (and a table inside it, its notes, its text boxes) on one line."""
        texts: list[str] = []
        for child in element:
            if child.tag in (P, H):
                later: list[Element] = []
                texts.append(self._inline(child, later))
                texts.extend(self._cell(e) for e in later)
            elif child.tag not in SKIP:
                texts.append(self._cell(child))
        return clean(" ".join(texts))


def _level(value: str) -> int:
    try:
        return max(1, min(10, int(value)))
    except ValueError:
        return 1


def _count(value: str) -> int:
    try:
        return max(1, min(MAX_SPACES, int(value)))
    except ValueError:
        return 1
