"""Files -> documents: each document is a list of blocks (text with its heading path).

The readers, one per format, are in export/documents/readers/ (Markdown, Word, OpenDocument
text, EPUB, plain text, HTML, PDF). A block is a paragraph, a list item, a table, a code block
or a definition term. Navigation, scripts and page furniture are dropped; when an HTML
page marks its main content (<main>, role="main", <article>), only that is kept.
"""

from __future__ import annotations

import codecs
import errno
import fnmatch
import hashlib
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from outpost.export.documents.document import Document, Skipped
from outpost.export.documents.readers.epub import read_epub
from outpost.export.documents.readers.html_page import read_html
from outpost.export.documents.readers.markdown import read_markdown
from outpost.export.documents.readers.odt import read_odt
from outpost.export.documents.readers.pdf import read_pdf
from outpost.export.documents.readers.plain import read_text
from outpost.export.documents.readers.word import read_docx
from outpost.runtime.ask.prompt import strip_controls
from outpost.runtime.errors import InputError
from outpost.runtime.files import kind_of, open_plain

if TYPE_CHECKING:
    from outpost.export.config import ChunkConfig

SUPPORTED = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".odt": "odt",
    ".epub": "epub",
}

# The zipped formats: their reader takes the open file (each checks the archive first).
ARCHIVES = {"docx": read_docx, "odt": read_odt, "epub": read_epub}


# Files larger than this are skipped (a manual is rarely over a few MB of text; a dump is).
MAX_TEXT_BYTES = 16 * 2**20
MAX_PDF_BYTES = 256 * 2**20  # and the zipped formats' (ARCHIVES)
MAX_LINE_CHARS = 100_000  # longer lines are split by the chunker, with a note
# A run of characters without white space longer than this is no word, number, path or URL a
# reader could quote (a long URL is about 2,000): encoded data, a dump or a flood. It is left
# out of the text, with a note, before anything is chunked or embedded.
MAX_RUN_CHARS = 2_000
_LONG_RUN = re.compile(rf"\S{{{MAX_RUN_CHARS + 1},}}")


def discover(
    paths: Sequence[str | Path], exclude: Sequence[str] = ()
) -> tuple[list[tuple[Path, str]], list[Skipped], Path]:
    """All files under `paths`, as (path, source name), the skipped ones with why, and the root.

    `exclude` holds glob patterns matched against the source path and the file name. Links are
    followed only to files inside the documents root; unreadable folders, link loops and
    links that lead outside are listed as skipped.
    """
    roots = [Path(p) for p in paths]
    for r in roots:
        if not r.exists():
            raise InputError(f"{r} does not exist; pass folders or files of documents")
    parents = [r.resolve() if r.is_dir() else r.resolve().parent for r in roots]
    root = Path(os.path.commonpath(parents))
    found: list[Path] = []
    skipped: list[Skipped] = []

    def name(p: Path) -> str:
        return p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)

    def unreadable(e: OSError) -> None:
        skipped.append(Skipped(name(Path(e.filename)), f"unreadable folder ({e.strerror})"))

    for r in roots:
        if not r.is_dir():  # a file (or a FIFO, a device...) named on the command line
            found.append(r.resolve())
            continue
        for dirpath, dirnames, filenames in os.walk(r.resolve(), onerror=unreadable):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
            found.extend(Path(dirpath, f) for f in sorted(filenames) if not f.startswith("."))
    files, seen = [], set()
    for f in found:
        source = name(f)
        if any(fnmatch.fnmatch(source, g) or fnmatch.fnmatch(f.name, g) for g in exclude):
            continue
        try:
            target = f.resolve(strict=True)
        except (OSError, RuntimeError) as e:  # a link loop or a link to nothing
            skipped.append(Skipped(source, f"broken or looping link ({type(e).__name__})"))
            continue
        if not target.is_relative_to(root):
            skipped.append(Skipped(source, f"a link to {target}, outside the documents folder"))
            continue
        try:
            mode = target.stat().st_mode  # stat never opens: a FIFO cannot block it
        except OSError as e:
            skipped.append(Skipped(source, f"unreadable ({e.strerror})"))
            continue
        if not stat.S_ISREG(mode):
            skipped.append(
                Skipped(source, f"{kind_of(mode)}, not a plain file; only files are read")
            )
            continue
        if target in seen:
            continue
        seen.add(target)
        if f.suffix.lower() in SUPPORTED:
            files.append((target, source))
        else:
            skipped.append(Skipped(source, f"unsupported type '{f.suffix or f.name}'"))
    return files, skipped, root


def decode(raw: bytes, kind: str) -> tuple[str, str | None]:
    """Text of a file and, when it was not UTF-8, a note naming the encoding used.

    UTF-8 (with or without BOM) and UTF-16 with a BOM; else the charset an HTML page declares;
    else Windows-1252 (a superset of Latin-1 for text), which is what most non-UTF-8 manuals are.
    """
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[3:]
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16", errors="replace"), None
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    if kind == "html" and (m := re.search(rb"charset=[\"']?([\w-]+)", raw[:4096], re.I)):
        declared = m.group(1).decode("ascii").lower()
        try:
            return raw.decode(declared), f"decoded as {declared} (declared by the page, not UTF-8)"
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        return raw.decode("cp1252"), "not UTF-8; decoded as Windows-1252 (check accented letters)"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "not UTF-8; decoded as Latin-1 (check accented letters)"


def open_document(path: Path) -> BinaryIO:
    """A found document opened for reading: a plain file, never through a link (discovery
    passes the link's target), opened so that nothing put in its place since can block the
    export. InputError with the reason a file cannot be read otherwise."""
    try:
        return open_plain(path, follow=False)
    except FileNotFoundError:
        raise InputError(
            "vanished before it was read (deleted or renamed during the export)"
        ) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError("became a link during the export; run it again") from None
        raise InputError(f"unreadable ({e.strerror})") from None
    except ValueError as e:
        raise InputError(f"{e}; only files are read") from None


def hash_document(path: Path) -> str:
    """The sha256 of a found document's bytes (InputError when it cannot be read)."""
    digest = hashlib.sha256()
    with open_document(path) as f:
        try:
            while block := f.read(2**20):
                digest.update(block)
        except OSError as e:
            raise InputError(f"unreadable ({e.strerror})") from None
    return digest.hexdigest()


def hash_documents(
    files: list[tuple[Path, str]], skipped: list[Skipped]
) -> tuple[list[tuple[Path, str]], list[str]]:
    """The files that can be read, with their sha256; the others added to `skipped`."""
    readable, hashes = [], []
    for path, source in files:
        try:
            hashes.append(hash_document(path))
        except InputError as e:
            skipped.append(Skipped(source, str(e)))
            continue
        readable.append((path, source))
    return readable, hashes


def _drop_long_runs(text: str) -> tuple[str, list[int]]:
    """`text` without its runs of more than MAX_RUN_CHARS characters without white space, and
    the lengths of the runs left out."""
    runs: list[int] = []

    def drop(m: re.Match) -> str:
        runs.append(len(m.group()))
        return ""

    return _LONG_RUN.sub(drop, text), runs


def read_document(path: Path, source: str, pdf_text: str = "pypdf") -> Document:
    """Raise InputError with the reason when the file cannot give text. `pdf_text`: pypdf or
    poppler (ChunkConfig.pdf_text, `--pdf-text`)."""
    kind = SUPPORTED[path.suffix.lower()]
    with open_document(path) as f:
        return _read_open(f, Document(source, path, kind), pdf_text)


def _read_open(f: BinaryIO, doc: Document, pdf_text: str = "pypdf") -> Document:
    kind = doc.kind
    size = os.fstat(f.fileno()).st_size
    limit = MAX_PDF_BYTES if kind == "pdf" or kind in ARCHIVES else MAX_TEXT_BYTES
    if size > limit:
        raise InputError(
            f"{size / 2**20:.0f} MB, over the {limit // 2**20} MB limit for {kind} files; split it"
        )
    runs: list[int] = []  # lengths of the runs without white space left out
    if kind == "pdf":
        doc.blocks = read_pdf(f, doc.notes, poppler=pdf_text == "poppler")
    elif kind in ARCHIVES:  # zipped XML: the reader checks the archive before it parses it
        doc.blocks = ARCHIVES[kind](f)
    else:
        try:
            raw = f.read(limit + 1)
        except OSError as e:
            raise InputError(f"unreadable ({e.strerror})") from None
        utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        if b"\x00" in raw[:4096] and not utf16:
            raise InputError("binary content, not text")
        text, note = decode(raw, kind)
        text = strip_controls(text)  # before parsing: CommonMark turns NUL into U+FFFD
        if note:
            doc.notes.append(note)
        if kind != "html":  # before parsing; a page's markup has long runs, its text is checked
            text, runs = _drop_long_runs(text)
        longest = max((len(line) for line in text.splitlines()), default=0)
        if longest > MAX_LINE_CHARS and kind != "html":
            doc.notes.append(f"a line of {longest} characters; split into chunks at sentences")
        doc.blocks = {"markdown": read_markdown, "text": read_text, "html": read_html}[kind](text)
    for block in doc.blocks:  # what the readers of pages, PDF and Word files gave
        block.text, dropped = _drop_long_runs(block.text)
        runs += dropped
    doc.blocks = [b for b in doc.blocks if b.text.strip()]
    left_out = ""
    if runs:
        left_out = (
            f"{len(runs)} run(s) of more than {MAX_RUN_CHARS} characters without a space left "
            f"out (the longest {max(runs)} characters without a space): encoded data, not text"
        )
        doc.notes.append(left_out)
    if not doc.blocks:
        raise InputError(
            "no text found"
            + (
                "; its pages are blank or OCR read nothing (a scanned PDF needs tesseract-ocr "
                "and poppler-utils: make system-deps)"
                if kind == "pdf"
                else ""
            )
            + (f"; {left_out}" if left_out else "")
        )
    return doc


def read_chunks(path: Path, source: str, config: ChunkConfig) -> tuple[str, list[str], str, list]:
    """One document read and chunked: (kind, notes, "", chunks), or ("", [], why it was
    skipped, []). The unit of work of both engines (here, and Ray's in export/engines/ray_data.py)."""
    from outpost.export.documents.chunk import chunk_document

    try:
        doc = read_document(path, source, config.pdf_text)
        return doc.kind, doc.notes, "", chunk_document(doc, config)
    except InputError as e:
        return "", [], str(e), []
    except Exception as e:  # noqa: BLE001 - a reader choking on a damaged file skips that file
        return "", [], f"cannot be read ({type(e).__name__}: {str(e)[:80]})", []


def ingest(
    paths: Sequence[str | Path], progress=None, exclude: Sequence[str] = ()
) -> tuple[list[Document], list[Skipped], Path]:
    """Read every supported file; collect the others with the reason they were skipped."""
    files, skipped, root = discover(paths, exclude)
    docs: list[Document] = []
    for i, (path, source) in enumerate(files, 1):
        try:
            docs.append(read_document(path, source))
        except InputError as e:
            skipped.append(Skipped(source, str(e)))
        except Exception as e:  # noqa: BLE001 - a reader choking on a damaged file skips that file
            skipped.append(Skipped(source, f"cannot be read ({type(e).__name__}: {str(e)[:80]})"))
        if progress:
            progress(i, len(files))
    return docs, skipped, root
