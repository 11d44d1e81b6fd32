"""Greedy decoding for seq2seq evaluation: the whole loop is one jitted `lax.fori_loop` that
recomputes the forward pass over the fixed-size buffer at each step (no KV cache).

`logits_fn(batch) -> [B, length, V]` is the model applied to a batch laid out as in
roots_jax.data.finetune: a decoder reads `inputs` (the prompt, then what was generated), an
encoder-decoder reads its encoder_* keys and the growing decoder_inputs.
"""

from typing import Callable

import jax
import jax.numpy as jnp


def greedy(logits_fn: Callable, batch: dict, *, family: str, max_new_tokens: int,
           eos_id: int) -> jax.Array:
  """Generated ids [B, max_new_tokens]: each row's argmax continuation, eos included, then 0s."""
  if family == "decoder":
    return _greedy_decoder(logits_fn, batch, max_new_tokens, eos_id)
  return _greedy_encoder_decoder(logits_fn, batch, max_new_tokens, eos_id)


def _step(logits, out, done, t, eos_id):
  """The next token from logits [B, V] for rows not yet done; updates out [B, N] and done [B]."""
  token = jnp.where(done, 0, jnp.argmax(logits, axis=-1).astype(jnp.int32))  # [B]
  return token, out.at[:, t].set(token), done | (token == eos_id)


def _greedy_decoder(logits_fn, batch, max_new_tokens, eos_id):
  prompt_len = batch["prompt_len"]                                       # [B]
  batch_size, length = batch["inputs"].shape
  index = jnp.arange(length)[None]                                       # [1, L]
  tokens = jnp.where(index < prompt_len[:, None], batch["inputs"], 0)    # the prompts only
  rows = jnp.arange(batch_size)

  def body(t, carry):
    tokens, out, done = carry
    real = (index < (prompt_len + t)[:, None]).astype(jnp.int32)         # [B, L]
    logits = logits_fn({"inputs": tokens, "segment_ids": real, "positions": index * real})
    last = jnp.maximum(prompt_len + t - 1, 0)
    token, out, done = _step(logits[rows, last], out, done, t, eos_id)
    tokens = tokens.at[rows, jnp.minimum(prompt_len + t, length - 1)].set(token)
    return tokens, out, done

  out = jnp.zeros((batch_size, max_new_tokens), jnp.int32)
  done = prompt_len == 0                                                  # padding rows
  return jax.lax.fori_loop(0, max_new_tokens, body, (tokens, out, done))[1]


def _greedy_encoder_decoder(logits_fn, batch, max_new_tokens, eos_id):
  batch_size = batch["encoder_inputs"].shape[0]
  index = jnp.arange(max_new_tokens)[None]                                # [1, N]
  encoder = {k: v for k, v in batch.items() if k.startswith("encoder_")}

  def body(t, carry):
    decoder_inputs, out, done = carry
    real = (index <= t).astype(jnp.int32)                                 # [1, N]
    real = jnp.broadcast_to(real, decoder_inputs.shape)
    logits = logits_fn({**encoder, "decoder_inputs": decoder_inputs, "decoder_segment_ids": real,
                        "decoder_positions": index * real})
    token, out, done = _step(logits[:, t], out, done, t, eos_id)
    # The next input (start id 0 at position 0); the last step's token has no next position.
    decoder_inputs = jnp.where(t + 1 < max_new_tokens,
                               decoder_inputs.at[:, jnp.minimum(t + 1, max_new_tokens - 1)].set(token),
                               decoder_inputs)
    return decoder_inputs, out, done

  start = jnp.zeros((batch_size, max_new_tokens), jnp.int32)
  done = batch["encoder_segment_ids"].max(axis=1) == 0                    # padding rows
  return jax.lax.fori_loop(0, max_new_tokens, body, (start, start, done))[1]
