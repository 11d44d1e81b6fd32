"""Text normalisation before the filters: HTML to text (crawled pages), Unicode repair with ftfy
(mojibake such as "cafÃ©"), and BigScience's whitespace normalisation (uniform_whitespace and
remove_non_printing_characters of their OSCAR filtering code) made to keep line structure, which
code and paragraphs need: they turned newlines and tabs into spaces too."""

import html.parser
import re

import ftfy
from datatrove.data import Document

from roots_jax.corpus.steps import Record, Step

# BigScience's whitespace list (filtering.py, uniform_whitespace) and the rest of
# string.whitespace but "\t" and "\n" become " "; their non-printing characters (normalization.py:
# code points 0-31 and 127-159) are removed, "\t" and "\n" kept. "\r\n" and "\r" are newlines.
_SPACES = "\u2009\u200a\u202f\u2005\u3000\u2002\u00a0\u2008\u2003\ufffc\x84\x0b\x0c"
_NON_PRINTING = [c for c in range(160) if (c < 32 or c >= 127) and chr(c) not in "\t\n\x0b\x0c\x84"]
_TRANSLATE = {**{ord(c): " " for c in _SPACES}, **dict.fromkeys(_NON_PRINTING)}
_INNER_SPACES = re.compile(r"(?<=\S)  +")  # runs inside a line; indentation is kept
_TRAILING = re.compile(r"[ \t]+$", re.M)
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_whitespace(text: str) -> str:
  """Exotic spaces to " ", non-printing characters removed, runs of spaces inside a line to one,
  trailing spaces and tabs cut, at most one blank line in a row, no blank lines at the start or
  end (a final newline is kept)."""
  text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_TRANSLATE)
  text = _BLANK_LINES.sub("\n\n", _TRAILING.sub("", _INNER_SPACES.sub(" ", text)))
  body = text.strip("\n")
  return body + "\n" if body and text.endswith("\n") else body


# ftfy's fixes less those that rewrite sound text: curly quotes and full-width characters are
# content (full-width punctuation is normal Chinese and Japanese), entities are `html`'s business.
_FTFY = ftfy.TextFixerConfig(unescape_html=False, uncurl_quotes=False, fix_character_width=False,
                             explain=False)

# ASCII controls but "\t" and "\n": terminal escapes, "\r", what remove_control_chars removes.
_ASCII_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def repair_unicode(text: str) -> str:
  """ftfy.fix_text, which fixes each line on its own, with the lines it leaves alone skipped:
  printable ASCII holds no mojibake, and ftfy's per-line cost would dominate a corpus of code."""
  lines = text.split("\n")
  segments = [line + "\n" for line in lines[:-1]] + [lines[-1]]
  return "".join(ftfy.fix_text(s, _FTFY) if not s.isascii() or _ASCII_CONTROLS.search(s) else s
                 for s in segments)


_SKIPPED = frozenset({"script", "style", "noscript", "template"})
# Elements on lines of their own in a browser's rendering; paragraphs are followed by a blank
# line; table cells are separated by a space.
_BLOCKS = frozenset("""address article aside blockquote br caption dd details dialog div dl dt
    fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre
    section summary table tbody tfoot thead title tr ul""".split())
_PARAGRAPHS = frozenset("blockquote dl h1 h2 h3 h4 h5 h6 ol p pre table title ul".split())
_CELLS = frozenset({"td", "th"})
_HTML_SPACES = re.compile("[ \t\n\r\f]+")  # HTML's whitespace: a no-break space is not


class _Text(html.parser.HTMLParser):
  """The text a browser shows: script and style dropped, blocks on their own lines, whitespace
  inside text collapsed (but in <pre>), entities unescaped (convert_charrefs)."""

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.parts, self.skipped, self.pre = [], 0, 0

  def _at_line_start(self) -> bool:
    return not self.parts or self.parts[-1].endswith("\n")

  def _newline(self, lines: int = 1):
    """End the current line, and leave `lines` - 1 blank lines after it."""
    if self.parts:
      self.parts[-1] = self.parts[-1].rstrip(" ")
    text = "".join(self.parts[-2:])
    missing = lines - (len(text) - len(text.rstrip("\n")))
    if self.parts and missing > 0:
      self.parts.append("\n" * missing)

  def handle_starttag(self, tag, attrs):
    if tag in _SKIPPED:
      self.skipped += 1
    elif tag in _BLOCKS:
      self._newline()
      self.pre += tag == "pre"
    elif tag in _CELLS and not self._at_line_start():
      self.parts.append(" ")

  def handle_startendtag(self, tag, attrs):
    if tag in _BLOCKS:
      self._newline()

  def handle_endtag(self, tag):
    if tag in _SKIPPED:
      self.skipped = max(self.skipped - 1, 0)
    elif tag in _BLOCKS:
      self._newline(2 if tag in _PARAGRAPHS else 1)
      self.pre = max(self.pre - (tag == "pre"), 0)

  def handle_data(self, data):
    if self.skipped:
      return
    if not self.pre:
      data = _HTML_SPACES.sub(" ", data)
      if self._at_line_start():
        data = data.lstrip(" ")
    if data:
      self.parts.append(data)


def html_to_text(page: str) -> str:
  parser = _Text()
  parser.feed(page)
  parser.close()
  return _BLANK_LINES.sub("\n\n", "".join(parser.parts)).strip("\n")


class Normalizer(Step):
  """Rewrites each document: HTML to text (`html`, for crawled pages), then ftfy's Unicode fixes
  (`fix_unicode`), then the whitespace normalisation (`whitespace`); counts the documents each
  changed ("html_converted", "unicode_fixed", "whitespace_changed") and removes those left
  empty (reason "empty")."""

  name = "normalize"

  def __init__(self, report_dir: str, *, fix_unicode: bool = True, whitespace: bool = True,
               html: bool = False):
    super().__init__(report_dir)
    self.fix_unicode, self.whitespace, self.html = fix_unicode, whitespace, html

  def apply(self, doc: Document, record: Record) -> str | None:
    for enabled, counter, fix in ((self.html, "html_converted", html_to_text),
                                  (self.fix_unicode, "unicode_fixed", repair_unicode),
                                  (self.whitespace, "whitespace_changed", normalize_whitespace)):
      if enabled:
        text = fix(doc.text)
        if text != doc.text:
          record.count(counter)
          doc.text = text
    return None if doc.text.strip() else "empty"
