"""Normalisation: mojibake repaired, whitespace made uniform with lines kept, HTML to text."""

import ftfy
from datatrove.data import Document

from roots_jax.corpus import normalize
from roots_jax.corpus.normalize import Normalizer, html_to_text, normalize_whitespace, repair_unicode
from roots_jax.corpus.steps import Record


def test_repair_unicode():
  assert repair_unicode("cafÃ©") == "café"
  # Windows-1252 mojibake of curly quotes; the quotes themselves and full-width letters stay.
  assert repair_unicode("â€œquotedâ€\x9d\n") == "“quoted”\n"
  assert repair_unicode("“ok” ＡＢ") == "“ok” ＡＢ"
  # Terminal escapes and "\r\n" on an ASCII line are ftfy's too.
  assert repair_unicode("\x1b[31mred\x1b[0m\r\nok") == "red\nok"
  # Skipping the lines ftfy leaves alone changes nothing.
  text = "plain\ncafÃ©\r\n\x00x\tﬁ\n\nâ€œquotedâ€\x9d"
  assert repair_unicode(text) == ftfy.fix_text(text, normalize._FTFY)


def test_normalize_whitespace():
  # No-break, thin and ideographic spaces become spaces; \x01 and \x85 are non-printing.
  assert normalize_whitespace("a\u00a0b\u2009c\u3000d\x01e\x85f") == "a b c def"
  text = "\n\n  def f():\r\n      x  =  1   \n\n\n\n\treturn x\t\n"
  # Leading blank lines go, indentation stays, inner runs of spaces shrink, trailing spaces go,
  # at most one blank line, the final newline stays.
  assert normalize_whitespace(text) == "  def f():\n      x = 1\n\n\treturn x\n"
  assert normalize_whitespace(" \n \n") == ""


def test_html_to_text():
  page = ("<html><head><title>T &amp; U</title><style>p {color: red}</style></head><body>"
          "<p>Hello\n   <b>world</b> </p><script>var x = '<p>';</script>"
          "<ul><li>a</li><li>b&nbsp;c</li></ul>x<br>y<br/>"
          "<table><tr><td>1</td><td>2</td></tr></table><pre>  keep\n    this</pre>end</body></html>")
  assert html_to_text(page) == ("T & U\n\nHello world\n\na\nb\u00a0c\n\nx\ny\n1 2\n\n"
                                "  keep\n    this\n\nend")


def test_normalizer_counts_and_removes_empty(tmp_path):
  step = Normalizer(str(tmp_path), html=True)
  record = Record("normalize", 0)
  page = Document(text="<p>caf&eacute; ok</p>\n\n\n<p>b&nbsp;c</p>", id="p")
  assert step.apply(page, record) is None
  assert page.text == "café ok\n\nb c"
  mojibake = Document(text="cafÃ©  au lait", id="m")
  assert step.apply(mojibake, record) is None and mojibake.text == "café au lait"
  assert step.apply(Document(text="<script>x()</script>\u00a0\n", id="e"), record) == "empty"
  assert record.counts == {"html_converted": 3, "unicode_fixed": 1, "whitespace_changed": 2}
  plain = Normalizer(str(tmp_path))
  tagged = Document(text="<b>bold</b>", id="t")
  assert plain.apply(tagged, record) is None and tagged.text == "<b>bold</b>"
