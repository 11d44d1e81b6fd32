"""Position information: learned tables (GPT-2, BERT), fixed sinusoids (Vaswani et al. 2017) added
to the token embeddings, RoPE (Su et al. 2021) rotating queries and keys inside attention, or T5's
bucketed relative position bias (Raffel et al. 2020) added to the attention logits.

Everything takes explicit integer `positions` [B, T], so packed sequences restart at 0 per segment.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from roots_jax.models.config import ModelConfig
from roots_jax.models.layers import INIT_STD, lookup


def sinusoidal(positions: jax.Array, dim: int) -> jax.Array:
  """[B, T] -> [B, T, dim]: PE[p, 2i] = sin(p / 10000^(2i/dim)), PE[p, 2i+1] = cos(same angle)."""
  inv_freq = 10000.0 ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)  # [ceil(dim/2)]
  angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, ceil(dim/2)]
  pe = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)  # interleaved sin, cos
  return pe.reshape(*positions.shape, -1)[..., :dim]


def apply_rope(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
  """Rotates x [B, T, N, H] by position, rotate-half layout (GPT-NeoX, LLaMA, Hugging Face).

  Dims i and i + H/2 form a pair rotated by angle p * theta^(-2i/H), so q.k depends only on the
  distance between the two positions. Computed in float32, returned in x's dtype.
  """
  half = x.shape[-1] // 2
  inv_freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)  # [H/2]
  angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, H/2]
  cos = jnp.cos(angles)[:, :, None, :]  # [B, T, 1, H/2]
  sin = jnp.sin(angles)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)  # [B, T, N, H/2] each
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


class PositionEmbedding(nn.Module):
  """Absolute position vectors [B, T, D] to add to token embeddings: learned or sinusoidal."""
  config: ModelConfig

  @nn.compact
  def __call__(self, positions: jax.Array) -> jax.Array:
    cfg = self.config
    if cfg.position == "learned":
      init = nn.with_logical_partitioning(nn.initializers.normal(INIT_STD), (None, "embed"))
      table = self.param("embedding", init, (cfg.max_len, cfg.embed_dim), cfg.weight_dtype)
      # Positions >= max_len read NaN (jnp.take's fill mode): loud rather than silently clipped.
      return lookup(table, positions, (None, None)).astype(cfg.compute_dtype)
    return sinusoidal(positions, cfg.embed_dim).astype(cfg.compute_dtype)


def relative_position_bucket(relative_position: jax.Array, *, bidirectional: bool,
                             num_buckets: int, max_distance: int) -> jax.Array:
  """T5's bucket of each key - query offset (Hugging Face `_relative_position_bucket`, exactly).

  Half the buckets hold exact offsets 0 .. max_exact-1, the rest log-spaced ones up to
  max_distance (and everything beyond). Bidirectional (encoder): the first half of the buckets
  for keys at or before the query, the second half for keys after it; causal (decoder): only
  offsets to earlier keys count, later ones share bucket 0 (the mask hides them anyway).
  """
  buckets = jnp.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    buckets += (relative_position > 0).astype(relative_position.dtype) * num_buckets
    distance = jnp.abs(relative_position)
  else:
    distance = -jnp.minimum(relative_position, 0)
  max_exact = num_buckets // 2
  # float32 and truncation as in the reference, so bucket edges agree bit for bit; distance 0
  # (log -inf) is always in the exact half.
  log_ratio = jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / max_exact)
  large = max_exact + (log_ratio / math.log(max_distance / max_exact)
                       * (num_buckets - max_exact)).astype(relative_position.dtype)
  large = jnp.minimum(large, num_buckets - 1)
  return buckets + jnp.where(distance < max_exact, distance, large)


class RelativePositionBias(nn.Module):
  """T5's relative position bias: a learned scalar per (bucket, head), added to attention logits.

  One table per stack, computed once and shared by all its layers (T5 keeps it in the first layer
  and reuses it); the encoder's is bidirectional, the decoder's causal; cross-attention has none.
  """
  config: ModelConfig
  bidirectional: bool

  @nn.compact
  def __call__(self, q_positions: jax.Array, kv_positions: jax.Array) -> jax.Array:
    """q_positions [B, T], kv_positions [B, S] (per packed segment) -> bias [B, N, T, S] float32."""
    cfg = self.config
    init = nn.with_logical_partitioning(nn.initializers.normal(INIT_STD), (None, "heads"))
    table = self.param("embedding", init, (cfg.relative_buckets, cfg.num_heads), cfg.weight_dtype)
    relative = kv_positions[:, None, :] - q_positions[:, :, None]  # [B, T, S] key - query
    buckets = relative_position_bucket(relative, bidirectional=self.bidirectional,
                                       num_buckets=cfg.relative_buckets,
                                       max_distance=cfg.relative_max_distance)
    bias = jnp.take(table.astype(jnp.float32), buckets, axis=0)  # [B, T, S, N]
    return jnp.transpose(bias, (0, 3, 1, 2))  # [B, N, T, S]


def default_positions(tokens: jax.Array, positions: jax.Array | None) -> jax.Array:
  """positions [B, T], or 0..T-1 for every row when not given."""
  if positions is None:
    return jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
  return positions


def add_positions(config: ModelConfig, x: jax.Array, positions: jax.Array, *,
                  bidirectional: bool,
                  kv_positions: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
  """Position information for a stack's input embeddings x [B, T, D] at positions [B, T].

  Returns (x + absolute position vectors, None) for learned/sinusoidal, (x, relative position
  bias [B, N, T, S]) for relative, (x, None) for RoPE (applied inside attention). The keys sit at
  `kv_positions` [B, S] (a KV cache's slots), by default the queries' own. Call inside a compact
  method: it creates `pos_embed` / `relative_bias` there.
  """
  if config.position in ("learned", "sinusoidal"):
    return x + PositionEmbedding(config, name="pos_embed")(positions), None
  if config.position == "relative":
    kv_positions = positions if kv_positions is None else kv_positions
    return x, RelativePositionBias(config, bidirectional, name="relative_bias")(positions,
                                                                                kv_positions)
  return x, None
