"""Fine-tuning rows: one labelled example per padded row, and the grain datasets that batch them.

Each task kind (roots_jax.tasks) lays out its rows with the helpers here and its model family's
text layout (roots_jax.models.families). All int32 unless noted; padding is 0 (id, segment id and
position alike). A text is framed by the family's special tokens: a tokenizer without [SEP]
(GPT-2's, T5's) separates with eos, as HF's T5 pairs `a </s> b </s>`; one without [CLS] starts
with bos where it has one (GPT-2's <|endoftext|>), else with nothing; one without bos (BERT's,
T5's) has no [BOS].
"""

import math
from typing import Any, Callable, Sequence

import grain
import numpy as np

from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.errors import ConfigError, DataError

def zero_row(spec: dict[str, tuple[tuple[int, ...], type]]) -> dict[str, np.ndarray]:
  """An all-zero row (zero weights, segment 0): eval padding and the model's init batch."""
  return {k: np.zeros(shape, dtype) for k, (shape, dtype) in spec.items()}


def padded(values: Sequence[float], length: int, dtype: type) -> np.ndarray:
  out = np.zeros(length, dtype)
  out[:len(values)] = values
  return out


def truncate_longest_first(a: list[int], b: list[int], budget: int) -> tuple[list[int], list[int]]:
  """HF's longest_first truncation: the longer side (b on a tie) loses its last token until
  the pair fits in `budget` tokens, in closed form."""
  if len(a) + len(b) <= budget:
    return a, b
  shorter = min(len(a), len(b))
  if budget >= 2 * shorter:  # only the longer side is cut
    return (a[:budget - shorter], b) if len(a) > len(b) else (a, b[:budget - shorter])
  return a[:budget - budget // 2], b[:budget // 2]


def specials(tokenizer: BaseTokenizer) -> dict[str, list[int]]:
  """Special ids by role as lists, so a tokenizer without bos (T5's) simply has none; [CLS]
  and [SEP] fall back as the module docstring says; "" is no token."""
  def piece(name: str, fallback: list[int]) -> list[int]:
    return [tokenizer.piece_id(name)] if tokenizer.has_piece(name) else fallback

  bos = [tokenizer.bos_id] if tokenizer.bos_id >= 0 else []
  eos = [tokenizer.eos_id]
  return {"bos": bos, "eos": eos, "cls": piece("[CLS]", bos), "sep": piece("[SEP]", eos), "": []}


def make_dataset(examples: Sequence[dict[str, Any]], encode: Callable[[dict], dict], zero: dict,
                 *, batch_size: int, seed: int, split: str, process_index: int = 0,
                 process_count: int = 1, batched: bool = True) -> grain.IterDataset:
  """This process's batches ([batch_size // process_count, ...] rows, `encode`d) of `examples`.

  "train": this process's share (every process_count-th example), reshuffled every epoch
  (grain's shuffle reseeds with seed + epoch), repeated forever; the iterator checkpoints as
  a position, so a restore resumes exactly. Other splits: one pass in order, the last batch
  filled with `zero` rows and as many all-zero batches added as make every process yield
  ceil(len(examples) / batch_size) batches (collective steps need the same count).
  `batched`=False leaves the train rows unbatched (for a packer to batch).
  """
  if batch_size % process_count:
    raise ConfigError(f"train.batch_size ({batch_size}) must be divisible by the number of "
                      f"processes ({process_count})")
  local_batch = batch_size // process_count
  ds = grain.MapDataset.source(examples)[process_index::process_count]
  if split == "train":
    if not len(ds):
      raise DataError(f"the train split has {len(examples)} examples, fewer than the "
                      f"{process_count} processes; give more data")
    ds = ds.shuffle(seed=seed).repeat().map(encode).to_iter_dataset()
    return ds.batch(local_batch, drop_remainder=True) if batched else ds
  num_rows = math.ceil(len(examples) / batch_size) * local_batch
  ds = ds.map(encode)
  if num_rows > len(ds):
    ds = grain.MapDataset.concatenate(
        [ds, grain.MapDataset.source([zero]).repeat(num_rows - len(ds))])
  return ds.batch(local_batch).to_iter_dataset()
