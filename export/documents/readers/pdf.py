"""PDF (pypdf) -> blocks, one paragraph at a time, with the section heading and page number."""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

from outpost.export.documents.document import Block, clean
from outpost.runtime.errors import InputError

PDF_HEADING = re.compile(r"^(\d+(\.\d+)*\.?|[A-Z]\.|Chapter \d+|Section \d+)\s+\S.{0,70}$")


def read_pdf(file: Path | BinaryIO) -> list[Block]:
    """Blocks of a PDF, from its path or an open binary file (export/documents/ingest.py opens it)."""
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError:  # pragma: no cover - pypdf is part of the [export] extra
        raise InputError("reading PDF needs pypdf: pip install 'outpost-llm[export]'") from None
    try:
        reader = PdfReader(file)
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, OSError, ValueError, KeyError) as e:
        raise InputError(f"unreadable PDF ({e})") from None
    blocks: list[Block] = []
    heading = ""
    for number, page in enumerate(pages, 1):
        para: list[str] = []
        for line in [*page.split("\n"), ""]:  # the trailing "" ends the page's last paragraph
            s = line.strip()
            is_heading = (
                bool(PDF_HEADING.match(s)) and not s.endswith((".", ",", ";")) and len(s) < 80
            )
            if s and not is_heading:
                para.append(s)
            long_enough = s.endswith((".", ":", "?", "!")) and len(" ".join(para)) > 300
            if para and (not s or is_heading or long_enough):
                label = (heading, f"p. {number}") if heading else (f"p. {number}",)
                blocks.append(Block(clean(" ".join(para)), label))
                para = []
            if is_heading:
                heading = clean(s)
    return blocks
