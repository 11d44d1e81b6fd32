"""The ROOTS quality filters (BigScience's OSCAR filtering, filtering.py of
github.com/bigscience-workshop/data-preparation): each signal is a pure function with their
definition, the thresholds are per language in roots_parameters.json (roots_table).

Words are the text split on " ", "\\n" and "\\t" with the table's special characters stripped from
both ends (empty words dropped), lower-cased for every ratio but the word count. BigScience cut
Chinese ("tokenization": true) into words with their sentencepiece model; here such a language's
words are its characters (the segmentation spaCy's Chinese pipeline defaults to), which with the
table's bigram augmentation catches its one- and two-character stop words.
"""

import collections
import math

import numpy as np
from datatrove.data import Document

from roots_jax.corpus import roots_table
from roots_jax.corpus.steps import UNKNOWN, Record, Step, language
from roots_jax.errors import ConfigError

# The filters in the order BigScience applies them (Filtering.filtering); a document's removal
# reason is the first one it fails, so removals per filter add up to the documents removed.
# Their language-id check sits between flagged_words and perplexity: LanguageId applies it.
FILTERS = ("words", "character_repetition", "word_repetition", "special_characters",
           "stopwords", "flagged_words", "perplexity")
_SEPARATORS = " \n\t"  # BigScience's split_on_whitespace(new_line=True, tab=True)


def words(text: str, strip_characters: frozenset[str], characters: bool = False) -> list[str]:
  """BigScience's get_words_from_document without sentencepiece: `characters` makes every
  non-separator character a word (the stand-in for their Chinese segmentation)."""
  text = text.replace("\t", " ").replace("\n", " ")
  tokens = text.replace(" ", "") if characters else filter(None, text.split(" "))
  stripped = (token if token[0] not in strip_characters and token[-1] not in strip_characters
              else _strip(token, strip_characters) for token in tokens)
  return list(filter(None, stripped))


def _strip(token: str, characters: frozenset[str]) -> str:
  begin, end = 0, len(token)
  while begin < end and token[begin] in characters:
    begin += 1
  while end > begin and token[end - 1] in characters:
    end -= 1
  return token[begin:end]


def word_count(text: str, word_deletions: dict, characters: bool = False) -> int:
  """len(words(text, ...)) without building the words: a word strips to nothing exactly when
  all its characters are special, so count what deleting the special characters but the
  separators (`word_deletions`) leaves between separators."""
  kept = text.translate(word_deletions)
  if characters:
    return len(kept) - sum(map(kept.count, _SEPARATORS))
  tokens = kept.replace("\t", " ").replace("\n", " ").split(" ")
  return len(tokens) - tokens.count("")


def character_ngram_counts(text: str, n: int) -> np.ndarray:
  """How often each distinct character n-gram of `text` occurs, exactly (no hashing): characters
  become their rank in the text's alphabet (b bits each), as many as fit are packed into one
  int64 key, and when n needs more, the key is replaced by its rank among the keys seen so that
  the next characters fit beside it. English or code (under 128 distinct characters) packs 9 to
  a key: the usual n = 10 costs one ranking and one sort."""
  m = len(text) - n + 1
  if m <= 0:
    return np.zeros(0, np.int64)
  codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
  alphabet = np.unique(codes)
  rank = np.zeros(int(alphabet[-1]) + 1, np.int64)
  rank[alphabet] = np.arange(len(alphabet))
  codes = rank[codes]
  bits = max(1, (len(alphabet) - 1).bit_length())
  keys, done, free = 0, 0, 63  # free: the bits a key has room for
  while True:
    width = min(n - done, free // bits)
    for i in range(done, done + width):
      keys = keys << bits | codes[i:i + m]
    done += width
    if done == n:
      return np.unique(keys, return_counts=True)[1]
    keys = np.unique(keys, return_inverse=True)[1].reshape(-1).astype(np.int64)
    free = 63 - int(keys.max()).bit_length()


def character_repetition_ratio(text: str, n: int) -> float:
  """The share of the character n-grams taken by the most frequent ones: the top
  min(isqrt(distinct n-grams), n-grams seen more than once) of them (BigScience's rule)."""
  counts = character_ngram_counts(text, n)
  if not len(counts):
    return 0.0
  top = min(math.isqrt(len(counts)), int(np.count_nonzero(counts > 1)))
  if top == 0:
    return 0.0
  return int(np.partition(counts, len(counts) - top)[len(counts) - top:].sum()) / int(counts.sum())


def word_repetition_ratio(lower_words: list[str], n: int) -> float:
  """The share of the word n-grams that occur more than once, counted with their repeats."""
  counts = collections.Counter(zip(*(lower_words[i:] for i in range(n))))
  if not counts:
    return 0.0
  return sum(c for c in counts.values() if c > 1) / (len(lower_words) - n + 1)


def special_characters_ratio(text: str, deletions: dict) -> float:
  """The share of the characters that are special; `deletions` = str.maketrans("", "", special)."""
  return (len(text) - len(text.translate(deletions))) / len(text) if text else 0.0


def listed_ratio(lower_words: list[str], listed: frozenset[str], group_sizes=(),
                 join: str = "") -> float:
  """Listed words (stop words, flagged words) per word, the listed groups of `group_sizes`
  consecutive words joined by `join` counting too (BigScience's words augmentation), at most 1."""
  if not lower_words:
    return 0.0
  hits = sum(map(listed.__contains__, lower_words))
  for size in group_sizes:
    grams = zip(*(lower_words[i:] for i in range(size)))
    hits += sum(join.join(gram) in listed for gram in grams)
  return min(hits / len(lower_words), 1.0)


class _Language:
  """One language's row of the table, its special characters (as a set and as deletion tables)
  and word lists."""

  def __init__(self, row: dict, special: str, stopwords, flagged):
    self.row = row
    self.strip = frozenset(special)
    self.deletions = str.maketrans("", "", special)
    self.word_deletions = str.maketrans("", "", "".join(set(special) - set(_SEPARATORS)))
    self.stopwords, self.flagged = stopwords, flagged
    self.groups = row["words_augmentation_group_sizes"] if row["cond_words_augmentation"] else ()


class QualityFilter(Step):
  """Computes the enabled ROOTS signals of each document with its language's parameters, stores
  them in doc.metadata["signals"], records them with their thresholds, and removes a document
  that fails one (reason: the first failing filter of FILTERS). A filter switched off for a
  language (the table's cond_check_* keys) is neither computed nor applied to it.

  A language the table lacks is filtered with `default_language`'s row and flagged words, and
  with no stop-word filter unless BigScience has its list (another language's stop words would
  measure nothing); an unidentified document ("unknown") is treated as `default_language` in
  full; default_language="default" picks BigScience's looser row for other languages.

  `perplexity` is a picklable callable text -> perplexity (None: no perplexity filter). The
  table's limits are those of ROOTS's KenLM models: a scorer of another kind needs its own table
  (`table_path`, a file shaped as roots_parameters.json).
  """

  name = "quality"

  def __init__(self, report_dir: str, *, table_path: str = "", filters: tuple = FILTERS,
               default_language: str = "en", perplexity=None):
    super().__init__(report_dir)
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
      raise ConfigError(f"unknown quality filters {', '.join(unknown)}; "
                        f"choose among {', '.join(FILTERS)}")
    if perplexity is not None and not callable(perplexity):
      raise ConfigError("quality perplexity must be a callable text -> perplexity, or None")
    table = roots_table.load_table(table_path)
    if default_language not in table["languages"]:
      raise ConfigError(f"default_language {default_language!r} is not in the quality table; "
                        f"choose among {', '.join(sorted(table['languages']))}")
    self.table_path, self.default_language = table_path, default_language
    self.filters = frozenset(f for f in filters if f != "perplexity" or perplexity is not None)
    self.perplexity = perplexity
    self._languages: dict[str, _Language] = {}

  def parameters(self, lang: str) -> _Language:
    """The parameters and word lists `lang` is filtered with (resolved once per worker)."""
    if lang not in self._languages:
      table = roots_table.load_table(self.table_path)
      rows = table["languages"]
      stopwords, flagged = (roots_table.word_lists(kind) for kind in ("stopwords", "flagged_words"))
      known = lang if lang in rows else self.default_language
      words_of = self.default_language if lang == UNKNOWN else lang
      self._languages[lang] = _Language(
          rows[known], table["special_characters"], stopwords.get(words_of),
          flagged.get(words_of, flagged.get(self.default_language)))
    return self._languages[lang]

  def signals(self, text: str, params: _Language) -> dict[str, tuple[float, tuple]]:
    """{filter: (value, (low, high))} of the filters enabled for this language."""
    row, on = params.row, self.filters
    out = {}
    if "words" in on and row["cond_check_number_words"]:
      count = word_count(text, params.word_deletions, row["tokenization"])
      out["words"] = count, (row["number_words_min_cutoff"], row["number_words_max_cutoff"])
    if "character_repetition" in on and row["cond_check_character_repetition_removal"]:
      out["character_repetition"] = (
          character_repetition_ratio(text, row["character_repetition_length"]),
          (None, row["character_repetition_max_cutoff"]))
    lower = words(text.lower(), params.strip, row["tokenization"]) \
        if on & {"word_repetition", "stopwords", "flagged_words"} else []
    if "word_repetition" in on and row["cond_check_word_repetition_removal"]:
      out["word_repetition"] = (word_repetition_ratio(lower, row["word_repetition_length"]),
                                (None, row["word_repetition_max_cutoff"]))
    if "special_characters" in on and row["cond_check_special_characters"]:
      out["special_characters"] = (special_characters_ratio(text, params.deletions),
                                   (None, row["special_characters_max_cutoff"]))
    join = row["words_augmentation_join_char"]
    if "stopwords" in on and row["cond_check_stopwords"] and params.stopwords:
      out["stopwords"] = (listed_ratio(lower, params.stopwords, params.groups, join),
                          (row["stopwords_min_cutoff"], None))
    if "flagged_words" in on and row["cond_check_flagged_words"] and params.flagged:
      out["flagged_words"] = (listed_ratio(lower, params.flagged, params.groups, join),
                              (None, row["flagged_words_max_cutoff"]))
    if "perplexity" in on and row["cond_check_perplexity"]:
      out["perplexity"] = float(self.perplexity(text)), (None, row["perplexity_max_cutoff"])
    return out

  def apply(self, doc: Document, record: Record) -> str | None:
    lang = language(doc)
    signals = self.signals(doc.text, self.parameters(lang))
    stored = doc.metadata.setdefault("signals", {})
    reason = None
    for name in FILTERS:
      if name not in signals:
        continue
      value, (low, high) = signals[name]
      stored[name] = value
      record.signal(name, lang, value, (low, high))
      if reason is None and ((low is not None and value < low)
                             or (high is not None and value > high)):
        reason = name
    return reason
