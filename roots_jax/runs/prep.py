"""A corpus preparation (python -m roots_jax.prep): raw text to training shards, as the ROOTS
corpus was built, run by datatrove executors (local processes, SLURM or Ray).

Stages, each a datatrove executor whose tasks leave completion markers in PREP/logs/STAGE, so a
prep that crashed or was preempted reruns only its unfinished tasks:

  references   1 task   the tokenizer, the n-gram model (PREP/ngram) and the decontamination
                        index (PREP/decontamination), built once
  filter       N tasks  read (streamed) -> normalise -> identify the language -> ROOTS quality
                        filters (with the n-gram perplexity) -> redact personal data ->
                        decontaminate -> PREP/work/filtered/RANK.jsonl.gz
  dedup ...             the deduplication stages (roots_jax.corpus.dedup)
  output       N tasks  exact, near-duplicate and boilerplate-line removal -> per-language
                        shards PREP/data/LANG/RANK.jsonl with their counts
  finalize     1 task   PREP/manifest.json (read by data.source=prepared), report.json and
                        report.html

Each step writes what it removed, per language, under PREP/report/parts (roots_jax.corpus.steps).
Every task's output depends only on the config and the input, never on the worker count or on
the order tasks ran in: a resumed prep writes what an unbroken one writes.
"""

import dataclasses
import glob
import json
import logging
import os
import shutil
import sys
import threading
import time
from typing import Any, Iterator

import loguru
import ml_collections
from datatrove.data import Document
from datatrove.executor import base as datatrove_executor_base
from datatrove.utils import logging as datatrove_logging
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from roots_jax import config as config_lib
from roots_jax import progress
from roots_jax.corpus import (decontaminate, dedup, language, ngram, normalize, quality, redact,
                              report, steps)
from roots_jax.data import load_tokenizer, sources
from roots_jax.errors import ConfigError, DataError, RootsError
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


def _default_logger() -> None:
  """datatrove's logger between tasks: warnings and errors on the console (not every task's
  statistics, which PREP/logs/STAGE/stats.json keeps)."""
  loguru.logger.remove()
  loguru.logger.add(sys.stderr, level="WARNING", backtrace=False, diagnose=False)


# Every process that runs a task imports this module (its steps are unpickled there) before the
# task starts, so each uses the quieter loggers.
datatrove_executor_base.add_task_logger = _task_logger
datatrove_logging.setup_default_logger = _default_logger

MANIFEST = "manifest.json"
# Seconds between a reading task's reports of the bytes it read (PREP/logs/filter/progress),
# which the local executor's progress bar adds up.
_PROGRESS_S = 1.0


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


def _unit_name(source, unit: int) -> str:
  if isinstance(source, sources.BuiltinSource):
    return source.files[unit]
  if isinstance(source, sources.FileSource):
    return os.path.basename(source.paths[unit]) if len(
        {os.path.basename(p) for p in source.paths}) == len(source.paths) else source.paths[unit]
  return str(unit)


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
    seen, read, last = 0, 0, time.monotonic()
    for unit in range(rank if by_unit else 0, source.num_units, world_size if by_unit else 1):
      name = _unit_name(source, unit)
      for index, (_, thunk) in enumerate(source.records(unit, None)):
        seen += 1
        if not by_unit and (seen - 1) % world_size != rank:
          continue
        text = thunk()
        if text is None:  # over max_document_bytes: skipped with a warning by the source
          continue
        read += steps.utf8_len(text)
        self.stat_update("documents")
        if time.monotonic() - last > _PROGRESS_S:
          _write_progress(self.progress_dir, rank, read)
          last = time.monotonic()
        yield Document(text=text, id=f"{name}:{index}", metadata={})
    _write_progress(self.progress_dir, rank, read)


def _write_progress(directory: str, rank: int, nbytes: int) -> None:
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, f"{rank:05d}.tmp"), "w") as f:
    f.write(str(nbytes))
  os.replace(os.path.join(directory, f"{rank:05d}.tmp"), os.path.join(directory, f"{rank:05d}"))


def _bytes_read(directory: str) -> int:
  total = 0
  for path in glob.glob(os.path.join(directory, "[0-9]*[0-9]")):
    with open(path) as f:
      total += int(f.read() or 0)
  return total


def input_bytes(source) -> int | None:
  """The input's size on disk, for the progress bar's total (None for datasets)."""
  if isinstance(source, sources.BuiltinSource):
    return sum(os.path.getsize(os.path.join(source.root, f)) for f in source.files)
  if isinstance(source, sources.FileSource):
    return sum(os.path.getsize(p) for p in source.paths)
  return None


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
    if _uses_perplexity(config) and not os.path.exists(os.path.join(layout.ngram_dir,
                                                                     "ngram.json")):
      reference_source = sources.make_source(reference.data, "train")
      ngram.train_on_source(reference_source, tokenizer, order=config.ngram.order,
                            discount=_discount(config)).save(layout.ngram_dir)
    if config.decontaminate.enabled and not os.path.exists(layout.decont_index):
      texts = (decontaminate.file_eval_texts(config.decontaminate.eval_files,
                                             _split(config.decontaminate.eval_fields),
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


def _uses_perplexity(config: ml_collections.ConfigDict) -> bool:
  return config.quality.enabled and "perplexity" in _split(config.quality.filters)


def _discount(config: ml_collections.ConfigDict) -> str | float:
  d = config.ngram.discount
  return d if d == "modified" else float(d)


def _split(text: str) -> tuple[str, ...]:
  return tuple(item.strip() for item in text.split(",") if item.strip())


def _filter_steps(config: ml_collections.ConfigDict, layout: Layout) -> list[PipelineStep]:
  r = layout.report_dir
  pipeline: list[PipelineStep] = [SourceReader(config.input.to_dict(),
                                                progress_dir=layout.progress)]
  n = config.normalize
  pipeline.append(normalize.Normalizer(r, fix_unicode=n.fix_unicode, whitespace=n.whitespace,
                                       html=n.html))
  if config.language.enabled:
    pipeline.append(language.LanguageId(
        r, languages=_split(config.language.keep),
        min_confidence=None if config.language.min_confidence < 0 else
        config.language.min_confidence, table_path=config.quality.table))
  if config.quality.enabled:
    q = config.quality
    scorer = (ngram.PerplexityScorer(layout.ngram_dir, tokenizer_path(layout))
              if _uses_perplexity(config) else None)
    pipeline.append(quality.QualityFilter(
        r, table_path=q.table, filters=tuple(f for f in _split(q.filters) if f != "perplexity"
                                             or scorer), default_language=q.default_language,
        perplexity=scorer))
  if config.redact.enabled:
    pipeline.append(redact.Redactor(r, kinds=_split(config.redact.kinds)))
  if config.decontaminate.enabled:
    d = config.decontaminate
    pipeline.append(decontaminate.Decontaminator(r, index_path=layout.decont_index, n=d.n,
                                                 min_matches=d.min_matches))
  pipeline.append(JsonlWriter(layout.filtered, output_filename="${rank}.jsonl.gz"))
  return pipeline


def dedup_config(config: ml_collections.ConfigDict) -> dedup.DedupConfig:
  d = config.dedup
  return dedup.DedupConfig(exact=d.exact, near=d.near, lines=d.lines, ngram_size=d.ngram_size,
                           num_buckets=d.num_buckets, hashes_per_bucket=d.hashes_per_bucket,
                           near_min_similarity=d.near_min_similarity,
                           line_min_docs=d.line_min_docs, line_min_chars=d.line_min_chars,
                           seed=config.seed)


def stages(config: ml_collections.ConfigDict, prep_dir: str) -> list[tuple[str, list, int]]:
  """(name, pipeline, tasks) of every stage, in order. The deduplication stages read the
  filter stage's output with the output stage's reader and task count, so that both see each
  document at the same (task, position)."""
  layout = Layout(prep_dir)
  tasks = config.executor.tasks
  cfg = dedup_config(config)
  result = [("references", [References(config.to_dict(), prep_dir)], 1),
            ("filter", _filter_steps(config, layout), tasks)]
  signatures = dedup.signature_steps(cfg, layout.dedup_dir)
  if signatures:
    result.append(("dedup_signatures", [JsonlReader(layout.filtered), *signatures], tasks))
  result += dedup.middle_stages(cfg, layout.dedup_dir)
  result.append(("output", [JsonlReader(layout.filtered),
                            *dedup.filter_steps(cfg, layout.dedup_dir, layout.report_dir),
                            ShardWriter(layout.report_dir, prep_dir, tokenizer_path(layout))],
                 tasks))
  result.append(("finalize", [Finalize(prep_dir)], 1))
  return result


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


def check_config(config: ml_collections.ConfigDict, layout: Layout) -> None:
  """Writes PREP/config.json, or checks that a resumed prep has the same one: only where and
  how many tasks run at once may change (executor.kind, workers and the cluster settings; not
  executor.tasks, which decides the shards)."""
  path = layout.path("config.json")
  values = config.to_dict()
  if os.path.exists(path):
    with open(path) as f:
      before = json.load(f)
    changed = [key for key in _flat(values) if _flat(values).get(key) != _flat(before).get(key)
               and not (key.startswith("executor.") and key != "executor.tasks")]
    if changed:
      raise ConfigError(f"{layout.root} was prepared with another config ({', '.join(changed)} "
                        "differ); use another --workdir, or delete it to start over")
    return
  os.makedirs(layout.root, exist_ok=True)
  config_lib.save_config(config, path)


def _flat(values: dict, prefix: str = "") -> dict:
  flat = {}
  for key, value in values.items():
    if isinstance(value, dict):
      flat.update(_flat(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def prepare(config: ml_collections.ConfigDict, prep_dir: str) -> dict | None:
  """Runs (or resumes) the prep of `config` into `prep_dir`; returns the report (None when the
  stages were submitted to SLURM, whose last job writes it)."""
  layout = Layout(prep_dir)
  _default_logger()
  source = input_source(config.input)  # a missing input fails here
  check_config(config, layout)
  plan = stages(config, prep_dir)
  e = config.executor
  if e.kind == "local":
    workers = e.workers or os.cpu_count() or 1
    total = input_bytes(source)
    for name, pipeline, tasks in plan:
      _run_local(name, pipeline, tasks, min(workers, tasks), layout,
                 total if name == "filter" else None)
    with open(layout.path("report.json")) as f:
      return json.load(f)
  _check_cluster(e.kind)
  cluster_executors(e, plan, layout)[-1].run()  # runs (or submits) the stages it depends on
  if e.kind == "slurm":
    log.info("submitted the stages to SLURM; %s is written when the last job ends",
             layout.path("report.html"))
    return None
  with open(layout.path("report.json")) as f:
    return json.load(f)


def _run_local(name: str, pipeline: list, tasks: int, workers: int, layout: Layout,
               total_bytes: int | None) -> None:
  """Runs one stage's unfinished tasks; the filter stage shows the input bytes read (a bar
  with the rate and time left on a terminal), the others the tasks done."""
  executor = LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=workers,
                                   logging_dir=layout.logs(name), skip_completed=True)
  completed = lambda: sum(map(executor.is_rank_completed, range(tasks)))  # pylint: disable=unnecessary-lambda-assignment
  done = completed()
  if done == tasks:
    log.info("%s: all %d tasks done before", name, tasks)
    return
  log.info("%s: %d tasks%s on %d workers", name, tasks,
           f" ({done} done before)" if done else "", workers)
  began = time.perf_counter()
  if total_bytes is None:
    bar = progress.Progress(name, tasks, unit="task", initial=done)
    count = lambda: completed() - bar.n  # pylint: disable=unnecessary-lambda-assignment
  else:
    bar = progress.Progress(name, total_bytes, unit="B", unit_scale=True,
                            initial=_bytes_read(layout.progress))
    count = lambda: _bytes_read(layout.progress) - bar.n  # pylint: disable=unnecessary-lambda-assignment
  failure: list[BaseException] = []

  def run():
    try:
      executor.run()
    except BaseException as e:  # pylint: disable=broad-except
      failure.append(e)

  runner = threading.Thread(target=run, daemon=True)
  runner.start()
  with bar:
    while runner.is_alive():
      runner.join(_PROGRESS_S)
      bar.update(max(count(), 0))
  if failure and isinstance(failure[0], RootsError):
    raise failure[0]  # bad input found by a task: one line, as everywhere
  if failure or completed() != tasks:
    raise DataError(f"{name}: {tasks - completed()} of {tasks} tasks failed"
                    + (f" ({type(failure[0]).__name__}: {failure[0]})" if failure else "")
                    + f"; their logs are in {layout.logs(name)}/logs (run the command again to "
                    "retry them)")
  log.info("%s: done in %.1f s", name, time.perf_counter() - began)


def _check_cluster(kind: str) -> None:
  """SLURM needs sbatch here (a login node); Ray a cluster, which ray.init joins (RAY_ADDRESS)
  or starts on this machine."""
  if kind == "slurm" and shutil.which("sbatch") is None:
    raise ConfigError("executor.kind=slurm submits jobs with sbatch, which this machine lacks; "
                      "run the command on a SLURM login node")
  if kind == "ray":
    try:
      import ray  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ConfigError("executor.kind=ray needs Ray: pip install ray") from None
    if not ray.is_initialized():
      ray.init()


def cluster_executors(e: ml_collections.ConfigDict, plan: list, layout: Layout) -> list:
  """One SLURM or Ray executor per stage of `plan`, each depending on the one before."""
  executors = []
  for name, pipeline, tasks in plan:
    common = dict(pipeline=pipeline, tasks=tasks, workers=e.workers or -1,
                  cpus_per_task=e.cpus_per_task, mem_per_cpu_gb=e.mem_per_cpu_gb,
                  logging_dir=layout.logs(name), depends=executors[-1] if executors else None)
    if e.kind == "slurm":
      from datatrove.executor import SlurmPipelineExecutor  # pylint: disable=g-import-not-at-top
      sbatch = dict(item.split("=", 1) for item in _split(e.sbatch_args))
      executors.append(SlurmPipelineExecutor(
          **common, time=e.time, partition=e.partition, job_name=f"prep_{name}",
          env_command=e.env_command or None, sbatch_args=sbatch or None))
    else:
      from datatrove.executor import RayPipelineExecutor  # pylint: disable=g-import-not-at-top
      executors.append(RayPipelineExecutor(**common))
  return executors
