"""Markdown (markdown-it-py, CommonMark + tables) -> blocks: the heading path of every block,
one block per paragraph and per list item, tables one row per line ("cell | cell"), code with
its line breaks; inline markup reduced to its text (emphasis markers and link targets dropped,
code kept)."""

from __future__ import annotations

from outpost.export.documents.document import Block, clean


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
