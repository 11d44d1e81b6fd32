"""Fine-tuning: a pretrained stack (`backbone`, the pretraining module itself, so its parameters
keep their names) under a task head (`head`).

The head reads what the model family gives for `reads` (models.families): "pooled" one vector
per sequence (pooling "first": BERT's pooler output on [CLS], as Hugging Face's
BertForSequenceClassification; "last": the last real token of a decoder
(GPT2ForSequenceClassification) or of an encoder-decoder's decoder reading the input shifted
right (BART); "mean": the mean of the token features over real tokens (Sentence-BERT,
Sentence-T5), often the better frozen feature), "tokens" every input token's final hidden state
(encoder_decoder: the encoder's), or "lm" the decoder's hidden states -> vocabulary logits
through an output layer of the task's own, initialised from the pretrained LM head
(`Family.output_kernel`), so a frozen backbone still has a head to train.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from roots_jax.models import families
from roots_jax.models.config import ModelConfig
from roots_jax.models.layers import DenseGeneral


class FinetuneModel(nn.Module):
  """backbone + head; called with the whole batch dict (roots_jax.tasks lays out its keys).

  Returns logits [B, C] ("pooled"), scores [B] (`scalar`), logits [B, T, C] ("tokens") or
  vocabulary logits [B, T, V] ("lm").
  """
  config: ModelConfig
  reads: str = "pooled"    # pooled | tokens | lm (models.families)
  num_outputs: int = 0     # classes or tags; 1 for a score; an "lm" head has the vocabulary
  scalar: bool = False     # one number per row ([B] float32): regression
  head_dropout: float = 0.0
  pooling: str = ""        # pooled: first | last | mean; "": the family's

  @property
  def family(self) -> families.Family:
    return families.get(self.config.family)

  def setup(self):
    self.family.check_pooling(self.pooling)
    self.backbone = self.family.build(self.config)
    cfg = self.config
    if self.reads == "lm":
      self.head = DenseGeneral((cfg.vocab_size,), ("embed", "vocab"), use_bias=False,
                               dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype)
    else:
      self.head = DenseGeneral((self.num_outputs,), ("embed", None), use_bias=True,
                               dtype=cfg.compute_dtype, param_dtype=cfg.weight_dtype)
    self.dropout = nn.Dropout(self.head_dropout)

  def __call__(self, batch: dict, *, deterministic: bool = True) -> jax.Array:
    x = self.features(batch, deterministic=deterministic)
    if self.reads != "lm":
      x = self.dropout(x, deterministic=deterministic)
    y = self.head(x)
    if self.scalar:
      return y[..., 0].astype(jnp.float32)  # [B]
    return y

  def lm_logits(self, tokens: jax.Array, *, positions: jax.Array, segment_ids: jax.Array,
                encoded: jax.Array | None = None, encoder_segment_ids: jax.Array | None = None,
                decode: bool = False) -> jax.Array:
    """The "lm" head's vocabulary logits [B, T, V] for generation (roots_jax.decoding):
    decoder tokens, with the encoder output for an encoder-decoder; `decode` uses the KV cache."""
    hidden = self.family.lm_logits(self.backbone, tokens, positions=positions,
                                   segment_ids=segment_ids, encoded=encoded,
                                   encoder_segment_ids=encoder_segment_ids, decode=decode,
                                   features=True)
    return self.head(hidden)

  def features(self, batch: dict, *, deterministic: bool) -> jax.Array:
    """What the head reads: [B, D] when pooled, else [B, T, D]."""
    return self.family.features(self.backbone, batch, reads=self.reads, pooling=self.pooling,
                                deterministic=deterministic)
