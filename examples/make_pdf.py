"""Write a simple text PDF (Helvetica, wrapped lines) with no dependencies.

    python examples/make_pdf.py SOURCE.txt OUT.pdf

Used to make docs/forklift/charging-station.pdf from charging-station.txt, and by the tests
to make a PDF that has no text at all (`write_pdf(path, [])` draws only a rectangle). A line
that starts with "|" is a table row ("| Model | Charge time |"): consecutive rows are drawn as
a ruled table, one cell per column, with its grid lines.
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
        if any(line.startswith("|") for line in page):
            ops = _with_tables(page)
        elif page:
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


def _with_tables(page: list[str], left: int = 56, width: int = 480) -> list[str]:
    """A page's lines at 14 pt apart, its "|" rows as ruled tables."""
    ops = ["0.5 w"]
    top = 790
    run: list[tuple[int, list[str]]] = []  # the table being drawn: (baseline, cells)
    for k, line in enumerate([*page, ""]):
        y = top - 14 * k
        if line.startswith("|"):
            run.append((y, [c.strip() for c in line.strip().strip("|").split("|")]))
            continue
        if run:
            columns = max(len(cells) for _, cells in run)
            step = width // columns
            for base, cells in run:
                for j, cell in enumerate(cells):
                    ops.append(
                        f"BT /F1 11 Tf {left + j * step + 4} {base} Td ({_escape(cell)}) Tj ET"
                    )
            edges = [run[0][0] + 11] + [base - 3 for base, _ in run]
            for e in edges:
                ops.append(f"{left} {e} m {left + width} {e} l S")
            for j in range(columns + 1):
                ops.append(f"{left + j * step} {edges[0]} m {left + j * step} {edges[-1]} l S")
            run = []
        if line:
            ops.append(f"BT /F1 11 Tf {left} {y} Td ({_escape(line)}) Tj ET")
    return ops


def text_to_lines(text: str, width: int = 88) -> list[str]:
    lines: list[str] = []
    for para in text.split("\n"):
        lines.extend(textwrap.wrap(para, width) or [""])
    return lines


if __name__ == "__main__":
    source, target = sys.argv[1], sys.argv[2]
    write_pdf(target, text_to_lines(Path(source).read_text(encoding="utf-8")))
