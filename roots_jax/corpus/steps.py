"""What every preparation step shares: a datatrove PipelineStep that keeps, drops or rewrites
each document and records, per language, what came in and went out, why documents were
removed, the values of its signals (for the report's histograms) and a sample of what it
removed (so a user sees what a threshold does before trusting it).

A step writes its record as one JSON file per task, `{report_dir}/parts/{name}/{rank:05d}.json`,
when the task ends; roots_jax.corpus.report merges them. The record ("part"):

  {"step": name, "rank": r,
   "languages": {lang: {"docs_in", "bytes_in", "docs_out", "bytes_out", "removed": {reason: n}}},
   "signals": {signal: {lang: [value, ...]}},        at most MAX_SIGNAL_VALUES per task
   "thresholds": {signal: {lang: [low, high]}},      None for an open side
   "counts": {name: n},                              e.g. redactions by tag
   "samples": {reason: [{"id", "language", "text", "signals"}]}}   the first MAX_SAMPLES

A document's language is `doc.metadata["language"]` ("unknown" before identification); its
bytes are those of its UTF-8 text. A step that computes signals puts them in
`doc.metadata["signals"]` ({name: value}), so that a removed document's sample shows them; the
output writer drops them.
"""

import abc
import json
import os
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

UNKNOWN = "unknown"
# Per task: the signal values kept for histograms, and the removed documents kept as samples
# (each cut to SAMPLE_CHARS characters).
MAX_SIGNAL_VALUES = 20_000
MAX_SAMPLES = 5
SAMPLE_CHARS = 600


def language(doc: Document) -> str:
  return doc.metadata.get("language", UNKNOWN)


def utf8_len(text: str) -> int:
  return len(text.encode("utf-8", "surrogatepass"))


class Record:
  """One task's record of one step (the "part" of the module docstring)."""

  def __init__(self, step: str, rank: int):
    self.step, self.rank = step, rank
    self.languages: dict[str, dict[str, Any]] = {}
    self.signals: dict[str, dict[str, list[float]]] = {}
    self.thresholds: dict[str, dict[str, list[float | None]]] = {}
    self.counts: dict[str, int] = {}
    self.samples: dict[str, list[dict]] = {}

  def _language(self, lang: str) -> dict:
    return self.languages.setdefault(
        lang, {"docs_in": 0, "bytes_in": 0, "docs_out": 0, "bytes_out": 0, "removed": {}})

  def came_in(self, lang: str, nbytes: int) -> None:
    entry = self._language(lang)
    entry["docs_in"] += 1
    entry["bytes_in"] += nbytes

  def went_out(self, lang: str, nbytes: int) -> None:
    entry = self._language(lang)
    entry["docs_out"] += 1
    entry["bytes_out"] += nbytes

  def removed(self, doc: Document, reason: str, signals: dict[str, float] | None = None) -> None:
    removed = self._language(language(doc))["removed"]
    removed[reason] = removed.get(reason, 0) + 1
    samples = self.samples.setdefault(reason, [])
    if len(samples) < MAX_SAMPLES:
      samples.append({"id": doc.id, "language": language(doc), "text": doc.text[:SAMPLE_CHARS],
                      "signals": signals or {}})

  def signal(self, name: str, lang: str, value: float,
             threshold: tuple[float | None, float | None] | None = None) -> None:
    values = self.signals.setdefault(name, {}).setdefault(lang, [])
    if len(values) < MAX_SIGNAL_VALUES:
      values.append(float(value))
    if threshold is not None:
      self.thresholds.setdefault(name, {})[lang] = list(threshold)

  def count(self, name: str, n: int = 1) -> None:
    self.counts[name] = self.counts.get(name, 0) + n

  def to_json(self) -> dict:
    return {"step": self.step, "rank": self.rank, "languages": self.languages,
            "signals": self.signals, "thresholds": self.thresholds, "counts": self.counts,
            "samples": self.samples}

  def write(self, report_dir: str) -> None:
    """Atomically: a task that dies before the end leaves no part (its rerun writes it)."""
    directory = os.path.join(report_dir, "parts", self.step)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{self.rank:05d}.json")
    with open(path + ".tmp", "w") as f:
      json.dump(self.to_json(), f)
    os.replace(path + ".tmp", path)


def part_paths(report_dir: str, step: str) -> list[str]:
  """The parts one step's tasks wrote, by rank."""
  directory = os.path.join(report_dir, "parts", step)
  if not os.path.isdir(directory):
    return []
  return [os.path.join(directory, n) for n in sorted(os.listdir(directory)) if n.endswith(".json")]


class Step(PipelineStep, abc.ABC):
  """A preparation step: `apply(doc, record)` rewrites `doc` in place and returns None to keep
  it, or the reason it is removed. `name` (class attribute: a short identifier such as
  "quality") names the step in the report; `report_dir` is where its parts go."""

  type = "roots_jax"
  name: str = ""

  def __init__(self, report_dir: str):
    super().__init__()
    self.report_dir = report_dir

  @abc.abstractmethod
  def apply(self, doc: Document, record: Record) -> str | None:
    """None to keep `doc` (possibly rewritten), or why it is removed."""

  def finish(self, record: Record) -> None:
    """Called after the task's last document (e.g. to flush what the step buffered)."""

  def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
    record = Record(self.name, rank)
    for doc in data:
      nbytes = utf8_len(doc.text)
      self.stat_update("documents_in")
      with self.track_time():
        reason = self.apply(doc, record)
      # After apply: the language step's input counts under the language it identified.
      record.came_in(language(doc), nbytes)
      if reason is None:
        record.went_out(language(doc), utf8_len(doc.text))
        self.stat_update("documents_out")
        yield doc
      else:
        record.removed(doc, reason, doc.metadata.get("signals"))
        self.stat_update(f"removed_{reason}")
    self.finish(record)
    record.write(self.report_dir)
