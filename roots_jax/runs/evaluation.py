"""Scoring a run's checkpoint into WORKDIR/results.json: a pretraining (or converted) run's
token-weighted perplexity and loss terms on its held-out split, a fine-tuning run's task metrics
on a split of its task (roots_jax.evals), each with the examples and tokens scored; a classifier's
per-class figures ("per_class") and a seq2seq model's first generations ("samples") besides."""

import json
import logging
import os
import time

import jax

from roots_jax import config as config_lib
from roots_jax.errors import ConfigError
from roots_jax.runs import load, workdir as workdir_lib
from roots_jax.training import distributed

log = logging.getLogger("roots_jax")


def evaluate_run(workdir: str, overrides=(), *, split: str = "", checkpoint: str = "",
                 config_spec: str = "") -> dict:
  """Scores the run in `workdir` (its config, or `config_spec`'s sections with the run's model
  and tokenizer; `overrides` applied to either) on `split` (default: the held-out split of a
  pretraining run, validation for a fine-tuning run) at `checkpoint` (default: latest, a
  fine-tuning run's best); writes and returns results.json's contents."""
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
  loaded = load.load_run(workdir, config, checkpoint or None)
  log.info("evaluating %s at step %d on %s", workdir, loaded.step, split)
  began = time.perf_counter()
  with loaded.context():
    values, details = kind.evaluate(loaded, split)
  log.info("evaluated in %.1f s", time.perf_counter() - began)
  results = {"workdir": os.path.abspath(workdir), "kind": what, "split": split,
             "checkpoint_step": loaded.step, "metrics": values, **details,
             "config": config.to_dict()}
  if jax.process_index() == 0:
    path = os.path.join(workdir, "results.json")
    with open(path + ".tmp", "w") as f:
      json.dump(results, f, indent=2, default=float)
    os.replace(path + ".tmp", path)
  return results


def format_table(results: dict) -> str:
  """The results as the evaluate command prints them: the metrics (counts as integers), then
  each class's precision, recall, F1 and support; the sample generations stay in results.json."""
  rows = [("run", results["workdir"]), ("kind", results["kind"]), ("split", results["split"]),
          ("checkpoint step", str(results["checkpoint_step"]))]
  rows += [(name, f"{value:.4f}" if isinstance(value, float) else str(value))
           for name, value in results["metrics"].items()]
  per_class = results.get("per_class", {})
  if per_class:
    rows.append(("per class", "precision  recall      f1  support"))
    rows += [(f"  {name}", f"{c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:6.4f}  "
                           f"{c['support']:7d}") for name, c in per_class.items()]
  width = max(len(name) for name, _ in rows)
  return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
