"""Markdown (markdown-it-py, CommonMark + tables) and Word .docx (python-docx) -> blocks.

Both keep what the other formats keep: the heading path of every block, one block per
paragraph and per list item, tables one row per line ("cell | cell"), code with its line breaks.
Inline markup is reduced to its text (emphasis markers and link targets dropped, code kept).
"""

from __future__ import annotations

from pathlib import Path

from outpost.export.ingest import Block, clean
from outpost.runtime.errors import InputError


def _inline_text(token) -> str:
    """Plain text of an inline token: text, code, line breaks; no markers or link targets."""
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(child.content)
    return "".join(parts)


def read_markdown(text: str) -> list[Block]:
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    blocks: list[Block] = []
    headings: list[tuple[int, str]] = []
    rows: list[str] = []  # the table being read, one "cell | cell" line per row
    row: list[str] = []
    level = 0  # > 0 inside a heading
    in_cell = False

    def path() -> tuple[str, ...]:
        return tuple(h for _, h in headings)

    for tok in tokens:
        kind = tok.type
        if kind == "heading_open":
            level = int(tok.tag[1])
        elif kind == "heading_close":
            level = 0
        elif kind in ("th_open", "td_open"):
            in_cell = True
            row.append("")
        elif kind in ("th_close", "td_close"):
            in_cell = False
        elif kind == "tr_close":
            while row and not row[-1]:  # cells a short row does not fill
                row.pop()
            rows.append(" | ".join(row))
            row = []
        elif kind == "table_close":
            blocks.append(Block(clean("\n".join(rows), True), path(), code=True))
            rows = []
        elif kind == "inline":
            text = clean(_inline_text(tok))
            if level:
                headings = [(lv, h) for lv, h in headings if lv < level] + [(level, text)]
            elif in_cell:
                row[-1] = text
            else:
                blocks.append(Block(text, path()))
        elif kind in ("fence", "code_block"):
            blocks.append(Block(clean(tok.content, True), path(), code=True))
    return blocks


MAX_DOCX_UNPACKED = 256 * 2**20  # a 500-page manual's XML is a few tens of MB
MAX_DOCX_RATIO = 200  # text XML compresses ~10x; a zip bomb ~1000x


def _check_zip(path: Path) -> None:
    """Refuse a .docx whose parts would unpack to more than MAX_DOCX_UNPACKED (or compress
    like a bomb) before python-docx reads any of it."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            parts = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise InputError(f"unreadable Word file ({type(e).__name__}: {e})") from None
    total = sum(p.file_size for p in parts)
    if total > MAX_DOCX_UNPACKED:
        raise InputError(
            f"the Word file unpacks to {total / 2**20:.0f} MB, over {MAX_DOCX_UNPACKED // 2**20} MB; "
            "split it or save it again"
        )
    for p in parts:
        if p.file_size > 2**20 and p.file_size > MAX_DOCX_RATIO * max(p.compress_size, 1):
            raise InputError(
                f"the Word file's part {p.filename} unpacks {p.file_size // max(p.compress_size, 1)}x; "
                "refusing what looks like a zip bomb"
            )


def read_docx(path: Path) -> list[Block]:
    """Paragraphs under their heading styles (Heading 1-9, Title), list items, tables as rows."""
    try:
        import docx
        from docx.oxml.ns import qn
    except ImportError:  # pragma: no cover - python-docx is part of the [export] extra
        raise InputError(
            "reading .docx needs python-docx: pip install 'outpost-llm[export]'"
        ) from None
    _check_zip(path)
    try:
        document = docx.Document(str(path))
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file: one line
        raise InputError(f"unreadable Word file ({type(e).__name__}: {e})") from None
    blocks: list[Block] = []
    headings: list[tuple[int, str]] = []
    body = document.element.body
    for child in body.iterchildren():
        if child.tag == qn("w:p"):
            paragraph = docx.text.paragraph.Paragraph(child, document)
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
