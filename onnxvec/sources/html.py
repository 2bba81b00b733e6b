"""HTML pages to clean text that keeps their structure, for chunking at sections.

What a reader of the page would call its content is kept; navigation (header, footer, nav, DocBook's
navheader/navfooter, role=navigation), tables of contents, scripts and styles are dropped, since on
every page of a site they repeat the same words and pull searches toward the wrong chunks. Blocks
(paragraphs, list items, table rows, definition terms and their descriptions) become lines with the
source's line breaks collapsed; a table row's cells stay on one line separated by " | "; <pre> is kept
as written. Headings become markdown heading lines ("## 20.4.1. Memory") and so does each definition
term of a <dl>, one level below the heading it sits under: the chunker starts sections at them.

The stdlib parser is enough here: pages are read once, front to back, and DocBook's XHTML is well
formed; a tree library (lxml, selectolax) would add a compiled dependency for no better text.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser

HIDDEN_TAGS = {"script", "style", "noscript", "template", "svg", "nav", "header", "footer", "head"}
INDEX_CLASSES = {"indexdiv", "indexdiv-quicklinks"}  # DocBook's index entries and their A-Z links
HIDDEN_CLASSES = {"navheader", "navfooter", "toc"} | INDEX_CLASSES  # DocBook's navigation and contents
BLOCKS = {
    "address", "article", "aside", "blockquote", "br", "caption", "dd", "div", "dl", "dt", "figcaption", "figure",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li", "main", "ol", "p", "section", "table", "tbody", "thead", "tfoot",
    "ul",
}  # fmt: skip
# DocBook's asides: their "Note" or "Tip" title is no section heading
ASIDES = {"note", "tip", "warning", "caution", "important", "sidebar"}
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
CELLS = {"td", "th"}
LINE_PREFIXED = set(HEADINGS) | {"dt", "li"}  # their line starts with "## " or "- "


@dataclass(frozen=True)
class Page:
    title: str | None  # <title>, else the first <h1>
    text: str
    index: bool  # mostly an index (links to other pages by keyword), not content


def read_html(markup: str) -> Page:
    """The page's title, its text with heading lines, and whether it is mostly an index."""
    reader = _Reader()
    reader.feed(markup)
    reader.close()
    reader.end_block()
    text = "\n".join(reader.lines)
    return Page(reader.title or reader.first_h1, text, reader.index_chars > len(text))


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.inline: list[str] = []
        self.prefix = ""  # "## " for a heading line, "- " for a list item
        self.hidden: list[str] = []  # the hidden element we are in and open tags of its name inside it
        self.hidden_is_index = False
        self.index_chars = 0
        self.title: str | None = None
        self.in_title = False
        self.first_h1: str | None = None
        self.level = 0  # the level of the last heading
        self.lists = 0  # <dl> nesting, for the level of a definition term
        self.pre = 0
        self.divs: list[bool] = []  # for each open <div>: whether it is an aside
        self.cells = -1  # cells so far in the current table row; -1 outside a row

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        elif tag == "body":  # a <head> left open ends here
            self.hidden = []
        elif self.hidden:
            if tag == self.hidden[0]:
                self.hidden.append(tag)
        else:
            attributes = dict(attrs)
            classes = set((attributes.get("class") or "").split())
            if tag in HIDDEN_TAGS or classes & HIDDEN_CLASSES or attributes.get("role") == "navigation":
                self.hidden = [tag]
                self.hidden_is_index = bool(classes & INDEX_CLASSES)
            else:
                self._open(tag, classes)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif self.hidden:
            if tag == self.hidden[0]:
                self.hidden.pop()
        else:
            self._close(tag)

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title = ((self.title or "") + " " + " ".join(data.split())).strip() or None
        elif self.hidden:
            self.index_chars += len(data.strip()) if self.hidden_is_index else 0
        else:
            self.inline.append(data)

    def _open(self, tag: str, classes: set[str]) -> None:
        if tag == "div":
            self.divs.append(bool(classes & ASIDES))
        elif tag == "dl":
            self.lists += 1
        if tag == "pre":
            self.end_block()
            self.pre += 1
        elif tag in CELLS:
            self.inline.append(" | " if self.cells > 0 else " ")
            self.cells += 1
        elif tag == "tr":
            self.end_block()
            self.cells = 0
        elif self.cells > 0:  # any other block inside a table row: the row stays one line
            self._block_break(tag)
        elif tag in HEADINGS and not any(self.divs):
            self.end_block()
            self.level = HEADINGS[tag]
            self.prefix = "#" * self.level + " "
        elif tag == "dt":
            self.end_block()
            self.prefix = "#" * min(6, self.level + self.lists) + " "
        elif tag == "li":
            self.end_block()
            self.prefix = "- "
        else:
            self._block_break(tag)

    def _close(self, tag: str) -> None:
        if tag == "pre":
            self.end_block()
            self.pre = max(0, self.pre - 1)
        elif tag == "tr":
            self.end_block()
            self.cells = -1
        elif tag in LINE_PREFIXED and self.prefix:
            text = self.end_block()
            self.first_h1 = self.first_h1 or (text if tag == "h1" else None)
            self.prefix = ""
        else:
            self._block_break(tag)
        if tag == "div" and self.divs:
            self.divs.pop()
        elif tag == "dl" and self.lists:
            self.lists -= 1

    def _block_break(self, tag: str) -> None:
        """A block boundary ends the line; inside a table row it only separates words."""
        if tag in BLOCKS and self.cells > 0:
            self.inline.append(" ")
        elif tag in BLOCKS:
            self.end_block()

    def end_block(self) -> str:
        """Close the current block as a line (its whitespace collapsed; <pre> kept); its text."""
        raw = "".join(self.inline)
        self.inline = []
        if self.pre:
            text = raw.strip("\n").rstrip()
            if text:
                self.lines.append(text)
            return text
        text = " ".join(raw.split())
        if text:
            self.lines.append(self.prefix + text)
            self.prefix = ""
        return text
