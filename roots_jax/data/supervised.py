"""Labelled examples for fine-tuning, from CSV/TSV/JSONL files, TFDS or the built-in tasks, and
the label vocabulary.

An example is a dict whose keys depend on task.kind: each kind's `example(record, task, where)`
(roots_jax.tasks) reads a record with the helpers here. Labels stay raw: a str or int as the
data holds it (a TFDS ClassLabel becomes its name).

Files are read whole into a list (fine-tuning sets are small); TFDS splits stay on disk behind
a lazy random-access sequence. Every problem with the data is a DataError naming the file and
line (or record) and the task.* key to change.
"""

import copy
import csv
import io
import json
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any, Callable

import ml_collections
import numpy as np

from roots_jax.data import builtin_tasks
from roots_jax.data import sources
from roots_jax.data.tokenizers import write_atomically
from roots_jax.errors import ConfigError, DataError

SPLITS = ("train", "validation", "test")
_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "squad"}
# Known labels listed in an unknown-label message.
_MAX_LISTED = 20


# (record, task section, where) -> example: a task kind's reading of one record.
Parse = Callable[[dict[str, Any], ml_collections.ConfigDict, str], dict[str, Any]]


def load_examples(task: ml_collections.ConfigDict, split: str, parse: Parse, *,
                  labelled: bool) -> Sequence[dict[str, Any]]:
  """The examples of `split` ("train" | "validation" | "test") described by `task`, each record
  read by `parse`; `labelled`: the labels are class names (TFDS ClassLabel ids become them)."""
  if split not in SPLITS:
    raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
  if task.source == "builtin":
    return builtin_tasks.load_examples(task.builtin, split)
  if task.source == "tfds":
    return TfdsExamples(task, split, parse, labelled=labelled)
  if task.source != "files":
    raise DataError(f"unknown task.source {task.source!r}; use builtin, files or tfds")
  key = f"task.{split}_files"
  if not task[f"{split}_files"]:
    raise DataError(f"there are no {split} files; set {key} (paths or globs)")
  examples = []
  for path in sources.expand_patterns(task[f"{split}_files"], key):
    examples += [parse(record, task, f"{path}:{line}")
                 for line, record in _read_records(path, _format(path, task.format))]
  return examples


def _format(path: str, fmt: str) -> str:
  if fmt != "auto":
    return fmt
  if (fmt := _FORMATS.get(os.path.splitext(path)[1].lower())) is None:
    raise DataError(f"cannot tell the format of {path} from its extension; set task.format to "
                    f"csv, tsv, jsonl or squad (auto knows {', '.join(_FORMATS)})")
  return fmt


def _read_records(path: str, fmt: str) -> list[tuple[int | str, dict[str, Any]]]:
  """(line number, record) of every record of a CSV/TSV (with a header row) or JSONL file; (its
  id, record) of every question of an official SQuAD JSON file."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise DataError(f"cannot read data file {path}: {e.strerror or e}") from e
  if not data.strip():
    raise DataError(f"data file {path} is empty; remove it or fix the task.*_files glob")
  if b"\0" in data:
    raise DataError(f"{path} looks binary (it holds NUL bytes); {fmt} files must be plain "
                    "UTF-8 text (compressed files are not supported)")
  try:
    text = data.decode("utf-8-sig")  # a spreadsheet's byte-order mark is no part of the header
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    raise DataError(f"{path}:{line} is not valid UTF-8 (byte 0x{data[e.start]:02x}); save the "
                    "file as UTF-8") from e
  if fmt == "jsonl":
    records = [(i, _json_record(path, i, line))
               for i, line in enumerate(text.splitlines(), 1) if line.strip()]
  elif fmt == "squad":
    records = _squad_records(path, text)
  else:
    records = _csv_records(path, text, fmt)
  if not records:
    raise DataError(f"data file {path} holds no examples (only a header or blank lines)")
  return records


def _json_record(path: str, line_no: int, line: str) -> dict[str, Any]:
  try:
    record = json.loads(line)
  except json.JSONDecodeError as e:
    raise DataError(f"{path}:{line_no} is not valid JSON ({e.msg}); JSONL needs one object per "
                    "line") from e
  if not isinstance(record, dict):
    raise DataError(f"{path}:{line_no} holds a JSON {type(record).__name__}, not an object; "
                    "JSONL needs one object per line")
  return record


def _squad_records(path: str, text: str) -> list[tuple[str, dict[str, Any]]]:
  """(question id, record) of each question of an official SQuAD JSON file ({"data": [{"title",
  "paragraphs": [{"context", "qas": [{"id", "question", "answers"}]}]}]}): {"id", "title",
  "context", "question", "answers"}, as Hugging Face's squad dataset flattens it."""
  try:
    records = [(qa.get("id", f"{a}.{p}.{q}"),
                {"id": qa.get("id", ""), "title": article.get("title", ""),
                 "context": paragraph["context"], "question": qa["question"],
                 "answers": qa["answers"]})
               for a, article in enumerate(json.loads(text)["data"])
               for p, paragraph in enumerate(article["paragraphs"])
               for q, qa in enumerate(paragraph["qas"])]
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise DataError(f"{path} is not an official SQuAD JSON file ({type(e).__name__}: {e}); "
                    "it needs data[].paragraphs[].context and .qas[].question, .answers") from e
  return records


def _csv_records(path: str, text: str, fmt: str) -> list[tuple[int, dict[str, Any]]]:
  """Rows of a CSV, or of a TSV read as GLUE's (no quoting: quotes are text)."""
  options = dict(delimiter="\t", quoting=csv.QUOTE_NONE) if fmt == "tsv" else {}
  reader = csv.DictReader(io.StringIO(text, newline=""), restval=None, **options)
  records = []
  try:
    for row in reader:
      if None in row.values() or None in row:  # too few values, or too many
        raise DataError(f"{path}:{reader.line_num} does not have the header's "
                        f"{len(reader.fieldnames)} columns; fix the row (is the file really "
                        f"{fmt}? set task.format)")
      records.append((reader.line_num, row))
  except csv.Error as e:
    raise DataError(f"{path}:{reader.line_num}: cannot read it as {fmt}: {e}") from e
  return records


def field(record: dict[str, Any], name: str, key: str, where: str) -> Any:
  """record[name]; a DataError naming the config `key` to set when it has none."""
  if name not in record:
    raise DataError(f"{where} has no field {name!r} (has: {', '.join(map(str, record))}); "
                    f"set {key}")
  return record[name]


def text(record: dict[str, Any], name: str, key: str, where: str) -> str:
  """A text field."""
  value = field(record, name, key, where)
  if not isinstance(value, str):
    raise DataError(f"{where}: field {name!r} holds {type(value).__name__}, not text; set {key}")
  return value


def words(record: dict[str, Any], name: str, key: str, where: str) -> list:
  """A list field; in CSV/TSV a whitespace-separated string."""
  value = field(record, name, key, where)
  if isinstance(value, str):
    return value.split()
  if not isinstance(value, list):
    raise DataError(f"{where}: field {name!r} holds {type(value).__name__}, not a list; "
                    f"set {key}")
  return value


def score(value: Any, name: str, where: str) -> float:
  """A regression label: a finite number."""
  try:
    score = float(value)
  except (TypeError, ValueError):
    score = math.nan
  if isinstance(value, bool) or not math.isfinite(score):
    raise DataError(f"{where}: label {value!r} in field {name!r} is not a finite number; "
                    "task.kind=regression needs a float score there (check task.label_field, "
                    "or set task.kind=classification)")
  return score


def _plain(value: Any) -> Any:
  """A TFDS value as Python: bytes -> str, numpy scalars and arrays -> scalars and lists."""
  if isinstance(value, np.ndarray):
    value = value.tolist()
  elif isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, list):
    return [_plain(v) for v in value]
  if isinstance(value, dict):  # a nested feature (SQuAD's answers)
    return {k: _plain(v) for k, v in value.items()}
  return sources.as_text(value) if isinstance(value, bytes) else value


class TfdsExamples(Sequence):
  """A TFDS split as examples, read lazily by index (picklable, for grain workers).

  A ClassLabel label (or tag) becomes its name: task.labels, else the feature's names, which
  `label_names` holds for the label vocabulary.
  """

  def __init__(self, task: ml_collections.ConfigDict, split: str, parse: Parse, *,
               labelled: bool):
    self.task = copy.deepcopy(task)  # the driver's later changes must not reach the readers
    self.parse = parse
    self.split = task[f"{split}_split"]
    self.data = sources.open_tfds(task.tfds_name, self.split, task.tfds_data_dir, "task")
    features = self.data.dataset_info.features
    fields = [task.text_field, task.label_field] + ([task.text_pair_field]
                                                    if task.text_pair_field else [])
    for field in fields:
      if field not in features:
        raise DataError(f"TFDS {task.tfds_name!r} has no feature {field!r} (has: "
                        f"{', '.join(features)}); set the task.*_field keys")
    label = features[task.label_field]
    label = getattr(label, "feature", label)  # a Sequence's element: token tags
    self.label_names = None
    if hasattr(label, "names") and labelled:
      self.label_names = tuple(task.labels) or tuple(label.names)
      if len(self.label_names) != label.num_classes:
        raise ConfigError(f"task.labels names {len(task.labels)} classes but TFDS "
                          f"{task.tfds_name!r} has {label.num_classes}: {', '.join(label.names)}")
    if len(self) and self.label_names is not None:
      first = _plain(self.data[0][task.label_field])
      if not isinstance(first, list) and first < 0:
        raise DataError(f"TFDS {task.tfds_name!r} split {self.split!r} has no labels (label "
                        f"{first}: hidden, as in GLUE's test splits); evaluate on another split "
                        "(task.test_split)")

  def __len__(self) -> int:
    return len(self.data)

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = {k: _plain(v) for k, v in self.data[index].items()}
    where = f"TFDS {self.task.tfds_name!r} split {self.split!r} record {index}"
    if self.label_names is not None:
      label = record[self.task.label_field]
      record[self.task.label_field] = ([self._name(i) for i in label] if isinstance(label, list)
                                       else self._name(label))
    return self.parse(record, self.task, where)

  def __iter__(self) -> Iterator[dict[str, Any]]:
    return (self[i] for i in range(len(self)))

  def _name(self, i: int) -> str | int:
    """A ClassLabel id's name; an id out of range (-1: no label) stays, to fail as unknown."""
    return self.label_names[i] if 0 <= i < len(self.label_names) else i


def _sort_key(name: str) -> tuple:
  """Integer names in numeric order ("2" before "10"), then the others alphabetically."""
  try:
    return (0, int(name), "")
  except ValueError:
    return (1, 0, name)


class LabelVocab:
  """Class (or tag) names in id order, and the map from raw labels to ids.

  A raw label is looked up by its text, so a JSON 1, a CSV "1" and a name "1" are one class.
  `values` are the classes as the train split gave them (ints, bools, ... : what a prediction
  returns); the names by default.
  """

  def __init__(self, names: Sequence[str], values: Sequence | None = None):
    self.names = tuple(str(n) for n in names)
    self.values = tuple(self.names if values is None else values)
    self._ids = {name: i for i, name in enumerate(self.names)}
    if len(self._ids) != len(self.names):
      raise ConfigError(f"the class names repeat a name: {', '.join(self.names)}; fix task.labels")

  @classmethod
  def build(cls, task: ml_collections.ConfigDict, train_examples: Sequence[dict[str, Any]],
            labels_of: Callable[[dict[str, Any]], list]) -> "LabelVocab":
    """task.labels if given; else TFDS ClassLabel names; else the built-in task's classes;
    else the distinct labels (`labels_of` each example) of the train split: integers in
    numeric order (so labels 0..K-1 are their own ids), then names in sorted order."""
    if task.labels:
      return cls(task.labels)
    if getattr(train_examples, "label_names", None):
      return cls(train_examples.label_names)
    if task.source == "builtin":
      return cls(builtin_tasks.package_names())
    raw = {}
    for e in train_examples:
      for label in labels_of(e):
        raw.setdefault(str(label), label)
    if not raw:
      raise DataError("the train split has no labels; give examples or set task.labels")
    names = sorted(raw, key=_sort_key)
    return cls(names, [raw[n] for n in names])

  def __len__(self) -> int:
    return len(self.names)

  def id(self, raw: str | int) -> int:
    i = self._ids.get(str(raw))
    if i is None:
      listed = ", ".join(self.names[:_MAX_LISTED]) + (", ..." if len(self) > _MAX_LISTED else "")
      raise DataError(f"unknown label {raw!r}: the {len(self)} known classes are {listed}. The "
                      "classes come from the train split; set task.labels to name every class "
                      "in id order")
    return i

  def name(self, i: int) -> str:
    return self.names[i]

  def save(self, path: str) -> None:
    contents = {"names": list(self.names)}
    if self.values != self.names:
      contents["values"] = list(self.values)
    write_atomically(path, json.dumps(contents, indent=1).encode())

  @classmethod
  def load(cls, path: str) -> "LabelVocab":
    try:
      with open(path, encoding="utf-8") as f:
        contents = json.load(f)
      return cls(contents["names"], contents.get("values"))
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise DataError(f"cannot read the label vocabulary {path}: {e}; it is written by the "
                      "fine-tune run (labels.json in its workdir)") from e
