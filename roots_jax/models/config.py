"""The frozen model config that model code takes (never the whole run config)."""

import dataclasses

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture hyperparameters; field names match the run config's `model` section."""
  family: str = "decoder"
  vocab_size: int = 8192
  num_layers: int = 2
  num_decoder_layers: int = 0
  embed_dim: int = 128
  num_heads: int = 4
  num_kv_heads: int = 0
  head_dim: int = 0
  mlp_dim: int = 512
  mlp_activation: str = "gelu"
  norm: str = "layernorm"
  norm_eps: float = 1e-5
  norm_placement: str = "pre"
  position: str = "learned"
  max_len: int = 1024
  rope_theta: float = 10000.0
  relative_buckets: int = 32
  relative_max_distance: int = 128
  type_vocab_size: int = 0
  scale_embeddings: bool = False
  scaled_attention: bool = True
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  use_bias: bool = True
  tie_embeddings: bool = True
  attention_impl: str = "xla"
  remat_policy: str = "none"
  scan_layers: bool = True
  dtype: str = "float32"
  param_dtype: str = "float32"

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
