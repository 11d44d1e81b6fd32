"""Document sources: the built-in corpus, local text/JSONL/Parquet files, TFDS datasets and
Hugging Face datasets.

A source describes the documents of one split as an ordered list of units (a file, one TFDS or
Hugging Face record, or one file of a streamed Hugging Face dataset) that can be read lazily
from a position. `DocumentStream` turns a source into a grain `IterDataset` of str: it
reshuffles the unit order every epoch, shards documents between processes and grain workers,
and checkpoints as (epoch, unit, position, count), so a restore seeks instead of replaying the
stream (a streamed Hugging Face file aside, which is read again up to the position). Files
are streamed: memory holds one document (one record or paragraph), never a whole file.

Supervised objectives (seq2seq) read pairs instead: give a source the pair of field names
(data.input_field, data.target_field) instead of one text field, and each document becomes an
(input, target) tuple of str, from JSONL, Parquet, TFDS or Hugging Face datasets.

Bad bytes never stop a run: invalid UTF-8 decodes to U+FFFD, a UTF-8 byte order mark is dropped,
and a record larger than data.max_document_bytes is skipped with a warning (text is cut instead)
without ever being held whole. What the user must fix (a missing, unreadable, binary or empty file,
a line that is not JSON, a missing field) is a DataError naming the file and line.
"""

import codecs
import functools
import glob
import hashlib
import importlib
import json
import logging
import os
import re
import stat
import sysconfig
from typing import Any, Callable, Iterable, Iterator

import grain
import ml_collections
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from roots_jax.errors import DataError

log = logging.getLogger("roots_jax")

# A paragraph of a text file longer than this (or than data.max_document_bytes, if smaller) is
# cut before the line that would overflow it, and a longer line into pieces, so a file without
# blank lines or newlines streams instead of becoming one huge document.
MAX_DOC_BYTES = 1 << 20
# Reading past a JSONL line over the budget takes it in chunks of at most this size (and of
# the budget, but at least 64 KiB), never whole.
_SKIP_CHUNK = 1 << 20
# JSON escapes can spell lone surrogates ("\ud800"), which no tokenizer can encode as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Arrow does not check the UTF-8 of Parquet string columns: they are read as bytes and decoded
# leniently, like text files.
_AS_BINARY = {pa.string(): pa.binary(), pa.large_string(): pa.large_binary()}
_BUILTIN_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
# Up to this many units an epoch's order is a stored permutation; beyond, a lazy Feistel
# shuffle (grain's index_shuffle: constant memory, but milliseconds per call on small sets).
MAX_PERMUTATION = 1 << 24
_FORMATS = {".txt": "text", ".jsonl": "jsonl", ".parquet": "parquet"}

# A unit's records: (position after the record, thunk returning its text, or its (input,
# target) texts, or None for a record skipped with a warning). Positions are JSON values
# (checkpointed); None means the start of the unit.
Records = Iterator[tuple[Any, Callable[[], str | tuple[str, str] | None]]]
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

  A JSONL line or Parquet value over `max_document_bytes` is skipped with a warning naming it
  (one outlier must not end a multi-day run); text documents are cut to at most that size.
  Without eval files, `eval_fraction` of the documents is held out by a hash of (file name,
  record offset), which is stable when the files move and costs no parsing. `key` is the
  config key that lists the files, for the messages.
  """

  def __init__(self, patterns: str | list[str], fmt: str, fields: Fields, *, split: str,
               eval_fraction: float | None, max_document_bytes: int,
               key: str = "data.train_files"):
    self.paths = expand_patterns(patterns, key) if isinstance(patterns, str) else patterns
    self.formats = [_check_file(p, fmt, fields, max_document_bytes, key) for p in self.paths]
    self.fields = fields
    self.split = split
    self.eval_fraction = eval_fraction  # None: every document belongs to `split`
    self.max_document_bytes = max_document_bytes
    self.key = key

  @property
  def num_units(self) -> int:
    return len(self.paths)

  def records(self, unit: int, position: Any) -> Records:
    path = self.paths[unit]
    name = os.path.basename(path)
    reader = {"text": _text_records, "jsonl": _jsonl_records, "parquet": _parquet_records}
    try:
      for position, key, thunk in reader[self.formats[unit]](path, position, self.fields,
                                                             self.max_document_bytes):
        if self.eval_fraction is None or _in_split(f"{name}:{key}", self.split,
                                                   self.eval_fraction):
          yield position, thunk
    except (OSError, pa.ArrowException) as e:  # e.g. deleted or broken since the start
      raise _unreadable(path, e, self.key) from e


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


def _unreadable(path: str, error: Exception, key: str) -> DataError:
  code = getattr(error, "errno", None)  # pyarrow's OSErrors spell it out at length
  reason = os.strerror(code) if isinstance(code, int) else (str(error).splitlines() or [""])[0]
  return DataError(f"cannot read data file {path}: {reason or type(error).__name__}; fix the "
                   f"file or remove it from {key}")


def _check_file(path: str, fmt: str, fields: Fields, max_bytes: int, key: str) -> str:
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
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):  # reading a pipe could block forever
      raise DataError(f"data file {path} is not a regular file (a pipe or a device?); remove "
                      f"it from {key}")
    if info.st_size == 0:
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
      if fmt == "jsonl":  # The first record shows a wrong field now (unless over the budget).
        line_no, line = next(((n, l) for _, n, _, l in _jsonl_lines(f, 0, 0, max_bytes)
                              if l is None or l.strip()), (0, None))
        if line is not None:
          _jsonl_text(path, line_no, line, fields)
  except OSError as e:
    raise _unreadable(path, e, key) from e
  except DataError:
    raise
  except Exception as e:  # pyarrow raises several types for a file that is not Parquet.
    reason = (str(e).splitlines() or [type(e).__name__])[0].rstrip(".")
    raise DataError(f"cannot read {path} as {fmt}: {reason}; fix the file or remove it from "
                    f"{key}") from e
  return fmt


def _skip(where: str, size: int, max_bytes: int) -> None:
  """Warns that the record at `where` is left out (called only by the reader whose share it
  is, so once per epoch); None tells DocumentStream to skip it."""
  log.warning("skipped %s: a record of %d bytes, more than data.max_document_bytes (%d); "
              "raise that to keep it", where, size, max_bytes)


def _text_records(path: str, position: Any, fields: Fields, max_bytes: int):
  """Paragraphs of at most min(MAX_DOC_BYTES, max_bytes) bytes: a longer one is cut before the
  line that would overflow it, a longer line into pieces, at UTF-8 character boundaries."""
  del fields
  limit = min(MAX_DOC_BYTES, max_bytes)
  offset, line_no = position or (0, 0)
  lines, start = [], offset
  with open(path, "rb") as f:
    f.seek(offset)
    while line := f.readline(limit):
      size = len(line)
      whole = size < limit or line.endswith(b"\n")  # else a piece of a longer line
      if not whole:
        line = _end_at_character(f, line)
        size = len(line)
      if offset == 0 and line.startswith(codecs.BOM_UTF8):
        line = line[len(codecs.BOM_UTF8):]
      blank = not line or line.isspace()
      if lines and not blank and offset + size - start > limit:
        yield [offset, line_no], start, functools.partial(_join_lines, lines)
        lines = []
      offset += size
      line_no += whole
      if not blank:
        if not lines:
          start = offset - size
        lines.append(line)
      elif lines:
        yield [offset, line_no], start, functools.partial(_join_lines, lines)
        lines = []
  if lines:
    yield [offset, line_no], start, functools.partial(_join_lines, lines)


def _end_at_character(f, piece: bytes) -> bytes:
  """`piece` (just read from `f`) without the up to 3 bytes of a UTF-8 character it would cut,
  which are left in `f` for the next piece."""
  cut = _partial_character(piece)
  if 0 < cut < len(piece):
    f.seek(-cut, os.SEEK_CUR)
    return piece[:-cut]
  return piece


def _partial_character(data: bytes) -> int:
  """How many bytes at the end of `data` start a UTF-8 character that `data` does not finish."""
  for k in range(1, min(4, len(data)) + 1):
    byte = data[-k]
    if byte < 0x80:  # ASCII
      return 0
    if byte >= 0xC0:  # a lead byte: 110xxxxx, 1110xxxx, 11110xxx start 2, 3, 4 bytes
      return k if k < (2 if byte < 0xE0 else 3 if byte < 0xF0 else 4) else 0
  return 0  # only continuation bytes: not UTF-8 anyway


def _join_lines(lines: list[bytes]) -> str:
  return b"".join(lines).decode("utf-8", errors="replace").rstrip("\r\n")


def _jsonl_lines(f, offset: int, line_no: int, max_bytes: int):
  """(offset after, line number, start offset, line) of each line of `f` from `offset`. A line
  over `max_bytes` (line ending aside) comes as None: it is read past in bounded chunks, never
  held whole. A UTF-8 byte order mark at the start of the file is dropped (utf-8-sig)."""
  f.seek(offset)
  while line := f.readline(max_bytes + 2):  # room for max_bytes and a "\r\n"
    start, line_no = offset, line_no + 1
    offset += len(line)
    if len(line) > max_bytes:  # maybe over the budget
      if len(line) == max_bytes + 2 and not line.endswith(b"\n"):
        line = None  # dropped before reading on, a chunk at a time
        while chunk := f.readline(min(_SKIP_CHUNK, max(max_bytes, 1 << 16))):
          offset += len(chunk)
          if chunk.endswith(b"\n"):
            break
      elif len(line) - line.endswith(b"\n") - line.endswith(b"\r\n") > max_bytes:
        line = None
    if start == 0 and line and line.startswith(codecs.BOM_UTF8):
      line = line[len(codecs.BOM_UTF8):]
    yield offset, line_no, start, line


def _jsonl_records(path: str, position: Any, fields: Fields, max_bytes: int):
  offset, line_no = position or (0, 0)
  with open(path, "rb") as f:
    for offset, line_no, start, line in _jsonl_lines(f, offset, line_no, max_bytes):
      if line is None:
        yield [offset, line_no], start, functools.partial(_skip, f"{path}:{line_no}",
                                                          offset - start, max_bytes)
      elif line and not line.isspace():
        yield [offset, line_no], start, functools.partial(_jsonl_text, path, line_no, line,
                                                          fields)


def _jsonl_text(path: str, line_no: int, line: bytes, fields: Fields) -> str | tuple[str, str]:
  try:
    record = json.loads(line.decode("utf-8", errors="replace"))
  except (ValueError, RecursionError) as e:  # also a 5000-digit number, [[[... nested too deep
    reason = getattr(e, "msg", None) or str(e).split(":")[0] or type(e).__name__
    raise DataError(f"{path}:{line_no} is not valid JSON ({reason}); JSONL needs one object per "
                    "line") from e
  texts = []
  for field in _field_list(fields):
    if not isinstance(record, dict) or field not in record:
      keys = _listing(record) if isinstance(record, dict) else type(record).__name__
      raise DataError(f"{path}:{line_no} has no field {field!r} (has: {keys}); "
                      f"set {_field_keys(fields)}")
    if not isinstance(record[field], str):
      raise DataError(f"{path}:{line_no}: field {field!r} holds {type(record[field]).__name__}, "
                      f"not a string; set {_field_keys(fields)} to a field of strings")
    texts.append(_SURROGATE.sub("\ufffd", record[field]))
  return texts[0] if isinstance(fields, str) else tuple(texts)


def _listing(names: Iterable[str], most: int = 10) -> str:
  """Names for a one-line message: control characters escaped, at most `most` of them."""
  names = list(names)
  shown = ", ".join(repr(n)[1:-1] for n in names[:most])
  return shown + f", ... ({len(names)} in all)" * (len(names) > most)


def _parquet_records(path: str, position: Any, fields: Fields, max_bytes: int):
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
        values, oversize = _parquet_rows(batch, max_bytes)
        for row_values, size in zip(values, oversize):
          row += 1
          if row <= first:
            continue
          if size:
            yield row, row - 1, functools.partial(
                _skip, f"{path} row {row - 1} (counting from 0)", size, max_bytes)
          elif None not in row_values:
            yield row, row - 1, functools.partial(_as_texts, row_values, fields)


def _parquet_rows(batch: pa.RecordBatch, max_bytes: int) -> tuple[list[tuple], list[int]]:
  """The batch's rows as tuples (text as bytes), and per row the size of its largest value
  over `max_bytes` (0: none); such values are not copied into Python. pyarrow has read them
  by then: Parquet has no way to read a page in part, so the budget bounds the copies only."""
  columns, oversize = [], np.zeros(batch.num_rows, np.int64)
  for column in batch.columns:
    column = column.cast(_AS_BINARY[column.type]) if column.type in _AS_BINARY else column
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
      sizes = pc.fill_null(pc.binary_length(column), 0).to_numpy(zero_copy_only=False)
      if (sizes > max_bytes).any():
        oversize = np.maximum(oversize, np.where(sizes > max_bytes, sizes, 0))
        column = pc.if_else(pa.array(sizes > max_bytes), pa.scalar(None, column.type), column)
    columns.append(column.to_pylist())
  return list(zip(*columns)), oversize.tolist()


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


class HfSource:
  """A split of a Hugging Face `datasets` dataset: a directory written by `save_to_disk` (of a
  DatasetDict), or what `datasets.load_dataset(path, name)` opens: a directory of data files, a
  dataset in the user's cache (HF_DATASETS_OFFLINE=1 keeps it off the network) or on the hub.

  Read by random access, a unit is a record, as with TFDS. Streamed (`streaming`, for what
  should not be downloaded or converted whole; a saved directory is always read by random
  access), a unit is one of the dataset's shards (its files) and a position the number of its
  records read: a restore reads them again up to there, as `datasets` has no seek.
  """

  def __init__(self, path: str, name: str, split: str, fields: Fields, *, streaming: bool,
               max_document_bytes: int):
    self.data = open_hf(path, name, split, streaming)
    self.where = f"Hugging Face dataset {path!r} split {split!r}"
    self.streaming = not hasattr(self.data, "__len__")  # a saved directory is never streamed
    self.fields = fields
    self.max_document_bytes = max_document_bytes
    columns = self.data.column_names  # None: a stream whose features are unknown until read
    for field in _field_list(fields):
      if columns is not None and field not in columns:
        raise DataError(f"{self.where} has no column {field!r} (has: {_listing(columns)}); set "
                        f"{_field_keys(fields)}")
    if columns is not None:  # Random access then reads only these columns.
      self.data = self.data.select_columns(_field_list(fields))

  @property
  def num_units(self) -> int:
    return self.data.n_shards if self.streaming else len(self.data)

  def records(self, unit: int, position: Any) -> Records:
    if not self.streaming:
      if position is None:
        yield 1, functools.partial(self._row, unit)
      return
    shard = self.data.shard(num_shards=self.data.n_shards, index=unit)
    first = position or 0
    for count, record in enumerate(shard.skip(first) if first else shard, start=first + 1):
      yield count, functools.partial(self._texts, record, f"shard {unit} record {count - 1}")

  def _row(self, index: int) -> str | tuple[str, str] | None:
    return self._texts(self.data[index], f"record {index}")

  def _texts(self, record: dict[str, Any], where: str) -> str | tuple[str, str] | None:
    """The record's text(s); None (skipped) for a missing value or one over the budget."""
    values = []
    for field in _field_list(self.fields):
      if field not in record:
        raise DataError(f"{self.where} {where} has no field {field!r} (has: "
                        f"{_listing(record)}); set {_field_keys(self.fields)}")
      value = record[field]
      if value is not None and not isinstance(value, (str, bytes)):
        raise DataError(f"{self.where} {where}: field {field!r} holds {type(value).__name__}, "
                        f"not a string; set {_field_keys(self.fields)} to a field of strings")
      size = 0 if value is None else len(value.encode() if isinstance(value, str) else value)
      if size > self.max_document_bytes:
        _skip(f"{self.where} {where}", size, self.max_document_bytes)
        return None
      values.append(value)
    return None if None in values else _as_texts(values, self.fields)


def open_hf(path: str, name: str, split: str, streaming: bool):
  """The `split` of a Hugging Face dataset (see HfSource), or a DataError saying what to fix."""
  try:
    import datasets  # An optional extra; slow to import.
  except ImportError:
    raise DataError("data.source=hf needs the datasets package: pip install "
                    "'roots_jax[datasets]' (or pip install datasets)") from None
  where = f"Hugging Face dataset {path!r}{' (' + name + ')' if name else ''} split {split!r}"
  try:
    if os.path.isfile(os.path.join(path, "dataset_dict.json")):
      saved = datasets.load_from_disk(path)
      if split not in saved:
        raise DataError(f"{where}: the saved dataset has splits {_listing(saved)}; set "
                        "data.train_split and data.eval_split to them")
      return saved[split]
    if os.path.isfile(os.path.join(path, "state.json")):
      raise DataError(f"{path} holds one saved split; save a DatasetDict (train and validation "
                      "splits) instead, as data.train_split and data.eval_split name splits")
    return datasets.load_dataset(path, name or None, split=split, streaming=streaming)
  except DataError:
    raise
  except Exception as e:  # Not found, no such config or split, unreadable files: user fixable.
    reason = (str(e).splitlines() or [type(e).__name__])[0].rstrip(".")
    raise DataError(f"cannot open {where}: {reason}; check data.hf_path, data.hf_name and the "
                    "split") from e


def make_source(data: ml_collections.ConfigDict, split: str, *, pairs: bool = False):
  """The source of `split` ("train" | "eval") described by the `data` config section; it reads
  (input, target) pairs with `pairs` (the seq2seq objective's), documents otherwise."""
  if split not in ("train", "eval"):
    raise ValueError(f"split must be 'train' or 'eval', not {split!r}")
  fields = (data.input_field, data.target_field) if pairs else data.text_field
  if split == "eval" and not (data.source in ("tfds", "hf") or data.eval_files
                              or data.eval_fraction):
    raise DataError("there is no eval data: set data.eval_files or a data.eval_fraction > 0")
  if data.source == "builtin":
    if pairs:
      raise DataError("the built-in corpus has no (input, target) pairs for data.objective="
                      "seq2seq; set data.source=files (JSONL/Parquet) or tfds")
    return BuiltinSource(split, data.eval_fraction)
  if data.source == "tfds":
    tfds_split = data.train_split if split == "train" else data.eval_split
    return TfdsSource(data.tfds_name, tfds_split, data.tfds_data_dir, fields)
  if data.source == "hf":
    return HfSource(data.hf_path, data.hf_name,
                    data.train_split if split == "train" else data.eval_split, fields,
                    streaming=data.hf_streaming, max_document_bytes=data.max_document_bytes)
  if data.source == "prepared":
    return FileSource(prepared_shards(data.prepared_dir, data.prepared_languages), "jsonl",
                      fields, split=split, eval_fraction=data.eval_fraction,
                      max_document_bytes=data.max_document_bytes, key="data.prepared_dir")
  if data.source == "files":
    if split == "eval" and data.eval_files:
      return FileSource(data.eval_files, data.format, fields, split=split, eval_fraction=None,
                        max_document_bytes=data.max_document_bytes, key="data.eval_files")
    return FileSource(data.train_files, data.format, fields, split=split,
                      eval_fraction=None if data.eval_files else data.eval_fraction,
                      max_document_bytes=data.max_document_bytes)
  raise DataError(f"unknown data.source {data.source!r}; use builtin, files, tfds, hf or prepared")


def prepared_shards(prep_dir: str, languages: str = "") -> list[str]:
  """The shards of a prepared corpus (python -m roots_jax.prep) listed by its manifest.json, of
  the comma-separated `languages` (empty: all), in the manifest's order."""
  path = os.path.join(prep_dir, "manifest.json")
  try:
    with open(path) as f:
      manifest = json.load(f)
    shards = manifest["shards"]
  except FileNotFoundError:
    raise DataError(f"{prep_dir} has no manifest.json: run python -m roots_jax.prep --workdir "
                    f"{prep_dir} to its end (it resumes), or fix data.prepared_dir") from None
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise DataError(f"cannot read the manifest {path}: {e}; prepare the corpus again") from e
  wanted = {code.strip() for code in languages.split(",") if code.strip()}
  paths = [os.path.join(prep_dir, s["path"]) for s in shards
           if s["documents"] and (not wanted or s["language"] in wanted)]
  if not paths:
    have = sorted({s["language"] for s in shards if s["documents"]})
    raise DataError(f"the prepared corpus {prep_dir} has no documents"
                    + (f" in {', '.join(sorted(wanted))} (it has {', '.join(have) or 'none'}); "
                       "fix data.prepared_languages" if wanted else
                       "; its report.html says what removed them"))
  return paths


def _shuffle_seed(seed: int, epoch: int) -> int:
  return int.from_bytes(hashlib.blake2b(f"{seed}:{epoch}".encode(), digest_size=4).digest(),
                        "little")


class DocumentStream(grain.IterDataset):
  """A source's documents as a checkpointable stream of str (of (input, target) pairs when the
  source reads pairs).

  Each epoch visits the units in an order permuted with (seed, epoch) (natural order when
  `seed` is None), and this stream keeps the documents whose running count in the epoch is
  `start` modulo `step`: processes, then grain workers (via `set_slice`), each take a
  disjoint share of about the same size. Documents outside the share are never decoded; a
  record the source skips (over data.max_document_bytes) still counts, and is warned about by
  the share it falls in. A repeating stream whose share yields nothing in an epoch is a
  DataError, not an endless loop.
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
      whole_epoch, kept = unit == 0 and position is None and count == 0, 0
      for i, u in enumerate(s.units(epoch, unit), start=unit):
        for position, thunk in s.source.records(u, position):
          count += 1
          # A skipped record (None) counts, so the shares stay those of the records.
          if (count - 1) % s.step == s.start and (text := thunk()) is not None:
            kept += 1
            yield text, dict(epoch=epoch, unit=i, position=position, count=count)
        position = None
      if not s.repeat:
        return
      if count <= s.start:  # This share is empty: repeating would spin forever.
        raise DataError(f"the training data has {count} documents, fewer than the "
                        f"{s.step} readers (processes x data.num_workers) need; add data or "
                        "lower data.num_workers")
      if whole_epoch and not kept:  # Or all of it was skipped: the same.
        raise DataError(f"all the training documents of reader {s.start} of {s.step} were "
                        "skipped as larger than data.max_document_bytes (the warnings name "
                        "them); raise it or add data")
      epoch, unit, count = epoch + 1, 0, 0
