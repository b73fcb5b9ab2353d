"""Plain text -> blocks: paragraphs split at blank lines; an underlined or all-capitals line is
a heading."""

from __future__ import annotations

import re

from outpost.export.documents.document import Block, clean


def read_text(text: str) -> list[Block]:
    blocks: list[Block] = []
    heading: tuple[str, ...] = ()
    for para in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [x for x in para.strip().split("\n") if x.strip()]
        if not lines:
            continue
        if len(lines) == 2 and re.fullmatch(r"[=\-~]{3,}", lines[1].strip()):
            heading = (clean(lines[0]),)
            continue
        first = lines[0].strip()
        if len(lines) == 1 and len(first) < 70 and first.isupper() and re.search(r"[A-Z]", first):
            heading = (clean(first.title()),)
            continue
        blocks.append(Block(clean(" ".join(lines)), heading))
    return blocks
