"""The corpus preparation's own steps and the files they write (the stages: roots_jax.runs.prep):
the input read as training reads it (SourceReader), what the filter tasks share, built once
(References: the tokenizer, the n-gram model, the decontamination index), the shards with their
counts (ShardWriter), and the manifest and report (Finalize); Layout says where each goes.

datatrove logs every task's progress and statistics, and a failed task's traceback, to the
console: here its console logs keep to warnings, a user error (RootsError) shows as the
command's one line, and the task's log file under PREP/logs keeps everything.
"""

import dataclasses
import glob
import json
import logging
import os
import sys
import time
from typing import Any, Iterator

import loguru
import ml_collections
from datatrove.data import Document
from datatrove.executor import base as datatrove_executor_base
from datatrove.pipeline.base import PipelineStep
from datatrove.utils import logging as datatrove_logging

from roots_jax import config as config_lib
from roots_jax.corpus import decontaminate, ngram, report, steps
from roots_jax.data import load_tokenizer, sources
from roots_jax.errors import RootsError
from roots_jax.runs import pretrain

log = logging.getLogger("roots_jax")


def _task_logger(logging_dir, rank: int, local_rank: int = 0, node_rank: int = -1):
  """datatrove's task logger, quieter on the console: warnings and errors only, without a
  traceback for a user error (the command says it in one line); the task's log file,
  PREP/logs/STAGE/logs/task_RANK.log, keeps everything."""
  del local_rank
  loguru.logger.remove()
  logfile = logging_dir.open(f"logs/task_{rank:05d}.log", "w")
  prefix = f"[NODE {node_rank}] " if node_rank != -1 else ""
  fmt = prefix + "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}"
  user_error = lambda r: r["exception"] is not None and isinstance(r["exception"].value, RootsError)  # pylint: disable=unnecessary-lambda-assignment
  loguru.logger.add(sys.stderr, level="WARNING", format=fmt, backtrace=False, diagnose=False,
                    filter=lambda r: not user_error(r))
  loguru.logger.add(logfile, level="DEBUG", format=fmt)
  loguru.logger.info(f"Launching pipeline for {rank=}")
  return logfile


def quiet_datatrove_logger() -> None:
  """datatrove's logger between tasks: warnings and errors on the console (not every task's
  statistics, which PREP/logs/STAGE/stats.json keeps)."""
  loguru.logger.remove()
  loguru.logger.add(sys.stderr, level="WARNING", backtrace=False, diagnose=False)


# Local workers fork from a server that imported this module (roots_jax.runs.prep), so every
# task there uses the quieter loggers; on SLURM and Ray, so do the tasks that unpickle this
# module's steps (the others log as datatrove does, into their job's log).
datatrove_executor_base.add_task_logger = _task_logger
datatrove_logging.setup_default_logger = quiet_datatrove_logger

MANIFEST = "manifest.json"
# Seconds between a reading task's reports of the bytes it read (PREP/logs/filter/progress),
# which the local executor's progress bar adds up.
PROGRESS_S = 1.0


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where a prep keeps what it makes, under its workdir."""
  root: str

  def path(self, *parts: str) -> str:
    return os.path.join(self.root, *parts)

  @property
  def filtered(self) -> str:
    return self.path("work", "filtered")

  @property
  def report_dir(self) -> str:
    return self.path("report")

  @property
  def ngram_dir(self) -> str:
    return self.path("ngram")

  @property
  def decont_index(self) -> str:
    return self.path("decontamination", "index.npy")

  @property
  def dedup_dir(self) -> str:
    return self.path("dedup")

  def logs(self, stage: str) -> str:
    return self.path("logs", stage)

  @property
  def progress(self) -> str:
    return self.path("logs", "filter", "progress")


def input_source(i: ml_collections.ConfigDict):
  """The input section's source, read by the training sources (roots_jax.data.sources): every
  document, none held out."""
  source = i.source if i.source != "auto" else ("files" if i.files else "builtin")
  if source == "files":
    return sources.FileSource(i.files, i.format, i.text_field, split="train", eval_fraction=None,
                              max_document_bytes=i.max_document_bytes, key="input.files")
  data = config_lib.base_config().data
  data.update(source=source, text_field=i.text_field, tfds_name=i.tfds_name,
              tfds_data_dir=i.tfds_data_dir, hf_path=i.hf_path, hf_name=i.hf_name,
              hf_streaming=i.hf_streaming, train_split=i.split,
              max_document_bytes=i.max_document_bytes, eval_fraction=0.0)
  return sources.make_source(data, "train")


def _unit_namer(source):
  """unit -> the name its documents' ids start with: a built-in module's path, a file's name
  (its path when two files share a name), a dataset record's index."""
  if isinstance(source, sources.BuiltinSource):
    return source.files.__getitem__
  if isinstance(source, sources.FileSource):
    unique = len({os.path.basename(p) for p in source.paths}) == len(source.paths)
    return lambda unit: os.path.basename(source.paths[unit]) if unique else source.paths[unit]
  return str


class SourceReader(PipelineStep):
  """The input's documents, streamed through the training sources (roots_jax.data.sources):
  task `rank` takes every world_size-th unit (file, record) when there are enough of them, else
  every world_size-th document. Ids are "UNIT:INDEX" (INDEX counts the unit's records)."""

  type = "roots_jax"
  name = "read"

  def __init__(self, input_section: dict, progress_dir: str):
    super().__init__()
    self.input_section, self.progress_dir = input_section, progress_dir

  def run(self, data=None, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
    del data
    source = input_source(ml_collections.ConfigDict(self.input_section))
    by_unit = source.num_units >= world_size
    seen, read, last, unit_name = 0, 0, time.monotonic(), _unit_namer(source)
    for unit in range(rank if by_unit else 0, source.num_units, world_size if by_unit else 1):
      name = unit_name(unit)
      for index, (_, thunk) in enumerate(source.records(unit, None)):
        seen += 1
        if not by_unit and (seen - 1) % world_size != rank:
          continue
        text = thunk()
        if text is None:  # over max_document_bytes: skipped with a warning by the source
          continue
        read += steps.utf8_len(text)
        self.stat_update("documents")
        if time.monotonic() - last > PROGRESS_S:
          _write_progress(self.progress_dir, rank, read)
          last = time.monotonic()
        yield Document(text=text, id=f"{name}:{index}", metadata={})
    _write_progress(self.progress_dir, rank, read)


def _write_progress(directory: str, rank: int, nbytes: int) -> None:
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, f"{rank:05d}.tmp"), "w") as f:
    f.write(str(nbytes))
  os.replace(os.path.join(directory, f"{rank:05d}.tmp"), os.path.join(directory, f"{rank:05d}"))


def bytes_read(directory: str) -> int:
  total = 0
  for path in glob.glob(os.path.join(directory, "[0-9]*[0-9]")):
    with open(path) as f:
      total += int(f.read() or 0)
  return total


class ShardWriter(steps.Step):
  """Writes the surviving documents to PREP/data/LANG/RANK.jsonl ({"text", "id", "language"}),
  counting documents, bytes and tokens (with the prep's tokenizer) per shard into
  PREP/data/shards/RANK.json. Files are written under temporary names and renamed when the task
  ends, so a killed task leaves nothing a reader could take for a shard."""

  name = "output"

  def __init__(self, report_dir: str, prep_dir: str, tokenizer_path: str):
    super().__init__(report_dir)
    self.prep_dir, self.tokenizer_path = prep_dir, tokenizer_path
    self._files: dict[str, Any] = {}
    self._counts: dict[str, dict[str, int]] = {}
    self._tokenizer = None
    self._rank = 0

  def run(self, data, rank: int = 0, world_size: int = 1):
    self._rank = rank
    yield from super().run(data, rank, world_size)

  def _shard(self, lang: str) -> str:
    return os.path.join("data", lang, f"{self._rank:05d}.jsonl")

  def apply(self, doc: Document, record: steps.Record) -> str | None:
    if self._tokenizer is None:
      self._tokenizer = load_tokenizer(self.tokenizer_path)
    lang = steps.language(doc)
    shard = self._shard(lang)
    if shard not in self._files:
      path = os.path.join(self.prep_dir, shard)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      self._files[shard] = open(path + ".tmp", "w", encoding="utf-8")
      self._counts[shard] = {"documents": 0, "bytes": 0, "tokens": 0}
    self._files[shard].write(json.dumps({"text": doc.text, "id": doc.id, "language": lang},
                                        ensure_ascii=False) + "\n")
    counts = self._counts[shard]
    counts["documents"] += 1
    counts["bytes"] += steps.utf8_len(doc.text)
    counts["tokens"] += len(self._tokenizer.encode(doc.text))
    return None

  def finish(self, record: steps.Record) -> None:
    shards = []
    for shard, f in sorted(self._files.items()):
      f.close()
      path = os.path.join(self.prep_dir, shard)
      os.replace(path + ".tmp", path)
      shards.append({"path": shard, "language": shard.split("/")[1], **self._counts[shard]})
    listing = os.path.join(self.prep_dir, "data", "shards", f"{self._rank:05d}.json")
    os.makedirs(os.path.dirname(listing), exist_ok=True)
    with open(listing + ".tmp", "w") as f:
      json.dump(shards, f)
    os.replace(listing + ".tmp", listing)


class References(PipelineStep):
  """Builds, once, what the filter tasks share: the tokenizer, the n-gram model and the
  decontamination index."""

  type = "roots_jax"
  name = "references"

  def __init__(self, config: dict, prep_dir: str):
    super().__init__()
    self.config, self.prep_dir = config, prep_dir

  def run(self, data=None, rank: int = 0, world_size: int = 1):
    del data, rank, world_size
    with self.track_time(unit="task"):
      self._build()
    return
    yield  # a generator, as datatrove expects of a step

  def _build(self) -> None:
    config = ml_collections.ConfigDict(self.config)
    layout = Layout(self.prep_dir)
    reference = reference_config(config)
    tokenizer = pretrain.load_or_train_tokenizer(reference, layout.ngram_dir, process_index=0)
    if uses_perplexity(config) and not os.path.exists(os.path.join(layout.ngram_dir,
                                                                     "ngram.json")):
      reference_source = sources.make_source(reference.data, "train")
      ngram.train_on_source(reference_source, tokenizer, order=config.ngram.order,
                            discount=_discount(config)).save(layout.ngram_dir)
    if config.decontaminate.enabled and not os.path.exists(layout.decont_index):
      texts = (decontaminate.file_eval_texts(config.decontaminate.eval_files,
                                             split_list(config.decontaminate.eval_fields),
                                             key="decontaminate.eval_files")
               if config.decontaminate.eval_files else decontaminate.builtin_eval_texts())
      decontaminate.build_index(texts, layout.decont_index, n=config.decontaminate.n)


def reference_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A pretraining config whose training split is the n-gram reference corpus and whose
  tokenizer settings are the prep's: the tokenizer comes out of the same cache as a training
  run's with those settings (the quickstart's by default), so its perplexity and the n-gram
  model's count the same tokens."""
  c = config_lib.base_config()
  g = config.ngram
  c.data.update(source="files" if g.reference_files else "builtin",
                train_files=g.reference_files, eval_fraction=g.eval_fraction)
  c.model.vocab_size = g.vocab_size
  c.tokenizer.update(path=g.tokenizer, train_max_bytes=g.tokenizer_train_bytes)
  return c


def tokenizer_path(layout: Layout) -> str:
  """The prep's tokenizer: ngram.tokenizer, else the one trained into PREP/ngram/tokenizer."""
  with open(layout.path("config.json")) as f:
    given = json.load(f)["ngram"]["tokenizer"]
  return given or os.path.join(layout.ngram_dir, "tokenizer", "spm.model")


def uses_perplexity(config: ml_collections.ConfigDict) -> bool:
  return config.quality.enabled and "perplexity" in split_list(config.quality.filters)


def _discount(config: ml_collections.ConfigDict) -> str | float:
  d = config.ngram.discount
  return d if d == "modified" else float(d)


def split_list(text: str) -> tuple[str, ...]:
  return tuple(item.strip() for item in text.split(",") if item.strip())


class Finalize(PipelineStep):
  """Writes PREP/manifest.json from the shards' counts, then the report."""

  type = "roots_jax"
  name = "finalize"

  def __init__(self, prep_dir: str):
    super().__init__()
    self.prep_dir = prep_dir

  def run(self, data=None, rank: int = 0, world_size: int = 1):
    del data, rank, world_size
    layout = Layout(self.prep_dir)
    manifest = write_manifest(layout)
    with open(layout.path("config.json")) as f:
      config = json.load(f)
    report.build(layout.report_dir, self.prep_dir, steps=report_steps(layout),
                 extra={"config": config, "manifest": _manifest_summary(manifest),
                        "stages": stage_times(layout), "duplicates": duplicates_summary(layout)})
    log.info("wrote %s and %s", layout.path(MANIFEST), layout.path("report.html"))
    return
    yield  # a generator, as datatrove expects of a step


def duplicates_summary(layout: Layout) -> dict:
  """Documents removed as exact and as near duplicates (the pairs: PREP/dedup/duplicates.jsonl),
  with a few examples of each."""
  path = os.path.join(layout.dedup_dir, "duplicates.jsonl")
  summary: dict[str, Any] = {"file": os.path.relpath(path, layout.root)}
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        pair = json.loads(line)
        kind = summary.setdefault(pair["kind"], {"removed": 0, "examples": []})
        kind["removed"] += 1
        if len(kind["examples"]) < 5:
          kind["examples"].append(pair)
  return summary


def report_steps(layout: Layout) -> list[str]:
  """The steps that wrote parts, in pipeline order."""
  order = ["normalize", "language", "quality", "redact", "decontaminate", "exact_dedup",
           "near_dedup", "lines", "output"]
  return [s for s in order if steps.part_paths(layout.report_dir, s)]


def write_manifest(layout: Layout) -> dict:
  """PREP/manifest.json: every shard (path, language, documents, bytes, tokens) in rank order,
  with totals per language and overall, and the tokenizer the tokens were counted with."""
  shards = []
  for listing in sorted(glob.glob(layout.path("data", "shards", "*.json"))):
    with open(listing) as f:
      shards += json.load(f)
  languages: dict[str, dict[str, int]] = {}
  for shard in shards:
    totals = languages.setdefault(shard["language"], {"documents": 0, "bytes": 0, "tokens": 0})
    for key in totals:
      totals[key] += shard[key]
  manifest = {"documents": sum(s["documents"] for s in shards),
              "bytes": sum(s["bytes"] for s in shards),
              "tokens": sum(s["tokens"] for s in shards),
              "tokenizer": tokenizer_path(layout),
              "languages": dict(sorted(languages.items())), "shards": shards}
  path = layout.path(MANIFEST)
  with open(path + ".tmp", "w") as f:
    json.dump(manifest, f, indent=1)
  os.replace(path + ".tmp", path)
  return manifest


def _manifest_summary(manifest: dict) -> dict:
  return {k: manifest[k] for k in ("documents", "bytes", "tokens", "tokenizer", "languages")} | {
      "shards": len(manifest["shards"])}


def stage_times(layout: Layout) -> dict[str, dict[str, float]]:
  """Seconds each step of each stage spent, summed over the stage's tasks (datatrove's per-task
  statistics)."""
  times: dict[str, dict[str, float]] = {}
  for stage_dir in sorted(glob.glob(layout.path("logs", "*"))):
    stage = times.setdefault(os.path.basename(stage_dir), {})
    for path in sorted(glob.glob(os.path.join(stage_dir, "stats", "*.json"))):
      with open(path) as f:
        for step in json.load(f):
          seconds = step["time_stats"]["total"] if isinstance(step["time_stats"], dict) else 0.0
          stage[step["name"]] = stage.get(step["name"], 0.0) + seconds
  return times
