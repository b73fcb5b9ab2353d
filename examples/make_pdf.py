"""Write a simple text PDF (Helvetica, wrapped lines) with no dependencies.

    python examples/make_pdf.py SOURCE.txt OUT.pdf

Used to make docs/forklift/charging-station.pdf from charging-station.txt, and by the tests
to make a PDF that has no text at all (`write_pdf(path, [])` draws only a rectangle).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path


def _escape(line: str) -> str:
    return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_pdf(path: str | Path, lines: list[str], per_page: int = 48) -> None:
    pages = [lines[i : i + per_page] for i in range(0, len(lines), per_page)] or [[]]
    objects: list[bytes] = []
    font_id = 3
    page_ids = []
    contents = []
    for page in pages:
        if page:
            ops = ["BT", "/F1 11 Tf", "14 TL", "56 790 Td"]
            ops += [f"({_escape(line)}) Tj T*" for line in page]
            ops.append("ET")
        else:
            ops = ["0.5 g", "100 500 300 200 re f"]  # a grey box, no text
        contents.append("\n".join(ops).encode("latin-1"))
    # Object numbers: 1 catalog, 2 pages, 3 font, then (page, content) pairs.
    for i in range(len(pages)):
        page_ids.append(4 + 2 * i)
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{p} 0 R" for p in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    for i, content in enumerate(contents):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 {font_id} 0 R >> >> /Contents {page_ids[i] + 1} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    Path(path).write_bytes(bytes(out))


def text_to_lines(text: str, width: int = 88) -> list[str]:
    lines: list[str] = []
    for para in text.split("\n"):
        lines.extend(textwrap.wrap(para, width) or [""])
    return lines


if __name__ == "__main__":
    source, target = sys.argv[1], sys.argv[2]
    write_pdf(target, text_to_lines(Path(source).read_text(encoding="utf-8")))
