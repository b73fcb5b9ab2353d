"""HTML -> blocks. Navigation, scripts and page furniture are dropped; when a page marks its
main content (<main>, role="main", <article>), only that is kept. White space folds as a browser
folds it, except inside <pre>."""

from __future__ import annotations

import html.parser
import re
from collections.abc import Sequence

from outpost.export.documents.document import Block, clean

SKIP_TAGS = {
    "script",
    "style",
    "head",
    "nav",
    "header",
    "footer",
    "aside",
    "noscript",
    "svg",
    "object",
    "form",
    "button",
    "template",
    "iframe",
}
SKIP_ROLES = {"navigation", "banner", "contentinfo", "search", "complementary"}
# Whole class names (a heading's own link, class="toc-backref", is not a table of contents).
SKIP_CLASSES = re.compile(
    r"(?<![\w-])(sphinxsidebar|related|footer|navbar|breadcrumbs?|toc|sidebar|headerlink)(?![\w-])"
)
BLOCK_TAGS = {
    "p",
    "div",
    "li",
    "pre",
    "blockquote",
    "section",
    "table",
    "dd",
    "dt",
    "ul",
    "ol",
    "dl",
    "br",
    "hr",
    "tr",
    "figure",
    "figcaption",
    "caption",
    "article",
    "main",
}
VOID_TAGS = {"br", "hr", "img", "meta", "link", "input", "wbr", "col", "area", "base", "source"}
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


_SPACES = re.compile(r"\s+")
_COMMENT_END = re.compile(r"--\s*>")  # what html.parser takes for the end of a comment


def _linear(page: str) -> str:
    """The page as html.parser reads it in linear time. The parser looks for the end of a
    comment, tag or declaration as far as the end of the page, and when there is none it looks
    again from the next "<" (quadratic; CPython before 3.13.5, gh-135462). So each is given an
    end it finds nearby, as HTML5 reads them: after the last "-->" no comment can end, so "<!--"
    is text there; "<![" (CDATA, Word's "<![if ...]>") is a bogus comment up to the next ">";
    after the last ">" no tag can end, so "<" is text there."""
    last = 0
    for last_end in _COMMENT_END.finditer(page):
        last = last_end.end()
    if (at := page.find("<!--", last)) >= 0:
        page = page[:at] + page[at:].replace("<!--", "&lt;!--")
    page = page.replace("<![", "<!-[")
    last = page.rfind(">") + 1
    if "<" in page[last:]:
        page = page[:last] + page[last:].replace("<", "&lt;")
    return page


def _is_main(tag: str, attrs: dict) -> bool:
    return tag in ("main", "article") or attrs.get("role") == "main"


class _HtmlBlocks(html.parser.HTMLParser):
    def __init__(self, main_only: bool, headings: Sequence[tuple[int, str]] = ()):
        super().__init__(convert_charrefs=True)
        self.main_only = main_only
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, skip, main)
        # Counts kept with the stack, so that no event scans it (linear time on any page): how
        # many open elements skip their content, mark the main content, or have each name.
        self.skips = 0
        self.mains = 0
        self.open: dict[str, int] = {}
        self.blocks: list[Block] = []
        self.headings: list[tuple[int, str]] = list(headings)  # (level, title)
        self.buf: list[str] = []
        self.buf_text = False  # whether buf holds more than white space
        self.heading_level = 0
        self.pre = 0
        self.cell = False
        self.saw_main = False

    def _skipping(self) -> bool:
        return self.skips > 0 or (self.main_only and not self.mains)

    def _push(self, tag: str, skip: bool, main: bool) -> None:
        self.stack.append((tag, skip, main))
        self.skips += skip
        self.mains += main
        self.open[tag] = self.open.get(tag, 0) + 1

    def _pop(self) -> str:
        tag, skip, main = self.stack.pop()
        self.skips -= skip
        self.mains -= main
        self.open[tag] -= 1
        return tag

    def _flush(self, glue: bool = False):
        raw = "".join(self.buf)
        self.buf.clear()
        self.buf_text = False
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
            if self.buf_text:
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
            self._push(tag, skip, main)

    def handle_endtag(self, tag):
        if tag in VOID_TAGS or not self.open.get(tag):
            return  # a void element's or a stray end tag
        while self._pop() != tag:  # each element is popped once: linear over the page
            pass
        if tag in HEADINGS and self.heading_level:
            title = clean("".join(self.buf))
            self.buf.clear()
            self.buf_text = False
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
        self.buf_text = self.buf_text or (bool(data) and not data.isspace())

    def close(self):
        super().close()
        self._flush()


def read_html(text: str) -> list[Block]:
    """Blocks of a page, in time linear in its length whatever its markup."""
    return read_html_part(text)[0]


def read_html_part(
    text: str, headings: Sequence[tuple[int, str]] = ()
) -> tuple[list[Block], list[tuple[int, str]]]:
    """Blocks of a page that continues another (an EPUB's next chapter): its blocks start under
    `headings`, (level, title) pairs, and the heading path at its end is returned with them."""
    text = _linear(text)
    probe = _HtmlBlocks(main_only=False, headings=headings)
    probe.feed(text)
    probe.close()
    if not probe.saw_main:
        return probe.blocks, probe.headings
    parser = _HtmlBlocks(main_only=True, headings=headings)
    parser.feed(text)
    parser.close()
    return parser.blocks, parser.headings


# --- PDF ----------------------------------------------------------------------------------
