"""OpenDocument text (.odt) and EPUB (.epub): built here with zipfile and XML strings (no
LibreOffice, no e-book tools), read through the readers and through ingest's entry point, and
the hostile ones (zip bomb, entity expansion, deep nesting, paths out of the book) refused
with one InputError line before anything is parsed."""

from __future__ import annotations

import re
import zipfile

import pytest

from outpost.export.documents.ingest import SUPPORTED, ingest, read_document
from outpost.export.documents.readers.archive import MAX_DEPTH
from outpost.export.documents.readers.epub import read_epub
from outpost.export.documents.readers.odt import read_odt
from outpost.runtime.errors import InputError

ODF_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"'
)


def content_xml(body: str, prolog: str = "") -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{prolog}'
        f'<office:document-content {ODF_NS} office:version="1.3">'
        f"<office:automatic-styles/><office:body><office:text>{body}</office:text></office:body>"
        "</office:document-content>"
    )


def write_odt(path, body: str = "", content: str | None = None):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.text"
        )  # stored, first, as ODF has it
        z.writestr("content.xml", content if content is not None else content_xml(body))
        z.writestr("styles.xml", content_xml("<text:p>Page header furniture</text:p>"))
    return path


MANUAL = """
<text:sequence-decls><text:sequence-decl text:name="Table"/></text:sequence-decls>
<text:table-of-content><text:index-body><text:p>Pump P-7 ........ 1</text:p></text:index-body>
</text:table-of-content>
<text:h text:outline-level="1">Pump <text:span>P-7</text:span></text:h>
<text:p>The pump moves <text:span text:style-name="T1">coolant</text:span>.<office:annotation>
<text:p>reviewer: check this</text:p></office:annotation></text:p>
<text:section text:name="S1">
<text:h text:outline-level="2">Alarms</text:h>
<text:list>
  <text:list-item><text:p>Check the inlet first.</text:p></text:list-item>
  <text:list-item><text:p>Then the <text:soft-page-break/>filter.</text:p>
    <text:list><text:list-item><text:p>Nested step.</text:p></text:list-item></text:list>
  </text:list-item>
</text:list>
<table:table table:name="Codes">
  <table:table-column table:number-columns-repeated="2"/>
  <table:table-rows>
    <table:table-row><table:table-cell><text:p>P1</text:p></table:table-cell>
      <table:table-cell><text:p>Dry run</text:p></table:table-cell></table:table-row>
  </table:table-rows>
  <table:table-header-rows>
    <table:table-row><table:table-cell><text:p>Code</text:p></table:table-cell>
      <table:table-cell><text:p>Meaning</text:p></table:table-cell></table:table-row>
  </table:table-header-rows>
  <table:table-row table:number-rows-repeated="1000000"><table:table-cell/></table:table-row>
</table:table>
</text:section>
<text:h text:outline-level="2">Service</text:h>
<text:p>Torque<text:note text:note-class="footnote"><text:note-citation>1</text:note-citation>
<text:note-body><text:p>At 20 °C.</text:p></text:note-body></text:note> 12 Nm.</text:p>
<text:h text:outline-level="1">Appendix</text:h>
<text:p>Last page.</text:p>
"""


def test_odt_headings_paragraphs_lists_and_tables(tmp_path):
    blocks = read_odt(write_odt(tmp_path / "p7.odt", MANUAL))
    assert [(b.text, b.headings, b.code) for b in blocks] == [
        ("The pump moves coolant.", ("Pump P-7",), False),
        ("Check the inlet first.", ("Pump P-7", "Alarms"), False),
        ("Then the filter.", ("Pump P-7", "Alarms"), False),
        ("Nested step.", ("Pump P-7", "Alarms"), False),
        ("Code | Meaning\nP1 | Dry run", ("Pump P-7", "Alarms"), True),  # the header row first
        ("Torque 12 Nm.", ("Pump P-7", "Service"), False),
        ("At 20 °C.", ("Pump P-7", "Service"), False),  # the footnote after its paragraph
        ("Last page.", ("Appendix",), False),
    ]


def test_odt_spaces_tabs_and_line_breaks(tmp_path):
    body = (
        "<text:h>No level given</text:h>"
        '<text:p>Torque<text:tab/>12<text:s text:c="3"/>Nm\n   folded  </text:p>'
        "<text:p>set-valve --open<text:line-break/>"
        '<text:s text:c="4"/>--timeout 5<text:tab/># seconds</text:p>'
        '<text:p>a<text:s text:c="999999999"/>b<text:s/>c</text:p>'
    )
    blocks = read_odt(write_odt(tmp_path / "s.odt", body))
    assert [(b.text, b.headings, b.code) for b in blocks] == [
        ("Torque 12 Nm folded", ("No level given",), False),
        ("set-valve --open\n    --timeout 5    # seconds", ("No level given",), True),
        ("a b c", ("No level given",), False),  # a hostile count is bounded, then folded
    ]


def epub_files(chapters: dict[str, str], spine: list[str], opf_extra: str = "") -> dict:
    """An EPUB 3 book: the navigation document, the chapters (name: XHTML body), a picture."""
    manifest = "".join(
        f'<item id="{n}" href="Text/{n}.xhtml" media-type="application/xhtml+xml"/>'
        for n in chapters
    )
    files = {
        "META-INF/container.xml": (
            '<?xml version="1.0"?><container version="1.0" '
            'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
            '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>"
        ),
        "OEBPS/content.opf": (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">'
            '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>P-7</dc:title>'
            "</metadata><manifest>"
            '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>'
            '<item id="pic" href="Images/pump.png" media-type="image/png"/>'
            f"{manifest}{opf_extra}</manifest><spine>"
            '<itemref idref="nav"/><itemref idref="pic"/>'
            + "".join(f'<itemref idref="{n}"/>' for n in spine)
            + "</spine></package>"
        ),
        "OEBPS/nav.xhtml": xhtml('<nav epub:type="toc"><ol><li>Contents list</li></ol></nav>'),
        "OEBPS/Images/pump.png": "\x89PNG not text",
    }
    files.update({f"OEBPS/Text/{n}.xhtml": xhtml(body) for n, body in chapters.items()})
    return files


def xhtml(body: str, prolog: str = "<!DOCTYPE html>") -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{prolog}'
        '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">'
        f"<head><title>P-7</title></head><body>{body}</body></html>"
    )


def write_epub(path, files: dict):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")
        for name, text in files.items():
            z.writestr(name, text)
    return path


CHAPTERS = {
    "c2": "<h2>Alarms</h2><ul><li>Check the inlet first.</li><li>Then the filter.</li></ul>"
    "<table><tr><th>Code</th><th>Meaning</th></tr><tr><td>P1</td><td>Dry run</td></tr></table>",
    "c1": "<h1>Pump P-7</h1><p>The pump moves&nbsp;coolant.</p>",
    "c3": "<p>More about alarms, on the next page.</p><h1>Appendix</h1><p>Last page.</p>",
}


def test_epub_reads_the_spine_in_order_with_headings_continuing(tmp_path):
    book = write_epub(tmp_path / "p7.epub", epub_files(CHAPTERS, spine=["c1", "c2", "c3"]))
    assert [(b.text, b.headings) for b in read_epub(book)] == [
        ("The pump moves coolant.", ("Pump P-7",)),  # &nbsp; read as HTML reads it
        ("Check the inlet first.", ("Pump P-7", "Alarms")),
        ("Then the filter.", ("Pump P-7", "Alarms")),
        ("Code | Meaning\nP1 | Dry run", ("Pump P-7", "Alarms")),
        ("More about alarms, on the next page.", ("Pump P-7", "Alarms")),  # continues c2's
        ("Last page.", ("Appendix",)),
    ]  # and neither the navigation document, the picture nor the <head>'s title


def test_epub_skips_nav_toc_and_what_is_not_xhtml(tmp_path):
    files = epub_files({"toc": "<p>Contents: Pump P-7, 1</p>", "c1": "<p>Text.</p>"}, ["toc", "c1"])
    files["OEBPS/content.opf"] = (
        files["OEBPS/content.opf"]
        .replace("</spine>", '</spine><guide><reference type="toc" href="Text/toc.xhtml"/></guide>')
        .replace(  # a remote item and a style sheet in the spine: left out
            "</manifest>",
            '<item id="web" href="https://example.com/x.xhtml" media-type="application/xhtml+xml"/>'
            '<item id="css" href="s.css" media-type="text/css"/></manifest>',
        )
        .replace("</spine>", '<itemref idref="web"/><itemref idref="css"/></spine>')
    )
    files["OEBPS/s.css"] = "p { color: red }"
    assert [b.text for b in read_epub(write_epub(tmp_path / "b.epub", files))] == ["Text."]


def test_odt_and_epub_through_the_ingest_entry_point(tmp_path):
    assert SUPPORTED[".odt"] == "odt" and SUPPORTED[".epub"] == "epub"
    write_odt(tmp_path / "p7.odt", MANUAL)
    write_epub(tmp_path / "p7.epub", epub_files(CHAPTERS, spine=["c1", "c2", "c3"]))
    odt = read_document(tmp_path / "p7.odt", "p7.odt")
    assert odt.kind == "odt" and odt.blocks[0].headings == ("Pump P-7",)
    epub = read_document(tmp_path / "p7.epub", "p7.epub")
    assert epub.kind == "epub" and epub.blocks[-1].text == "Last page."
    write_odt(tmp_path / "bad.odt", content=content_xml("<text:p>unclosed"))
    docs, skipped, _ = ingest([tmp_path])
    assert sorted(d.source for d in docs) == ["p7.epub", "p7.odt"]
    assert [(s.path, s.reason.split(" (")[0]) for s in skipped] == [
        ("bad.odt", "unreadable OpenDocument file")
    ]


LAUGHS = (
    '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">'
        for i in range(1, 10)
    )
    + "]>"
)


def _bomb(path):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("content.xml", content_xml("<text:p>x</text:p>"))
        z.writestr("META-INF/container.xml", b"\0" * (4 * 2**20))  # unpacks ~1000x
    return path


def _opf_with(files: dict, href: str) -> dict:
    files["OEBPS/content.opf"] = files["OEBPS/content.opf"].replace(
        'href="Text/c1.xhtml"', f'href="{href}"'
    )
    return files


def _deep(n: int) -> str:
    return "<text:span>" * n + "deep" + "</text:span>" * n


HOSTILE = {
    "odt zip bomb": ("b.odt", _bomb, "zip bomb"),
    "epub zip bomb": ("b.epub", _bomb, "zip bomb"),
    "odt billion laughs": (
        "b.odt",
        lambda p: write_odt(p, content=content_xml("<text:p>&lol9;</text:p>", LAUGHS)),
        "content.xml has an entity declaration",
    ),
    "odt DOCTYPE": (
        "b.odt",
        lambda p: write_odt(
            p, content=content_xml("<text:p>x</text:p>", '<!DOCTYPE x SYSTEM "/etc/passwd">')
        ),
        "content.xml has a DOCTYPE",
    ),
    "epub chapter billion laughs": (
        "b.epub",
        lambda p: write_epub(
            p,
            epub_files({"c1": "<p>&lol9;</p>"}, ["c1"])
            | {"OEBPS/Text/c1.xhtml": xhtml("<p>&lol9;</p>", LAUGHS)},
        ),
        "c1.xhtml has an entity declaration",
    ),
    "epub package billion laughs": (
        "b.epub",
        lambda p: write_epub(
            p,
            {
                k: v.replace(
                    '<?xml version="1.0" encoding="UTF-8"?>', "<?xml version='1.0'?>" + LAUGHS
                )
                for k, v in epub_files({"c1": "<p>x</p>"}, ["c1"]).items()
            },
        ),
        "content.opf has an entity declaration",
    ),
    "odt deep nesting": (
        "b.odt",
        lambda p: write_odt(p, f"<text:p>{_deep(MAX_DEPTH)}</text:p>"),
        f"nests elements more than {MAX_DEPTH} deep",
    ),
    "epub package deep nesting": (
        "b.epub",
        lambda p: write_epub(
            p,
            {
                k: v.replace("<metadata", "<x>" * MAX_DEPTH + "</x>" * MAX_DEPTH + "<metadata")
                for k, v in epub_files({"c1": "<p>x</p>"}, ["c1"]).items()
            },
        ),
        "content.opf nests elements more than",
    ),
    "epub ../ path": (
        "b.epub",
        lambda p: write_epub(
            p, _opf_with(epub_files({"c1": "<p>x</p>"}, ["c1"]), "../../etc/passwd")
        ),
        "names '../../etc/passwd', outside the book",
    ),
    "epub absolute path": (
        "b.epub",
        lambda p: write_epub(p, _opf_with(epub_files({"c1": "<p>x</p>"}, ["c1"]), "/etc/passwd")),
        "names '/etc/passwd', outside the book",
    ),
    "epub DRM": (
        "b.epub",
        lambda p: write_epub(
            p,
            epub_files({"c1": "<p>x</p>"}, ["c1"])
            | {
                "META-INF/encryption.xml": '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
                'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData><enc:CipherData>'
                '<enc:CipherReference URI="OEBPS/Text/c1.xhtml"/></enc:CipherData></enc:EncryptedData>'
                "</encryption>"
            },
        ),
        "encrypted (DRM)",
    ),
    "odt not a zip": (
        "b.odt",
        lambda p: p.write_bytes(b"PK\x03\x04 not really"),
        "unreadable OpenDocument file",
    ),
    "epub not a zip": ("b.epub", lambda p: p.write_text("a text file"), "unreadable EPUB file"),
    "odt foreign zip": (
        "b.odt",
        lambda p: write_epub(p, {"word/document.xml": "<w/>"}),
        "no content.xml",
    ),
    "epub foreign zip": (
        "b.epub",
        lambda p: write_odt(p, "<text:p>x</text:p>"),
        "no META-INF/container.xml",
    ),
    "odt spreadsheet": (
        "b.odt",
        lambda p: write_odt(
            p, content=content_xml("").replace("office:text", "office:spreadsheet")
        ),
        "without text",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_files_are_one_input_error_line(tmp_path, case):
    name, make, message = HOSTILE[case]
    path = tmp_path / name
    make(path)
    with pytest.raises(InputError, match=re.escape(message)) as refused:
        read_document(path, name)
    assert "\n" not in str(refused.value)
    _, skipped, _ = ingest([tmp_path])  # skipped with the same line, never raised
    assert [s.reason for s in skipped] == [str(refused.value)]


def test_nesting_up_to_the_bound_is_read(tmp_path):
    # document-content, body, text, p: 4 levels, then the spans up to MAX_DEPTH in all
    blocks = read_odt(write_odt(tmp_path / "d.odt", f"<text:p>{_deep(MAX_DEPTH - 4)}</text:p>"))
    assert [b.text for b in blocks] == ["deep"]


def test_epub2_with_its_doctype_and_ncx_is_read(tmp_path):
    """EPUB 2 (what older tools write): the XHTML 1.1 DOCTYPE (no internal subset, nothing
    fetched), &nbsp; from its DTD, an NCX table of contents, a package in a sub-folder whose
    `..` stays inside the book."""
    doctype = (
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" '
        '"http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">'
    )
    files = {
        "META-INF/container.xml": (
            '<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
            '<rootfile full-path="OEBPS/pkg/book.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>"
        ),
        "OEBPS/pkg/book.opf": (
            '<package xmlns="http://www.idpf.org/2007/opf" version="2.0"><manifest>'
            '<item id="ncx" href="../toc.ncx" media-type="application/x-dtbncx+xml"/>'
            '<item id="c1" href="../Text/chapter%201.xhtml" media-type="application/xhtml+xml"/>'
            '</manifest><spine toc="ncx"><itemref idref="c1"/></spine></package>'
        ),
        "OEBPS/toc.ncx": "<ncx><navMap><navPoint><text>Pump P-7</text></navPoint></navMap></ncx>",
        "OEBPS/Text/chapter 1.xhtml": xhtml(
            "<h1>Pump P-7</h1><p>Open&nbsp;the valve.</p>", doctype
        ),
    }
    blocks = read_epub(write_epub(tmp_path / "old.epub", files))
    assert [(b.text, b.headings) for b in blocks] == [("Open the valve.", ("Pump P-7",))]
