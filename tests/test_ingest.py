"""Files -> blocks -> chunks, on real files of every supported type."""

import pytest

from conftest import load_make_pdf
from outpost.export.documents.chunk import ChunkConfig, chunk_document, chunk_documents
from outpost.export.documents.document import Document
from outpost.export.documents.ingest import discover, ingest, read_document
from outpost.export.documents.readers.html_page import read_html
from outpost.export.documents.readers.markdown import read_markdown
from outpost.runtime.errors import InputError

HTML = """<html><head><title>T</title><script>var x = 1;</script></head><body>
<nav>Home | Products | Search</nav>
<div class="sphinxsidebar">Table of contents: everything</div>
<div role="main">
<h1>Pump P-7<a class="headerlink" href="#p7">¶</a></h1>
<p>The pump moves   coolant.</p>
<h2>Commands</h2>
<dl><dt>reset-pump NOW¶</dt><dd><p>Resets the pump controller.</p></dd></dl>
<table><tr><th>Code</th><th>Meaning</th></tr><tr><td>P1</td><td>Dry run</td></tr></table>
</div>
<footer>Copyright 2026</footer></body></html>"""


def test_html_keeps_main_content_only():
    blocks = read_html(HTML)
    text = "\n".join(b.text for b in blocks)
    assert "Home | Products" not in text and "Table of contents" not in text
    assert "Copyright" not in text and "var x" not in text and "¶" not in text
    assert "The pump moves coolant." in text
    assert "Code | Meaning\nP1 | Dry run" in text


def test_html_definition_term_stays_with_description():
    blocks = read_html(HTML)
    term = next(b for b in blocks if b.text.startswith("reset-pump"))
    assert term.glue and term.headings == ("Pump P-7", "Commands")
    doc = Document("p.html", None, "html", blocks)
    chunks = chunk_document(doc, ChunkConfig(target_chars=100, min_chars=10, overlap_chars=0))
    assert any(
        "reset-pump NOW" in c.text and "Resets the pump controller." in c.text for c in chunks
    )


def test_markdown_headings_and_code():
    blocks = read_markdown(
        "# A\n\nintro text\n\n## B\n\n```\nline 1\nline 2\n```\n\nSetext\n------\n\nbody\n"
    )
    assert blocks[0].headings == ("A",) and blocks[0].text == "intro text"
    assert (
        blocks[1].code and blocks[1].text == "line 1\nline 2" and blocks[1].headings == ("A", "B")
    )
    assert blocks[2].headings == ("A", "Setext") and blocks[2].text == "body"


def test_pdf_text_and_headings(tmp_path):
    pdf = tmp_path / "m.pdf"
    load_make_pdf().write_pdf(
        pdf,
        [
            "1 Scope",
            "This manual covers the valve V-9.",
            "",
            "2 Service",
            "Grease the valve every 300 hours.",
        ],
    )
    doc = read_document(pdf, "m.pdf")
    found = {b.text: b.headings for b in doc.blocks}
    assert found["Grease the valve every 300 hours."] == ("2 Service", "p. 1")


def test_pdf_without_text_is_refused(tmp_path):
    pdf = tmp_path / "scan.pdf"
    load_make_pdf().write_pdf(pdf, [])
    with pytest.raises(InputError, match="no text found.*OCR"):
        read_document(pdf, "scan.pdf")


def test_unsupported_and_unreadable_files_are_listed(tmp_path):
    (tmp_path / "a.md").write_text("# Hi\n\nSome text here.")
    (tmp_path / "b.xlsx").write_bytes(b"PK\x03\x04")
    (tmp_path / "c.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "d.pdf").write_bytes(b"not a pdf")
    docs, skipped, root = ingest([tmp_path])
    assert [d.source for d in docs] == ["a.md"]
    reasons = {s.path: s.reason for s in skipped}
    assert "unsupported" in reasons["b.xlsx"] and "binary" in reasons["c.txt"]
    assert "PDF" in reasons["d.pdf"]
    assert root == tmp_path.resolve()


def test_sources_are_relative_to_the_common_root(tmp_path):
    for sub in ("one", "two"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "index.md").write_text("text")
    files, _, _ = discover([tmp_path / "one", tmp_path / "two"])
    assert sorted(s for _, s in files) == ["one/index.md", "two/index.md"]


def test_chunks_are_bounded_and_offsets_point_into_the_document(examples_docs):
    docs, _, _ = ingest([examples_docs])
    config = ChunkConfig()
    chunks = chunk_documents(docs, config)
    assert len({c.source for c in chunks}) == len(docs)
    by_source = {d.source: "\n\n".join(b.text for b in d.blocks) for d in docs}
    for c in chunks:
        assert len(c.text) <= config.max_chars + 200  # + heading labels of glued blocks
        first_line = c.text.split("\n")[0]
        if ": " not in first_line[:60]:  # lines without a heading label are verbatim
            head = first_line[:30]
            assert by_source[c.source][c.start : c.start + len(head)] == head


def test_long_block_is_split_with_overlap():
    from outpost.export.documents.document import Block, Document

    sentences = " ".join(f"Sentence number {i} says something useful." for i in range(100))
    doc = Document("long.md", None, "markdown", [Block(sentences, ("Long",))])
    chunks = chunk_document(doc, ChunkConfig(target_chars=400, overlap_chars=80))
    assert len(chunks) > 5
    assert all(len(c.text) <= 600 for c in chunks)
    # consecutive chunks share text (overlap) inside one section
    assert any(c2.text[:40] in c1.text for c1, c2 in zip(chunks, chunks[1:]))


def test_chunk_spanning_sections_names_them_all():
    blocks = read_markdown(
        "# Manual\n\n## Daily\n\nCheck oil.\n\n## Hydraulic filter\n\nReplace every 500 hours.\n"
    )
    doc = Document("m.md", None, "markdown", blocks)
    (chunk,) = chunk_document(doc, ChunkConfig(min_chars=200))
    assert chunk.heading == "Manual > Daily / Hydraulic filter"
    assert "Hydraulic filter: Replace every 500 hours." in chunk.text


def test_markdown_table_keeps_one_row_per_line():
    md = (
        "# Alarms\n\nCodes below.\n\n| Code | Meaning |\n|------|:-------:|\n"
        "| E-101 | Oil hot |\n| E-104 | Oil low |\n\nAfter the table.\n"
    )
    texts = [(b.text, b.code) for b in read_markdown(md)]
    assert texts == [
        ("Codes below.", False),
        ("Code | Meaning\nE-101 | Oil hot\nE-104 | Oil low", True),
        ("After the table.", False),
    ]


def test_markdown_fences_are_code_whatever_they_hold():
    md = (
        "# Setup\n\n```sh\n# not a heading\n~~~\nstill code\n```\n\n"
        "~~~\n```\n~~~\n\n## Next\n\nText with **bold**, `code` and [a link](http://x).\n"
    )
    blocks = read_markdown(md)
    assert [(b.text, b.code, b.headings) for b in blocks] == [
        ("# not a heading\n~~~\nstill code", True, ("Setup",)),
        ("```", True, ("Setup",)),
        ("Text with bold, code and a link.", False, ("Setup", "Next")),
    ]


def test_markdown_list_items_are_blocks_under_their_heading():
    blocks = read_markdown(
        "Title\n=====\n\nSteps:\n1. Open the valve.\n2. Wait 5 s.\n- loose item\n"
    )
    assert [(b.text, b.headings) for b in blocks] == [
        ("Steps:", ("Title",)),
        ("Open the valve.", ("Title",)),
        ("Wait 5 s.", ("Title",)),
        ("loose item", ("Title",)),
    ]


def test_docx_keeps_headings_lists_and_tables(tmp_path):
    import docx

    d = docx.Document()
    d.add_heading("Pump P-7", level=1)
    d.add_paragraph("The pump moves coolant.")
    d.add_heading("Alarms", level=2)
    d.add_paragraph("Check the inlet first.", style="List Bullet")
    table = d.add_table(rows=2, cols=2)
    for r, (a, b) in enumerate([("Code", "Meaning"), ("P1", "Dry run")]):
        table.cell(r, 0).text, table.cell(r, 1).text = a, b
    d.save(tmp_path / "p7.docx")
    doc = read_document(tmp_path / "p7.docx", "p7.docx")
    assert [(b.text, b.headings, b.code) for b in doc.blocks] == [
        ("The pump moves coolant.", ("Pump P-7",), False),
        ("Check the inlet first.", ("Pump P-7", "Alarms"), False),
        ("Code | Meaning\nP1 | Dry run", ("Pump P-7", "Alarms"), True),
    ]


def test_damaged_docx_is_skipped_with_the_reason(tmp_path):
    (tmp_path / "a.md").write_text("# Hi\n\nSome text here.")
    (tmp_path / "b.docx").write_bytes(b"PK\x03\x04 not really a zip")
    _, skipped, _ = ingest([tmp_path])
    assert [(s.path, s.reason.split(" (")[0]) for s in skipped] == [
        ("b.docx", "unreadable Word file")
    ]
