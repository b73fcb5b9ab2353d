"""EPUB (.epub) -> blocks: the package (META-INF/container.xml names it) lists the book's
documents in its manifest and their reading order in its spine; each XHTML document of the
spine is read by the HTML reader (html_page.py), its headings continuing those of the document
before (a chapter without a heading of its own stays under the last one). The navigation
document (`properties="nav"`), the guide's table of contents and what is not XHTML (images,
the NCX, style sheets) are left out.

The archive and every XML part are checked before they are parsed (archive.py): size, zip bomb,
entity declarations, depth. A path in the package that leads outside the book (`..`, `/`) is
refused; a remote one (`http:`) is left out; a book whose documents are encrypted (DRM) is
refused, saying so.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote
from xml.etree.ElementTree import Element

from outpost.export.documents.document import Block
from outpost.export.documents.readers.archive import (
    local,
    open_zip,
    parse_xml,
    read_part,
    xml_text,
)
from outpost.export.documents.readers.html_page import read_html_part
from outpost.runtime.errors import InputError

KIND = "EPUB"
CONTAINER = "META-INF/container.xml"
XHTML = {"application/xhtml+xml", "text/html"}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def read_epub(file: Path | BinaryIO) -> list[Block]:
    """Blocks of an .epub's documents in reading order, from its path or an open binary file
    (export/documents/ingest.py opens it)."""
    with open_zip(file, KIND) as z:
        package_path = _package_path(z)
        package = _xml_part(z, package_path)
        if package is None:
            raise InputError(f"unreadable {KIND} file (it has no {package_path})")
        base = posixpath.dirname(package_path)
        items: dict[str, tuple[str, str, list[str]]] = {}  # id: (path, media type, properties)
        tocs: set[str] = set()
        for element in package.iter():
            name = local(element.tag)
            if name == "item" and (path := _member(element.get("href", ""), base, package_path)):
                media = element.get("media-type", "").split(";")[0].strip().lower()
                items[element.get("id", "")] = (path, media, element.get("properties", "").split())
            elif name == "reference" and element.get("type", "").lower() == "toc":
                if path := _member(element.get("href", ""), base, package_path):
                    tocs.add(path)
        encrypted = _encrypted(z)
        blocks: list[Block] = []
        headings: list[tuple[int, str]] = []
        read: set[str] = set()
        for element in package.iter():
            if local(element.tag) != "itemref" or element.get("idref") not in items:
                continue
            path, media, properties = items[element.get("idref", "")]
            if media not in XHTML or "nav" in properties or path in tocs or path in read:
                continue
            read.add(path)
            if path in encrypted:
                raise InputError(
                    f"the EPUB's {path} is encrypted (DRM); only a book without DRM can be read"
                )
            data = read_part(z, path, KIND)
            if data is None:  # listed but missing: the rest of the book is still read
                continue
            text = xml_text(data, KIND, path, doctype=True)
            part, headings = read_html_part(text, headings)
            blocks += part
    return blocks


def _package_path(z: zipfile.ZipFile) -> str:
    """Where the package (.opf) is, as the container says."""
    container = _xml_part(z, CONTAINER)
    if container is None:
        raise InputError(f"not an {KIND} file (it has no {CONTAINER})")
    for element in container.iter():
        if local(element.tag) == "rootfile" and element.get("media-type", "").endswith(
            "package+xml"
        ):
            if path := _member(element.get("full-path", ""), "", CONTAINER):
                return path
    raise InputError(f"unreadable {KIND} file ({CONTAINER} names no package)")


def _xml_part(z: zipfile.ZipFile, name: str) -> Element | None:
    """A small XML part's root, checked and parsed (archive.py); None when there is none."""
    data = read_part(z, name, KIND)
    return None if data is None else parse_xml(xml_text(data, KIND, name), KIND, name)


def _member(href: str, base: str, where: str) -> str | None:
    """The archive member a package's `href` names (relative to `base`), None when it names
    nothing in the book (empty, remote); an InputError when it leads outside the book."""
    href = unquote(href.split("#")[0]).strip()
    if not href or _SCHEME.match(href):
        return None
    path = posixpath.normpath(posixpath.join(base, href))
    if href.startswith(("/", "\\")) or path == ".." or path.startswith("../"):
        raise InputError(
            f"the {KIND} file's {where} names {href[:80]!r}, outside the book; refusing it"
        )
    return path


def _encrypted(z: zipfile.ZipFile) -> set[str]:
    """The parts META-INF/encryption.xml says are encrypted (fonts often are, harmlessly)."""
    root = _xml_part(z, "META-INF/encryption.xml")
    return {
        posixpath.normpath(unquote(e.get("URI", "")))
        for e in (root.iter() if root is not None else ())
        if local(e.tag) == "CipherReference" and e.get("URI")
    }
