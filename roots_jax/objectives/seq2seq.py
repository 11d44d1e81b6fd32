"""Supervised (input, target) pairs for encoder-decoders (T5), and the packed rows both
encoder-decoder objectives share.

Batch rows ([B, seq_len] for encoder_*, [B, target_len] for decoder_*): encoder_inputs,
encoder_segment_ids, encoder_positions, decoder_inputs (the targets shifted right within each
segment, starting with 0, T5's pad/start id), decoder_targets, decoder_segment_ids,
decoder_positions, all int32; decoder_weights (float32, 1.0 on real targets). An example's
encoder and decoder parts share a row and a segment id (grain's packer places the whole
example struct at once).
"""

import numpy as np

from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.data.transforms import FlatMapTransform, Transform
from roots_jax.errors import ConfigError
from roots_jax.objectives.base import Objective
from roots_jax.training.losses import token_loss


class PackedPairs(Transform):
  """Examples {"encoder_inputs", "decoder_targets"}, packed together; see the module docs."""

  def __init__(self, seq_len: int, target_len: int):
    self.seq_len = seq_len
    self.target_len = target_len
    self.length_struct = {"encoder_inputs": seq_len, "decoder_targets": target_len}

  def finalize(self, packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    targets = packed["decoder_targets"]
    positions = packed["decoder_targets_positions"]
    decoder_inputs = np.roll(targets, 1)
    decoder_inputs[positions == 0] = 0  # each segment starts with 0 (and padding stays 0)
    segment_ids = packed["decoder_targets_segment_ids"]
    return {
        "encoder_inputs": packed["encoder_inputs"],
        "encoder_segment_ids": packed["encoder_inputs_segment_ids"],
        "encoder_positions": packed["encoder_inputs_positions"],
        "decoder_inputs": decoder_inputs,
        "decoder_targets": targets,
        "decoder_segment_ids": segment_ids,
        "decoder_positions": positions,
        "decoder_weights": (segment_ids > 0).astype(np.float32),
    }


class Seq2Seq(PackedPairs, FlatMapTransform):
  """Supervised (input, target) pairs: each side truncated to fit with eos appended (T5's
  append_eos_after_trim); target_len 0 means seq_len."""

  def __init__(self, tokenizer: BaseTokenizer, seq_len: int, *, target_len: int):
    if seq_len < 2 or target_len == 1:
      raise ConfigError("data.seq_len and data.target_len must leave room for a token and eos; "
                        f"got {seq_len} and {target_len}")
    super().__init__(seq_len, target_len or seq_len)
    self.eos = tokenizer.eos_id

  def flat_map(self, pair: tuple[np.ndarray, np.ndarray]) -> list[dict[str, np.ndarray]]:
    inputs, targets = pair
    return [{"encoder_inputs": np.append(inputs[:self.seq_len - 1], self.eos).astype(np.int32),
             "decoder_targets": np.append(targets[:self.target_len - 1],
                                          self.eos).astype(np.int32)}]


_I32, _F32 = np.int32, np.float32

# The loss of every encoder-decoder objective (span corruption too).
LOSS = token_loss(
    lambda b: ((b["encoder_inputs"], b["decoder_inputs"]), dict(
        encoder_segment_ids=b["encoder_segment_ids"], decoder_segment_ids=b["decoder_segment_ids"],
        encoder_positions=b["encoder_positions"], decoder_positions=b["decoder_positions"])),
    "decoder_targets", "decoder_weights",
    example=lambda s, t: {"encoder_inputs": ((s,), _I32), "encoder_segment_ids": ((s,), _I32),
                          "encoder_positions": ((s,), _I32), "decoder_inputs": ((t,), _I32),
                          "decoder_targets": ((t,), _I32), "decoder_segment_ids": ((t,), _I32),
                          "decoder_positions": ((t,), _I32), "decoder_weights": ((t,), _F32)})

OBJECTIVE = Objective(
    name="seq2seq", family="encoder_decoder", loss=LOSS,
    transform=lambda data, tokenizer, seed: Seq2Seq(tokenizer, data.seq_len,
                                                    target_len=data.target_len),
    target_len=lambda data: data.target_len or data.seq_len, reads_pairs=True)
