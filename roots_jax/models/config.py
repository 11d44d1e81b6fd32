"""The model fields, declared once: the frozen config that model code takes (never the whole run
config), whose defaults and meanings are those of the run config's `model` section."""

import dataclasses

import jax.numpy as jnp

from roots_jax.errors import ConfigError


def _field(default, meaning: str):
  """A field with its one-line meaning, which the config key listing (--config.help) shows."""
  return dataclasses.field(default=default, metadata={"help": meaning})


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture hyperparameters; the run config's `model` section holds the same fields."""
  family: str = _field("decoder", "decoder (GPT) | encoder (BERT) | encoder_decoder "
                       "(Transformer, T5): roots_jax.models.families")
  vocab_size: int = _field(8192, "token ids, the tokenizer's size")
  num_layers: int = _field(2, "blocks; encoder_decoder: the encoder's")
  num_decoder_layers: int = _field(0, "encoder_decoder: the decoder's blocks; 0 = num_layers")
  embed_dim: int = _field(128, "the width D of the residual stream")
  num_heads: int = _field(4, "attention (query) heads")
  num_kv_heads: int = _field(0, "key/value heads; 0: same as num_heads (MHA); 1: MQA; in "
                             "between: GQA")
  head_dim: int = _field(0, "per head; 0: embed_dim // num_heads")
  mlp_dim: int = _field(512, "the MLP's hidden width F")
  mlp_activation: str = _field("gelu", "gelu (tanh approx., GPT-2) | gelu_exact (erf, BERT) | "
                               "relu (2017 Transformer, T5 v1.0) | swiglu | geglu (T5 v1.1)")
  norm: str = _field("layernorm", "layernorm | rmsnorm")
  norm_eps: float = _field(1e-5, "added to the variance in the norms")
  norm_placement: str = _field("pre", "pre (GPT-2, T5) | post (BERT, the 2017 Transformer)")
  position: str = _field("learned", "learned | sinusoidal | rope | relative (T5 bucketed bias)")
  max_len: int = _field(1024, "longest sequence of learned and sinusoidal positions")
  rope_theta: float = _field(10000.0, "rope: the base of the rotation frequencies")
  relative_buckets: int = _field(32, "relative: buckets of the bias (T5: 32)")
  relative_max_distance: int = _field(128, "relative: distance of the last bucket (T5: 128)")
  type_vocab_size: int = _field(0, "BERT token types (segments A/B): 2; 0 = none")
  scale_embeddings: bool = _field(False, "multiply embeddings by sqrt(embed_dim) (the 2017 "
                                  "Transformer)")
  scaled_attention: bool = _field(True, "q k^T / sqrt(head_dim); T5 folds the scale into its "
                                  "init: False")
  dropout_rate: float = _field(0.0, "dropout on embeddings and block outputs while training")
  attention_dropout_rate: float = _field(0.0, "dropout on attention weights (attention_impl=xla)")
  use_bias: bool = _field(True, "biases in dense layers and norms")
  tie_embeddings: bool = _field(True, "the LM head is the transposed token embedding")
  attention_impl: str = _field("xla", "xla (einsum) | dot_product_attention (jax.nn, XLA) | "
                               "cudnn")
  remat_policy: str = _field("none", "what the backward pass recomputes: none | full | dots | "
                             "dots_no_batch")
  scan_layers: bool = _field(True, "the blocks as one nn.scan (fast compiles) or unrolled")
  dtype: str = _field("float32", "compute dtype; params stay param_dtype")
  param_dtype: str = _field("float32", "dtype of the parameters and optimizer state")

  @classmethod
  def from_config(cls, model_section) -> "ModelConfig":
    return cls(**dict(model_section))

  @property
  def kv_heads(self) -> int:
    return self.num_kv_heads or self.num_heads

  @property
  def decoder_layers(self) -> int:
    return self.num_decoder_layers or self.num_layers

  @property
  def head_size(self) -> int:
    return self.head_dim or self.embed_dim // self.num_heads

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def weight_dtype(self):
    return jnp.dtype(self.param_dtype)


# Position kinds with a table (or a trained range) of max_len positions; rope and relative
# positions take any length.
BOUNDED_POSITIONS = ("learned", "sinusoidal")

# Fields that change how the model runs, not its parameters: a fine-tune run may override them.
RUNTIME_FIELDS = ("dropout_rate", "attention_dropout_rate", "attention_impl", "remat_policy",
                  "dtype", "param_dtype")

CHOICES = {
    "family": ("decoder", "encoder", "encoder_decoder"),
    "mlp_activation": ("gelu", "gelu_exact", "relu", "swiglu", "geglu"),
    "norm_placement": ("pre", "post"),
    "norm": ("layernorm", "rmsnorm"),
    "position": ("learned", "sinusoidal", "rope", "relative"),
    "attention_impl": ("xla", "dot_product_attention", "cudnn"),
    "remat_policy": ("none", "full", "dots", "dots_no_batch"),
    "dtype": ("float32", "bfloat16", "float16"),
    "param_dtype": ("float32", "bfloat16"),
}


def validate(m) -> None:
  """Rejects impossible values in a `model` section with a one-line message."""
  for key in ("vocab_size", "num_layers", "embed_dim", "num_heads", "mlp_dim", "max_len"):
    if m[key] <= 0:
      raise ConfigError(f"model.{key} must be positive; got {m[key]}")
  if m.head_dim == 0 and m.embed_dim % m.num_heads:
    raise ConfigError(f"model.num_heads ({m.num_heads}) must divide model.embed_dim ({m.embed_dim}), "
                      "or set model.head_dim")
  kv_heads = m.num_kv_heads or m.num_heads
  if m.num_heads % kv_heads:
    raise ConfigError(f"model.num_kv_heads ({kv_heads}) must divide model.num_heads ({m.num_heads})")
  if m.attention_dropout_rate > 0 and m.attention_impl != "xla":
    raise ConfigError("model.attention_dropout_rate > 0 needs model.attention_impl=xla "
                      "(the fused kernels have no attention dropout)")
  if m.position == "rope" and (m.head_dim or m.embed_dim // m.num_heads) % 2:
    raise ConfigError("rope needs an even head dimension")
