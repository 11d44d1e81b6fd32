"""Pretraining objectives: how a tokenized document becomes rows of a packed batch.

An objective has two steps around the packer. `flat_map` (a grain FlatMap) turns one
document's token ids into examples: dicts of 1-D int32 features no longer than
`length_struct`, as grain's first-fit packer requires. `finalize` turns a packed row (the
features plus `<feature>_segment_ids` and `<feature>_positions` from the packer) into the
row the model and the loss read. MLM+NSP and span corruption plug in as further classes
with their own features; `make_objective` picks one by name.
"""

import numpy as np
import grain

from roots_jax.data.tokenizer import Tokenizer
from roots_jax.errors import ConfigError


class Objective(grain.experimental.FlatMapTransform):
  """Base of the objectives; subclasses set `length_struct` and implement both steps."""

  # grain checks fan-out only for MapDataset flat maps; a long document has many windows.
  max_fan_out = 1 << 30
  length_struct: dict[str, int]

  def finalize(self, packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    raise NotImplementedError


class CausalLM(Objective):
  """Next-token prediction: [bos] doc [eos] cut into windows of seq_len + 1 tokens that overlap
  by one, so every token but the first is a target exactly once.

  Batch rows: inputs, targets (inputs shifted by one within each segment), segment_ids
  (1, 2, ... per example, 0 = padding), positions (from 0 in each segment), all int32, and
  weights (float32, 1.0 on real targets).
  """

  def __init__(self, tokenizer: Tokenizer, seq_len: int):
    self.bos = [tokenizer.bos_id] if tokenizer.bos_id >= 0 else []
    self.eos = tokenizer.eos_id
    self.seq_len = seq_len
    self.length_struct = {"inputs": seq_len, "targets": seq_len}

  def flat_map(self, tokens: np.ndarray) -> list[dict[str, np.ndarray]]:
    ids = np.concatenate([self.bos, tokens, [self.eos]]).astype(np.int32)
    windows = (ids[i:i + self.seq_len + 1] for i in range(0, len(ids) - 1, self.seq_len))
    return [{"inputs": w[:-1], "targets": w[1:]} for w in windows]

  def finalize(self, packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    segment_ids = packed["inputs_segment_ids"]
    return {
        "inputs": packed["inputs"],
        "targets": packed["targets"],
        "segment_ids": segment_ids,
        "positions": packed["inputs_positions"],
        "weights": (segment_ids > 0).astype(np.float32),
    }


OBJECTIVES = {"causal": CausalLM}


def make_objective(name: str, tokenizer: Tokenizer, seq_len: int) -> Objective:
  if name not in OBJECTIVES:
    raise ConfigError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
  return OBJECTIVES[name](tokenizer, seq_len)
