"""Perplexity and every loss term of a pretraining objective over its held-out split."""

import jax
import numpy as np

from roots_jax import progress
from roots_jax.errors import ConfigError
from roots_jax.evals.base import Scorer, Split, TermSums, scored
from roots_jax.training import distributed, steps


class Perplexity:
  """evaluate(params) -> {"loss", "perplexity", term: value, "examples", "tokens"}: token-weighted
  over the split's first `max_batches` batches (None: all of them), and how many sequences and
  tokens that was. Every process runs the same number of
  steps: a process whose share runs out feeds zero-weight batches."""

  def __init__(self, scorer: Scorer, split: Split):
    self.scorer, self.split = scorer, split
    eval_step = steps.make_eval_step(scorer.model, scorer.loss)
    self.step = jax.jit(lambda params, batch: (*eval_step(params, batch), scored(batch)),
                        in_shardings=(scorer.param_sharding, scorer.batch_sharding))

  def __call__(self, params) -> dict:
    it = progress.track(self.split.batches(), "eval", total=self.split.max_batches, unit="batch")
    max_batches, folded, filler, taken = self.split.max_batches, TermSums(), None, 0
    while max_batches is None or taken < max_batches:
      batch = next(it, None)
      if max_batches is None and not distributed.any_process(batch is not None):
        break
      if batch is None:
        if filler is None:
          raise ConfigError("the eval split is empty: give data.eval_files or raise "
                            "data.eval_fraction")
        batch = filler
      filler = jax.tree.map(np.zeros_like, batch)
      folded.add(*jax.device_get(self.step(params, self.scorer.global_batch(batch))))
      taken += 1
    it.close()
    if not folded.sums:
      raise ConfigError("the eval split is empty: give data.eval_files or raise data.eval_fraction")
    result = folded.metrics(self.scorer.loss)
    nll = result[self.scorer.loss.nll_term]
    return {"loss": result.pop("loss"), "perplexity": float(np.exp(min(nll, 100.0))), **result}

  def report(self, params) -> tuple[dict, dict]:
    """(the metrics, no details: see evals.labelled.Labelled.report)."""
    return self(params), {}
