"""BERT's pretraining examples: masked language modelling and next-sentence prediction.

After create_pretraining_data.py (Devlin et al. 2019), on the stream of tokenized documents:

- A document is cut into segments after every line end (a piece holding a newline, so code
  splits by line) and after a piece ending in ".", "!" or "?" that is followed by a piece
  starting with whitespace (prose splits by sentence; `x.y` in code does not split). Pieces
  are read as text (`piece_text`): sentencepiece's "▁" and GPT-2's "Ġ" are spaces, and every
  WordPiece piece but a "##" continuation starts with one (BERT's text has no newlines).
- Consecutive segments fill a chunk of up to seq_len - 3 tokens; a random prefix of its
  segments is A. With next_sentence_prediction, B is the rest of the chunk (label 0, "is
  next", as HF) with probability 0.5, else (label 1) whole segments of an earlier document,
  as many as fill the chunk, from a pool of POOL_SIZE runs of segments that the stream
  carries and checkpoints (the chunk's unused segments start the next chunk, as in BERT).
  A chunk of one segment is split in half for a positive pair, so positives stay at 50 %
  (BERT forces those negative); the stream's first document has no negatives. Without NSP,
  B is always the rest of the chunk. On a corpus smaller than the pool, a negative can come
  from an earlier epoch's copy of the same document.
- The pair is trimmed to fit (truncate_seq_pair: the longer side loses a token at a random
  end), and max(1, round(mask_rate * n)) of its n non-special tokens are selected; of those
  80 % become [MASK], 10 % a random non-special piece, 10 % stay. With whole-word masking
  whole words are selected: a word starts at a piece that begins with whitespace ("▁"), at a
  whitespace piece (indentation, newline bytes) and right after one, so in code `foo(x):`
  is one word and multi-byte characters (byte pieces) stay inside their word; with BERT's
  WordPiece a word is a piece and its "##" continuations, as HF's whole-word masking.

Rows are not packed: one pair per row, padded to seq_len. Randomness comes from the run's
seed, the running document count and the tokens, so a restored iterator is exact.
"""

from typing import Any

import numpy as np

from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.data.transforms import StreamTransform
from roots_jax.errors import ConfigError
from roots_jax.objectives.base import Objective
from roots_jax.training.losses import Loss, token_counts, token_terms

# Runs of segments from earlier documents kept for NSP negatives (each up to seq_len - 3
# tokens, in the checkpointed iterator state; new runs replace random old ones).
POOL_SIZE = 16


def truncate_seq_pair(a: np.ndarray, b: np.ndarray, max_tokens: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """BERT's truncate_seq_pair: the longer side loses a token at its front or back (at random)
  until both fit in `max_tokens`."""
  while len(a) + len(b) > max_tokens:
    longer_is_a = len(a) > len(b)
    trunc = a if longer_is_a else b
    trunc = trunc[1:] if rng.random() < 0.5 else trunc[:-1]
    a, b = (trunc, b) if longer_is_a else (a, trunc)
  return a, b


class MaskedLM(StreamTransform):
  """Masked LM (+ NSP) pairs `[CLS] A [SEP] B [SEP]`, one per row.

  Batch rows, [B, T]: inputs (masked ids), targets (original ids at selected positions, 0
  elsewhere), token_types (0 for [CLS] A [SEP], 1 for B [SEP]), segment_ids (1 on real
  tokens, 0 on padding), positions (0..T-1), all int32; weights (float32, 1.0 at selected
  positions). Per row, [B]: nsp_labels (int32, 0 = B follows A, 1 = B is random) and
  nsp_weights (float32, 1.0; 0.0 without NSP and on padding rows).
  """

  def __init__(self, tokenizer: BaseTokenizer, seq_len: int, *, mask_rate: float,
               whole_word_masking: bool, next_sentence_prediction: bool, seed: int):
    super().__init__(seed)
    if seq_len < 5:
      raise ConfigError(f"data.seq_len ({seq_len}) is too short for [CLS] A [SEP] B [SEP]; "
                        "use at least 5 (BERT: 128 or 512)")
    if not 0.0 < mask_rate < 1.0:
      raise ConfigError(f"data.mask_rate must be in (0, 1) (BERT: 0.15); got {mask_rate}")
    self.seq_len = seq_len
    self.max_tokens = seq_len - 3
    self.mask_rate = mask_rate
    self.whole_word = whole_word_masking
    self.nsp = next_sentence_prediction
    self.cls, self.sep, self.mask = (tokenizer.piece_id(p) for p in ("[CLS]", "[SEP]", "[MASK]"))
    texts = [tokenizer.piece_text(i) for i in range(tokenizer.vocab_size)]
    self.normal_ids = np.array([i for i in range(len(texts)) if not tokenizer.is_special(i)],
                               np.int32)
    # Per-piece tables that segments and words are cut with.
    self.space = np.array([t.isspace() for t in texts])
    self.starts_word = np.array([t[:1].isspace() for t in texts]) | self.space
    self.ends_line = np.array(["\n" in t for t in texts])
    self.ends_sentence = np.array([t.endswith((".", "!", "?")) for t in texts])

  def initial_carry(self) -> dict[str, Any]:
    return {"count": 0, "pool": []}

  def segments(self, tokens: np.ndarray) -> list[np.ndarray]:
    """Lines, and sentences within lines (see the module docstring)."""
    ends = self.ends_line[tokens[:-1]] | (self.ends_sentence[tokens[:-1]]
                                          & self.starts_word[tokens[1:]])
    return np.split(tokens, np.flatnonzero(ends) + 1) if len(tokens) else []

  def word_starts(self, ids: np.ndarray) -> np.ndarray:
    """Where whole-word masking's words start (see the module docstring)."""
    starts = self.starts_word[ids]
    starts[1:] |= self.space[ids[:-1]]
    return starts

  def generate(self, tokens: np.ndarray, carry: dict[str, Any]):
    rng = self.rng(tokens, carry)
    pool = carry["pool"]
    segments = self.segments(tokens)
    examples, chunk, length, i = [], [], 0, 0
    while i < len(segments):  # BERT's create_instances_from_document
      chunk.append(segments[i])
      length += len(segments[i])
      if i == len(segments) - 1 or length >= self.max_tokens:
        pair = self._pair(chunk, pool, rng)
        if pair is not None:
          a, b, is_random, unused = pair
          i -= unused
          examples.append(self._row(a, b, is_random, rng))
        chunk, length = [], 0
      i += 1
    return examples, {"count": carry["count"] + 1, "pool": self._remember(segments, pool, rng)}

  def _pair(self, chunk: list[np.ndarray], pool: list[list[int]], rng: np.random.Generator):
    """(A, B, is_random, segments of the chunk left for the next one), or None for a chunk of
    one token without a partner."""
    # The first document has nothing to draw negatives from.
    is_random = self.nsp and rng.random() < 0.5 and bool(pool)
    if len(chunk) == 1 and not is_random:
      if len(chunk[0]) < 2:
        return None
      half = len(chunk[0]) // 2
      chunk = [chunk[0][:half], chunk[0][half:]]
    a_end = int(rng.integers(1, len(chunk))) if len(chunk) > 1 else 1
    a = np.concatenate(chunk[:a_end])
    if is_random:  # As BERT: whole segments of the other document until B is long enough.
      run = self.segments(np.asarray(pool[int(rng.integers(len(pool)))], np.int32))
      ends = np.cumsum([len(r) for r in run])
      taken = int(np.searchsorted(ends, self.max_tokens - len(a))) + 1
      b = np.concatenate(run[:taken])
      unused = len(chunk) - a_end
    else:
      b, unused = np.concatenate(chunk[a_end:]), 0
    a, b = truncate_seq_pair(a, b, self.max_tokens, rng)
    return a, b, is_random, unused

  def _remember(self, segments: list[np.ndarray], pool: list[list[int]],
                rng: np.random.Generator) -> list[list[int]]:
    """A new pool with a run of this document's segments (from a random one on), for the
    negatives of later documents. The old pool is part of a state: not mutated."""
    if not self.nsp or not segments:
      return pool
    start = int(rng.integers(len(segments)))
    run = np.concatenate(segments[start:])[:self.max_tokens].tolist()
    if len(pool) < POOL_SIZE:
      return pool + [run]
    pool = list(pool)
    pool[int(rng.integers(POOL_SIZE))] = run
    return pool

  def _select(self, special: np.ndarray, word_starts: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """Sorted positions to predict: max(1, round(mask_rate * n)) of the n non-special ones,
    or with whole-word masking, whole words up to that count (BERT skips a word that would
    exceed it)."""
    candidates = np.flatnonzero(~special)
    count = max(1, round(len(candidates) * self.mask_rate))
    if not self.whole_word:
      return np.sort(rng.choice(candidates, count, replace=False))
    words = np.split(candidates, np.flatnonzero(word_starts[candidates[1:]]) + 1)
    chosen, total = [], 0
    for w in rng.permutation(len(words)):
      if total + len(words[w]) <= count:
        chosen.append(words[w])
        total += len(words[w])
        if total == count:
          break
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)

  def _row(self, a: np.ndarray, b: np.ndarray, is_random: bool,
           rng: np.random.Generator) -> dict[str, np.ndarray]:
    ids = np.concatenate([[self.cls], a, [self.sep], b, [self.sep]]).astype(np.int32)
    n, b_start = len(ids), len(a) + 2
    special = np.zeros(n, bool)
    special[[0, b_start - 1, n - 1]] = True
    word_starts = self.word_starts(ids)
    word_starts[[1, b_start]] = True  # A and B may start mid-word after truncation
    selected = self._select(special, word_starts, rng)
    inputs = ids.copy()
    roll = rng.random(len(selected))
    inputs[selected[roll < 0.8]] = self.mask
    replaced = selected[(roll >= 0.8) & (roll < 0.9)]
    inputs[replaced] = rng.choice(self.normal_ids, len(replaced))
    row = {k: np.zeros(self.seq_len, np.int32)
           for k in ("inputs", "targets", "token_types", "segment_ids")}
    row["inputs"][:n] = inputs
    row["targets"][selected] = ids[selected]
    row["token_types"][b_start:n] = 1
    row["segment_ids"][:n] = 1
    row["positions"] = np.arange(self.seq_len, dtype=np.int32)
    row["weights"] = np.zeros(self.seq_len, np.float32)
    row["weights"][selected] = 1.0
    row["nsp_labels"] = np.asarray(int(is_random), np.int32)
    row["nsp_weights"] = np.asarray(float(self.nsp), np.float32)
    return row

  def rows(self, ds, *, num_packing_bins: int, seed: int, shuffle_bins: bool):
    """BERT does not pack: the examples are finished, padded rows already."""
    del num_packing_bins, seed, shuffle_bins
    return ds


def _terms(outputs, b, z):
  mlm_logits, nsp_logits = outputs                       # [B, T, V], [B, 2]
  sums = token_terms(mlm_logits, b["targets"], b["weights"], z, prefix="mlm_")
  nsp = token_terms(nsp_logits[:, None], b["nsp_labels"][:, None], b["nsp_weights"][:, None], 0.0,
                    prefix="nsp_")
  return {**sums, "nsp_nll": nsp["nsp_nll"], "nsp_accuracy": nsp["nsp_accuracy"]}


def _counts(b):
  counts = token_counts("weights", "mlm_")(b)
  pairs = b["nsp_weights"].sum()
  return {**counts, "nsp_nll": pairs, "nsp_accuracy": pairs}


_I32, _F32 = np.int32, np.float32

OBJECTIVE = Objective(
    name="mlm_nsp", family="encoder",
    loss=Loss(
        model_inputs=lambda b: ((b["inputs"],), dict(token_types=b["token_types"],
                                                     positions=b["positions"],
                                                     segment_ids=b["segment_ids"])),
        terms=_terms, counts=_counts, loss_terms=("mlm_nll", "mlm_z_loss", "nsp_nll"),
        nll_term="mlm_nll",
        distributions=lambda outputs: {"mlm_": outputs[0], "nsp_": outputs[1]},
        distribution_weights=lambda b: {"mlm_": b["weights"], "nsp_": b["nsp_weights"]},
        example=lambda t, _: {"inputs": ((t,), _I32), "targets": ((t,), _I32),
                              "weights": ((t,), _F32), "token_types": ((t,), _I32),
                              "segment_ids": ((t,), _I32), "positions": ((t,), _I32),
                              "nsp_labels": ((), _I32), "nsp_weights": ((), _F32)}),
    transform=lambda data, tokenizer, seed: MaskedLM(
        tokenizer, data.seq_len, mask_rate=data.mask_rate,
        whole_word_masking=data.whole_word_masking,
        next_sentence_prediction=data.next_sentence_prediction, seed=seed))
