"""Word .docx (python-docx) -> blocks, as the other readers make them: headings from the
paragraph styles, one block per paragraph and list item, tables one row per line. The archive
is checked before it is opened (a zip bomb is refused)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from outpost.export.documents.document import Block, clean
from outpost.export.documents.readers.archive import check_zip
from outpost.runtime.errors import InputError


def read_docx(file: Path | BinaryIO) -> list[Block]:
    """Paragraphs under their heading styles (Heading 1-9, Title), list items, tables as rows;
    from the file's path or an open binary file (export/documents/ingest.py opens it)."""
    try:
        import docx
        from docx.oxml.ns import qn
        from docx.text.paragraph import Paragraph
    except ImportError:  # pragma: no cover - python-docx is part of the [export] extra
        raise InputError(
            "reading .docx needs python-docx: pip install 'outpost-llm[export]'"
        ) from None
    check_zip(file, "Word")
    try:
        document = docx.Document(str(file) if isinstance(file, Path) else file)
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file: one line
        raise InputError(f"unreadable Word file ({type(e).__name__}: {e})") from None
    blocks: list[Block] = []
    headings: list[tuple[int, str]] = []
    body = document.element.body
    for child in body.iterchildren():
        if child.tag == qn("w:p"):
            paragraph = Paragraph(child, document)
            text = clean(paragraph.text)
            if not text:
                continue
            level = _heading_level(paragraph.style.name if paragraph.style is not None else "")
            if level:
                headings = [(lv, h) for lv, h in headings if lv < level] + [(level, text)]
            else:
                blocks.append(Block(text, tuple(h for _, h in headings)))
        elif child.tag == qn("w:tbl"):
            table = docx.table.Table(child, document)
            rows = []
            for r in table.rows:
                cells = list(dict.fromkeys(clean(c.text) for c in r.cells))  # merged cells repeat
                rows.append(" | ".join(cells))
            text = clean("\n".join(rows), True)
            if text:
                blocks.append(Block(text, tuple(h for _, h in headings), code=True))
    return blocks


def _heading_level(style: str) -> int:
    if style == "Title":
        return 1
    if style.startswith("Heading "):
        try:
            return max(1, min(9, int(style.split()[1])))
        except ValueError:
            return 0
    return 0
