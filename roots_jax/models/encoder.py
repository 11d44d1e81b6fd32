"""Encoder-only Transformer (BERT, Devlin et al. 2019): bidirectional blocks, MLM and NSP heads.

Parameter names follow BERT's layout so Hugging Face conversion is a renaming: token_embed,
pos_embed, token_type_embed, embed_norm (post-LN) / final_norm (pre-LN), layers, mlm_transform,
mlm_norm, mlm_output (the output bias; also the kernel when untied), pooler, nsp_classifier.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from roots_jax.models.attention import default_segments, make_attention_mask
from roots_jax.models.block import TransformerBlock
from roots_jax.models.config import ModelConfig
from roots_jax.models.layers import DenseGeneral, Embed, activation, dense, norm
from roots_jax.models.positions import add_positions, default_positions
from roots_jax.models.stack import stack_layers


class OutputBias(nn.Module):
  """A learned bias per vocabulary entry on top of tied logits (BERT's `cls.predictions.bias`)."""
  param_dtype: jnp.dtype

  @nn.compact
  def __call__(self, logits: jax.Array) -> jax.Array:
    bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                      logits.shape[-1:], self.param_dtype)
    return logits + bias.astype(logits.dtype)


class Encoder(nn.Module):
  """BERT: token + position (+ token type) embeddings, bidirectional blocks, MLM and NSP heads."""
  config: ModelConfig

  @nn.compact
  def __call__(self, tokens: jax.Array, *, token_types: jax.Array | None = None,
               positions: jax.Array | None = None, segment_ids: jax.Array | None = None,
               deterministic: bool = True, features: bool = False) -> tuple[jax.Array, jax.Array]:
    """tokens, token_types (0 = sentence A, 1 = B), positions, segment_ids: [B, T] int (segment 0
    is padding; packed sequences count from 1 and restart their positions).

    Returns (mlm_logits [B, T, V], nsp_logits [B, 2]) in the compute dtype; NSP reads the first
    token ([CLS]) of each row. With `features`, returns what fine-tuning heads read instead:
    (hidden states [B, T, D], the pooler's output [B, D]), as BERT's sequence classifiers do.
    """
    cfg = self.config
    positions = default_positions(tokens, positions)
    segment_ids = default_segments(tokens, segment_ids)
    mask = make_attention_mask(segment_ids, segment_ids, causal=False)  # [B, 1, T, T]

    embed = Embed(cfg.vocab_size, cfg.embed_dim, dtype=cfg.compute_dtype,
                  param_dtype=cfg.weight_dtype, scale=cfg.scale_embeddings, name="token_embed")
    x = embed(tokens)  # [B, T, D]
    x, bias = add_positions(cfg, x, positions, bidirectional=True)  # bias [B, N, T, T] or None
    if cfg.type_vocab_size:
      if token_types is None:
        token_types = jnp.zeros_like(tokens)
      x = x + Embed(cfg.type_vocab_size, cfg.embed_dim, dtype=cfg.compute_dtype,
                    param_dtype=cfg.weight_dtype, vocab_axis=None,
                    name="token_type_embed")(token_types)
    if cfg.norm_placement == "post":  # BERT normalises the summed embeddings
      x = norm(cfg, "embed_norm")(x)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)

    x = stack_layers(TransformerBlock, cfg, x, mask, positions, bias, deterministic=deterministic)
    if cfg.norm_placement == "pre":
      x = norm(cfg, "final_norm")(x)  # [B, T, D]
    pooler = dense(cfg, (cfg.embed_dim,), ("embed", None), name="pooler")
    if features:
      return x, jnp.tanh(pooler(x[:, 0]))

    # Masked LM (BERT's cls.predictions): transform with the model's activation (Hugging Face's
    # hidden_act), norm, then the word embeddings plus a bias.
    h = dense(cfg, (cfg.embed_dim,), ("embed", None), name="mlm_transform")(x)
    h = norm(cfg, "mlm_norm")(activation(cfg)(h))  # [B, T, D]
    if cfg.tie_embeddings:
      mlm_logits = OutputBias(cfg.weight_dtype, name="mlm_output")(embed.attend(h))  # [B, T, V]
    else:
      mlm_logits = DenseGeneral((cfg.vocab_size,), ("embed", "vocab"), use_bias=True,
                                dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype,
                                name="mlm_output")(h)  # [B, T, V]
    mlm_logits = nn.with_logical_constraint(mlm_logits, ("batch", "length", "vocab"))

    # Next sentence prediction (BERT's pooler + cls.seq_relationship) on the first token.
    pooled = jnp.tanh(pooler(x[:, 0]))
    nsp_logits = dense(cfg, (2,), ("embed", None), name="nsp_classifier")(pooled)  # [B, 2]
    return mlm_logits, nsp_logits
