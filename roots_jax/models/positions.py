"""Position information: learned tables (GPT-2, BERT), fixed sinusoids (Vaswani et al. 2017) added
to the token embeddings, or RoPE (Su et al. 2021) rotating queries and keys inside attention.

Everything takes explicit integer `positions` [B, T], so packed sequences restart at 0 per segment.
"""

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
