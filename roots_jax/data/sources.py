"""Document sources: the built-in corpus, local text/JSONL/Parquet files and TFDS datasets.

A source describes the documents of one split as an ordered list of units (a file, or one
TFDS record) that can be read lazily from a position. `DocumentStream` turns a source into a
grain `IterDataset` of str: it reshuffles the unit order every epoch, shards documents
between processes and grain workers, and checkpoints as (epoch, unit, position, count), so a
restore seeks instead of replaying the stream. Files are streamed: memory holds one document
(one record or paragraph), never a whole file.

Supervised objectives (seq2seq) read pairs instead: give a source the pair of field names
(data.input_field, data.target_field) instead of one text field, and each document becomes an
(input, target) tuple of str, from JSONL, Parquet or TFDS.
"""

import functools
import glob
import hashlib
import importlib
import json
import os
import sysconfig
from typing import Any, Callable, Iterable, Iterator

import grain
import ml_collections
import numpy as np
import pyarrow.parquet as pq

from roots_jax.errors import DataError

# A paragraph of a text file longer than this is cut at a line boundary, so a file without
# blank lines streams instead of becoming one huge document.
MAX_DOC_BYTES = 1 << 20
_BUILTIN_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
# Up to this many units an epoch's order is a stored permutation; beyond, a lazy Feistel
# shuffle (grain's index_shuffle: constant memory, but milliseconds per call on small sets).
MAX_PERMUTATION = 1 << 24
_FORMATS = {".txt": "text", ".jsonl": "jsonl", ".parquet": "parquet"}

# A unit's records: (position after the record, thunk returning its text, or its (input,
# target) texts). Positions are JSON values (checkpointed); None means the start of the unit.
Records = Iterator[tuple[Any, Callable[[], str | tuple[str, str]]]]
# What a source reads from each record: one text field, or an (input, target) pair of fields.
Fields = str | tuple[str, str]


def _field_list(fields: Fields) -> list[str]:
  return [fields] if isinstance(fields, str) else list(fields)


def _field_keys(fields: Fields) -> str:
  """The config keys that name `fields`, for error messages."""
  return "data.text_field" if isinstance(fields, str) else "data.input_field/data.target_field"


def hash01(key: str) -> float:
  """A uniform number in [0, 1) that depends only on `key` (Python's hash() is salted)."""
  digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
  return int.from_bytes(digest, "little") / 2.0**64


def _in_split(key: str, split: str, eval_fraction: float) -> bool:
  return (hash01(key) < eval_fraction) == (split == "eval")


def builtin_files() -> tuple[str, list[str]]:
  """The stdlib directory and its .py files as sorted relative "/" paths, without tests and
  installed packages: the built-in corpus, also behind the built-in fine-tuning tasks."""
  root = sysconfig.get_paths()["stdlib"]
  files = []
  for directory, subdirs, names in os.walk(root):
    subdirs[:] = [d for d in subdirs if d not in _BUILTIN_SKIP_DIRS]
    rel = os.path.relpath(directory, root)
    files += [os.path.normpath(os.path.join(rel, n)).replace(os.sep, "/")
              for n in names if n.endswith(".py")]
  return root, sorted(files)


class BuiltinSource:
  """The standard library's own .py files, one document per file; eval holds out whole modules."""

  def __init__(self, split: str, eval_fraction: float):
    self.root, files = builtin_files()
    self.files = [f for f in files if _in_split(f, split, eval_fraction)]
    if not self.files:
      raise DataError(f"the built-in corpus has no {split} modules in {self.root}; "
                      "raise data.eval_fraction or set data.source=files")

  @property
  def num_units(self) -> int:
    return len(self.files)

  def records(self, unit: int, position: Any) -> Records:
    if position is None:
      yield 1, functools.partial(_read_file, os.path.join(self.root, self.files[unit]))


def _read_file(path: str) -> str:
  with open(path, encoding="utf-8", errors="replace") as f:
    return f.read()


class FileSource:
  """Local files. Text: one document per block of lines separated by blank lines (the BERT
  pretraining-data convention). JSONL: one document per line, in `fields`. Parquet: one per
  row of the column(s) `fields`, read by batches. With a pair of fields a record is an
  (input, target) pair; text files hold no pairs.

  Without eval files, `eval_fraction` of the documents is held out by a hash of (file name,
  record offset), which is stable when the files move and costs no parsing.
  """

  def __init__(self, patterns: str, fmt: str, fields: Fields, *, split: str,
               eval_fraction: float | None):
    self.paths = expand_patterns(patterns)
    self.formats = [_check_file(p, fmt, fields) for p in self.paths]
    self.fields = fields
    self.split = split
    self.eval_fraction = eval_fraction  # None: every document belongs to `split`

  @property
  def num_units(self) -> int:
    return len(self.paths)

  def records(self, unit: int, position: Any) -> Records:
    path = self.paths[unit]
    name = os.path.basename(path)
    reader = {"text": _text_records, "jsonl": _jsonl_records, "parquet": _parquet_records}
    for position, key, thunk in reader[self.formats[unit]](path, position, self.fields):
      if self.eval_fraction is None or _in_split(f"{name}:{key}", self.split, self.eval_fraction):
        yield position, thunk


def expand_patterns(patterns: str, key: str = "data.train_files") -> list[str]:
  """Comma-separated paths or globs -> files, each glob sorted, duplicates dropped; `key` is
  the config key that holds them, for the messages."""
  paths = []
  for pattern in (p.strip() for p in patterns.split(",")):
    if not pattern:
      continue
    matches = sorted(m for m in glob.glob(os.path.expanduser(pattern), recursive=True)
                     if not os.path.isdir(m))
    if not matches:
      what = "is a directory" if os.path.isdir(pattern) else "matches no file"
      raise DataError(f"data file pattern {pattern!r} in {key} {what}; give files or globs "
                      "such as 'corpus/*.jsonl' (comma-separated)")
    paths += [m for m in matches if m not in paths]
  if not paths:
    raise DataError(f"no data files given; set {key} to paths or globs")
  return paths


def _check_file(path: str, fmt: str, fields: Fields) -> str:
  """Fails early, in the main process, on the mistakes a reader would only hit later."""
  if fmt == "auto":
    fmt = _FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
      raise DataError(f"cannot tell the format of {path} from its extension; set data.format "
                      f"to text, jsonl or parquet (auto knows {', '.join(_FORMATS)})")
  if fmt == "text" and not isinstance(fields, str):
    raise DataError(f"{path} is a text file, which holds documents, not (input, target) pairs; "
                    "give JSONL or Parquet files with data.input_field and data.target_field")
  try:
    if os.path.getsize(path) == 0:
      raise DataError(f"data file {path} is empty; remove it or narrow the glob")
    with open(path, "rb") as f:
      head = f.read(1024)
      if fmt == "parquet":
        names = pq.read_schema(path).names
        for field in _field_list(fields):
          if field not in names:
            raise DataError(f"{path} has no column {field!r} (columns: {', '.join(names)}); "
                            f"set {_field_keys(fields)}")
        return fmt
      if b"\0" in head:
        raise DataError(f"{path} looks binary (NUL bytes in its first KB); {fmt} files must be "
                        "plain UTF-8 (compressed files are not supported)")
      if fmt == "jsonl":
        f.seek(0)
        line_no, line = next(((i, l) for i, l in enumerate(f, 1) if l.strip()), (0, b""))
        if line:
          _jsonl_text(path, line_no, line, fields)
  except OSError as e:
    raise DataError(f"cannot read data file {path}: {e.strerror or e}") from e
  except DataError:
    raise
  except Exception as e:  # pyarrow raises several types for a file that is not Parquet.
    raise DataError(f"cannot read {path} as {fmt}: {e}") from e
  return fmt


def _text_records(path: str, position: Any, fields: Fields):
  del fields
  offset, line_no = position or (0, 0)
  lines, start = [], offset
  with open(path, "rb") as f:
    f.seek(offset)
    for line in f:
      offset += len(line)
      line_no += 1
      if line.strip():
        if not lines:
          start = offset - len(line)
        lines.append(line)
        if offset - start < MAX_DOC_BYTES:
          continue
      if lines:
        yield [offset, line_no], start, functools.partial(_join_lines, lines)
        lines = []
  if lines:
    yield [offset, line_no], start, functools.partial(_join_lines, lines)


def _join_lines(lines: list[bytes]) -> str:
  return b"".join(lines).decode("utf-8", errors="replace").rstrip("\r\n")


def _jsonl_records(path: str, position: Any, fields: Fields):
  offset, line_no = position or (0, 0)
  with open(path, "rb") as f:
    f.seek(offset)
    for line in f:
      start = offset
      offset += len(line)
      line_no += 1
      if line.strip():
        yield [offset, line_no], start, functools.partial(_jsonl_text, path, line_no, line,
                                                          fields)


def _jsonl_text(path: str, line_no: int, line: bytes, fields: Fields) -> str | tuple[str, str]:
  try:
    record = json.loads(line.decode("utf-8", errors="replace"))
  except json.JSONDecodeError as e:
    raise DataError(f"{path}:{line_no} is not valid JSON ({e.msg}); JSONL needs one object per "
                    "line") from e
  texts = []
  for field in _field_list(fields):
    if not isinstance(record, dict) or field not in record:
      keys = ", ".join(record) if isinstance(record, dict) else type(record).__name__
      raise DataError(f"{path}:{line_no} has no field {field!r} (has: {keys}); "
                      f"set {_field_keys(fields)}")
    if not isinstance(record[field], str):
      raise DataError(f"{path}:{line_no}: field {field!r} holds {type(record[field]).__name__}, "
                      "not a string")
    texts.append(record[field])
  return texts[0] if isinstance(fields, str) else tuple(texts)


def _parquet_records(path: str, position: Any, fields: Fields):
  first = position or 0
  with pq.ParquetFile(path) as parquet:
    row = 0
    for group in range(parquet.num_row_groups):
      rows = parquet.metadata.row_group(group).num_rows
      if row + rows <= first:  # Resuming: skip whole row groups without reading them.
        row += rows
        continue
      for batch in parquet.iter_batches(batch_size=1024, row_groups=[group],
                                        columns=_field_list(fields)):
        for values in zip(*(column.to_pylist() for column in batch.columns)):
          row += 1
          if row > first and None not in values:
            yield row, row - 1, functools.partial(_as_texts, values, fields)


def as_text(value: str | bytes) -> str:
  return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _as_texts(values, fields: Fields) -> str | tuple[str, str]:
  """A record's values of `fields` as text; TFDS and Parquet may hold bytes."""
  texts = tuple(as_text(v) for v in values)
  return texts[0] if isinstance(fields, str) else texts


# `import tensorflow_datasets` imports its older builder packages lazily, so their builders
# (glue, cnn_dailymail, wmt14_translate, ...) have no name until the package is imported.
# These text packages import without TensorFlow.
_TFDS_TEXT_PACKAGES = ("text", "summarization", "translate", "question_answering",
                       "text_simplification")


def open_tfds(name: str, split: str, data_dir: str, section: str = "data"):
  """`tfds.data_source` of a prepared dataset (ArrayRecord, no TensorFlow), or a DataError
  naming the `section`'s config keys to fix."""
  import tensorflow_datasets as tfds  # Slow to import; only TFDS sources need it.
  for package in _TFDS_TEXT_PACKAGES:
    importlib.import_module(f"tensorflow_datasets.{package}")
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
  except Exception as e:  # Not registered, not prepared, unknown split: all user fixable.
    reason = (str(e).splitlines() or [type(e).__name__])[0].rstrip(".")
    raise DataError(f"cannot open TFDS dataset {name!r} split {split!r}"
                    f"{' in ' + data_dir if data_dir else ''}: {reason}. "
                    f"Prepare it first (tfds build) and check {section}.tfds_name, "
                    f"{section}.tfds_data_dir and the split (slices like 'train[:98%]' "
                    "work)") from e


class TfdsSource:
  """A prepared TFDS dataset read through ArrayRecord (`tfds.data_source`, no TensorFlow)."""

  def __init__(self, name: str, split: str, data_dir: str, fields: Fields):
    self.data = open_tfds(name, split, data_dir)
    self.name = name
    self.fields = fields
    for field in _field_list(fields):
      if len(self.data) and field not in self.data[0]:
        raise DataError(f"TFDS {name!r} has no feature {field!r} "
                        f"(has: {', '.join(self.data[0])}); set {_field_keys(fields)}")

  @property
  def num_units(self) -> int:
    return len(self.data)

  def records(self, unit: int, position: Any) -> Records:
    if position is None:
      yield 1, functools.partial(self._text, unit)

  def _text(self, index: int) -> str | tuple[str, str]:
    record = self.data[index]
    return _as_texts([record[f] for f in _field_list(self.fields)], self.fields)


def make_source(data: ml_collections.ConfigDict, split: str):
  """The source of `split` ("train" | "eval") described by the `data` config section; it reads
  (input, target) pairs for the seq2seq objective, documents otherwise."""
  if split not in ("train", "eval"):
    raise ValueError(f"split must be 'train' or 'eval', not {split!r}")
  pairs = data.objective == "seq2seq"
  fields = (data.input_field, data.target_field) if pairs else data.text_field
  if split == "eval" and not (data.source == "tfds" or data.eval_files or data.eval_fraction):
    raise DataError("there is no eval data: set data.eval_files or a data.eval_fraction > 0")
  if data.source == "builtin":
    if pairs:
      raise DataError("the built-in corpus has no (input, target) pairs for data.objective="
                      "seq2seq; set data.source=files (JSONL/Parquet) or tfds")
    return BuiltinSource(split, data.eval_fraction)
  if data.source == "tfds":
    tfds_split = data.train_split if split == "train" else data.eval_split
    return TfdsSource(data.tfds_name, tfds_split, data.tfds_data_dir, fields)
  if data.source == "files":
    if split == "eval" and data.eval_files:
      return FileSource(data.eval_files, data.format, fields, split=split, eval_fraction=None)
    return FileSource(data.train_files, data.format, fields, split=split,
                      eval_fraction=None if data.eval_files else data.eval_fraction)
  raise DataError(f"unknown data.source {data.source!r}; use builtin, files or tfds")


def _shuffle_seed(seed: int, epoch: int) -> int:
  return int.from_bytes(hashlib.blake2b(f"{seed}:{epoch}".encode(), digest_size=4).digest(),
                        "little")


class DocumentStream(grain.IterDataset):
  """A source's documents as a checkpointable stream of str (of (input, target) pairs when the
  source reads pairs).

  Each epoch visits the units in an order permuted with (seed, epoch) (natural order when
  `seed` is None), and this stream keeps the documents whose running count in the epoch is
  `start` modulo `step`: processes, then grain workers (via `set_slice`), each take a
  disjoint share of about the same size. Documents outside the share are never decoded.
  """

  def __init__(self, source, *, repeat: bool, seed: int | None, shard_index: int = 0,
               shard_count: int = 1):
    super().__init__()
    self.source = source
    self.repeat = repeat
    self.seed = seed
    self.start = shard_index
    self.step = shard_count

  def set_slice(self, sl: slice, sequential_slice: bool = False) -> None:
    """Called by `mp_prefetch` in each worker: take share `sl` of this stream's share."""
    del sequential_slice  # Documents are dealt round robin either way.
    self.start += (sl.start or 0) * self.step
    self.step *= sl.step or 1

  def units(self, epoch: int, start: int) -> Iterable[int]:
    """The units of `epoch` from its `start`-th on, in this epoch's order."""
    n = self.source.num_units
    if self.seed is None:
      return range(start, n)
    if n <= MAX_PERMUTATION:
      return np.random.default_rng([self.seed, epoch]).permutation(n)[start:].tolist()
    seed = _shuffle_seed(self.seed, epoch)
    return (grain.experimental.index_shuffle(i, max_index=n - 1, seed=seed, rounds=4)
            for i in range(start, n))

  def __iter__(self):
    return _DocumentIterator(self)

  def __str__(self) -> str:
    return f"DocumentStream({type(self.source).__name__}, start={self.start}, step={self.step})"


class _DocumentIterator(grain.DatasetIterator):
  """Iterates a DocumentStream; the state is the position just after the last document."""

  def __init__(self, stream: DocumentStream):
    super().__init__()
    self._stream = stream
    self.set_state(dict(epoch=0, unit=0, position=None, count=0))

  def __next__(self) -> str | tuple[str, str]:
    text, self._state = next(self._documents)
    return text

  def get_state(self) -> dict[str, Any]:
    return dict(self._state)

  def set_state(self, state: dict[str, Any]) -> None:
    self._state = dict(state)
    self._documents = self._generate(**state)

  def _generate(self, epoch: int, unit: int, position: Any, count: int):
    s = self._stream
    while True:
      for i, u in enumerate(s.units(epoch, unit), start=unit):
        for position, thunk in s.source.records(u, position):
          count += 1
          if (count - 1) % s.step == s.start:
            yield thunk(), dict(epoch=epoch, unit=i, position=position, count=count)
        position = None
      if not s.repeat:
        return
      if count <= s.start:  # This share is empty: repeating would spin forever.
        raise DataError(f"the training data has {count} documents, fewer than the "
                        f"{s.step} readers (processes x data.num_workers) need; add data or "
                        "lower data.num_workers")
      epoch, unit, count = epoch + 1, 0, 0
