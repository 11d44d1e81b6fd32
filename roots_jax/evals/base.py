"""What every evaluator shares: the model it scores (a Scorer), the split it reads (a Split),
the fold of loss-term sums over batches with how much was scored, and which way a metric is
better."""

import dataclasses
import functools
import math
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
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


def scored(batch: dict) -> dict:
  """How much of a batch is scored (traced): "examples", the rows holding a real token (padding
  and filler rows hold none), and "tokens", the real tokens (segment id > 0) the model reads in
  them (an encoder-decoder's input and output both)."""
  real = [batch[k] > 0 for k in batch if k.endswith("segment_ids")]  # each [B, T]
  rows = functools.reduce(jnp.logical_or, [r.any(-1) for r in real])  # [B]
  return {"examples": rows.sum(), "tokens": sum(r.sum() for r in real)}


class TermSums:
  """Loss-term sums and counts folded over batches; a term's value is sum / count. Also counts
  the examples and tokens scored (`scored`), so every result says how much it rests on."""

  def __init__(self):
    self.sums, self.counts = {}, {}
    self.examples = self.tokens = 0

  def add(self, sums: dict, counts: dict, size: dict) -> None:
    for term in sums:
      self.sums[term] = self.sums.get(term, 0.0) + float(sums[term])
      self.counts[term] = self.counts.get(term, 0.0) + float(counts[term])
    self.examples += int(size["examples"])
    self.tokens += int(size["tokens"])

  def metrics(self, loss: Loss) -> dict:
    """{"loss": the sum of the loss terms, term: value, ..., "examples", "tokens"}, z-losses
    left out."""
    values = {t: self.sums[t] / max(self.counts[t], 1.0) for t in self.sums
              if not t.endswith("z_loss")}
    return {"loss": sum(values[t] for t in loss.loss_terms if t in values), **values,
            "examples": self.examples, "tokens": self.tokens}
