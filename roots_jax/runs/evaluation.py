"""Scoring a run's checkpoint into WORKDIR/results.json: a pretraining (or converted) run's
token-weighted perplexity and loss terms on its held-out split, a fine-tuning run's task metrics
on a split of its task (roots_jax.evals), each with the examples and tokens scored; a classifier's
per-class figures ("per_class") and a seq2seq model's first generations ("samples") besides; and
for a pretraining run, on request, an n-gram model's perplexity on the same documents ("ngram",
roots_jax.corpus.ngram): the classical baseline. A language model's zero- and few-shot scores on
in-context tasks (roots_jax.evals.incontext) go under "incontext" instead."""

import json
import logging
import os
import time

import jax

from roots_jax import config as config_lib
from roots_jax import objectives
from roots_jax.corpus import ngram as ngram_lib
from roots_jax.data import sources
from roots_jax.errors import ConfigError
from roots_jax.evals import incontext
from roots_jax.models import families
from roots_jax.runs import load, workdir as workdir_lib
from roots_jax.runs.incontext import lm_of
from roots_jax.training import distributed

log = logging.getLogger("roots_jax")


def evaluate_run(workdir: str, overrides=(), *, split: str = "", checkpoint: str = "",
                 config_spec: str = "", ngram: str = "") -> dict:
  """Scores the run in `workdir` (its config, or `config_spec`'s sections with the run's model
  and tokenizer; `overrides` applied to either) on `split` (default: the held-out split of a
  pretraining run, validation for a fine-tuning run) at `checkpoint` (default: latest, a
  fine-tuning run's best); with `ngram` (a directory of roots_jax.corpus.ngram's model, trained
  on the run's tokenizer) a pretraining run's split is scored by that model too. Writes and
  returns results.json's contents."""
  config = workdir_lib.read_config(workdir)
  if config_spec:
    run_config, config = config, config_lib.load_config(config_spec)
    if config_lib.SCHEMAS[config.kind] is not config_lib.SCHEMAS[run_config.kind]:
      raise ConfigError(f"--config {config_spec} is a {config.kind} config, which does not fit "
                        f"the {run_config.kind} run {workdir}")
    with config.unlocked():
      config.kind, config.model, config.tokenizer = (run_config.kind, run_config.model,
                                                     run_config.tokenizer)
  with config.unlocked():
    for item in overrides:
      config_lib.apply_override(config, item)
  distributed.maybe_initialize(config.distributed)
  config_lib.validate(config, jax.device_count())
  kind = load.KINDS[config.kind]
  split, what = kind.eval_split(config, split)
  if ngram and (what != "pretraining" or objectives.get(config.data.objective).reads_pairs):
    raise ConfigError("--ngram scores the documents of a pretraining run's held-out split; this "
                      f"run is scored on {what} examples: leave --ngram out")
  loaded = load.load_run(workdir, config, checkpoint or None)
  baseline = None
  if ngram:
    baseline = ngram_lib.NGramModel.load(ngram)
    baseline.check_tokenizer(loaded.tokenizer, os.path.abspath(ngram))
  log.info("evaluating %s at step %d on %s", workdir, loaded.step, split)
  began = time.perf_counter()
  with loaded.context():
    values, details = kind.evaluate(loaded, split)
  log.info("evaluated in %.1f s", time.perf_counter() - began)
  if baseline is not None:
    began = time.perf_counter()
    details["ngram"] = {**ngram_lib.score_source(baseline, sources.make_source(config.data, "eval"),
                                                 loaded.tokenizer),
                        "order": baseline.order, "dir": os.path.abspath(ngram)}
    log.info("n-gram baseline scored in %.1f s", time.perf_counter() - began)
  results = {"workdir": os.path.abspath(workdir), "kind": what, "split": split,
             "checkpoint_step": loaded.step, "metrics": values, **details,
             "config": config.to_dict()}
  _write(workdir, results)
  return results


def evaluate_incontext(path: str, task_specs: list[str], *, num_fewshot: int = 0,
                       limit: int | None = None, seed: int = incontext.DEFAULT_SEED,
                       checkpoint: str = "") -> dict:
  """Scores the language model at `path` (a pretrained, converted, distilled or quantized run of
  the decoder or encoder-decoder family, or a Hugging Face model directory) on in-context tasks
  (built-in names or task files) with `num_fewshot` examples per prompt, on each task's first
  `limit` documents. Writes and returns results.json's contents, the scores under "incontext"."""
  workdir, which = load.resolve(path, checkpoint or None)
  config = load.config_here(workdir)
  if "task" in config:
    raise ConfigError(f"{workdir} is fine-tuned for a {config.task.kind} task: --tasks scores a "
                      "language model (a pretrained, converted, distilled or quantized run); "
                      "leave --tasks out to score its task")
  if config.model.family == families.ENCODER.name:
    raise ConfigError(f"{workdir} is an encoder-only ({config.model.family}) model, which gives "
                      "no next-token probabilities: --tasks scores decoder and encoder-decoder "
                      "models")
  incontext.check_settings(num_fewshot, limit)  # mistakes fail before the model loads
  tasks = [incontext.resolve(spec) for spec in task_specs]
  distributed.maybe_initialize(config.distributed)
  loaded = load.load_run(workdir, config, which)
  log.info("evaluating %s at step %d on %s, %d-shot", workdir, loaded.step,
           ", ".join(t.name for t in tasks), num_fewshot)
  with loaded.context():
    scores = incontext.evaluate_tasks(lm_of(loaded), tasks, num_fewshot, limit, seed)
  results = {"workdir": workdir, "kind": "in-context", "checkpoint_step": loaded.step,
             "num_fewshot": num_fewshot, "limit": limit, "seed": seed, "incontext": scores,
             "config": config.to_dict()}
  _write(workdir, results)
  return results


def _write(workdir: str, results: dict) -> None:
  if jax.process_index() == 0:
    path = os.path.join(workdir, "results.json")
    with open(path + ".tmp", "w") as f:
      json.dump(results, f, indent=2, default=float)
    os.replace(path + ".tmp", path)


def format_table(results: dict) -> str:
  """The results as the evaluate command prints them: the metrics (counts as integers), the
  n-gram baseline's, then each class's precision, recall, F1 and support; the sample generations
  stay in results.json."""
  if "incontext" in results:
    return _format_incontext(results)
  rows = [("run", results["workdir"]), ("kind", results["kind"]), ("split", results["split"]),
          ("checkpoint step", str(results["checkpoint_step"]))]
  rows += [(name, f"{value:.4f}" if isinstance(value, float) else str(value))
           for name, value in results["metrics"].items()]
  if "ngram" in results:
    baseline = results["ngram"]
    rows += [(f"ngram {name}", f"{baseline[name]:.4f}" if name == "perplexity"
              else str(baseline[name])) for name in ("perplexity", "tokens", "documents", "order",
                                                     "dir")]
  per_class = results.get("per_class", {})
  if per_class:
    rows.append(("per class", "precision  recall      f1  support"))
    rows += [(f"  {name}", f"{c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:6.4f}  "
                           f"{c['support']:7d}") for name, c in per_class.items()]
  width = max(len(name) for name, _ in rows)
  return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _format_incontext(results: dict) -> str:
  """Each task's shots, documents, speed and requests cut to the model's context, then its
  metrics as value ± bootstrap stderr."""
  rows = [("run", results["workdir"]), ("checkpoint step", str(results["checkpoint_step"]))]
  for name, task in results["incontext"].items():
    cut = task["truncated_requests"]
    rows.append((name, f"{task['num_fewshot']}-shot, {task['examples']} examples, "
                       f"{task['examples_per_second']:.1f} examples/s"
                       + (f", {cut} requests cut to the model's context" if cut else "")))
    rows += [(f"  {metric}", f"{value:.4f} ± {task['stderr'][metric]:.4f}")
             for metric, value in task["metrics"].items()]
  width = max(len(name) for name, _ in rows)
  return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
