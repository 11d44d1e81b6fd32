"""Encoder-decoder Transformer (Vaswani et al. 2017; T5, Raffel et al. 2020).

One token embedding is shared by the encoder input, the decoder input and (tied) the LM head, as
in both papers. Parameters: token_embed, encoder/{pos_embed | relative_bias, layers, final_norm},
decoder/{pos_embed | relative_bias, layers (with cross_attention), final_norm}, lm_head (untied).
`encode` and `decode` are separate methods so generation runs the encoder once:

  encoded = model.apply(variables, enc_tokens, method="encode")
  logits = model.apply(variables, encoded, dec_tokens, method="decode")
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from roots_jax.models.attention import cache_slots, default_segments, make_attention_mask
from roots_jax.models.block import TransformerBlock
from roots_jax.models.config import ModelConfig
from roots_jax.models.layers import DenseGeneral, Embed, norm
from roots_jax.models.positions import add_positions, default_positions
from roots_jax.models.stack import stack_layers


def make_cross_attention_mask(decoder_segment_ids: jax.Array,
                              encoder_segment_ids: jax.Array) -> jax.Array:
  """[B, 1, T, S] bool: a decoder token sees the encoder tokens of its own segment (so never
  encoder padding); decoder padding sees every key, so no row is fully masked."""
  mask = decoder_segment_ids[:, :, None] == encoder_segment_ids[:, None, :]  # [B, T, S]
  return (mask | (decoder_segment_ids == 0)[:, :, None])[:, None]


def embedding_init_std(config: ModelConfig) -> float:
  """Scale of the shared token embedding, chosen so the encoder and decoder inputs are unit-scale
  and the tied logits are too: 1 for T5 (whose tied head then multiplies by D^-0.5), D^-0.5 with
  model.scale_embeddings (Vaswani et al. 2017 / tensor2tensor, whose inputs are x sqrt(D) and whose
  tied head is not rescaled)."""
  return config.embed_dim ** -0.5 if config.scale_embeddings else 1.0


class Stack(nn.Module):
  """Embedded tokens -> (positions) -> blocks -> final norm (pre-LN): the encoder (bidirectional)
  or the decoder (causal, with cross-attention to `encoded`)."""
  config: ModelConfig
  decoder: bool

  @nn.compact
  def __call__(self, x: jax.Array, positions: jax.Array, segment_ids: jax.Array,
               encoded: jax.Array | None = None, cross_mask: jax.Array | None = None, *,
               deterministic: bool, decode: bool = False) -> jax.Array:
    """x [B, T, D] token embeddings; positions, segment_ids [B, T]; encoded [B, S, D] and
    cross_mask [B, 1, T, S] for the decoder (`decode`: the KV-cached decoder, encoded only on the
    first call). Returns [B, T, D]."""
    cfg = self.config
    cache_index, kv_positions = None, positions
    if decode:
      cache_index, mask, kv_positions = cache_slots(self, positions, segment_ids)  # [B, 1, T, L]
    else:
      mask = make_attention_mask(segment_ids, segment_ids, causal=self.decoder)  # [B, 1, T, T]
    x, bias = add_positions(cfg, x, positions, bidirectional=not self.decoder,
                            kv_positions=kv_positions)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
    num_layers = cfg.decoder_layers if self.decoder else cfg.num_layers
    x = stack_layers(TransformerBlock, cfg, x, mask, positions, bias, encoded, cross_mask,
                     cache_index, num_layers=num_layers, deterministic=deterministic,
                     cross_attention=self.decoder, decode=decode)
    if cfg.norm_placement == "pre":
      x = norm(cfg, "final_norm")(x)
    return x


class EncoderDecoder(nn.Module):
  """Transformer / T5: encoder over the inputs, causal decoder cross-attending to it, LM head."""
  config: ModelConfig

  def setup(self):
    cfg = self.config
    self.token_embed = Embed(cfg.vocab_size, cfg.embed_dim, dtype=cfg.compute_dtype,
                             param_dtype=cfg.weight_dtype, init_std=embedding_init_std(cfg),
                             scale=cfg.scale_embeddings)
    self.encoder = Stack(cfg, decoder=False)
    self.decoder = Stack(cfg, decoder=True)
    if not cfg.tie_embeddings:
      self.lm_head = DenseGeneral((cfg.vocab_size,), ("embed", "vocab"), use_bias=False,
                                  dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype)

  def __call__(self, encoder_tokens: jax.Array, decoder_tokens: jax.Array, *,
               encoder_segment_ids: jax.Array | None = None,
               decoder_segment_ids: jax.Array | None = None,
               encoder_positions: jax.Array | None = None,
               decoder_positions: jax.Array | None = None,
               deterministic: bool = True) -> jax.Array:
    """encoder_* [B, S], decoder_* [B, T] int (segment 0 is padding; packed pairs share a segment
    id on both sides, counted from 1; positions restart per segment). Returns logits [B, T, V]
    in the compute dtype."""
    encoded = self.encode(encoder_tokens, encoder_segment_ids=encoder_segment_ids,
                          encoder_positions=encoder_positions, deterministic=deterministic)
    return self.decode(encoded, decoder_tokens, encoder_segment_ids=encoder_segment_ids,
                       decoder_segment_ids=decoder_segment_ids,
                       decoder_positions=decoder_positions, deterministic=deterministic)

  def encode(self, encoder_tokens: jax.Array, *, encoder_segment_ids: jax.Array | None = None,
             encoder_positions: jax.Array | None = None,
             deterministic: bool = True) -> jax.Array:
    """encoder_tokens [B, S] -> encoded [B, S, D] in the compute dtype (after the final norm)."""
    return self.encoder(self.token_embed(encoder_tokens),
                        default_positions(encoder_tokens, encoder_positions),
                        default_segments(encoder_tokens, encoder_segment_ids),
                        deterministic=deterministic)

  def decode(self, encoded: jax.Array | None, decoder_tokens: jax.Array, *,
             encoder_segment_ids: jax.Array | None = None,
             decoder_segment_ids: jax.Array | None = None,
             decoder_positions: jax.Array | None = None,
             deterministic: bool = True, features: bool = False,
             decode: bool = False) -> jax.Array:
    """encoded [B, S, D] (from `encode`), decoder_tokens [B, T] -> logits [B, T, V], or with
    `features` the decoder's final hidden states [B, T, D] (fine-tuning). `decode` runs the
    KV-cached decoder (roots_jax.decoding): encoded is needed on the first call only, after it
    None, with encoder_segment_ids [B, S] on every call."""
    cfg = self.config
    if encoder_segment_ids is None:
      encoder_segment_ids = jnp.ones(encoded.shape[:2], jnp.int32)
    segments = default_segments(decoder_tokens, decoder_segment_ids)
    cross_mask = make_cross_attention_mask(segments, encoder_segment_ids)  # [B, 1, T, S]
    x = self.decoder(self.token_embed(decoder_tokens),
                     default_positions(decoder_tokens, decoder_positions), segments, encoded,
                     cross_mask, deterministic=deterministic, decode=decode)  # [B, T, D]
    if features:
      return x
    if cfg.tie_embeddings and not cfg.scale_embeddings:
      # T5 (Mesh TF, Hugging Face): D^-0.5 before the tied head, as the embedding is unit-scale.
      logits = self.token_embed.attend(x * jnp.asarray(cfg.embed_dim ** -0.5, x.dtype))
    elif cfg.tie_embeddings:  # the 2017 model: the table is D^-0.5-scale, the inputs x sqrt(D)
      logits = self.token_embed.attend(x)  # [B, T, V]
    else:
      logits = self.lm_head(x)  # [B, T, V]
    return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))
