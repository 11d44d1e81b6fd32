"""Personal-data redaction as BigScience did for ROOTS: every email address, IP address, key
(API keys, card and account numbers, secrets) and user handle ("@name") is replaced by its tag,
`PI:EMAIL`, `PI:IP_ADDRESS`, `PI:KEY` or `PI:USER`; documents are rewritten, never removed.

The regexes, the delimiters they require around an item and the rules that leave an item alone
(an IP address must hold a digit, which spares "::", and must not read as a date, which spares
e.g. "10.11.12.13") are those of bigscience-workshop/data-preparation,
preprocessing/training/02_pii/bigscience_pii_detect_redact.py (Apache-2.0), the tags it kept
(its ID and NUMBER tags were dropped there for false positives). It has no other exception:
private and loopback addresses, example.com emails and version numbers of four parts
("1.2.3.4") are redacted, and so are URLs and paths of four segments or more, which its KEY
pattern takes for keys. Three changes, each for a reason:

- The delimiters are lookarounds here. The original consumes them, so of two items with one
  space between them ("a@b.com c@d.com") it found only the first.
- Items are replaced where they were found, earliest first and the longest of those starting
  together, so overlapping matches (a key-like local part inside an email) give one tag. The
  original ran `str.replace` on every match in turn, which also rewrote the same characters
  inside other words ("1.2.3.4" in "x1.2.3.4") and depended on the order of a set.
- A Python decorator is not a user handle. The original's USER pattern takes "@property" on
  its own line for one (in Python 3.11's stdlib, nearly all of its 1,279 handles): a handle
  that opens its line (after indentation or a doctest prompt) as a dotted name followed by
  nothing, an argument list or a comment is left alone. "@john thanks!" opening a line is still
  redacted, "@john" alone on a line is not; decorators named in prose ("use @dataclass") and
  epydoc's "@param" are redacted (139 handles left in the stdlib).
"""

from typing import Iterable

import regex
from datatrove.data import Document

from roots_jax.corpus.steps import Record, Step, language
from roots_jax.errors import ConfigError

TAGS = {"email": "PI:EMAIL", "ip_address": "PI:IP_ADDRESS", "key": "PI:KEY", "user": "PI:USER"}

# The original's patterns, split over lines; each item is group 1, between the lookbehind of
# what may precede it and the lookahead of what may follow.
_KEY = (r"((?:(?:[A-Za-z]+[\p{Nd}\p{Pd}\/\+\=:_]+|[\p{Nd}\p{Pd}\/\+\=:]+[A-Za-z]+)){4,}"
        r"|(?:(?:\p{Nd}{3,}|[A-Z]+\p{Nd}+[A-Z]*|\p{Nd}+[A-Z]+\p{Nd}*)[ \p{Pd}]?){3,})")
_IPV4 = (r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
         r"(?:\.(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)){3}")
_IPV6 = "|".join([
    r"(?:[0-9a-fA-F]{1,4}:){7,7}[0-9a-fA-F]{1,4}",
    r"(?:[0-9a-fA-F]{1,4}:){1,7}:",
    r"(?:[0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}",
    r"(?:[0-9a-fA-F]{1,4}:){1,5}(?::[0-9a-fA-F]{1,4}){1,2}",
    r"(?:[0-9a-fA-F]{1,4}:){1,4}(?::[0-9a-fA-F]{1,4}){1,3}",
    r"(?:[0-9a-fA-F]{1,4}:){1,3}(?::[0-9a-fA-F]{1,4}){1,4}",
    r"(?:[0-9a-fA-F]{1,4}:){1,2}(?::[0-9a-fA-F]{1,4}){1,5}",
    r"[0-9a-fA-F]{1,4}:(?:(?::[0-9a-fA-F]{1,4}){1,6})",
    r":(?:(?::[0-9a-fA-F]{1,4}){1,7}|:)",
    r"fe80:(?::[0-9a-fA-F]{0,4}){0,4}%[0-9a-zA-Z]{1,}",
    r"::(?:ffff(?::0{1,4}){0,1}:){0,1}(?:(?:25[0-5]|(?:2[0-4]|1{0,1}[0-9]){0,1}[0-9])\.){3,3}"
    r"(?:25[0-5]|(?:2[0-4]|1{0,1}[0-9]){0,1}[0-9])",
    r"(?:[0-9a-fA-F]{1,4}:){1,4}:(?:(?:25[0-5]|(?:2[0-4]|1{0,1}[0-9]){0,1}[0-9])\.){3,3}"
    r"(25[0-5]|(?:2[0-4]|1{0,1}[0-9]){0,1}[0-9])"])
_EMAIL = r"""([^\s@,?!;:)(]+@[^,\s!?;,]+[^\s\b'"@,?!;:)(.])"""
_USER = r"""(@[^\s@,?!;:'")(]{3,})"""
_PATTERNS = {
    "key": (r"""[\b\s@?,!:;'")(.\p{Han}]""", _KEY, r"""[\b\s\p{Han}@?,!;:'")(.]"""),
    # The lookahead (what an address starts with) is no part of the original: it spares most
    # positions the long alternation, which makes the pattern several times faster.
    "ip_address": (r"""[\b\s@?,!;:'")(.\p{Han}]""", f"(?=[0-9a-fA-F:])({_IPV4}|{_IPV6})",
                   r"""[\s@,?!;:'"(.\p{Han}]"""),
    "email": (r"""[\s\b'"@,?!;:)(.\p{Han}]""", _EMAIL, r"""[\s\b@,?!;:)(.\p{Han}]"""),
    "user": (r"""[\s@,?!;:'")(\p{Han}]""", _USER, None),
}
_REGEXES = {kind: regex.compile(f"(?<=^|{before}){item}" + (f"(?=$|{after})" if after else ""),
                                flags=regex.MULTILINE)
            for kind, (before, item, after) in _PATTERNS.items()}

# Dates that the IP pattern also matches (yyyy-yyyy, yyyy-mm-dd, dd.mm.yy ...), as the original
# screens them out; each must match at the start of the item.
_DATE_END = r"""(?:$|[\s@,?!;:'"(.\p{Han}])"""
_DATES = [regex.compile(r"^(?:" + date + ")" + _DATE_END) for date in (
    r"[1-2][0-9]{3}[\p{Pd}/][1-2][0-9]{3}",
    r"[1-2][0-9]{3}[\p{Pd}/.][0-3][0-9][\p{Pd}/.][0-3][0-9]",
    r"[0-3][0-9][\p{Pd}/.][0-3][0-9][\p{Pd}/.](?:[0-9]{2}|[1-2][0-9]{3})",
    r"[0-3][0-9][\p{Pd}/](?:[0-9]{2}|[1-2][0-9]{3})",
    r"[1-2][0-9]{3}-[0-3][0-9]")]

# A decorator line: indentation or a doctest prompt, @dotted.name, then nothing, arguments or a
# comment.
_DECORATOR_LINE = regex.compile(
    r"[ \t]*(?:(?:>>>|\.\.\.)[ \t]+)?(?P<at>@)[A-Za-z_][\w.]*[ \t]*(?:[(#].*)?\r?")


def _is_date(item: str) -> bool:
  return any(date.match(item) for date in _DATES)


def _is_decorator(text: str, at: int) -> bool:
  start = text.rfind("\n", 0, at) + 1
  end = text.find("\n", at)
  match = _DECORATOR_LINE.fullmatch(text, start, len(text) if end < 0 else end)
  return match is not None and match.start("at") == at


def find(text: str, kinds: Iterable[str] = tuple(TAGS)) -> list[tuple[int, int, str]]:
  """(start, end, tag) of the items of `kinds` in `text`, in order, not overlapping."""
  found = []
  for kind in kinds:
    for match in _REGEXES[kind].finditer(text):
      start, end = match.span(1)
      item = match.group(1)
      if kind == "ip_address" and (not any(c.isdigit() for c in item) or _is_date(item)):
        continue
      if kind == "user" and _is_decorator(text, start):
        continue
      found.append((start, end, TAGS[kind]))
  found.sort(key=lambda f: (f[0], -f[1]))
  kept, end = [], 0
  for item in found:
    if item[0] >= end:
      kept.append(item)
      end = item[1]
  return kept


def redact(text: str, kinds: Iterable[str] = tuple(TAGS)) -> tuple[str, dict[str, int]]:
  """`text` with its items replaced by their tags, and how many of each tag."""
  pieces, counts, end = [], {}, 0
  for start, stop, tag in find(text, kinds):
    pieces += [text[end:start], tag]
    counts[tag] = counts.get(tag, 0) + 1
    end = stop
  pieces.append(text[end:])
  return "".join(pieces), counts


class Redactor(Step):
  """Replaces personal data by tags (module docstring). Records per tag the count of items,
  overall ("PI:EMAIL") and per language ("PI:EMAIL/en"), and puts a document's nonzero counts in
  doc.metadata["redactions"]."""

  name = "redact"

  def __init__(self, report_dir: str, *, kinds: tuple[str, ...] = tuple(TAGS)):
    super().__init__(report_dir)
    if not kinds or any(k not in TAGS for k in kinds):
      raise ConfigError(f"redaction kinds {tuple(kinds)} must be one or more of "
                        f"{', '.join(TAGS)}")
    self.kinds = tuple(kinds)

  def apply(self, doc: Document, record: Record) -> None:
    text, counts = redact(doc.text, self.kinds)
    if counts:
      doc.text = text
      doc.metadata["redactions"] = counts
      for tag, n in counts.items():
        record.count(tag, n)
        record.count(f"{tag}/{language(doc)}", n)
