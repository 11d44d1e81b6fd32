"""Decoder-only Transformer (GPT): pre-LN causal blocks and a language-model head."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from roots_jax.models.attention import Attention, make_attention_mask
from roots_jax.models.config import ModelConfig
from roots_jax.models.layers import DenseGeneral, Embed, Mlp, norm
from roots_jax.models.positions import PositionEmbedding
from roots_jax.models.stack import stack_layers

ACTIVATION_AXES = ("batch", "length", "embed")


class DecoderBlock(nn.Module):
  """Pre-LN block (GPT-2): x + dropout(attn(norm(x))), then x + dropout(mlp(norm(x)))."""
  config: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, positions: jax.Array):
    cfg = self.config
    x = nn.with_logical_constraint(x, ACTIVATION_AXES)  # [B, T, D]
    h = Attention(cfg, name="attention")(
        norm(cfg, "attention_norm")(x), mask=mask,
        positions=positions if cfg.position == "rope" else None, deterministic=self.deterministic)
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=self.deterministic)
    h = Mlp(cfg, name="mlp")(norm(cfg, "mlp_norm")(x))
    x = x + nn.Dropout(cfg.dropout_rate)(h, deterministic=self.deterministic)
    return nn.with_logical_constraint(x, ACTIVATION_AXES), None


class Decoder(nn.Module):
  """GPT: token (+ absolute position) embeddings, causal blocks, final norm, LM head -> logits."""
  config: ModelConfig

  @nn.compact
  def __call__(self, tokens: jax.Array, *, positions: jax.Array | None = None,
               segment_ids: jax.Array | None = None, deterministic: bool = True) -> jax.Array:
    """tokens, positions, segment_ids: [B, T] int (segment 0 is padding; packed sequences count
    from 1 and restart their positions). Returns logits [B, T, V] in the compute dtype."""
    cfg = self.config
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    if segment_ids is None:
      segment_ids = jnp.ones_like(tokens)
    mask = make_attention_mask(segment_ids, segment_ids, causal=True)  # [B, 1, T, T]

    embed = Embed(cfg.vocab_size, cfg.embed_dim, dtype=cfg.compute_dtype,
                  param_dtype=cfg.weight_dtype, name="token_embed")
    x = embed(tokens)  # [B, T, D]
    if cfg.position != "rope":
      x = x + PositionEmbedding(cfg, name="pos_embed")(positions)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)

    x = stack_layers(DecoderBlock, cfg, x, mask, positions, deterministic=deterministic)
    x = norm(cfg, "final_norm")(x)
    if cfg.tie_embeddings:
      logits = embed.attend(x)  # [B, T, V]
    else:
      head = DenseGeneral((cfg.vocab_size,), ("embed", "vocab"), use_bias=False,
                          dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype, name="lm_head")
      logits = head(x)  # [B, T, V]
    return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))
