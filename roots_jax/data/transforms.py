"""How a pretraining objective turns tokenized documents into the rows of a batch, as grain
datasets (the objectives themselves are in roots_jax.objectives).

A transform has two steps around the packer. `examples` turns the stream of documents' token
ids into a stream of examples: dicts of int32 features no longer than `length_struct`, as
grain's first-fit packer requires. `rows` packs them (or, for BERT, pads one per row) and
`finalize` turns a packed row (the features plus `<feature>_segment_ids` and
`<feature>_positions` from the packer) into the row the model and the loss read.

Transforms whose examples depend only on the document are grain flat maps (causal, seq2seq).
Those that draw random numbers or remember earlier documents (MLM+NSP's pool of negative
segments, the running document count that seeds masks) carry a small JSON state from document
to document through `ExampleStream`, which checkpoints it with the stream position, so a
restored iterator continues exactly.
"""

import zlib
from typing import Any

import grain
import numpy as np


class Transform:
  """Base of the transforms; subclasses set `length_struct` and implement the steps."""

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


class FlatMapTransform(Transform, grain.experimental.FlatMapTransform):
  """A transform whose examples are a pure function of one document: `flat_map`."""

  # grain checks fan-out only for MapDataset flat maps; a long document has many windows.
  max_fan_out = 1 << 30

  def examples(self, ds: grain.IterDataset) -> grain.IterDataset:
    return grain.experimental.FlatMapIterDataset(ds, self)


class StreamTransform(Transform):
  """A transform that carries state across documents: `generate(tokens, carry)` returns the
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
  """FlatMapIterDataset for a StreamTransform: the state is the parent's position before the
  current document, the carry at that point and the examples already taken from it; a restore
  regenerates that document's examples and skips those."""

  def __init__(self, parent: grain.IterDataset, transform: StreamTransform):
    super().__init__(parent)
    self.transform = transform

  def __iter__(self):
    return _ExampleStreamIterator(self._parent.__iter__(), self.transform)

  def __str__(self) -> str:
    return f"ExampleStream({type(self.transform).__name__})"


class _ExampleStreamIterator(grain.DatasetIterator):

  def __init__(self, parent: grain.DatasetIterator, transform: StreamTransform):
    super().__init__(parent)
    self._transform = transform
    self._document_state = parent.get_state()
    self._carry = self._next_carry = transform.initial_carry()
    self._buffer, self._index = [], 0

  def __next__(self) -> dict[str, np.ndarray]:
    while self._index >= len(self._buffer):
      self._document_state, self._carry = self._parent.get_state(), self._next_carry
      self._buffer, self._next_carry = self._transform.generate(next(self._parent), self._carry)
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
      self._buffer, self._next_carry = self._transform.generate(next(self._parent), self._carry)
