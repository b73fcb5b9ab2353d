"""Zipped XML formats (.docx, .odt, .epub): the checks made before any of it is parsed.

`open_zip` refuses an archive that would unpack past MAX_UNPACKED or has a part that compresses
like a bomb; `read_part` reads one part within those bounds; `xml_text` refuses an entity
declaration (and, where the format never has one, any DOCTYPE) in the bytes, before a parser
sees them; `xml_events` parses with xml.etree (expat: no DTD is fetched, no network) and
refuses nesting past MAX_DEPTH. Every failure is one InputError line naming the format.
"""

from __future__ import annotations

import codecs
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from xml.etree import ElementTree

from outpost.runtime.errors import InputError

MAX_UNPACKED = 256 * 2**20  # a 500-page manual's XML is a few tens of MB
MAX_RATIO = 200  # text XML compresses ~10x; a zip bomb ~1000x
MAX_DEPTH = 200  # elements inside elements; a manual's XML nests a few tens deep
_FEED = 2**16  # characters given to the parser at a time (the depth is checked between)
_READ_ERRORS = (zipfile.BadZipFile, OSError, ValueError, RuntimeError, EOFError, zlib.error)
_DOCTYPE = re.compile(r"<!doctype[^>\[]*(\[)?", re.IGNORECASE)


def open_zip(file: Path | BinaryIO, kind: str) -> zipfile.ZipFile:
    """The archive, opened once its parts are known to unpack to at most MAX_UNPACKED in all,
    none over 1 MB unpacking more than MAX_RATIO times its size. `kind` names the format in
    the errors ("Word", "OpenDocument", "EPUB")."""
    try:
        z = zipfile.ZipFile(file)
    except _READ_ERRORS as e:
        raise InputError(f"unreadable {kind} file ({type(e).__name__}: {e})") from None
    parts = z.infolist()
    total = sum(p.file_size for p in parts)
    if total > MAX_UNPACKED:
        z.close()
        raise InputError(
            f"the {kind} file unpacks to {total / 2**20:.0f} MB, over {MAX_UNPACKED // 2**20} MB; "
            "split it or save it again"
        )
    for p in parts:
        if p.file_size > 2**20 and p.file_size > MAX_RATIO * max(p.compress_size, 1):
            z.close()
            raise InputError(
                f"the {kind} file's part {p.filename} unpacks {p.file_size // max(p.compress_size, 1)}x; "
                "refusing what looks like a zip bomb"
            )
    return z


def check_zip(file: Path | BinaryIO, kind: str) -> None:
    """`open_zip`'s checks alone, for a reader that opens the archive itself (python-docx)."""
    open_zip(file, kind).close()


def read_part(z: zipfile.ZipFile, name: str, kind: str) -> bytes | None:
    """A part's bytes (None when the archive has no such part); never more than its header
    declares, which `open_zip` has bounded."""
    try:
        info = z.getinfo(name)
    except KeyError:
        return None
    try:
        with z.open(info) as f:
            data = f.read(info.file_size + 1)
    except (*_READ_ERRORS, NotImplementedError) as e:
        raise InputError(f"unreadable {kind} file ({name}: {type(e).__name__}: {e})") from None
    if len(data) > info.file_size:  # zipfile stops at the declared size; never trust it blindly
        raise InputError(f"unreadable {kind} file ({name} is longer than its archive says)")
    return data


def xml_text(data: bytes, kind: str, name: str, doctype: bool = False) -> str:
    """The text of an XML part: UTF-8 or UTF-16 (with its BOM) or the encoding its XML
    declaration names. Refused, before any parser sees it: an entity declaration (no manual
    needs one; entities that expand to entities are the "billion laughs" bomb) and a DOCTYPE
    with an internal subset; any DOCTYPE at all unless `doctype` (XHTML has `<!DOCTYPE html>`)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = data.decode("utf-16", errors="replace")
    else:
        if data.startswith(codecs.BOM_UTF8):
            data = data[3:]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            declared = re.match(rb"<\?xml[^>]*encoding=[\"']([\w.-]+)", data[:200])
            try:
                text = data.decode(declared.group(1).decode() if declared else "utf-8", "replace")
            except LookupError:
                text = data.decode("utf-8", errors="replace")
    lowered = text.lower()
    found = _DOCTYPE.search(lowered)
    if "<!entity" in lowered:
        what = "an entity declaration"
    elif found is not None and found.group(1):
        what = "a DOCTYPE with declarations of its own"
    elif found is not None and not doctype:
        what = "a DOCTYPE"
    else:
        return text
    raise InputError(
        f"the {kind} file's {name} has {what}, which no {kind} file needs; "
        "refusing it (entities can expand without bound)"
    )


def xml_events(text: str, kind: str, name: str) -> Iterator[tuple[str, ElementTree.Element]]:
    """("start" | "end", element) of an XML text in document order, as the tree is built; an
    InputError past MAX_DEPTH elements deep or where the XML is not well-formed."""
    # Any: typeshed types read_events() for every kind of event; only start and end are asked for
    parser: Any = ElementTree.XMLPullParser(events=("start", "end"))
    depth = 0
    try:
        for at in range(0, max(len(text), 1), _FEED):
            parser.feed(text[at : at + _FEED])
            for event, element in parser.read_events():
                depth += 1 if event == "start" else -1
                if depth > MAX_DEPTH:
                    raise InputError(
                        f"the {kind} file's {name} nests elements more than {MAX_DEPTH} deep; "
                        "refusing it"
                    )
                yield event, element
        parser.close()
        yield from parser.read_events()
    except ElementTree.ParseError as e:
        raise InputError(f"unreadable {kind} file ({name}: {' '.join(str(e).split())})") from None


def parse_xml(text: str, kind: str, name: str) -> ElementTree.Element:
    """The root of a small XML part (a package, a container), parsed by `xml_events`."""
    root = None
    for event, element in xml_events(text, kind, name):
        if event == "start" and root is None:
            root = element
    if root is None:
        raise InputError(f"unreadable {kind} file ({name} is empty)")
    return root


def local(tag: str) -> str:
    """An element's name without its namespace ("{http://www.idpf.org/2007/opf}item" -> "item")."""
    return tag.rpartition("}")[2]
