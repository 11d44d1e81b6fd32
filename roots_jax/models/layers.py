"""Shared building blocks of every family: projections, norms and the feed-forward MLP.

Einsum legend: B batch, T length, D embed, F mlp, V vocab.
"""

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from roots_jax.errors import ConfigError
from roots_jax.models.config import ModelConfig

# GPT-2 initialisation (as in nanoGPT): N(0, 0.02) for kernels and embeddings, and the projections
# that write into the residual stream scaled by 1/sqrt(2L) (GPT-2 paper, section 2.3).
INIT_STD = 0.02


def residual_init_std(config: ModelConfig) -> float:
  return INIT_STD / math.sqrt(2 * config.num_layers)


class DenseGeneral(nn.Module):
  """Contracts the trailing input dims with a kernel of logical `axes` (inputs..., features...).

  Flax's nn.DenseGeneral initialises a multi-dim kernel flat and reshapes the boxed value, which
  breaks its logical sharding constraint under a mesh; this one creates it in its true shape.
  """
  features: tuple[int, ...]
  axes: tuple[str | None, ...]
  use_bias: bool
  dtype: Any
  param_dtype: Any
  init_std: float = INIT_STD

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n_in = len(self.axes) - len(self.features)
    kernel = self.param(
        "kernel", nn.with_logical_partitioning(nn.initializers.normal(self.init_std), self.axes),
        x.shape[x.ndim - n_in:] + self.features, self.param_dtype)
    contract = (tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in)))
    # promote_dtype rather than astype: a quantized model (runs.quantized) swaps the kernel for
    # a quantized one here, which Qwix's interception of promote_dtype leaves as it is.
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    y = jax.lax.dot_general(x, kernel, (contract, ((), ())))
    if self.use_bias:
      bias = self.param(
          "bias", nn.with_logical_partitioning(nn.initializers.zeros, self.axes[n_in:]),
          self.features, self.param_dtype)
      y = y + bias.astype(self.dtype)
    return y


def dense(config: ModelConfig, features: tuple[int, ...], axes: tuple[str | None, ...], **kwargs):
  """A DenseGeneral with the config's bias choice and dtypes."""
  return DenseGeneral(features, axes, use_bias=config.use_bias, dtype=config.compute_dtype,
                      param_dtype=config.weight_dtype, **kwargs)


class Embed(nn.Module):
  """Token embedding table [V, D]; `attend` reuses it as the tied LM head (GPT-2).

  `vocab_axis` None leaves a small table's rows unsharded (BERT's two token types); `scale`
  multiplies the looked-up rows by sqrt(features), as the 2017 Transformer's inputs
  (model.scale_embeddings).
  """
  vocab_size: int
  features: int
  dtype: Any
  param_dtype: Any
  vocab_axis: str | None = "vocab"
  init_std: float = INIT_STD
  scale: bool = False

  def setup(self):
    init = nn.with_logical_partitioning(nn.initializers.normal(self.init_std),
                                        (self.vocab_axis, "embed"))
    self.embedding = self.param("embedding", init, (self.vocab_size, self.features),
                                self.param_dtype)

  def __call__(self, ids: jax.Array) -> jax.Array:
    x = lookup(self.embedding, ids, (self.vocab_axis, None)).astype(self.dtype)  # [B, T, D]
    if self.scale:
      x = x * jnp.sqrt(self.features).astype(x.dtype)
    return x

  def attend(self, x: jax.Array) -> jax.Array:
    return jnp.einsum("BTD,VD->BTV", x, self.embedding.astype(self.dtype))  # [B, T, V]


def lookup(table: jax.Array, ids: jax.Array, table_axes: tuple[str | None, ...]) -> jax.Array:
  """Rows of `table` at `ids` [B, T] -> [B, T, D], batch-sharded like the activations.

  The table is first constrained to `table_axes`, which leave "embed" unsharded: rows gathered
  from an embed-sharded (FSDP) table make XLA replicate the result to re-shard it by batch.
  """
  rows = jnp.take(nn.with_logical_constraint(table, table_axes), ids, axis=0)
  return nn.with_logical_constraint(rows, ("batch", "length", "embed"))


class LayerNorm(nn.Module):
  """LayerNorm (Ba et al. 2016) over the last axis, statistics in float32."""
  eps: float
  param_dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                       x.shape[-1:], self.param_dtype)
    bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
                      x.shape[-1:], self.param_dtype)
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
    return (y * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(x.dtype)


class RMSNorm(nn.Module):
  """RMSNorm (Zhang & Sennrich 2019; T5, LLaMA): no centring and no bias, statistics in float32."""
  eps: float
  param_dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                       x.shape[-1:], self.param_dtype)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
    return (y * scale.astype(jnp.float32)).astype(x.dtype)


NORMS = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}


def norm(config: ModelConfig, name: str) -> nn.Module:
  """The config's norm layer (model.norm)."""
  return NORMS[config.norm](eps=config.norm_eps, param_dtype=config.weight_dtype, name=name)


# Gated MLPs (Shazeer 2020, "GLU Variants Improve Transformer"): act(x W_gate) * (x W_up).
GATED = {"swiglu": nn.silu, "geglu": functools.partial(nn.gelu, approximate=True)}
# "gelu" is the tanh approximation (GPT-2's, Hugging Face's "gelu_new"); "gelu_exact" the erf form
# BERT was trained with (Hugging Face's "gelu"). They differ by up to ~1e-3, enough to break parity.
UNGATED = {"gelu": functools.partial(nn.gelu, approximate=True),
           "gelu_exact": functools.partial(nn.gelu, approximate=False), "relu": nn.relu}


def activation(config: ModelConfig):
  """The elementwise nonlinearity of model.mlp_activation (a gated one's gate function), for the
  layers outside the MLP that use the model's activation (BERT's MLM transform)."""
  fn = {**UNGATED, **GATED}.get(config.mlp_activation)
  if fn is None:
    raise ConfigError(f"model.mlp_activation must be one of "
                      f"{', '.join([*UNGATED, *GATED])}; got {config.mlp_activation!r}")
  return fn


class Mlp(nn.Module):
  """Position-wise feed-forward, model.mlp_activation: gelu (GPT-2), gelu_exact (BERT), relu
  (Vaswani et al. 2017, T5 v1.0), or gated: swiglu (PaLM, LLaMA), geglu (T5 v1.1: gelu(x wi_0) *
  x wi_1).

  gelu and geglu use the tanh approximation (GPT-2's, and T5 v1.1's "gelu_new"); BERT used the
  exact erf (gelu_exact).
  """
  config: ModelConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.config
    wi = functools.partial(dense, cfg, (cfg.mlp_dim,), ("embed", "mlp"))
    if cfg.mlp_activation in GATED:
      h = GATED[cfg.mlp_activation](wi(name="wi_gate")(x)) * wi(name="wi_up")(x)  # [B, T, F]
    elif cfg.mlp_activation in UNGATED:
      h = UNGATED[cfg.mlp_activation](wi(name="wi")(x))  # [B, T, F]
    else:
      raise ConfigError(f"model.mlp_activation must be one of "
                        f"{', '.join([*UNGATED, *GATED])}; got {cfg.mlp_activation!r}")
    if self.has_variable("masks", "unit_mask"):  # structured pruning (models.attention.MASKS)
      h = h * self.get_variable("masks", "unit_mask").astype(h.dtype)  # [F]
    return dense(cfg, (cfg.embed_dim,), ("mlp", "embed"), init_std=residual_init_std(cfg),
                 name="wo")(h)  # [B, T, D]
