"""What every reader produces: a document as blocks of text, each with its heading path.

A block is a paragraph, a list item, a table (one row per line), a code block or a definition
term; `clean` gives every reader the same text normalisation.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from outpost.runtime.ask.prompt import strip_controls


@dataclass
class Block:
    text: str
    headings: tuple[str, ...] = ()
    glue: bool = False  # a label (definition term) that must stay with the next block
    code: bool = False  # keep line breaks


@dataclass
class Document:
    source: str  # path relative to the documents root, '/'-separated
    path: Path
    kind: str
    blocks: list[Block] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a user should know (encoding, ...)


@dataclass
class Skipped:
    path: str
    reason: str


def clean(text: str, keep_lines: bool = False) -> str:
    text = (
        unicodedata.normalize("NFKC", strip_controls(text)).replace("¶", "").replace("\u00ad", "")
    )
    if keep_lines:
        lines = [line.rstrip() for line in text.replace("\t", "    ").split("\n")]
        return "\n".join(lines).strip("\n")
    return " ".join(text.split())
