"""The loop every evaluator of a labelled split shares: one jitted forward pass per batch gives
the loss terms' sums and counts, how much was scored and the predictions, which the subclass
scores on the host."""

import jax
import numpy as np
from jax.experimental import multihost_utils

from roots_jax import metrics as metrics_lib, progress
from roots_jax.data.supervised import LabelVocab
from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.evals.base import Scorer, Split, TermSums, scored
from roots_jax.models.families import Family
from roots_jax.training import partitioning


class Labelled:
  """evaluate(params) -> {"loss", term: value, metric: value, "examples", "tokens"} over every
  row of the split; subclasses say how to predict (`predict`, traced), how to score (`metrics`)
  and what results.json adds (`details`). `labels` names a classifier's classes; `task` is the
  run's task section (a kind's decoding settings)."""
  predicts = True   # whether `metrics` needs predictions

  def __init__(self, scorer: Scorer, split: Split, *, tokenizer: BaseTokenizer,
               family: Family, labels: LabelVocab | None = None, target_len: int = 0,
               generate: bool = True, task=None):
    self.scorer, self.split, self.tokenizer, self.family = scorer, split, tokenizer, family
    self.labels, self.target_len, self.generate, self.task = labels, target_len, generate, task
    replicated = partitioning.replicated(scorer.batch_sharding.mesh)
    self.score = jax.jit(self._score, in_shardings=(scorer.param_sharding, scorer.batch_sharding),
                         out_shardings=replicated)

  def _score(self, params, batch):
    outputs = self.scorer.model.apply({"params": params}, batch)
    loss = self.scorer.loss
    predictions = self.predict(params, batch, outputs) if self.predicts else None
    return loss.terms(outputs, batch, 0.0), loss.counts(batch), scored(batch), predictions

  def predict(self, params, batch: dict, outputs):
    """The predictions of one batch (traced): class ids by default."""
    del params, batch
    return outputs.argmax(-1).astype(np.int32)

  def metrics(self, rows: list, sums: TermSums) -> dict:
    """Scores from `rows`, (the global batch's predictions, its rows) per batch, and the loss
    terms' `sums`."""
    raise NotImplementedError

  def details(self, rows: list) -> dict:
    """What results.json shows besides the metrics (per-class figures, sample generations)."""
    del rows
    return {}

  def report(self, params) -> tuple[dict, dict]:
    """(the metrics, the details) of one pass over the split."""
    folded, rows = TermSums(), []
    for batch in progress.track(self.split.batches(), "eval", unit="batch"):
      sums, counts, size, predictions = jax.device_get(
          self.score(params, self.scorer.global_batch(batch)))
      folded.add(sums, counts, size)
      if self.predicts:
        rows.append((np.asarray(predictions), _gather(batch)))
    return ({**folded.metrics(self.scorer.loss), **self.metrics(rows, folded)},
            self.details(rows))

  def __call__(self, params) -> dict:
    return self.report(params)[0]


def _gather(local_batch: dict) -> dict:
  """The global batch's rows, on every host, in global row order."""
  if jax.process_count() == 1:
    return local_batch
  return {k: multihost_utils.process_allgather(v, tiled=True) for k, v in local_batch.items()}


def flat(rows, label_key: str, weight_key: str):
  """(predictions, targets) of the real rows (or tagged tokens) of every batch."""
  keep = [(p[b[weight_key] > 0], b[label_key][b[weight_key] > 0]) for p, b in rows]
  return np.concatenate([k[0] for k in keep]), np.concatenate([k[1] for k in keep])


def per_class(rows, label_key: str, weight_key: str, names) -> dict:
  """{name: {"precision", "recall", "f1", "support"}} of each class (tag) over the real rows
  (tagged tokens) of every batch."""
  figures = metrics_lib.per_class(*flat(rows, label_key, weight_key), range(len(names)))
  return {name: {k: int(v[i]) if k == "support" else float(v[i]) for k, v in figures.items()}
          for i, name in enumerate(names)}
