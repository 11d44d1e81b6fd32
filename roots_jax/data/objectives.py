"""Pretraining objectives: how tokenized documents become the rows of a batch.

An objective has two steps around the packer. `examples` turns the stream of documents' token
ids into a stream of examples: dicts of int32 features no longer than `length_struct`, as
grain's first-fit packer requires. `rows` packs them (or, for BERT, pads one per row) and
`finalize` turns a packed row (the features plus `<feature>_segment_ids` and
`<feature>_positions` from the packer) into the row the model and the loss read.

Objectives whose examples depend only on the document are grain flat maps (causal,
seq2seq). Those that draw random numbers or remember earlier documents (MLM+NSP's pool of
negative segments, the running document count that seeds masks) carry a small JSON state from
document to document through `ExampleStream`, which checkpoints it with the stream position,
so a restored iterator continues exactly. The BERT and T5 objectives live in `mlm` and
`encoder_decoder`; `make_objective` picks one by data.objective.
"""

import zlib
from typing import Any

import grain
import ml_collections
import numpy as np

from roots_jax.data.tokenizer import BaseTokenizer
from roots_jax.errors import ConfigError


class Objective:
  """Base of the objectives; subclasses set `length_struct` and implement the steps."""

  length_struct: dict[str, int]

  def examples(self, ds: grain.IterDataset) -> grain.IterDataset:
    """Token ids of documents -> examples."""
    raise NotImplementedError

  def rows(self, ds: grain.IterDataset, *, num_packing_bins: int, seed: int,
           shuffle_bins: bool) -> grain.IterDataset:
    """Examples -> finished rows: first-fit packing of all features of an example together
    (same row, same segment id in every feature), then `finalize`."""
    ds = grain.experimental.FirstFitPackIterDataset(
        ds, length_struct=self.length_struct, num_packing_bins=num_packing_bins, seed=seed,
        shuffle_bins=shuffle_bins)
    return ds.map(self.finalize)

  def finalize(self, packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    raise NotImplementedError


class FlatMapObjective(Objective, grain.experimental.FlatMapTransform):
  """An objective whose examples are a pure function of one document: `flat_map`."""

  # grain checks fan-out only for MapDataset flat maps; a long document has many windows.
  max_fan_out = 1 << 30

  def examples(self, ds: grain.IterDataset) -> grain.IterDataset:
    return grain.experimental.FlatMapIterDataset(ds, self)


class StreamObjective(Objective):
  """An objective that carries state across documents: `generate(tokens, carry)` returns the
  document's examples and the next carry. The carry is a JSON-able dict that is never
  mutated (it is part of the iterator state); `carry["count"]` counts documents."""

  def __init__(self, seed: int):
    self.seed = seed

  def initial_carry(self) -> dict[str, Any]:
    return {"count": 0}

  def rng(self, tokens: np.ndarray, carry: dict[str, Any]) -> np.random.Generator:
    """The document's random numbers: from the seed, the running document count (new masks
    every epoch) and the tokens (processes and workers, which count alike, differ)."""
    return np.random.default_rng([self.seed, carry["count"], zlib.crc32(tokens.tobytes())])

  def generate(self, tokens: np.ndarray,
               carry: dict[str, Any]) -> tuple[list[dict[str, np.ndarray]], dict[str, Any]]:
    raise NotImplementedError

  def examples(self, ds: grain.IterDataset) -> grain.IterDataset:
    return ExampleStream(ds, self)


class ExampleStream(grain.IterDataset):
  """FlatMapIterDataset for a StreamObjective: the state is the parent's position before the
  current document, the carry at that point and the examples already taken from it; a restore
  regenerates that document's examples and skips those."""

  def __init__(self, parent: grain.IterDataset, objective: StreamObjective):
    super().__init__(parent)
    self.objective = objective

  def __iter__(self):
    return _ExampleStreamIterator(self._parent.__iter__(), self.objective)

  def __str__(self) -> str:
    return f"ExampleStream({type(self.objective).__name__})"


class _ExampleStreamIterator(grain.DatasetIterator):

  def __init__(self, parent: grain.DatasetIterator, objective: StreamObjective):
    super().__init__(parent)
    self._objective = objective
    self._document_state = parent.get_state()
    self._carry = self._next_carry = objective.initial_carry()
    self._buffer, self._index = [], 0

  def __next__(self) -> dict[str, np.ndarray]:
    while self._index >= len(self._buffer):
      self._document_state, self._carry = self._parent.get_state(), self._next_carry
      self._buffer, self._next_carry = self._objective.generate(next(self._parent), self._carry)
      self._index = 0
    self._index += 1
    return self._buffer[self._index - 1]

  def get_state(self) -> dict[str, Any]:
    return dict(parent=self._document_state, carry=self._carry, index=self._index)

  def set_state(self, state: dict[str, Any]) -> None:
    self._document_state, self._carry, self._index = state["parent"], state["carry"], state["index"]
    self._parent.set_state(self._document_state)
    self._buffer, self._next_carry = [], self._carry
    if self._index:  # Inside a document: make its examples again.
      self._buffer, self._next_carry = self._objective.generate(next(self._parent), self._carry)


class CausalLM(FlatMapObjective):
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


OBJECTIVES = ("causal", "mlm_nsp", "span_corruption", "seq2seq")


def target_len(data: ml_collections.ConfigDict) -> int:
  """The decoder length of the encoder-decoder objectives' batches: data.target_len, or when
  0 the derived one (span corruption: T5's random_spans_helper, 114 for seq_len 512; seq2seq:
  seq_len); 0 for the other objectives, which have no decoder features."""
  from roots_jax.data import encoder_decoder  # pylint: disable=g-import-not-at-top
  if data.objective == "span_corruption":
    return data.target_len or encoder_decoder.random_spans_helper(
        data.seq_len, data.noise_density, data.mean_noise_span_length)[1]
  if data.objective == "seq2seq":
    return data.target_len or data.seq_len
  return 0


def make_objective(data: ml_collections.ConfigDict, tokenizer: BaseTokenizer, *,
                   seed: int = 0) -> Objective:
  """The objective data.objective, configured by the `data` section; `seed` (the run's)
  seeds the random masks and pairings."""
  # The sibling modules build on the base classes above, so they are imported here.
  from roots_jax.data import encoder_decoder, mlm  # pylint: disable=g-import-not-at-top
  if data.objective == "causal":
    return CausalLM(tokenizer, data.seq_len)
  if data.objective == "mlm_nsp":
    return mlm.MaskedLM(tokenizer, data.seq_len, mask_rate=data.mask_rate,
                        whole_word_masking=data.whole_word_masking,
                        next_sentence_prediction=data.next_sentence_prediction, seed=seed)
  if data.objective == "span_corruption":
    return encoder_decoder.SpanCorruption(
        tokenizer, data.seq_len, target_len=data.target_len, noise_density=data.noise_density,
        mean_noise_span_length=data.mean_noise_span_length, seed=seed)
  if data.objective == "seq2seq":
    return encoder_decoder.Seq2Seq(tokenizer, data.seq_len, target_len=data.target_len)
  raise ConfigError(f"unknown data.objective {data.objective!r}; choose one of "
                    f"{', '.join(OBJECTIVES)}")
