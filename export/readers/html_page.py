"""HTML -> blocks. Navigation, scripts and page furniture are dropped; when a page marks its
main content (<main>, role="main", <article>), only that is kept. White space folds as a browser
folds it, except inside <pre>."""

from __future__ import annotations

import html.parser
import re

from outpost.export.document import Block, clean

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
