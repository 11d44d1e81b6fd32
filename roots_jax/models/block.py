"""The Transformer block every stack is made of: self-attention, optional cross-attention, MLP.

Pre-LN (GPT-2, T5): x + f(norm(x)) per sublayer, the stack ending in a final norm. Post-LN (Vaswani
et al. 2017, BERT): norm(x + f(x)). Causal or bidirectional, padding and packing all live in the
masks the stack builds, so one block serves the decoder, the encoder and the encoder-decoder.
"""

import flax.linen as nn
import jax

from roots_jax.models.attention import Attention
from roots_jax.models.config import ModelConfig
from roots_jax.models.layers import Mlp, norm

ACTIVATION_AXES = ("batch", "length", "embed")


class TransformerBlock(nn.Module):
  """One layer; with `cross_attention` it also attends to an encoder output (encoder-decoder).

  Sublayers, each with dropout on its residual branch: attention (norm `attention_norm`),
  cross_attention (`cross_attention_norm`), mlp (`mlp_norm`).
  """
  config: ModelConfig
  deterministic: bool = True
  cross_attention: bool = False
  decode: bool = False  # attention reads and writes the KV cache (roots_jax.decoding)

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, positions: jax.Array,
               bias: jax.Array | None = None, encoded: jax.Array | None = None,
               cross_mask: jax.Array | None = None, cache_index: jax.Array | None = None):
    """x [B, T, D]; mask [B, 1, T, T] bool; positions [B, T] (RoPE); bias [1 or B, N, T, T]
    (relative positions) or None; encoded [B, S, D] and cross_mask [B, 1, T, S] with
    cross_attention. Decoding: mask and bias span the L cache slots instead of T, cache_index is
    the slot of x's first token, and encoded is None after the first step. Returns
    (x [B, T, D], None) as nn.scan wants."""
    cfg = self.config

    def sublayer(x, name, f):
      dropout = nn.Dropout(cfg.dropout_rate)
      if cfg.norm_placement == "post":
        return norm(cfg, f"{name}_norm")(x + dropout(f(x), deterministic=self.deterministic))
      return x + dropout(f(norm(cfg, f"{name}_norm")(x)), deterministic=self.deterministic)

    x = nn.with_logical_constraint(x, ACTIVATION_AXES)  # [B, T, D]
    rope = positions if cfg.position == "rope" else None
    x = sublayer(x, "attention", lambda h: Attention(cfg, name="attention")(
        h, mask=mask, positions=rope, bias=bias, deterministic=self.deterministic,
        decode=self.decode, cache_index=cache_index))
    if self.cross_attention:
      x = sublayer(x, "cross_attention", lambda h: Attention(cfg, name="cross_attention")(
          h, encoded, mask=cross_mask, deterministic=self.deterministic, cross=True,
          decode=self.decode))
    x = sublayer(x, "mlp", Mlp(cfg, name="mlp"))
    x = nn.with_logical_constraint(x, ACTIVATION_AXES)
    # The layer's output, kept only when "intermediates" is mutable (distillation's hidden loss).
    self.sow("intermediates", "hidden", x)
    return x, None
