"""Decoder-only Transformer (GPT): causal blocks and a language-model head."""

import flax.linen as nn
import jax

from roots_jax.models.attention import cache_slots, default_segments, make_attention_mask
from roots_jax.models.block import TransformerBlock
from roots_jax.models.config import ModelConfig
from roots_jax.models.layers import DenseGeneral, Embed, norm
from roots_jax.models.positions import add_positions, default_positions
from roots_jax.models.stack import stack_layers


class Decoder(nn.Module):
  """GPT: token (+ absolute position) embeddings, causal blocks, final norm (pre-LN; GPT-1's
  post-LN has none), LM head -> logits."""
  config: ModelConfig

  @nn.compact
  def __call__(self, tokens: jax.Array, *, positions: jax.Array | None = None,
               segment_ids: jax.Array | None = None, deterministic: bool = True,
               features: bool = False, decode: bool = False) -> jax.Array:
    """tokens, positions, segment_ids: [B, T] int (segment 0 is padding; packed sequences count
    from 1 and restart their positions). Returns logits [B, T, V] in the compute dtype, or with
    `features` the final hidden states [B, T, D] that the LM head would read (fine-tuning).
    `decode` appends the tokens to the KV cache and attends over it (roots_jax.decoding)."""
    cfg = self.config
    positions = default_positions(tokens, positions)
    segment_ids = default_segments(tokens, segment_ids)
    cache_index, kv_positions = None, positions
    if decode:
      cache_index, mask, kv_positions = cache_slots(self, positions, segment_ids)  # [B, 1, T, L]
    else:
      mask = make_attention_mask(segment_ids, segment_ids, causal=True)  # [B, 1, T, T]

    embed = Embed(cfg.vocab_size, cfg.embed_dim, dtype=cfg.compute_dtype,
                  param_dtype=cfg.weight_dtype, scale=cfg.scale_embeddings, name="token_embed")
    x = embed(tokens)  # [B, T, D]
    x, bias = add_positions(cfg, x, positions, bidirectional=False,
                            kv_positions=kv_positions)  # bias [B, N, T, T or L] or None
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)

    x = stack_layers(TransformerBlock, cfg, x, mask, positions, bias, None, None, cache_index,
                     deterministic=deterministic, decode=decode)
    if cfg.norm_placement == "pre":
      x = norm(cfg, "final_norm")(x)
    if features:
      return x
    if cfg.tie_embeddings:
      logits = embed.attend(x)  # [B, T, V]
    else:
      head = DenseGeneral((cfg.vocab_size,), ("embed", "vocab"), use_bias=False,
                          dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype, name="lm_head")
      logits = head(x)  # [B, T, V]
    return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))
