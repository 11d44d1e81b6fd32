"""Repeated-line (boilerplate) removal as CCNet did it (Wenzek et al. 2020, section 3.3): a line
found in at least `line_min_docs` distinct documents of the deduplicated corpus is boilerplate
(licence headers, navigation, cookie notices) and is removed from every document but the first
that has it; a document left without text is removed.

The signature stage hashes each document's lines (`line_hashes`); one merge stage (its tasks
split the 64-bit hash range) counts the documents per line across ranks, leaving out documents
the exact and near stages remove, and writes the boilerplate hashes with each one's keeper; the
final stage's `LineDedupFilter` rewrites the documents.

datatrove's SentenceDedup does not fit: it removes spans of three sentences (a language's
sentence splitter, not lines), every repeat after the first (no document-count threshold), and
finds documents by their position in the reader, which the exact and near filters before it
shift.
"""

import os
import re
import unicodedata

import numpy as np
import xxhash
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from roots_jax.corpus import dedup_files
from roots_jax.corpus.steps import Record, Step, language, utf8_len
from roots_jax.errors import DataError

_DIGITS = re.compile(r"\d")
_SPACES = re.compile(r"\s+")
KEEPER_DTYPE = np.dtype([("hash", "<u8"), ("key", "<u8")])


def normalise_line(line: str) -> str:
  """CCNet's normalize_for_dedup: lowercase, digits to 0, punctuation and marks dropped, so
  "Copyright 2001 PSF." and "copyright 2003 PSF" are one line; a line of punctuation only
  (a rule "=====") stays itself."""
  text = _DIGITS.sub("0", line.strip().lower())
  kept = "".join(c for c in text if unicodedata.category(c)[0] not in "PCSM")
  kept = _SPACES.sub(" ", kept).strip()
  return kept or line.strip()


def line_hash(line: str) -> int:
  return xxhash.xxh64_intdigest(normalise_line(line).encode("utf-8", "surrogatepass"))


def line_hashes(text: str, min_chars: int) -> set[int]:
  """The distinct hashes of the lines of `text` that are long enough to count."""
  return {line_hash(line) for line in text.splitlines() if len(line.strip()) >= min_chars}


def _hash_range(task: int, tasks: int) -> tuple[int, int | None]:
  """The [low, high) share of the 64-bit hashes that merge task `task` owns (None: to the end)."""
  return (task << 64) // tasks, (((task + 1) << 64) // tasks if task + 1 < tasks else None)


class LineMerge(PipelineStep):
  """The merge stage: per share of the hash range, the lines in at least `min_docs` surviving
  documents, each with its first document (by rank, then position in the rank)."""

  type = "roots_jax"
  name = "line merge"

  def __init__(self, dedup_dir: str, min_docs: int):
    super().__init__()
    self.dedup_dir, self.min_docs = dedup_dir, min_docs

  def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1):
    low, high = _hash_range(rank, world_size)
    hashes, keys = [], []
    for r, path in dedup_files.rank_files(self.dedup_dir, "lines/sigs", ".npy"):
      sigs = np.load(path, mmap_mode="r")
      start = np.searchsorted(sigs["hash"], np.uint64(low))
      stop = len(sigs) if high is None else np.searchsorted(sigs["hash"], np.uint64(high))
      hashes.append(np.asarray(sigs["hash"][start:stop]))
      keys.append(dedup_files.key(r, sigs["index"][start:stop]))
    hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    keys = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    survive = ~np.isin(keys, dedup_files.removed_keys(self.dedup_dir))
    hashes, keys = hashes[survive], keys[survive]
    order = np.lexsort((keys, hashes))
    hashes, keys = hashes[order], keys[order]
    starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])  # [0] when there are none
    counts = np.diff(np.r_[starts, len(hashes)])
    common = starts[counts >= self.min_docs]
    keepers = np.empty(len(common), KEEPER_DTYPE)
    keepers["hash"], keepers["key"] = hashes[common], keys[common]
    self.stat_update("boilerplate_lines", value=len(common))
    dedup_files.save(os.path.join(self.dedup_dir, "lines", "boilerplate", f"{rank:05d}.npy"), keepers)


class LineDedupFilter(Step):
  """Removes the boilerplate lines of a document unless it is the line's first document.

  Signals: "lines_removed" per document. Counts: "lines_removed", "bytes_removed". Reason:
  "boilerplate_only" for a document with no text left."""

  name = "lines"

  def __init__(self, report_dir: str, dedup_dir: str, min_chars: int):
    super().__init__(report_dir)
    self.dedup_dir, self.min_chars = dedup_dir, min_chars

  def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
    keepers = np.concatenate([np.load(p) for _, p in dedup_files.rank_files(
        self.dedup_dir, "lines/boilerplate", ".npy")] or [np.zeros(0, KEEPER_DTYPE)])
    self.boilerplate = set(keepers["hash"].tolist())
    mine = keepers[(keepers["key"] >> np.uint64(32)) == rank]
    ids = dedup_files.read_ids(self.dedup_dir, rank, mine["key"] & np.uint64(0xFFFFFFFF))
    self.keeps: dict[str, set[int]] = {}
    for h, k in zip(mine["hash"].tolist(), (mine["key"] & np.uint64(0xFFFFFFFF)).tolist()):
      self.keeps.setdefault(ids[k], set()).add(h)
    self.unseen = set(self.keeps)
    yield from super().run(data, rank, world_size)

  def apply(self, doc: Document, record: Record) -> str | None:
    keep = self.keeps.get(doc.id, set())
    self.unseen.discard(doc.id)
    kept, removed = [], 0
    for line in doc.text.splitlines(keepends=True):
      if len(line.strip()) >= self.min_chars:
        h = line_hash(line)
        if h in self.boilerplate and h not in keep:
          removed += 1
          continue
      kept.append(line)
    record.signal("lines_removed", language(doc), removed)
    if not removed:
      return None
    text = "".join(kept)
    record.count("lines_removed", removed)
    record.count("bytes_removed", utf8_len(doc.text) - utf8_len(text))
    doc.metadata.setdefault("signals", {})["lines_removed"] = removed
    doc.text = text
    return "boilerplate_only" if not text.strip() else None

  def finish(self, record: Record) -> None:
    if self.unseen:
      raise DataError(dedup_files.misaligned(len(self.unseen), self.name))
