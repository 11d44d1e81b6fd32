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

import contextlib
import json
import logging
import os
import shutil
import threading
import time

import ml_collections
import multiprocess.forkserver
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from roots_jax import config as config_lib
from roots_jax import progress
from roots_jax.corpus import decontaminate, dedup, language, ngram, normalize, quality, redact
from roots_jax.data import sources
from roots_jax.errors import ConfigError, DataError, RootsError
from roots_jax.runs.prep_steps import (PROGRESS_S, Finalize, Layout, References, ShardWriter,
                                       SourceReader, bytes_read, input_source,
                                       quiet_datatrove_logger, split_list, tokenizer_path,
                                       uses_perplexity)

log = logging.getLogger("roots_jax")


def input_bytes(source) -> int | None:
  """The input's size on disk, for the progress bar's total (None for datasets)."""
  if isinstance(source, sources.BuiltinSource):
    return sum(os.path.getsize(os.path.join(source.root, f)) for f in source.files)
  if isinstance(source, sources.FileSource):
    return sum(os.path.getsize(p) for p in source.paths)
  return None


def _filter_steps(config: ml_collections.ConfigDict, layout: Layout) -> list[PipelineStep]:
  r = layout.report_dir
  pipeline: list[PipelineStep] = [SourceReader(config.input.to_dict(),
                                                progress_dir=layout.progress)]
  n = config.normalize
  pipeline.append(normalize.Normalizer(r, fix_unicode=n.fix_unicode, whitespace=n.whitespace,
                                       html=n.html))
  if config.language.enabled:
    pipeline.append(language.LanguageId(
        r, languages=split_list(config.language.keep),
        min_confidence=None if config.language.min_confidence < 0 else
        config.language.min_confidence, table_path=config.quality.table))
  if config.quality.enabled:
    q = config.quality
    scorer = (ngram.PerplexityScorer(layout.ngram_dir, tokenizer_path(layout))
              if uses_perplexity(config) else None)
    pipeline.append(quality.QualityFilter(
        r, table_path=q.table, filters=tuple(f for f in split_list(q.filters) if f != "perplexity"
                                             or scorer), default_language=q.default_language,
        perplexity=scorer))
  if config.redact.enabled:
    pipeline.append(redact.Redactor(r, kinds=split_list(config.redact.kinds)))
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
  quiet_datatrove_logger()
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
  # Worker processes fork from a server that imported the prep's steps (and so their quieter
  # loggers) once, whatever the stage's pipeline imports.
  multiprocess.forkserver.set_forkserver_preload(["roots_jax.runs.prep_steps"])
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
                            initial=bytes_read(layout.progress))
    count = lambda: bytes_read(layout.progress) - bar.n  # pylint: disable=unnecessary-lambda-assignment
  failure: list[BaseException] = []

  def run():
    try:
      executor.run()
    except BaseException as e:  # pylint: disable=broad-except
      failure.append(e)

  runner = threading.Thread(target=run, daemon=True)
  with _forkserver_default(), bar:
    runner.start()
    while runner.is_alive():
      runner.join(PROGRESS_S)
      bar.update(max(count(), 0))
  if failure and isinstance(failure[0], RootsError):
    raise failure[0]  # bad input found by a task: one line, as everywhere
  if failure or completed() != tasks:
    raise DataError(f"{name}: {tasks - completed()} of {tasks} tasks failed"
                    + (f" ({type(failure[0]).__name__}: {failure[0]})" if failure else "")
                    + f"; their logs are in {layout.logs(name)}/logs (run the command again to "
                    "retry them)")
  log.info("%s: done in %.1f s", name, time.perf_counter() - began)


@contextlib.contextmanager
def _forkserver_default():
  """Makes forkserver multiprocess's default start method while a stage runs. The executor
  starts its Manager in the default context, and a child forked from this process (whose XLA and
  pool threads may hold malloc's lock at that moment) can die on its first free(); the
  forkserver forks from a fresh single-threaded process instead."""
  previous = multiprocess.get_start_method(allow_none=True)
  multiprocess.set_start_method("forkserver", force=True)
  try:
    yield
  finally:
    multiprocess.set_start_method(previous, force=True)


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
      sbatch = dict(item.split("=", 1) for item in split_list(e.sbatch_args))
      executors.append(SlurmPipelineExecutor(
          **common, time=e.time, partition=e.partition, job_name=f"prep_{name}",
          env_command=e.env_command or None, sbatch_args=sbatch or None))
    else:
      from datatrove.executor import RayPipelineExecutor  # pylint: disable=g-import-not-at-top
      executors.append(RayPipelineExecutor(**common))
  return executors
