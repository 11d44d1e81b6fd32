"""Text generation: greedy, sampling (temperature, top-k, top-p, repetition penalty) and beam
search, for decoder-only and encoder-decoder models, each a single jitted `lax.while_loop`.

With the KV cache (the default) the prompt is run once (prefill) and each step feeds one token
per row, attending over the cache that `models.attention` fills: keys and values of every layer
in [B, L, K, H] buffers preallocated for prompt + new tokens and sharded like the activations
("batch", "length", "kv_heads", "kv"); an encoder-decoder projects the encoder output for
cross-attention once. `use_cache=False` recomputes the full forward pass over a fixed buffer at
each step instead: the reference the cache is tested against, and the baseline of
benchmarks/decode.py.

Prompts of different lengths are left-padded (segment id 0) with per-row positions, so every
row's next token is at the same column. `prompts` holds, for a decoder: `inputs` [B, P] (left
padded) and `segment_ids` [B, P] (1 real, 0 padding); for an encoder-decoder: `encoder_inputs`,
`encoder_segment_ids` [B, S] (and optionally `encoder_positions`); the decoder starts from id 0.
"""

import dataclasses
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from roots_jax.errors import ConfigError
from roots_jax.models import families
from roots_jax.models.families import Family

NEG_INF = float(np.finfo(np.float32).min)


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
  """How to pick tokens; the names and meanings of Hugging Face's `generate`."""
  max_new_tokens: int = 20
  do_sample: bool = False           # False: greedy, or beam search with num_beams > 1
  temperature: float = 1.0          # sampling: logits / temperature
  top_k: int = 0                    # sampling: keep the k most likely tokens (0: all)
  top_p: float = 1.0                # sampling: keep the smallest set with probability >= top_p
  repetition_penalty: float = 1.0   # > 1 discourages tokens already in the prompt or output
  num_beams: int = 1
  length_penalty: float = 1.0       # beam scores are sum log p / length ** length_penalty
  early_stopping: bool = True       # beam: a row ends once num_beams hypotheses have ended
  num_return_sequences: int = 1
  seed: int = 0                     # sampling is a function of the seed alone

  def validate(self) -> None:
    """ConfigError naming the setting to change, for impossible combinations."""
    problems = []
    if self.max_new_tokens < 1:
      problems.append(f"max_new_tokens must be at least 1 (got {self.max_new_tokens})")
    if self.temperature <= 0:
      problems.append(f"temperature must be > 0 (got {self.temperature}); for the most likely "
                      "tokens leave do_sample off")
    if self.top_k < 0:
      problems.append(f"top_k must be >= 0 (got {self.top_k})")
    if not 0 < self.top_p <= 1:
      problems.append(f"top_p must be in (0, 1] (got {self.top_p})")
    if self.repetition_penalty <= 0:
      problems.append(f"repetition_penalty must be > 0 (got {self.repetition_penalty})")
    if self.num_beams < 1:
      problems.append(f"num_beams must be at least 1 (got {self.num_beams})")
    if self.num_beams > 1 and self.do_sample:
      problems.append("beam search does not sample: set do_sample off or num_beams=1")
    if self.num_return_sequences < 1:
      problems.append(f"num_return_sequences must be at least 1 (got "
                      f"{self.num_return_sequences})")
    elif self.num_return_sequences > self.num_beams and not self.do_sample and (
        self.num_return_sequences > 1):
      problems.append(f"num_return_sequences={self.num_return_sequences} needs do_sample or "
                      f"num_beams >= {self.num_return_sequences} (greedy has one answer)")
    if problems:
      raise ConfigError("; ".join(problems))

  @property
  def rows_per_prompt(self) -> int:
    return self.num_beams if self.num_beams > 1 else self.num_return_sequences


class Generated(NamedTuple):
  """tokens [B, R, N]: each prompt's R = num_return_sequences continuations, eos included, then
  pad; lengths [B, R] (eos counted); scores [B, R]: beam search's length-penalised score, else
  the sum of the model's log-probabilities of the chosen tokens."""
  tokens: jax.Array
  lengths: jax.Array
  scores: jax.Array


class _Model(NamedTuple):
  """The functions generation needs, over flat rows [R, ...] (R = prompts x rows per prompt)."""
  start: Callable    # () -> (state, logits [R, V])         the prompt, then the first logits
  advance: Callable  # (state, tokens [R]) -> (state, logits [R, V])
  reorder: Callable  # (state, rows [R]) -> state            beam search's surviving rows


def generate(model: nn.Module, params, prompts: dict, *, family: str | Family,
             config: GenerationConfig, eos_id: int, pad_id: int = 0, use_cache: bool = True,
             method: Callable | None = None, seed: jax.Array | None = None) -> Generated:
  """Generates from a batch of prompts; call under jax.jit (config is static).

  `model` is a Decoder or EncoderDecoder (roots_jax.models) of `family` (an object or its
  name), or any module whose `method` has the signature of `Family.lm_logits` without the
  module (FinetuneModel.lm_logits, a seq2seq head). `seed`, a traced int, replaces config.seed,
  so one compiled function serves every seed.
  """
  config.validate()
  if isinstance(family, str):
    family = families.get(family)
  rows = config.rows_per_prompt
  # Each prompt's rows are adjacent: [B * rows, ...].
  prompts = jax.tree.map(lambda x: jnp.repeat(x, rows, axis=0), prompts)
  method = method or family.lm_logits
  build = _cached_model if use_cache else _recomputing_model
  lm = build(model, params, prompts, family=family, steps=config.max_new_tokens, method=method)
  presence = None
  if config.repetition_penalty != 1.0:
    if family.has_encoder:  # HF: the decoder's start id 0 counts as seen
      seen = jnp.zeros(prompts["encoder_inputs"].shape[:1] + (1,), jnp.int32)
      presence = _presence(seen, jnp.ones_like(seen, bool), model.config.vocab_size)
    else:
      presence = _presence(prompts["inputs"], prompts["segment_ids"] > 0,
                           model.config.vocab_size)
  if config.num_beams > 1:
    return _beam_search(lm, config, eos_id, pad_id, presence)
  key = jax.random.key(config.seed if seed is None else seed)
  return _sample(lm, config, eos_id, pad_id, presence, _live_rows(prompts, family), key)


def _live_rows(prompts, family: Family):
  """[R] bool: rows with a prompt (padding rows of a sharded batch generate nothing)."""
  return prompts[f"{family.prompt_prefix}segment_ids"].max(axis=1) > 0


def _positions(segments: jax.Array) -> jax.Array:
  """[R, T] positions of left-padded rows: 0 at each row's first real token (padding 0 too)."""
  return jnp.maximum(jnp.cumsum(segments, axis=1) - 1, 0)


def _encode(model, params, prompts):
  """The encoder output [R, S, D] (of the backbone, for a fine-tuned model)."""
  segments = prompts["encoder_segment_ids"]
  positions = prompts.get("encoder_positions", _positions(segments))

  def run(module):
    return getattr(module, "backbone", module).encode(
        prompts["encoder_inputs"], encoder_segment_ids=segments, encoder_positions=positions)
  return model.apply({"params": params}, method=run)


def _cached_model(model, params, prompts, *, family, steps, method) -> _Model:
  """Prefill once, then one token per step against the KV cache."""
  if family.has_encoder:
    encoded, encoder_segments = _encode(model, params, prompts), prompts["encoder_segment_ids"]
    zeros = jnp.zeros((encoded.shape[0], 1), jnp.int32)
    first = zeros, zeros, jnp.ones_like(zeros)                         # the start id 0
    next_position = jnp.ones(encoded.shape[:1], jnp.int32)
  else:
    inputs, segments = prompts["inputs"], prompts["segment_ids"]
    encoded = encoder_segments = None
    first = inputs, _positions(segments), segments
    next_position = segments.sum(axis=1)                               # [R]

  def call(cache, tokens, positions, segments, encoded):
    variables = {"params": params} if cache is None else {"params": params, "cache": cache}
    logits, mutated = model.apply(variables, tokens, positions=positions, segment_ids=segments,
                                  encoded=encoded, encoder_segment_ids=encoder_segments,
                                  decode=True, method=method, mutable=["cache"])
    return logits[:, -1].astype(jnp.float32), mutated["cache"]

  length = first[0].shape[1] + steps
  cache = _empty_cache(call, first[0].shape[0], length, encoded)

  def start():
    logits, filled = call(cache, *first, encoded)
    return (filled, next_position), logits

  def advance(state, tokens):
    cache, position = state
    logits, cache = call(cache, tokens[:, None], position[:, None], jnp.ones_like(tokens)[:, None],
                         None)
    return (cache, position + 1), logits

  def reorder(state, rows):
    cache, position = state
    return _take_rows(cache, rows, model), position[rows]

  return _Model(start, advance, reorder)


def _empty_cache(call, rows, length, encoded):
  """Zeros of the cache's shapes: what one shape-only call on inputs of length L creates."""
  dummy = jnp.zeros((rows, length), jnp.int32)
  shapes = jax.eval_shape(lambda: call(None, dummy, dummy, jnp.ones_like(dummy), encoded)[1])
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _take_rows(cache, rows, model):
  """The cache of `rows` [R]: batch is axis 1 in scanned layers' caches (after the layer axis),
  axis 0 elsewhere; the scalar slot index is shared."""
  scanned = model.config.scan_layers
  def take(path, x):
    if x.ndim == 0:
      return x
    in_scan = scanned and any(getattr(k, "key", None) == "layers" for k in path)
    return jnp.take(x, rows, axis=1 if in_scan else 0)
  return jax.tree_util.tree_map_with_path(take, cache)


def _recomputing_model(model, params, prompts, *, family, steps, method) -> _Model:
  """No cache: the full forward pass over a fixed buffer [R, P + N] (decoder) or [R, N]
  (encoder-decoder's decoder) at every step."""
  if family.has_encoder:
    prompt_len = 1
    encoded, encoder_segments = _encode(model, params, prompts), prompts["encoder_segment_ids"]
    buffer = jnp.zeros((encoded.shape[0], steps + 1), jnp.int32)     # start id 0, then output
    segments = jnp.zeros_like(buffer).at[:, 0].set(1)
  else:
    prompt_len = prompts["inputs"].shape[1]
    buffer = jnp.pad(prompts["inputs"] * prompts["segment_ids"], ((0, 0), (0, steps)))
    segments = jnp.pad(prompts["segment_ids"], ((0, 0), (0, steps)))
    encoded = encoder_segments = None

  def logits_at(buffer, segments, t):
    logits = model.apply({"params": params}, buffer, positions=_positions(segments),
                         segment_ids=segments,
                         encoded=encoded, encoder_segment_ids=encoder_segments, method=method)
    return logits[:, prompt_len + t - 1].astype(jnp.float32)

  def start():
    return (buffer, segments, 0), logits_at(buffer, segments, 0)

  def advance(state, tokens):
    buffer, segments, t = state
    buffer = buffer.at[:, prompt_len + t].set(tokens)
    segments = segments.at[:, prompt_len + t].set(1)
    return (buffer, segments, t + 1), logits_at(buffer, segments, t + 1)

  def reorder(state, rows):
    buffer, segments, t = state
    return buffer[rows], segments[rows], t

  return _Model(start, advance, reorder)


def _presence(tokens: jax.Array, real: jax.Array, vocab_size: int) -> jax.Array:
  """[R, V] bool: which ids occur among the real tokens [R, T] (padding is not seen, as in
  HF's repetition penalty)."""
  rows = jnp.arange(tokens.shape[0])[:, None]
  ids = jnp.where(real, tokens, vocab_size)  # out of range: dropped
  return jnp.zeros((tokens.shape[0], vocab_size), bool).at[rows, ids].set(True, mode="drop")


def process_logits(logits: jax.Array, config: GenerationConfig,
                   presence: jax.Array | None) -> jax.Array:
  """HF's logits processors in its order: repetition penalty (CTRL: a seen token's logit is
  divided by the penalty if positive, multiplied if negative), then for sampling temperature,
  top-k and top-p. logits [R, V] float32 -> [R, V], removed tokens at -inf."""
  if presence is not None:
    penalised = jnp.where(logits > 0, logits / config.repetition_penalty,
                          logits * config.repetition_penalty)
    logits = jnp.where(presence, penalised, logits)
  if not config.do_sample:
    return logits
  logits = logits / config.temperature
  if 0 < config.top_k < logits.shape[-1]:
    kth = jax.lax.top_k(logits, config.top_k)[0][:, -1:]                 # [R, 1]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if config.top_p < 1.0:
    # HF: sort ascending, drop the tokens whose cumulative probability is <= 1 - top_p, and
    # always keep the most likely one.
    order = jnp.argsort(logits, axis=-1)                                  # ascending
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    cumulative = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
    drop_sorted = (cumulative <= 1 - config.top_p).at[:, -1].set(False)
    drop = jnp.zeros_like(drop_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(
        drop_sorted)
    logits = jnp.where(drop, -jnp.inf, logits)
  return logits


def _sample(lm: _Model, config, eos_id, pad_id, presence, live, key) -> Generated:
  """Greedy (argmax) or sampling, one token per row per step, until every row has ended."""
  steps = config.max_new_tokens
  rows = live.shape[0]

  def cond(carry):
    t, done = carry[0], carry[3]
    return (t < steps) & ~done.all()

  def body(carry):
    t, state, logits, done, out, lengths, scores, presence = carry
    processed = process_logits(logits, config, presence)
    if config.do_sample:
      token = jax.random.categorical(jax.random.fold_in(key, t), processed)
    else:
      token = jnp.argmax(processed, axis=-1)
    token = jnp.where(done, pad_id, token.astype(jnp.int32))              # [R]
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], axis=-1)[:, 0]
    scores = scores + jnp.where(done, 0.0, logp)
    lengths = lengths + (~done).astype(jnp.int32)
    out = out.at[:, t].set(token)
    if presence is not None:
      index = jnp.arange(rows), token
      presence = presence.at[index].set(presence[index] | ~done)
    done = done | (token == eos_id)
    state, logits = lm.advance(state, token)
    return t + 1, state, logits, done, out, lengths, scores, presence

  state, logits = lm.start()
  out = jnp.full((rows, steps), pad_id, jnp.int32)
  zeros = jnp.zeros((rows,), jnp.int32)
  carry = (0, state, logits, ~live, out, zeros, jnp.zeros((rows,), jnp.float32), presence)
  _, _, _, _, out, lengths, scores, _ = jax.lax.while_loop(cond, body, carry)
  r = config.num_return_sequences
  return Generated(out.reshape(-1, r, steps), lengths.reshape(-1, r), scores.reshape(-1, r))


def _beam_search(lm: _Model, config, eos_id, pad_id, presence) -> Generated:
  """Hugging Face's beam search: each step keeps the 2K best continuations of the K live beams
  (log p after the repetition penalty, which acts on log-probabilities here, as in HF); one
  ending in eos and ranked among the first K becomes a finished hypothesis scored
  sum log p / length ** length_penalty; the K best of the others live on. A row is done when K
  hypotheses have finished (early_stopping) or when the best live beam, scored at the current
  length, cannot beat the worst of them (HF's heuristic); at max_new_tokens live beams are
  scored as they are. Returns the num_return_sequences best hypotheses."""
  k, steps = config.num_beams, config.max_new_tokens
  flat_rows, vocab = jax.eval_shape(lm.start)[1].shape                  # [B * K, V]
  batch = flat_rows // k
  alpha = config.length_penalty

  def penalised(logp, length):
    return logp / jnp.asarray(length, jnp.float32) ** alpha

  def row_done(fin_scores, best_alive, length):
    full = (fin_scores > NEG_INF).sum(-1) >= k                          # [B]
    if config.early_stopping:
      return full
    return full & (fin_scores.min(-1) >= penalised(best_alive, length))

  def cond(carry):
    t, done = carry[0], carry[3]
    return (t < steps) & ~done.all()

  def body(carry):
    t, state, logits, done, alive_seq, alive_logp, fin_seq, fin_scores, fin_len, presence = carry
    # As HF: the processors act on the log-probabilities, not renormalised after.
    logp = process_logits(jax.nn.log_softmax(logits), config, presence).reshape(batch, k, vocab)
    candidates = (alive_logp[..., None] + logp).reshape(batch, k * vocab)
    top_logp, top_index = jax.lax.top_k(candidates, 2 * k)               # [B, 2K]
    beam, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
    seqs = jnp.take_along_axis(alive_seq, beam[..., None], axis=1).at[:, :, t].set(token)
    ends = (token == eos_id) & (jnp.arange(2 * k) < k)[None] & ~done[:, None]
    # Finished: the K best of the old ones and the new ones.
    new_scores = jnp.where(ends, penalised(top_logp, t + 1), NEG_INF)
    pool_scores = jnp.concatenate([fin_scores, new_scores], axis=1)       # [B, 3K]
    pool_seq = jnp.concatenate([fin_seq, seqs], axis=1)
    pool_len = jnp.concatenate([fin_len, jnp.full(new_scores.shape, t + 1, jnp.int32)], axis=1)
    fin_scores, keep = jax.lax.top_k(pool_scores, k)
    fin_seq = jnp.take_along_axis(pool_seq, keep[..., None], axis=1)
    fin_len = jnp.take_along_axis(pool_len, keep, axis=1)
    # Alive: the K best that did not end in eos.
    alive_candidates = jnp.where(token == eos_id, NEG_INF, top_logp)
    alive_logp, keep = jax.lax.top_k(alive_candidates, k)                # [B, K]
    alive_seq = jnp.take_along_axis(seqs, keep[..., None], axis=1)
    parents = jnp.take_along_axis(beam, keep, axis=1)                      # [B, K]
    rows = (jnp.arange(batch)[:, None] * k + parents).reshape(-1)
    state = lm.reorder(state, rows)
    next_tokens = jnp.take_along_axis(token, keep, axis=1).reshape(-1)
    if presence is not None:
      presence = presence[rows].at[jnp.arange(flat_rows), next_tokens].set(True)
    done = done | row_done(fin_scores, alive_logp[:, 0], t + 1)
    state, logits = lm.advance(state, next_tokens)
    return (t + 1, state, logits, done, alive_seq, alive_logp, fin_seq, fin_scores, fin_len,
            presence)

  state, logits = lm.start()
  # Only the first beam is live at first, so the first step's K beams are K different tokens.
  alive_logp = jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1), jnp.float32), (batch, 1))
  seq = jnp.full((batch, k, steps), pad_id, jnp.int32)
  fin_scores = jnp.full((batch, k), NEG_INF, jnp.float32)
  carry = (0, state, logits, jnp.zeros((batch,), bool), seq, alive_logp, seq, fin_scores,
           jnp.zeros((batch, k), jnp.int32), presence)
  t, _, _, done, alive_seq, alive_logp, fin_seq, fin_scores, fin_len, _ = jax.lax.while_loop(
      cond, body, carry)
  # Rows still open at the length limit: their live beams compete as they are.
  open_scores = jnp.where(done[:, None] | (alive_logp <= NEG_INF), NEG_INF,
                          penalised(alive_logp, t))
  pool_scores = jnp.concatenate([fin_scores, open_scores], axis=1)
  pool_seq = jnp.concatenate([fin_seq, alive_seq], axis=1)
  pool_len = jnp.concatenate([fin_len, jnp.full((batch, k), t, jnp.int32)], axis=1)
  scores, best = jax.lax.top_k(pool_scores, config.num_return_sequences)
  tokens = jnp.take_along_axis(pool_seq, best[..., None], axis=1)
  lengths = jnp.take_along_axis(pool_len, best, axis=1)
  tokens = jnp.where(jnp.arange(steps) < lengths[..., None], tokens, pad_id)
  return Generated(tokens, lengths, scores)
