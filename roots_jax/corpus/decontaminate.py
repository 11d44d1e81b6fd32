"""Decontamination: a document that shares a long word n-gram with an evaluation set is dropped,
so that test scores do not measure what the model read in training.

The rule is GPT-3's (Brown et al. 2020, appendix C: 13-grams; lm-evaluation-harness's janitor.py
reproduces it): words are the whitespace-separated pieces of the lowercased text once its
punctuation is deleted (here all Unicode punctuation and symbols, the janitor's ASCII
string.punctuation among them), so "Don't stop." and "dont STOP" are the same two words.
GPT-3 cut the matches out of a training document and dropped it only when cut into more than
ten pieces; here a document goes whole once it holds `min_matches` distinct n-grams of the
evaluation texts (1: any overlap, as GPT-3's contamination analysis counted it).

An evaluation text of fewer than n words gives no n-gram: a class label or a short answer would
match common phrases of unrelated documents (GPT-3 too never went below 8 words).

`build_index` runs once, in the main process, before the pipeline: the n-grams of the evaluation
texts as sorted unique uint64 hashes in a .npy file, which every worker memory-maps. A word
hashes to 8 bytes of BLAKE2b (stable between processes, unlike hash()); an n-gram to the
polynomial of its words' hashes modulo 2**64, all of a document's at once in n numpy steps.
"""

import functools
import glob
import hashlib
import os
from typing import Iterable, Iterator

import ml_collections
import numpy as np
import regex
from datatrove.data import Document

from roots_jax.corpus.steps import Record, Step, language
from roots_jax.data import builtin_tasks
from roots_jax.data import sources
from roots_jax.data import supervised
from roots_jax.errors import ConfigError, DataError

# GPT-3's n (appendix C); the janitor's too.
DEFAULT_N = 13
_PUNCTUATION = regex.compile(r"[\p{P}\p{S}]+")
# An odd multiplier (the 64-bit golden ratio), so no power of it vanishes modulo 2**64.
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_TABLE_FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv"}


def words(text: str) -> list[str]:
  """The normalised words of `text` (module docstring)."""
  return _PUNCTUATION.sub("", text.lower()).split()


def ngram_hashes(text: str, n: int = DEFAULT_N) -> np.ndarray:
  """The uint64 hash of every word n-gram of `text`, in order (none under n words)."""
  tokens = words(text)
  if len(tokens) < n:
    return np.zeros(0, np.uint64)
  digests = {w: hashlib.blake2b(w.encode("utf-8", "surrogatepass"), digest_size=8).digest()
             for w in dict.fromkeys(tokens)}
  word_hashes = np.frombuffer(b"".join([digests[w] for w in tokens]), np.uint64)
  count = len(tokens) - n + 1
  hashes = word_hashes[:count].copy()
  for i in range(1, n):
    hashes *= _MULTIPLIER
    hashes += word_hashes[i:i + count]
  return hashes


def build_index(texts: Iterable[str], path: str, n: int = DEFAULT_N) -> int:
  """Writes the n-gram index of the evaluation `texts` to `path` (.npy); returns its size."""
  if n < 1:
    raise ConfigError(f"the decontamination n-gram length must be at least 1, not {n}")
  hashes = np.unique(np.concatenate([np.zeros(0, np.uint64)] +
                                    [ngram_hashes(t, n) for t in texts]))
  if not len(hashes):
    raise DataError(f"no evaluation text has {n} words or more, so nothing can be matched; check "
                    "the evaluation files and fields, or lower the n-gram length")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + ".tmp", "wb") as f:  # a file object: np.save would append ".npy" to a name
    np.save(f, hashes)
  os.replace(path + ".tmp", path)
  return len(hashes)


def builtin_eval_texts() -> Iterator[str]:
  """Every field of every test example of the built-in fine-tuning tasks: functions of the
  stdlib's test modules (docstrings, code, first lines, package names, questions; an answer
  span's text is in its context, a conversation's messages are its text and target again)."""
  for name in builtin_tasks.KINDS:
    for example in builtin_tasks.load_examples(name, "test"):
      yield from (v for v in example.values() if isinstance(v, str))


def file_eval_texts(patterns: str, fields: tuple[str, ...] = ("text",), *,
                    key: str = "the evaluation files") -> Iterator[str]:
  """The texts of user evaluation files (comma-separated paths or globs; `key` names them in
  messages): a .txt file whole; the `fields` of every record of a JSONL, CSV or TSV file, read
  as fine-tuning files are (a list field gives each of its texts)."""
  for path in sources.expand_patterns(patterns, key):
    fmt = _TABLE_FORMATS.get(os.path.splitext(path)[1].lower())
    if path.lower().endswith(".txt"):
      with open(path, encoding="utf-8", errors="replace") as f:
        yield f.read()
    elif fmt is None:
      raise DataError(f"cannot read evaluation file {path}: give .txt, .jsonl, .csv or .tsv "
                      f"files in {key}")
    else:
      task = ml_collections.ConfigDict(
          {"source": "files", "test_files": glob.escape(path), "format": fmt})
      parse = functools.partial(_fields, fields=fields, key=key)
      for values in supervised.load_examples(task, "test", parse, labelled=False):
        yield from values


def _fields(record: dict, task: ml_collections.ConfigDict, where: str, *,
            fields: tuple[str, ...], key: str) -> list[str]:
  texts = []
  for name in fields:
    value = supervised.field(record, name, key, where)
    texts += [str(v) for v in value] if isinstance(value, list) else [str(value)]
  return texts


class Decontaminator(Step):
  """Removes documents holding at least `min_matches` distinct n-grams of the index built by
  `build_index` (reason "contaminated"). Records the signal "contaminated_ngrams" (that count)
  per language, also in doc.metadata["signals"]."""

  name = "decontaminate"

  def __init__(self, report_dir: str, *, index_path: str, n: int = DEFAULT_N,
               min_matches: int = 1):
    super().__init__(report_dir)
    if n < 1 or min_matches < 1:
      raise ConfigError(f"decontamination needs n >= 1 and min_matches >= 1, not n={n} and "
                        f"min_matches={min_matches}")
    self.index_path, self.n, self.min_matches = index_path, n, min_matches
    self._index = None

  def index(self) -> np.ndarray:
    """The sorted n-gram hashes, memory-mapped on first use."""
    if self._index is None:
      try:
        self._index = np.load(self.index_path, mmap_mode="r")
      except (OSError, ValueError) as e:
        raise DataError(f"cannot read the decontamination index {self.index_path} ({e}); build "
                        "it with roots_jax.corpus.decontaminate.build_index first") from e
      if self._index.dtype != np.uint64 or self._index.ndim != 1 or not len(self._index):
        raise DataError(f"{self.index_path} is no decontamination index (sorted uint64 n-gram "
                        "hashes); build it with roots_jax.corpus.decontaminate.build_index")
    return self._index

  def matches(self, text: str) -> int:
    """How many distinct n-grams of `text` are in the index."""
    hashes, index = ngram_hashes(text, self.n), self.index()
    at = np.minimum(np.searchsorted(index, hashes), len(index) - 1)
    return len(np.unique(hashes[index[at] == hashes]))

  def apply(self, doc: Document, record: Record) -> str | None:
    k = self.matches(doc.text)
    doc.metadata.setdefault("signals", {})["contaminated_ngrams"] = k
    record.signal("contaminated_ngrams", language(doc), k, (None, self.min_matches - 1))
    return "contaminated" if k >= self.min_matches else None
