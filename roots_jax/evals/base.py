"""What every evaluator shares: the model it scores (a Scorer), the split it reads (a Split),
the fold of loss-term sums over batches, and which way a metric is better."""

import dataclasses
import math
from typing import Any, Callable, Iterable, Sequence

import jax
from flax import linen as nn

from roots_jax.training.losses import Loss

# Metrics where lower is better; every other one is better higher.
LOWER_IS_BETTER = ("loss", "nll", "perplexity", "mse")


def is_better(metric: str, value: float, best: float | None) -> bool:
  if value is None or math.isnan(value):
    return False
  if best is None:
    return True
  return value < best if metric in LOWER_IS_BETTER else value > best


@dataclasses.dataclass(frozen=True)
class Scorer:
  """A model and its Loss, placed on a mesh: what evaluators run."""
  model: nn.Module
  loss: Loss
  param_sharding: Any                        # NamedShardings shaped like the params
  batch_sharding: jax.sharding.NamedSharding

  def global_batch(self, local: dict) -> dict:
    """This process's share of a batch -> the global, sharded batch."""
    return jax.tree.map(lambda b: jax.make_array_from_process_local_data(self.batch_sharding, b),
                        local)


@dataclasses.dataclass(frozen=True)
class Split:
  """The data an evaluator reads: a fresh pass over this process's batches of one split."""
  name: str
  batches: Callable[[], Iterable[dict]]
  examples: Sequence[dict] = ()      # the examples behind the rows, in order (labelled splits)
  max_batches: int | None = None     # read at most this many batches; None: all of them


class TermSums:
  """Loss-term sums and counts folded over batches; a term's value is sum / count."""

  def __init__(self):
    self.sums, self.counts = {}, {}

  def add(self, sums: dict, counts: dict) -> None:
    for term in sums:
      self.sums[term] = self.sums.get(term, 0.0) + float(sums[term])
      self.counts[term] = self.counts.get(term, 0.0) + float(counts[term])

  def metrics(self, loss: Loss) -> dict:
    """{"loss": the sum of the loss terms, term: value, ...}, z-losses left out."""
    values = {t: self.sums[t] / max(self.counts[t], 1.0) for t in self.sums
              if not t.endswith("z_loss")}
    return {"loss": sum(values[t] for t in loss.loss_terms if t in values), **values}
