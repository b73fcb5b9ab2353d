"""Documents -> chunks along headings and paragraphs, with overlap inside a section.

A chunk never spans two sections unless the first is too small to stand alone, a definition
term always stays with its description, and an oversized block is cut at sentence (prose) or
line (code) boundaries. Each chunk keeps its source, heading path and character offsets into
the document's extracted text (blocks joined by blank lines).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from outpost.export.config import ChunkConfig
from outpost.export.documents.document import Block, Document


@dataclass
class Chunk:
    source: str
    heading: str
    text: str
    start: int
    end: int

    def embedding_text(self) -> str:
        return f"{self.heading}\n{self.text}" if self.heading else self.text


def _split_long(text: str, code: bool, size: int) -> list[str]:
    """Pieces of at most about `size` characters, cut at sentences (prose) or lines (code), a
    longer sentence or line at a space. Linear in the length of `text`: a long unit is read
    from a moving start, never copied again after each cut."""
    units = text.split("\n") if code else re.split(r"(?<=[.!?:;])\s+", text)
    sep = "\n" if code else " "
    pieces, cur = [], ""
    for u in units:
        start, end = 0, len(u)  # the rest of the unit is u[start:end]
        while end - start > size:  # a single unit longer than the size: hard cut at a space
            cut = u.rfind(" ", start, start + size)
            cut = cut if cut > start + size // 2 else start + size
            piece = u[start:cut]
            pieces.append((cur + sep + piece).strip() if cur else piece)
            cur, start, end = "", cut, len(u.rstrip()) if start == 0 else end
            while start < end and u[start].isspace():
                start += 1
        if start:
            u = u[start:end]
        joined = cur + sep + u if cur else u
        if len(joined) > size and cur:
            pieces.append(cur)
            cur = u
        else:
            cur = joined
    if cur.strip():
        pieces.append(cur)
    return pieces


def _tail(text: str, chars: int) -> str:
    """The last `chars` characters of text, starting at a sentence or word boundary."""
    if chars <= 0 or len(text) <= chars:
        return "" if chars <= 0 else text
    tail = text[-chars:]
    m = re.search(r"(?<=[.!?])\s+", tail)
    if m and m.end() < len(tail) - 20:
        return tail[m.end() :]
    space = tail.find(" ")
    return tail[space + 1 :] if space >= 0 else tail


def chunk_document(doc: Document, config: ChunkConfig) -> list[Chunk]:
    # Offsets of each block in the document text (blocks joined by blank lines).
    pieces: list[tuple[Block, str, int]] = []
    offset = 0
    for block in doc.blocks:
        parts = (
            [block.text]
            if len(block.text) <= config.max_chars
            else _split_long(block.text, block.code, config.target_chars)
        )
        search_from = offset
        for part in parts:
            at = doc_text_find(block.text, part, search_from - offset) + offset
            pieces.append((block, part, at))
            search_from = at + len(part)
        offset += len(block.text) + 2

    chunks: list[Chunk] = []
    cur: list[tuple[Block, str, int]] = []

    def size() -> int:
        return sum(len(p) + 1 for _, p, _ in cur)

    def emit() -> None:
        if not cur:
            return
        head = cur[0][0].headings
        lines = []
        for block, text, _ in cur:
            if block.headings != head and block.headings:
                text = f"{block.headings[-1]}: {text}"
            lines.append(text)
        start = cur[0][2]
        end = cur[-1][2] + len(cur[-1][1])
        chunks.append(
            Chunk(
                doc.source, _heading([b.headings for b, _, _ in cur]), "\n".join(lines), start, end
            )
        )

    for block, text, at in pieces:
        if cur:
            glued = cur[-1][0].glue
            new_section = block.headings != cur[0][0].headings and size() >= config.min_chars
            too_big = size() + len(text) > config.target_chars
            if not glued and (new_section or too_big):
                last_block, last_text, last_at = cur[-1]
                emit()
                cur = []
                if not new_section and config.overlap_chars:
                    tail = _tail(last_text, config.overlap_chars)
                    if tail and tail != text:
                        cur.append((last_block, tail, last_at + len(last_text) - len(tail)))
        cur.append((block, text, at))
    emit()
    return chunks


def _heading(paths: list[tuple[str, ...]]) -> str:
    """Heading of a chunk: its section path; for a chunk that spans sections, their common
    parent and the section names ("Manual > Daily / Hydraulic filter")."""
    unique = list(dict.fromkeys(p for p in paths if p))
    if len(unique) <= 1:
        return " > ".join(unique[0]) if unique else ""
    common = 0
    while all(len(p) > common and p[common] == unique[0][common] for p in unique):
        common += 1
    tails = list(dict.fromkeys(" > ".join(p[common:]) for p in unique if p[common:]))
    return " > ".join([*unique[0][:common], " / ".join(tails)])


def doc_text_find(haystack: str, needle: str, start: int) -> int:
    at = haystack.find(needle, max(0, start))
    return at if at >= 0 else max(0, start)


def chunk_documents(docs: list[Document], config: ChunkConfig) -> list[Chunk]:
    config.check()
    return [c for d in docs for c in chunk_document(d, config)]
