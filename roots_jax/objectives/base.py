"""What a pretraining objective is: the rows it makes of documents and the loss it trains."""

import dataclasses
from typing import Callable

import ml_collections

from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.data.transforms import Transform
from roots_jax.training.losses import Loss


@dataclasses.dataclass(frozen=True)
class Objective:
  """A data.objective: registered by name in roots_jax.objectives."""
  name: str
  family: str       # the model.family whose model it trains
  loss: Loss        # the model call, loss terms and counts; `example` is its batch row
  # (data section, tokenizer, seed) -> the Transform that makes its rows; the seed is the run's
  # and draws random masks and pairings.
  transform: Callable[[ml_collections.ConfigDict, BaseTokenizer, int], Transform]
  # data section -> the decoder length of its rows (0: it has no decoder features).
  target_len: Callable[[ml_collections.ConfigDict], int] = lambda data: 0
  reads_pairs: bool = False  # its documents are (input, target) pairs (data.input_field, ...)
  # How many sentinels <extra_id_N> a tokenizer trained for it reserves on top of its vocabulary.
  sentinels: int = 0
