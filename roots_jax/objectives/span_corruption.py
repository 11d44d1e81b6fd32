"""T5's span corruption of plain text (t5.data.preprocessors.span_corruption; Raffel et al.
2020, 3.1.4).

A document is cut into chunks of the token count that `random_spans_helper` gives for
data.seq_len, so a full chunk's corrupted input is at most seq_len tokens with eos (512 ->
chunks of 568, targets of 114 at density 0.15 and mean span 3); `random_spans_noise_mask`
marks alternating non-noise / noise spans; each noise span becomes one sentinel in the
input, and the targets are the sentinels each followed by their span. The i-th span's sentinel
is the tokenizer's `sentinel_id(i)`: its <extra_id_i> piece where it has one (a Hugging Face
T5 tokenizer: 32099 down from the top of its 32100; one trained for a run of this objective:
SENTINELS of them, vocab_size - 1 down), else vocab_size - 1 - i, counting down from the top as
T5 does, so the few highest pieces of a tokenizer without reserved sentinels become ambiguous.
T5 concatenates documents before chunking; here the chunks of several documents are packed into
one row instead, laid out as the seq2seq objective's rows.
"""

from typing import Any

import numpy as np

from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.data.transforms import StreamTransform
from roots_jax.errors import ConfigError
from roots_jax.objectives.base import Objective
from roots_jax.objectives.seq2seq import LOSS, PackedPairs

# T5's 100 sentinels, which a tokenizer trained for this objective reserves (T5Tokenizer's
# extra_ids): enough for the 28 spans of a 512-token input at T5's density and span length.
SENTINELS = 100


def random_spans_helper(inputs_length: int, noise_density: float,
                        mean_noise_span_length: float) -> tuple[int, int]:
  """T5's random_spans_helper (one sentinel per span on both sides, eos appended): the most
  tokens whose corrupted input fits `inputs_length`, and the targets' length then."""

  def lengths(tokens_length):
    num_noise_tokens = int(round(tokens_length * noise_density))
    num_nonnoise_tokens = tokens_length - num_noise_tokens
    num_noise_spans = int(round(num_noise_tokens / mean_noise_span_length))
    return (num_nonnoise_tokens + num_noise_spans + 1, num_noise_tokens + num_noise_spans + 1)

  tokens_length = inputs_length - 1
  while lengths(tokens_length + 1)[0] <= inputs_length:
    tokens_length += 1
  _, targets_length = lengths(tokens_length)
  # T5's hack: at density 0.5 make the targets as long as the inputs, a rounder number.
  if noise_density == 0.5 and targets_length > inputs_length:
    tokens_length -= 1
    targets_length -= 1
  return tokens_length, targets_length


def _random_segmentation(num_items: int, num_segments: int,
                         rng: np.random.Generator) -> np.ndarray:
  """Lengths of a random partition of `num_items` into `num_segments` non-empty segments."""
  first_in_segment = np.zeros(num_items, np.int64)
  first_in_segment[1:num_segments] = 1
  first_in_segment[1:] = rng.permutation(first_in_segment[1:])
  return np.bincount(np.cumsum(first_in_segment), minlength=num_segments)


def _noise_counts(length: int, noise_density: float,
                  mean_noise_span_length: float) -> tuple[int, int]:
  """The noise tokens and noise spans of a mask of `length` (at least 2)."""
  num_noise_tokens = min(max(int(round(length * noise_density)), 1), length - 1)
  return num_noise_tokens, max(int(round(num_noise_tokens / mean_noise_span_length)), 1)


def random_spans_noise_mask(length: int, noise_density: float, mean_noise_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
  """T5's random_spans_noise_mask (random_roll=False): round(length * noise_density) noise
  tokens in about noise / mean_noise_span_length spans; the mask starts with non-noise."""
  orig_length = length
  length = max(length, 2)  # avoids degeneracy
  num_noise_tokens, num_noise_spans = _noise_counts(length, noise_density, mean_noise_span_length)
  num_nonnoise_tokens = length - num_noise_tokens
  noise_span_lengths = _random_segmentation(num_noise_tokens, num_noise_spans, rng)
  nonnoise_span_lengths = _random_segmentation(num_nonnoise_tokens, num_noise_spans, rng)
  interleaved = np.stack([nonnoise_span_lengths, noise_span_lengths], axis=1).reshape(-1)
  span_start_indicator = np.zeros(length, np.int64)
  span_start_indicator[np.cumsum(interleaved)[:-1]] = 1
  is_noise = np.cumsum(span_start_indicator) % 2 == 1
  return is_noise[:orig_length]


def noise_span_to_unique_sentinel(tokens: np.ndarray, noise_mask: np.ndarray,
                                  sentinels: np.ndarray) -> np.ndarray:
  """T5's: each noise span -> one sentinel, sentinels[0] for the first, then the next ones
  (T5's vocab_size - 1, vocab_size - 2, ...)."""
  prev_is_noise = np.concatenate([[False], noise_mask[:-1]])
  first_noise = noise_mask & ~prev_is_noise
  span = np.maximum(np.cumsum(first_noise) - 1, 0)
  return np.where(first_noise, sentinels[span], tokens)[~(noise_mask & prev_is_noise)]


class SpanCorruption(PackedPairs, StreamTransform):
  """T5's span corruption of plain text (see the module docstring)."""

  def __init__(self, tokenizer: BaseTokenizer, seq_len: int, *, target_len: int,
               noise_density: float, mean_noise_span_length: float, seed: int):
    if not 0.0 < noise_density < 1.0:
      raise ConfigError(f"data.noise_density must be in (0, 1) (T5: 0.15); got {noise_density}")
    if mean_noise_span_length < 1.0:
      raise ConfigError("data.mean_noise_span_length must be at least 1 (T5: 3.0); got "
                        f"{mean_noise_span_length}")
    tokens_length, needed = random_spans_helper(seq_len, noise_density, mean_noise_span_length)
    if tokens_length < 2:
      raise ConfigError(f"data.seq_len ({seq_len}) is too short for span corruption; use at "
                        "least 4 (T5: 512)")
    if 0 < target_len < needed:
      raise ConfigError(f"data.target_len ({target_len}) is shorter than the {needed} target "
                        f"tokens span corruption makes from data.seq_len={seq_len}; raise it "
                        "or set 0 to derive it")
    PackedPairs.__init__(self, seq_len, target_len or needed)
    StreamTransform.__init__(self, seed)
    self.tokens_length = tokens_length
    self.noise_density = noise_density
    self.mean_noise_span_length = mean_noise_span_length
    # One sentinel per span; a chunk has at most one span per token.
    self.sentinels = np.array([tokenizer.sentinel_id(i) for i in range(max(tokens_length, 2))],
                              np.int32)
    spans = _noise_counts(max(tokens_length, 2), noise_density, mean_noise_span_length)[1]
    if tokenizer.has_piece("<extra_id_0>") and not tokenizer.has_piece(f"<extra_id_{spans - 1}>"):
      raise ConfigError(f"span corruption of data.seq_len={seq_len} makes up to {spans} spans, "
                        "more than the tokenizer has sentinels <extra_id_N>; lower data.seq_len "
                        "or data.noise_density, or raise data.mean_noise_span_length")
    self.eos = tokenizer.eos_id

  def corrupt(self, tokens: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One chunk (at most tokens_length tokens) -> its example, eos appended on both sides."""
    noise = random_spans_noise_mask(len(tokens), self.noise_density,
                                    self.mean_noise_span_length, rng)
    inputs = noise_span_to_unique_sentinel(tokens, noise, self.sentinels)
    targets = noise_span_to_unique_sentinel(tokens, ~noise, self.sentinels)
    return {"encoder_inputs": np.append(inputs, self.eos).astype(np.int32),
            "decoder_targets": np.append(targets, self.eos).astype(np.int32)}

  def generate(self, tokens: np.ndarray, carry: dict[str, Any]):
    rng = self.rng(tokens, carry)
    chunks = (tokens[i:i + self.tokens_length] for i in range(0, len(tokens), self.tokens_length))
    return [self.corrupt(c, rng) for c in chunks], {"count": carry["count"] + 1}




def target_len(data) -> int:
  """data.target_len, or when 0 T5's for data.seq_len: random_spans_helper's (114 for 512)."""
  return data.target_len or random_spans_helper(data.seq_len, data.noise_density,
                                                data.mean_noise_span_length)[1]


OBJECTIVE = Objective(
    name="span_corruption", family="encoder_decoder", loss=LOSS,
    transform=lambda data, tokenizer, seed: SpanCorruption(
        tokenizer, data.seq_len, target_len=data.target_len, noise_density=data.noise_density,
        mean_noise_span_length=data.mean_noise_span_length, seed=seed),
    target_len=target_len, sentinels=SENTINELS)
