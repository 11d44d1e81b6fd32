"""Deduplication as datatrove stages: exact duplicates (a hash of the normalised text), near
duplicates (MinHash LSH over word n-grams, datatrove's signature format and bucket stage) and
repeated lines (roots_jax.corpus.lines).

The stages (roots_jax.runs.prep builds them), each an executor that `depends=` the one before:

  1. signatures (tasks N): the reader of the filtered folder, then `signature_steps(cfg, d)`;
  2. `middle_stages(cfg, d)`: (name, pipeline, tasks) for MinHash buckets (tasks num_buckets),
     the duplicate groups (1 task) and the line counts (line_tasks);
  3. final (tasks N): the same reader of the same folder, then `filter_steps(cfg, d, report)`
     first, then the writer.

Exact duplicates are texts equal after Unicode NFKC, case folding and collapsing whitespace
runs to one space: what differs only there (re-encoded, re-wrapped or re-cased copies) adds no
text to learn from. Punctuation is kept, since it carries meaning in code and prose alike; texts
that differ in it are left to the near-duplicate stage, whose shingles drop it. Of each group the
first document (by rank, then position) is kept. datatrove's ExactDedup* stages do not fit: their
tie-break between equal hashes compares positions within a file and not the rank (document 0 of
rank 1 beats document 5 of rank 0), and they do not say which document was kept.

Near duplicates: datatrove's MinHash (word n-grams of `simplify_text`, xxhash64, `num_buckets`
bands of `hashes_per_bucket` rows; a pair collides in some band with probability
1 - (1 - J^r)^b, about 0.72 at the threshold (1/b)^(1/r) for 14 x 8, as in datatrove and the
FineWeb recipe). The word tokenizer is datatrove's spaCy one for the document's language (blank
pipelines: nothing is downloaded); other languages and documents without one use
`tokenizer_language`'s. Its clustering stage is replaced (roots_jax.corpus.clusters) so that the
first document of a cluster is kept and each removed one is recorded with the estimated Jaccard
similarity to it.
"""

import dataclasses
import json
import os
import struct
import unicodedata

import numpy as np
import xxhash
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets, MinhashDedupSignature
from datatrove.utils.text import ngrams, simplify_text
from datatrove.utils.word_tokenizers import SpaCyTokenizer, load_word_tokenizer

from roots_jax.corpus import dedup_files
from roots_jax.corpus.clusters import DedupClusters
from roots_jax.corpus.lines import LineDedupFilter, LineMerge, line_hashes
from roots_jax.corpus.steps import Record, Step, language
from roots_jax.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class DedupConfig:
  exact: bool = True
  near: bool = True
  lines: bool = True
  # MinHash: 5-word shingles, 14 bands x 8 rows (threshold ~0.72), as datatrove's defaults and
  # FineWeb; Lee et al. 2022 use 5-grams with 20 x 450 for their 0.8 threshold.
  ngram_size: int = 5
  num_buckets: int = 14
  hashes_per_bucket: int = 8
  # Candidate pairs below this estimated Jaccard are not joined (0: every LSH collision is).
  near_min_similarity: float = 0.0
  # Boilerplate: a line of at least 40 characters in at least 10 documents. CCNet removes every
  # repeat within a shard; the floor spares short common statements in code
  # (`if __name__ == "__main__":` has 26 characters) and a phrase shared by a few documents.
  line_min_docs: int = 10
  line_min_chars: int = 40
  line_tasks: int = 1
  tokenizer_language: str = "en"
  seed: int = 1

  def __post_init__(self):
    for name in ("ngram_size", "num_buckets", "hashes_per_bucket", "line_min_chars", "line_tasks"):
      if getattr(self, name) < 1:
        raise ConfigError(f"dedup.{name} is {getattr(self, name)}: set it to 1 or more")
    if self.line_min_docs < 2:
      raise ConfigError(f"dedup.line_min_docs is {self.line_min_docs}: set it to 2 or more")
    if not 0.0 <= self.near_min_similarity <= 1.0:
      raise ConfigError(f"dedup.near_min_similarity is {self.near_min_similarity}: "
                        "set it between 0 and 1")
    try:
      spacy = isinstance(load_word_tokenizer(self.tokenizer_language), SpaCyTokenizer)
    except ValueError:
      spacy = False
    if not spacy:
      raise ConfigError(f"dedup.tokenizer_language {self.tokenizer_language!r} has no spaCy "
                        "tokenizer in datatrove: use one such as en")

  @property
  def minhash(self) -> MinhashConfig:
    return MinhashConfig(n_grams=self.ngram_size, num_buckets=self.num_buckets,
                         hashes_per_bucket=self.hashes_per_bucket, seed=self.seed)


def normalise_exact(text: str) -> str:
  return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def exact_hash(text: str) -> int:
  """64 bits: among 10^8 documents a collision (one document wrongly removed) has p ~ 3e-4."""
  return xxhash.xxh64_intdigest(normalise_exact(text).encode("utf-8", "surrogatepass"))


class DedupSignatures(PipelineStep):
  """Stage 1 of deduplication: per rank, the documents' ids, exact hashes, MinHash signatures
  (datatrove's files, bands sorted) and line hashes; documents pass through unchanged."""

  type = "roots_jax"
  name = "dedup signatures"

  def __init__(self, cfg: DedupConfig, dedup_dir: str):
    super().__init__()
    self.cfg, self.dedup_dir = cfg, dedup_dir
    self._minhash = None
    self._tokenizers = {}

  def _tokenizer(self, lang: str):
    if lang not in self._tokenizers:
      try:
        tokenizer = load_word_tokenizer(lang)
        if not isinstance(tokenizer, SpaCyTokenizer):  # others may download models
          raise ValueError(lang)
        tokenizer.word_tokenize("a b")  # a missing dependency (e.g. SudachiPy) raises here
      except (ValueError, ImportError):
        tokenizer = load_word_tokenizer(self.cfg.tokenizer_language)
      self._tokenizers[lang] = tokenizer
    return self._tokenizers[lang]

  def signature(self, doc: Document) -> list[list[int]] | None:
    """The document's MinHash bands, None when it has fewer than ngram_size words. The shingles
    are hashed here: datatrove's own hash function passes str to xxhash, which xxhash 4
    refuses ("Strings must be encoded before hashing")."""
    if self._minhash is None:
      self._minhash = MinhashDedupSignature(os.path.join(self.dedup_dir, "minhash", "sigs"),
                                            self.cfg.minhash, self.cfg.tokenizer_language)
    words = self._tokenizer(language(doc)).word_tokenize(
        simplify_text(doc.text, self.cfg.minhash.norm_config))
    shingles = np.fromiter((xxhash.xxh64_intdigest(" ".join(g).encode("utf-8", "surrogatepass"))
                            for g in ngrams(words, self.cfg.ngram_size)), dtype=np.uint64)
    return self._minhash.get_signature(shingles.reshape(-1, 1)) if shingles.size else None

  def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
    cfg, d = self.cfg, self.dedup_dir
    ids_path = dedup_files.rank_path(d, "ids", rank, ".txt")
    os.makedirs(os.path.dirname(ids_path), exist_ok=True)
    bucket_paths = [dedup_files.rank_path(d, f"minhash/sigs/bucket_{b:03d}", rank, ".minhash.sig")
                    for b in range(cfg.num_buckets)] if cfg.near else []
    for path in bucket_paths:
      os.makedirs(os.path.dirname(path), exist_ok=True)
    buckets = [open(p + ".tmp", "wb") for p in bucket_paths]
    record = struct.Struct(f"<{cfg.hashes_per_bucket}QI")
    exact, lines = [], []
    with open(ids_path + ".tmp", "w", encoding="utf-8") as ids:
      for index, doc in enumerate(data):
        self.stat_update("documents")
        with self.track_time():
          ids.write(json.dumps(doc.id) + "\n")
          if cfg.exact:
            exact.append((exact_hash(doc.text), index))
          if cfg.lines:
            lines += [(h, index) for h in line_hashes(doc.text, cfg.line_min_chars)]
          bands = self.signature(doc) if cfg.near else None
          for f, band in zip(buckets, bands or ()):
            f.write(record.pack(*band, index))
        yield doc
    for f in buckets:
      f.close()
    for path in bucket_paths:  # datatrove's bucket stage merges the files in sorted order
      records = np.fromfile(path + ".tmp", dtype=dedup_files.bucket_dtype(cfg.hashes_per_bucket, True))
      records.sort(order=records.dtype.names)
      records.tofile(path + ".tmp")
      os.replace(path + ".tmp", path)
    if cfg.exact:
      dedup_files.save(dedup_files.rank_path(d, "exact/sigs", rank, ".npy"), _sorted_sigs(exact))
    if cfg.lines:
      dedup_files.save(dedup_files.rank_path(d, "lines/sigs", rank, ".npy"), _sorted_sigs(lines))
    os.replace(ids_path + ".tmp", ids_path)


def _sorted_sigs(pairs: list[tuple[int, int]]) -> np.ndarray:
  sigs = np.array(pairs, dtype=dedup_files.SIG_DTYPE)
  sigs.sort(order=["hash", "index"])
  return sigs


class _GroupFilter(Step):
  """Removes the documents that the duplicate-groups stage listed as removed for this rank.

  Signals: "duplicate_cluster_size" for each document of a group, "similarity" (estimated
  Jaccard with the kept document, 1.0 for exact) on a removed one's sample. Counts: "groups",
  the groups whose kept document is in the rank."""

  kind = ""
  reason = ""

  def __init__(self, report_dir: str, dedup_dir: str):
    super().__init__(report_dir)
    self.dedup_dir = dedup_dir

  def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
    path = dedup_files.rank_path(self.dedup_dir, f"{self.kind}/ranks", rank, ".jsonl")
    self.entries = {}
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        for line in f:
          entry = json.loads(line)
          self.entries[entry["id"]] = entry
    yield from super().run(data, rank, world_size)

  def apply(self, doc: Document, record: Record) -> str | None:
    entry = self.entries.pop(doc.id, None)
    if entry is None:
      return None
    record.signal("duplicate_cluster_size", language(doc), entry["size"])
    if entry["kept"] is None:
      record.count("groups")
      return None
    doc.metadata.setdefault("signals", {}).update(
        duplicate_cluster_size=entry["size"], similarity=entry["similarity"])
    return self.reason

  def finish(self, record: Record) -> None:
    if self.entries:
      raise DataError(dedup_files.misaligned(len(self.entries), self.name))


class ExactDedupFilter(_GroupFilter):
  name, kind, reason = "exact_dedup", "exact", "exact_duplicate"


class NearDedupFilter(_GroupFilter):
  name, kind, reason = "near_dedup", "near", "near_duplicate"


def signature_steps(cfg: DedupConfig, dedup_dir: str) -> list[PipelineStep]:
  """After the reader of the folder that the final stage reads, with the same task count."""
  return [DedupSignatures(cfg, dedup_dir)] if cfg.exact or cfg.near or cfg.lines else []


def middle_stages(cfg: DedupConfig, dedup_dir: str) -> list[tuple[str, list[PipelineStep], int]]:
  """(name, pipeline, tasks) to run in order after the signatures, each depending on the last."""
  stages = []
  if cfg.near:
    stages.append(("dedup_buckets", [MinhashDedupBuckets(
        input_folder=os.path.join(dedup_dir, "minhash", "sigs"),
        output_folder=os.path.join(dedup_dir, "minhash", "buckets"),
        config=cfg.minhash)], cfg.num_buckets))
  if cfg.exact or cfg.near:
    stages.append(("dedup_clusters", [DedupClusters(
        dedup_dir, exact=cfg.exact, near=cfg.near, num_buckets=cfg.num_buckets,
        hashes_per_bucket=cfg.hashes_per_bucket, min_similarity=cfg.near_min_similarity)], 1))
  if cfg.lines:
    stages.append(("dedup_lines", [LineMerge(dedup_dir, cfg.line_min_docs)], cfg.line_tasks))
  return stages


def filter_steps(cfg: DedupConfig, dedup_dir: str, report_dir: str) -> list[Step]:
  """First after the final stage's reader: exact, then near duplicates, then boilerplate lines."""
  steps = []
  if cfg.exact:
    steps.append(ExactDedupFilter(report_dir, dedup_dir))
  if cfg.near:
    steps.append(NearDedupFilter(report_dir, dedup_dir))
  if cfg.lines:
    steps.append(LineDedupFilter(report_dir, dedup_dir, cfg.line_min_chars))
  return steps
