"""Files -> documents: each document is a list of blocks (text with its heading path).

Markdown and Word (export/markup.py), plain text, HTML and PDF. A block is a paragraph, a list item, a table, a code
block or a definition term. Navigation, scripts and page furniture are dropped; when an HTML
page marks its main content (<main>, role="main", <article>), only that is kept.
"""

from __future__ import annotations

import codecs
import fnmatch
import html.parser
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from outpost.runtime.errors import InputError
from outpost.runtime.prompt import strip_controls

SUPPORTED = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".html": "html",
             ".htm": "html", ".pdf": "pdf", ".docx": "docx"}  # fmt: skip


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


# Files larger than this are skipped (a manual is rarely over a few MB of text; a dump is).
MAX_TEXT_BYTES = 16 * 2**20
MAX_PDF_BYTES = 256 * 2**20
MAX_LINE_CHARS = 100_000  # longer lines are split by the chunker, with a note


def clean(text: str, keep_lines: bool = False) -> str:
    text = (
        unicodedata.normalize("NFKC", strip_controls(text)).replace("¶", "").replace("\u00ad", "")
    )
    if keep_lines:
        lines = [line.rstrip() for line in text.replace("\t", "    ").split("\n")]
        return "\n".join(lines).strip("\n")
    return " ".join(text.split())


def discover(
    paths: list[str | Path], exclude: tuple[str, ...] = ()
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
        if r.is_file():
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


def read_document(path: Path, source: str) -> Document:
    """Raise InputError with the reason when the file cannot give text."""
    kind = SUPPORTED[path.suffix.lower()]
    doc = Document(source, path, kind)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise InputError(f"unreadable ({e.strerror})") from None
    limit = MAX_PDF_BYTES if kind in ("pdf", "docx") else MAX_TEXT_BYTES
    if size > limit:
        raise InputError(
            f"{size / 2**20:.0f} MB, over the {limit // 2**20} MB limit for {kind} files; split it"
        )
    if kind == "pdf":
        doc.blocks = read_pdf(path)
    elif kind == "docx":
        from outpost.export.markup import read_docx

        doc.blocks = read_docx(path)
    else:
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise InputError(f"unreadable ({e.strerror})") from None
        utf16 = raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
        if b"\x00" in raw[:4096] and not utf16:
            raise InputError("binary content, not text")
        text, note = decode(raw, kind)
        text = strip_controls(text)  # before parsing: CommonMark turns NUL into U+FFFD
        if note:
            doc.notes.append(note)
        longest = max((len(line) for line in text.splitlines()), default=0)
        if longest > MAX_LINE_CHARS and kind != "html":
            doc.notes.append(f"a line of {longest} characters; split into chunks at sentences")
        from outpost.export.markup import read_markdown

        doc.blocks = {"markdown": read_markdown, "text": read_text, "html": read_html}[kind](text)
    doc.blocks = [b for b in doc.blocks if b.text.strip()]
    if not doc.blocks:
        raise InputError(
            "no text found" + (" (a scanned PDF? run OCR first)" if kind == "pdf" else "")
        )
    return doc


def read_text(text: str) -> list[Block]:
    blocks: list[Block] = []
    heading: tuple[str, ...] = ()
    for para in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [x for x in para.strip().split("\n") if x.strip()]
        if not lines:
            continue
        if len(lines) == 2 and re.fullmatch(r"[=\-~]{3,}", lines[1].strip()):
            heading = (clean(lines[0]),)
            continue
        first = lines[0].strip()
        if len(lines) == 1 and len(first) < 70 and first.isupper() and re.search(r"[A-Z]", first):
            heading = (clean(first.title()),)
            continue
        blocks.append(Block(clean(" ".join(lines)), heading))
    return blocks


# --- HTML ---------------------------------------------------------------------------------

SKIP_TAGS = {"script", "style", "head", "nav", "header", "footer", "aside", "noscript", "svg",
             "object", "form", "button", "template", "iframe"}  # fmt: skip
SKIP_ROLES = {"navigation", "banner", "contentinfo", "search", "complementary"}
# Whole class names (a heading's own link, class="toc-backref", is not a table of contents).
SKIP_CLASSES = re.compile(
    r"(?<![\w-])(sphinxsidebar|related|footer|navbar|breadcrumbs?|toc|sidebar|headerlink)(?![\w-])"
)
BLOCK_TAGS = {"p", "div", "li", "pre", "blockquote", "section", "table", "dd", "dt", "ul", "ol",
              "dl", "br", "hr", "tr", "figure", "figcaption", "caption", "article", "main"}  # fmt: skip
VOID_TAGS = {"br", "hr", "img", "meta", "link", "input", "wbr", "col", "area", "base", "source"}
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


_SPACES = re.compile(r"\s+")


def _is_main(tag: str, attrs: dict) -> bool:
    return tag in ("main", "article") or attrs.get("role") == "main"


class _HtmlBlocks(html.parser.HTMLParser):
    def __init__(self, main_only: bool):
        super().__init__(convert_charrefs=True)
        self.main_only = main_only
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, skip, main)
        self.blocks: list[Block] = []
        self.headings: list[tuple[int, str]] = []
        self.buf: list[str] = []
        self.heading_level = 0
        self.pre = 0
        self.cell = False
        self.saw_main = False

    def _skipping(self) -> bool:
        if any(s for _, s, _ in self.stack):
            return True
        return self.main_only and not any(m for _, _, m in self.stack)

    def _flush(self, glue: bool = False):
        raw = "".join(self.buf)
        self.buf.clear()
        code = self.pre > 0 or "\n" in raw.strip()
        text = clean(raw, keep_lines=code)
        if text:
            self.blocks.append(
                Block(text, tuple(h for _, h in self.headings), glue=glue, code=code)
            )

    def handle_starttag(self, tag, attrs_list):
        attrs = {k: (v or "") for k, v in attrs_list}
        skip = (
            tag in SKIP_TAGS
            or attrs.get("role") in SKIP_ROLES
            or bool(SKIP_CLASSES.search(attrs.get("class", "")))
            or attrs.get("aria-hidden") == "true"
        )
        main = _is_main(tag, attrs)
        self.saw_main |= main
        if tag in HEADINGS and not self._skipping():
            self._flush()
            self.heading_level = HEADINGS[tag]
        elif tag in ("td", "th"):
            self.buf.append(" | " if self.cell else "")
            self.cell = True
        elif tag == "tr":
            self.cell = False
            if self.buf and "".join(self.buf).strip():
                self.buf.append("\n")
        elif tag == "pre":
            self._flush()
            self.pre += 1
        elif tag in BLOCK_TAGS and tag not in ("tr",) and not self.pre:
            if tag == "dd" or tag == "br":
                self._flush(glue=tag == "dd")
            else:
                self._flush()
        if tag not in VOID_TAGS:
            self.stack.append((tag, skip, main))

    def handle_endtag(self, tag):
        if tag in VOID_TAGS:
            return
        if not any(t == tag for t, _, _ in self.stack):
            return  # stray end tag
        while self.stack:
            t, _, _ = self.stack.pop()
            if t == tag:
                break
        if tag in HEADINGS and self.heading_level:
            title = clean("".join(self.buf))
            self.buf.clear()
            level = self.heading_level
            self.heading_level = 0
            if title:
                self.headings = [(lv, h) for lv, h in self.headings if lv < level] + [
                    (level, title)
                ]
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self._flush()
        elif tag == "dt":
            self._flush(glue=True)
        elif tag in BLOCK_TAGS and not self.pre and tag not in ("tr", "br"):
            self._flush()

    def handle_data(self, data):
        if self._skipping():
            return
        if not self.pre:  # HTML folds white space outside <pre>: a wrapped source line is a space
            data = _SPACES.sub(" ", data)
        self.buf.append(data)

    def close(self):
        super().close()
        self._flush()


def read_html(text: str) -> list[Block]:
    probe = _HtmlBlocks(main_only=False)
    probe.feed(text)
    probe.close()
    if not probe.saw_main:
        return probe.blocks
    parser = _HtmlBlocks(main_only=True)
    parser.feed(text)
    parser.close()
    return parser.blocks


# --- PDF ----------------------------------------------------------------------------------

PDF_HEADING = re.compile(r"^(\d+(\.\d+)*\.?|[A-Z]\.|Chapter \d+|Section \d+)\s+\S.{0,70}$")


def read_pdf(path: Path) -> list[Block]:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError:  # pragma: no cover - pypdf is part of the [export] extra
        raise InputError("reading PDF needs pypdf: pip install 'outpost-llm[export]'") from None
    try:
        reader = PdfReader(str(path))
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


def ingest(
    paths: list[str | Path], progress=None, exclude: tuple[str, ...] = ()
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
