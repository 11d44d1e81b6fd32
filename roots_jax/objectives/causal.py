"""Causal language modelling (GPT): predict every next token of packed documents."""

import numpy as np

from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.data.transforms import FlatMapTransform
from roots_jax.objectives.base import Objective
from roots_jax.training.losses import token_loss


class CausalLM(FlatMapTransform):
  """Next-token prediction: [bos] doc [eos] cut into windows of seq_len + 1 tokens that overlap
  by one, so every token but the first is a target exactly once.

  Batch rows: inputs, targets (inputs shifted by one within each segment), segment_ids
  (1, 2, ... per example, 0 = padding), positions (from 0 in each segment), all int32, and
  weights (float32, 1.0 on real targets).
  """

  def __init__(self, tokenizer: BaseTokenizer, seq_len: int):
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


_I32, _F32 = np.int32, np.float32

OBJECTIVE = Objective(
    name="causal", family="decoder",
    loss=token_loss(
        lambda b: ((b["inputs"],), dict(positions=b["positions"], segment_ids=b["segment_ids"])),
        "targets", "weights",
        example=lambda t, _: {"inputs": ((t,), _I32), "targets": ((t,), _I32),
                              "segment_ids": ((t,), _I32), "positions": ((t,), _I32),
                              "weights": ((t,), _F32)}),
    transform=lambda data, tokenizer, seed: CausalLM(tokenizer, data.seq_len))
