"""Evaluation driver: scores a run's checkpoint and writes WORKDIR/results.json.

  python -m roots_jax.evaluate --workdir RUN [--split SPLIT] [--checkpoint best|latest|STEP]
      [--config FILE.py[:ARG]] [--config.KEY=VALUE ...]

The run's config.json is used, or --config's sections with the run's model and tokenizer (to
score the same model on another task's data or file); --config.KEY=VALUE overrides either.

A pretraining run gets its token-weighted perplexity and loss terms on its held-out split (score
another file with --config.data.source=files --config.data.train_files=X
--config.data.eval_files=X). A fine-tuning run gets its task's metrics on task.validation_split
(default) or --split test: accuracy, macro F1 and Matthews correlation (classification), Pearson
and Spearman (regression), token accuracy and macro F1 (token classification), perplexity and,
from greedy generations, exact match, BLEU and ROUGE-1/2/L (seq2seq).
"""

import json
import logging
import math
import os
import sys
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.experimental import multihost_utils

from roots_jax import config as config_lib
from roots_jax import decoding, metrics
from roots_jax import train as train_lib
from roots_jax.data import finetune as finetune_data
from roots_jax.data.tokenizer import BaseTokenizer, Tokenizer
from roots_jax.errors import CheckpointError, ConfigError, RootsError
from roots_jax.training import checkpoints, distributed, partitioning, pretrained

log = logging.getLogger("roots_jax")

USAGE = ("usage: python -m roots_jax.evaluate --workdir RUN [--split SPLIT] "
         "[--checkpoint best|latest|STEP] [--config FILE.py[:ARG]] [--config.SECTION.KEY=VALUE ...]")

# Metrics where lower is better; every other one is better higher.
LOWER_IS_BETTER = ("loss", "nll", "perplexity", "mse")
GENERATION_METRICS = ("exact_match", "bleu", "rouge1", "rouge2", "rougeL")
DEFAULT_METRIC = {"classification": "accuracy", "regression": "pearson",
                  "token_classification": "macro_f1", "seq2seq": "loss"}


def task_evaluator(config, parts: train_lib.Parts, tokenizer: BaseTokenizer, labels, examples, *,
                   split: str, generate: bool) -> Callable:
  """evaluate(params) -> {metric: value} over every example of `examples` (one split)."""
  task, family = config.task, config.model.family
  shard = dict(process_index=jax.process_index(), process_count=jax.process_count())
  to_global = lambda b: jax.make_array_from_process_local_data(parts.batch_sharding, b)
  replicated = partitioning.replicated(parts.batch_sharding.mesh)

  want_predictions = task.kind != "seq2seq" or generate

  def score(params, batch):
    """One forward pass: the loss terms' sums and counts, and the predictions (a seq2seq task's
    greedy generations, when asked for)."""
    apply = lambda b: parts.model.apply({"params": params}, b)
    outputs = apply(batch)
    if task.kind == "seq2seq":
      predictions = _greedy(parts.model, params, batch, family, task.target_len,
                            tokenizer) if generate else None
    else:
      predictions = outputs if task.kind == "regression" else outputs.argmax(-1).astype(np.int32)
    return parts.task.terms(outputs, batch, 0.0), parts.task.counts(batch), predictions

  score = jax.jit(score, in_shardings=(parts.state_sharding.params, parts.batch_sharding),
                  out_shardings=replicated)

  def evaluate(params) -> dict:
    sums, counts, rows = {}, {}, []
    for batch in finetune_data.make_dataset(config, tokenizer, labels, examples, family=family,
                                            split=split, **shard):
      batch_sums, batch_counts, predictions = jax.device_get(
          score(params, jax.tree.map(to_global, batch)))
      for term in batch_sums:
        sums[term] = sums.get(term, 0.0) + float(batch_sums[term])
        counts[term] = counts.get(term, 0.0) + float(batch_counts[term])
      if want_predictions:
        rows.append((np.asarray(predictions), _gather(batch)))
    values = {t: sums[t] / max(counts[t], 1.0) for t in sums if not t.endswith("z_loss")}
    result = {"loss": sum(values[t] for t in parts.task.loss_terms if t in values), **values}
    if task.kind == "seq2seq":
      result["perplexity"] = metrics.perplexity(sums["nll"], max(counts["nll"], 1.0))
      if generate:
        result.update(_generation_metrics(rows, examples, tokenizer, shard["process_count"]))
    elif task.kind == "regression":
      predictions, targets = _flat(rows, "label", "label_weight")
      result.update(pearson=metrics.pearson(predictions, targets),
                    spearman=metrics.spearman(predictions, targets))
    else:
      label, weight = ("tags", "tag_weights") if task.kind == "token_classification" else (
          "label", "label_weight")
      predictions, targets = _flat(rows, label, weight)
      result.update(accuracy=metrics.accuracy(predictions, targets),
                    macro_f1=metrics.macro_f1(predictions, targets))
      if task.kind == "classification":
        result["mcc"] = metrics.matthews_corrcoef(predictions, targets)
    return result

  return evaluate


def _greedy(model, params, batch: dict, family: str, max_new_tokens: int,
            tokenizer: BaseTokenizer) -> jax.Array:
  """Greedy generations [B, N] from a seq2seq batch (roots_jax.data.finetune's layout): a
  decoder's prompt, inputs[:prompt_len], is moved to the right end of a row of the input width."""
  if family == "decoder":
    width = batch["inputs"].shape[1] - max_new_tokens
    source = jnp.arange(width)[None] - (width - batch["prompt_len"])[:, None]  # [B, W]
    prompts = {"inputs": jnp.take_along_axis(batch["inputs"], jnp.maximum(source, 0), axis=1),
               "segment_ids": (source >= 0).astype(jnp.int32)}
  else:
    prompts = {k: v for k, v in batch.items() if k.startswith("encoder_")}
  config = decoding.GenerationConfig(max_new_tokens=max_new_tokens)
  return decoding.generate(model, params, prompts, family=family, config=config,
                           eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id,
                           method=model.lm_logits).tokens[:, 0]


def _gather(local_batch: dict) -> dict:
  """The global batch's rows, on every host, in global row order."""
  if jax.process_count() == 1:
    return local_batch
  return {k: multihost_utils.process_allgather(v, tiled=True) for k, v in local_batch.items()}


def _flat(rows, label_key: str, weight_key: str):
  """(predictions, targets) of the real rows (or tagged tokens) of every batch."""
  keep = [(p[b[weight_key] > 0], b[label_key][b[weight_key] > 0]) for p, b in rows]
  return np.concatenate([k[0] for k in keep]), np.concatenate([k[1] for k in keep])


def _generation_metrics(rows, examples, tokenizer: BaseTokenizer, process_count: int) -> dict:
  """Decodes each generation up to eos and scores it against its example's target text.
  Batch b's global row r is row j = r % local of process p = r // local, which holds shard
  example b * local + j of examples[p::process_count]."""
  predictions, references = [], []
  for b, (generated, batch) in enumerate(rows):
    local = len(generated) // process_count
    for r, ids in enumerate(generated):
      p, j = divmod(r, local)
      index = p + process_count * (b * local + j)
      if index >= len(examples) or index % process_count != p:
        continue
      ids = list(ids)
      ids = ids[:ids.index(tokenizer.eos_id)] if tokenizer.eos_id in ids else ids
      # Generated pad is no text; it is 0 but for GPT-2, whose 0 is "!" and whose pad is eos.
      predictions.append(tokenizer.decode([i for i in ids if i != tokenizer.pad_id]))
      references.append(examples[index]["target"])
  bleu = metrics.corpus_bleu(predictions, references)["bleu"]
  return {"exact_match": metrics.exact_match(predictions, references), "bleu": bleu,
          **metrics.rouge(predictions, references)}


def is_better(metric: str, value: float, best: float | None) -> bool:
  if value is None or math.isnan(value):
    return False
  if best is None:
    return True
  return value < best if metric in LOWER_IS_BETTER else value > best


def evaluate_run(workdir: str, overrides=(), *, split: str = "", checkpoint: str = "",
                 config_spec: str = "") -> dict:
  """Scores a pretraining or fine-tuning run; writes and returns results.json's contents."""
  from roots_jax import finetune as finetune_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.read_config(os.path.join(workdir, "config.json"))
  if config_spec:
    run_config, config = config, config_lib.load_config(config_spec)
    if ("task" in config) != ("task" in run_config):
      kind = "fine-tuning" if "task" in config else "pretraining"
      raise ConfigError(f"--config {config_spec} is a {kind} config, which does not fit the run "
                        f"{workdir}")
    with config.unlocked():
      config.model, config.tokenizer = run_config.model, run_config.tokenizer
  with config.unlocked():
    for item in overrides:
      config_lib.apply_override(config, item)
  distributed.maybe_initialize(config.distributed)
  config_lib.validate(config, jax.device_count())
  mesh = partitioning.make_mesh(config)
  with jax.set_mesh(mesh), nn.logical_axis_rules(config_lib.logical_rules(config)):
    if "task" in config:
      setup = finetune_lib.setup(config, workdir, mesh)
      split = split or "validation"
      if split not in ("train", "validation", "test"):
        raise ConfigError(f"--split {split!r}: a fine-tuning run is scored on train, validation or "
                          "test (task.*_split / task.*_files say where they come from)")
      manager, step = find_checkpoint(workdir, checkpoint or "best", finetuning=True)
      params = checkpoints.restore_params(manager, step, abstract_params(setup.parts))
      examples = setup.examples(split)
      values = task_evaluator(config, setup.parts, setup.tokenizer, setup.labels, examples,
                              split=split, generate=True)(params)
      kind = config.task.kind
    else:
      if split not in ("", "eval"):
        raise ConfigError(f"a pretraining run is scored on its held-out split (eval), not {split!r}; "
                          "score a file with --config.data.eval_files")
      split, kind = config.data.eval_files or "eval", "pretraining"
      tokenizer = Tokenizer.load(pretrained.tokenizer_path(workdir, config))
      parts = train_lib.build(config, mesh)
      manager, step = find_checkpoint(workdir, checkpoint or "latest", finetuning=False)
      params = checkpoints.restore_params(manager, step, abstract_params(parts))
      shard = dict(process_index=jax.process_index(), process_count=jax.process_count())
      values = train_lib.evaluate_split(config, tokenizer, shard, parts, params, max_batches=None)
  results = {"workdir": os.path.abspath(workdir), "kind": kind, "split": split,
             "checkpoint_step": step, "metrics": values, "config": config.to_dict()}
  if jax.process_index() == 0:
    path = os.path.join(workdir, "results.json")
    with open(path + ".tmp", "w") as f:
      json.dump(results, f, indent=2, default=float)
    os.replace(path + ".tmp", path)
  return results


def abstract_params(parts: train_lib.Parts):
  return checkpoints.abstract_like(parts.abstract_state.params, parts.state_sharding.params)


def find_checkpoint(workdir: str, which: str, *, finetuning: bool):
  """(manager, step) of `which`: best (a fine-tuning run's best/ checkpoint, else the newest),
  latest (the newest) or a step number in checkpoints/. Also used by roots_jax.api."""
  best = checkpoints.make_manager(workdir, keep=1, subdir="best", items=("state",),
                                  read_only=True) if finetuning else None
  latest = checkpoints.make_manager(workdir, keep=1, read_only=True)
  if which == "best" and best is not None and best.latest_step() is not None:
    return best, best.latest_step()
  if which in ("best", "latest"):
    if latest.latest_step() is None:
      raise CheckpointError(f"{workdir} has no checkpoint to evaluate")
    return latest, latest.latest_step()
  if not which.isdigit() or int(which) not in latest.all_steps():
    raise CheckpointError(f"--checkpoint {which!r}: use best, latest or one of the steps "
                          f"{sorted(latest.all_steps())} in {workdir}/checkpoints")
  return latest, int(which)


def format_table(results: dict) -> str:
  rows = [("run", results["workdir"]), ("kind", results["kind"]), ("split", results["split"]),
          ("checkpoint step", str(results["checkpoint_step"]))]
  rows += [(name, f"{value:.4f}") for name, value in results["metrics"].items()]
  width = max(len(name) for name, _ in rows)
  return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv=None) -> int:
  train_lib.log_to_console()
  try:
    values, overrides = train_lib.parse_args(
        sys.argv[1:] if argv is None else argv,
        names=("workdir", "split", "checkpoint", "config"), required=("workdir",), usage=USAGE)
    if not os.path.isfile(os.path.join(values["workdir"], "config.json")):
      raise ConfigError(f"{values['workdir']} is not a roots_jax run (no config.json)")
    results = evaluate_run(values["workdir"], overrides, split=values.get("split", ""),
                           checkpoint=values.get("checkpoint", ""),
                           config_spec=values.get("config", ""))
  except RootsError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(format_table(results))
  return 0


if __name__ == "__main__":
  sys.exit(main())
