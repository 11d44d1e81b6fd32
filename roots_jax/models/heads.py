"""Fine-tuning: a pretrained stack (`backbone`, the pretraining module itself, so its parameters
keep their names) under a task head (`head`).

What each family's head reads:
  classification, regression   pooling "first" (the encoder's default): BERT's pooler output on
                               [CLS] (Hugging Face's BertForSequenceClassification); "last" (the
                               other families' default): the last real token of a decoder
                               (GPT2ForSequenceClassification) or of an encoder-decoder's decoder
                               reading the input shifted right (BART); "mean": the mean of the
                               token features over real tokens (Sentence-BERT, Sentence-T5),
                               often the better frozen feature
  token_classification         every token's final hidden state (encoder_decoder: the encoder's)
  seq2seq                      the decoder's hidden states -> vocabulary logits through an
                               output layer of the task's own, initialised from the pretrained LM
                               head (`pretrained_output_kernel`), so a frozen backbone still has a
                               head to train
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from roots_jax.errors import ConfigError
from roots_jax.models import build_model
from roots_jax.models.config import ModelConfig
from roots_jax.models.layers import DenseGeneral

KINDS = ("classification", "regression", "token_classification", "seq2seq")


def check_kind(family: str, kind: str) -> None:
  if kind == "seq2seq" and family == "encoder":
    raise ConfigError("task.kind=seq2seq needs a model that generates (model.family decoder or "
                      "encoder_decoder); an encoder (BERT) checkpoint fits classification, "
                      "regression and token_classification")


def default_pooling(family: str) -> str:
  return "first" if family == "encoder" else "last"


def mean_tokens(x: jax.Array, segment_ids: jax.Array) -> jax.Array:
  """x [B, T, D] -> [B, D]: the mean over real (segment > 0) positions."""
  real = (segment_ids > 0).astype(x.dtype)[..., None]                  # [B, T, 1]
  return (x * real).sum(1) / jnp.maximum(real.sum(1), 1)


def last_token(x: jax.Array, segment_ids: jax.Array) -> jax.Array:
  """x [B, T, D] -> [B, D] at each row's last real (segment > 0) position; rows are right-padded."""
  index = jnp.maximum(jnp.sum(segment_ids > 0, axis=1) - 1, 0)  # [B]
  return jnp.take_along_axis(x, index[:, None, None], axis=1)[:, 0]


def pretrained_output_kernel(config: ModelConfig, backbone_params) -> jax.Array:
  """The [D, V] matrix the pretrained LM head applies to the final hidden states: the untied
  `lm_head`, or the token embedding transposed (times D^-0.5 for T5, whose tied head rescales)."""
  if not config.tie_embeddings:
    return backbone_params["lm_head"]["kernel"]
  table = backbone_params["token_embed"]["embedding"].T  # [D, V]
  if config.family == "encoder_decoder" and not config.scale_embeddings:
    table = table * config.embed_dim ** -0.5
  return table


class FinetuneModel(nn.Module):
  """backbone + head; called with the whole batch dict (see roots_jax.data.finetune for its keys).

  Returns logits [B, C] (classification), scores [B] (regression), logits [B, T, C]
  (token_classification) or vocabulary logits [B, T, V] (seq2seq).
  """
  config: ModelConfig
  kind: str
  num_outputs: int = 0     # classes or tags; ignored for regression (1) and seq2seq (vocabulary)
  head_dropout: float = 0.0
  pooling: str = ""        # classification, regression: first | last | mean; "": the family's

  def setup(self):
    check_kind(self.config.family, self.kind)
    fits = (default_pooling(self.config.family), "mean")
    if self.pooling and self.pooling not in fits:
      raise ConfigError(f"finetune.pooling={self.pooling} does not fit a {self.config.family} "
                        f"model: use {' or '.join(fits)}")
    self.backbone = build_model(self.config)
    cfg = self.config
    if self.kind == "seq2seq":
      self.head = DenseGeneral((cfg.vocab_size,), ("embed", "vocab"), use_bias=False,
                               dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype)
    else:
      outputs = 1 if self.kind == "regression" else self.num_outputs
      self.head = DenseGeneral((outputs,), ("embed", None), use_bias=True,
                               dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype)
    self.dropout = nn.Dropout(self.head_dropout)

  def __call__(self, batch: dict, *, deterministic: bool = True) -> jax.Array:
    x = self.features(batch, deterministic=deterministic)
    if self.kind != "seq2seq":
      x = self.dropout(x, deterministic=deterministic)
    y = self.head(x)
    if self.kind == "regression":
      return y[..., 0].astype(jnp.float32)  # [B]
    return y

  def lm_logits(self, tokens: jax.Array, *, positions: jax.Array, segment_ids: jax.Array,
                encoded: jax.Array | None = None, encoder_segment_ids: jax.Array | None = None,
                decode: bool = False) -> jax.Array:
    """The seq2seq head's vocabulary logits [B, T, V] for generation (roots_jax.decoding):
    decoder tokens, with the encoder output for an encoder-decoder; `decode` uses the KV cache."""
    if self.config.family == "decoder":
      hidden = self.backbone(tokens, positions=positions, segment_ids=segment_ids, features=True,
                             decode=decode)
    else:
      hidden = self.backbone.decode(encoded, tokens, encoder_segment_ids=encoder_segment_ids,
                                    decoder_segment_ids=segment_ids, decoder_positions=positions,
                                    features=True, decode=decode)
    return self.head(hidden)

  def features(self, batch: dict, *, deterministic: bool) -> jax.Array:
    """What the head reads: [B, D] for sequence tasks, [B, T, D] for token tasks and seq2seq."""
    family, pooled = self.config.family, self.kind in ("classification", "regression")
    pooling = self.pooling or default_pooling(family)
    if family == "encoder":
      hidden, pooler = self.backbone(batch["inputs"], token_types=batch["token_types"],
                                     positions=batch["positions"],
                                     segment_ids=batch["segment_ids"],
                                     deterministic=deterministic, features=True)
      if not pooled:
        return hidden
      return pooler if pooling == "first" else mean_tokens(hidden, batch["segment_ids"])
    if family == "decoder":
      hidden = self.backbone(batch["inputs"], positions=batch["positions"],
                             segment_ids=batch["segment_ids"], deterministic=deterministic,
                             features=True)  # [B, T, D]
      if not pooled:
        return hidden
      pool = last_token if pooling == "last" else mean_tokens
      return pool(hidden, batch["segment_ids"])
    encoded = self.backbone.encode(batch["encoder_inputs"],
                                   encoder_segment_ids=batch["encoder_segment_ids"],
                                   encoder_positions=batch["encoder_positions"],
                                   deterministic=deterministic)  # [B, S, D]
    if self.kind == "token_classification":
      return encoded
    if pooled and pooling == "mean":
      return mean_tokens(encoded, batch["encoder_segment_ids"])
    hidden = self.backbone.decode(encoded, batch["decoder_inputs"],
                                  encoder_segment_ids=batch["encoder_segment_ids"],
                                  decoder_segment_ids=batch["decoder_segment_ids"],
                                  decoder_positions=batch["decoder_positions"],
                                  deterministic=deterministic, features=True)  # [B, T, D]
    return last_token(hidden, batch["decoder_segment_ids"]) if pooled else hidden
