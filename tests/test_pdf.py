"""PDF text as a technician's search needs it (export/documents/readers/pdf.py, pdf_clean.py,
ocr.py): the outline's headings, running headers and footers dropped, look-alikes normalised,
and scanned pages read by OCR with their page numbers."""

import io
import shutil
import subprocess

import pytest

from conftest import EXAMPLES, load_make_pdf
from outpost.export.documents.readers.pdf import Section, blocks, read_pdf, with_terms
from outpost.export.documents.readers.pdf_clean import normalise, running, without_running

OCR = shutil.which("tesseract") and shutil.which("pdftoppm")


def test_lookalikes_and_line_end_hyphenation_are_what_a_search_finds():
    text = (
        "Use \u2212f to force. The config\u00aduration is read.\n"
        "Edit the config-\nuration file. Set the command-\nline flag; a command-line tool.\n"
        "An unknown split-\nword stays hyphenated. With \u2013trace (see pages 3\u20135, A\u2013B)."
    )
    out = normalise(text)
    assert "Use -f to force" in out and "configuration is read" in out
    assert "Edit the configuration file" in out  # written whole elsewhere: joined
    assert "command-line flag" in out  # written hyphenated elsewhere: the hyphen stays
    assert "split-word" in out  # never made into a word the document does not have
    # LaTeX sets an option's "--" as one en dash; ranges and pairs keep theirs.
    assert "With --trace (see pages 3\u20135, A\u2013B)" in out


def test_running_headers_and_page_numbered_footers_are_dropped():
    pages = [
        f"Verilator, Release 5.006\nPage {'ABCDEFGH'[i]} begins here.\nA line of page {i}.\n"
        f"The line after it.\nThe end of {'ABCDEFGH'[i]}.\n2.{i % 3}. Section Two {i + 3}"
        for i in range(8)
    ]
    found = running(pages)
    assert "verilator, release #.#" in found.keys and found.offset == 3
    kept = without_running(pages[5], 5, found)
    assert kept == "Page F begins here.\nA line of page 5.\nThe line after it.\nThe end of F."
    # A line inside the page that looks like a footer stays: only the edges are touched.
    inner = "Verilator, Release 5.006\nA\nVerilator, Release 5.006 is new.\nB\nC\n8"
    assert "is new" in without_running(inner, 5, found)
    # A block split over two pages says so; that line is furniture wherever it stands.
    assert without_running("A\nB\n(continued from previous page)\nC\nD", 5, found) == "A\nB\nC\nD"


def test_outline_sections_start_at_their_title_line_or_their_page():
    sections = [
        Section(0, ("Installation",)),
        Section(0, ("Installation", "Git Quick Install")),
        Section(1, ("Installation", "Detailed Build")),  # its title line is not in the text
    ]
    pages = [
        "CHAPTER TWO\nINSTALLATION\nThis section is about installing.\n\n2.2 Git Quick Install\n"
        "Clone the repository.",
        "Build it with make.",
    ]
    found = {b.text: b.headings for b in blocks(pages, ["p. 10", "p. 11"], sections)}
    assert found["This section is about installing."] == ("Installation", "p. 10")
    assert found["Clone the repository."] == ("Installation", "Git Quick Install", "p. 10")
    assert found["Build it with make."] == ("Installation", "Detailed Build", "p. 11")


def test_a_started_sections_title_again_is_its_running_header_and_terms_join_their_text():
    sections = [Section(0, ("Environment",)), Section(1, ("Environment", "Files"))]
    pages = [
        "Environment\nVERILATOR_GDB\n\nIf set, the command to run with --gdb.\n\n"
        "A sentence that ends.\n\nMore text here.",
        "Environment\nThe next page goes on.\n\nFiles\nThe files are listed.",
    ]
    found = with_terms(blocks(pages, ["p. 1", "p. 2"], sections))
    texts = [b.text for b in found]
    # The term and its description are one line; a sentence that ends is not a term.
    assert "VERILATOR_GDB If set, the command to run with --gdb." in texts
    assert "A sentence that ends." in texts and "More text here." in texts
    # "Environment" atop page 2 is the running header of a started section: dropped, and the
    # section of the same name further on still starts at its own title line.
    assert "Environment" not in " ".join(texts[1:])
    assert {b.text: b.headings for b in found}["The files are listed."] == (
        "Environment",
        "Files",
        "p. 2",
    )


def _with_outline(tmp_path):
    from pypdf import PdfReader, PdfWriter

    plain = tmp_path / "plain.pdf"
    lines = ["Chapter One", "The valve V-9 is covered here.", ""] * 20
    lines += ["Service", "Grease the valve every 300 hours.", ""] * 20
    load_make_pdf().write_pdf(plain, lines, per_page=60)
    writer = PdfWriter()
    for page in PdfReader(plain).pages:
        writer.add_page(page)
    top = writer.add_outline_item(title="Chapter One", page_number=0)
    writer.add_outline_item(title="Service", page_number=1, parent=top)
    out = tmp_path / "outlined.pdf"
    with open(out, "wb") as f:
        writer.write(f)
    return out


def test_a_pdf_with_an_outline_takes_its_headings(tmp_path):
    notes = []
    found = read_pdf(_with_outline(tmp_path), notes, poppler=True)
    if not shutil.which("pdftotext"):
        assert any("poppler-utils" in n for n in notes)
        return
    heads = {b.headings for b in found if "300 hours" in b.text}
    assert heads == {("Chapter One", "Service", "p. 2")}
    # Not the default yet (docs/decisions.md, "PDF text"): the numbered-line headings of before.
    default = read_pdf(_with_outline(tmp_path))
    assert {b.headings[-1] for b in default if "300 hours" in b.text} == {"p. 2"}


def scanned(source, tmp_path, name="scanned.pdf"):
    """`source` with every page an image: rendered by poppler, rebuilt without a text layer."""
    from PIL import Image

    subprocess.run(
        ["pdftoppm", "-r", "200", "-gray", "-png", str(source), str(tmp_path / "pg")], check=True
    )
    images = [Image.open(p).convert("L") for p in sorted(tmp_path.glob("pg*.png"))]
    out = tmp_path / name
    images[0].save(out, save_all=True, append_images=images[1:], resolution=200)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not OCR, reason="needs tesseract-ocr and poppler-utils (make system-deps)")
def test_a_scanned_pdf_is_read_by_ocr_with_its_page_numbers(tmp_path):
    from pypdf import PdfReader, PdfWriter

    source = EXAMPLES / "docs" / "forklift" / "charging-station.pdf"
    image_only = scanned(source, tmp_path)
    assert not "".join(p.extract_text() or "" for p in PdfReader(image_only).pages).strip()
    notes = []
    found = read_pdf(image_only, notes)
    text = " ".join(b.text for b in found)
    assert "8 hours" in text and "C-09" in text
    assert all(b.headings[-1].startswith("p. ") and "scanned, OCR" in b.headings[-1] for b in found)
    assert any("recognised by OCR" in n for n in notes)
    # A mixed PDF: its text page read as text, its scanned page by OCR.
    writer = PdfWriter()
    writer.add_page(PdfReader(source).pages[0])
    writer.add_page(PdfReader(image_only).pages[0])
    mixed = io.BytesIO()
    writer.write(mixed)
    mixed.seek(0)
    labels = {b.headings[-1] for b in read_pdf(mixed)}
    assert "p. 1" in labels and any(label.startswith("p. 2, scanned") for label in labels)


@pytest.mark.slow
@pytest.mark.skipif(not OCR, reason="needs tesseract-ocr and poppler-utils (make system-deps)")
def test_a_scanned_manual_is_exported_and_answered_from_its_ocr_text(tiny_phi3, tmp_path):
    import json

    from conftest import export, outpost

    docs = tmp_path / "docs"
    docs.mkdir()
    source = EXAMPLES / "docs" / "forklift" / "charging-station.pdf"
    scanned(source, tmp_path, "charging-station-scan.pdf").rename(docs / "charging-station.pdf")
    bundle = tmp_path / "bundle"
    done = export(docs, bundle, "--base", str(tiny_phi3))
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        "recognised by OCR" in done.stderr
        or "recognised by OCR" in (bundle / "bundle.json").read_text()
    )
    questions = [json.loads(line) for line in (EXAMPLES / "questions.jsonl").open()]
    for q in (q for q in questions if q.get("source_path") == "forklift/charging-station.pdf"):
        asked = outpost("ask", str(bundle), q["question"], "--json", "--max-new-tokens", "4")
        answer = json.loads(asked.stdout)
        quotes = answer["evidence"]  # the lines shown under the answer, best first
        keys = [k.lower() for k in q["answer_keywords"]]
        holding = [e for e in quotes if all(k in e["text"].lower() for k in keys)]
        assert holding, (q["question"], [e["text"] for e in quotes])
        where = holding[0]["heading"].split(" > ")[-1]
        assert where.startswith("p. 1, scanned, OCR "), where  # its page, and how it was read


@pytest.mark.skipif(not shutil.which("pdftotext"), reason="poppler-utils not installed")
def test_a_ruled_table_is_read_as_rows_under_its_header(tmp_path):
    pdf = tmp_path / "charging.pdf"
    load_make_pdf().write_pdf(
        pdf,
        [
            "Charge the battery after each shift.",
            "| Model | Charge time | Socket |",
            "| FX-20 | 6 hours | 32 A |",
            "| FX-30 | 8 hours | 63 A |",
            "Close the cover after charging.",
            "| A framed line of code: one column, not a table |",
        ],
    )
    notes = []
    found = read_pdf(pdf, notes, poppler=True)
    texts = [b.text for b in found]
    table = "Model | Charge time | Socket\nFX-20 | 6 hours | 32 A\nFX-30 | 8 hours | 63 A"
    assert table in texts  # one block, header row first, each row one line, in reading order
    assert texts.index(table) == 1 and "Charge the battery" in texts[0]
    assert sum("6 hours" in t for t in texts) == 1  # its cells are not read twice as text
    assert any("Close the cover" in t for t in texts[2:])
    assert any("framed line of code" in t and "|" not in t for t in texts)
    assert len(notes) == 1 and notes[0].startswith("1 table on 1 page read as rows in ")


@pytest.mark.skipif(not shutil.which("pdftotext"), reason="poppler-utils not installed")
def test_the_export_reads_pdfs_the_way_pdf_text_says(tmp_path):
    from outpost.export.config import ChunkConfig
    from outpost.export.documents.ingest import read_chunks

    pdf = tmp_path / "sockets.pdf"
    rows = ["| Model | Socket |", "| FX-20 | 32 A |", "| FX-30 | 63 A |"]
    load_make_pdf().write_pdf(pdf, ["Sockets by model.", *rows])
    _, _, _, poppler = read_chunks(pdf, "sockets.pdf", ChunkConfig(pdf_text="poppler"))
    _, _, _, default = read_chunks(pdf, "sockets.pdf", ChunkConfig())
    assert any("FX-20 | 32 A\nFX-30 | 63 A" in c.text for c in poppler)
    assert not any("FX-20 | 32 A" in c.text for c in default)  # pypdf: cells as words
