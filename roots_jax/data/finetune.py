"""Fine-tuning rows: one labelled example per padded row, laid out for each model family, and
the grain datasets that batch them.

`example_spec` gives the layout; `encode` fills it. L = task.max_len, T = task.target_len; all
int32 unless noted; padding is 0 (id, segment id and position alike). a and b are the two
texts, tokenized, a pair truncated longest-first (HF's convention: the longer side loses its
last token until the pair fits). A tokenizer without [SEP] (GPT-2's, T5's) separates with eos,
as HF's T5 pairs `a </s> b </s>`; one without [CLS] starts with bos where it has one (GPT-2's
<|endoftext|>), else with nothing; one without bos (BERT's, T5's) has no [BOS].

classification / regression: label [] (float32 for regression), label_weight [] float32 (1.0;
0.0 on padding rows), and
  encoder: inputs = [CLS] a [SEP] (b [SEP]), token_types (1 on b [SEP]), segment_ids,
    positions, all [L] (BERT's input; the head reads [CLS]).
  decoder: inputs = [BOS] a ([SEP] b) [EOS], segment_ids, positions [L] (the head reads the
    last real token, the eos).
  encoder_decoder: encoder_inputs = a ([SEP] b) [EOS], encoder_segment_ids,
    encoder_positions [L]; decoder_inputs = encoder_inputs shifted right with start id 0,
    decoder_segment_ids, decoder_positions [L].
token_classification: the same inputs without label keys (encoder_decoder: the encoder's only),
  words tokenized one by one (each after the first as " " + word, as in running text); tags
  [L] = the word's tag id on its first piece, tag_weights [L] float32 1.0 there, 0.0 on other
  pieces, specials and padding. Words that do not fit are dropped.
seq2seq:
  encoder_decoder: the row of encoder_decoder.Seq2Seq: encoder_inputs = input[:L-1] [EOS] [L];
    decoder_targets = target[:T-1] [EOS], decoder_inputs (shifted right, start id 0),
    decoder_weights (float32) [T]; segment ids and positions of both.
  decoder: inputs = [BOS] input[:L-2] [SEP] target[:T-1] [EOS] [L+T]; targets = inputs shifted
    left; weights float32 1.0 where the target is a target token or the eos (loss on the
    target only); segment_ids, positions [L+T]; prompt_len [] = len([BOS] input [SEP]).
"""

import functools
import math
from typing import Any, Sequence

import grain
import ml_collections
import numpy as np

from roots_jax.data.supervised import LabelVocab
from roots_jax.data.tokenizer import BaseTokenizer
from roots_jax.errors import ConfigError, DataError

FAMILIES = ("encoder", "decoder", "encoder_decoder")
KINDS = ("classification", "regression", "token_classification", "seq2seq")
Spec = dict[str, tuple[tuple[int, ...], type]]


def example_spec(family: str, kind: str, max_len: int, target_len: int) -> Spec:
  """{key: (shape without the batch dimension, dtype)} of a row; see the module docstring."""
  if family not in FAMILIES or kind not in KINDS:
    raise ValueError(f"unknown model family {family!r} or task kind {kind!r}")
  i32, f32 = np.int32, np.float32
  if kind == "seq2seq":
    if family == "encoder":
      raise ConfigError("task.kind=seq2seq generates text: it needs a decoder or "
                        "encoder_decoder model, not an encoder (BERT)")
    if family == "decoder":
      n = max_len + target_len
      return {"inputs": ((n,), i32), "targets": ((n,), i32), "weights": ((n,), f32),
              "segment_ids": ((n,), i32), "positions": ((n,), i32), "prompt_len": ((), i32)}
    return {**_sequence_spec("encoder_", max_len), **_sequence_spec("decoder_", target_len),
            "decoder_targets": ((target_len,), i32), "decoder_weights": ((target_len,), f32)}
  prefix = "encoder_" if family == "encoder_decoder" else ""
  spec = _sequence_spec(prefix, max_len)
  if family == "encoder":
    spec["token_types"] = ((max_len,), i32)
  if kind == "token_classification":
    return {**spec, "tags": ((max_len,), i32), "tag_weights": ((max_len,), f32)}
  if family == "encoder_decoder":
    spec.update(_sequence_spec("decoder_", max_len))
  return {**spec, "label": ((), f32 if kind == "regression" else i32), "label_weight": ((), f32)}


def _sequence_spec(prefix: str, length: int) -> Spec:
  return {f"{prefix}{k}": ((length,), np.int32) for k in ("inputs", "segment_ids", "positions")}


def zero_row(spec: Spec) -> dict[str, np.ndarray]:
  """An all-zero row (zero weights, segment 0): eval padding and the model's init batch."""
  return {k: np.zeros(shape, dtype) for k, (shape, dtype) in spec.items()}


def _sequence(ids: Sequence[int], length: int, prefix: str = "") -> dict[str, np.ndarray]:
  """`ids` padded to `length`, with segment ids (1 real, 0 padding) and positions."""
  n = len(ids)
  inputs = np.zeros(length, np.int32)
  inputs[:n] = ids
  real = np.arange(length) < n
  return {f"{prefix}inputs": inputs, f"{prefix}segment_ids": real.astype(np.int32),
          f"{prefix}positions": np.where(real, np.arange(length), 0).astype(np.int32)}


def _padded(values: Sequence[float], length: int, dtype: type) -> np.ndarray:
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


def _specials(tokenizer: BaseTokenizer) -> dict[str, list[int]]:
  """Special ids as lists, so a tokenizer without bos (T5's) simply has none; [CLS] and [SEP]
  fall back as the module docstring says."""
  def piece(name: str, fallback: list[int]) -> list[int]:
    return [tokenizer.piece_id(name)] if tokenizer.has_piece(name) else fallback

  bos = [tokenizer.bos_id] if tokenizer.bos_id >= 0 else []
  eos = [tokenizer.eos_id]
  return {"bos": bos, "eos": eos, "cls": piece("[CLS]", bos), "sep": piece("[SEP]", eos)}


def _frame(family: str, sp: dict[str, list[int]]) -> tuple[list[int], list[int]]:
  """The specials before and after the text: [CLS] .. [SEP] | [BOS] .. [EOS] | .. [EOS]."""
  return {"encoder": (sp["cls"], sp["sep"]), "decoder": (sp["bos"], sp["eos"]),
          "encoder_decoder": ([], sp["eos"])}[family]


def encode(example: dict[str, Any], *, family: str, kind: str, tokenizer: BaseTokenizer,
           labels: LabelVocab | None, max_len: int, target_len: int) -> dict[str, np.ndarray]:
  """One example -> one padded row of `example_spec(family, kind, max_len, target_len)`."""
  if kind == "seq2seq" and family == "encoder":
    example_spec(family, kind, max_len, target_len)  # raises the ConfigError that says why
  sp = _specials(tokenizer)
  if kind == "seq2seq":
    return _encode_seq2seq(example, family, sp, tokenizer, max_len, target_len)
  if kind == "token_classification":
    return _encode_tags(example, family, sp, tokenizer, labels, max_len)
  a = tokenizer.encode(example["text"])
  b = tokenizer.encode(example["text_pair"]) if "text_pair" in example else None
  head, tail = _frame(family, sp)
  middle = sp["sep"] if b is not None else []
  budget = max_len - len(head) - len(tail) - len(middle)
  a, b = truncate_longest_first(a, b, budget) if b is not None else (a[:budget], [])
  ids = head + a + middle + b + tail
  if kind == "regression":
    label = np.float32(example["label"])
  else:
    label = np.int32(labels.id(example["label"]))
  row = {"label": label, "label_weight": np.float32(1.0)}
  if family == "encoder_decoder":
    row.update(_sequence(ids, max_len, "encoder_"))
    row.update(_sequence([0] + ids[:-1], max_len, "decoder_"))
    return row
  row.update(_sequence(ids, max_len))
  if family == "encoder":
    first_b = len(head) + len(a) + len(middle) if middle else len(ids)  # b [SEP]: type 1
    row["token_types"] = _padded([0] * first_b + [1] * (len(ids) - first_b), max_len, np.int32)
  return row


def _encode_tags(example: dict[str, Any], family: str, sp: dict[str, list[int]],
                 tokenizer: BaseTokenizer, labels: LabelVocab,
                 max_len: int) -> dict[str, np.ndarray]:
  head, tail = _frame(family, sp)
  budget = max_len - len(head) - len(tail)
  ids, tags, weights = list(head), [0] * len(head), [0.0] * len(head)
  for i, (word, tag) in enumerate(zip(example["words"], example["tags"])):
    pieces = tokenizer.encode(word if i == 0 else " " + word)
    if len(ids) - len(head) + len(pieces) > budget:
      break
    if pieces:  # a word without pieces (empty) has nowhere to put its tag
      ids += pieces
      tags += [labels.id(tag)] + [0] * (len(pieces) - 1)
      weights += [1.0] + [0.0] * (len(pieces) - 1)
  ids += tail
  prefix = "encoder_" if family == "encoder_decoder" else ""
  row = _sequence(ids, max_len, prefix)
  if family == "encoder":
    row["token_types"] = np.zeros(max_len, np.int32)
  row["tags"] = _padded(tags, max_len, np.int32)
  row["tag_weights"] = _padded(weights, max_len, np.float32)
  return row


def _encode_seq2seq(example: dict[str, Any], family: str, sp: dict[str, list[int]],
                    tokenizer: BaseTokenizer, max_len: int,
                    target_len: int) -> dict[str, np.ndarray]:
  source = tokenizer.encode(example["text"])
  target = tokenizer.encode(example["target"])[:target_len - 1] + sp["eos"]
  if family == "encoder_decoder":
    row = _sequence(source[:max_len - 1] + sp["eos"], max_len, "encoder_")
    row.update(_sequence([0] + target[:-1], target_len, "decoder_"))
    row["decoder_targets"] = _padded(target, target_len, np.int32)
    row["decoder_weights"] = _padded([1.0] * len(target), target_len, np.float32)
    return row
  prompt = sp["bos"] + source[:max_len - len(sp["bos"]) - 1] + sp["sep"]
  ids = prompt + target
  length = max_len + target_len
  row = _sequence(ids, length)
  row["targets"] = _padded(ids[1:], length, np.int32)
  # Position i predicts ids[i + 1]: from the [SEP] (predicting the first target token) to the
  # token before the eos (predicting the eos).
  row["weights"] = _padded([0.0] * (len(prompt) - 1) + [1.0] * len(target), length, np.float32)
  row["prompt_len"] = np.int32(len(prompt))
  return row


def _check_labels(examples: Sequence[dict[str, Any]], labels: LabelVocab, kind: str,
                  split: str) -> None:
  """Fails before the first step on a label the vocabulary lacks, naming the example."""
  for i, example in enumerate(examples):
    for raw in example["tags"] if kind == "token_classification" else [example["label"]]:
      try:
        labels.id(raw)
      except DataError as e:
        raise DataError(f"{split} example {i}: {e}") from None


def make_dataset(config: ml_collections.ConfigDict, tokenizer: BaseTokenizer,
                 labels: LabelVocab | None, examples: Sequence[dict[str, Any]], *, family: str,
                 split: str, process_index: int = 0, process_count: int = 1) -> grain.IterDataset:
  """This process's batches ([train.batch_size // process_count, ...] rows) of `examples`.

  "train": this process's share (every process_count-th example), reshuffled every epoch
  (grain's shuffle reseeds with seed + epoch), repeated forever; the iterator checkpoints as
  a position, so a restore resumes exactly. Other splits: one pass in order, the last batch
  filled with all-zero rows and as many all-zero batches added as make every process yield
  ceil(len(examples) / train.batch_size) batches (collective steps need the same count).
  """
  task, batch_size = config.task, config.train.batch_size
  if batch_size % process_count:
    raise ConfigError(f"train.batch_size ({batch_size}) must be divisible by the number of "
                      f"processes ({process_count})")
  local_batch = batch_size // process_count
  if task.kind in ("classification", "token_classification") and not (
      getattr(examples, "label_names", None)):  # TFDS ClassLabel names are known labels
    _check_labels(examples, labels, task.kind, split)
  row = functools.partial(encode, family=family, kind=task.kind, tokenizer=tokenizer,
                          labels=labels, max_len=task.max_len, target_len=task.target_len)
  ds = grain.MapDataset.source(examples)[process_index::process_count]
  if split == "train":
    if not len(ds):
      raise DataError(f"the train split has {len(examples)} examples, fewer than the "
                      f"{process_count} processes; give more data")
    ds = ds.shuffle(seed=config.seed).repeat().map(row).to_iter_dataset()
    return ds.batch(local_batch, drop_remainder=True)
  num_rows = math.ceil(len(examples) / batch_size) * local_batch
  ds = ds.map(row)
  if num_rows > len(ds):
    zero = zero_row(example_spec(family, task.kind, task.max_len, task.target_len))
    ds = grain.MapDataset.concatenate(
        [ds, grain.MapDataset.source([zero]).repeat(num_rows - len(ds))])
  return ds.batch(local_batch).to_iter_dataset()
